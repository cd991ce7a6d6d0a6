"""Closed-set accuracy and AUROC against training wall time, from benchmark run folders; one plot per dataset.

Every point is one COMPLETE run written by ``classanchor benchmark`` (its ``result.json``: accuracy and AUROC
of the kept checkpoint, ``train_seconds`` = wall time of training including the per-epoch validation; the
evaluation afterwards is ``eval_seconds``, shown in the table). Runs of the same recipe with different
lengths (``--epochs-scale``) draw that recipe's curve: each point is what you get if you train for that long
with the schedule that ends there, not a snapshot of a longer run. The published full-length number is drawn
as a reference at the full recipe's time extrapolated from the measured seconds per epoch (not measured).

Example (the runs of docs/speed.md)::

    .venv/bin/python benchmarks/time_to_quality.py --dataset MNIST --job cac \\
        --runs fast=runs/fast_mnist_e1,runs/fast_mnist_e2,runs/fast_mnist \\
        --runs paper=runs/mnist_short --out docs/figures/time_to_quality_mnist.png
"""

from __future__ import annotations

import argparse
import json
import math
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
    """Training seconds per epoch over all runs of one recipe (total seconds / total epochs)."""
    return sum(r["train_seconds"] for r in rows) / sum(r["epochs"] for r in rows)


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
         rescale_to: str | None = None) -> Figure:
    """Two panels (AUROC, closed-set accuracy) against training minutes, log-scaled time axis.

    ``rescale_to``: also draw every other recipe's points (hollow) at their epochs times the seconds per epoch
    of the runs of recipe ``rescale_to`` (the epochs cost the same; use it when the runs were made with
    different settings or under different load)."""
    fig = Figure(figsize=(10, 5.0), layout="constrained")
    axes = fig.subplots(1, 2)
    published = PUBLISHED.get(dataset, {}).get(job)
    full_paper = get_recipe(dataset, "paper").total_epochs
    for ax, key, label in ((axes[0], "auroc", "AUROC (open set)"), (axes[1], "accuracy", "closed-set accuracy")):
        for name, rows in runs.items():
            rows = sorted(rows, key=lambda r: r["train_seconds"])
            x = [r["train_seconds"] / 60 for r in rows]
            y = [r[key] for r in rows]
            color = COLORS.get(name)
            ax.plot(x, y, "o-", color=color, label=f"{name} recipe (runs of {', '.join(str(r['epochs']) for r in rows)}"
                    " epochs)")
            for r, xi, yi in zip(rows, x, y):
                ax.annotate(f"{yi:.4f}", (xi, yi), textcoords="offset points", xytext=(4, -12), fontsize=8,
                            color=color)
            if rescale_to and name != rescale_to and rescale_to in runs:
                spe = seconds_per_epoch(runs[rescale_to])
                ax.plot([r["epochs"] * spe / 60 for r in rows], y, "o--", color=color, markerfacecolor="white",
                        label=f"{name} recipe at the {rescale_to} runs' {spe:.0f} s/epoch (estimate)")
            if name == "paper" and published is not None:
                value = published[0] if key == "accuracy" else published[1]
                if value is not None:
                    spe = seconds_per_epoch(runs.get(rescale_to, rows))
                    minutes = spe * full_paper / 60
                    ax.plot([minutes], [value], "*", color=color, markersize=12,
                            label=f"paper recipe, {full_paper} epochs: published value at extrapolated time")
        if budget_minutes:
            ax.axvline(budget_minutes, color="grey", linestyle=":", label=f"{budget_minutes:g} min budget")
        if published is not None and (published[1] if key == "auroc" else published[0]) is not None:
            ax.axhline(published[1] if key == "auroc" else published[0], color="grey", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("training wall time (minutes, log scale; 2-core CPU)")
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
    parser.add_argument("--rescale-to", help="recipe NAME whose seconds per epoch re-time the other recipes "
                        "(hollow markers; for runs made under different settings)")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict]] = {}
    for spec in args.runs:
        name, _, folders = spec.partition("=")
        if not folders:
            parser.error(f"--runs expects NAME=FOLDER[,FOLDER...], got {spec!r}")
        runs[name] = [read_run(Path(f), args.job, args.trial) for f in folders.split(",") if f]
    print(markdown_table(runs))
    for name, rows in runs.items():
        if name == "paper":
            spe = seconds_per_epoch(runs.get(args.rescale_to, rows))
            total = get_recipe(args.dataset, "paper").total_epochs
            print(f"\npaper recipe at full length ({total} epochs) at {spe:.0f} s/epoch: "
                  f"{spe * total / 3600:.1f} h of training (extrapolated, not measured)")
    if args.out:
        fig = plot(args.dataset, args.job, runs, args.budget_minutes or None, args.rescale_to)
        print(f"\nwrote {save_figure(fig, args.out)}")
    return 0 if all(not math.isnan(r["auroc"]) for rows in runs.values() for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
