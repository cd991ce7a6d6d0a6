"""The paper's open-set benchmark: one trial and method at a time, resumable, written to a run folder.

Run folder layout (``out/``)::

    config.json                   the BenchmarkConfig, library version, git commit
    trial{t}/{job}/state.pt       resumable training state (kept after the job)
    trial{t}/{job}/history.json   per-epoch training history
    trial{t}/{job}/model/         CAC family: the open-set model for ``classanchor predict``
    trial{t}/{job}/logits.npz     train / val / test logits, anchors, the job's own test and validation scores
    trial{t}/{job}/result.json    the open-set report at the calibrated threshold, calibration, environment,
                                  wall times; once it exists the job is done and never trained again
    results.json, table.md        all finished jobs and the Markdown table with published numbers

A job is a method with its hyperparameters (e.g. ``cac``, ``ce``, ``cac_a5_l0.8``). The unfinished jobs run
on an executor (:mod:`classanchor.executors`) and under torchrun on every process together
(:mod:`classanchor.distributed`); see docs/scale.md.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import distributed
from .data.splits import OpenSetData, build_trial, get_benchmark, get_trial
from .evaluate import SCORE_LABELS, Logits
from .executors import InProcess, Job
from .io import RunFolder, read_json, run_environment, write_json, write_npz, write_text
from .methods import Method, get_method
from .models.registry import build_backbone
from .pipeline import backbone_for, fit_open_set, resolve_device
from .recipes import Recipe, get_recipe
from .train import resolve_precision

__all__ = ["BenchmarkConfig", "PUBLISHED", "RunSettings", "job_dir", "job_name", "run_job", "run_benchmark",
           "format_benchmark_table", "per_trial_lines", "train_missing"]

#: Published numbers (paper Tables 2 and 3): dataset -> method -> (closed-set accuracy, AUROC).
PUBLISHED: dict[str, dict[str, tuple[float | None, float]]] = {
    "MNIST": {"cac": (0.998, 0.985), "ce": (0.997, 0.978), "openmax": (None, 0.981)},
    "SVHN": {"cac": (0.970, 0.938), "ce": (0.963, 0.886), "openmax": (None, 0.894)},
    "CIFAR10": {"cac": (0.934, 0.803), "ce": (0.927, 0.677), "openmax": (None, 0.695)},
    "CIFAR+10": {"cac": (0.952, 0.863), "ce": (0.947, 0.816), "openmax": (None, 0.817)},
    "CIFAR+50": {"cac": (0.952, 0.872), "ce": (0.947, 0.805), "openmax": (None, 0.796)},
    "TinyImageNet": {"cac": (0.759, 0.772), "ce": (0.733, 0.577), "openmax": (None, 0.576)},
}


@dataclass(frozen=True)
class RunSettings:
    """The options of the benchmark and the studies: dataset, data folder, run folder, trials, how to train.
    ``recipe``, ``epochs_scale``, ``seed``, ``backbone`` (None: the recipe's), ``backbone_kwargs`` and
    ``precision`` decide what a job folder holds; ``device``, ``compile`` and ``eval_batch_size`` do not."""

    dataset: str
    data_root: str
    out: str
    trials: tuple[int, ...] = (0, 1, 2, 3, 4)
    recipe: str = "paper"
    epochs_scale: float = 1.0
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    backbone: str | None = None
    backbone_kwargs: dict = field(default_factory=dict)
    precision: str = "auto"
    eval_batch_size: int = 1000


@dataclass(frozen=True)
class BenchmarkConfig(RunSettings):
    """One benchmark command: the shared settings, the methods and their anchor hyperparameters."""

    methods: tuple[str, ...] = ("cac", "ce")
    anchor_magnitude: float = 10.0
    anchor_weight: float = 0.1
    extra: dict = field(default_factory=dict)


def job_name(method: Method) -> str:
    """Folder name of a method with its hyperparameters; the paper's defaults give just the name."""
    alpha = f"_a{method.anchor_magnitude:g}" if method.anchor_magnitude != 10.0 else ""
    weight = f"_l{method.anchor_weight:g}" if method.name == "cac" and method.anchor_weight != 0.1 else ""
    return method.name + alpha + weight


def run_job(data: OpenSetData, recipe: Recipe, method: Method, job_dir: Path, config: RunSettings,
            progress: bool = True) -> dict:
    """Fit and evaluate one method on one trial with ``config`` (resumable); returns ``result.json``'s contents.
    :func:`classanchor.pipeline.fit_open_set` trains and calibrates; the model's :meth:`evaluate` measures
    every open-set metric on the trial's test images once."""
    result_path = job_dir / "result.json"
    if result_path.exists():
        return read_json(result_path)
    trial, device = data.trial.trial, resolve_device(config.device)
    fitted = fit_open_set(data.train, data.val, recipe, method, class_names=data.known_names,
                          backbone=config.backbone, backbone_kwargs=config.backbone_kwargs, device=device,
                          seed=config.seed + trial, precision=config.precision, compile=config.compile,
                          state_path=job_dir / "state.pt", eval_batch_size=config.eval_batch_size,
                          progress=progress, description=f"{data.trial.dataset} t{trial} ")
    model = fitted.model
    start = time.perf_counter()
    test = data.test()
    known_classes = np.asarray(data.trial.known_sorted)[data.test_known.labels]
    classes = torch.from_numpy(np.concatenate([known_classes, data.unknown_labels]))
    test_logits, report = model.evaluate(test.images, test.labels, classes=classes, device=device,
                                         batch_size=config.eval_batch_size)
    eval_seconds = time.perf_counter() - start
    logits = Logits(fitted.train_logits, fitted.train_labels, test_logits, torch.as_tensor(test.labels), classes,
                    fitted.val_logits, fitted.val_labels, anchors=getattr(model.detector, "means_", None),
                    test_scores=torch.from_numpy(report.pop("test_scores")),
                    test_predictions=torch.from_numpy(report.pop("test_predictions")), val_scores=fitted.val_scores)
    write_npz(job_dir / "logits.npz", logits.to_npz())
    write_json(job_dir / "history.json", fitted.history.history)
    name = job_name(method)
    if method.uses_anchors:
        model.save(job_dir / "model", {"dataset": data.trial.dataset, "trial": trial, "job": name,
                                       "recipe": recipe.name})
    result = {"dataset": data.trial.dataset, "trial": trial, "job": name, "method": method.name,
              "detector": method.detector, "anchor_magnitude": method.anchor_magnitude,
              "anchor_weight": method.anchor_weight, "recipe": recipe.name, "backbone": model.backbone,
              "backbone_kwargs": model.backbone_kwargs,
              "accuracy": report["accuracy"], "auroc": report["auroc"], "open_set": report,
              "calibration": model.calibration, "openness": data.trial.openness,
              "best_epoch": fitted.history.best_epoch, "epochs": recipe.total_epochs,
              "train_seconds": fitted.seconds["train"], "eval_seconds": fitted.seconds["fit"] + eval_seconds,
              "known_names": list(data.known_names), "unknown_names": list(data.unknown_names),
              **run_environment(device, fitted.precision)}
    write_json(result_path, result)
    return result


def format_benchmark_table(dataset: str, results: list[dict], recipe: Recipe, full: Recipe) -> str:
    """Markdown: measured mean ± std over trials beside the published values, plus a per-trial table."""
    lines = [f"# {dataset}: open-set benchmark", ""]
    if recipe.total_epochs < full.total_epochs:
        epochs, paper = (" + ".join(str(s.epochs) for s in r.stages) for r in (recipe, full))
        lines += [f"**Shortened run**: {epochs} epochs instead of the recipe's {paper}; numbers below are not "
                  "comparable to the published ones at full length.", ""]
    score_of = {m: SCORE_LABELS[get_method(m).detector] for m in ("cac", "ce")}
    lines += [f"Recipe `{recipe.name}`; score: CAC = {score_of['cac']}, cross-entropy = {score_of['ce']}.", "",
              "| method | trials | closed-set accuracy | published | AUROC | published |", "|---|---|---|---|---|---|"]
    by_job = {job: sorted((r for r in results if r["job"] == job), key=lambda r: r["trial"])
              for job in dict.fromkeys(r["job"] for r in results)}
    for job, rows in by_job.items():
        acc, auc = np.array([r["accuracy"] for r in rows]), np.array([r["auroc"] for r in rows])
        published = ["-" if v is None else f"{v:.3f}"
                     for v in PUBLISHED.get(dataset, {}).get(job, (None, None))]
        lines.append(f"| {job} | {len(rows)} | {acc.mean():.4f} ± {acc.std():.4f} | {published[0]} "
                     f"| {auc.mean():.4f} ± {auc.std():.4f} | {published[1]} |")
    lines += per_trial_lines("accuracy / AUROC", "job", by_job.items(), sorted({r["trial"] for r in results}))
    return "\n".join(lines) + "\n"


def per_trial_lines(title: str, head: str, groups, trials: list[int]) -> list[str]:
    """A Markdown table with a line per (label, result rows) of ``groups`` and a cell per trial: "accuracy /
    AUROC", "failed" for a row with an ``error``, "-" without a row."""
    lines = ["", f"Per trial ({title}):", "", f"| {head} | " + " | ".join(f"trial {t}" for t in trials)
             + " |", "|---|" + "---|" * len(trials)]
    for label, rows in groups:
        by_trial = {r["trial"]: r for r in rows}
        cells = ["-" if t not in by_trial else "failed" if "error" in by_trial[t]
                 else f"{by_trial[t]['accuracy']:.4f} / {by_trial[t]['auroc']:.4f}" for t in trials]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def job_dir(out: str | Path, trial: int, method: Method) -> Path:
    return Path(out) / f"trial{trial}" / job_name(method)


#: The last trial's data of this process, read once for consecutive jobs of a trial (also on a Ray worker).
_TRIAL_DATA: dict[tuple, OpenSetData] = {}


def _trial_data(dataset: str, trial: int, data_root: str, seed: int, progress: bool) -> OpenSetData:
    key = (dataset, trial, str(Path(data_root).resolve()), seed)
    if key not in _TRIAL_DATA:
        _TRIAL_DATA.clear()  # free the previous trial's images first
        _TRIAL_DATA[key] = build_trial(get_trial(dataset, trial), key[2], seed=seed, progress=progress)
    return _TRIAL_DATA[key]


def _train(config: RunSettings, dataset: str, trial: int, method: Method, recipe: Recipe, folder: str,
           progress: bool) -> dict:
    """:func:`run_job` into ``folder``. Under torchrun a rank other than 0 trains along in a scratch folder
    holding a copy of rank 0's resume state, then deletes it: only rank 0 writes."""
    data = _trial_data(dataset, trial, config.data_root, config.seed, progress)
    if distributed.is_main():
        return run_job(data, recipe, method, Path(folder), config, progress)
    prefix = f"classanchor-r{distributed.rank()}-"
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as scratch:
        if (Path(folder) / "state.pt").exists():
            shutil.copy(Path(folder) / "state.pt", scratch)
        return run_job(data, recipe, method, Path(scratch), config, progress)


def train_missing(config: RunSettings, dataset: str, recipe: Recipe, jobs: list[tuple[int, Method]],
                  out: str | Path, executor=None, progress: bool = True) -> None:
    """Train every (trial, method) of ``jobs`` without a ``result.json`` in the run folder ``out`` on ``executor``.
    ``executor``: from :func:`classanchor.executors.make_executor` (default: in this process). Paths are made
    absolute for Ray workers with another working folder. Under torchrun every process takes part in each
    training (the unfinished jobs are fixed before the first one starts) and only rank 0 writes."""
    executor = executor or InProcess()
    out = Path(out).resolve()
    show = progress and executor.in_process and distributed.is_main()
    pending = [Job(f"trial{t}/{job_name(m)}", _train, (config, dataset, t, m, recipe, str(job_dir(out, t, m)), show))
               for t, m in dict.fromkeys(jobs) if not (job_dir(out, t, m) / "result.json").exists()]
    try:
        if not executor.in_process:
            _TRIAL_DATA.clear()  # the workers read their own
        with distributed.session(resolve_device(config.device)):
            executor.run(pending, progress=progress and distributed.is_main())
    finally:
        _TRIAL_DATA.clear()


def _methods(config: BenchmarkConfig, names) -> list[Method]:
    return [get_method(m, anchor_magnitude=config.anchor_magnitude,
                       anchor_weight=config.anchor_weight if m == "cac" else None) for m in names]


def run_benchmark(config: BenchmarkConfig, progress: bool = True, executor=None) -> tuple[list[dict], str]:
    """Run every (trial, method) of ``config`` not yet done; write results.json and table.md.
    Every input is checked before the run folder is touched (dataset, recipe, methods, device, precision, the
    backbone and its arguments, the first trial's data files), so a mistyped command leaves no config.json
    behind that would refuse the corrected one. ``executor`` runs the trainings (:func:`train_missing`); under
    torchrun only rank 0 writes, and the other ranks return ``([], "")``."""
    dataset = get_benchmark(config.dataset).name
    full = get_recipe(dataset, config.recipe)
    recipe = full.scaled(config.epochs_scale)
    methods = _methods(config, config.methods)
    if not methods or not config.trials:
        raise ValueError("nothing to run: give at least one method (--methods) and one trial (--trials).")
    resolve_precision(config.precision, resolve_device(config.device))
    backbone, backbone_kwargs = backbone_for(recipe, config.backbone, config.backbone_kwargs)
    build_backbone(backbone, 2, get_benchmark(dataset).input_shape[2], recipe.image_size, **backbone_kwargs)
    out = Path(config.out)
    jobs = [(t, m) for t in config.trials for m in methods]
    pending = [t for t, m in jobs if not (job_dir(out, t, m) / "result.json").exists()]
    if pending:  # the data files are readable (kept for the first in-process job)
        _trial_data(dataset, pending[0], config.data_root, config.seed, progress)
    if distributed.is_main():
        folder = RunFolder.create(out, config)
    train_missing(config, dataset, recipe, jobs, out, executor, progress)
    if not distributed.is_main():
        return [], ""
    every_job = [job_dir(out, t, m) / "result.json" for t in folder.config["trials"]
                 for m in _methods(config, folder.config["methods"])]  # this session's and earlier ones'
    results = [read_json(path) for path in every_job if path.exists()]
    table = format_benchmark_table(dataset, results, recipe, full)
    write_json(folder.file("results.json"), results)
    write_text(folder.file("table.md"), table)
    return results, table
