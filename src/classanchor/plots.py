"""The paper's figures from arrays: every function takes numpy arrays (or tensors) and returns a Figure.

Conventions: label -1 = unknown; open-set scores are "higher = more unknown"; accuracies and AUROCs are
fractions in [0, 1] (shown as percentages). Figures are plain :class:`matplotlib.figure.Figure` objects (no
pyplot, no global state) with constrained layout; write them with :func:`save_figure`. A single-axes plot
accepts ``ax=`` to draw into an existing figure and then returns ``ax.figure``. Each paper figure is named
in its function's docstring (Fig. 1: ``examples/toy_2d.py``); tests/plots/test_plots.py draws every one.
"""

from __future__ import annotations

import itertools
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .io import atomic_write
from .metrics import to_numpy

__all__ = ["ablation_bars", "class_colors", "decision_regions", "extremes", "hyperparameter_heatmaps",
           "image_rows", "logit_space", "roc_curves", "row_normalise", "save_figure",
           "score_histograms", "training_curves", "trial_bars", "unknown_confusion"]

#: Colour of everything unknown / rejected (unknown points, the rejected region).
UNKNOWN_COLOR = "#8c8c8c"
#: Display names of the library's method keys; any other key is shown as it is.
METHOD_LABELS = {"cac": "CAC", "anchor": "Anchor loss only", "tuplet": "Tuplet loss only",
                 "ce": "Cross-entropy"}


def _label(name: str) -> str:
    return METHOD_LABELS.get(name, name)


def class_colors(num_classes: int) -> list[tuple[float, float, float]]:
    """One distinct RGB colour per known class: tab10 (up to 10), tab20 (up to 18), then hsv; the greys are
    left out (grey means "unknown" in every plot) and a dark blue completes tab10."""
    if num_classes > 18:
        return [to_rgb(colormaps["hsv"](i / num_classes)) for i in range(num_classes)]
    palette = [*colormaps["tab10" if num_classes <= 10 else "tab20"].colors, "#393b79"]
    return [c for c in map(to_rgb, palette) if max(c) - min(c) > 0.05][:num_classes]


def _wrap(text: str, inches: float, fontsize_pt: float = 12) -> str:
    """Wrap ``text`` to lines that fit ``inches`` at ``fontsize_pt`` (about 0.55 em per character)."""
    return "\n".join(textwrap.wrap(text, max(10, int(inches * 72 / (0.55 * fontsize_pt)))))


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _rotate_if_crowded(ax: Axes, names: Sequence[str], slot_inches: float) -> None:
    """Rotate x tick labels by 45 degrees when the longest would not fit its slot of ``slot_inches``."""
    if max((len(n) for n in names), default=0) * 0.085 > slot_inches:
        for label in ax.get_xticklabels():
            label.set(rotation=45, ha="right", rotation_mode="anchor")


def roc_curves(curves: Mapping[str, tuple], *, title: str = "ROC of the open-set score",
               log_fpr: bool = False, ax: Axes | None = None) -> Figure:
    """ROC curves of open-set scores ``{name: (scores (N,), is_unknown (N,) bool)}``, unknown = positive
    class, AUROC in the legend. ``log_fpr`` adds a panel with the false positive rate on a log axis (down to
    one known sample), where curves that all hug the top-left corner (MNIST) separate (needs ``ax=None``)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    if log_fpr and ax is not None:
        raise ValueError("log_fpr=True draws two panels in a new figure; leave ax=None.")
    beside = len(curves) > 4 and ax is None and not log_fpr
    if ax is None:
        legend_rows = math.ceil((len(curves) + 1) / 2)  # with two panels, under them in two columns
        size = (10.4, 4.8 + 0.22 * legend_rows) if log_fpr else (9.0 if beside else 5.4, 4.8)
        fig = Figure(figsize=size, layout="constrained")
        axes = list(np.atleast_1d(fig.subplots(1, 2 if log_fpr else 1)))
    else:
        fig, axes = ax.figure, [ax]
    smallest = 1.0  # smallest non-zero false positive rate a curve can take (one known sample)
    for color, (name, (scores, is_unknown)) in zip(class_colors(max(len(curves), 1)), curves.items()):
        scores = to_numpy(scores).astype(np.float64).ravel()
        is_unknown = to_numpy(is_unknown).astype(bool).ravel()
        if is_unknown.all() or not is_unknown.any():
            raise ValueError(f"ROC of {name!r} needs both known and unknown samples.")
        smallest = min(smallest, 1.0 / (~is_unknown).sum())
        fpr, tpr, _ = roc_curve(is_unknown, scores)
        label = f"{_label(name)} (AUROC {roc_auc_score(is_unknown, scores):.3f})"
        for panel in axes:
            panel.plot(fpr, tpr, color=color, lw=2, label=label)
    first = axes[0]
    first.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="chance (AUROC 0.5)")
    first.set(xlim=(0, 1), title=_wrap(title, 5.2), aspect="equal")
    if log_fpr:
        chance = np.geomspace(smallest, 1, 50)
        axes[1].plot(chance, chance, ls="--", color="0.5", lw=1)
        axes[1].set(xscale="log", xlim=(smallest, 1), title="the same, false positive rate on a log axis")
    for panel in axes:
        panel.set(ylim=(0, 1.01), xlabel="false positive rate (fraction of knowns rejected)",
                  ylabel="true positive rate (fraction of unknowns rejected)")
        panel.grid(alpha=0.3)
    if beside or log_fpr:  # a figure legend beside the (square) axes or under the two panels
        placement = {"loc": "outside right upper"} if beside else {"loc": "outside lower center", "ncol": 2}
        fig.legend(*first.get_legend_handles_labels(), fontsize="small", **placement)
    else:
        first.legend(loc="lower right", fontsize="small")
    return fig


def score_histograms(known_scores, unknown_scores, threshold: float | None = None, *,
                     title: str = "Open-set score of known and unknown test images",
                     score_name: str = "open-set score", bins: int = 60, log_x: bool = False,
                     ax: Axes | None = None) -> Figure:
    """Overlapping density histograms of the open-set score of knowns and unknowns on shared bins, with the
    ``threshold`` as a vertical line (``score >= threshold`` is rejected); ``log_x``: a log score axis with
    geometric bins (all scores must be > 0), for heavy tails."""
    known, unknown = (to_numpy(s).astype(np.float64).ravel() for s in (known_scores, unknown_scores))
    both = np.concatenate([known, unknown])
    if both.size == 0 or not np.isfinite(both).all():
        raise ValueError("score_histograms needs finite scores.")
    if log_x:
        if (both <= 0).any():
            raise ValueError("log_x=True needs strictly positive scores.")
        edges = np.geomspace(both.min(), both.max() * (1 + 1e-9), bins + 1)
    else:
        edges = np.histogram_bin_edges(both, bins=bins)
    fig, ax = _figure_and_axes(ax, (6.0, 4.0))
    for values, color, name in ((known, "#1f77b4", "known"), (unknown, "#6e6e6e", "unknown")):
        if values.size:
            # log axis: fraction per (geometric) bin, which is what the eye reads on a log axis
            weights = np.full(values.size, 1.0 / values.size) if log_x else None
            ax.hist(values, bins=edges, density=not log_x, weights=weights, histtype="stepfilled",
                    alpha=0.4, color=color, edgecolor=color, lw=1.5, label=f"{name} (n={values.size})")
    if threshold is not None:
        accepted = float((known < threshold).mean()) if known.size else math.nan
        ax.axvline(threshold, color="k", ls="--", lw=1.5,
                   label=f"threshold {threshold:.3g} (accepts {100 * accepted:.1f}% of knowns)")
    if log_x:
        ax.set_xscale("log")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # headroom for the legend
    ax.set(title=_wrap(title, fig.get_figwidth() * 0.95),
           xlabel=_wrap(f"{score_name} (higher = more unknown)", 5.5, 10),
           ylabel="fraction of samples per bin" if log_x else "probability density (per score unit)")
    ax.legend(fontsize="small")
    return fig


def logit_space(logits, labels, anchors, class_names: Sequence[str], unknown_logits=None, *,
                anchor_label: str = "anchors", title: str | None = None, max_points: int = 5000,
                seed: int = 0, legend: bool = True, ax: Axes | None = None) -> Figure:
    """Scatter of logit vectors coloured by class, anchors as large stars, unknowns in grey (Fig. 1 right).
    ``logits`` (N, K) of known samples with ``labels`` (N,) in 0..K-1; ``anchors`` (K, K) anchors or class
    means (or None), called ``anchor_label`` in the legend; ``unknown_logits`` (N_u, K) optional. For K > 2
    the points are projected on the first two principal components of the known logits and the anchors. At
    most ``max_points`` known and as many unknown points are drawn (a fixed random subset)."""
    z = to_numpy(logits).astype(np.float64)
    y = to_numpy(labels).astype(np.int64).ravel()
    k = len(class_names)
    if z.ndim != 2 or z.shape[1] != k or y.shape[0] != z.shape[0]:
        raise ValueError(f"logits {z.shape} must be (N, K={k}) with one label each (labels {y.shape}).")
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError("labels must be in 0..K-1; pass unknown samples as unknown_logits.")
    c = None if anchors is None else to_numpy(anchors).astype(np.float64).reshape(k, k)
    u = None if unknown_logits is None else to_numpy(unknown_logits).astype(np.float64).reshape(-1, k)
    ncol = 1 if k <= 24 else 2  # legend columns beside the axes, for more than six classes
    fig, ax = _figure_and_axes(ax, (6.4, 5.2) if k <= 10 else (7.2 + 2.4 * ncol, 5.6))
    if k == 2:  # the logits themselves
        project = np.asarray
        ax.set(xlabel=f"logit $z_1$ ({class_names[0]})", ylabel=f"logit $z_2$ ({class_names[1]})")
    else:  # a 2-D PCA fitted on the known logits and the anchors
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=0).fit(z if c is None else np.vstack([z, c]))
        project, variance = pca.transform, pca.explained_variance_ratio_
        ax.set(xlabel=f"logit-space PCA component 1 ({100 * variance[0]:.0f}% of variance)",
               ylabel=f"logit-space PCA component 2 ({100 * variance[1]:.0f}% of variance)")
    rng = np.random.default_rng(seed)

    def subset(n: int) -> np.ndarray:
        return np.sort(rng.choice(n, max_points, replace=False)) if n > max_points else np.arange(n)

    colors = class_colors(k)
    size = 8 if z.shape[0] > 1000 else 14
    if u is not None and len(u):
        ax.scatter(*project(u[subset(len(u))]).T, s=size, c=UNKNOWN_COLOR, marker="x", lw=0.8, alpha=0.6,
                   zorder=1, rasterized=True)
    keep = subset(len(z))
    pz, yk = project(z[keep]), y[keep]
    for cls in range(k):
        ax.scatter(*pz[yk == cls].T, s=size, color=colors[cls], alpha=0.7, lw=0, zorder=2, rasterized=True)
    if c is not None:  # hollow stars (class-coloured outline on a black one): a tight cluster inside shows
        for edge, line_width, order in (("k", 3.0, 4), (colors, 1.4, 5)):
            ax.scatter(*project(c).T, s=320, marker="*", facecolors="none", edgecolors=edge, lw=line_width,
                       zorder=order)
    ax.set_title(_wrap(title or ("Logit space" if k == 2 else f"Logit space ({k} classes, PCA projection)"),
                       fig.get_figwidth() * 0.95))
    ax.grid(alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="", color=colors[i], label=name if len(name) <= 28 else
                      name[:27].rstrip(", ") + "…") for i, name in enumerate(class_names)]  # WordNet: 60+
    if u is not None and len(u):
        handles.insert(0, Line2D([], [], marker="x", ls="", color=UNKNOWN_COLOR, label="unknown"))
    if c is not None:
        handles.append(Line2D([], [], marker="*", ls="", markersize=14, markerfacecolor="none",
                              markeredgecolor="k", markeredgewidth=1.5, label=anchor_label))
    if legend:
        placement = ({"loc": "best", "framealpha": 0.9} if k <= 6 else
                     {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "ncol": ncol})
        ax.legend(handles=handles, fontsize="small", **placement)
    return fig


def decision_regions(grid_x, grid_y, predicted, points=None, labels=None,
                     class_names: Sequence[str] | None = None, *, title: str = "Input space",
                     xlabel: str = "input $x_1$", ylabel: str = "input $x_2$",
                     unknown_label: str = "rejected as unknown", legend: bool = True,
                     ax: Axes | None = None) -> Figure:
    """A 2-D plane coloured by predicted class with the rejected region in grey, points on top (Fig. 1):
    ``predicted`` (H, W) is the class at each point of the grid ``grid_x`` (W,) x ``grid_y`` (H,), increasing,
    -1 = rejected; optional ``points`` (N, 2) with ``labels`` (N,) in 0..K-1. K is ``len(class_names)``, by
    default ``predicted.max() + 1`` (names "class 0", ...)."""
    gx, gy = to_numpy(grid_x).astype(np.float64).ravel(), to_numpy(grid_y).astype(np.float64).ravel()
    pred = to_numpy(predicted).astype(np.int64)
    if pred.shape != (gy.size, gx.size):
        raise ValueError(f"predicted must have shape (len(grid_y), len(grid_x)) = {(gy.size, gx.size)}, "
                         f"got {pred.shape}.")
    k = len(class_names) if class_names is not None else int(max(pred.max(), 0)) + 1
    names = list(class_names) if class_names is not None else [f"class {i}" for i in range(k)]
    if pred.min() < -1 or pred.max() >= k:
        raise ValueError(f"predicted must hold -1 (unknown) or a class in 0..{k - 1}.")
    colors = class_colors(k)
    cmap = ListedColormap([to_rgb(UNKNOWN_COLOR), *(0.35 * np.asarray(colors) + 0.65)])  # light class colours
    fig, ax = _figure_and_axes(ax, (5.4, 5.0))
    dx = (gx[-1] - gx[0]) / max(gx.size - 1, 1) / 2
    dy = (gy[-1] - gy[0]) / max(gy.size - 1, 1) / 2
    xlim, ylim = (gx[0] - dx, gx[-1] + dx), (gy[0] - dy, gy[-1] + dy)
    ax.imshow(pred + 1, cmap=cmap, vmin=-0.5, vmax=k + 0.5, origin="lower", interpolation="nearest",
              extent=xlim + ylim, aspect="auto", zorder=0)
    if points is not None:
        p = to_numpy(points).astype(np.float64).reshape(-1, 2)
        lab = to_numpy(labels).astype(np.int64).ravel()
        for cls in range(k):
            ax.scatter(*p[lab == cls].T, s=10, color=colors[cls], edgecolors="k", lw=0.3, zorder=2,
                       rasterized=True)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=xlim, ylim=ylim)
    if legend:
        handles = [Patch(facecolor=UNKNOWN_COLOR, edgecolor="0.3", label=unknown_label)]
        handles += [Line2D([], [], marker="o", ls="", markerfacecolor=colors[cls], markeredgecolor="k",
                           markeredgewidth=0.4, label=names[cls]) for cls in range(k)]
        ax.legend(handles=handles, fontsize="small", loc="best", framealpha=0.9)
    return fig


def row_normalise(counts) -> np.ndarray:
    """Each row divided by its sum (float64); rows summing to 0 become NaN (shown as "n/a")."""
    counts = to_numpy(counts).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / totals, np.nan)


def _annotated_heatmap(ax: Axes, values: np.ndarray, fmt, cmap: str, vmin=None, vmax=None):
    """imshow of ``values`` with each cell's ``fmt(value)`` written in it (NaN cells grey, 'n/a')."""
    image = ax.imshow(np.ma.masked_invalid(values), cmap=colormaps[cmap].with_extremes(bad="0.92"), vmin=vmin,
                      vmax=vmax, aspect="auto", interpolation="nearest")
    fontsize = float(np.clip(130 / max(*values.shape, 1), 5.5, 10))
    for (r, c), v in np.ndenumerate(values):
        red, green, blue, _ = image.cmap(image.norm(v))
        dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # white text on a dark cell
        text, color = ("n/a", "0.4") if np.isnan(v) else (fmt(v), "w" if dark else "k")
        ax.text(c, r, text, ha="center", va="center", fontsize=fontsize, color=color)
    return image


def unknown_confusion(matrix, unknown_names: Sequence[str], known_names: Sequence[str], *,
                      row_totals=None, title: str = "Unknown images accepted as known: which known class?",
                      ax: Axes | None = None) -> Figure:
    """The heatmap of the paper's Fig. 4, percentages in the cells: ``matrix`` (U, K) is :func:`row_normalise`
    of the counts of :func:`classanchor.metrics.unknown_confusion` (row = unknown class, column = the known
    class it was predicted as; a NaN row, no unknown of that class accepted, shows "n/a"); ``row_totals``
    (U,), optional, is shown beside the row names."""
    m = to_numpy(matrix).astype(np.float64)
    u, k = len(unknown_names), len(known_names)
    if m.shape != (u, k):
        raise ValueError(f"matrix has shape {m.shape}, expected (len(unknown_names), len(known_names)) = "
                         f"{(u, k)}.")
    width = max(6.0, 2.6 + 0.5 * k + 0.07 * max(len(n) for n in unknown_names))
    fig, ax = _figure_and_axes(ax, (width, 1.8 + 0.4 * u + 0.06 * max(len(n) for n in known_names)))
    image = _annotated_heatmap(ax, 100 * m, lambda v: f"{v:.0f}%", "Blues", vmin=0, vmax=100)
    rows = list(unknown_names) if row_totals is None else [
        f"{n} (n={int(t)})" for n, t in zip(unknown_names, to_numpy(row_totals).ravel())]
    ax.set_xticks(range(k), labels=list(known_names))
    ax.set_yticks(range(u), labels=rows)
    _rotate_if_crowded(ax, list(known_names), 0.5)
    ax.set(title=_wrap(title, fig.get_figwidth() * 0.8), xlabel="predicted known class",
           ylabel="true unknown class")
    fig.colorbar(image, ax=ax, label="share of the row's\naccepted unknowns (%)", shrink=0.9)
    return fig


_METRICS = ("closed-set accuracy", "AUROC")  # the two panels of the trial, ablation and sweep figures


def _as_percent_table(per_trial: Mapping[str, Sequence]) -> tuple[list[str], np.ndarray]:
    """{method: [(acc, auroc), ...]} -> names and (M, T_max, 2) percentages, NaN-padded."""
    rows = [100 * np.asarray(v, dtype=np.float64).reshape(-1, 2) for v in per_trial.values()]
    table = np.full((len(rows), max((len(r) for r in rows), default=0), 2), np.nan)
    for i, values in enumerate(rows):
        table[i, : len(values)] = values
    return list(per_trial), table


def _ylim_for(values: np.ndarray, extra=()) -> tuple[float, float]:
    finite = np.concatenate([values[np.isfinite(values)], [e for e in extra if np.isfinite(e)]])
    if finite.size == 0:
        return 0.0, 100.0
    lo, hi = finite.min(), finite.max()
    span = max(hi - lo, 2.0)
    return max(0.0, math.floor(lo - 0.6 * span)), min(100.0, hi + 0.35 * span)


def _value_labels(ax: Axes, values: Sequence[tuple[float, object]], min_gap: float) -> None:
    """Write each ``(value, colour)`` as text just right of the axes at its height, pushing labels apart
    (in data units, at least ``min_gap``) where values are so close that the texts would overlap."""
    order = sorted(values, key=lambda v: v[0])
    placed = list(itertools.accumulate((v for v, _ in order), lambda below, v: max(v, below + min_gap)))
    shift = (placed[-1] - order[-1][0]) / 2 if placed else 0.0  # centre the group on its values again
    for (value, color), at in zip(order, placed):
        ax.annotate(f"{value:.1f}", (1.0, value), xycoords=("axes fraction", "data"),
                    xytext=(1.01, at - shift), textcoords=("axes fraction", "data"), va="center",
                    fontsize="small", color=color, annotation_clip=False)


def trial_bars(per_trial: Mapping[str, Sequence[tuple[float, float]]],
               published: Mapping[str, tuple[float | None, float | None]] | None = None, *,
               trial_labels: Sequence[str] | None = None,
               title: str = "Accuracy and AUROC per trial") -> Figure:
    """Bars of closed-set accuracy and AUROC per trial and method, ``{method: [(accuracy, auroc) of each
    trial]}``; the paper's ``published`` ``{method: (accuracy, auroc)}`` (either may be None) as dashed lines
    in the method's colour. The value axis starts near the smallest value so that small differences show."""
    names, table = _as_percent_table(per_trial)
    published = dict(published or {})
    trials = table.shape[1]
    ticks = [f"trial {t + 1}" for t in range(trials)] if trial_labels is None else [*map(str, trial_labels)]
    if len(ticks) != trials:
        raise ValueError(f"{len(ticks)} trial_labels for {trials} trials.")
    colors = dict(zip(names, class_colors(max(len(names), 1))))
    panel = 1.4 + max(2.6, 0.28 * (trials + 1) * max(len(names), 1))
    fig = Figure(figsize=(2 * panel + 2.6, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    width = 0.8 / max(len(names), 1)
    x = np.arange(trials + 1)  # the trials, then their mean
    for j, (ax, metric) in enumerate(zip(axes, _METRICS)):
        lines = []  # (published value, colour) drawn in this panel
        for i, name in enumerate(names):
            values = table[i, :, j]
            bars = np.append(values, np.nanmean(values) if np.isfinite(values).any() else np.nan)
            offset = (i - (len(names) - 1) / 2) * width
            ax.bar(x + offset, bars, width=width * 0.92, color=colors[name], label=_label(name),
                   edgecolor="k", lw=0.4)
            pub = published[name][j] if name in published else None
            if pub is not None and np.isfinite(pub):
                lines.append((100 * pub, colors[name]))
                ax.axhline(100 * pub, color=colors[name], ls="--", lw=1.6)
        lo, hi = _ylim_for(table[:, :, j], [value for value, _ in lines])
        ax.set_ylim(lo, hi)
        _value_labels(ax, lines, min_gap=0.055 * (hi - lo))
        ax.set_xticks(x, labels=ticks + ["mean"])
        ax.set(title=metric, xlabel="trial (last group: mean over trials)", ylabel=f"{metric} (%)")
        ax.grid(axis="y", alpha=0.3)
        _rotate_if_crowded(ax, ticks, (panel - 1.4) / (trials + 1))
    handles, labels = axes[0].get_legend_handles_labels()
    if any(name in published for name in names):
        handles.append(Line2D([], [], color="k", ls="--", lw=1.6))
        labels.append("published value\n(method's colour)")
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    fig.suptitle(title)
    return fig


def training_curves(histories: Mapping[str, Sequence[Mapping]], *,
                    best_epochs: Mapping[str, int] | None = None, anchor_loss_of: Sequence[str] | None = None,
                    title: str = "Training curves") -> Figure:
    """Loss, validation accuracy and validation anchor loss per epoch of ``{job: [epoch record, ...]}`` as in
    ``history.json`` (missing keys are skipped); ``best_epochs``: ``{job: epoch}`` of the kept checkpoint,
    ringed on every curve; ``anchor_loss_of``: the jobs whose validation anchor loss (mean ``d_y``, the CAC
    checkpoint rule) is drawn, default all. A dotted vertical line marks where a new training stage starts."""
    names = list(histories)
    if not names:
        raise ValueError("training_curves needs at least one history.")
    colors = dict(zip(names, class_colors(len(names))))
    anchor_jobs = names if anchor_loss_of is None else [n for n in names if n in set(anchor_loss_of)]
    # each panel: its axis label, the jobs drawn in it and their (history key, line style)
    panels = [("loss per sample", names, [("train_loss", "-"), ("val_loss", "--")]),
              ("validation accuracy (%)", names, [("val_accuracy", "-")]),
              ("validation anchor loss (mean $d_y$)", anchor_jobs, [("val_anchor_loss", "-")])]
    panels = panels if anchor_jobs else panels[:2]
    fig = Figure(figsize=(3.6 * len(panels) + 1.6, 3.8), layout="constrained")
    best_epochs = dict(best_epochs or {})
    records = {name: list(histories[name]) for name in names}

    def column(name, key):
        return np.array([r.get(key, np.nan) for r in records[name]], dtype=np.float64)

    stage_starts: set[int] = set()
    for epochs, stages in ((column(n, "epoch"), column(n, "stage")) for n in names):
        stage_starts.update(int(e) for e, a, b in zip(epochs[1:], stages[:-1], stages[1:]) if a != b)
    for ax, (label, jobs, lines) in zip(fig.subplots(1, len(panels)), panels):
        for name, (key, style) in itertools.product(jobs, lines):
            epochs, values = column(name, "epoch"), column(name, key) * (100 if key == "val_accuracy" else 1)
            if not np.isfinite(values).any():
                continue
            ax.plot(epochs, values, ls=style, color=colors[name], marker="o", markersize=3, lw=1.6)
            best = best_epochs.get(name)
            if best is not None and best in epochs:
                at = int(np.flatnonzero(epochs == best)[0])
                ax.plot(epochs[at], values[at], marker="o", markersize=11, markerfacecolor="none",
                        markeredgecolor=colors[name], markeredgewidth=1.6, ls="")
        for start in sorted(stage_starts):
            ax.axvline(start - 0.5, color="0.5", ls=":", lw=1.2)
        ax.set(xlabel="epoch", ylabel=label, title=label.split(" (")[0])
        ax.ticklabel_format(axis="y", useOffset=False)  # plain values, no "+1e1" offset above the axis
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles = [Line2D([], [], color=colors[n], lw=2, label=_label(n)) for n in names]
    handles += [Line2D([], [], color="k", ls="-", lw=1.6, label="training"),
                Line2D([], [], color="k", ls="--", lw=1.6, label="validation")]
    if best_epochs:
        handles.append(Line2D([], [], marker="o", markersize=9, markerfacecolor="none", markeredgecolor="k",
                              ls="", label="kept checkpoint"))
    if stage_starts:
        handles.append(Line2D([], [], color="0.5", ls=":", lw=1.2, label="new training stage"))
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    fig.suptitle(title)
    return fig


def hyperparameter_heatmaps(magnitudes, weights, accuracy, auroc, *,
                            title: str = "Sensitivity of CAC to its hyperparameters") -> Figure:
    """The paper's Fig. 2: closed-set accuracy and AUROC over anchor magnitude (M,) x anchor weight (W,);
    ``accuracy``, ``auroc``: (M, W) fractions in [0, 1], NaN for a configuration not run ("n/a")."""
    mags, wts = to_numpy(magnitudes).ravel(), to_numpy(weights).ravel()
    acc, roc = to_numpy(accuracy).astype(np.float64), to_numpy(auroc).astype(np.float64)
    for name, values in (("accuracy", acc), ("auroc", roc)):
        if values.shape != (mags.size, wts.size):
            raise ValueError(f"{name} has shape {values.shape}, expected (len(magnitudes), len(weights)) = "
                             f"{(mags.size, wts.size)}.")
    fig = Figure(figsize=(3.2 + 1.4 * 0.62 * wts.size * 2, 1.9 + 0.48 * mags.size), layout="constrained")
    weight_labels = [f"{w:g}" for w in wts]
    for ax, values, metric in zip(fig.subplots(1, 2), (acc, roc), _METRICS):
        image = _annotated_heatmap(ax, 100 * values, lambda v: f"{v:.1f}", "viridis")
        ax.set_xticks(range(wts.size), labels=weight_labels)
        ax.set_yticks(range(mags.size), labels=[f"{m:g}" for m in mags])
        _rotate_if_crowded(ax, weight_labels, 0.62)
        ax.set(title=metric, xlabel=r"anchor weight $\lambda$ (weight of the anchor loss)",
               ylabel=r"anchor magnitude $\alpha$ (logit units)")
        fig.colorbar(image, ax=ax, label=f"{metric} (%)", shrink=0.9)
    fig.suptitle(title)
    return fig


def ablation_bars(results: Mapping[str, Sequence[tuple[float, float]]], *,
                  title: str = "Effect of the two terms of the CAC loss") -> Figure:
    """The paper's Fig. 3: mean +- standard deviation over trials of accuracy and AUROC per loss variant,
    ``{variant: [(accuracy, auroc) of each trial]}`` in drawing order; the trials are shown as dots, the error
    bar is the sample standard deviation (ddof = 1; none for one trial)."""
    names, table = _as_percent_table(results)
    colors = class_colors(max(len(names), 1))
    fig = Figure(figsize=(3.0 + 1.6 * len(names), 4.2), layout="constrained")
    x = np.arange(len(names))
    for j, (ax, metric) in enumerate(zip(fig.subplots(1, 2), _METRICS)):
        values = table[:, :, j]
        counts = np.isfinite(values).sum(axis=1)
        means = np.array([np.nanmean(v) if c else np.nan for v, c in zip(values, counts)])
        stds = np.array([np.nanstd(v, ddof=1) if c > 1 else 0.0 for v, c in zip(values, counts)])
        ax.bar(x, means, yerr=stds, capsize=6, color=colors, edgecolor="k", lw=0.6, width=0.6,
               error_kw={"lw": 1.4})
        for i in range(len(names)):
            dots = values[i][np.isfinite(values[i])]  # one per trial, spread a little
            ax.scatter(x[i] + np.linspace(-0.12, 0.12, dots.size), dots, s=14, color="k", zorder=3)
            if np.isfinite(means[i]):
                ax.annotate(f"{means[i]:.1f}", (x[i], means[i] + stds[i]), textcoords="offset points",
                            xytext=(0, 4), ha="center", fontsize="small")
        ax.set_xticks(x, labels=["\n".join(textwrap.wrap(_label(n), 12)) for n in names])
        ax.set(ylim=_ylim_for(values), title=metric, xlabel="loss variant", ylabel=f"{metric} (%)")
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(facecolor="w", edgecolor="k", label="mean over trials"),
               Line2D([], [], color="k", marker="_", markersize=10, ls="-", lw=1.4,
                      label="± 1 std (ddof=1)"),
               Line2D([], [], color="k", marker="o", markersize=4, ls="", label="one trial")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize="small")
    fig.suptitle(title)
    return fig


def extremes(scores, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``n`` highest scores (highest first) and the ``n`` lowest (lowest first), ties broken
    by the smaller index; with fewer than ``2 n`` scores the lists overlap (all scores for ``n`` >= N)."""
    values = to_numpy(scores).astype(np.float64).ravel()
    if np.isnan(values).any():
        raise ValueError("scores contain NaN; extremes are undefined.")
    n = max(0, min(int(n), values.size))
    return np.argsort(-values, kind="stable")[:n], np.argsort(values, kind="stable")[:n]


def _captioned(images, captions: Sequence[str], what: str, cell_inches: float) -> tuple[np.ndarray, list]:
    """uint8 (N, H, W) or (N, H, W, C) with C in {1, 3, 4} as (N, H, W) grey or (N, H, W, 3|4), and the
    captions wrapped to the cell (line breaks kept), three wrapped lines at most per line (WordNet: "…")."""
    imgs = to_numpy(images)
    if imgs.ndim == 4 and imgs.shape[-1] == 1:
        imgs = imgs[..., 0]
    if imgs.size and (imgs.ndim not in (3, 4) or (imgs.ndim == 4 and imgs.shape[-1] not in (3, 4))):
        raise ValueError(f"{what} must be (N, H, W) or (N, H, W, C) with C in 1, 3, 4; got {imgs.shape}.")
    if len(captions) != len(imgs):
        raise ValueError(f"{len(imgs)} {what} but {len(captions)} captions.")
    wrapper = textwrap.TextWrapper(max(12, int(cell_inches * 11)), max_lines=3, placeholder=" …")
    return imgs, ["\n".join(map(wrapper.fill, c.splitlines())) for c in captions]


def _draw_images(axes, imgs: np.ndarray, captions: Sequence[str]) -> None:
    """Image i in ``axes[i]`` (no ticks) with ``captions[i]`` below it; the axes left over are hidden."""
    for i, ax in enumerate(axes):
        ax.set(xticks=[], yticks=[])
        if i >= len(imgs):
            ax.set_axis_off()
            continue
        grey = {"cmap": "gray", "vmin": 0, "vmax": 255} if imgs.ndim == 3 else {}
        ax.imshow(imgs[i], interpolation="nearest", **grey)
        ax.set_xlabel(captions[i], fontsize="small")


def image_rows(rows: Sequence[tuple[str, object, Sequence[str]]], *, title: str = "Test images",
               cell_inches: float = 1.6) -> Figure:
    """Titled rows of captioned images (Fig. 5: one row per group of extremes, captions with the predicted
    class and the score), ``[(row title, images, captions), ...]``: uint8 (N, H, W, C) with C in {1, 3, 4}
    or (N, H, W) grey and N captions each; the rows may differ in length (an empty one: "no images")."""
    prepared = [(name, *_captioned(images, captions, f"images of row {name!r}", cell_inches))
                for name, images, captions in rows]
    if not prepared:
        raise ValueError("image_rows needs at least one row.")
    ncols = max(1, max(len(imgs) for _, imgs, _ in prepared))
    lines = max((c.count("\n") + 1 for _, _, captions in prepared for c in captions), default=1)
    row_height = cell_inches + 0.17 * lines + 0.45
    fig = Figure(figsize=(cell_inches * ncols + 0.3, row_height * len(prepared) + 0.5), layout="constrained")
    for sub, (name, imgs, captions) in zip(np.atleast_1d(fig.subfigures(len(prepared), 1)), prepared):
        sub.suptitle(name, fontsize="medium", fontweight="bold")
        axes = sub.subplots(1, ncols, squeeze=False).ravel()
        _draw_images(axes, imgs, captions)
        if not len(imgs):
            axes[0].text(0.5, 0.5, "no images", ha="center", va="center", transform=axes[0].transAxes)
    fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 150) -> Path:
    """Write ``fig`` as a PNG atomically (:func:`classanchor.io.atomic_write`) and close it in pyplot if it
    is a pyplot figure (a plain Figure is just released); returns the path."""
    path = atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, facecolor="white"))
    if getattr(fig.canvas, "manager", None) is not None:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path
