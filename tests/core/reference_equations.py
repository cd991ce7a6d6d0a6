"""The paper's equations written as explicit float64 loops: the brute-force references of the tests."""

from __future__ import annotations

import math


def distances(z: list[list[float]], anchors: list[list[float]]) -> list[list[float]]:
    """Eq. 2: d_ij = sqrt(sum_k (z_ik - C_jk)^2)."""
    out = []
    for row in z:
        out.append([math.sqrt(sum((row[k] - a[k]) ** 2 for k in range(len(row)))) for a in anchors])
    return out


def tuplet(d: list[float], y: int) -> float:
    """Eq. 7: log(1 + sum_{j != y} exp(d_y - d_j)), shifted by the largest exponent to avoid overflow."""
    exps = [d[y] - d[j] for j in range(len(d)) if j != y]
    m = max(0.0, *exps)
    return m + math.log(math.exp(-m) + sum(math.exp(e - m) for e in exps))


def cac(d_batch: list[list[float]], labels: list[int], lam: float, tuplet_weight: float = 1.0) -> float:
    """Eq. 8 averaged over the batch: mean of tuplet_weight * L_T + lambda * L_A, L_A = d_y (Eq. 6)."""
    total = 0.0
    for d, y in zip(d_batch, labels):
        total += tuplet_weight * tuplet(d, y) + lam * d[y]
    return total / len(labels)


def softmin(d: list[float]) -> list[float]:
    """Eq. 10."""
    denominator = sum(math.exp(-v) for v in d)
    return [math.exp(-v) / denominator for v in d]


def rejection(d: list[float]) -> list[float]:
    """Eq. 11: s_i = (1 - c_i) * d_i."""
    c = softmin(d)
    return [(1 - c[i]) * d[i] for i in range(len(d))]


def refit_anchors(z: list[list[float]], labels: list[int], k: int) -> list[list[float]]:
    """Algorithm 1 lines 1-3: mean logit of the samples whose argmax logit equals their label."""
    anchors = []
    for cls in range(k):
        rows = [row for row, y in zip(z, labels) if y == cls and max(range(k), key=lambda j: row[j]) == cls]
        anchors.append([sum(r[j] for r in rows) / len(rows) for j in range(k)])
    return anchors
