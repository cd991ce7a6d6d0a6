"""The paper's comparisons as resumable studies over trials, written into a benchmark run folder.

Each study is a list of (training job, open-set detector) pairs evaluated on every trial:

- ``compare`` (Table 2, Section 5.1): the CAC network by its rejection score (Eq. 11) and the cross-entropy
  network by MSP, max-logit, energy, OpenMax and class-mean distance (plus the latter two on the CAC network);
- ``ablation`` (Fig. 3): CAC (Eq. 8) against its anchor term alone (Eq. 6) and its tuplet term alone (Eq. 7);
- ``sweep`` (Fig. 2): one CAC network per (anchor magnitude alpha, anchor weight lambda) cell.

The networks live in the benchmark's layout (``out/trial{t}/{job}/``): a job is trained at most once per
folder, whichever study or benchmark asks for it (:func:`classanchor.benchmark.train_missing`), and a folder
recording other training settings (:data:`TRAINING_KEYS`) is refused. Scores come from each job's
``logits.npz``, the threshold calibrated on the known validation logits. A study ``<name>`` adds
``study_<name>.json`` (its config and sessions), ``<name>.json`` (per-trial reports, mean ± std per (job,
detector)), ``<name>.md`` (the tables) and ``trial{t}/<name>_confusion.json`` (unknown-to-known confusion,
Fig. 4).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ._version import __version__
from . import distributed
from .benchmark import PUBLISHED, RunSettings, job_dir, job_name, per_trial_lines, train_missing
from .data.splits import get_benchmark
from .detectors import make_detector
from .evaluate import (DETECTOR_DEFAULTS, METRIC_KEYS, THRESHOLD_KEYS, aggregate_reports, load_logits,
                       open_set_evaluation)
from .io import git_commit, open_run_folder, read_json, write_json, write_text
from .methods import Method, get_method
from .pipeline import ACCEPT_RATE
from .recipes import Recipe, get_recipe

__all__ = ["ABLATION_METHODS", "COMPARE_DETECTORS", "SWEEP_MAGNITUDES", "SWEEP_WEIGHTS", "TRAINING_KEYS",
           "Entry", "StudyConfig", "ablation_entries", "compare_entries", "format_study_table",
           "run_ablation", "run_compare", "run_study", "run_sweep", "sweep_entries"]

#: Settings that decide what a job folder holds; every study and benchmark sharing a folder must agree.
TRAINING_KEYS = ("dataset", "recipe", "epochs_scale", "seed", "backbone", "backbone_kwargs", "precision")
#: Detectors of the methods comparison, per training method (the first one of each network is its own score).
COMPARE_DETECTORS: dict[str, tuple[str, ...]] = {
    "cac": ("cac", "class_mean", "openmax"), "ce": ("msp", "max_logit", "energy", "openmax", "class_mean")}
ABLATION_METHODS = ("cac", "anchor", "tuplet")
SWEEP_MAGNITUDES = (5.0, 10.0, 20.0)  # alpha; the paper's Fig. 2 spans 5..20
SWEEP_WEIGHTS = (0.05, 0.1, 0.2, 0.4, 0.8)  # lambda; the paper's Fig. 2 spans 0.05..0.8
DETECTOR_LABELS = {"cac": "CAC rejection score", "msp": "max softmax (SoftMax)", "max_logit": "max logit",
                   "energy": "energy", "openmax": "OpenMax", "class_mean": "class-mean distance"}
METRIC_LABELS = {"accuracy": "accuracy", "auroc": "AUROC", "oscr": "OSCR", "fpr_at_95_tpr": "FPR@95%TPR",
                 "aupr_in": "AUPR-In", "aupr_out": "AUPR-Out", "macro_f1": "macro-F1",
                 "unknown_recall": "unknown recall", "known_acceptance": "known accepted"}


@dataclass(frozen=True)
class StudyConfig(RunSettings):
    """Where and how a study trains (the benchmark's options; a benchmark's ``out`` reuses its networks), and
    ``accept_rate``: the share of known validation samples the calibrated threshold accepts."""

    accept_rate: float = ACCEPT_RATE

    def training(self) -> dict:
        """The :data:`TRAINING_KEYS` of this config, with the dataset's canonical name."""
        return {k: getattr(self, k) for k in TRAINING_KEYS} | {"dataset": get_benchmark(self.dataset).name}


@dataclass(frozen=True)
class Entry:
    """One row of a study: a trained network (``method``, trained once per trial) scored by ``detector``."""

    method: Method
    detector: str

    @property
    def job(self) -> str:
        return job_name(self.method)

    @property
    def key(self) -> str:
        return f"{self.job}/{self.detector}"

    @property
    def ids(self) -> dict:
        """The identifiers of this row in a study's output."""
        return {"job": self.job, "method": self.method.name, "detector": self.detector,
                "anchor_magnitude": self.method.anchor_magnitude, "anchor_weight": self.method.anchor_weight}


def compare_entries(detectors: dict[str, Sequence[str]] | None = None) -> list[Entry]:
    """The methods comparison: {training method: detectors} (default :data:`COMPARE_DETECTORS`)."""
    detectors = COMPARE_DETECTORS if detectors is None else detectors
    for name in (d for names in detectors.values() for d in names):
        make_detector(name)  # an unknown name fails here, naming the choices, not after the training
    return [Entry(get_method(name), d) for name, names in detectors.items() for d in names]


def ablation_entries(methods: Sequence[str] = ABLATION_METHODS) -> list[Entry]:
    """The ablation: each training method with its own score (CAC family: Eq. 11; cross-entropy: MSP)."""
    return [Entry(m, m.detector) for m in (get_method(name) for name in methods)]


def sweep_entries(magnitudes: Sequence[float] = SWEEP_MAGNITUDES,
                  weights: Sequence[float] = SWEEP_WEIGHTS) -> list[Entry]:
    """The sweep: one CAC network per (anchor magnitude alpha, anchor weight lambda), scored by Eq. 11
    (:func:`~classanchor.methods.get_method` refuses a value that is not > 0)."""
    if not magnitudes or not weights:
        raise ValueError("the sweep needs at least one anchor magnitude and one anchor weight.")
    return [Entry(get_method("cac", anchor_magnitude=a, anchor_weight=w), "cac")
            for a in dict.fromkeys(magnitudes) for w in dict.fromkeys(weights)]


def _open_folder(config: StudyConfig, name: str, parameters: dict) -> Path:
    """Write (or extend) ``study_<name>.json`` in the run folder, returned; refused when its benchmark
    ``config.json`` or other ``study_*.json`` record other training settings."""
    folder = open_run_folder(config.out)
    training = config.training()
    records = [(p.name, read_json(p).get("training", {})) for p in sorted(folder.glob("study_*.json"))]
    if (folder / "config.json").exists():
        benchmark_config = read_json(folder / "config.json").get("config", {})
        if benchmark_config.get("changes"):  # written by benchmarks/recipe_variant.py
            raise ValueError(f"{folder} holds a network trained with a changed recipe "
                             f"({benchmark_config['changes']}), which a study would mix with networks of the "
                             "unchanged one; score it with benchmarks/recipe_variant.py --detectors, or use "
                             "another --out folder.")
        records.insert(0, ("config.json", benchmark_config))
    for source, recorded in records:
        if "dataset" in recorded:
            recorded = {**recorded, "dataset": get_benchmark(recorded["dataset"]).name}
        different = [f"{key}={recorded[key]!r} (asked: {training[key]!r})" for key in TRAINING_KEYS
                     if key in recorded and recorded[key] != training[key]]
        if different:
            raise ValueError(f"{folder / source} records networks trained with {', '.join(different)}; run "
                             "the study with the same settings to reuse them, or use another --out folder.")
    record_path = folder / f"study_{name}.json"
    sessions = read_json(record_path).get("sessions", []) if record_path.exists() else []
    session = {"config": asdict(config), "parameters": parameters, "classanchor_version": __version__,
               "git_commit": git_commit(), "torch_version": torch.__version__,
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(record_path, {"study": name, "training": training, **session, "sessions": sessions + [session]})
    return folder


def _job_result(config: StudyConfig, recipe: Recipe, folder: Path, trial: int,
                method: Method) -> tuple[dict, Path]:
    """A trained job's ``result.json`` contents and folder; refused when it was trained for something else."""
    folder = job_dir(folder, trial, method)
    result = read_json(folder / "result.json")
    expected = {"dataset": config.training()["dataset"], "trial": trial, "epochs": recipe.total_epochs,
                "anchor_magnitude": method.anchor_magnitude, "anchor_weight": method.anchor_weight}
    wrong = [f"{k}={result.get(k)!r} (expected {v!r})" for k, v in expected.items() if result.get(k) != v]
    if wrong:
        raise ValueError(f"{folder / 'result.json'} does not belong to this study: {', '.join(wrong)}; "
                         "use another --out folder or delete that job folder.")
    return result, folder


def _evaluate(logits, detector: str, accept_rate: float, result: dict) -> dict:
    """The report of one (network, detector), or ``{"error": ...}`` when the detector cannot be fitted; the
    job's own score at the job's accept rate is read from its ``result.json`` (computed once, by the
    pipeline), any other detector or accept rate is fitted on the saved logits."""
    own = result.get("open_set")
    calibrated = result.get("calibration", {}).get("target_accept_rate")
    if own is not None and detector == result.get("detector") and accept_rate == calibrated:
        return {**own, "unknown_confusion": dict(own["unknown_confusion"]), "accept_rate": accept_rate,
                "detector_repr": repr(make_detector(detector, **DETECTOR_DEFAULTS.get(detector, {})))}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = open_set_evaluation(logits, detector, accept_rate=accept_rate)
        except ValueError as err:  # e.g. OpenMax with < 3 correctly classified samples in a class
            return {"error": str(err)}
    if caught:
        report["warnings"] = sorted({str(w.message) for w in caught})
    return report


def run_study(config: StudyConfig, name: str, entries: Sequence[Entry], parameters: dict | None = None,
              progress: bool = True, executor=None) -> dict | None:
    """Train what is missing, evaluate every entry on every trial, write ``<name>.json`` and the confusions.
    ``entries``: (method, detector) rows, each method trained once per trial; ``parameters``: the study's
    own settings, recorded in ``study_<name>.json``; ``executor``: runs the missing trainings
    (:func:`classanchor.executors.make_executor`; default in-process). Returns ``None`` on a torchrun rank
    other than 0, else ``{"study", "dataset", "recipe", "total_epochs", "paper_epochs", "accept_rate",
    "trials", "entries", "per_trial", "summary", "seconds"}``: a per-trial row holds ``trial``,
    :attr:`Entry.ids`, ``train_seconds`` and the open-set report without the confusion (or ``error``); a
    summary row holds :attr:`Entry.ids`, ``trials``, ``failed_trials`` and ``{metric: {"mean", "std", "n"}}``."""
    if not entries:
        raise ValueError(f"study {name!r} has no (method, detector) entries to run.")
    if not config.trials:
        raise ValueError("no trials given; pass e.g. --trials 0 or --trials 0-4.")
    start = time.perf_counter()
    dataset = config.training()["dataset"]
    full = get_recipe(dataset, config.recipe)
    recipe = full.scaled(config.epochs_scale)
    methods = list(dict.fromkeys(e.method for e in entries))
    folder = _open_folder(config, name, parameters or {}) if distributed.is_main() else Path(config.out)
    train_missing(config, dataset, recipe, [(t, m) for t in config.trials for m in methods], folder, executor,
                  progress)
    if not distributed.is_main():
        return None
    rows = []
    for trial in config.trials:
        confusion: dict = {}
        results = {m: _job_result(config, recipe, folder, trial, m) for m in methods}
        for method, (result, job_folder) in results.items():
            logits = load_logits(job_folder / "logits.npz")
            # unknown test images per unknown class, classes ascending (the confusion rows)
            totals = np.unique(logits.test_classes[logits.is_unknown].numpy(), return_counts=True)[1].tolist()
            for entry in (e for e in entries if e.method == method):
                report = _evaluate(logits, entry.detector, config.accept_rate, result)
                if "unknown_confusion" in report:
                    confusion[entry.key] = {"threshold": report["threshold"], **report.pop("unknown_confusion"),
                                            "totals": totals}
                rows.append({"trial": trial, **entry.ids, "train_seconds": result.get("train_seconds"),
                             **report})
        first = results[methods[0]][0]
        write_json(folder / f"trial{trial}" / f"{name}_confusion.json",
                   {"dataset": dataset, "trial": trial, "accept_rate": config.accept_rate,
                    "known_names": first.get("known_names"), "unknown_names": first.get("unknown_names"),
                    "note": "rows: unknown classes (ids ascending, names in unknown_names order); columns: "
                            "known classes; counts of unknown test images accepted at the threshold, by "
                            "predicted class",
                    "entries": confusion})
    summary = []
    for entry in entries:
        reports = [r for r in rows if _key(r) == entry.key]
        done = [r for r in reports if "error" not in r]
        summary.append({**entry.ids, "trials": [r["trial"] for r in done],
                        "failed_trials": [r["trial"] for r in reports if "error" in r],
                        **aggregate_reports(done)})
    output = {"study": name, "dataset": dataset, "recipe": config.recipe, "total_epochs": recipe.total_epochs,
              "paper_epochs": full.total_epochs, "accept_rate": config.accept_rate,
              "trials": list(config.trials), "entries": [e.key for e in entries], "per_trial": rows,
              "summary": summary, "seconds": time.perf_counter() - start}
    write_json(folder / f"{name}.json", output)
    return output


def _key(row: dict) -> str:
    """The :attr:`Entry.key` of an output row."""
    return f"{row['job']}/{row['detector']}"


def _cell(stats: dict) -> str:
    """``mean ± std`` over the trials (the mean alone for one trial, "-" for none)."""
    if not stats or stats.get("mean") is None:
        return "-"
    return f"{stats['mean']:.3f}" + (f" ± {stats['std']:.3f}" if stats["n"] != 1 else "")


#: The (job, detector) rows with a published AUROC (paper Table 2), and their key in ``PUBLISHED``.
_PUBLISHED_ROWS = {("cac", "cac"): "cac", ("ce", "msp"): "ce", ("ce", "openmax"): "openmax"}


def format_study_table(output: dict, title: str, labels: dict[str, str] | None = None,
                       before: Sequence[str] = ()) -> str:
    """Markdown for a :func:`run_study` output: mean ± std per row, per-trial AUROC, failed rows;
    ``labels``: {entry key: row label} (default ``job / detector label``); ``before``: lines put before the
    table."""
    labels = labels or {}
    published = PUBLISHED.get(output["dataset"], {})
    lines = [f"# {output['dataset']}: {title}", ""]
    if output["total_epochs"] < output["paper_epochs"]:
        lines += [(f"**Shortened run**: {output['total_epochs']} epochs per network instead of the recipe's "
                  f"{output['paper_epochs']}; not comparable to the published numbers at full length."), ""]
    trials = output["trials"]
    lines += [(f"Recipe `{output['recipe']}`, trials {', '.join(map(str, trials))}; mean ± std over trials "
              "(population std). Threshold metrics (macro-F1 over K known + unknown, unknown recall, known "
              f"accepted) at the threshold that accepts {output['accept_rate']:.0%} of the known *validation* "
              "images. FPR@95%TPR: share of unknowns accepted when 95% of the known test images are."), ""]
    keys = METRIC_KEYS + THRESHOLD_KEYS
    head = [METRIC_LABELS[k] for k in keys]
    head.insert(2, "published AUROC")  # after accuracy and AUROC
    lines += [*before, f"| network / score | trials | {' | '.join(head)} |", "|---|---|" + "---|" * len(head)]
    summary = [(labels.get(_key(r), f"{r['job']} / {DETECTOR_LABELS.get(r['detector'], r['detector'])}"), r)
               for r in output["summary"]]
    for label, row in summary:
        paper = published.get(_PUBLISHED_ROWS.get((row["job"], row["detector"])))
        cells = [_cell(row[k]) for k in keys]
        cells.insert(2, "-" if paper is None else f"{paper[1]:.3f}")
        lines.append(f"| {label} | {len(row['trials'])} | {' | '.join(cells)} |")
    lines += per_trial_lines("closed-set accuracy / AUROC", "network / score", [
        (label, [r for r in output["per_trial"] if _key(r) == _key(row)]) for label, row in summary], trials)
    failed = [r for r in output["per_trial"] if "error" in r]
    if failed:
        lines += ["", "Rows that could not be computed:", ""]
        lines += [f"- trial {r['trial']}, {r['job']} / {r['detector']}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def _confusion_lines(folder: Path, name: str, output: dict, key: str) -> list[str]:
    """Fig. 4 in words: per unknown class, how many were accepted and which known class took most of them."""
    lines = ["", (f"Unknown-to-known confusion (Fig. 4) of `{key}` at the calibrated threshold: per unknown "
                  "class, the unknown test images accepted as known and the known class that took most of "
                  f"them (full matrices: `trial{{t}}/{name}_confusion.json`)."), ""]
    for trial in output["trials"]:
        record = read_json(folder / f"trial{trial}" / f"{name}_confusion.json")
        matrix = record["entries"].get(key)
        if matrix is None:
            continue
        known, unknown = record.get("known_names") or [], record.get("unknown_names") or []
        lines += [f"Trial {trial}:", "", "| unknown class | accepted / total | most often taken as | share |",
                  "|---|---|---|---|"]
        for row, (counts, rates, total) in enumerate(zip(matrix["counts"], matrix["rates"], matrix["totals"])):
            name_u = unknown[row] if row < len(unknown) else str(matrix["classes"][row])
            accepted, top = int(sum(counts)), int(np.argmax(counts))
            taken = f"{known[top] if top < len(known) else top} | {rates[top]:.0%}" if accepted else "- | -"
            lines.append(f"| {name_u} | {accepted} / {total} | {taken} |")
        lines.append("")
    return lines


def _written(config: StudyConfig, name: str, output: dict, table: str) -> tuple[dict, str]:
    """``(output, table)``, the table with the wall time added and written to ``<name>.md``."""
    table += f"\nWall time of this command: {output['seconds']:.0f} s.\n"
    write_text(Path(config.out) / f"{name}.md", table)
    return output, table


def run_compare(config: StudyConfig, detectors: dict[str, Sequence[str]] | None = None,
                progress: bool = True, executor=None) -> tuple[dict | None, str]:
    """The methods comparison (paper Table 2 and Section 5.1); writes ``compare.json`` and ``compare.md``.
    ``detectors``: {training method: detectors to score its network with} (default :data:`COMPARE_DETECTORS`).
    Each study function returns ``(output, table)`` (``(None, "")`` on a torchrun rank other than 0);
    ``executor`` trains the missing networks (:func:`run_study`)."""
    detectors = {k: tuple(v) for k, v in (COMPARE_DETECTORS if detectors is None else detectors).items()}
    entries = compare_entries(detectors)
    output = run_study(config, "compare", entries, {"detectors": detectors}, progress, executor)
    if output is None:
        return None, ""
    table = format_study_table(output, "methods comparison (Table 2, Section 5.1)")
    table += "\n".join(_confusion_lines(Path(config.out), "compare", output, entries[0].key))
    return _written(config, "compare", output, table)


def run_ablation(config: StudyConfig, methods: Sequence[str] = ABLATION_METHODS,
                 progress: bool = True, executor=None) -> tuple[dict | None, str]:
    """The loss ablation (paper Fig. 3): CAC vs anchor loss only vs tuplet loss only, each scored by Eq. 11;
    writes ``ablation.json`` and ``ablation.md``."""
    entries = ablation_entries(methods)
    output = run_study(config, "ablation", entries, {"methods": list(methods)}, progress, executor)
    if output is None:
        return None, ""
    labels = {"cac/cac": "CAC (Eq. 8)", "anchor/cac": "anchor loss only (Eq. 6)",
              "tuplet/cac": "tuplet loss only (Eq. 7)", "ce/msp": "cross-entropy / MSP"}
    return _written(config, "ablation", output, format_study_table(output, "loss ablation (Fig. 3)", labels))


def run_sweep(config: StudyConfig, magnitudes: Sequence[float] = SWEEP_MAGNITUDES,
              weights: Sequence[float] = SWEEP_WEIGHTS, progress: bool = True,
              executor=None) -> tuple[dict | None, str]:
    """The hyperparameter sweep (paper Fig. 2): one CAC network per (alpha, lambda) cell and trial; writes
    ``sweep.json`` and ``sweep.md`` (AUROC and accuracy grids, then every metric per cell)."""
    magnitudes, weights = (tuple(float(v) for v in values) for values in (magnitudes, weights))
    entries = sweep_entries(magnitudes, weights)
    output = run_study(config, "sweep", entries, {"magnitudes": list(magnitudes), "weights": list(weights)},
                       progress, executor)
    if output is None:
        return None, ""
    labels = {e.key: f"α={e.method.anchor_magnitude:g}, λ={e.method.anchor_weight:g}" for e in entries}
    columns = list(dict.fromkeys(weights))
    by_cell = {(r["anchor_magnitude"], r["anchor_weight"]): r for r in output["summary"]}
    grids = []
    for metric in ("auroc", "accuracy"):
        grids += [f"{METRIC_LABELS[metric]} (rows: anchor magnitude α, columns: anchor weight λ):", "",
                  "| α \\ λ | " + " | ".join(f"{w:g}" for w in columns) + " |",
                  "|---|" + "---|" * len(columns)]
        grids += [f"| {a:g} | " + " | ".join(_cell(by_cell[(a, w)][metric]) for w in columns) + " |"
                  for a in dict.fromkeys(magnitudes)] + [""]
    table = format_study_table(output, "anchor magnitude x anchor weight sweep (Fig. 2)", labels, grids)
    return _written(config, "sweep", output, table)
