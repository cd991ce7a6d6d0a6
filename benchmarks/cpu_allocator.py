"""What keeping freed memory (:func:`classanchor.cpu_memory.keep_freed_memory`) buys: the library's training
step and evaluation (``speed.py``'s pipeline ``a``, the device's default memory format and precision) timed in
fresh processes with glibc's default allocator and with freed memory kept, alternately, ``--repeats`` times.

The setting is process-wide and cannot be undone, so each measurement is a new Python process (this script
run with ``--child``); the parent alternates the two settings and prints medians and their ratio. Each child
first warms up and times evaluation (``--eval-images`` images, three times), as ``classanchor evaluate`` and
``predict`` meet it in a fresh process, then training (one warm-up step, three times ``--steps`` steps), and
reports its medians. Run it under the shared lock::

    flock /tmp/classanchor-cpu.lock .venv/bin/python benchmarks/cpu_allocator.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

import numpy as np
import torch
from speed import CASES, environment, library_pipeline, network_of

from classanchor.cpu_memory import keep_freed_memory
from classanchor.train import bf16_is_fast, use_channels_last


def child(args) -> None:
    """One fresh process: warm up, time three repeats of training and evaluation, print one JSON line."""
    if args.keep:
        keep_freed_memory()
    device = torch.device("cpu")
    case, case_args = network_of(CASES[args.case], args)
    n = max(args.batch_size * (args.steps + 2), args.eval_images)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, case.channels, case.source, case.source), dtype=np.uint8)
    labels = rng.integers(0, case.classes, size=n)
    pipeline = library_pipeline(case, images, labels, case_args, device, use_channels_last(None, device), False,
                                bf16_is_fast(device))
    for kind, warm_up in (("eval", pipeline.evaluate), ("train", lambda: pipeline.train(1))):
        warm_up()  # evaluation first, as `classanchor evaluate` / `predict` meet it; then training
        for _ in range(3):
            pipeline.measure(kind, device, args.steps)
    print(json.dumps({"case": case.name, "train": pipeline.median("train"), "eval": pipeline.median("eval")}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="mnist,cifar", help=f"comma list of {', '.join(CASES)}")
    parser.add_argument("--backbone", default="fast", help="as speed.py: fast (default) or a registry name")
    parser.add_argument("--backbone-kwargs", default="{}", help="JSON arguments of a registry backbone")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per setting (median reported)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per timed repeat")
    parser.add_argument("--eval-images", type=int, default=1000, help="images per timed evaluation")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eval-batch-size", type=int, default=1000, help="capped on CPUs by evaluate.CPU_EVAL_BATCH")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", default="mnist", help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    print(environment(torch.device("cpu")))
    print(f"backbone {args.backbone}; batch {args.batch_size}; {args.repeats} fresh processes per setting, each "
          f"the median of 3 x {args.steps} steps and 3 x {args.eval_images} evaluation images")
    print("\n| case | work | glibc default | freed memory kept | kept / default |\n|---|---|---|---|---|")
    forwarded = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                 if k in ("backbone", "backbone_kwargs", "steps", "eval_images", "batch_size", "eval_batch_size")]
    for case in (c.strip() for c in args.cases.split(",") if c.strip()):
        runs: dict[int, list[dict]] = {0: [], 1: []}
        for _ in range(args.repeats):
            for keep in (0, 1):
                out = subprocess.run([sys.executable, __file__, "--child", f"--case={case}", f"--keep={keep}",
                                      *forwarded], check=True, capture_output=True, text=True).stdout
                runs[keep].append(json.loads(out.strip().splitlines()[-1]))
        for kind in ("train", "eval"):
            default, kept = (statistics.median(r[kind] for r in runs[k]) for k in (0, 1))
            print(f"| {runs[0][0]['case']} | {kind} | {default:.0f} | {kept:.0f} | {kept / default:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
