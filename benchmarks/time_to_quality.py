"""Closed-set accuracy and AUROC against training wall time, from benchmark run folders; one plot per dataset.

Every point is one COMPLETE run written by ``classanchor benchmark`` (its ``result.json``: accuracy and AUROC
of the kept checkpoint, ``train_seconds`` = wall time of training including the per-epoch validation; the
evaluation afterwards is ``eval_seconds``, shown in the table). Runs of the same recipe with different
lengths (``--epochs-scale``) draw that recipe's curve: each point is what you get if you train for that long
with the schedule that ends there, not a snapshot of a longer run. The published full-length number is drawn
as a reference at the full recipe's time extrapolated from the measured seconds per epoch (not measured).

With ``--time-from NAME=RUN`` every point of recipe NAME is placed at its epochs times the median seconds per
epoch measured in RUN instead (an epoch of one recipe costs the same at every length), for runs of a recipe
made on different machines or under load; the recipes keep their own costs (resnet9 and classifier32 differ).

Example (the runs of docs/speed.md)::

    .venv/bin/python benchmarks/time_to_quality.py --dataset MNIST --job cac \\
        --runs fast=runs/ttq_mnist_fast_e1,docs/results/mnist_fast --runs paper=runs/ttq_mnist_paper_e2 \\
        --time-from fast=runs/ttq_mnist_fast_e1 --out docs/figures/time_to_quality_mnist.png
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
SPARE_COLORS = ("tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def series_colors(names: list[str]) -> dict[str, str]:
    """One colour per recipe series, the same in both panels: ``COLORS`` for the two named recipes, then
    the spare colours in order, so that e.g. ``fast`` and ``fast_wd4e-3`` are never drawn alike (up to seven
    other series; any beyond those are drawn in black)."""
    spare = iter(SPARE_COLORS)
    colors = {name: COLORS[name] for name in names if name in COLORS}
    for name in names:
        if name not in colors:
            colors[name] = next(spare, "black")
    return colors


def read_run(folder: Path, job: str, trial: int) -> dict:
    """One finished job of a benchmark run folder -> its result plus recipe, epochs and seconds per epoch."""
    job_dir = folder / f"trial{trial}" / job
    result_path = job_dir / "result.json"
    if not result_path.exists():
        raise FileNotFoundError(f"{result_path} does not exist: run the benchmark for {folder} first.")
    result = json.loads(result_path.read_text())
    config = {}  # the benchmark folder's config, else a recipe-variant job's own record (results/*_wd2e-3)
    for record in (folder / "config.json", job_dir / "run_config.json"):
        if record.exists() and "config" in (saved := json.loads(record.read_text())):
            config = saved["config"]
            break
    history = json.loads((job_dir / "history.json").read_text())
    epochs = len(history)
    return {**result, "folder": str(folder), "recipe": config.get("recipe"),
            "epochs_scale": config.get("epochs_scale"), "epochs": epochs,
            "seconds_per_epoch": result["train_seconds"] / epochs, "history": history}


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
         reference_spe: dict[str, float] | None = None) -> Figure:
    """Two panels (AUROC, closed-set accuracy) against training minutes, log-scaled time axis.

    A point's time is its run's measured ``train_seconds``, or ``epochs * reference_spe[recipe]`` where the
    recipe has a reference (its runs were made on different machines or under load). The published
    full-length value is a dashed line, and a star at the paper recipe's epochs times the paper runs' seconds
    per epoch where paper runs were measured.
    """
    reference_spe = reference_spe or {}
    fig = Figure(figsize=(10, 5.2), layout="constrained")
    axes = fig.subplots(1, 2)
    published = PUBLISHED.get(dataset, {}).get(job)
    full_paper = get_recipe(dataset, "paper").total_epochs
    colors = series_colors(list(runs))

    def minutes(r: dict, name: str) -> float:
        return (r["epochs"] * reference_spe[name] if name in reference_spe else r["train_seconds"]) / 60

    for ax, key, label in ((axes[0], "auroc", "AUROC (open set)"), (axes[1], "accuracy", "closed-set accuracy")):
        for name, rows in runs.items():
            rows = sorted(rows, key=lambda r: minutes(r, name))
            x, y = [minutes(r, name) for r in rows], [r[key] for r in rows]
            color = colors[name]
            ax.plot(x, y, "o-", color=color,
                    label=f"{name} recipe: complete runs of {', '.join(str(r['epochs']) for r in rows)} epochs")
            for xi, yi in zip(x, y):
                ax.annotate(f"{yi:.4f}", (xi, yi), textcoords="offset points", xytext=(5, -12), fontsize=8,
                            color=color)
        value = None if published is None else (published[0] if key == "accuracy" else published[1])
        if value is not None:
            ax.axhline(value, color="grey", linestyle="--", linewidth=0.8,
                       label=f"published (paper recipe, {full_paper} epochs, mean of 5 trials)")
            if "paper" in runs:
                spe = reference_spe.get("paper") or seconds_per_epoch(runs["paper"])
                ax.plot([spe * full_paper / 60], [value], "*", color=COLORS["paper"], markersize=13,
                        label="published value at the paper recipe's full length, time extrapolated")
        if budget_minutes:
            ax.axvline(budget_minutes, color="grey", linestyle=":", label=f"{budget_minutes:g} min budget")
        ax.set_xscale("log")
        ax.set_xlabel("training minutes (log scale), 2-core CPU, float32" + "".join(
            f"\n{name}: epochs x {spe:.0f} s (its median epoch)" for name, spe in reference_spe.items()))
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
    parser.add_argument("--time-from", action="append", default=[],
                        help="NAME=FOLDER: the run whose median seconds per epoch place every point of recipe "
                        "NAME (epochs x that; repeatable); default: each run's own measured training time")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict]] = {}
    for spec in args.runs:
        name, _, folders = spec.partition("=")
        if not folders:
            parser.error(f"--runs expects NAME=FOLDER[,FOLDER...], got {spec!r}")
        runs[name] = [read_run(Path(f), args.job, args.trial) for f in folders.split(",") if f]
    print(markdown_table(runs))
    reference_spe = {}
    for spec in args.time_from:
        name, _, folder = spec.partition("=")
        if not folder:
            parser.error(f"--time-from expects NAME=FOLDER, got {spec!r}")
        reference_spe[name] = seconds_per_epoch([read_run(Path(folder), args.job, args.trial)])
        print(f"\ntime axis of {name}: epochs x {reference_spe[name]:.1f} s, the median epoch of {folder}")
    if "paper" in runs:
        spe = reference_spe.get("paper") or seconds_per_epoch(runs["paper"])
        total = get_recipe(args.dataset, "paper").total_epochs
        print(f"\npaper recipe at full length ({total} epochs) at {spe:.0f} s/epoch: "
              f"{spe * total / 3600:.1f} h of training (extrapolated, not measured)")
    if args.out:
        fig = plot(args.dataset, args.job, runs, args.budget_minutes or None, reference_spe)
        print(f"\nwrote {save_figure(fig, args.out)}")
    return 0 if all(not math.isnan(r["auroc"]) for rows in runs.values() for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
