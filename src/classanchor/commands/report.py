"""``classanchor report RUN_DIR``: the HTML report (config, tables, every figure) of a run folder."""

from __future__ import annotations

import argparse


def _report(args: argparse.Namespace) -> int:
    from ..report import write_report

    page = write_report(args.run_dir, args.out, data_root=args.data_root)
    print(f"Report written to {page} (figures beside it).")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="an HTML page with the config, tables and figures of a run folder (from its saved logits)")
    parser.add_argument("run_dir", help="a run folder written by `classanchor benchmark` (its --out)")
    parser.add_argument("--out", help="folder for index.html and the PNGs (default RUN_DIR/report)")
    parser.add_argument("--data-root", help="where to read the test images for the Fig. 5 grid (default: the "
                                            "data_root in RUN_DIR/config.json; without images it is skipped)")
    parser.set_defaults(func=_report)
