"""Closed-set accuracy and AUROC against training wall time, from benchmark run folders; one plot per dataset.

Every point is one COMPLETE run written by ``classanchor benchmark`` (its ``result.json``: accuracy and AUROC
of the kept checkpoint, ``train_seconds`` = wall time of training including the per-epoch validation; the
evaluation afterwards is ``eval_seconds``, shown in the table). Runs of the same recipe with different
lengths (``--epochs-scale``) draw that recipe's curve: each point is what you get if you train for that long
with the schedule that ends there, not a snapshot of a longer run. The published full-length number is drawn
as a reference at the full recipe's time extrapolated from the measured seconds per epoch (not measured).

With ``--time-from RUN`` every point is placed at its epochs times the seconds per epoch measured in RUN
instead (an epoch costs the same in every recipe), for runs made with different settings or under load.

Example (the runs of docs/speed.md)::

    .venv/bin/python benchmarks/time_to_quality.py --dataset MNIST --job cac \\
        --runs fast=runs/fast_mnist_e1,runs/fast_mnist --runs paper=runs/mnist_short \\
        --time-from runs/fast_mnist --out docs/figures/time_to_quality_mnist.png
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
from pathlib import Path

from matplotlib.figure import Figure

from classanchor.benchmark import PUBLISHED
from classanchor.plots import save_figure
from classanchor.recipes import get_recipe

COLORS = {"fast": "tab:blue", "paper": "tab:orange"}


def read_run(folder: Path, job: str, trial: int) -> dict:
    """One finished job of a benchmark run folder -> its result plus recipe, epochs and seconds per epoch."""
    job_dir = folder / f"trial{trial}" / job
    result_path = job_dir / "result.json"
    if not result_path.exists():
        raise FileNotFoundError(f"{result_path} does not exist: run the benchmark for {folder} first.")
    result = json.loads(result_path.read_text())
    config = json.loads((folder / "config.json").read_text())["config"]
    history = json.loads((job_dir / "history.json").read_text())
    epochs = len(history)
    return {**result, "folder": str(folder), "recipe": config["recipe"], "epochs_scale": config["epochs_scale"],
            "epochs": epochs, "seconds_per_epoch": result["train_seconds"] / epochs, "history": history}


def seconds_per_epoch(rows: list[dict]) -> float:
    """Median wall time of one epoch (training + validation) over the epochs of the given runs.

    The median, not the mean: on a shared machine single epochs can be slowed by other jobs.
    """
    durations = []
    for r in rows:
        cumulative = [0.0] + [h["seconds"] for h in r["history"]]
        durations += [b - a for a, b in itertools.pairwise(cumulative)]
    return statistics.median(durations)


def markdown_table(runs: dict[str, list[dict]]) -> str:
    lines = ["| recipe | run folder | epochs | best epoch | train min | eval s | train img/s | accuracy | AUROC |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in runs.items():
        for r in rows:
            rate = sum(h["train_images_per_s"] for h in r["history"]) / len(r["history"])
            lines.append(f"| {name} | `{r['folder']}` | {r['epochs']} | {r['best_epoch']} | "
                         f"{r['train_seconds'] / 60:.1f} | {r['eval_seconds']:.0f} | {rate:.0f} | "
                         f"{r['accuracy']:.4f} | {r['auroc']:.4f} |")
    return "\n".join(lines)


def plot(dataset: str, job: str, runs: dict[str, list[dict]], budget_minutes: float | None,
         reference_spe: float | None = None, reference_name: str = "") -> Figure:
    """Two panels (AUROC, closed-set accuracy) against training minutes, log-scaled time axis.

    Without ``reference_spe`` a point's time is its run's measured ``train_seconds``. With it, every point is
    placed at ``epochs * reference_spe``: an epoch costs the same in every recipe (same network, data, batch,
    augmentation), so this compares recipes at equal hardware settings when the runs themselves were made with
    different settings (float32 vs bf16) or under different load. The published full-length value of the paper
    recipe is drawn (star) at its epochs times the same seconds per epoch.
    """
    fig = Figure(figsize=(10, 5.2), layout="constrained")
    axes = fig.subplots(1, 2)
    published = PUBLISHED.get(dataset, {}).get(job)
    full_paper = get_recipe(dataset, "paper").total_epochs

    def minutes(r: dict) -> float:
        return (r["epochs"] * reference_spe if reference_spe else r["train_seconds"]) / 60

    for ax, key, label in ((axes[0], "auroc", "AUROC (open set)"), (axes[1], "accuracy", "closed-set accuracy")):
        for name, rows in runs.items():
            rows = sorted(rows, key=minutes)
            x, y = [minutes(r) for r in rows], [r[key] for r in rows]
            color = COLORS.get(name)
            ax.plot(x, y, "o-", color=color,
                    label=f"{name} recipe: complete runs of {', '.join(str(r['epochs']) for r in rows)} epochs")
            for xi, yi in zip(x, y):
                ax.annotate(f"{yi:.4f}", (xi, yi), textcoords="offset points", xytext=(5, -12), fontsize=8,
                            color=color)
        value = None if published is None else (published[0] if key == "accuracy" else published[1])
        if value is not None:
            spe = reference_spe or seconds_per_epoch(runs.get("paper", next(iter(runs.values()))))
            ax.plot([spe * full_paper / 60], [value], "*", color=COLORS["paper"], markersize=13,
                    label=f"paper recipe, {full_paper} epochs: published value (mean of 5 trials), time extrapolated")
            ax.axhline(value, color="grey", linestyle="--", linewidth=0.8)
        if budget_minutes:
            ax.axvline(budget_minutes, color="grey", linestyle=":", label=f"{budget_minutes:g} min budget")
        ax.set_xscale("log")
        ax.set_xlabel("training minutes (log scale), 2-core CPU" + (
            f"\n= epochs x {reference_spe:.0f} s (median epoch of {reference_name})" if reference_spe else ""))
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"{dataset} trial {next(iter(runs.values()))[0]['trial']}, {job}: quality against training time")
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--job", default="cac", help="job folder inside trial{t}/ (default cac)")
    parser.add_argument("--trial", type=int, default=0)
    parser.add_argument("--runs", action="append", required=True,
                        help="NAME=FOLDER[,FOLDER...]: benchmark run folders of one recipe (repeatable)")
    parser.add_argument("--budget-minutes", type=float, default=10.0, help="vertical line (0: none)")
    parser.add_argument("--out", help="PNG to write")
    parser.add_argument("--time-from", help="run FOLDER whose median seconds per epoch place every point "
                        "(epochs x that); default: each run's own measured training time")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict]] = {}
    for spec in args.runs:
        name, _, folders = spec.partition("=")
        if not folders:
            parser.error(f"--runs expects NAME=FOLDER[,FOLDER...], got {spec!r}")
        runs[name] = [read_run(Path(f), args.job, args.trial) for f in folders.split(",") if f]
    print(markdown_table(runs))
    reference_spe = None
    if args.time_from:
        reference_spe = seconds_per_epoch([read_run(Path(args.time_from), args.job, args.trial)])
        print(f"\ntime axis: epochs x {reference_spe:.1f} s, the median epoch of {args.time_from}")
    if "paper" in runs:
        spe = reference_spe or seconds_per_epoch(runs["paper"])
        total = get_recipe(args.dataset, "paper").total_epochs
        print(f"\npaper recipe at full length ({total} epochs) at {spe:.0f} s/epoch: "
              f"{spe * total / 3600:.1f} h of training (extrapolated, not measured)")
    if args.out:
        fig = plot(args.dataset, args.job, runs, args.budget_minutes or None, reference_spe, args.time_from or "")
        print(f"\nwrote {save_figure(fig, args.out)}")
    return 0 if all(not math.isnan(r["auroc"]) for rows in runs.values() for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
