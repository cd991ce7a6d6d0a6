"""One training loop for every method and recipe, readable top to bottom, resumable after a kill.

A run is a list of stages (the paper: lr 0.01 then lr 0.001, each with a fresh SGD optimizer starting
from the previous stage's best checkpoint). After every epoch the whole state (model, optimizer,
scheduler, data order, RNG, history, best checkpoint) is written atomically, so a killed run started
again with the same arguments continues from its last completed epoch and ends bit-identical (on CPU).
"""

from __future__ import annotations

import copy
import math
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from .io import save_torch
from .methods import Method
from .network import CACNet

__all__ = ["Stage", "TrainConfig", "TrainResult", "NonFiniteLossError", "train", "autocast_for"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class Stage:
    """One training stage: ``epochs`` at learning rate ``lr``.

    ``schedule='constant'`` is the paper's; ``'onecycle'`` warms up linearly for ``warmup_fraction`` of
    the steps to ``lr`` and anneals to ~0 with a cosine (``torch.optim.lr_scheduler.OneCycleLR``).
    """

    epochs: int
    lr: float
    schedule: str = "constant"
    warmup_fraction: float = 0.25

    def __post_init__(self) -> None:
        if self.epochs < 1 or not self.lr > 0:
            raise ValueError(f"a stage needs epochs >= 1 and lr > 0, got {self}.")
        if self.schedule not in ("constant", "onecycle"):
            raise ValueError(f"schedule must be 'constant' or 'onecycle', got {self.schedule!r}.")


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer settings shared by the stages (SGD with momentum, as in the reference code).

    Attributes:
        stages: the stages in order.
        weight_decay: L2 penalty of SGD (paper Table 4 / reference code: 5e-6 for MNIST, SVHN, CIFAR10).
        momentum, nesterov: SGD momentum (0.9 in the reference code).
        restart_from_best: start each stage after the first from the previous stage's best checkpoint.
        amp: bfloat16 autocast on CUDA (ignored on CPU, where it is slower).
        compile: wrap the network in ``torch.compile``; falls back to eager with a warning if it fails.
        channels_last: NHWC memory format for 4-d inputs (faster convolutions on CPU and GPU).
        check_every: steps between checks that the loss is finite (each check is one host sync).
    """

    stages: tuple[Stage, ...]
    weight_decay: float = 5e-6
    momentum: float = 0.9
    nesterov: bool = False
    restart_from_best: bool = True
    amp: bool = True
    compile: bool = False
    channels_last: bool = True
    check_every: int = 25

    @property
    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages)


@dataclass
class TrainResult:
    """What training returns: the per-epoch history and where the kept checkpoint came from."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_metric: float = math.nan
    seconds: float = 0.0


def autocast_for(device: torch.device, amp: bool):
    """bfloat16 autocast on CUDA when ``amp``; a no-op context elsewhere."""
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def _is_better(value: float, best: float, mode: str) -> bool:
    if math.isnan(best):
        return True
    return value < best if mode == "min" else value > best


def _make_optimizer(net: torch.nn.Module, stage: Stage, config: TrainConfig, steps: int):
    optimizer = torch.optim.SGD(net.parameters(), lr=stage.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=config.nesterov)
    scheduler = None
    if stage.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=stage.lr, total_steps=steps, pct_start=stage.warmup_fraction,
            anneal_strategy="cos", cycle_momentum=False, div_factor=25.0, final_div_factor=1e3,
        )
    return optimizer, scheduler


def _compiled_or_eager(net: CACNet, sample: torch.Tensor, enabled: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile(net)`` if it works on ``sample``, else the eager network (with a warning)."""
    if not enabled:
        return net
    try:
        compiled = torch.compile(net)
        with torch.no_grad():
            compiled(sample)
        return compiled
    except Exception as err:  # noqa: BLE001 - any backend failure means: run eager
        warnings.warn(f"torch.compile is not usable here ({type(err).__name__}: {err}); training eagerly.",
                      stacklevel=2)
        return net


@torch.inference_mode()
def validate(net: CACNet, forward, method: Method, loader: Iterable, device: torch.device,
             amp: bool, channels_last: bool) -> dict:
    """Validation loss, anchor loss (mean d_y to the training anchors) and accuracy of one pass."""
    net.eval()
    loss_sum = anchor_sum = correct = torch.zeros((), device=device)
    count = 0
    for x, y in loader:
        x = _to_format(x, channels_last)
        with autocast_for(device, amp):
            logits = forward(x)
        logits = logits.float()
        batch = method.batch_loss(logits, net.head(logits), y)
        loss_sum, anchor_sum, correct = loss_sum + batch.loss_sum, anchor_sum + batch.anchor_sum, correct + batch.correct
        count += y.shape[0]
    return {"val_loss": float(loss_sum) / count, "val_anchor_loss": float(anchor_sum) / count,
            "val_accuracy": float(correct) / count}


def _to_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def _loader_state(loader) -> dict | None:
    return loader.state_dict() if hasattr(loader, "state_dict") else None


def train(
    net: CACNet,
    method: Method,
    train_loader: Iterable,
    val_loader: Iterable,
    config: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    state_path: str | Path | None = None,
    progress: bool = True,
    description: str = "",
) -> TrainResult:
    """Train ``net`` with ``method``; on return ``net`` holds the kept (best-validation) weights.

    Args:
        net: the network (moved to ``device`` here); its anchors must be the training anchors.
        method: loss and checkpoint rule (:func:`classanchor.methods.get_method`).
        train_loader, val_loader: iterables of ``(x, y)`` batches already on ``device`` with labels in
            0..K-1 (e.g. :class:`classanchor.data.loader.DeviceLoader`); ``len()`` gives batches per epoch.
            If the train loader has ``state_dict``/``load_state_dict``, its data order is resumable.
        config: stages and optimizer settings.
        state_path: file for the resumable state; if it exists, training continues from it.
        progress: show a progress bar (images/s and ETA) per stage.
    """
    import time

    device = torch.device(device)
    net.to(device)
    if config.channels_last:
        net.to(memory_format=torch.channels_last)
    state_path = Path(state_path) if state_path is not None else None
    state = torch.load(state_path, map_location=device, weights_only=False) if state_path and state_path.exists() else None
    result = TrainResult()
    start_stage, start_epoch = 0, 0
    best_state, best_metric = None, math.nan
    if state is not None:
        net.load_state_dict(state["model"])
        result = TrainResult(**state["result"])
        start_stage, start_epoch = state["stage"], state["epoch"]
        best_state, best_metric = state["best_state"], state["best_metric"]
        if hasattr(train_loader, "load_state_dict") and state["loader"] is not None:
            train_loader.load_state_dict(state["loader"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
    clock = time.perf_counter() - result.seconds
    steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    if steps_per_epoch == 0:
        raise ValueError("the training loader yields no batch (fewer images than one batch with drop_last?); "
                         "add training images or lower the batch size.")
    sample = _to_format(next(iter(val_loader))[0], config.channels_last)
    forward = _compiled_or_eager(net, sample, config.compile)

    for stage_index in range(start_stage, len(config.stages)):
        stage = config.stages[stage_index]
        optimizer, scheduler = _make_optimizer(net, stage, config, stage.epochs * steps_per_epoch)
        if state is not None and stage_index == start_stage and start_epoch > 0:
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
        elif stage_index > 0 and config.restart_from_best and best_state is not None:
            net.load_state_dict(best_state)  # stage 2 restarts from stage 1's best checkpoint
        if stage_index != start_stage or start_epoch == 0:
            best_state, best_metric = None, math.nan  # each stage keeps its own best
        first_epoch = start_epoch if stage_index == start_stage else 0
        bar = tqdm(total=(stage.epochs - first_epoch) * steps_per_epoch, disable=not progress, unit="batch",
                   dynamic_ncols=True, mininterval=1.0,
                   desc=f"{description}{method.name} stage {stage_index + 1}/{len(config.stages)} lr={stage.lr:g}")
        for epoch in range(first_epoch, stage.epochs):
            net.train()
            loss_sum = correct = torch.zeros((), device=device)
            seen = 0
            epoch_start = time.perf_counter()
            for step, (x, y) in enumerate(train_loader):
                x = _to_format(x, config.channels_last)
                with autocast_for(device, config.amp):
                    logits = forward(x)
                logits = logits.float()
                batch = method.batch_loss(logits, net.head(logits), y)
                optimizer.zero_grad(set_to_none=True)
                batch.loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                loss_sum, correct = loss_sum + batch.loss_sum, correct + batch.correct
                seen += y.shape[0]
                bar.update(1)
                if step % config.check_every == 0 and not bool(torch.isfinite(batch.loss)):
                    raise NonFiniteLossError(
                        f"the {method.name} loss became {float(batch.loss)} in stage {stage_index + 1}, epoch "
                        f"{epoch + 1}, step {step}; lower the learning rate (now {stage.lr:g}) or check the input "
                        "data for NaN values. The last completed epoch is kept in the resume state."
                    )
            if not bool(torch.isfinite(loss_sum)):
                raise NonFiniteLossError(
                    f"the {method.name} loss became non-finite during stage {stage_index + 1}, epoch {epoch + 1}; "
                    f"lower the learning rate (now {stage.lr:g}) or check the input data."
                )
            train_seconds = time.perf_counter() - epoch_start
            record = {"stage": stage_index + 1, "epoch": len(result.history) + 1,
                      "lr": optimizer.param_groups[0]["lr"],
                      "train_loss": float(loss_sum) / seen, "train_accuracy": float(correct) / seen,
                      "train_images_per_s": seen / max(train_seconds, 1e-9)}
            record.update(validate(net, forward, method, val_loader, device, config.amp, config.channels_last))
            metric = record[method.checkpoint_metric]
            if _is_better(metric, best_metric, method.checkpoint_mode):
                best_metric, best_state = metric, copy.deepcopy(net.state_dict())
                result.best_epoch, result.best_metric = record["epoch"], metric
            record["seconds"] = time.perf_counter() - clock
            result.history.append(record)
            result.seconds = record["seconds"]
            bar.set_postfix(epoch=f"{epoch + 1}/{stage.epochs}", loss=f"{record['train_loss']:.3f}",
                            val_acc=f"{record['val_accuracy']:.4f}", img_s=f"{record['train_images_per_s']:.0f}")
            if state_path is not None:
                last = epoch + 1 == stage.epochs
                save_torch(state_path, {
                    "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "stage": stage_index + 1 if last else stage_index, "epoch": 0 if last else epoch + 1,
                    "best_state": best_state, "best_metric": best_metric,
                    "result": result.__dict__, "loader": _loader_state(train_loader),
                    "rng_cpu": torch.get_rng_state(),
                    "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                })
        bar.close()
        state = None
    if best_state is not None:
        net.load_state_dict(best_state)
    return result
