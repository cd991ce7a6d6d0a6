"""Command-line interface: ``classanchor <command>``; the commands live in ``classanchor.commands``.

Usage errors (a bad flag value, a missing file, a config that does not fit) end with exit code 2 and one line
``classanchor <command>: error: ...`` on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from ._version import __version__
from .cpu_memory import keep_freed_memory

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="classanchor", description="Open-set recognition with Class Anchor Clustering.")
    parser.add_argument("--version", action="version", version=f"classanchor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    from .commands import benchmark, studies, user

    for module in (benchmark, studies, user):
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError, OSError, ImportError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"classanchor {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"classanchor {args.command}: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130
