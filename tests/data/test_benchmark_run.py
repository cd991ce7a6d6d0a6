"""End to end: the benchmark command on tiny MNIST files, its run folder, resume and no retraining."""

import json

import numpy as np
import torch

from classanchor.benchmark import BenchmarkConfig, parse_trials, run_benchmark
from classanchor.cli import main
from classanchor.recipes import get_recipe

from .conftest import make_mnist


def test_benchmark_writes_a_complete_run_folder_and_never_retrains(tmp_path):
    make_mnist(tmp_path / "data", per_class=(10, 4))
    config = BenchmarkConfig(dataset="MNIST", data_root=str(tmp_path / "data"), out=str(tmp_path / "run"),
                             trials=(0,), methods=("cac", "ce"), epochs_scale=0.02, device="cpu")
    results, table = run_benchmark(config, progress=False)
    assert [r["job"] for r in results] == ["cac", "ce"]
    for r in results:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["auroc"] <= 1
        assert abs(r["openness"] - 0.13397) < 1e-4
    assert "Shortened run" in table and "| cac | 1 |" in table and "0.985" in table
    run = tmp_path / "run"
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["dataset"] == "MNIST" and record["classanchor_version"]
    assert "git_commit" in record
    job = run / "trial0" / "cac"
    for name in ("state.pt", "history.json", "model.pt", "logits.npz", "result.json"):
        assert (job / name).exists(), name
    history = json.loads((job / "history.json").read_text())
    assert len(history) == sum(s.epochs for s in get_recipe("MNIST").scaled(0.02).stages) == 2
    logits = np.load(job / "logits.npz")
    assert logits["test"].shape == (40, 6) and (logits["test_labels"] == -1).sum() == 16
    assert logits["train"].shape[0] == 48  # 6 known digits x 10 images x 80 % (no flips for MNIST)
    assert logits["val"].shape == (12, 6) and set(logits["val_labels"].tolist()) == set(range(6))

    from classanchor.predictor import OpenSetPredictor

    card = json.loads((job / "model" / "model.json").read_text())
    assert card["calibration"]["target_accept_rate"] == 0.95 and card["calibration"]["n_images"] == 12
    assert card["calibration"]["achieved_accept_rate"] >= 0.95
    assert not (run / "trial0" / "ce" / "model").exists()  # only CAC jobs are open-set models
    # The saved model scores the test images as the evaluation did from the logits. MNIST's 28 px images are
    # resized to 32 px by PIL in the predictor and by torch on the device in the benchmark, hence the tolerance.
    from classanchor.data.splits import build_trial, get_trial
    from classanchor.heads import anchor_distances
    from classanchor.scores import cac_decision

    test = build_trial(get_trial("MNIST", 0), tmp_path / "data", progress=False).test()
    predicted = OpenSetPredictor.load(job / "model").predict(test.images)
    anchors = torch.tensor(card["anchors"])
    _, expected_scores = cac_decision(anchor_distances(torch.from_numpy(logits["test"]), anchors))
    np.testing.assert_allclose(np.asarray(predicted.scores), expected_scores.numpy(), rtol=0.05, atol=1e-3)

    stamp = (job / "result.json").stat().st_mtime_ns
    again, _ = run_benchmark(config, progress=False)
    assert again == results and (job / "result.json").stat().st_mtime_ns == stamp


def test_benchmark_cli_reports_a_missing_dataset(tmp_path, capsys):
    code = main(["benchmark", "mnist", "--data-root", str(tmp_path), "--trials", "0", "--out", str(tmp_path / "r"),
                 "--no-progress"])
    assert code == 2
    assert "MNIST" in capsys.readouterr().err


def test_parse_trials():
    assert parse_trials("0-4") == (0, 1, 2, 3, 4) and parse_trials("3,1") == (3, 1)
