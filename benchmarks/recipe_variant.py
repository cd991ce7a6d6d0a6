"""One benchmark job (dataset, trial, method) with a recipe changed in named fields: the recipe searches of
docs/results.md, with the benchmark's own splits, seeds, training and evaluation
(:func:`classanchor.benchmark.run_job`).

::

    flock /tmp/classanchor-cpu.lock .venv/bin/python benchmarks/recipe_variant.py CIFAR10 --trial 0 \\
        --data-root ../shared/data --set weight_decay=0.002 --out runs/cifar10_t0_wd2e-3

``--set FIELD=VALUE`` (repeatable) changes a number of the recipe (:class:`classanchor.recipes.Recipe`:
``weight_decay``, ``batch_size``, ``scale_min``, ``flip_p``, ``rotation_deg``, ``momentum``,
``label_smoothing``, ...), of its one training stage (``epochs``, ``lr``, ``warmup_fraction``; fast recipes
have one stage) or of its network (``width``). The run folder holds ``config.json`` (the settings, the changed
fields, the whole resulting recipe, library version and git commit) and ``trial{T}/{job}/`` with
``result.json``, ``history.json``, ``logits.npz`` and the resumable ``state.pt``, as ``classanchor benchmark``
writes them: a killed run continues where it stopped, a finished one is not retrained, and reopening the
folder with other fields is refused. ``--detectors max_logit,msp`` also scores the network with other detectors
(``classanchor.detectors``, fitted on the saved logits as ``classanchor compare`` does, which refuses variant
folders) into ``trial{T}/{job}/detectors.json``. ``--set extra_test_sizes=64`` (comma-separated sides, empty
for none) sets the recipe's test-time sides. ``--from-state JOB/state.pt`` starts the new job from a finished
job's training state: nothing is trained (the state's epochs are done) and the job is evaluated with this
recipe, for changes that touch only the evaluation (``extra_test_sizes``); a training field that differs from
the state's run is the user's error (the one-cycle step count is checked on resuming).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from classanchor.benchmark import RunSettings, job_dir, run_job
from classanchor.cpu_memory import keep_freed_memory
from classanchor.data.splits import build_trial, get_benchmark, get_trial
from classanchor.detectors import make_detector
from classanchor.evaluate import load_logits, open_set_evaluation
from classanchor.io import RunFolder, write_json
from classanchor.methods import get_method
from classanchor.pipeline import ACCEPT_RATE
from classanchor.recipes import Recipe, get_recipe
from classanchor.train import Stage


def _number_fields(cls) -> dict[str, bool]:
    """Name -> is an integer, for the int and float fields of a dataclass."""
    numbers = ("int", "float", int, float)
    return {f.name: f.type in ("int", int) for f in dataclasses.fields(cls) if f.type in numbers}


STAGE_FIELDS = tuple(_number_fields(Stage))  # epochs, lr, warmup_fraction
NETWORK_FIELDS = {"width": True}
SIDES_FIELDS = ("extra_test_sizes",)  # comma-separated integers -> a tuple
FIELDS = {**_number_fields(Recipe), **_number_fields(Stage), **NETWORK_FIELDS, **dict.fromkeys(SIDES_FIELDS, True)}


def parse_settings(pairs: list[str]) -> dict[str, float | int | tuple[int, ...]]:
    """``["weight_decay=0.002", "epochs=10", "extra_test_sizes=64"]`` -> ``{"weight_decay": 0.002, "epochs": 10,
    "extra_test_sizes": (64,)}``; names checked."""
    changes: dict[str, float | int | tuple[int, ...]] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or name not in FIELDS:
            choices = ", ".join(sorted(FIELDS))
            raise ValueError(f"--set {pair!r}: expected FIELD=NUMBER with FIELD one of {choices}.")
        integer = FIELDS[name]
        try:
            if name in SIDES_FIELDS:
                changes[name] = tuple(int(side) for side in text.split(",") if side)
            else:
                changes[name] = int(text) if integer else float(text)
        except ValueError:
            kind = "comma-separated integers" if name in SIDES_FIELDS else "an integer" if integer else "a number"
            raise ValueError(f"--set {pair!r}: {text!r} is not {kind}.") from None
    return changes


def vary(recipe: Recipe, changes: dict[str, float | int]) -> Recipe:
    """``recipe`` with the given fields changed (stage fields need a one-stage recipe)."""
    stage_changes = {k: v for k, v in changes.items() if k in STAGE_FIELDS}
    if stage_changes and len(recipe.stages) != 1:
        raise ValueError(f"{', '.join(stage_changes)} change a one-stage recipe; {recipe.dataset} "
                         f"{recipe.name!r} has {len(recipe.stages)} stages.")
    stages = (dataclasses.replace(recipe.stages[0], **stage_changes),) if stage_changes else recipe.stages
    network = dict(recipe.backbone_kwargs)
    network.update({k: v for k, v in changes.items() if k in NETWORK_FIELDS})
    fields = {k: v for k, v in changes.items() if k not in STAGE_FIELDS and k not in NETWORK_FIELDS}
    network_kwargs = tuple(sorted(network.items()))
    return dataclasses.replace(recipe, stages=stages, backbone_kwargs=network_kwargs, **fields)


def score_with_detectors(job_folder: Path, detectors: list[str]) -> dict[str, dict]:
    """{detector: open-set report without the confusion} of a finished job's ``logits.npz`` (threshold
    calibrated on the known validation logits at the benchmark's accept rate), written to ``detectors.json``."""
    logits = load_logits(job_folder / "logits.npz")
    reports = {}
    for name in detectors:
        report = open_set_evaluation(logits, name, accept_rate=ACCEPT_RATE)
        report.pop("unknown_confusion", None)
        reports[name] = report
    write_json(job_folder / "detectors.json", reports)
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--trial", type=int, default=0)
    parser.add_argument("--method", default="cac")
    parser.add_argument("--recipe", default="fast", help="the recipe to change (default: fast)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="changes")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--out", required=True, help="run folder (resumable)")
    parser.add_argument("--precision", default="float32", choices=("auto", "float32", "bf16"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detectors", default="", help="comma-separated detectors to score the network with "
                        "besides its own (e.g. max_logit,msp for cross-entropy)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--from-state", type=Path, help="a finished job's state.pt to start from (re-evaluate its "
                        "network with an evaluation-only change; nothing is trained)")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the classanchor command does
    dataset = get_benchmark(args.dataset).name
    changes = parse_settings(args.changes)
    recipe = vary(get_recipe(dataset, args.recipe), changes)
    detectors = [name for name in args.detectors.split(",") if name]
    for name in detectors:
        make_detector(name)  # an unknown name fails here, naming the choices, before any training
    if args.from_state is not None and not args.from_state.is_file():
        raise FileNotFoundError(f"--from-state {args.from_state} is not a file; give a finished job's state.pt.")
    method = get_method(args.method)
    settings = RunSettings(dataset, args.data_root, args.out, trials=(args.trial,), recipe=args.recipe,
                           seed=args.seed, device=args.device, precision=args.precision)
    data = build_trial(get_trial(dataset, args.trial), args.data_root, seed=args.seed,
                       progress=not args.no_progress)  # read before the folder is written
    RunFolder.create(args.out, {**dataclasses.asdict(settings), "method": method.name, "changes": changes,
                                "varied_recipe": dataclasses.asdict(recipe)})
    folder = job_dir(args.out, args.trial, method)
    if args.from_state is not None and not (folder / "state.pt").exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.from_state, folder / "state.pt")
    result = run_job(data, recipe, method, folder, settings, progress=not args.no_progress)
    summary = {key: result[key] for key in ("dataset", "trial", "job", "accuracy", "auroc", "best_epoch",
                                            "epochs", "train_seconds", "eval_seconds", "precision", "cpu")}
    summary["changes"] = changes
    if detectors:
        summary["detector_auroc"] = {name: report["auroc"]
                                     for name, report in score_with_detectors(folder, detectors).items()}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
