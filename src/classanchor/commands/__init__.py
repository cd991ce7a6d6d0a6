"""The ``classanchor`` sub-commands, one module per group, each with ``add_parser(subparsers)`` (listed in
``classanchor.cli``) setting ``func`` to a function ``(args) -> exit code``. Heavy modules are imported inside
those functions so that ``classanchor --help`` stays fast.
"""
