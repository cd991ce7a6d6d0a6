"""The run-folder report: every figure is written and embedded, and the numbers behind them match brute force."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from classanchor import plots
from classanchor.cli import main
from classanchor.report import markdown_to_html, write_report

from .data.conftest import make_mnist
from .plots.test_plots import check_png

KNOWN = ["cat", "dog", "frog"]
UNKNOWN_IDS = [11, 12, 15]  # original class ids of the unknown classes (not 0..K-1)
UNKNOWN = ["u11", "u12", "u15"]


# ----------------------------------------------------------------------------------- brute force

def brute_cac(train, train_labels, test):
    """Algorithm 1 with explicit loops: anchors, distances, Eq. 11 scores; returns (prediction, score)."""
    k = train.shape[1]
    anchors = np.zeros((k, k))
    for c in range(k):
        rows = [z for z, y in zip(train, train_labels) if y == c and np.argmax(z) == c]
        anchors[c] = np.mean(rows if rows else [z for z, y in zip(train, train_labels) if y == c], axis=0)
    predictions, scores = [], []
    for z in test:
        d = np.array([math.sqrt(sum((z[j] - anchors[c][j]) ** 2 for j in range(k))) for c in range(k)])
        softmin = np.exp(-d) / np.exp(-d).sum()
        s = (1 - softmin) * d
        predictions.append(int(np.argmin(s)))
        scores.append(float(s.min()))
    return np.array(predictions), np.array(scores)


def brute_msp(logits):
    """(argmax z, -max softmax(z)) per row."""
    out = []
    for z in logits:
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        out.append((int(np.argmax(z)), -float(p.max())))
    return np.array([o[0] for o in out]), np.array([o[1] for o in out])


def brute_threshold(val_scores, rate=0.95):
    """Smallest float32 above the ceil(rate n)-th smallest validation score."""
    ordered = sorted(val_scores.tolist())
    return float(np.nextafter(np.float32(ordered[math.ceil(rate * len(ordered)) - 1]), np.float32(np.inf)))


# ---------------------------------------------------------------------------------- run folders

def _logits(rng, labels, k, spread):
    return (6 * np.eye(k)[np.clip(labels, 0, None)] * (labels >= 0)[:, None]
            + rng.normal(0, spread, (labels.size, k))).astype(np.float32)


def write_job(job_dir: Path, rng, *, method, train_labels, val_labels, test_labels, test_classes, result,
              history=True, logits=True, k=3):
    job_dir.mkdir(parents=True)
    train, val, test = (_logits(rng, labels, k, spread) for labels, spread in
                        ((train_labels, 2.0), (val_labels, 2.0), (test_labels, 2.5)))
    # the job's own decisions, stored as the pipeline stores them (here from the brute-force references)
    if method == "ce":
        (predictions, scores), (_, val_scores) = brute_msp(test), brute_msp(val)
    else:
        (predictions, scores), (_, val_scores) = (brute_cac(train, train_labels, x) for x in (test, val))
    threshold = brute_threshold(val_scores)
    if logits:
        np.savez_compressed(
            job_dir / "logits.npz", train=train, train_labels=train_labels, val=val, val_labels=val_labels,
            test=test, test_labels=test_labels, test_classes=test_classes, test_scores=scores.astype(np.float32),
            test_predictions=predictions, val_scores=val_scores.astype(np.float32))
    result = {"detector": "msp" if method == "ce" else "cac", "open_set": {"threshold": threshold},
              "calibration": {"target_accept_rate": 0.95,
                              "achieved_accept_rate": float((val_scores.astype(np.float32) < threshold).mean())},
              **result}
    if history:
        records = [{"stage": 1 + (e > 2), "epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e,
                    "val_accuracy": 0.5 + 0.1 * e, "val_anchor_loss": 9 - e} for e in range(1, 5)]
        (job_dir / "history.json").write_text(json.dumps(records))
    base = {"dataset": "CIFAR10", "trial": result["trial"], "job": job_dir.name, "method": method,
            "anchor_magnitude": 10.0, "anchor_weight": 0.1, "best_epoch": 3, "known_names": KNOWN,
            "unknown_names": UNKNOWN}
    (job_dir / "result.json").write_text(json.dumps({**base, **result}))


def make_synthetic_run(root: Path) -> Path:
    """Two trials of cac + ce with synthetic logits, a sweep, an ablation and a comparison study file;
    trial 1 lacks cac's history.json and ce's logits.npz; the data root does not exist."""
    rng = np.random.default_rng(0)
    run = root / "run"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({
        "config": {"dataset": "CIFAR10", "data_root": str(root / "no-such-data"), "seed": 0},
        "classanchor_version": "0.1.0", "git_commit": "abc123", "torch_version": "2"}))
    train_labels = np.repeat(np.arange(3), 100)
    val_labels = np.repeat(np.arange(3), 21)
    known_test = np.repeat(np.arange(3), 40)
    unknown_classes = np.repeat(UNKNOWN_IDS, [30, 25, 35])
    test_labels = np.concatenate([known_test, np.full(unknown_classes.size, -1)])
    test_classes = np.concatenate([np.array([3, 5, 6])[known_test], unknown_classes])
    arrays = {"train_labels": train_labels, "val_labels": val_labels, "test_labels": test_labels,
              "test_classes": test_classes}
    for trial in (0, 1):
        for method in ("cac", "ce"):
            write_job(run / f"trial{trial}" / method, rng, method=method, **arrays,
                      result={"trial": trial, "accuracy": 0.9 + 0.01 * trial, "auroc": 0.8 - 0.02 * trial},
                      history=not (trial == 1 and method == "cac"), logits=not (trial == 1 and method == "ce"))
    for job, result in (("anchor", {"method": "anchor", "accuracy": 0.85, "auroc": 0.7}),
                        ("tuplet", {"method": "tuplet", "accuracy": 0.8, "auroc": 0.75}),
                        ("cac_a5", {"method": "cac", "anchor_magnitude": 5.0, "accuracy": 0.88, "auroc": 0.78}),
                        ("cac_l0.5", {"method": "cac", "anchor_weight": 0.5, "accuracy": 0.87, "auroc": 0.79})):
        write_job(run / "trial0" / job, rng, **arrays, result={"trial": 0, **result}, logits=False,
                  method=result["method"])
    # a methods comparison as classanchor.studies writes it: study record, per-trial rows, Markdown table
    (run / "study_compare.json").write_text(json.dumps({"study": "compare", "training": {"dataset": "CIFAR10"}}))
    rows = [{"trial": 0, "job": "ce", "detector": "msp"}, {"trial": 0, "job": "ce", "detector": "energy"},
            {"trial": 0, "job": "cac", "detector": "class_mean"}, {"trial": 1, "job": "ce", "detector": "energy"},
            {"trial": 0, "job": "ce", "detector": "openmax", "error": "too few samples"}]
    (run / "compare.json").write_text(json.dumps({"study": "compare", "per_trial": rows}))
    (run / "compare.md").write_text("# Comparison\n\n| score | AUROC |\n|---|---|\n| energy | 0.72 |\n")
    return run


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory):
    run = make_synthetic_run(tmp_path_factory.mktemp("report"))
    page = write_report(run)
    return run, page, json.loads((run / "report" / "summary.json").read_text())


# ------------------------------------------------------------------------------------------ tests

EXPECTED = ["trial_bars", "trial0_roc", "trial1_roc", "sweep_heatmaps", "ablation_bars"] + [
    f"trial{t}_{job}_{kind}" for t, job in ((0, "cac"), (0, "ce"), (1, "cac"))
    for kind in ("histogram", "logit_space", "confusion")] + ["trial0_cac_training", "trial0_ce_training"]


def test_every_figure_is_a_png_beside_the_page_and_embedded_in_it(synthetic_report):
    run, page, summary = synthetic_report
    assert page == run / "report" / "index.html"
    text = page.read_text()
    assert sorted(summary["figures"]) == sorted(f"{n}.png" for n in EXPECTED)
    assert sorted(p.name for p in page.parent.glob("*.png")) == sorted(summary["figures"])
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="[^"]*" data-file="([^"]+)"', text)
    embedded = {name: data for data, name in images}
    assert len(images) == len(embedded) == len(summary["figures"])
    for name in summary["figures"]:
        check_png(page.parent / name)
        assert base64.b64decode(embedded[name]) == (page.parent / name).read_bytes(), name
    assert "src=\"trial" not in text  # no link to a file beside the page: the page stands alone


def test_missing_files_are_one_line_notes(synthetic_report):
    _, page, _ = synthetic_report
    text = page.read_text()
    assert "table.md is missing" in text and "<td>cac_a5</td>" in text  # table built from result.json
    assert "history.json is missing" in text  # trial 1 cac
    assert "ce: logits.npz is missing" in text  # trial 1 ce
    assert "Fig. 5 (test images with extreme scores) is skipped: the data root" in text
    assert "abc123" in text and "CIFAR10" in text  # the config
    assert "<h3>Comparison</h3>" in text and "<td>energy</td>" in text  # a study table
    assert "Study result files: compare.json, study_compare.json." in text


def test_scores_thresholds_and_confusion_match_brute_force(synthetic_report):
    run, _, summary = synthetic_report
    jobs = {(j["trial"], j["job"]): j for j in summary["jobs"]}
    assert set(jobs) == {(0, "cac"), (0, "ce"), (1, "cac")}
    for (trial, job), s in jobs.items():
        arrays = np.load(run / f"trial{trial}" / job / "logits.npz")
        brute = brute_cac if job == "cac" else (lambda tr, lab, z: brute_msp(z))
        pred, score = brute(arrays["train"], arrays["train_labels"], arrays["test"])
        _, val_score = brute(arrays["train"], arrays["train_labels"], arrays["val"])
        unknown = arrays["test_labels"] < 0
        assert s["auroc"] == pytest.approx(roc_auc_score(unknown, score), abs=1e-6)
        assert s["accuracy"] == pytest.approx(np.mean(pred[~unknown] == arrays["test_labels"][~unknown]))
        threshold = brute_threshold(val_score)
        assert s["threshold"] == pytest.approx(threshold, rel=1e-5)
        n_val = val_score.size
        assert s["val_acceptance"] == math.ceil(0.95 * n_val) / n_val  # exactly the k lowest are accepted
        assert s["test_known_acceptance"] == pytest.approx(np.mean(score[~unknown] < threshold), abs=1e-9)
        assert s["unknown_rejection"] == pytest.approx(np.mean(score[unknown] >= threshold), abs=1e-9)
        counts = np.zeros((3, 3), dtype=int)
        for c, p, sc, u in zip(arrays["test_classes"], pred, score, unknown):
            if u and sc < s["threshold"]:
                counts[UNKNOWN_IDS.index(c), p] += 1
        conf = s["confusion"]
        assert conf["unknown_classes"] == UNKNOWN_IDS and conf["unknown_names"] == UNKNOWN
        assert conf["known_names"] == KNOWN
        np.testing.assert_array_equal(conf["counts"], counts)
        assert conf["accepted"] == counts.sum(axis=1).tolist() and conf["total"] == [30, 25, 35]


def test_roc_holds_each_job_and_the_studied_detectors(synthetic_report):
    _, _, summary = synthetic_report
    assert summary["roc_curves"]["0"] == ["cac: min rejection score (Eq. 11)", "cac: distance to the nearest class mean",
                                          "ce: negative max softmax probability", "ce: negative energy"]
    assert summary["roc_curves"]["1"] == ["cac: min rejection score (Eq. 11)"]  # trial 1's ce has no logits


def test_fig5_grid_from_the_test_images_in_data_test_order(tmp_path):
    from classanchor.data.splits import build_trial, get_trial

    make_mnist(tmp_path / "data", per_class=(10, 4))
    data = build_trial(get_trial("MNIST", 0), tmp_path / "data", progress=False)
    test = data.test()
    classes = np.concatenate([np.asarray(data.trial.known_sorted)[data.test_known.labels], data.unknown_labels])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {"dataset": "MNIST", "data_root": str(tmp_path / "data"),
                                                            "seed": 0}}))
    rng = np.random.default_rng(1)
    job = run / "trial0" / "cac"
    write_job(job, rng, method="cac", train_labels=data.train.labels, val_labels=data.val.labels,
              test_labels=test.labels, test_classes=classes, history=False, k=6,
              result={"trial": 0, "accuracy": 0.5, "auroc": 0.5, "dataset": "MNIST",
                      "known_names": list(data.known_names), "unknown_names": list(data.unknown_names)})
    assert main(["report", str(run)]) == 0
    summary = json.loads((run / "report" / "summary.json").read_text())
    check_png(run / "report" / "trial0_cac_extremes.png")
    arrays = np.load(job / "logits.npz")
    _, score = brute_cac(arrays["train"], arrays["train_labels"], arrays["test"])
    unknown = np.flatnonzero(test.labels < 0)
    known = np.flatnonzero(test.labels >= 0)
    ext = summary["jobs"][0]["extremes"]
    assert ext["unknown_highest"] == unknown[np.argsort(-score[unknown], kind="stable")[:6]].tolist()
    assert ext["unknown_lowest"] == unknown[np.argsort(score[unknown], kind="stable")[:6]].tolist()
    assert ext["known_lowest"] == known[np.argsort(score[known], kind="stable")[:6]].tolist()
    assert ext["known_highest"] == known[np.argsort(-score[known], kind="stable")[:6]].tolist()
    assert "Fig. 5 (test images with extreme scores) is skipped" not in (run / "report" / "index.html").read_text()


def test_markdown_tables_and_training_curves():
    html = markdown_to_html("# T\n\n**Short** run `x`.\n\n| a | b |\n|---|---|\n| 1 | <2> |\n\n- one\n- two\n")
    assert html == ("<h3>T</h3>\n<p><strong>Short</strong> run <code>x</code>.</p>\n<table><thead><tr><th>a</th>"
                    "<th>b</th></tr></thead><tbody><tr><td>1</td><td>&lt;2&gt;</td></tr></tbody></table>\n"
                    "<ul><li>one</li><li>two</li></ul>")
    history = [{"stage": 1, "epoch": 1, "train_loss": 2.0, "val_loss": 2.5, "val_accuracy": 0.5, "val_anchor_loss": 9},
               {"stage": 2, "epoch": 2, "train_loss": 1.0, "val_loss": 1.5, "val_accuracy": 0.75,
                "val_anchor_loss": 8}]
    fig = plots.training_curves({"cac": history, "ce": history}, best_epochs={"cac": 2}, anchor_loss_of=["cac"])
    loss, acc, anchor = fig.axes
    assert [line.get_ydata().tolist() for line in loss.lines if line.get_linestyle() == "-"][:1] == [[2.0, 1.0]]
    assert acc.lines[0].get_ydata().tolist() == [50.0, 75.0]
    assert [line.get_ydata().tolist() for line in anchor.lines if line.get_linestyle() == "-"] == [[9, 8]]  # not ce
    assert any(line.get_xdata()[0] == 1.5 for line in loss.lines if line.get_linestyle() == ":")  # stage 2 starts


def test_histogram_scale_keeps_every_sample_on_its_side_of_the_threshold():
    from classanchor.report import JobScores, _histogram_scale

    rng = np.random.default_rng(2)
    p = np.concatenate([np.ones(50), 1 - rng.random(200) ** 8, rng.uniform(0.3, 1, 100)]).astype(np.float32)
    scores = -p  # MSP score, many exactly -1 (p rounded to 1 in float32)
    for threshold in (float(np.nextafter(np.float32(-1), np.float32(0))), float(np.quantile(scores, 0.7))):
        job = JobScores("msp", np.zeros(p.size, int), scores, np.zeros(p.size, bool), threshold, None, np.eye(2))
        shown, shown_threshold, name, log_x = _histogram_scale(job)
        assert log_x and shown.min() > 0 and "1 - max softmax" in name
        np.testing.assert_array_equal(shown < shown_threshold, scores < threshold)
        np.testing.assert_allclose(shown[p < 1], 1 - p[p < 1].astype(np.float64), rtol=1e-6)


def test_roc_log_panel_and_titled_image_rows():
    rng = np.random.default_rng(4)
    unknown = rng.random(300) < 0.4
    fig = plots.roc_curves({"cac": (rng.normal(2.0 * unknown, 1), unknown)}, log_fpr=True)
    linear, log = fig.axes[:2]
    assert log.get_xscale() == "log" and log.get_xlim()[0] == pytest.approx(1 / (~unknown).sum())
    np.testing.assert_array_equal(linear.lines[0].get_xdata(), log.lines[0].get_xdata())
    with pytest.raises(ValueError, match="ax=None"):
        plots.roc_curves({"cac": (rng.normal(size=300), unknown)}, log_fpr=True, ax=linear)

    images = np.zeros((2, 8, 8, 3), np.uint8)
    fig = plots.image_rows([("first row", images, ["true: a\npredicted: b", "c"]),
                            ("empty row", np.zeros((0, 8, 8), np.uint8), [])])
    assert [ax.get_xlabel() for ax in fig.axes if ax.images] == ["true: a\npredicted: b", "c"]
    assert [sub._suptitle.get_text() for sub in fig.subfigs] == ["first row", "empty row"]

    atm = "cash machine, cash dispenser, automated teller machine, automatic teller machine, automated teller"
    fig = plots.image_rows([("WordNet", images[:1], [f"true: {atm}\nscore 1.25"])], cell_inches=1.6)
    caption = [ax.get_xlabel() for ax in fig.axes if ax.images][0].split("\n")
    assert caption[-1] == "score 1.25" and len(caption) == 4 and max(map(len, caption)) <= 17
    assert " ".join(caption[:-1]) == "true: cash machine, cash dispenser, …"
