"""The five-trial tables of docs/results.md, rebuilt from the committed result files under docs/results/.

Each folder ``docs/results/<run>/`` holds the small files a ``classanchor benchmark`` + ``classanchor compare``
run wrote: ``config.json``, ``trial{t}/{job}/result.json`` and ``history.json``, ``compare.json`` (every score
of every trial: CAC's own, and cross-entropy scored by max softmax and by max logit; trials compared in a later
run add ``compare_trial{t}.json``, joined here; where a run has no comparison yet, the jobs' own scores from
their ``result.json``, also for a job the comparisons left out; a job scored by ``benchmarks/recipe_variant.py
--detectors`` adds the scores of its ``detectors.json``). It prints, per run, mean ± std (population, over the
trials present; a row with fewer trials than the table says how many) and the per-trial values beside the
published ones, with the training minutes, precision and CPU of every job (the title names the recipe fields a
folder of recipe-variant jobs set, from each job's ``run_config.json``), and checks that each job's own score
in ``compare.json`` equals its ``result.json``::

    .venv/bin/python benchmarks/results_tables.py docs/results/mnist_fast
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from classanchor.benchmark import PUBLISHED

#: The rows of the table: (job, detector) as in compare.json, and how the table names them.
ROWS = (("cac", "cac", "CAC, rejection score (Eq. 11)"), ("ce", "msp", "cross-entropy, max softmax"),
        ("ce", "max_logit", "cross-entropy, max logit"))


def _mean_std(values: list[float], trials: int) -> str:
    """Mean ± population std of one row's values; a row with fewer values than the table has trials (a
    method still being trained) says over how many, so its mean is not read as a five-trial one."""
    if not values:
        return "-"
    partial = f" ({len(values)} of {trials} trials)" if len(values) < trials else ""
    return f"{statistics.fmean(values):.4f} ± {statistics.pstdev(values):.4f}{partial}"


def recipe_changes(job_dir: Path) -> dict:
    """The recipe fields a ``benchmarks/recipe_variant.py`` job changed ({} for a plain benchmark job):
    from its run folder's config.json, kept as ``run_config.json`` (or a scratch run's
    ``run_changes.json``)."""
    for name in ("run_config.json", "run_changes.json"):
        if (path := job_dir / name).exists():
            record = json.loads(path.read_text())
            return record.get("config", record).get("changes", {})
    return {}


def run_tables(folder: Path) -> str:
    results = {(r["trial"], r["job"]): r for r in map(json.loads, map(Path.read_text,
                                                                       folder.glob("trial*/*/result.json")))}
    studies = [json.loads(path.read_text()) for path in sorted(folder.glob("compare*.json"))]
    # trials compared in separate runs (compare.json, compare_trial2.json, ...) are joined; a job no comparison
    # scored (or every job, before any comparison) adds its own score from its result.json
    rows = {(r["job"], r["detector"], r["trial"]): r for s in studies for r in s["per_trial"]}
    for (trial, job), result in results.items():
        rows.setdefault((job, result["detector"], trial), result)
        scored = folder / f"trial{trial}" / job / "detectors.json"
        for detector, report in (json.loads(scored.read_text()) if scored.exists() else {}).items():
            rows.setdefault((job, detector, trial), report)
    any_job = next(iter(results.values()))
    compare = studies[0] if studies else {"dataset": any_job["dataset"], "recipe": any_job["recipe"],
                                          "total_epochs": any_job["epochs"]}
    dataset, trials = compare["dataset"], sorted({t for _, _, t in rows})
    for (trial, job), result in results.items():  # the table and the jobs' own result.json agree
        own = rows[(job, result["detector"], trial)]
        assert math.isclose(own["auroc"], result["auroc"], rel_tol=1e-9), (folder, trial, job)
        assert math.isclose(own["accuracy"], result["accuracy"], rel_tol=1e-9), (folder, trial, job)
    published = PUBLISHED.get(dataset, {})
    job_changes = [recipe_changes(folder / f"trial{trial}" / job) for trial, job in results]
    changed = sorted({", ".join(f"{k}={v}" for k, v in sorted(c.items())) for c in job_changes if c})
    lines = [f"{dataset}, recipe `{compare['recipe']}` ({compare['total_epochs']} epochs)"
             f"{''.join(f' with {c} set' for c in changed)}, trials {', '.join(map(str, trials))}:", "",
             "| network / score | accuracy | published | AUROC | published |", "|---|---|---|---|---|"]
    for job, detector, label in ROWS:
        cells = [rows[(job, detector, t)] for t in trials if (job, detector, t) in rows]
        pub_acc, pub_auc = published.get(job, (None, None)) if detector in ("cac", "msp") else (None, None)
        accuracy, auroc = (_mean_std([c[key] for c in cells], len(trials)) for key in ("accuracy", "auroc"))
        lines.append(f"| {label} | {accuracy} | {pub_acc or '-'} | {auroc} | {pub_auc or '-'} |")
    lines += ["", "| network / score | " + " | ".join(f"trial {t}" for t in trials) + " |",
              "|---|" + "---|" * len(trials)]
    for job, detector, label in ROWS:
        lines.append(f"| {label} | " + " | ".join(
            f"{rows[(job, detector, t)]['accuracy']:.4f} / {rows[(job, detector, t)]['auroc']:.4f}"
            if (job, detector, t) in rows else "-" for t in trials) + " |")
    lines += ["", "| job | trial | training min | evaluation s | epochs (best) | precision | threads | CPU |",
              "|---|---|---|---|---|---|---|---|"]
    for (trial, job), r in sorted(results.items()):
        lines.append(f"| {job} | {trial} | {r['train_seconds'] / 60:.1f} | {r['eval_seconds']:.0f} | "
                     f"{r['epochs']} ({r['best_epoch']}) | {r['precision']} | {r['threads']} | {r['cpu']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="folders under docs/results/")
    for folder in parser.parse_args(argv).runs:
        print(run_tables(folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
