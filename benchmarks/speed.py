"""Training and evaluation throughput of a backbone: the library's pipeline against the compute limit and
against a conventional per-sample DataLoader, in one process.

For each case (1 channel as MNIST, 3 channels at 32 px as CIFAR, 3 channels at 64 px as TinyImageNet) and for
training and evaluation, images/s of

- ``a``    the library: :class:`classanchor.data.loader.DeviceLoader` (uint8 split on the device, batched
           augmentation) + :func:`classanchor.train.train_step` (CAC loss, SGD) exactly as ``train()`` runs
           them; evaluation = :func:`classanchor.evaluate.network_logits` on the uint8 images, exactly as every
           job and the predictor evaluate (float32, resize + normalise on the device, the device's default
           memory format, uncompiled), so the a-variants differ only in training. Training is measured in
           both memory formats (``a/NHWC`` channels-last, ``a/NCHW`` contiguous), and compiled with
           ``--compile``; ``a`` in the ratios is the library's default for the device.
- ``b``    the bare network: forward + backward + SGD step (evaluation: forward under inference mode) on
           tensors already in memory, in the default memory format (NCHW): the compute limit.
- ``c``    conventional research code: ``torch.utils.data.DataLoader`` with per-sample transforms (resize,
           random resized crop, flip, rotation via ``F.grid_sample`` on one image, normalise), 2 worker
           processes, batches moved to the device; network in the default memory format; evaluation with the
           same per-sample resize + normalise at the training batch size.

The network of each case is by default the one ``classanchor train`` and the ``fast`` benchmark recipes
train (``--backbone fast``: resnet9 at the recipe's width and input side, e.g. 28 px for MNIST); ``--backbone
classifier32`` (the paper's network, MNIST resized to 32 px) or any registry name times that network instead.
The process keeps freed memory as the ``classanchor`` command does
(:func:`classanchor.cpu_memory.keep_freed_memory`), so a and c share the allocator and a/c measures the
pipelines alone (``benchmarks/cpu_allocator.py`` measures the allocator setting).

Each pipeline is warmed up once (c: until the workers' prefetch queue is full), then timed over ``--steps``
training steps and ``--eval-images`` evaluation images (64 px: a quarter of both, at least 2 steps), ``--repeats`` times with
the pipelines interleaved; the table shows medians. Timings are only honest on an otherwise idle machine:
run it under the shared lock::

    flock /tmp/classanchor-cpu.lock .venv/bin/python benchmarks/speed.py
    flock /tmp/classanchor-cpu.lock .venv/bin/python benchmarks/speed.py --cases mnist --backbone classifier32
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from classanchor import CACNet, get_method
from classanchor.cpu_memory import keep_freed_memory
from classanchor.data.augment import AugmentSpec
from classanchor.data.loader import DeviceLoader
from classanchor.data.preprocess import Preprocessing
from classanchor.evaluate import network_logits
from classanchor.models.registry import build_backbone
from classanchor.recipes import get_recipe
from classanchor.train import Stage, TrainConfig, bf16_is_fast, prepare_network, train_step, use_channels_last


@dataclass(frozen=True)
class Case:
    name: str
    dataset: str  # whose fast recipe gives the network of ``--backbone fast``
    channels: int
    source: int  # stored image side (MNIST 28 px is resized to 32)
    size: int  # network input side
    classes: int
    spec: AugmentSpec


CASES = {
    "mnist": Case("32 px, 1 ch (MNIST)", "MNIST", 1, 28, 32, 6, AugmentSpec(32, 0.7, 0.0, 0.0, (0.13,), (0.31,))),
    "cifar": Case("32 px, 3 ch (CIFAR)", "CIFAR10", 3, 32, 32, 6,
                  AugmentSpec(32, 0.8, 0.5, 10.0, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))),
    "tiny": Case("64 px, 3 ch (TinyImageNet)", "TinyImageNet", 3, 64, 64, 20,
                 AugmentSpec(64, 0.7, 0.5, 20.0, (0.48, 0.45, 0.40), (0.28, 0.27, 0.28))),
}


# ------------------------------------------------------------------ (c) conventional per-sample pipeline
def reference_sample_params(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                            generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """ONE crop box (top, left, h, w), drawn as torchvision's ``RandomResizedCrop.get_params`` draws it: up
    to 10 tries of area fraction ~ U(scale), log aspect ~ U(log ratio), then the centred crop of the clamped
    ratio. tests/data/test_augment.py checks the library's batched sampler against this one."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator).item())
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            j = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return i, j, h, w
    in_ratio = width / height  # fallback: the whole image, its aspect ratio clamped into ``ratio``
    h, w = ((round(width / min(ratio)), width) if in_ratio < min(ratio) else
            (height, round(height * max(ratio))) if in_ratio > max(ratio) else (height, width))
    return (height - h) // 2, (width - w) // 2, h, w


class PerSampleImages(Dataset):
    """Research-code style: one image per ``__getitem__``, transformed with torch ops on that single image.

    Train: Resize(S) -> RandomResizedCrop(S, scale=(scale_min, 1)) (box drawn by :func:`reference_sample_params`)
    -> flip -> RandomRotation (affine grid + nearest ``grid_sample``, fill 0) -> Normalize.
    Eval: Resize(S) -> Normalize.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, spec: AugmentSpec, train: bool):
        self.images, self.labels, self.spec, self.train = images, labels, spec, train
        channels = images.shape[1]
        self.mean = torch.tensor(spec.mean).expand(channels).view(channels, 1, 1)
        self.std = torch.tensor(spec.std).expand(channels).view(channels, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        s = self.spec.size
        x = torch.from_numpy(self.images[i]).float().div_(255.0).unsqueeze(0)  # (1, C, H, W)
        if x.shape[-1] != s:
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        if self.train:
            top, left, h, w = reference_sample_params(s, s, (self.spec.scale_min, 1.0), self.spec.ratio)
            x = F.interpolate(x[..., top:top + h, left:left + w], size=(s, s), mode="bilinear",
                              align_corners=False)
            if torch.rand(()).item() < self.spec.flip_p:
                x = x.flip(-1)
            if self.spec.rotation_deg > 0:
                angle = math.radians(torch.empty(()).uniform_(-self.spec.rotation_deg, self.spec.rotation_deg).item())
                cos, sin = math.cos(angle), math.sin(angle)
                theta = torch.tensor([[[cos, -sin, 0.0], [sin, cos, 0.0]]])
                grid = F.affine_grid(theta, list(x.shape), align_corners=False)
                x = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        return (x.squeeze(0) - self.mean) / self.std, int(self.labels[i])


# ---------------------------------------------------------------------------------------- measurements
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Pipeline:
    """A training and an evaluation workload, each run as ``train(steps)`` / ``evaluate()`` -> images."""

    def __init__(self, name: str, train: Callable[[int], int], evaluate: Callable[[], int]):
        self.name, self.train, self.evaluate = name, train, evaluate
        self.rates: dict[str, list[float]] = {"train": [], "eval": []}

    def measure(self, kind: str, device: torch.device, steps: int) -> None:
        _sync(device)
        start = time.perf_counter()
        images = self.train(steps) if kind == "train" else self.evaluate()
        _sync(device)
        self.rates[kind].append(images / (time.perf_counter() - start))

    def median(self, kind: str) -> float:
        return statistics.median(self.rates[kind]) if self.rates[kind] else math.nan


def _net(case: Case, device: torch.device, args) -> CACNet:
    torch.manual_seed(0)
    body = build_backbone(args.backbone, case.classes, case.channels, case.size, **json.loads(args.backbone_kwargs))
    return CACNet(body, case.classes).to(device)


def library_pipeline(case, images, labels, args, device, channels_last: bool, compile: bool,
                     bf16: bool) -> Pipeline:
    """(a) DeviceLoader + train_step as classanchor.train.train runs them; network_logits for evaluation.

    ``bf16``: the forward pass under bfloat16 autocast. Where the library autocasts by default
    (:func:`classanchor.train.bf16_is_fast`) this is its own ``amp=True`` path; elsewhere (an experiment) the
    forward function is wrapped in ``torch.autocast(device.type, torch.bfloat16)``."""
    method = get_method("cac")
    train_loader = DeviceLoader(images, labels, args.batch_size, case.spec, train=True, device=device, seed=0,
                                drop_last=True, channels_last=channels_last)
    n_eval = min(args.eval_images, len(labels))
    preprocessing = Preprocessing(case.size, case.channels, case.spec.mean, case.spec.std)
    net = _net(case, device, args)
    amp = bf16 and bf16_is_fast(device)
    config = TrainConfig(stages=(Stage(1, 0.01),), weight_decay=5e-6, channels_last=channels_last, compile=compile,
                         precision="bf16" if amp else "float32")
    forward = prepare_network(net, config, device, next(iter(train_loader))[0])
    if bf16 and not amp:
        plain = forward

        def forward(x):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return plain(x)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-6)
    state = {"batches": iter(train_loader)}

    def batch():
        try:
            return next(state["batches"])
        except StopIteration:
            state["batches"] = iter(train_loader)
            return next(state["batches"])

    def train(steps: int) -> int:
        net.train()
        for _ in range(steps):
            x, y = batch()
            train_step(net, forward, method, optimizer, x, y, device=device, amp=amp, channels_last=channels_last)
        return steps * args.batch_size

    def evaluate() -> int:
        logits = network_logits(net, preprocessing, images[:n_eval], device=device, batch_size=args.eval_batch_size,
                                layout="NCHW")
        return logits.shape[0]

    name = f"a/{'NHWC' if channels_last else 'NCHW'}" + ("+compile" if compile else "") + ("+bf16" if bf16 else "")
    return Pipeline(name, train, evaluate)


def loader_pipeline(case, images, labels, args, device) -> Pipeline:
    """The DeviceLoader alone (batches produced and discarded): the data part of a's training cost per image
    (its evaluation row is the DeviceLoader's eval batches, which a no longer uses)."""
    channels_last = use_channels_last(None, device)
    train_loader = DeviceLoader(images, labels, args.batch_size, case.spec, train=True, device=device, seed=0,
                                drop_last=True, channels_last=channels_last)
    n_eval = min(args.eval_images, len(labels))
    eval_loader = DeviceLoader(images[:n_eval], labels[:n_eval], args.eval_batch_size, case.spec, train=False,
                               device=device, channels_last=channels_last)

    def train(steps: int) -> int:
        done, batches = 0, iter(train_loader)
        while done < steps:
            for _ in batches:
                done += 1
                if done == steps:
                    break
            batches = iter(train_loader)
        return steps * args.batch_size

    def evaluate() -> int:
        return sum(x.shape[0] for x, _ in eval_loader)

    return Pipeline("loader", train, evaluate)


def bare_pipeline(case, args, device, bf16: bool = False) -> Pipeline:
    """(b) forward + backward + SGD on tensors already on the device, default memory format; ``bf16``: under
    ``torch.autocast(device.type, torch.bfloat16)`` (the compute limit for a bf16 library pipeline)."""
    net = _net(case, device, args)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-6)
    x = torch.randn(args.batch_size, case.channels, case.size, case.size, device=device)
    y = torch.randint(0, case.classes, (args.batch_size,), device=device)
    n_eval = args.eval_images

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    x_eval = torch.randn(min(args.eval_batch_size, n_eval), case.channels, case.size, case.size, device=device)

    def train(steps: int) -> int:
        net.train()
        for _ in range(steps):
            with autocast():
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return steps * args.batch_size

    @torch.inference_mode()
    def evaluate() -> int:
        net.eval()
        done = 0
        while done < n_eval:
            with autocast():
                net(x_eval[: n_eval - done])
            done += min(x_eval.shape[0], n_eval - done)
        return done

    return Pipeline("b+bf16" if bf16 else "b", train, evaluate)


def conventional_pipeline(case, images, labels, args, device) -> Pipeline:
    """(c) DataLoader(per-sample transforms, num_workers=2) as research code does it."""
    method = get_method("cac")
    pin = device.type == "cuda"
    train_loader = DataLoader(PerSampleImages(images, labels, case.spec, True), batch_size=args.batch_size,
                              shuffle=True, drop_last=True, num_workers=args.workers, pin_memory=pin,
                              persistent_workers=args.workers > 0)
    n_eval = min(args.eval_images, len(labels))
    eval_loader = DataLoader(PerSampleImages(images[:n_eval], labels[:n_eval], case.spec, False),
                             batch_size=args.batch_size, shuffle=False, num_workers=args.workers, pin_memory=pin,
                             persistent_workers=args.workers > 0)
    net = _net(case, device, args)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-6)
    state = {"batches": iter(train_loader)}

    def batch():
        try:
            x, y = next(state["batches"])
        except StopIteration:
            state["batches"] = iter(train_loader)
            x, y = next(state["batches"])
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def train(steps: int) -> int:
        net.train()
        for _ in range(steps):
            x, y = batch()
            logits = net(x)
            loss = method.batch_loss(logits, net.head(logits), y).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return steps * args.batch_size

    @torch.inference_mode()
    def evaluate() -> int:
        net.eval()
        outputs = [net(x.to(device, non_blocking=True)).cpu() for x, _ in eval_loader]
        return sum(o.shape[0] for o in outputs)

    pipeline = Pipeline("c", train, evaluate)
    pipeline.warmup_steps = 2 * args.workers + 1  # fill the workers' prefetch queue before timing
    return pipeline


def network_of(case: Case, args) -> tuple[Case, argparse.Namespace]:
    """The case and arguments with ``--backbone fast`` resolved: the network and input side of the case's
    ``fast`` recipe (MNIST: resnet9 width 16 at 28 px)."""
    if args.backbone != "fast":
        return case, args
    recipe = get_recipe(case.dataset, "fast")
    size, kwargs = recipe.image_size, dict(recipe.backbone_kwargs)
    case = replace(case, name=f"{size} px, {case.channels} ch ({case.dataset}, {recipe.backbone} width "
                              f"{kwargs.get('width', '-')})", size=size, spec=replace(case.spec, size=size))
    return case, argparse.Namespace(**{**vars(args), "backbone": recipe.backbone,
                                       "backbone_kwargs": json.dumps(kwargs)})


def run_case(case: Case, args, device: torch.device) -> list[Pipeline]:
    area = (32 / case.size) ** 2  # 64 px costs four times as much per image: a quarter of the work
    steps = args.steps if area == 1 else max(min(2, args.steps), round(args.steps * area))
    args = argparse.Namespace(**{**vars(args), "eval_images": max(1, round(args.eval_images * area))})
    rng = np.random.default_rng(0)
    n = max(args.batch_size * (args.steps + 8), args.eval_images)
    images = rng.integers(0, 256, size=(n, case.channels, case.source, case.source), dtype=np.uint8)
    labels = rng.integers(0, case.classes, size=n)
    if args.loader_only:
        pipelines = [loader_pipeline(case, images, labels, args, device)]
        return _measure(pipelines, args, device, steps)
    default_cl, default_bf16 = use_channels_last(None, device), bf16_is_fast(device)
    with_bf16 = args.cpu_bf16 or default_bf16 or device.type != "cpu"
    pipelines = [library_pipeline(case, images, labels, args, device, cl, False, bf16)
                 for bf16 in ((False, True) if with_bf16 else (False,)) for cl in (True, False)]
    if args.compile:
        pipelines.append(library_pipeline(case, images, labels, args, device, default_cl, True, default_bf16))
        if with_bf16 and not default_bf16:
            pipelines.append(library_pipeline(case, images, labels, args, device, True, True, True))
    pipelines.append(bare_pipeline(case, args, device))
    if with_bf16:
        pipelines.append(bare_pipeline(case, args, device, bf16=True))
    pipelines.append(conventional_pipeline(case, images, labels, args, device))
    return _measure(pipelines, args, device, steps)


def _measure(pipelines: list[Pipeline], args, device: torch.device, steps: int) -> list[Pipeline]:
    for p in pipelines:  # warm-up: allocator, oneDNN/cuDNN plans, compilation, worker start and prefetch
        start = time.perf_counter()
        p.train(getattr(p, "warmup_steps", 1))
        p.evaluate()
        p.warmup_seconds = time.perf_counter() - start
    for _ in range(args.repeats):
        for kind in ("train", "eval"):
            for p in pipelines:
                p.measure(kind, device, steps)
    return pipelines


def library_default(device: torch.device) -> tuple[str, str]:
    """(name of the library's default variant, name of the bare variant with the same arithmetic)."""
    bf16 = bf16_is_fast(device)
    name = ("a/NHWC" if use_channels_last(None, device) else "a/NCHW") + ("+bf16" if bf16 else "")
    return name, "b+bf16" if bf16 else "b"


def format_table(results: list[tuple[Case, list[Pipeline]]], device: torch.device) -> str:
    default, bare = library_default(device)
    names = [p.name for p in results[0][1]]
    head = "| case | work | " + " | ".join(names) + " | a/b | a/c | NHWC/NCHW of a |"
    lines = [(f"images/s, median of the repeats; a = `{default}` (the library's default on {device.type}), "
             f"b = `{bare}` (same arithmetic as a)"), "",
             head, "|" + "---|" * (head.count("|") - 1)]
    for case, pipelines in results:
        rates = {p.name: p for p in pipelines}
        for kind in ("train", "eval"):
            a = rates[default].median(kind)
            b, c = rates[bare].median(kind), rates["c"].median(kind)
            suffix = "+bf16" if default.endswith("+bf16") else ""
            cl = rates["a/NHWC" + suffix].median(kind) / rates["a/NCHW" + suffix].median(kind)
            cells = " | ".join(f"{rates[n].median(kind):.0f}" for n in names)
            lines.append(f"| {case.name} | {kind} | {cells} | {a / b:.2f} | {a / c:.2f} | {cl:.2f} |")
    warm = ", ".join(f"{p.name} {p.warmup_seconds:.0f} s" for case, pipelines in results for p in pipelines
                     if "compile" in p.name)
    if warm:
        lines += ["", f"warm-up incl. compilation (one train step + one evaluation): {warm}"]
    return "\n".join(lines)


def environment(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    return (f"device {device} ({name}); torch {torch.__version__}; {torch.get_num_threads()} intra-op threads; "
            f"{os.cpu_count()} logical CPUs; python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, ...")
    parser.add_argument("--cases", default="mnist,cifar,tiny", help=f"comma list of {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per pipeline (median reported)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per repeat (default 3 on CPU, 50 on CUDA; 64 px: a quarter, at least 2)")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch (the recipes use 128)")
    parser.add_argument("--eval-batch-size", type=int, default=1000, help="library evaluation batch")
    parser.add_argument("--eval-images", type=int, default=1000, help="images per evaluation repeat (64 px: a quarter)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of pipeline c")
    parser.add_argument("--backbone", default="fast",
                        help="registry name, or fast (default): each case's fast-recipe network and input side")
    parser.add_argument("--backbone-kwargs", default="{}", help='JSON arguments, e.g. \'{"width": 32}\'')
    parser.add_argument("--compile", action="store_true", help="also time the library with torch.compile")
    parser.add_argument("--loader-only", action="store_true",
                        help="time only the DeviceLoader (batches/s of the data side of a), 10x the steps")
    parser.add_argument("--cpu-bf16", action="store_true",
                        help="also time bfloat16 autocast on the CPU (always timed on CUDA and where it is the default)")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the classanchor command does, for every pipeline of this process alike
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.steps is None:
        args.steps = 50 if device.type == "cuda" else 3
    if args.loader_only:
        args.steps *= 10
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        args.eval_images = max(args.eval_images, 10 * args.eval_batch_size)
    results = []
    for key in (k.strip() for k in args.cases.split(",") if k.strip()):
        if key not in CASES:
            parser.error(f"unknown case {key!r}; choose from {', '.join(CASES)}")
        case, case_args = network_of(CASES[key], args)
        print(f"measuring {case.name} ...", flush=True)
        results.append((case, run_case(case, case_args, device)))
    print()
    print(environment(device))
    print(f"backbone {args.backbone}" + ("" if args.backbone == "fast" else f" {args.backbone_kwargs}"))
    print(f"batch {args.batch_size}, eval batch {args.eval_batch_size} (c: {args.batch_size}), {args.repeats} "
          f"repeats of {args.steps} steps (64 px: fewer) and {args.eval_images} eval images, c with "
          f"{args.workers} workers")
    print()
    if args.loader_only:
        for case, (p,) in results:
            print(f"| {case.name} | DeviceLoader alone | train {p.median('train'):.0f} img/s | eval "
                  f"{p.median('eval'):.0f} img/s |")
        return 0
    print(format_table(results, device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
