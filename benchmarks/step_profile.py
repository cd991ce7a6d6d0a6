"""Where one training step's time goes: the network of a ``speed.py`` case (by default its ``fast`` recipe
network at the recipe's input side), forward + backward + SGD on one random batch already in memory, in both
memory formats, in one process:

1. images/s per memory format (channels-last ``NHWC`` and contiguous ``NCHW``), ``--repeats`` interleaved
   repeats of ``--steps`` steps, medians;
2. the operators that take the most self CPU time over ``--steps`` profiled steps (``torch.profiler``), per
   format, as shares of the total;
3. every convolution of the network at its own input shape: forward, input gradient and weight gradient, each
   in ms per batch and GFLOP/s (2 * B * C_in * C_out * k_h * k_w * H_out * W_out / groups per pass),
   medians of ``--repeats`` interleaved calls of ``torch.ops.aten.convolution_backward`` (the kernels
   autograd calls) in both formats, plus the weight gradient of NHWC tensors computed in NCHW with the two
   copies counted.

It explains ``speed.py``'s training ratios: when (3)'s convolutions take most of (1)'s step, both pipelines
run the same kernels and only the memory format and the operators between the convolutions are left to win on.
Timings are only honest on an otherwise idle machine: run it under the shared lock::

    flock /tmp/classanchor-cpu.lock .venv/bin/python benchmarks/step_profile.py --case tiny
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from speed import CASES, environment, network_of
from torch import nn

from classanchor.models.registry import build_backbone

FORMATS = {"NHWC": torch.channels_last, "NCHW": torch.contiguous_format}


def _median_ms(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time in ms of each no-argument call, the calls interleaved ``repeats`` times after one
    warm-up call each."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def _repeat(step: Callable[[], None], times: int) -> None:
    for _ in range(times):
        step()


def training_step(case, args, memory_format: torch.memory_format):
    """A ``step()`` closure: cross-entropy forward + backward + SGD (momentum 0.9) of a fresh network."""
    torch.manual_seed(0)
    net = build_backbone(args.backbone, case.classes, case.channels, case.size, **args.kwargs)
    net = net.to(memory_format=memory_format).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch_size, case.channels, case.size, case.size)
    x = x.contiguous(memory_format=memory_format)
    y = torch.randint(0, case.classes, (args.batch_size,))

    def step() -> None:
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return net, x, step


def top_operators(step, steps: int, rows: int) -> list[tuple[str, float, float]]:
    """(operator, self CPU ms per step, share of the total) of the ``rows`` most expensive operators."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(steps):
            step()
    events = [e for e in profile.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / 1000 / steps, e.self_cpu_time_total / total)
            for e in events[:rows]]


def convolution_shapes(net: nn.Module, x: torch.Tensor) -> list[tuple[tuple[int, ...], nn.Conv2d]]:
    """(input shape, layer) of every Conv2d in the order of one forward pass on ``x``."""
    found = []
    hooks = [m.register_forward_hook(lambda m, inputs, out: found.append((tuple(inputs[0].shape), m)))
             for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net(x)
    for hook in hooks:
        hook.remove()
    return found


def convolution_calls(shape: tuple[int, ...], conv: nn.Conv2d) -> tuple[dict[str, Callable[[], object]], int]:
    """The timed calls of one convolution at input ``shape`` (forward, input and weight gradient per format,
    and the NHWC weight gradient computed on NCHW copies) and the FLOPs of one pass."""
    geometry = ([*conv.stride], [*conv.padding], [*conv.dilation], False, [0, 0], conv.groups)
    calls = {}
    for name, memory_format in FORMATS.items():
        inp = torch.randn(shape).contiguous(memory_format=memory_format)
        weight = conv.weight.detach().contiguous(memory_format=memory_format)
        out = F.conv2d(inp, weight, None, *geometry[:3], conv.groups)
        grad = torch.randn_like(out)

        def run(mask, g=grad, i=inp, w=weight):
            return torch.ops.aten.convolution_backward(g, i, w, None, *geometry, mask)

        def forward(i=inp, w=weight):
            return F.conv2d(i, w, None, *geometry[:3], conv.groups)
        calls[f"{name} forward"] = forward
        calls[f"{name} input grad"] = partial(run, [True, False, False])
        calls[f"{name} weight grad"] = partial(run, [False, True, False])
        if name == "NHWC":
            def via_nchw(g=grad, i=inp, w=weight):
                return torch.ops.aten.convolution_backward(g.contiguous(), i.contiguous(), w.contiguous(),
                                                           None, *geometry, [False, True, False])
            calls["NHWC weight grad via NCHW"] = via_nchw
    # per pass: B * C_out * H_out * W_out outputs, each C_in / groups * k_h * k_w multiply-adds
    return calls, 2 * out.numel() * conv.weight[0].numel()


def convolution_rows(net: nn.Module, x: torch.Tensor, repeats: int) -> list[str]:
    """One markdown row per convolution: ms and GFLOP/s of forward, input and weight gradient per format."""
    lines, names = [], []
    for shape, conv in convolution_shapes(net, x):
        calls, flops = convolution_calls(shape, conv)
        ms, names = _median_ms(calls, repeats), list(calls)
        cells = " | ".join(f"{ms[n]:.1f} ({flops / ms[n] / 1e6:.0f})" for n in names)
        lines.append(f"| {shape[1]} -> {conv.out_channels} at {shape[2]}x{shape[3]} | {cells} |")
    head = "| convolution (C_in -> C_out at H x W) | " + " | ".join(names) + " |"
    return ["ms per batch (GFLOP/s), median of the repeats", "", head, "|" + "---|" * (head.count("|") - 1),
            *lines]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="tiny", choices=sorted(CASES), help="a speed.py case")
    parser.add_argument("--backbone", default="fast",
                        help="registry name, or fast (default): the case's fast recipe network")
    parser.add_argument("--backbone-kwargs", default="{}", help='JSON arguments, e.g. \'{"width": 32}\'')
    parser.add_argument("--batch-size", type=int, default=128, help="training batch (the recipes use 128)")
    parser.add_argument("--steps", type=int, default=4, help="steps per timed repeat and profiled steps")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed repeats (medians reported)")
    parser.add_argument("--rows", type=int, default=10, help="operators listed per format")
    args = parser.parse_args(argv)
    case, case_args = network_of(CASES[args.case], args)
    case_args.kwargs = json.loads(case_args.backbone_kwargs)
    print(environment(torch.device("cpu")))
    print(f"{case.name}, {case_args.backbone} {case_args.backbone_kwargs}, batch {args.batch_size}, "
          "float32\n")

    steps = {name: training_step(case, case_args, memory_format) for name, memory_format in FORMATS.items()}
    runs = {name: partial(_repeat, step, args.steps) for name, (_, _, step) in steps.items()}
    ms = _median_ms(runs, args.repeats)
    rates = {name: args.steps * args.batch_size / ms[name] * 1000 for name in FORMATS}
    print("training images/s: " + ", ".join(f"{n} {r:.1f}" for n, r in rates.items()) +
          f"; NHWC/NCHW {rates['NHWC'] / rates['NCHW']:.2f}\n")
    for name, (_, _, step) in steps.items():
        print(f"| {name}: operator | self CPU ms per step | share |\n|---|---|---|")
        for key, per_step, share in top_operators(step, args.steps, args.rows):
            print(f"| {key} | {per_step:.1f} | {share:.1%} |")
        print()
    net, x, _ = steps["NHWC"]
    print("\n".join(convolution_rows(net, x, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
