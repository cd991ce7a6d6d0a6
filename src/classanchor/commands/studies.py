"""``classanchor compare | ablation | sweep``: the paper's comparisons over trials (see classanchor.studies).

Each command shares the benchmark's options and its default run folder (``runs/<dataset>``), so after
``classanchor benchmark mnist ...`` the same options make ``classanchor compare mnist ...`` reuse the
trained networks.
"""

from __future__ import annotations

import argparse

from ._options import add_run_options, executor_from, names, run_settings


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of numbers, e.g. 5,10,20; got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _study(args: argparse.Namespace) -> int:
    from .. import studies

    config = studies.StudyConfig(**run_settings(args), accept_rate=args.accept_rate)
    options = {"progress": not args.no_progress, "executor": executor_from(args)}
    if args.command == "compare":
        _, table = studies.run_compare(config, {"cac": args.cac_detectors, "ce": args.ce_detectors}, **options)
    elif args.command == "ablation":
        _, table = studies.run_ablation(config, args.methods, **options)
    else:
        _, table = studies.run_sweep(config, args.magnitudes, args.weights, **options)
    if table:  # empty on a torchrun rank other than 0: rank 0 reports
        print(f"{table}\nRun folder: {config.out}/")
    return 0


# The studies' defaults, written out here so that ``classanchor --help`` does not import torch;
# tests/test_studies.py checks that they equal classanchor.studies' constants.
COMPARE_DETECTORS = {"cac": ("cac", "class_mean", "openmax"),
                     "ce": ("msp", "max_logit", "energy", "openmax", "class_mean")}
ABLATION_METHODS = ("cac", "anchor", "tuplet")
SWEEP_MAGNITUDES = (5.0, 10.0, 20.0)
SWEEP_WEIGHTS = (0.05, 0.1, 0.2, 0.4, 0.8)


def add_parser(subparsers) -> None:
    def study(name: str, trials: str, help: str) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, help=help)
        add_run_options(parser, trials, "run folder (default runs/<dataset>, the benchmark's); re-running "
                                        "resumes it and networks already trained there are reused")
        parser.add_argument("--accept-rate", type=float, default=0.95, help="share of known validation images "
                            "the calibrated threshold accepts (default 0.95)")
        parser.set_defaults(func=_study)
        return parser

    compare = study("compare", "0-4", "CAC vs cross-entropy with MSP, max-logit, energy, OpenMax, "
                                      "class-mean distance (Table 2)")
    for key, network in (("cac", "CAC"), ("ce", "cross-entropy")):
        compare.add_argument(f"--{key}-detectors", type=names, default=COMPARE_DETECTORS[key],
                             help=f"scores of the {network} network (default {','.join(COMPARE_DETECTORS[key])})")
    ablation = study("ablation", "0-4", "CAC vs anchor loss only vs tuplet loss only (Fig. 3)")
    ablation.add_argument("--methods", type=names, default=ABLATION_METHODS,
                          help=f"training methods (default {','.join(ABLATION_METHODS)}; ce also allowed)")
    sweep = study("sweep", "0", "anchor magnitude x anchor weight grid of CAC networks (Fig. 2)")
    sweep.add_argument("--magnitudes", type=_floats, default=SWEEP_MAGNITUDES,
                       help=f"anchor magnitudes alpha (default {','.join(f'{a:g}' for a in SWEEP_MAGNITUDES)})")
    sweep.add_argument("--weights", type=_floats, default=SWEEP_WEIGHTS,
                       help=f"anchor weights lambda (default {','.join(f'{w:g}' for w in SWEEP_WEIGHTS)})")
