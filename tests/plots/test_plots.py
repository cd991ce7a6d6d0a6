"""Every plot renders to a valid PNG, and the numbers it is drawn from match a brute-force computation."""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.container import BarContainer
from PIL import Image
from sklearn.metrics import roc_auc_score

from classanchor import plots

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "toy_2d.py"
CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def check_png(path: Path) -> None:
    """A real PNG of non-trivial size whose pixels are not (nearly) all one colour."""
    assert path.exists(), path
    assert path.stat().st_size > 10_000, f"{path} is only {path.stat().st_size} bytes"
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert min(pixels.shape) > 200
    assert pixels.std() > 5.0, "the image is (nearly) blank"


def _synthetic():
    rng = np.random.default_rng(0)
    is_unknown = rng.random(300) < 0.4
    known_y = rng.integers(0, 10, 800)
    logits10 = 10 * np.eye(10)[known_y] + rng.normal(0, 2, (800, 10))
    y2 = rng.integers(0, 2, 300)
    gx, gy = np.linspace(-4, 4, 120), np.linspace(-3, 3, 90)
    xx, yy = np.meshgrid(gx, gy)
    regions = np.where(xx < 0, 0, 1)
    regions[xx**2 + yy**2 > 6] = -1
    counts = rng.integers(0, 40, (6, 4))
    counts[1] = 0
    trials = {"cac": [(0.93 + 0.01 * rng.random(), 0.80 + 0.02 * rng.random()) for _ in range(5)],
              "ce": [(0.92 + 0.01 * rng.random(), 0.68 + 0.03 * rng.random()) for _ in range(5)]}
    return {
        "roc": lambda: plots.roc_curves({"cac": (rng.normal(1.5 * is_unknown, 1), is_unknown),
                                         "ce": (rng.normal(0.5 * is_unknown, 1), is_unknown)}),
        "histograms": lambda: plots.score_histograms(rng.gamma(2, 0.5, 400), rng.gamma(4, 1, 200), 2.0),
        "histograms_log": lambda: plots.score_histograms(rng.gamma(2, 0.5, 400), rng.gamma(4, 9, 200), 2.0,
                                                         log_x=True),
        "logit_k2": lambda: plots.logit_space(10 * np.eye(2)[y2] + rng.normal(0, 1, (300, 2)), y2,
                                              10 * np.eye(2), ["A", "B"], rng.normal(5, 4, (100, 2))),
        "logit_k10": lambda: plots.logit_space(logits10, known_y, 10 * np.eye(10), CIFAR,
                                               rng.normal(3, 3, (200, 10))),
        "regions": lambda: plots.decision_regions(gx, gy, regions, rng.normal(0, 1, (100, 2)), y2[:100],
                                                  ["A", "B"]),
        "confusion": lambda: plots.unknown_confusion(plots.row_normalise(counts), CIFAR[:6], CIFAR[6:],
                                                     row_totals=counts.sum(axis=1)),
        "confusion_20": lambda: plots.unknown_confusion(rng.dirichlet(np.ones(20), 20),
                                                        [f"unknown class {i}" for i in range(20)],
                                                        [f"known class {i}" for i in range(20)]),
        "trials": lambda: plots.trial_bars(trials, {"cac": (0.934, 0.803), "ce": (0.927, 0.677)}),
        "heatmaps": lambda: plots.hyperparameter_heatmaps([1, 5, 10, 20], [0.05, 0.1, 0.5, 0.8, 1.0],
                                                          0.7 + 0.05 * rng.random((4, 5)),
                                                          0.75 + 0.05 * rng.random((4, 5))),
        "ablation": lambda: plots.ablation_bars({"cac": trials["cac"], "anchor": trials["ce"],
                                                 "tuplet": trials["ce"][:3]}),
        "image_rows": lambda: plots.image_rows([(
            "known", rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
            [f"predicted 'cat', score {s:.3f}" for s in rng.random(6)])]),
        "image_rows_grey": lambda: plots.image_rows([
            ("digits", rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), ["digit"] * 5),
            ("none", np.zeros((0, 28, 28), np.uint8), [])]),
    }


PLOTS = _synthetic()


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_every_plot_renders_to_a_valid_png(name, tmp_path):
    fig = PLOTS[name]()
    assert fig.get_axes(), "empty figure"
    data_axes = [ax for ax in fig.get_axes() if ax.has_data() and ax.get_label() != "<colorbar>"]
    assert fig.get_suptitle() or all(ax.get_title() for ax in data_axes), "a plot without a title"
    for ax in data_axes:  # an axis with tick labels has a name
        assert ax.get_xlabel() or not any(t.get_text() for t in ax.get_xticklabels()), ax
        assert ax.get_ylabel() or not any(t.get_text() for t in ax.get_yticklabels()), ax
    with warnings.catch_warnings():  # e.g. "constrained_layout not applied because axes sizes collapsed"
        warnings.simplefilter("error")
        path = plots.save_figure(fig, tmp_path / f"{name}.png")
    check_png(path)


def test_logit_space_legend_of_twenty_long_class_names_leaves_the_plot_its_room(tmp_path):
    rng = np.random.default_rng(4)
    names = [f"class {i}, a WordNet synonym set with a long Latin name, Genus species" for i in range(20)]
    y = rng.integers(0, 20, 500)
    fig = plots.logit_space(10 * np.eye(20)[y] + rng.normal(0, 3, (500, 20)), y, 10 * np.eye(20), names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.save_figure(fig, tmp_path / "logit_k20.png", dpi=60)
    assert fig.axes[0].get_position().width > 0.5  # the legend beside it takes less than half the width
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0] == "class 0, a WordNet synonym…" and max(map(len, labels)) <= 28


def test_save_figure_is_atomic_readable_and_closes_pyplot_figures(tmp_path):
    fig = plt.figure()
    fig.add_subplot().plot(np.sin(np.linspace(0, 20, 500)))
    path = plots.save_figure(fig, tmp_path / "sub" / "line.png")
    assert sorted(os.listdir(path.parent)) == ["line.png"]  # no temporary file left behind
    assert path.stat().st_mode & 0o777 == 0o644
    assert not plt.fignum_exists(fig.number)
    check_png(path)


def test_unknown_confusion_cells_show_the_matrix_percentages():
    matrix = plots.row_normalise(np.array([[1, 3, 0], [0, 0, 0], [5, 0, 5]]))
    fig = plots.unknown_confusion(matrix, ["u0", "u1", "u2"], ["k0", "k1", "k2"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["25%", "75%", "0%", "n/a", "n/a", "n/a", "50%", "0%", "50%"]
    np.testing.assert_array_equal(matrix[[0, 2]], [[0.25, 0.75, 0], [0.5, 0, 0.5]])  # each row sums to 1


def test_extremes_match_sorted_with_ties():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 10, 200).astype(float)  # many ties
    highest, lowest = plots.extremes(scores, 7)
    by_index = range(len(scores))
    assert highest.tolist() == sorted(by_index, key=lambda i: (-scores[i], i))[:7]
    assert lowest.tolist() == sorted(by_index, key=lambda i: (scores[i], i))[:7]
    high_all, low_all = plots.extremes(scores[:3], 10)
    assert len(high_all) == len(low_all) == 3


def test_roc_legend_reports_the_sklearn_auroc():
    rng = np.random.default_rng(3)
    is_unknown = rng.random(500) < 0.5
    scores = rng.normal(is_unknown * 1.0, 1.0)
    fig = plots.roc_curves({"cac": (scores, is_unknown)})
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0] == f"CAC (AUROC {roc_auc_score(is_unknown, scores):.3f})"


def test_score_histograms_share_bins_and_are_densities():
    rng = np.random.default_rng(4)
    known, unknown = rng.normal(0, 1, 300), rng.normal(3, 1, 100)
    fig = plots.score_histograms(known, unknown, threshold=1.0, bins=20)
    edges = np.histogram_bin_edges(np.concatenate([known, unknown]), bins=20)
    for polygon, values in zip(fig.axes[0].patches, (known, unknown)):
        xy = polygon.get_xy()
        assert set(np.round(xy[:, 0], 9)) <= set(np.round(edges, 9))  # the shared bins
        density, _ = np.histogram(values, bins=edges, density=True)
        assert xy[:, 1].max() == pytest.approx(density.max())


def test_logit_space_draws_the_logits_directly_for_two_classes_and_a_pca_otherwise():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 50)
    z = rng.normal(0, 3, (50, 2))
    fig = plots.logit_space(z, y, 10 * np.eye(2), ["a", "b"])
    drawn = np.concatenate([c.get_offsets() for c in fig.axes[0].collections[:2]])
    expected = np.concatenate([z[y == 0], z[y == 1]])
    np.testing.assert_allclose(drawn, expected)

    y = rng.integers(0, 5, 200)
    z = 10 * np.eye(5)[y] + rng.normal(0, 1, (200, 5))
    anchors = 10 * np.eye(5)
    fig = plots.logit_space(z, y, anchors, list("abcde"))
    drawn_anchors = fig.axes[0].collections[-1].get_offsets()
    # brute force: PCA of the logits together with the anchors by SVD, compared up to the sign of an axis
    both = np.vstack([z, anchors])
    centred = both - both.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    reference = (anchors - both.mean(axis=0)) @ vt[:2].T
    signs = np.sign((drawn_anchors * reference).sum(axis=0))
    np.testing.assert_allclose(drawn_anchors * signs, reference, atol=1e-8)
    variance = singular**2 / (singular**2).sum()
    assert f"({100 * variance[0]:.0f}% of variance)" in fig.axes[0].get_xlabel()


def test_decision_regions_image_is_the_prediction_map():
    predicted = np.array([[-1, 0, 1], [1, -1, 0]])
    fig = plots.decision_regions(np.arange(3.0), np.arange(2.0), predicted, class_names=["a", "b"])
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), predicted + 1)
    with pytest.raises(ValueError, match="shape"):
        plots.decision_regions(np.arange(2.0), np.arange(2.0), predicted)


def test_heatmaps_bars_and_grid_are_drawn_from_the_given_numbers():
    acc = np.array([[0.7, 0.71], [0.72, np.nan]])
    roc = np.array([[0.8, 0.81], [0.82, 0.83]])
    fig = plots.hyperparameter_heatmaps([5, 10], [0.1, 0.5], acc, roc)
    assert [t.get_text() for t in fig.axes[0].texts] == ["70.0", "71.0", "72.0", "n/a"]
    assert [t.get_text() for t in fig.axes[1].texts] == ["80.0", "81.0", "82.0", "83.0"]
    assert "anchor magnitude" in fig.axes[0].get_ylabel() and "anchor weight" in fig.axes[0].get_xlabel()

    results = {"cac": [(0.9, 0.8), (0.92, 0.84)], "anchor": [(0.91, 0.7)]}
    fig = plots.ablation_bars(results)
    heights = [p.get_height() for p in fig.axes[1].patches]
    assert heights == pytest.approx([82.0, 70.0])
    bars = next(c for c in fig.axes[1].containers if isinstance(c, BarContainer))
    caps = bars.errorbar.lines[2][0].get_segments()  # the vertical error bars
    assert caps[0][:, 1] == pytest.approx([82 - np.std([80, 84], ddof=1), 82 + np.std([80, 84], ddof=1)])

    fig = plots.trial_bars({"cac": [(0.9, 0.8), (0.92, 0.84)]}, {"cac": (0.93, None)})
    assert [p.get_height() for p in fig.axes[0].patches] == pytest.approx([90, 92, 91])
    assert [p.get_height() for p in fig.axes[1].patches] == pytest.approx([80, 84, 82])
    assert [line.get_ydata()[0] for line in fig.axes[0].lines] == pytest.approx([93.0])
    assert not fig.axes[1].lines  # no published AUROC given

    fig = plots.image_rows([("row", np.zeros((5, 8, 8, 3), np.uint8), [f"c{i}" for i in range(5)])])
    assert sum(bool(ax.images) for ax in fig.axes) == 5
    assert [ax.get_xlabel() for ax in fig.axes if ax.images] == [f"c{i}" for i in range(5)]


def _load_example():
    spec = importlib.util.spec_from_file_location("toy_2d_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_toy_example_runs_quickly_and_calibrates_its_thresholds(tmp_path):
    toy = _load_example()
    results = toy.run_toy(epochs=3, n_per_class=60, grid_size=40)
    assert set(results) == {"ce", "cac"}
    for name, r in results.items():
        _, train_scores = toy.decide(name, torch.from_numpy(r.train_logits), torch.from_numpy(r.anchors))
        assert (train_scores.numpy() < r.threshold).mean() >= toy.ACCEPT_RATE
        assert r.input_grid[2].shape == (40, 40) and r.logit_grid[2].shape == (40, 40)
        assert 0.0 <= r.auroc <= 1.0
    path = plots.save_figure(toy.draw_toy(results), tmp_path / "toy_2d.png")
    check_png(path)
