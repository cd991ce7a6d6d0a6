"""Sub-commands of the ``classanchor`` CLI beyond demo and benchmark.

Each module here defines ``add_parser(subparsers)`` that adds its sub-command(s) and sets ``func`` to a
function ``(args) -> exit code``; ``classanchor.cli`` discovers the modules. Import heavy modules inside
the command functions so that ``classanchor --help`` stays fast.
"""
