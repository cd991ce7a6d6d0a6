"""Command-line interface: turns flags into dataclasses and calls the library API."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ._version import __version__

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    config = DemoConfig(splits=args.splits, epochs=args.epochs, seed=args.seed, out=args.out)
    _, summary = run_demo(config, progress=not args.no_progress)
    print(summary)
    print(f"Results written to {config.out}/")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from .benchmark import BenchmarkConfig, parse_trials, run_benchmark
    from .data.splits import get_benchmark

    dataset = get_benchmark(args.dataset).name
    out = args.out or f"runs/{dataset.lower().replace('+', 'plus')}"
    config = BenchmarkConfig(dataset=dataset, data_root=args.data_root, out=out, trials=parse_trials(args.trials),
                             methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                             recipe=args.recipe, epochs_scale=args.epochs_scale, seed=args.seed, device=args.device,
                             compile=args.compile, anchor_magnitude=args.anchor_magnitude,
                             anchor_weight=args.anchor_weight)
    _, table = run_benchmark(config, progress=not args.no_progress)
    print(table)
    from .report import write_report

    print(f"Run folder: {out}/  report: {write_report(out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="classanchor", description="Open-set recognition with Class Anchor Clustering.")
    parser.add_argument("--version", action="version", version=f"classanchor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="CAC vs cross-entropy on the embedded 8x8 digits (about a minute)")
    demo.add_argument("--splits", type=int, default=5, help="random known/unknown splits (default 5)")
    demo.add_argument("--epochs", type=int, default=30, help="training epochs per network (default 30)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    demo.set_defaults(func=_demo)

    bench = commands.add_parser("benchmark", help="the paper's open-set benchmark on one dataset (Tables 2 and 3)")
    bench.add_argument("dataset", help="MNIST, SVHN, CIFAR10, CIFAR+10, CIFAR+50 or TinyImageNet")
    bench.add_argument("--data-root", required=True, help="folder with the dataset files (see docs/datasets.md)")
    bench.add_argument("--trials", default="0-4", help="standard trials to run, e.g. 0-4 or 0,2 (default 0-4)")
    bench.add_argument("--methods", default="cac,ce", help="comma list of cac, ce, anchor, tuplet (default cac,ce)")
    bench.add_argument("--recipe", default="paper", help="training recipe (default: paper)")
    bench.add_argument("--epochs-scale", type=float, default=1.0,
                       help="multiply every stage's epochs by this (e.g. 0.05 for a CPU run); the table says so")
    bench.add_argument("--anchor-magnitude", type=float, default=10.0, help="the paper's alpha (default 10)")
    bench.add_argument("--anchor-weight", type=float, default=0.1, help="the paper's lambda (default 0.1)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    bench.add_argument("--compile", action="store_true", help="use torch.compile (falls back if unsupported)")
    bench.add_argument("--out", help="run folder (default runs/<dataset>); re-running resumes it")
    bench.add_argument("--no-progress", action="store_true")
    bench.set_defaults(func=_benchmark)

    # Further commands live in classanchor/commands/<name>.py, each with add_parser(subparsers).
    from . import commands as command_package

    for info in sorted(pkgutil.iter_modules(command_package.__path__), key=lambda m: m.name):
        importlib.import_module(f"{command_package.__name__}.{info.name}").add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"classanchor {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
