"""Command-line interface: turns flags into dataclasses and calls the library API."""

from __future__ import annotations

import argparse
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
