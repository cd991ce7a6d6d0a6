"""The paper's Fig. 1 on a two-class toy problem in 2-D input space, cross-entropy versus CAC.

Run:  python examples/toy_2d.py --out docs/figures      (well under a minute on 2 CPU cores)

Two Gaussian blobs are the known classes. The same small MLP (2 -> hidden -> hidden -> 2 logits) is trained
once with cross-entropy and once with the CAC loss (Eq. 8, anchors ``10 * I``). For each network:

* input space: every point of a grid coloured by its predicted class, grey where it is rejected as unknown;
  CAC rejects where the min rejection score (Eq. 11, anchors re-fitted as in Algorithm 1) is above a
  threshold, cross-entropy where the max softmax probability is below one; both thresholds accept 95% of
  the training points (``classanchor.metrics.calibrate_threshold``);
* logit space: the training points, the re-fitted anchors (CAC) or class means (cross-entropy), and the
  same decision rule drawn in logit space;
* the open-set score of fresh known test points and of "unknown" test points, drawn uniformly from the plot
  area at least ``UNKNOWN_MARGIN`` away from both class centres, with the AUROC.

Writes ``toy_2d.png`` into ``--out`` and prints the AUROC and accuracy of both networks.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from classanchor import CACNet, plots
from classanchor.heads import anchor_distances, fit_anchors
from classanchor.methods import Method, get_method
from classanchor.metrics import auroc, calibrate_threshold
from classanchor.scores import cac_decision
from classanchor.train import Stage, TrainConfig, train

CLASS_NAMES = ("class A", "class B")
CENTRES = torch.tensor([[-2.0, 1.0], [2.0, -1.0]])  # class centres in input space
SPREAD = torch.tensor([[0.8, 0.4], [0.4, 0.8]])      # per-axis standard deviation of each class
BOX = 6.0            # the input-space panels show [-BOX, BOX]^2
UNKNOWN_MARGIN = 3.0  # unknown test points lie at least this far from both class centres
ACCEPT_RATE = 0.95    # both thresholds accept this share of the training points
METHOD_TITLES = {"ce": "Cross-entropy", "cac": "CAC"}


def make_blobs(n_per_class: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(2 n, 2) float32 points of the two Gaussian classes and their (2 n,) labels 0 / 1."""
    labels = torch.arange(2).repeat_interleave(n_per_class)
    noise = torch.randn(2 * n_per_class, 2, generator=generator)
    return CENTRES[labels] + noise * SPREAD[labels], labels


def make_unknowns(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 2) points uniform in the plotted box, at least UNKNOWN_MARGIN from both class centres."""
    kept = torch.empty(0, 2)
    while kept.shape[0] < n:
        candidates = (torch.rand(4 * n, 2, generator=generator) * 2 - 1) * BOX
        far = torch.cdist(candidates, CENTRES).min(dim=1).values >= UNKNOWN_MARGIN
        kept = torch.cat([kept, candidates[far]])
    return kept[:n]


class ShuffledBatches:
    """Mini-batches of (x, y) in a new random order every epoch; ``len()`` = batches per epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.y), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.x[index], self.y[index]


@dataclass(frozen=True)
class LowestValLoss(Method):
    """A method that keeps the epoch with the lowest validation loss.

    Used for cross-entropy here: the library's rule for it (highest validation accuracy, first epoch on a
    tie) keeps the first epoch that reaches 100% on this separable toy, an under-trained network whose
    logits are still close to 0. The CAC network keeps the library's rule (lowest validation anchor loss).
    """

    @property
    def checkpoint_metric(self) -> str:
        return "val_loss"

    @property
    def checkpoint_mode(self) -> str:
        return "min"


def toy_method(name: str) -> Method:
    method = get_method(name)
    return LowestValLoss(**asdict(method)) if name == "ce" else method


def mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 2))


def softmax_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """``log((1 - p) / p)`` with ``p`` the max softmax probability, computed without rounding p to 1.

    A strictly increasing function of :func:`classanchor.scores.msp_score` (``-p``): the same ranking,
    the same accepted set for the corresponding threshold, but it does not saturate when ``p`` rounds to
    1.0 in float32, which happens for every point far from the data of a cross-entropy network.
    """
    top, index = logits.max(dim=1)
    others = logits.scatter(1, index.unsqueeze(1), float("-inf"))
    return torch.logsumexp(others, dim=1) - top


def decide(method: str, logits: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted class and open-set score (higher = more unknown) of (N, 2) logits.

    CAC: Algorithm 1 (distances to the re-fitted anchors, min rejection score of Eq. 11);
    cross-entropy: argmax logit and the max softmax probability as the log-odds ``log((1 - p) / p)``.
    The scores are returned in float64: ``calibrate_threshold`` returns the float64 number just above
    the boundary score, which a float32 comparison would round back down onto the boundary.
    """
    if method == "cac":
        prediction, score = cac_decision(anchor_distances(logits, anchors))
    else:
        prediction, score = logits.argmax(dim=1), softmax_log_odds(logits)
    return prediction, score.double()


def _grid(lo_x: float, hi_x: float, lo_y: float, hi_y: float, size: int):
    gx, gy = torch.linspace(lo_x, hi_x, size), torch.linspace(lo_y, hi_y, size)
    xx, yy = torch.meshgrid(gx, gy, indexing="xy")  # (size_y, size_x)
    return gx, gy, torch.stack([xx.ravel(), yy.ravel()], dim=1)


def _decision_map(method: str, logits: torch.Tensor, anchors: torch.Tensor, threshold: float,
                  size: int) -> np.ndarray:
    prediction, score = decide(method, logits, anchors)
    return torch.where(score < threshold, prediction, -1).reshape(size, size).numpy()


@dataclass
class ToyResult:
    """Everything one panel row of the figure is drawn from (numpy arrays)."""

    method: str
    train_x: np.ndarray          # (N, 2) training points
    train_y: np.ndarray          # (N,) their classes
    train_logits: np.ndarray     # (N, 2)
    anchors: np.ndarray          # (2, 2) re-fitted anchors (CAC) / class means of the logits (CE)
    threshold: float             # open-set score threshold accepting ACCEPT_RATE of the training points
    input_grid: tuple            # (grid_x (W,), grid_y (H,), decision (H, W) with -1 = unknown)
    logit_grid: tuple            # the same over a window of logit space
    known_scores: np.ndarray     # open-set scores of known test points
    unknown_scores: np.ndarray   # and of the unknown test points
    auroc: float
    accuracy: float              # closed-set accuracy on the known test points
    seconds: float               # training time
    zoom_grid: tuple | None = None  # CAC: the decision map on a small window around the anchor of class A


@torch.no_grad()
def _evaluate(method: str, net: CACNet, data: dict, grid_size: int, seconds: float) -> ToyResult:
    net.eval()
    train_logits = net(data["train_x"])
    # CAC: Algorithm 1 lines 1-3. CE: the same class means, drawn for comparison (not used to decide).
    anchors = fit_anchors(train_logits, data["train_y"], 2, empty_class="all_samples")
    threshold = calibrate_threshold(decide(method, train_logits, anchors)[1], ACCEPT_RATE)
    gx, gy, points = _grid(-BOX, BOX, -BOX, BOX, grid_size)
    input_map = _decision_map(method, net(points), anchors, threshold, grid_size)
    # logit window: a square around the training logits and the anchors, with a margin
    spots = torch.cat([train_logits, anchors])
    lo, hi = torch.quantile(spots, 0.005, dim=0), torch.quantile(spots, 0.995, dim=0)
    centre, half = (lo + hi) / 2, float((hi - lo).max()) * 0.75 + 1.0
    lx, ly, logit_points = _grid(float(centre[0]) - half, float(centre[0]) + half,
                                 float(centre[1]) - half, float(centre[1]) + half, grid_size)
    logit_map = _decision_map(method, logit_points, anchors, threshold, grid_size)
    zoom_grid = None
    if method == "cac":  # the accepted discs and the clusters are far smaller than the logit window
        own = anchor_distances(train_logits[data["train_y"] == 0], anchors)[:, 0]
        zoom = 2.0 * float(torch.quantile(own, 0.95)) + 1e-3
        (ax_, ay_) = anchors[0].tolist()
        zx, zy, zoom_points = _grid(ax_ - zoom, ax_ + zoom, ay_ - zoom, ay_ + zoom, grid_size)
        zoom_grid = (zx.numpy(), zy.numpy(), _decision_map(method, zoom_points, anchors, threshold, grid_size))
    test_prediction, known_scores = decide(method, net(data["test_x"]), anchors)
    unknown_scores = decide(method, net(data["unknown_x"]), anchors)[1]
    return ToyResult(
        method=method, train_x=data["train_x"].numpy(), train_y=data["train_y"].numpy(),
        train_logits=train_logits.numpy(), anchors=anchors.numpy(), threshold=threshold,
        input_grid=(gx.numpy(), gy.numpy(), input_map), logit_grid=(lx.numpy(), ly.numpy(), logit_map),
        known_scores=known_scores.numpy(), unknown_scores=unknown_scores.numpy(),
        auroc=auroc(torch.cat([known_scores, unknown_scores]),
                    torch.cat([torch.zeros(len(known_scores)), torch.ones(len(unknown_scores))])),
        accuracy=float((test_prediction == data["test_y"]).float().mean()),
        seconds=seconds, zoom_grid=zoom_grid,
    )


def run_toy(*, epochs: int = 40, seed: int = 0, n_per_class: int = 400, hidden: int = 64,
            grid_size: int = 300, lr: float = 0.05) -> dict[str, ToyResult]:
    """Train the cross-entropy and the CAC network on the same data; evaluate both (keys 'ce', 'cac').

    Runs single-threaded (restored afterwards): for a network this small, more threads only add overhead,
    and on a busy machine they make each step tens of times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_toy(epochs=epochs, seed=seed, n_per_class=n_per_class, hidden=hidden,
                        grid_size=grid_size, lr=lr)
    finally:
        torch.set_num_threads(threads)


def _run_toy(*, epochs: int, seed: int, n_per_class: int, hidden: int, grid_size: int,
             lr: float) -> dict[str, ToyResult]:
    generator = torch.Generator().manual_seed(seed)
    train_x, train_y = make_blobs(n_per_class, generator)
    val_x, val_y = make_blobs(n_per_class // 4, generator)
    test_x, test_y = make_blobs(n_per_class, generator)
    data = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
            "unknown_x": make_unknowns(2 * n_per_class, generator)}
    config = TrainConfig(stages=(Stage(epochs=epochs, lr=lr, schedule="onecycle"),), precision="float32",
                         channels_last=False)
    results = {}
    for method_name in ("ce", "cac"):
        torch.manual_seed(seed)  # the same initial weights for both networks
        net = CACNet(mlp(hidden), num_classes=2)
        start = time.perf_counter()
        train(net, toy_method(method_name), ShuffledBatches(train_x, train_y, 32, seed), [(val_x, val_y)],
              config, progress=False)
        results[method_name] = _evaluate(method_name, net, data, grid_size, time.perf_counter() - start)
    return results


def _draw_zoom(ax, r: ToyResult) -> None:
    """An inset of the logit panel: the window around the anchor of class A, its cluster and accepted disc."""
    inset = ax.inset_axes([0.52, 0.40, 0.45, 0.45])
    plots.decision_regions(*r.zoom_grid, legend=False, class_names=CLASS_NAMES, ax=inset)
    plots.logit_space(r.train_logits, r.train_y, r.anchors, CLASS_NAMES, ax=inset, legend=False,
                      max_points=len(r.train_y))
    inset.set_xlim(r.zoom_grid[0][0], r.zoom_grid[0][-1])
    inset.set_ylim(r.zoom_grid[1][0], r.zoom_grid[1][-1])
    inset.set_aspect("equal")
    inset.set_title(f"zoom on anchor of {CLASS_NAMES[0]}", fontsize="small")
    inset.set(xlabel="", ylabel="")
    inset.tick_params(labelsize="x-small")
    ax.indicate_inset_zoom(inset, edgecolor="k")
    ax.get_legend().set_loc("lower left")


def draw_toy(results: dict[str, ToyResult]) -> Figure:
    """Fig. 1: one row per method; input space, logit space, open-set score histograms."""
    fig = Figure(figsize=(15.5, 10.0), layout="constrained")
    axes = fig.subplots(len(results), 3)
    for row, (name, r) in zip(np.atleast_2d(axes), results.items()):
        title = METHOD_TITLES.get(name, name)
        rule = ("min rejection score (Eq. 11) >= threshold" if name == "cac"
                else "max softmax probability <= threshold")
        plots.decision_regions(*r.input_grid, r.train_x, r.train_y, CLASS_NAMES, ax=row[0],
                               title=f"{title}: input space, training points",
                               unknown_label=f"rejected as unknown:\n{rule}")
        plots.decision_regions(*r.logit_grid, legend=False, class_names=CLASS_NAMES, ax=row[1])
        plots.logit_space(r.train_logits, r.train_y, r.anchors, CLASS_NAMES, ax=row[1],
                          anchor_label="re-fitted anchors" if name == "cac" else "class means",
                          title=f"{title}: logit space, training points", max_points=len(r.train_y))
        row[1].set_xlim(r.logit_grid[0][0], r.logit_grid[0][-1])
        row[1].set_ylim(r.logit_grid[1][0], r.logit_grid[1][-1])
        row[1].set_aspect("equal")
        if r.zoom_grid is not None:
            _draw_zoom(row[1], r)
        score_name = ("CAC rejection score" if name == "cac"
                      else "log((1 - p) / p), p = max softmax probability")
        positive = bool((r.known_scores > 0).all() and (r.unknown_scores > 0).all())
        plots.score_histograms(r.known_scores, r.unknown_scores, r.threshold, score_name=score_name,
                               log_x=name == "cac" and positive, ax=row[2],
                               title=f"{title}: test points, AUROC {r.auroc:.3f}")
        row[0].set_aspect("equal")
    fig.suptitle("Fig. 1 on a toy problem: grey = rejected as unknown "
                 f"(thresholds accept {100 * ACCEPT_RATE:.0f}% of the training points); "
                 "unknown test points: uniform in the box, "
                 f"at least {UNKNOWN_MARGIN:g} from both class centres", fontsize="medium")
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/figures"), help="folder for toy_2d.png")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs per network")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run_toy(epochs=args.epochs, seed=args.seed)
    path = plots.save_figure(draw_toy(results), args.out / "toy_2d.png")
    for name, r in results.items():
        print(f"{METHOD_TITLES[name]:>13}: closed-set accuracy {r.accuracy:.3f}, AUROC {r.auroc:.3f}, "
              f"threshold {r.threshold:.4g}, trained in {r.seconds:.1f} s")
    print(f"wrote {path} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
