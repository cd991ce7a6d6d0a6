"""The scripts in benchmarks/ run against the current library (they are not imported by anything else, so
without this they rot silently when an API changes)."""

from __future__ import annotations

import re

import pytest

from tests.helpers.scripts import SCRIPTS, load_script


@pytest.mark.slow
def test_speed_script_measures_every_pipeline_and_prints_positive_ratios(capsys):
    speed = load_script("speed")
    assert speed.main(["--cases", "mnist", "--repeats", "1", "--steps", "1", "--batch-size", "8",
                       "--eval-batch-size", "32", "--eval-images", "64", "--workers", "0"]) in (0, None)
    mnist_fast = "| 28 px, 1 ch (MNIST, resnet9 width 16)"  # the MNIST fast recipe's network at its input side
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(mnist_fast)]
    assert [row.split("|")[2].strip() for row in rows] == ["train", "eval"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")][2:]
        assert all(re.fullmatch(r"\d+(\.\d+)?", c) and float(c) > 0 for c in cells), row


@pytest.mark.slow
def test_cpu_allocator_script_times_both_settings_in_fresh_processes(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # the script imports speed.py beside it, as when run directly
    allocator = load_script("cpu_allocator")
    assert allocator.main(["--cases", "cifar", "--backbone", "classifier32", "--repeats", "1", "--steps", "1",
                           "--batch-size", "8", "--eval-images", "32"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 32 px, 3 ch (CIFAR)")]
    assert [row.split("|")[2].strip() for row in rows] == ["train", "eval"]
    for row in rows:
        default, kept, ratio = (float(c) for c in row.strip("|").split("|")[2:])
        # the rates are printed rounded to whole images/s, the ratio from the unrounded rates
        assert default > 0 and kept > 0 and (kept - 0.5) / (default + 0.5) - 0.005 <= ratio, row
        assert ratio <= (kept + 0.5) / (default - 0.5) + 0.005, row


@pytest.mark.slow
def test_step_profile_script_times_every_convolution_of_the_network(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # the script imports speed.py beside it, as when run directly
    profile = load_script("step_profile")
    assert profile.main(["--case", "mnist", "--batch-size", "4", "--steps", "1", "--repeats", "1",
                         "--rows", "3"]) == 0
    out = capsys.readouterr().out
    rates = re.search(r"training images/s: NHWC ([\d.]+), NCHW ([\d.]+); NHWC/NCHW ([\d.]+)", out)
    assert rates and all(float(r) > 0 for r in rates.groups()), out
    assert out.count("| NHWC: operator") == 1 and out.count("| NCHW: operator") == 1
    shares = [float(s) for s in re.findall(r"^\| [^|]+ \| [\d.]+ \| ([\d.]+)% \|$", out, re.MULTILINE)]
    assert len(shares) == 6 and all(0 < s <= 100 for s in shares), out
    rows = [line for line in out.splitlines() if re.match(r"\| \d+ -> \d+ at \d+x\d+ \|", line)]
    assert len(rows) == 8, out  # the MNIST fast network, resnet9: 8 convolutions
    assert rows[0].startswith("| 1 -> 16 at 28x28 |")  # width 16 on the native 28 px digits
    for row in rows:
        cells = row.strip("|").split("|")[1:]
        assert len(cells) == 7 and all(re.fullmatch(r" [\d.]+ \(\d+\) ", c) for c in cells), row


RESULTS = SCRIPTS.parent / "docs" / "results"


@pytest.mark.parametrize("run", sorted(p.parent for p in RESULTS.glob("*/config.json")))
def test_results_tables_agree_with_the_committed_result_files(run):
    """docs/results.md's tables come from these files: the script's CAC mean is the mean of the jobs' own
    result.json AUROCs (and the script itself checks every job against compare.json)."""
    import json
    import statistics

    table = load_script("results_tables").run_tables(run)
    aurocs = [json.loads(p.read_text())["auroc"] for p in run.glob("trial*/cac/result.json")]
    row = next(line for line in table.splitlines() if line.startswith("| CAC"))
    assert f"{statistics.fmean(aurocs):.4f} ± {statistics.pstdev(aurocs):.4f}" in row


def test_results_tables_name_the_recipe_fields_a_variant_job_set():
    """A folder of recipe-variant jobs says in its title which recipe fields its jobs set; a plain folder
    does not."""
    import json

    tables = load_script("results_tables")
    variants = RESULTS / "cifar10_fast_wd2e-3"
    record = json.loads((variants / "trial2" / "cac" / "run_config.json").read_text())["config"]["changes"]
    assert tables.recipe_changes(variants / "trial2" / "cac") == record == {"weight_decay": 0.002}
    assert tables.recipe_changes(variants / "trial0" / "cac") == {"weight_decay": 0.002}  # run_changes.json
    assert tables.recipe_changes(RESULTS / "mnist_fast" / "trial0" / "cac") == {}
    title = tables.run_tables(variants).splitlines()[0]
    assert title.endswith("(15 epochs) with weight_decay=0.002 set, trials 0, 1, 2, 3, 4:")
    assert " set" not in tables.run_tables(RESULTS / "mnist_fast").splitlines()[0]


def test_results_tables_say_over_how_many_trials_a_partial_row_is_averaged(tmp_path):
    """A folder where one network has fewer finished trials than the other: that row's mean is over its own
    trials and says so; the complete row is unchanged."""
    import json
    import shutil
    import statistics

    folder = tmp_path / "partial"
    shutil.copytree(RESULTS / "cifar10_fast_wd2e-3", folder)
    for trial in (1, 3, 4):
        shutil.rmtree(folder / f"trial{trial}" / "ce")
    table = load_script("results_tables").run_tables(folder).splitlines()
    kept = [json.loads((folder / f"trial{t}" / "ce" / "detectors.json").read_text())["max_logit"]["auroc"]
            for t in (0, 2)]
    logit_row = next(line for line in table if line.startswith("| cross-entropy, max logit"))
    assert f"{statistics.fmean(kept):.4f} ± {statistics.pstdev(kept):.4f} (2 of 5 trials)" in logit_row
    assert "of 5 trials" not in next(line for line in table if line.startswith("| CAC"))


@pytest.mark.parametrize(("dataset", "run"), [("CIFAR10", "cifar10_fast_wd2e-3"),
                                              ("TinyImageNet", "tinyimagenet_fast_px48_test64")])
def test_the_fast_recipe_is_the_one_its_committed_five_trial_tables_were_trained_with(dataset, run):
    """docs/results.md presents these folders' tables as the fast recipe's: every job that recorded the recipe
    it trained (recipe_variant.py's ``varied_recipe``) trained exactly what ``--recipe fast`` trains today,
    so a change of recipes.FAST without new tables fails here. A field added to Recipe after a job ran is
    absent from its record; the job trained what the field's default means, so today's recipe must keep it."""
    import dataclasses
    import json

    from classanchor.recipes import Recipe, get_recipe

    today = json.loads(json.dumps(dataclasses.asdict(get_recipe(dataset, "fast"))))  # tuples as JSON lists
    defaults = {f.name: f.default for f in dataclasses.fields(Recipe)}
    records = [json.loads(p.read_text())["config"] for p in (RESULTS / run).glob("trial*/*/run_config.json")]
    assert len(records) >= 9  # CIFAR10's trial 0 CAC job predates the record (run_changes.json only)
    for record in records:
        recorded = record["varied_recipe"]
        assert set(recorded) <= set(today), record["out"]
        later = json.loads(json.dumps({name: defaults[name] for name in set(today) - set(recorded)}))  # () -> []
        assert {**recorded, **later} == today, record["out"]


def test_time_to_quality_plots_committed_runs_at_their_measured_or_reference_time(tmp_path, capsys):
    """The AUROC-versus-time figure of docs/speed.md is drawn from committed run folders; a point's time is
    its measured training time, or its epochs times the reference run's median epoch (--time-from)."""
    import json

    ttq = load_script("time_to_quality")
    run = RESULTS / "mnist_fast"
    result = json.loads((run / "trial0" / "cac" / "result.json").read_text())
    rows = ttq.read_run(run, "cac", 0)
    assert rows["epochs"] == len(json.loads((run / "trial0" / "cac" / "history.json").read_text()))
    assert rows["seconds_per_epoch"] == pytest.approx(result["train_seconds"] / rows["epochs"])
    out = tmp_path / "ttq.png"
    assert ttq.main(["--dataset", "MNIST", "--runs", f"fast={run}", "--time-from", f"fast={run}",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{result['auroc']:.4f}" in printed and out.stat().st_size > 10_000
    durations = [b["seconds"] - a["seconds"] for a, b in zip([{"seconds": 0.0}] + rows["history"], rows["history"])]
    assert f"epochs x {sorted(durations)[len(durations) // 2]:.1f} s" in printed  # odd count: the middle one
    # a folder of recipe-variant jobs has no benchmark config: a job's run_config.json, else no record
    variants = RESULTS / "cifar10_fast_wd2e-3"
    assert ttq.read_run(variants, "cac", 2)["recipe"] == "fast"  # trial 2: its run_config.json
    assert ttq.read_run(variants, "cac", 0)["recipe"] is None  # trial 0: run_changes.json only
    # every series its own colour: the named recipes keep theirs, any other name takes an unused one
    colors = ttq.series_colors(["fast_wd4e-3", "fast", "paper", "fast_e30"])
    assert colors["fast"] == ttq.COLORS["fast"] and colors["paper"] == ttq.COLORS["paper"]
    assert len(set(colors.values())) == 4


def test_recipe_variant_trains_one_job_with_the_changed_fields_and_refuses_unknown_ones(tmp_path, capsys):
    """benchmarks/recipe_variant.py: the benchmark's job with recipe fields changed, in config.json."""
    import json

    from sklearn.metrics import roc_auc_score

    from classanchor.evaluate import load_logits
    from classanchor.recipes import get_recipe
    from classanchor.studies import StudyConfig, run_compare

    from .data.conftest import make_mnist

    variant = load_script("recipe_variant")
    make_mnist(tmp_path / "data", per_class=(10, 4))
    out = tmp_path / "run"
    args = ["MNIST", "--data-root", str(tmp_path / "data"), "--out", str(out), "--no-progress",
            "--set", "epochs=2", "--set", "weight_decay=0.002", "--set", "width=4", "--set", "lr=0.02",
            "--detectors", "max_logit,cac"]
    assert variant.main(args) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    job = out / "trial0" / "cac"
    result = json.loads((job / "result.json").read_text())
    assert printed["accuracy"] == result["accuracy"] and printed["auroc"] == result["auroc"]
    # --detectors: scored on the saved logits; max logit by hand (score -max_k z_k, unknown = positive class)
    scores = json.loads((job / "detectors.json").read_text())
    logits = load_logits(job / "logits.npz")
    by_hand = roc_auc_score(logits.test_labels.numpy() < 0, -logits.test.max(dim=1).values.numpy())
    assert scores["max_logit"]["auroc"] == pytest.approx(by_hand, abs=1e-9)
    assert printed["detector_auroc"] == {name: scores[name]["auroc"] for name in ("max_logit", "cac")}
    assert scores["cac"]["auroc"] == pytest.approx(result["auroc"], abs=1e-6)  # the job's own score again
    with pytest.raises(ValueError, match="changed recipe"):  # a study would train missing jobs unchanged
        run_compare(StudyConfig("MNIST", str(tmp_path / "data"), str(out), trials=(0,), recipe="fast"))
    assert result["backbone_kwargs"] == {"width": 4} and result["epochs"] == 2
    history = json.loads((job / "history.json").read_text())
    assert len(history) == 2 and 0 < max(h["lr"] for h in history) <= 0.02
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["changes"] == {"epochs": 2, "weight_decay": 0.002, "width": 4, "lr": 0.02}
    fast = get_recipe("MNIST", "fast")
    recipe = config["varied_recipe"]
    assert recipe["weight_decay"] == 0.002 and recipe["stages"][0]["lr"] == 0.02
    assert recipe["batch_size"] == fast.batch_size and recipe["stages"][0]["schedule"] == "onecycle"
    with pytest.raises(ValueError, match="weight_decay"):  # the message lists the fields to change
        variant.main(["MNIST", "--out", str(tmp_path / "other"), "--set", "wd=0.1"])
    with pytest.raises(ValueError, match="max_logit"):  # an unknown detector: refused before training
        variant.main(["MNIST", "--out", str(tmp_path / "other"), "--detectors", "maxlogit"])
    with pytest.raises(ValueError, match="not an integer"):
        variant.main(["MNIST", "--out", str(tmp_path / "other"), "--set", "epochs=2.5"])
    with pytest.raises(ValueError, match="one-stage"):
        variant.vary(get_recipe("MNIST", "paper"), {"epochs": 3})
    with pytest.raises(ValueError, match="comma-separated integers"):
        variant.main(["MNIST", "--out", str(tmp_path / "other"), "--set", "extra_test_sizes=32,4x"])
    assert variant.parse_settings(["extra_test_sizes=32,40", "epochs=3"]) == {"extra_test_sizes": (32, 40),
                                                                             "epochs": 3}
    assert variant.parse_settings(["extra_test_sizes="]) == {"extra_test_sizes": ()}
    assert not (tmp_path / "other").exists()


@pytest.mark.slow
def test_eval_sides_reproduces_the_job_at_its_own_side_and_scores_other_sides(tmp_path, capsys):
    """benchmarks/eval_sides.py: at the recipe's side the job's own result.json again (same network, anchors
    re-fitted the same way); other sides and the means over two or three sides' logits give valid scores, the
    three-side mean exactly the benchmark's own evaluation with two extra test sides."""
    import json

    from .data.conftest import make_mnist

    make_mnist(tmp_path / "data", per_class=(10, 4))
    out = tmp_path / "run"
    assert load_script("recipe_variant").main(
        ["MNIST", "--data-root", str(tmp_path / "data"), "--out", str(out), "--no-progress",
         "--set", "epochs=2", "--set", "width=4"]) == 0
    job = out / "trial0" / "cac"
    result = json.loads((job / "result.json").read_text())
    sides = load_script("eval_sides")
    assert sides.main([str(job), "--sides", "28,24,20", "--data-root", str(tmp_path / "data"),
                       "--out", str(tmp_path / "sides.json")]) == 0
    reports = json.loads((tmp_path / "sides.json").read_text())["sides"]
    assert list(reports) == ["28", "24", "20", "28+24", "28+20", "24+20", "28+24+20"]
    assert reports["28"]["cac"]["accuracy"] == pytest.approx(result["accuracy"], abs=1e-9)
    assert reports["28"]["cac"]["auroc"] == pytest.approx(result["auroc"], abs=1e-6)
    for report in reports.values():
        assert 0 <= report["cac"]["accuracy"] <= 1 and 0 <= report["cac"]["auroc"] <= 1
    assert "| 28+24+20 | " in capsys.readouterr().out
    # the same three sides through the benchmark's own evaluation: the recipe's extra test sides, the job's
    # finished state re-evaluated without training (recipe_variant.py --from-state)
    again = tmp_path / "run_28_24_20"
    with pytest.raises(FileNotFoundError, match="--from-state"):
        load_script("recipe_variant").main(["MNIST", "--data-root", str(tmp_path / "data"), "--out", str(again),
                                            "--from-state", str(tmp_path / "nope.pt")])
    assert not again.exists()
    assert load_script("recipe_variant").main(
        ["MNIST", "--data-root", str(tmp_path / "data"), "--out", str(again), "--no-progress", "--set", "epochs=2",
         "--set", "width=4", "--set", "extra_test_sizes=24,20",
         "--from-state", str(job / "state.pt")]) == 0
    averaged = json.loads((again / "trial0" / "cac" / "result.json").read_text())
    # nothing trained: the state's own training time
    assert averaged["train_seconds"] == result["train_seconds"]
    assert averaged["accuracy"] == pytest.approx(reports["28+24+20"]["cac"]["accuracy"], abs=1e-9)
    assert averaged["auroc"] == pytest.approx(reports["28+24+20"]["cac"]["auroc"], abs=1e-6)
    card = json.loads((again / "trial0" / "cac" / "model" / "model.json").read_text())
    assert card["input"]["size"] == 28 and card["input"]["extra_sizes"] == [24, 20]
    (job / "state.pt").unlink()
    with pytest.raises(FileNotFoundError, match="state.pt"):
        sides.evaluate_sides(job, [28], str(tmp_path / "data"))
