"""The report of a run folder: one self-contained HTML page with the config, the tables and every figure.

``write_report(run_dir)`` reads a run folder of the benchmark and the studies (layout in
:mod:`classanchor.benchmark`) and writes ``run_dir/report/``: ``index.html`` with every figure embedded as a
base64 ``data:`` URI (the page can be mailed or archived alone), the same PNGs beside it, and ``summary.json``
with the numbers they are drawn from (thresholds, acceptance rates, confusion counts, the indices of the Fig. 5
images). Everything comes from what the jobs saved (``logits.npz``, ``result.json``, ``history.json``); the
network is not run again, only Fig. 5 re-reads the test images. The threshold accepts ``ACCEPT_RATE`` = 95% of
the known validation images; a sample is accepted as known when ``score < threshold``.
"""

from __future__ import annotations

import base64
import errno
import html
import itertools
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from . import plots
from .benchmark import PUBLISHED
from .data.imageset import DataError
from .data.splits import build_trial, get_trial
from .detectors import make_detector
from .evaluate import DETECTOR_DEFAULTS, Logits, load_logits
from .heads import fit_anchors
from .io import (give_usual_permissions, read_json, temporary_sibling_folder, write_failure, write_json,
                 write_text)
from .metrics import auroc, closed_set_accuracy, unknown_confusion
from .pipeline import ACCEPT_RATE

__all__ = ["ACCEPT_RATE", "JobScores", "job_scores", "markdown_to_html", "write_report"]

#: Images per row of Fig. 5.
N_EXTREMES = 6
SCORE_NAMES = {"cac": "min rejection score (Eq. 11)", "msp": "negative max softmax probability",
               "max_logit": "negative max logit", "energy": "negative energy",
               "openmax": "OpenMax unknown probability", "class_mean": "distance to the nearest class mean"}
_TRIAL_DIR = re.compile(r"^trial(\d+)$")
_BENCHMARK_FILES = {"config.json", "results.json", "table.md"}


@dataclass
class JobScores:
    """Open-set decisions of one job on its test set, from its saved logits: ``predictions``, ``scores``
    (higher = more unknown) and ``is_unknown`` (label -1) are (N_te,) arrays; ``threshold`` accepts
    ``ACCEPT_RATE`` of the validation knowns, ``val_acceptance`` is the share it accepts (both None without
    validation logits); ``means`` (K, K) are the anchors (CAC family) or the class means of the correctly
    classified training logits (cross-entropy), for the logit-space plot."""

    detector: str
    predictions: np.ndarray
    scores: np.ndarray
    is_unknown: np.ndarray
    threshold: float | None
    val_acceptance: float | None
    means: np.ndarray


def job_scores(logits: Logits, result: dict) -> JobScores:
    """Predictions, scores and threshold of one job as its pipeline stored them (``logits.npz``,
    ``result.json``); nothing is re-fitted but the class means a cross-entropy job shows in the logit plot."""
    means = logits.anchors if logits.anchors is not None else fit_anchors(
        logits.train, logits.train_labels, logits.train.shape[1], empty_class="all_samples")
    calibration = result.get("calibration") or {}
    return JobScores(result.get("detector", "msp" if result.get("method") == "ce" else "cac"),
                     logits.test_predictions.numpy(), logits.test_scores.numpy(), logits.is_unknown.numpy(),
                     (result.get("open_set") or {}).get("threshold"), calibration.get("achieved_accept_rate"),
                     means.numpy())


@dataclass
class _Job:
    trial: int
    job: str
    path: Path
    result: dict

    @property
    def method(self) -> str:
        return str(self.result.get("method", self.job.split("_")[0]))

    @property
    def is_default(self) -> bool:
        """True for a method at the paper's hyperparameters (the job folder is the bare method name)."""
        return self.job == self.method

    def logits(self) -> Logits | None:
        """The job's saved logits (read without pickle), None when it saved none; a damaged file or one
        without the job's stored scores raises ``ValueError`` naming it."""
        path = self.path / "logits.npz"
        if not path.exists():
            return None
        logits = load_logits(path)
        if logits.test_scores is None or logits.test_predictions is None:
            raise ValueError(f"{path} holds no stored scores (written by an older classanchor); delete "
                             f"{path.with_name('result.json')} and run the benchmark again to re-evaluate "
                             "the job.")
        return logits


def _json_or_none(path: Path):
    return read_json(path) if path.exists() else None


def _find_jobs(run: Path) -> list[_Job]:
    """Every finished job (``trial*/<job>/result.json``), ordered by trial, then cac, ce, others."""
    order = {"cac": 0, "ce": 1, "anchor": 2, "tuplet": 3}
    jobs = [_Job(int(trial.group(1)), path.parent.name, path.parent, read_json(path))
            for path in run.glob("trial*/*/result.json") if (trial := _TRIAL_DIR.match(path.parts[-3]))]
    return sorted(jobs, key=lambda j: (j.trial, order.get(j.job, 9), j.job))


def _study_files(run: Path) -> list[Path]:
    """What studies wrote: the ``.json`` / ``.md`` files at the top of the run folder but the benchmark's
    own, and those in top-level folders named study*, compare*, ablation* or sweep*."""
    folders = re.compile(r"^(study|compare|ablation|sweep)", re.IGNORECASE)
    groups = (sorted(path.iterdir()) if path.is_dir() and folders.match(path.name) else [path]
              for path in sorted(run.iterdir()) if path.name not in _BENCHMARK_FILES)
    return [p for group in groups for p in group if p.is_file() and p.suffix in (".json", ".md")]


def _study_pairs(study_files: list[Path]) -> dict[int, list[tuple[str, str]]]:
    """``{trial: [(job, detector), ...]}`` a study evaluated, from the ``per_trial`` rows of its ``.json``
    output (:mod:`classanchor.studies`; rows with an ``error`` and unreadable files are left out)."""
    pairs: dict[int, dict[tuple[str, str], None]] = {}  # ordered sets
    for path in (p for p in study_files if p.suffix == ".json"):
        try:
            rows = json.loads(path.read_text()).get("per_trial", [])
        except (OSError, ValueError, AttributeError):
            continue
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and "error" not in row and {"trial", "job", "detector"} <= row.keys():
                pairs.setdefault(int(row["trial"]), {})[(str(row["job"]), str(row["detector"]))] = None
    return {trial: list(found) for trial, found in pairs.items()}


class _Page:
    """Collects the HTML of the page and the figures (saved as PNG beside it and embedded)."""

    def __init__(self, out: Path):
        self.out = out
        self.parts: list[str] = []
        self.figures: list[str] = []
        self.toc: list[tuple[str, str]] = []

    def heading(self, text: str, level: int = 2) -> None:
        anchor = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
        if level == 2:
            self.toc.append((anchor, text))
        self.parts.append(f'<h{level} id="{anchor}">{html.escape(text)}</h{level}>')

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def figure(self, name: str, fig, caption: str) -> None:
        path = plots.save_figure(fig, self.out / f"{name}.png")
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.figures.append(path.name)
        self.parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(name)}" '
                          f'data-file="{html.escape(path.name)}"><figcaption>{html.escape(caption)} '
                          f'<span class="file">({html.escape(path.name)})</span></figcaption></figure>')

    def render(self, title: str) -> str:
        toc = "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for a, t in self.toc)
        title = html.escape(title)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
                f"<style>{_CSS}</style></head><body><h1>{title}</h1>"
                f"<nav><ul>{toc}</ul></nav>{''.join(self.parts)}</body></html>\n")


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.8em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
        "text-align:left}th{background:#f2f2f2}figure{margin:1.2em 0}"
        "img{max-width:100%;border:1px solid #eee}figcaption{font-size:.9em;color:#444}.file{color:#888}"
        ".note{color:#8a5a00;font-style:italic}code{background:#f4f4f4;padding:0 .2em}nav ul{columns:2}")


def _inline(text: str) -> str:
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _markdown_kind(line: str) -> str:
    """What a stripped Markdown line belongs to: "" (blank), "h", "table", "ul" or "p"."""
    kinds = {"#": "h", "|": "table", "- ": "ul", "* ": "ul"}
    return next((kind for start, kind in kinds.items() if line.startswith(start)), "p" if line else "")


def markdown_to_html(text: str) -> str:
    """The Markdown the tables use: headings, pipe tables, ``-`` lists, paragraphs, **bold**, `code`."""
    out: list[str] = []
    for kind, group in itertools.groupby((line.strip() for line in text.splitlines()), key=_markdown_kind):
        block = list(group)
        if kind == "h":
            for line in block:
                level = min(len(line) - len(line.lstrip("#")) + 2, 6)  # below the page's own headings
                out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif kind == "p":
            out.append(f"<p>{_inline(' '.join(block))}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline(item[2:])}</li>" for item in block) + "</ul>")
        elif kind == "table":
            rows = [r for r in block if not re.fullmatch(r"\|?[\s:|-]+\|?", r)]
            cells = [[_inline(c.strip()) for c in r.strip("|").split("|")] for r in rows]
            out.append(_html_table(cells[0], cells[1:]))
    return "\n".join(out)


def _html_table(header: list[str], rows: list[list]) -> str:
    """A table with a head row; the cells are HTML already."""
    head = "".join(f"<th>{c}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv_table(rows: list[tuple[str, object]]) -> str:
    """A table of (name, value) rows; a value that is not a string is shown as JSON."""
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td><code>"
                   f"{html.escape(v if isinstance(v, str) else json.dumps(v))}</code></td></tr>"
                   for k, v in rows)
    return f"<table>{body}</table>"


def _config_section(page: _Page, record: dict | None) -> dict:
    page.heading("Configuration")
    if record is None:
        page.note("config.json is missing: the configuration of this run is unknown.")
        return {}
    config = record.get("config", {})
    page.parts.append(_kv_table(list(config.items())))
    page.parts.append(_kv_table([("classanchor version", record.get("classanchor_version")),
                                 ("git commit", record.get("git_commit") or "unknown (not a git checkout)"),
                                 ("torch version", record.get("torch_version")),
                                 ("sessions that wrote this folder", len(record.get("sessions", [])))]))
    return config


def _results_section(page: _Page, run: Path, jobs: list[_Job], dataset: str) -> None:
    page.heading("Results")
    if (run / "table.md").exists():
        page.parts.append(markdown_to_html((run / "table.md").read_text()))
        return
    page.note("table.md is missing (the benchmark has not finished); the table below is built from the "
              "finished jobs' result.json files.")
    published, rows = PUBLISHED.get(dataset, {}), []
    for j in jobs:
        paper = ["-" if v is None else f"{v:.3f}" for v in published.get(j.job, (None, None))]
        rows.append([j.trial, html.escape(j.job), f"{j.result.get('accuracy', math.nan):.4f}", paper[0],
                     f"{j.result.get('auroc', math.nan):.4f}", paper[1]])
    header = ["trial", "job", "closed-set accuracy", "published", "AUROC", "published"]
    page.parts.append(_html_table(header, rows))


def _names(job: _Job, key: str, count: int, fallback: str) -> list[str]:
    names = job.result.get(key)
    if isinstance(names, list) and len(names) == count:
        return [str(n) for n in names]
    return [f"{fallback} {i}" for i in range(count)]


def _trial_images(config: dict, trial: int, labels: np.ndarray, data_root) -> tuple[np.ndarray | None, str]:
    """The test images of ``trial`` in ``data.test()`` order, or None and why not."""
    root, dataset = data_root or config.get("data_root"), config.get("dataset")
    if not root or not dataset:
        return None, "config.json names no dataset or data_root"
    if not Path(root).exists():
        return None, (f"the data root {root} does not exist on this machine (pass data_root= to point "
                      "elsewhere)")
    try:
        data = build_trial(get_trial(dataset, trial), root, seed=int(config.get("seed", 0)), progress=False)
    except (DataError, ValueError, OSError) as err:
        return None, f"the test images could not be read from {root}: {err}"
    test = data.test()
    if len(test) != len(labels) or not np.array_equal(test.labels, labels):
        return None, (f"the test images read from {root} ({len(test)}) do not match the saved logits "
                      f"({len(labels)}): the data changed since the run")
    return test.images, ""


#: The rows of Fig. 5, in order: (group, which end of the score, what those images are).
_EXTREME_ROWS = (("unknown", "highest", "the most clearly unknown"),
                 ("unknown", "lowest", "the unknowns that look most like a known class"),
                 ("known", "lowest", "the most typical knowns"),
                 ("known", "highest", "the knowns that look most unknown"))


def _extremes_rows(scores: JobScores, labels: np.ndarray, classes: np.ndarray, images: np.ndarray,
                   known: list[str], unknown_name: dict[int, str]) -> tuple[list, dict]:
    """The four rows of Fig. 5 and the indices (into the test set) they show."""

    def caption(i: int) -> str:
        unknown = f"{unknown_name.get(int(classes[i]), classes[i])} (unknown)"
        true = known[labels[i]] if labels[i] >= 0 else unknown
        verdict = "" if scores.threshold is None else (
            "\nrejected" if scores.scores[i] >= scores.threshold else "\naccepted")
        return (f"true: {true}\npredicted: {known[scores.predictions[i]]}\n"
                f"score {scores.scores[i]:.3g}{verdict}")

    rows, indices = [], {}
    for group, which, meaning in _EXTREME_ROWS:
        where = np.flatnonzero(scores.is_unknown == (group == "unknown"))
        if where.size == 0:
            continue
        highest, lowest = plots.extremes(scores.scores[where], N_EXTREMES)
        chosen = where[highest if which == "highest" else lowest]
        indices[f"{group}_{which}"] = chosen.tolist()
        rows.append((f"{group.capitalize()} test images with the {which} scores: {meaning}", images[chosen],
                     [caption(i) for i in chosen]))
    return rows, indices


def _histogram_scale(scores: JobScores) -> tuple[np.ndarray, float | None, str, bool]:
    """Scores as the histogram shows them: (values, threshold, axis name, log axis). The CAC score spans
    decades: a log axis when it is positive and spread out. The MSP score ``-p`` piles up at -1, so it is
    drawn as ``1 - p`` on a log axis: the shift is exact for float32 scores in float64, and ``1 - p = 0`` is
    drawn at 2^-25 (below the smallest non-zero 2^-24), so no sample changes side."""
    values, threshold, name = scores.scores.astype(np.float64), scores.threshold, SCORE_NAMES[scores.detector]
    if scores.detector == "msp":
        floor = 2.0 ** -25
        values = np.maximum(values + 1.0, floor)
        threshold = None if threshold is None else threshold + 1.0
        name = f"1 - max softmax probability (0 drawn at {floor:.0e})"
    return values, threshold, name, bool(values.min() > 0 and values.max() > 100 * values.min())


def _job_figures(page: _Page, job: _Job, logits: Logits, scores: JobScores,
                 test_images: tuple[np.ndarray | None, str]) -> dict:
    """Histogram, logit space, confusion, training curves and Fig. 5 of one job; returns its summary."""
    k = logits.train.shape[1]
    labels, classes = logits.test_labels.numpy(), logits.test_classes.numpy()
    unknown = scores.is_unknown
    known = _names(job, "known_names", k, "class")
    unknown_ids, unknown_totals = np.unique(classes[unknown], return_counts=True)
    unknown_names = _names(job, "unknown_names", unknown_ids.size, "unknown class")
    label = plots._label(job.job)
    prefix = f"trial{job.trial}_{job.job}"
    summary = {"trial": job.trial, "job": job.job, "method": job.method, "score": scores.detector,
               "accuracy": closed_set_accuracy(scores.predictions[~unknown], labels[~unknown]),
               "auroc": auroc(scores.scores, unknown), "threshold": scores.threshold,
               "val_acceptance": scores.val_acceptance}
    page.heading(f"{label} ({job.job})", 4)

    if scores.threshold is not None:
        summary["test_known_acceptance"] = float((scores.scores[~unknown] < scores.threshold).mean())
        summary["unknown_rejection"] = (float((scores.scores[unknown] >= scores.threshold).mean())
                                        if unknown.any() else None)
    shown, threshold, name, log_x = _histogram_scale(scores)
    page.figure(f"{prefix}_histogram", plots.score_histograms(
        shown[~unknown], shown[unknown], threshold, score_name=name, log_x=log_x,
        title=f"{label}, trial {job.trial}: open-set score of the test images"),
        "Open-set score of the known and unknown test images; the dashed line is the threshold that accepts "
        f"{100 * ACCEPT_RATE:.0f}% of the known validation images (share of test knowns it accepts in the "
        "legend)." if scores.threshold is not None else "Open-set score of the known and unknown test images "
        "(no validation logits saved, so no calibrated threshold).")

    means_label = "re-fitted anchors" if scores.detector == "cac" else "class means (correct train logits)"
    page.figure(f"{prefix}_logit_space", plots.logit_space(
        logits.test[~logits.is_unknown], labels[~unknown], scores.means, known,
        logits.test[logits.is_unknown], anchor_label=means_label, max_points=2000,
        title=f"{label}: logit space of the test images, trial {job.trial}"),
        "Logits of up to 2000 known test images (coloured by true class) and 2000 unknown ones (grey x), "
        f"with the {means_label} as stars.")

    if scores.threshold is None:
        page.note("No validation logits in logits.npz: the unknown-to-known confusion needs the calibrated "
                  "threshold and is skipped.")
    elif unknown_ids.size:  # Fig. 4; only unknowns are counted (a known may share an unknown's original id)
        confusion = unknown_confusion(scores.scores, scores.predictions, labels, classes, scores.threshold, k)
        counts = confusion.counts
        accepted = counts.sum(axis=1)
        summary["confusion"] = {"unknown_classes": unknown_ids, "unknown_names": unknown_names,
                                "known_names": known, "counts": counts, "accepted": accepted,
                                "total": unknown_totals}
        rows = [f"{n} ({a}/{t} accepted)" for n, a, t in zip(unknown_names, accepted, unknown_totals)]
        page.figure(f"{prefix}_confusion", plots.unknown_confusion(
            plots.row_normalise(counts), rows, known,
            title=f"{label}, trial {job.trial}: which known class took the accepted unknowns?"),
            "Each row: the unknown test images of one class that were accepted as known at the calibrated "
            "threshold; the cells give the share of them predicted as each known class (the paper's Fig. 4).")

    history = _json_or_none(job.path / "history.json")
    if history:
        best = job.result.get("best_epoch")
        page.figure(f"{prefix}_training", plots.training_curves(
            {job.job: history}, best_epochs={job.job: best} if best else None,
            anchor_loss_of=[job.job] if job.method != "ce" else [],
            title=f"{label}: training, trial {job.trial}"),
            "Loss, validation accuracy and (CAC family) validation anchor loss per epoch; the ring marks the "
            "kept checkpoint.")
    else:
        page.note("history.json is missing: no training curves.")

    images, why = test_images
    if images is None:
        page.note(f"Fig. 5 (test images with extreme scores) is skipped: {why}.")
    else:
        rows, summary["extremes"] = _extremes_rows(scores, labels, classes, images, known,
                                                   dict(zip(unknown_ids.tolist(), unknown_names)))
        page.figure(f"{prefix}_extremes", plots.image_rows(
            rows, title=f"{label}, trial {job.trial}: test images with the highest and lowest "
                        f"{SCORE_NAMES[scores.detector]}"),
            "The test images the score is most and least sure about, with the true class, the predicted "
            "class and the score (the paper's Fig. 5).")
    return summary


def _trial_section(page: _Page, trial: int, jobs: list[_Job], config: dict, data_root,
                   studied: list[tuple[str, str]]) -> tuple[list[dict], list[str]]:
    """ROC of every score of the trial, then each default job's figures; returns the summaries and ROC names.
    The ROC adds the ``studied`` (job, detector) pairs a study evaluated beyond each job's own score."""
    others = [j.job for j in jobs if not j.is_default]
    if others:
        page.note(f"{len(others)} jobs with other hyperparameters ({', '.join(others[:6])}"
                  f"{', ...' if len(others) > 6 else ''}) appear in the study figures only.")
    curves, loaded = {}, []
    for job in (j for j in jobs if j.is_default):
        logits = job.logits()
        if logits is None:
            page.note(f"{job.job}: logits.npz is missing, so its plots are skipped.")
            continue
        scores = job_scores(logits, job.result)
        loaded.append((job, logits, scores))
        if not (scores.is_unknown.any() and not scores.is_unknown.all()):
            page.note(f"{job.job}: the test set lacks known or unknown images, so there is no ROC curve.")
            continue
        curves[f"{job.job}: {SCORE_NAMES[scores.detector]}"] = (scores.scores, scores.is_unknown)
        for name in (d for j, d in studied if j == job.job and d != scores.detector and d in SCORE_NAMES):
            detector = make_detector(name, **DETECTOR_DEFAULTS.get(name, {})).fit(logits.train,
                                                                                  logits.train_labels)
            curves[f"{job.job}: {SCORE_NAMES[name]}"] = detector.score(logits.test).numpy(), scores.is_unknown
    if curves:
        extra = ", including the post-hoc scores a study evaluated" if len(curves) > len(loaded) else ""
        roc = plots.roc_curves(curves, title=f"ROC of each open-set score, trial {trial}", log_fpr=True)
        page.figure(f"trial{trial}_roc", roc, "Unknown test images are the positive class; one curve per "
                    f"network (job) and open-set score{extra}. Right: the same curves with the false "
                    "positive rate on a log axis, where curves close to the top-left corner separate.")
    # the test images of Fig. 5, checked against the first job's labels
    images = _trial_images(config, trial, loaded[0][1].test_labels.numpy(), data_root) if loaded else None
    return [_job_figures(page, *loaded_job, images) for loaded_job in loaded], list(curves)


def _trial_bars_section(page: _Page, jobs: list[_Job], dataset: str) -> None:
    default = [j for j in jobs if j.is_default]
    if not default:
        return
    page.heading("Accuracy and AUROC per trial")
    trials = sorted({j.trial for j in default})
    names = list(dict.fromkeys(j.job for j in default))
    results = {(j.job, j.trial): (j.result["accuracy"], j.result["auroc"]) for j in default}
    per_trial = {n: [results.get((n, t), (math.nan, math.nan)) for t in trials] for n in names}
    published = {n: v for n, v in PUBLISHED.get(dataset, {}).items() if n in names}
    bars = plots.trial_bars(per_trial, published, trial_labels=[f"trial {t}" for t in trials],
                            title=f"{dataset}: closed-set accuracy and AUROC per trial")
    page.figure("trial_bars", bars, "Measured values per trial and their mean; dashed lines: the paper's "
                "published values (Tables 2 and 3)." if published else "Measured values per trial and their "
                "mean (no published values for this dataset).")


def _studies_section(page: _Page, run: Path, jobs: list[_Job], study_files: list[Path]) -> None:
    page.heading("Studies")
    cells: dict[tuple[float, float], list[dict]] = {}  # CAC results per (anchor magnitude, anchor weight)
    for j in jobs:
        if j.method == "cac" and "anchor_magnitude" in j.result and "anchor_weight" in j.result:
            key = (float(j.result["anchor_magnitude"]), float(j.result["anchor_weight"]))
            cells.setdefault(key, []).append(j.result)
    if len(cells) > 1:
        mags, wts = sorted({m for m, _ in cells}), sorted({w for _, w in cells})
        grid = np.full((len(mags), len(wts), 2), np.nan)  # accuracy, AUROC
        for (m, w), cell in cells.items():
            grid[mags.index(m), wts.index(w)] = np.mean([(r["accuracy"], r["auroc"]) for r in cell], axis=0)
        page.figure("sweep_heatmaps", plots.hyperparameter_heatmaps(mags, wts, grid[..., 0], grid[..., 1]),
                    "CAC's accuracy and AUROC (mean over the trials run) over anchor magnitude x anchor "
                    "weight (the paper's Fig. 2); n/a = not run.")
    else:
        page.note("No hyperparameter sweep in this run folder (CAC jobs with more than one anchor magnitude "
                  "or weight): Fig. 2 is skipped.")
    variants = [v for v in ("cac", "anchor", "tuplet") if any(j.job == v for j in jobs)]
    if len(variants) > 1:
        bars = plots.ablation_bars({v: [(j.result["accuracy"], j.result["auroc"]) for j in jobs if j.job == v]
                                    for v in variants})
        page.figure("ablation_bars", bars, "CAC against its anchor term alone and its tuplet term alone: "
                    "mean and standard deviation over trials, dots = single trials (the paper's Fig. 3).")
    else:
        page.note("No ablation in this run folder (anchor-only or tuplet-only jobs): Fig. 3 is skipped.")
    for path in (p for p in study_files if p.suffix == ".md"):
        page.heading(f"{path.relative_to(run)}", 3)
        page.parts.append(markdown_to_html(path.read_text()))
    listed = [str(p.relative_to(run)) for p in study_files if p.suffix == ".json"]
    if listed:
        page.text("Study result files: " + ", ".join(listed) + ".")


def write_report(run_dir, out_dir=None, *, data_root=None) -> Path:
    """Write the HTML report of ``run_dir`` into ``out_dir`` (default ``run_dir/report``); returns the path
    of ``index.html``. ``data_root``: where to read the Fig. 5 test images (default: from ``config.json``).
    Built in a temporary sibling folder and moved in only when complete: a failure (a damaged ``logits.npz``,
    a full disk) leaves an earlier report as it was. Raises FileNotFoundError when ``run_dir`` is not a
    folder, ValueError when it holds no finished job or a job's files are damaged (naming the file); anything
    else missing only skips its section."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"{run} is not a run folder; pass the --out folder of a benchmark run.")
    out = Path(out_dir) if out_dir is not None else run / "report"
    if not out.name:  # "." or a root: name the folder so the temporary sibling gets a name
        out = out.resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; the report needs a folder (pass another --out).")
    jobs = _find_jobs(run)
    if not jobs:
        raise ValueError(f"{run} holds no finished job (no trial*/<job>/result.json): nothing to report; "
                         "pass the --out folder of a benchmark run that has finished at least one job.")
    build = temporary_sibling_folder(out)
    try:
        _build_report(run, build, jobs, data_root)
        _move_into(build, out)
    except OSError as err:
        if getattr(err, "errno", None) in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise write_failure(out, err) from err
        raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return out / "index.html"


def _move_into(build: Path, out: Path) -> None:
    """Put the finished report ``build`` at ``out``: the whole folder when ``out`` does not exist, else file
    by file (``os.replace``, ``index.html`` last), removing the PNGs the earlier report listed in its
    ``summary.json`` that this one does not replace; nothing else in ``out`` is touched."""
    give_usual_permissions(build, directory=True)  # mkdtemp makes 0700
    if not out.exists():
        try:
            os.replace(build, out)
            return
        except OSError:
            out.mkdir(parents=True, exist_ok=True)  # created meanwhile: fall through to file by file
    new = {p.name for p in build.iterdir()}
    try:
        old = (_json_or_none(out / "summary.json") or {}).get("figures", [])
    except (ValueError, AttributeError):
        old = []
    for name in old if isinstance(old, list) else []:
        if isinstance(name, str) and Path(name).name == name and name.endswith(".png") and name not in new:
            (out / name).unlink(missing_ok=True)
    for name in sorted(new - {"index.html"}) + ["index.html"]:
        os.replace(build / name, out / name)


def _build_report(run: Path, out: Path, jobs: list[_Job], data_root) -> None:
    """Write the report of ``run`` (its finished ``jobs``) into the empty folder ``out``."""
    record = _json_or_none(run / "config.json")
    dataset = (record or {}).get("config", {}).get("dataset") or jobs[0].result.get("dataset")
    page = _Page(out)
    page.text(f"Run folder {run.resolve()}; dataset {dataset or 'unknown'}; report written "
              f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the saved logits (the network was not "
              "run again).")
    config = _config_section(page, record)
    _results_section(page, run, jobs, dataset)
    study_files = _study_files(run)
    studied = _study_pairs(study_files)
    _trial_bars_section(page, jobs, dataset)
    summaries, roc = [], {}  # roc: {trial: ROC curve names}
    with torch.inference_mode():
        for trial in sorted({j.trial for j in jobs}):
            page.heading(f"Trial {trial}")
            done, roc[str(trial)] = _trial_section(page, trial, [j for j in jobs if j.trial == trial], config,
                                                   data_root, studied.get(trial, []))
            summaries += done
    _studies_section(page, run, jobs, study_files)
    write_json(out / "summary.json", {"accept_rate": ACCEPT_RATE, "figures": page.figures, "roc_curves": roc,
                                      "jobs": summaries})
    write_text(out / "index.html", page.render(f"classanchor report: {dataset or run.name}"))
