"""``classanchor demo``, ``benchmark`` and ``report``: the embedded digits demo, the paper's benchmark and the
HTML report of a run folder."""

from __future__ import annotations

import argparse

from ._options import add_progress, add_run_options, executor_from, names, positive_int, run_settings


def _demo(args: argparse.Namespace) -> int:
    from ..demo import DemoConfig, run_demo

    config = DemoConfig(splits=args.splits, epochs=args.epochs, seed=args.seed, out=args.out)
    _, summary = run_demo(config, progress=not args.no_progress)
    print(f"{summary}\nResults written to {config.out}/")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from ..benchmark import BenchmarkConfig, run_benchmark
    from ..report import write_report

    config = BenchmarkConfig(**run_settings(args), methods=names(args.methods),
                             anchor_magnitude=args.anchor_magnitude, anchor_weight=args.anchor_weight)
    _, table = run_benchmark(config, progress=not args.no_progress, executor=executor_from(args))
    if table:  # empty on a torchrun rank other than 0: rank 0 reports
        print(f"{table}\nRun folder: {config.out}/  report: {write_report(config.out)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..report import write_report

    page = write_report(args.run_dir, args.out, data_root=args.data_root)
    print(f"Report written to {page} (figures beside it).")
    return 0


def add_parser(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="CAC vs cross-entropy on the embedded 8x8 digits (about half a minute)")
    demo.add_argument("--splits", type=positive_int, default=5, help="random known/unknown splits (default 5)")
    demo.add_argument("--epochs", type=positive_int, default=30, help="training epochs per network (default 30)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    add_progress(demo)
    demo.set_defaults(func=_demo)

    bench = subparsers.add_parser("benchmark", help="the paper's open-set benchmark on one dataset (Tables 2 and 3)")
    add_run_options(bench, "0-4", "run folder (default runs/<dataset>); re-running resumes it")
    bench.add_argument("--methods", default="cac,ce", help="comma list of cac, ce, anchor, tuplet (default cac,ce)")
    bench.add_argument("--anchor-magnitude", type=float, default=10.0, help="the paper's alpha (default 10)")
    bench.add_argument("--anchor-weight", type=float, default=0.1, help="the paper's lambda (default 0.1)")
    bench.set_defaults(func=_benchmark)

    report = subparsers.add_parser(
        "report", help="an HTML page with the config, tables and figures of a run folder (from its saved logits)")
    report.add_argument("run_dir", help="a run folder written by `classanchor benchmark` (its --out)")
    report.add_argument("--out", help="folder for index.html and the PNGs (default RUN_DIR/report)")
    report.add_argument("--data-root", help="where to read the test images for the Fig. 5 grid (default: the "
                                            "data_root in RUN_DIR/config.json; without images it is skipped)")
    report.set_defaults(func=_report)
