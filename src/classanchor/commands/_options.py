"""Option helpers shared by the sub-commands: one definition per flag, with its parsing and its error message.

Types raise ``argparse.ArgumentTypeError``, so a bad value is a usage error: exit code 2 with one line naming the
flag, never a traceback. Nothing here imports torch, so ``classanchor --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from functools import partial


def names(text: str | None) -> tuple[str, ...] | None:
    """'a, b,c' -> ('a', 'b', 'c'); None stays None."""
    return None if text is None else tuple(n.strip() for n in text.split(",") if n.strip())


def _number(text: str, kind: type = float, minimum: float | None = None):
    """``kind(text)``, finite and at least ``minimum`` (when given), else a usage error."""
    try:
        value = kind(text)
    except ValueError:
        expected = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if minimum is not None and value < minimum:
        raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
    return value


finite_float = _number  # nan and inf are refused: a threshold of nan would call every image unknown
positive_int = partial(_number, kind=int, minimum=1)
gpu_share = partial(_number, minimum=0)  # GPUs: fractions (0.5) let Ray put several jobs on one GPU


def json_object(text: str) -> dict:
    """A JSON object such as '{"dropout": 0.3}'."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"dropout\": 0.3}}' ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"dropout\": 0.3}}', got {text!r}")
    return value


def trial_list(text: str) -> tuple[int, ...]:
    """'0-4' -> (0, 1, 2, 3, 4); '0,2' -> (0, 2); trials 0-4 only (the standard splits)."""
    trials: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                lo, hi = part.split("-")
                trials.extend(range(int(lo), int(hi) + 1))
            elif part.strip():
                trials.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad trial list {text!r}; use e.g. 0-4 or 0,2") from None
    if not trials or min(trials) < 0 or max(trials) > 4:
        raise argparse.ArgumentTypeError(f"bad trial list {text!r}: the standard trials are 0-4; use e.g. 0-4 or 0,2")
    return tuple(dict.fromkeys(trials))


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def add_model_training(parser: argparse.ArgumentParser) -> None:
    """--backbone, --backbone-kwargs, --seed, --precision, --device: how any command trains a network."""
    parser.add_argument("--backbone", help="classifier32 (the paper's network), resnet9 (small residual net for "
                                           "CPUs), mlp, small_cnn, torchvision:<name>, timm:<name>; default: the "
                                           "recipe's (paper: classifier32, fast: resnet9)")
    parser.add_argument("--backbone-kwargs", type=json_object, default={},
                        help="JSON object of backbone keyword arguments, e.g. '{\"dropout\": 0.3}'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=("auto", "float32", "bf16"), default="auto",  # train.PRECISIONS
                        help="training precision: auto (bf16 on CUDA and AMX CPUs, else float32), float32 or bf16; "
                             "recorded in result.json. Evaluation always runs in float32")
    add_device(parser)


def add_executor(parser: argparse.ArgumentParser) -> None:
    """--executor and its Ray options (docs/scale.md)."""
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="where the trainings run: local (one after another in this process, default) or ray "
                             "(one Ray task per job; pip install 'classanchor[ray]')")
    parser.add_argument("--ray-address", help="a running Ray cluster, e.g. head-node:6379 (default: start Ray on "
                                              "this machine); the run folder must be on storage every node shares")
    parser.add_argument("--cpus-per-job", type=positive_int, help="CPUs each Ray task asks for (default 1)")
    parser.add_argument("--gpus-per-job", type=gpu_share, help="GPUs each Ray task asks for (default 0; 0.5 "
                                                               "shares a GPU between two jobs)")


def executor_from(args: argparse.Namespace):
    """The executor the --executor options ask for (:func:`classanchor.executors.make_executor`)."""
    from ..executors import make_executor

    return make_executor(args.executor, address=args.ray_address, cpus_per_job=args.cpus_per_job,
                         gpus_per_job=args.gpus_per_job)


def add_run_options(parser: argparse.ArgumentParser, trials: str, out_help: str) -> None:
    """The options of the benchmark and the studies: data, trials, recipe, training, run folder, executor."""
    parser.add_argument("dataset", help="MNIST, SVHN, CIFAR10, CIFAR+10, CIFAR+50 or TinyImageNet")
    parser.add_argument("--data-root", required=True, help="folder with the dataset files (see docs/datasets.md)")
    parser.add_argument("--trials", type=trial_list, default=trial_list(trials),
                        help=f"standard trials to run, e.g. 0-4 or 0,2 (default {trials})")
    parser.add_argument("--recipe", default="paper", help="training recipe: paper (default) or fast")
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="multiply every stage's epochs by this (e.g. 0.05 for a CPU run); the table says so")
    add_model_training(parser)
    parser.add_argument("--compile", action="store_true", help="use torch.compile (falls back if unsupported)")
    parser.add_argument("--out", help=out_help)
    add_progress(parser)
    add_executor(parser)


def fields_from(config_class: type, args: argparse.Namespace) -> dict:
    """The options named after a field of the dataclass ``config_class``, by field name."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class) if hasattr(args, f.name)}


def run_settings(args: argparse.Namespace) -> dict:
    """The :class:`classanchor.benchmark.RunSettings` of the options of :func:`add_run_options`; the run
    folder defaults to runs/<dataset> (CIFAR+10: runs/cifarplus10), shared by the benchmark and studies."""
    from ..benchmark import RunSettings
    from ..data.splits import get_benchmark

    dataset = get_benchmark(args.dataset).name
    out = args.out or f"runs/{dataset.lower().replace('+', 'plus')}"
    return {**fields_from(RunSettings, args), "dataset": dataset, "out": out}
