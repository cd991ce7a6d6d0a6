"""End to end: the benchmark command on tiny MNIST files, its run folder, resume and no retraining."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np

from classanchor.benchmark import BenchmarkConfig, run_benchmark
from classanchor.cli import main
from classanchor.recipes import get_recipe

from .data.conftest import make_mnist


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
    for name in ("state.pt", "history.json", "logits.npz", "result.json", "model/model.json"):
        assert (job / name).exists(), name
    history = json.loads((job / "history.json").read_text())
    assert len(history) == sum(s.epochs for s in get_recipe("MNIST").scaled(0.02).stages) == 2
    logits = np.load(job / "logits.npz")
    assert logits["test"].shape == (40, 6) and (logits["test_labels"] == -1).sum() == 16
    assert logits["train"].shape[0] == 48  # 6 known digits x 10 images x 80 % (no flips for MNIST)
    assert logits["val"].shape == (12, 6) and set(logits["val_labels"].tolist()) == set(range(6))

    result = json.loads((job / "result.json").read_text())
    for key in ("oscr", "fpr_at_95_tpr", "aupr_in", "aupr_out", "macro_f1", "unknown_recall", "known_acceptance"):
        assert 0 <= result["open_set"][key] <= 1, key
    assert result["open_set"]["auroc"] == result["auroc"] and result["detector"] == "cac"
    assert result["precision"] in ("float32", "bf16") and result["threads"] >= 1 and result["torch_version"]
    assert json.loads((run / "trial0" / "ce" / "result.json").read_text())["detector"] == "msp"

    card = json.loads((job / "model" / "model.json").read_text())
    assert card["calibration"]["target_accept_rate"] == 0.95 and card["calibration"]["n_images"] == 12
    assert card["calibration"]["achieved_accept_rate"] >= 0.95
    assert card["threshold"] == result["open_set"]["threshold"]
    assert not (run / "trial0" / "ce" / "model").exists()  # only CAC jobs are open-set models
    # The saved model, loaded in a new process, scores the job's own test images (MNIST 28 px, resized to 32 px
    # by the one preprocessing) as the evaluation did: float32, up to rounding between batch shapes.
    script = (
        "import sys, numpy as np\n"
        "from classanchor.data.splits import build_trial, get_trial\n"
        "from classanchor.predictor import OpenSetPredictor\n"
        "test = build_trial(get_trial('MNIST', 0), sys.argv[1], progress=False).test()\n"
        "p = OpenSetPredictor.load(sys.argv[2]).predict(test.images, batch_size=7)\n"
        "np.save(sys.argv[3], np.stack([p.scores, p.best_index]))\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "data"), str(job / "model"),
                    str(tmp_path / "predicted.npy")], check=True, timeout=300)
    scores, best = np.load(tmp_path / "predicted.npy")
    np.testing.assert_allclose(scores, logits["test_scores"], rtol=1e-4, atol=1e-6)
    assert np.array_equal(best, logits["test_predictions"])

    stamp = (job / "result.json").stat().st_mtime_ns
    again, _ = run_benchmark(config, progress=False)
    assert again == results and (job / "result.json").stat().st_mtime_ns == stamp
    # a later session asking for one method reuses the folder; its table still lists every finished job
    subset, _ = run_benchmark(replace(config, methods=("cac",)), progress=False)
    assert subset == results and (job / "result.json").stat().st_mtime_ns == stamp


def test_benchmark_cli_reports_a_missing_dataset(tmp_path, capsys):
    code = main(["benchmark", "mnist", "--data-root", str(tmp_path), "--trials", "0", "--out", str(tmp_path / "r"),
                 "--no-progress"])
    assert code == 2
    assert "MNIST" in capsys.readouterr().err


def test_trial_list_option():
    import argparse

    import pytest

    from classanchor.commands._options import trial_list

    assert trial_list("0-4") == (0, 1, 2, 3, 4) and trial_list("3,1") == (3, 1)
    for bad in ("a-b", "7", "", "0-9"):
        with pytest.raises(argparse.ArgumentTypeError, match="trial"):
            trial_list(bad)


def test_benchmark_runs_end_to_end_with_the_mlp_backbone(tmp_path):
    """Backbone arguments belong to the backbone: the recipe's dropout goes to classifier32 only."""
    make_mnist(tmp_path / "data", per_class=(10, 4))
    code = main(["benchmark", "mnist", "--data-root", str(tmp_path / "data"), "--trials", "0", "--methods", "cac",
                 "--epochs-scale", "0.02", "--backbone", "mlp", "--device", "cpu", "--precision", "float32",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 0
    result = json.loads((tmp_path / "run" / "trial0" / "cac" / "result.json").read_text())
    assert result["backbone"] == "mlp" and result["precision"] == "float32" and 0 <= result["auroc"] <= 1
    card = json.loads((tmp_path / "run" / "trial0" / "cac" / "model" / "model.json").read_text())
    assert card["backbone"] == {"name": "mlp", "kwargs": {}}
