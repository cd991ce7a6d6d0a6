"""classanchor.folder_training: the fast and paper recipes, and end to end on a small image folder: train, save, load in a
fresh process, predict, evaluate."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from classanchor import folder_training
from classanchor.cli import main
from classanchor.data.folders import load_user_data
from classanchor.folder_training import (FOLDER_FAST_WEIGHT_DECAY, MIN_FAST_STEPS, FolderTrainConfig,
                                         train_on_folder, user_recipe)
from classanchor.metrics import calibrate_threshold
from classanchor.recipes import get_recipe

from .helpers.files import write_image_folder

KNOWN = ("red", "green", "stripes")
SPLIT = {"val_fraction": 0.25, "test_fraction": 0.25}


def test_train_save_load_in_a_fresh_process_predict_and_evaluate(tmp_path, capsys):
    """One training (a few seconds), then every check on it: one test so that parallel workers train once."""
    trained = _train(tmp_path)
    _check_run_folder_metrics_and_saved_model(trained)
    _check_threshold_accepts_the_target_share_of_known_validation_images(trained)
    _check_a_fresh_process_predicts_what_the_in_memory_model_predicts(trained)
    _check_train_command_reuses_a_finished_run_and_evaluate_reports_per_class(trained, tmp_path, capsys)


def _train(root):
    data = write_image_folder(root / "data", per_class=16)
    (data / "red" / "notes.txt").write_text("not an image")
    config = FolderTrainConfig(data=str(data), out=str(root / "run"), known=KNOWN, unknown=("blue",), epochs=3,
                             image_size=16, batch_size=8, device="cpu", **SPLIT)
    predictor, metrics = train_on_folder(config, progress=False)
    return SimpleNamespace(root=root, data=data, predictor=predictor, metrics=metrics)


def _check_run_folder_metrics_and_saved_model(trained):
    root, predictor, metrics = trained.root, trained.predictor, trained.metrics
    run = root / "run"
    for name in ("config.json", "data.json", "history.json", "metrics.json", "state.pt", "model/model.json",
                 "model/weights.safetensors"):
        assert (run / name).is_file(), name
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert len(json.loads((run / "history.json").read_text())) == 3
    test = metrics["test"]
    assert test["n_known"] == 12 and test["n_unknown"] == 16 and metrics["n_train"] == 24 and metrics["n_val"] == 12
    # the default (fast) recipe learns the known classes (chance: 1/3); whether 24 training images and 3 epochs
    # also separate the unknown class is the paper recipe's test below
    assert test["accuracy"] > 0.5 and 0 <= test["auroc"] <= 1
    for key in ("known_acceptance", "unknown_rejection", "macro_f1", "oscr", "fpr_at_95_tpr"):
        assert 0 <= test[key] <= 1, key
    assert test["per_unknown_class"]["blue"]["n"] == 16
    assert metrics["skipped_files"] == 1
    card = json.loads((run / "model" / "model.json").read_text())
    assert card["class_names"] == list(KNOWN) and card["threshold"] == metrics["threshold"]
    assert card["calibration"] == metrics["calibration"] and card["input"]["size"] == 16
    assert card["backbone"] == {"name": "resnet9", "kwargs": {"width": 32}} and card["input"]["mirror_average"]
    assert card["extra"]["training"]["epochs"] == 3 and card["extra"]["data"]["counts"]["red"]["train"] == 8
    assert np.array_equal(np.array(card["anchors"], np.float32), predictor.net.head.anchors.cpu().numpy())
    config_record = json.loads((run / "config.json").read_text())
    assert config_record["config"]["known"] == list(KNOWN) and config_record["classanchor_version"]


def _check_threshold_accepts_the_target_share_of_known_validation_images(trained):
    data, predictor, metrics = trained.data, trained.predictor, trained.metrics
    split = load_user_data(data, KNOWN, ["blue"], image_size=16, progress=False, **SPLIT)
    scores = predictor.predict(split.val.images).scores
    assert metrics["threshold"] == calibrate_threshold(scores, 0.95)
    accepted = float((scores < metrics["threshold"]).mean())
    assert accepted == metrics["calibration"]["achieved_accept_rate"] >= 0.95
    assert accepted == math.ceil(0.95 * len(scores)) / len(scores)  # the smallest share >= 95 % (no ties)
    assert metrics["calibration"]["n_images"] == len(scores) == 12


def _check_a_fresh_process_predicts_what_the_in_memory_model_predicts(trained):
    root, data, predictor = trained.root, trained.data, trained.predictor
    done = subprocess.run([sys.executable, "-m", "classanchor", "predict", str(root / "run" / "model"), str(data),
                           "--format", "json", "--device", "cpu", "--no-progress"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    fresh = json.loads(done.stdout)
    memory = predictor.predict(data, progress=False)
    assert [r["path"] for r in fresh["predictions"]] == memory.paths and len(memory) == 64
    near = np.abs(memory.scores - memory.threshold) < 1e-5
    assert [r["prediction"] for r, n in zip(fresh["predictions"], near) if not n] == [
        label for label, n in zip(memory.labels, near) if not n]
    np.testing.assert_allclose([r["score"] for r in fresh["predictions"]], memory.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([r["confidence"] for r in fresh["predictions"]], memory.confidences, rtol=1e-5,
                               atol=1e-6)
    assert [s["path"] for s in fresh["skipped"]] == [str(data / "red" / "notes.txt")]


def _check_train_command_reuses_a_finished_run_and_evaluate_reports_per_class(trained, tmp_path, capsys):
    root, data, metrics = trained.root, trained.data, trained.metrics
    args = ["train", str(data), "--out", str(root / "run"), "--known", ",".join(KNOWN), "--unknown", "blue",
            "--epochs", "3", "--image-size", "16", "--batch-size", "8", "--device", "cpu",
            "--val-fraction", "0.25", "--test-fraction", "0.25", "--no-progress"]
    assert main(args) == 0  # the finished run folder is read back, not trained again
    out = capsys.readouterr().out
    assert "held-out unknown classes: blue" in out and f"threshold {metrics['threshold']:.4f}" in out
    assert main(args[:-1] + ["--epochs", "4", "--no-progress"]) == 2  # another config for the same folder
    assert "different config" in capsys.readouterr().err

    target = tmp_path / "eval" / "eval.json"
    assert main(["evaluate", str(root / "run" / "model"), str(data), "--unknown", "blue", "--output", str(target),
                 "--no-progress", "--device", "cpu"]) == 0
    report = json.loads(target.read_text())
    assert report["n_known"] == 48 and report["n_unknown"] == 16 and 0 <= report["auroc"] <= 1
    assert set(report["per_known_class"]) == set(KNOWN) and report["unknown_confusion"]["rows"] in ([], ["blue"])
    assert "unknown blue: 16 images, rejected" in capsys.readouterr().out
    assert main(["evaluate", str(root / "run" / "model"), str(data), "--known", "red,zebra", "--no-progress"]) == 2
    assert "['zebra'] are not classes of the model" in capsys.readouterr().err


def test_paper_recipe_trains_classifier32_and_separates_the_unknown_class(tmp_path):
    data = write_image_folder(tmp_path / "data", per_class=16)
    config = FolderTrainConfig(data=str(data), out=str(tmp_path / "run"), known=KNOWN, unknown=("blue",),
                               recipe="paper", epochs=3, image_size=16, batch_size=8, weight_decay=1e-3,
                               device="cpu", **SPLIT)
    _, metrics = train_on_folder(config, progress=False)
    assert metrics["test"]["accuracy"] > 0.5 and metrics["test"]["auroc"] > 0.5  # chance: 1/3 and 0.5
    card = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert card["backbone"] == {"name": "classifier32", "kwargs": {"dropout": 0.2}}
    assert not card["input"]["mirror_average"] and card["extra"]["recipe"]["stages"][0]["lr"] == 0.01
    assert card["extra"]["recipe"]["weight_decay"] == 1e-3  # the user's, not the paper recipe's 5e-6


def test_bad_training_input_writes_nothing(tmp_path, capsys):
    data = write_image_folder(tmp_path / "data", per_class=10, kinds=("a", "b"))
    assert main(["train", str(data), "--known", "a,zebra", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "['zebra'] not found" in capsys.readouterr().err and not (tmp_path / "run").exists()
    bad_decay = ["train", str(data), "--weight-decay", "-0.001", "--out", str(tmp_path / "run"),
                 "--no-progress"]
    assert main(bad_decay) == 2
    assert "weight decay must be a finite number >= 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["train", str(data), "--recipe", "paper", "--image-size", "20", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 2
    assert "multiple of 8" in capsys.readouterr().err and not (tmp_path / "run").exists()
    if importlib.util.find_spec("torchvision") is None:  # the optional extra is not installed here
        assert main(["train", str(data), "--backbone", "torchvision:resnet18", "--out", str(tmp_path / "run"),
                     "--no-progress"]) == 2
        assert "pip install classanchor[vision]" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_the_default_length_comes_from_the_training_split_size(tmp_path, monkeypatch):
    """train_on_folder sizes the recipe by the training split it read (stopped here by a bad backbone)."""
    seen = []
    monkeypatch.setattr(folder_training, "user_recipe", lambda *a: seen.append(a) or user_recipe(*a))
    data = write_image_folder(tmp_path / "data", per_class=16)
    config = FolderTrainConfig(data=str(data), out=str(tmp_path / "run"), known=KNOWN, unknown=("blue",),
                               image_size=16, backbone="no_such_network", device="cpu", **SPLIT)
    with pytest.raises(ValueError, match="no_such_network"):
        train_on_folder(config, progress=False)
    assert seen == [("fast", None, 16, 128, None, True, 24, None)] and not (tmp_path / "run").exists()


def test_user_recipe_paper_splits_epochs_three_to_one_like_the_paper():
    assert [(s.epochs, s.lr) for s in user_recipe("paper").stages] == [(22, 0.01), (8, 0.001)]
    assert [s.epochs for s in user_recipe("paper", 3).stages] == [2, 1]
    assert [s.epochs for s in user_recipe("paper", 1).stages] == [1]
    r = user_recipe("paper", 4, image_size=64, flip=False)
    assert r.image_size == 64 and r.flip_p == 0 and not r.flip_anchor_fit and r.batch_size == 128
    assert r.backbone == "classifier32" and not r.test_time_flip


def test_user_recipe_fast_is_the_cifar10_fast_recipe_at_the_users_settings():
    fast, cifar = user_recipe(), get_recipe("CIFAR10", "fast")
    assert fast.stages == cifar.stages and fast.stages[0].schedule == "onecycle"
    assert (fast.backbone, fast.backbone_kwargs, fast.nesterov, fast.test_time_flip) == (
        "resnet9", (("width", 32),), True, True)
    # the folder's weight decay, not the CIFAR10 benchmark's (no gain on a small folder: docs/own-images.md)
    assert fast.weight_decay == FOLDER_FAST_WEIGHT_DECAY == 5e-4 and cifar.weight_decay == 2e-3
    r = user_recipe("fast", 4, image_size=48, lr=0.1, flip=False)
    assert [(s.epochs, s.lr, s.schedule) for s in r.stages] == [(4, 0.1, "onecycle")]
    assert r.image_size == 48 and r.flip_p == 0 and not r.test_time_flip and not r.flip_anchor_fit
    # default length: the fewest epochs of n / batch steps that make MIN_FAST_STEPS, between 15 and 60
    for n, batch in ((2700, 128), (2700, 64), (700, 32), (40_000, 128), (30, 8), (1, 128)):
        least = next(e for e in range(1, 10**6) if e * n / batch >= MIN_FAST_STEPS)
        assert user_recipe(train_images=n, batch_size=batch).total_epochs == min(60, max(15, least)), (n, batch)
    assert user_recipe(train_images=2700).total_epochs == 48 and user_recipe(train_images=50_000).total_epochs == 15
    assert user_recipe("fast", 7, train_images=30).total_epochs == 7  # --epochs wins
    assert user_recipe("paper", train_images=30).total_epochs == 30
    # --weight-decay replaces either recipe's and changes nothing else
    for name in ("fast", "paper"):
        assert user_recipe(name, weight_decay=2e-3) == replace(user_recipe(name), weight_decay=2e-3)
    assert user_recipe("paper").weight_decay == get_recipe("CIFAR10", "paper").weight_decay == 5e-6
    for bad in (-1e-4, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="weight decay must be a finite number >= 0"):
            FolderTrainConfig("d", "o", weight_decay=bad)
    assert FolderTrainConfig("d", "o").recipe == "fast"
    with pytest.raises(ValueError, match="recipe must be one of fast, paper"):
        FolderTrainConfig("d", "o", recipe="slow")
    FolderTrainConfig("d", "o", image_size=20)  # resnet9 takes any side >= 8
    with pytest.raises(ValueError, match="multiple of 8"):
        FolderTrainConfig("d", "o", recipe="paper", image_size=20)


def test_train_command_offers_the_librarys_recipes_and_precisions():
    """commands/ writes these choices out (``--help`` imports no torch): they must equal the library's."""
    from classanchor.cli import build_parser
    from classanchor.folder_training import USER_RECIPES
    from classanchor.train import PRECISIONS

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    choices = {a.dest: tuple(a.choices) for a in train._actions if a.choices}
    assert choices["recipe"] == USER_RECIPES and choices["precision"] == PRECISIONS
    assert train.get_default("recipe") == USER_RECIPES[0]
