"""Studies (methods comparison, ablation, sweep): numbers recomputed from logits.npz, resume without
retraining, one job per sweep cell, and reuse of a benchmark's run folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from classanchor.benchmark import BenchmarkConfig, run_benchmark
from classanchor.cli import build_parser, main
from classanchor.commands import studies as command
from classanchor.detectors import make_detector
from classanchor.evaluate import (
    DETECTOR_DEFAULTS,
    Logits,
    aggregate_reports,
    load_logits,
    open_set_evaluation,
)
from classanchor.losses import LOSS_VARIANTS
from classanchor.metrics import calibrate_threshold, oscr
from classanchor.models.registry import MLP, available_backbones, register_backbone
from classanchor.studies import (
    ABLATION_METHODS,
    COMPARE_DETECTORS,
    DETECTOR_LABELS,
    SWEEP_MAGNITUDES,
    SWEEP_WEIGHTS,
    StudyConfig,
    _evaluate,
    compare_entries,
    run_ablation,
    run_compare,
    run_sweep,
    sweep_entries,
)
from tests.data.conftest import make_mnist

ALL_DETECTORS = ("cac", "msp", "max_logit", "energy", "openmax", "class_mean")


def toy_logits(seed: int = 0, val: bool = True) -> Logits:
    """K = 3 clusters at 5 e_k (known), unknowns around the origin, noise 1.5 so that the metrics are not 1."""
    g = torch.Generator().manual_seed(seed)
    k = 3

    def cloud(labels: torch.Tensor, centre_scale: float = 5.0) -> torch.Tensor:
        centres = torch.eye(k)[labels.clamp_min(0)] * centre_scale * (labels >= 0).unsqueeze(1)
        return centres + 1.5 * torch.randn(labels.numel(), k, generator=g)

    train_labels = torch.arange(k).repeat(30)
    val_labels = torch.arange(k).repeat(10)
    known = torch.arange(k).repeat(20)
    test_labels = torch.cat([known, torch.full((30,), -1)])
    classes = torch.cat([torch.tensor([2, 4, 6])[known], torch.tensor([7, 8, 9]).repeat(10)])
    return Logits(cloud(train_labels), train_labels, cloud(test_labels), test_labels, classes,
                  cloud(val_labels) if val else None, val_labels if val else None)


@pytest.mark.parametrize("name", ALL_DETECTORS)
def test_open_set_evaluation_equals_the_metrics_computed_by_hand(name):
    logits = toy_logits()
    report = open_set_evaluation(logits, name)
    det = make_detector(name, **DETECTOR_DEFAULTS.get(name, {})).fit(logits.train, logits.train_labels)
    prediction, score = det.predict(logits.test).numpy(), det.score(logits.test).double().numpy()
    labels = logits.test_labels.numpy()
    unknown = labels < 0
    val_scores = det.score(logits.val).numpy()
    theta = calibrate_threshold(val_scores, 0.95)
    assert (val_scores < theta).sum() == math.ceil(0.95 * 30)  # 95 % of the known validation images accepted
    assert report["threshold"] == theta
    assert report["accuracy"] == pytest.approx((prediction[~unknown] == labels[~unknown]).mean())
    assert report["auroc"] == pytest.approx(roc_auc_score(unknown, score))
    assert report["aupr_in"] == pytest.approx(average_precision_score(~unknown, -score))
    assert report["aupr_out"] == pytest.approx(average_precision_score(unknown, score))
    assert report["oscr"] == pytest.approx(oscr(score, prediction, labels))
    known_theta = calibrate_threshold(score[~unknown], 0.95)
    assert report["fpr_at_95_tpr"] == pytest.approx((score[unknown] < known_theta).mean())
    decisions = np.where(score < theta, prediction, -1)
    assert report["macro_f1"] == pytest.approx(f1_score(labels, decisions, labels=[-1, 0, 1, 2], average="macro",
                                                        zero_division=0))
    assert report["unknown_recall"] == pytest.approx((score[unknown] >= theta).mean())
    assert report["known_acceptance"] == pytest.approx((score[~unknown] < theta).mean())
    # Fig. 4 by a loop: unknown class u accepted and predicted as known k
    classes = logits.test_classes.numpy()
    counts = np.zeros((3, 3), dtype=int)
    for i in np.flatnonzero(unknown & (score < theta)):
        counts[[7, 8, 9].index(classes[i]), prediction[i]] += 1
    assert report["unknown_confusion"]["classes"] == [7, 8, 9]
    assert report["unknown_confusion"]["counts"] == counts.tolist()
    assert 0 <= report["auroc"] <= 1 and report["accept_rate"] == 0.95


def test_open_set_evaluation_without_validation_logits_has_no_threshold_metrics():
    report = open_set_evaluation(toy_logits(val=False), "msp")
    assert report["threshold"] is None and report["macro_f1"] is None and report["unknown_recall"] is None
    assert sum(map(sum, report["unknown_confusion"]["counts"])) == 30  # every unknown counted


def test_a_detector_that_cannot_be_fitted_becomes_an_error_row():
    logits = toy_logits()
    logits.train_labels = torch.zeros_like(logits.train_labels)  # classes 1 and 2 have no training sample
    row = _evaluate(logits, "openmax", 0.95, {})
    assert set(row) == {"error"} and "OpenMax" in row["error"]
    with pytest.raises(ValueError, match="detector_kwargs"):
        open_set_evaluation(logits, make_detector("msp"), tail_size=3)


def test_aggregate_reports_mean_and_population_std_skipping_missing_values():
    summary = aggregate_reports([{"auroc": 0.8, "macro_f1": None}, {"auroc": 0.9}], keys=("auroc", "macro_f1"))
    assert summary["auroc"] == {"mean": pytest.approx(0.85), "std": pytest.approx(0.05), "n": 2}
    assert summary["macro_f1"] == {"mean": None, "std": None, "n": 0}


def test_sweep_cells_are_cac_networks_with_their_hyperparameters_in_the_job_name():
    entries = sweep_entries((5, 10), (0.1, 0.2, 0.1))
    assert [e.job for e in entries] == ["cac_a5", "cac_a5_l0.2", "cac", "cac_l0.2"]
    assert [(e.method.anchor_magnitude, e.method.anchor_weight) for e in entries] == [(5, 0.1), (5, 0.2), (10, 0.1),
                                                                                      (10, 0.2)]
    assert {e.detector for e in entries} == {"cac"} and {e.method.name for e in entries} == {"cac"}
    with pytest.raises(ValueError, match="> 0"):
        sweep_entries((0,), (0.1,))
    with pytest.raises(ValueError, match="at least one"):
        sweep_entries((), (0.1,))


def test_unknown_names_fail_before_any_training(tmp_path):
    with pytest.raises(ValueError, match="unknown detector 'softmx'"):
        compare_entries({"ce": ("softmx",)})
    with pytest.raises(ValueError, match="unknown method 'anchors'"):
        run_ablation(StudyConfig("mnist", str(tmp_path), str(tmp_path / "run")), methods=("cac", "anchors"))
    assert not (tmp_path / "run").exists()


def test_cli_defaults_are_the_library_defaults():
    assert command.COMPARE_DETECTORS == COMPARE_DETECTORS and command.ABLATION_METHODS == ABLATION_METHODS
    assert command.SWEEP_MAGNITUDES == SWEEP_MAGNITUDES and command.SWEEP_WEIGHTS == SWEEP_WEIGHTS
    args = build_parser().parse_args(["sweep", "mnist", "--data-root", "d", "--magnitudes", "5,20", "--weights", "0.4"])
    assert args.magnitudes == (5.0, 20.0) and args.weights == (0.4,) and args.trials == (0,)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "mnist", "--data-root", "d", "--weights", "a,b"])


# ---- end to end on tiny MNIST files --------------------------------------------------------------------
EPOCHS_SCALE = 0.02  # 1 + 1 epochs of the MNIST paper recipe
BACKBONE = "studies_test_mlp"  # a tiny backbone keeps the six trainings of these tests to seconds


def _tiny_mlp(name, num_classes, in_channels, image_size, **kw):
    return MLP(num_classes, in_channels, image_size, hidden=32)  # run_job passes dropout=, which MLP lacks


if BACKBONE not in available_backbones():
    register_backbone(BACKBONE, _tiny_mlp)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """A tiny benchmark run folder (trial 0, cac and ce), as ``classanchor benchmark`` writes it."""
    root = tmp_path_factory.mktemp("studies")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLASSANCHOR_CACHE", str(root / "cache"))
        make_mnist(root / "data", per_class=(10, 4))
        run_benchmark(BenchmarkConfig(dataset="MNIST", data_root=str(root / "data"), out=str(root / "run"),
                                      trials=(0,), methods=("cac", "ce"), epochs_scale=EPOCHS_SCALE, device="cpu",
                                      backbone=BACKBONE),
                      progress=False)
        yield root


def study_config(root: Path, **overrides) -> StudyConfig:
    options = {"dataset": "mnist", "data_root": str(root / "data"), "out": str(root / "run"), "trials": (0,),
                   "epochs_scale": EPOCHS_SCALE, "device": "cpu", "backbone": BACKBONE}
    return StudyConfig(**{**options, **overrides})


def stamps(run: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in run.glob("trial0/*/result.json")}


def test_compare_reuses_the_benchmark_networks_and_its_table_equals_a_recomputation(bench, capsys, monkeypatch):
    monkeypatch.setenv("CLASSANCHOR_CACHE", str(bench / "cache"))
    run = bench / "run"
    before = stamps(run)
    output, table = run_compare(study_config(bench), progress=False)
    assert stamps(run) == before  # nothing retrained
    assert {"cac", "ce"} <= set(before)
    rows = {(r["job"], r["detector"]): r for r in output["per_trial"]}
    assert set(rows) == {(m, d) for m, names in COMPARE_DETECTORS.items() for d in names}
    saved = json.loads((run / "compare.json").read_text())
    confusion = json.loads((run / "trial0" / "compare_confusion.json").read_text())
    for (job, det), row in rows.items():
        logits = load_logits(run / "trial0" / job / "logits.npz")
        if "error" in row:  # e.g. OpenMax when a tiny network classifies < 3 training images of a class right
            assert "failed" in table
            continue
        detector = make_detector(det, **DETECTOR_DEFAULTS.get(det, {})).fit(logits.train, logits.train_labels)
        prediction, score = detector.decide(logits.test)
        unknown = logits.test_labels < 0
        theta = calibrate_threshold(detector.score(logits.val), 0.95)
        auroc = roc_auc_score(unknown.numpy(), score.double().numpy())
        accuracy = (prediction[~unknown] == logits.test_labels[~unknown]).double().mean().item()
        recall = (score[unknown] >= theta).double().mean().item()
        assert row["auroc"] == pytest.approx(auroc) and row["accuracy"] == pytest.approx(accuracy)
        assert row["unknown_recall"] == pytest.approx(recall)
        summary = next(s for s in saved["summary"] if (s["job"], s["detector"]) == (job, det))
        assert summary["auroc"]["mean"] == pytest.approx(auroc) and summary["auroc"]["n"] == 1
        line = next(ln for ln in table.splitlines() if ln.startswith(f"| {job} / {DETECTOR_LABELS[det]} |"))
        assert f"| {accuracy:.3f} | {auroc:.3f} |" in line and f"| {recall:.3f} |" in line
        assert confusion["entries"][f"{job}/{det}"]["threshold"] == pytest.approx(theta)
    # the CAC network's own score is exactly the benchmark's number
    result = json.loads((run / "trial0" / "cac" / "result.json").read_text())
    assert rows[("cac", "cac")]["auroc"] == pytest.approx(result["auroc"])
    assert rows[("cac", "cac")]["accuracy"] == pytest.approx(result["accuracy"])
    assert rows[("ce", "msp")]["auroc"] == pytest.approx(
        json.loads((run / "trial0" / "ce" / "result.json").read_text())["auroc"])
    assert "Shortened run" in table and "0.985" in table and "0.978" in table  # published CAC and SoftMax AUROC
    assert (run / "compare.md").read_text() == table
    # the CLI, run again on the same folder: the same numbers, still nothing retrained
    code = main(["compare", "mnist", "--data-root", str(bench / "data"), "--trials", "0", "--epochs-scale",
                 str(EPOCHS_SCALE), "--device", "cpu", "--backbone", BACKBONE, "--out", str(run), "--no-progress"])
    assert code == 0 and "methods comparison" in capsys.readouterr().out
    assert stamps(run) == before
    again = json.loads((run / "compare.json").read_text())
    assert [r.get("auroc") for r in again["per_trial"]] == [r.get("auroc") for r in output["per_trial"]]
    record = json.loads((run / "study_compare.json").read_text())
    assert len(record["sessions"]) >= 2 and record["training"]["epochs_scale"] == EPOCHS_SCALE
    assert json.loads((run / "config.json").read_text())["config"]["methods"] == ["cac", "ce"]  # untouched


def test_a_study_refuses_a_folder_trained_with_other_settings(bench, capsys):
    with pytest.raises(ValueError, match="epochs_scale=0.02"):
        run_compare(study_config(bench, epochs_scale=0.05), progress=False)
    code = main(["ablation", "mnist", "--data-root", str(bench / "data"), "--trials", "0", "--seed", "1",
                 "--epochs-scale", str(EPOCHS_SCALE), "--backbone", BACKBONE, "--out", str(bench / "run"),
                 "--no-progress"])
    assert code == 2 and "seed=0" in capsys.readouterr().err


def test_sweep_and_ablation_train_each_missing_job_once(bench, monkeypatch):
    monkeypatch.setenv("CLASSANCHOR_CACHE", str(bench / "cache"))
    run = bench / "run"
    benchmark_jobs = {k: v for k, v in stamps(run).items() if k in ("cac", "ce")}
    output, table = run_sweep(study_config(bench), magnitudes=(5, 10), weights=(0.1,), progress=False)
    after_sweep = stamps(run)
    assert after_sweep["cac"] == benchmark_jobs["cac"]  # the (10, 0.1) cell is the benchmark's CAC network
    result = json.loads((run / "trial0" / "cac_a5" / "result.json").read_text())
    assert (result["method"], result["anchor_magnitude"], result["anchor_weight"]) == ("cac", 5.0, 0.1)
    assert [(r["job"], r["anchor_magnitude"], r["anchor_weight"]) for r in output["summary"]] == [
        ("cac_a5", 5.0, 0.1), ("cac", 10.0, 0.1)]
    assert "| 5 | " in table and "| 10 | " in table and "α=5, λ=0.1" in table

    output, table = run_ablation(study_config(bench), progress=False)
    after_ablation = stamps(run)
    assert {k: after_ablation[k] for k in after_sweep} == after_sweep
    for name in ("anchor", "tuplet"):
        result = json.loads((run / "trial0" / name / "result.json").read_text())
        assert result["method"] == name and result["anchor_weight"] == LOSS_VARIANTS[name].anchor
    assert [r["job"] for r in output["summary"]] == ["cac", "anchor", "tuplet"]
    assert "anchor loss only (Eq. 6)" in table

    run_sweep(study_config(bench), magnitudes=(5, 10), weights=(0.1,), progress=False)
    run_ablation(study_config(bench), progress=False)
    assert stamps(run) == after_ablation  # resuming finished studies trains nothing
    sweep = json.loads((run / "study_sweep.json").read_text())
    assert sweep["parameters"] == {"magnitudes": [5.0, 10.0], "weights": [0.1]}
