"""``classanchor compare | ablation | sweep``: the paper's comparisons over trials (see classanchor.studies).

Each command shares the benchmark's options and its default run folder (``runs/<dataset>``), so after
``classanchor benchmark mnist ...`` the same options make ``classanchor compare mnist ...`` reuse the
trained networks.
"""

from __future__ import annotations

import argparse

from ._options import add_run_options, default_out, executor_from


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of numbers, e.g. 5,10,20; got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _config(args: argparse.Namespace):
    from ..data.splits import get_benchmark
    from ..studies import StudyConfig

    dataset = get_benchmark(args.dataset).name
    return StudyConfig(dataset=dataset, data_root=args.data_root, out=args.out or default_out(dataset),
                       trials=args.trials, recipe=args.recipe, epochs_scale=args.epochs_scale, seed=args.seed,
                       backbone=args.backbone, backbone_kwargs=args.backbone_kwargs, precision=args.precision,
                       device=args.device, compile=args.compile, accept_rate=args.accept_rate)


def _finish(config, table: str) -> int:
    if not table:  # a torchrun rank other than 0: rank 0 reports
        return 0
    print(table)
    print(f"Run folder: {config.out}/")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ..studies import run_compare

    config = _config(args)
    _, table = run_compare(config, {"cac": args.cac_detectors, "ce": args.ce_detectors}, progress=not args.no_progress,
                           executor=executor_from(args))
    return _finish(config, table)


def _ablation(args: argparse.Namespace) -> int:
    from ..studies import run_ablation

    config = _config(args)
    _, table = run_ablation(config, args.methods, progress=not args.no_progress, executor=executor_from(args))
    return _finish(config, table)


def _sweep(args: argparse.Namespace) -> int:
    from ..studies import run_sweep

    config = _config(args)
    _, table = run_sweep(config, args.magnitudes, args.weights, progress=not args.no_progress,
                         executor=executor_from(args))
    return _finish(config, table)


def _common(parser: argparse.ArgumentParser, trials: str) -> None:
    add_run_options(parser, trials, "run folder (default runs/<dataset>, the benchmark's); re-running resumes it "
                                    "and networks already trained there are reused")
    parser.add_argument("--accept-rate", type=float, default=0.95,
                        help="share of known validation images the calibrated threshold accepts (default 0.95)")


# The studies' defaults, written out here so that ``classanchor --help`` does not import torch;
# tests/test_studies.py checks that they equal classanchor.studies' constants.
COMPARE_DETECTORS = {"cac": ("cac", "class_mean", "openmax"),
                     "ce": ("msp", "max_logit", "energy", "openmax", "class_mean")}
ABLATION_METHODS = ("cac", "anchor", "tuplet")
SWEEP_MAGNITUDES = (5.0, 10.0, 20.0)
SWEEP_WEIGHTS = (0.05, 0.1, 0.2, 0.4, 0.8)


def add_parser(subparsers) -> None:
    """Add the ``compare``, ``ablation`` and ``sweep`` sub-commands."""
    compare = subparsers.add_parser(
        "compare", help="CAC vs cross-entropy with MSP, max-logit, energy, OpenMax, class-mean distance (Table 2)")
    _common(compare, "0-4")
    compare.add_argument("--cac-detectors", type=_names, default=COMPARE_DETECTORS["cac"],
                         help=f"scores of the CAC network (default {','.join(COMPARE_DETECTORS['cac'])})")
    compare.add_argument("--ce-detectors", type=_names, default=COMPARE_DETECTORS["ce"],
                         help=f"scores of the cross-entropy network (default {','.join(COMPARE_DETECTORS['ce'])})")
    compare.set_defaults(func=_compare)

    ablation = subparsers.add_parser("ablation", help="CAC vs anchor loss only vs tuplet loss only (Fig. 3)")
    _common(ablation, "0-4")
    ablation.add_argument("--methods", type=_names, default=ABLATION_METHODS,
                          help=f"training methods (default {','.join(ABLATION_METHODS)}; ce also allowed)")
    ablation.set_defaults(func=_ablation)

    sweep = subparsers.add_parser("sweep", help="anchor magnitude x anchor weight grid of CAC networks (Fig. 2)")
    _common(sweep, "0")
    sweep.add_argument("--magnitudes", type=_floats, default=SWEEP_MAGNITUDES,
                       help=f"anchor magnitudes alpha (default {','.join(f'{a:g}' for a in SWEEP_MAGNITUDES)})")
    sweep.add_argument("--weights", type=_floats, default=SWEEP_WEIGHTS,
                       help=f"anchor weights lambda (default {','.join(f'{w:g}' for w in SWEEP_WEIGHTS)})")
    sweep.set_defaults(func=_sweep)
