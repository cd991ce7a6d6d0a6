"""One training loop for every method and recipe, readable top to bottom, resumable after a kill.

A run is a list of stages (the paper: lr 0.01 then lr 0.001, each with a fresh SGD optimizer starting
from the previous stage's best checkpoint). After every epoch the whole state (model, optimizer,
scheduler, data order, RNG, history, best checkpoint) is written atomically, so a killed run started
again with the same arguments continues from its last completed epoch and ends bit-identical (on CPU).
"""

from __future__ import annotations

import copy
import functools
import math
import pickle
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed
from .io import save_torch
from .methods import BatchLoss, Method
from .network import CACNet

__all__ = ["NonFiniteLossError", "Stage", "TrainConfig", "TrainResult", "autocast_for", "resolve_precision",
           "PRECISIONS", "bf16_is_fast", "prepare_network", "to_memory_format", "train", "train_step",
           "use_channels_last", "weight_average"]

#: Device types where channels-last (NHWC) is the default: faster on CPU (docs/speed.md), usual on CUDA.
CHANNELS_LAST_DEVICES: frozenset[str] = frozenset({"cuda", "cpu"})
#: bfloat16 autocast on CPUs with AMX units (:func:`bf16_is_fast`): 2.2-3.3x faster than float32 there, with
#: AUROC within 3e-5 (docs/speed.md).
CPU_BF16_AUTOCAST = True
#: Names accepted by ``--precision`` and :attr:`TrainConfig.precision`.
PRECISIONS = ("auto", "float32", "bf16")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class Stage:
    """One training stage: ``epochs`` at learning rate ``lr``. ``schedule='constant'`` is the paper's;
    ``'onecycle'`` warms up linearly for ``warmup_fraction`` of the steps to ``lr`` and anneals to ~0 with a
    cosine (``torch.optim.lr_scheduler.OneCycleLR``)."""

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
        weight_decay: L2 penalty of SGD (paper Table 4 / reference code: 5e-6 for MNIST, SVHN, CIFAR10).
        momentum, nesterov: SGD momentum (0.9 in the reference code).
        restart_from_best: start each stage after the first from the previous stage's best checkpoint.
        precision: ``"auto"`` (bfloat16 autocast where :func:`bf16_is_fast`: CUDA and CPUs with AMX units),
            ``"float32"`` or ``"bf16"`` (forced; see :func:`resolve_precision`).
        compile: wrap the network in ``torch.compile``; falls back to eager with a warning if it fails.
        channels_last: NHWC memory format for the network and 4-d inputs; ``None`` (default) picks the
            faster format per device (:func:`use_channels_last`: on for CUDA and CPU, as measured).
        check_every: steps between checks that the loss is finite (each check is one host sync).
        ema_decay: 0 (default) trains as the paper does. Otherwise an exponential moving average of the
            weights and BatchNorm statistics, ``w_ema <- d w_ema + (1 - d) w`` after every optimizer step with
            ``d = ema_decay`` (:func:`weight_average`), is what is validated, kept by the checkpoint rule,
            passed to ``on_epoch_end`` and returned; each stage starts its own average.
    """

    stages: tuple[Stage, ...]
    weight_decay: float = 5e-6
    momentum: float = 0.9
    nesterov: bool = False
    restart_from_best: bool = True
    precision: str = "auto"
    compile: bool = False
    channels_last: bool | None = None
    check_every: int = 25
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0: no weight averaging), got {self.ema_decay}.")


@dataclass
class TrainResult:
    """What training returns: the per-epoch history and where the kept checkpoint came from."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_metric: float = math.nan
    seconds: float = 0.0


@functools.cache
def _cpu_has_amx_bf16() -> bool:
    """Whether this CPU has AMX tile units (bf16 matrix multiply in hardware: Intel Xeon 4th gen and later)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())  # private in torch 2.x
    except Exception:  # noqa: BLE001 - an absent or failing probe means: do not rely on AMX
        return False


def bf16_is_fast(device: torch.device | str) -> bool:
    """Whether bfloat16 autocast speeds training up on ``device``: CUDA, and CPUs with AMX bf16 units when
    ``CPU_BF16_AUTOCAST`` (measured in docs/speed.md); elsewhere float32 is as fast or faster."""
    device = torch.device(device)
    return device.type == "cuda" or (device.type == "cpu" and CPU_BF16_AUTOCAST and _cpu_has_amx_bf16())


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"auto"`` -> ``"bf16"`` where :func:`bf16_is_fast` on ``device``, else ``"float32"``; the others as given.
    result.json records the resolved name, so runs before and after a change of the rule can be told apart."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    return ("bf16" if bf16_is_fast(device) else "float32") if precision == "auto" else precision


def autocast_for(device: torch.device | str, amp: bool):
    """bfloat16 autocast on ``device`` when ``amp`` (:func:`resolve_precision` gave ``"bf16"``), else none."""
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16) if amp else nullcontext()


def use_channels_last(channels_last: bool | None, device: torch.device | str) -> bool:
    """Resolve ``TrainConfig.channels_last``: an explicit bool wins; ``None`` means on for the device types in
    ``CHANNELS_LAST_DEVICES`` (CUDA and CPU, measured in docs/speed.md), off elsewhere (e.g. MPS)."""
    return torch.device(device).type in CHANNELS_LAST_DEVICES if channels_last is None else bool(channels_last)


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A 4-d batch in NHWC (``channels_last``) or plain contiguous NCHW memory; other ranks unchanged. Copies
    only when the layout differs, so a loader that already yields the right format costs nothing."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=memory_format) if x.ndim == 4 else x


def _make_optimizer(net: torch.nn.Module, stage: Stage, config: TrainConfig, steps: int):
    optimizer = torch.optim.SGD(net.parameters(), lr=stage.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=config.nesterov)
    if stage.schedule != "onecycle":
        return optimizer, None
    return optimizer, torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=stage.lr, total_steps=steps, pct_start=stage.warmup_fraction, anneal_strategy="cos",
        cycle_momentum=False, div_factor=25.0, final_div_factor=1e3)


def _compiled_or_eager(net: CACNet, sample: torch.Tensor, enabled: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile(net)`` if a forward and backward pass works on ``sample``, else (no C++ compiler, ...)
    the eager network, with a warning. The trial pass is undone (weights, BatchNorm statistics, gradients and
    the CPU RNG state are restored), so enabling ``compile`` changes nothing but speed."""
    if not enabled:
        return net
    saved = {k: v.detach().clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    was_training = net.training
    try:
        compiled = torch.compile(net, dynamic=True)  # one graph for every batch size (train, eval, last)
        net.train()
        compiled(sample[:2]).float().sum().backward()  # compiles the training graph (forward + backward)
        net.eval()
        with torch.no_grad():
            compiled(sample)  # and the evaluation graph
        return compiled
    except Exception as err:  # noqa: BLE001 - any backend failure means: run eager
        warnings.warn(f"torch.compile is not usable here ({type(err).__name__}: {err}); training eagerly.",
                      stacklevel=3)
        return net
    finally:
        net.load_state_dict(saved)
        net.zero_grad(set_to_none=True)
        torch.set_rng_state(rng)
        net.train(was_training)


def prepare_network(net: CACNet, config: TrainConfig, device: torch.device | str, sample: torch.Tensor,
                    wrap: Callable[[CACNet], torch.nn.Module] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Move ``net`` to ``device`` in the configured memory format; returns the forward function to call
    (``torch.compile(net)`` when ``config.compile`` and it works on ``sample``, else ``net`` itself), of
    ``wrap(net)`` when given (e.g. :func:`classanchor.distributed.data_parallel`)."""
    channels_last = use_channels_last(config.channels_last, device)
    net.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return _compiled_or_eager(net if wrap is None else wrap(net), to_memory_format(sample, channels_last),
                              config.compile)


def weight_average(net: CACNet, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``net``'s weights and buffers (BatchNorm running statistics), or
    ``None`` when ``decay`` is 0. ``torch.optim.swa_utils.AveragedModel`` keeps the copy: its first
    ``update_parameters(net)`` copies ``net``, each later one sets ``w_ema <- decay * w_ema + (1 - decay) * w``
    (``get_ema_multi_avg_fn``, one fused ``_foreach_lerp_`` per device and dtype). The copy has plain batch
    norm (:func:`classanchor.distributed.plain_batch_norm`) and is run eagerly, never compiled."""
    if not decay:
        return None
    swa_utils = torch.optim.swa_utils
    averaged = swa_utils.AveragedModel(net, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)
    distributed.plain_batch_norm(averaged.module)
    return averaged


def _batch_loss(net: CACNet, forward, method: Method, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                amp: bool, channels_last: bool) -> BatchLoss:
    """The forward pass (float32 logits, autocast when ``amp``) and the method's loss of one batch."""
    x = to_memory_format(x, channels_last)
    with autocast_for(device, amp):
        logits = forward(x)
    logits = logits.float()
    return method.batch_loss(logits, net.head(logits), y)


def train_step(net: CACNet, forward: Callable[[torch.Tensor], torch.Tensor], method: Method,
               optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, *, device: torch.device,
               amp: bool, channels_last: bool, scheduler=None, loss_scale: float = 1.0) -> BatchLoss:
    """One optimisation step on a batch x (B, C, H, W), y (B,) already on ``device``; returns the
    :class:`~classanchor.methods.BatchLoss` (tensors on the device: no host sync here). The mean loss is
    back-propagated times ``loss_scale`` (:class:`classanchor.distributed.ShardedLoader`: a rank's share)."""
    batch = _batch_loss(net, forward, method, x, y, device, amp, channels_last)
    optimizer.zero_grad(set_to_none=True)
    (batch.loss * loss_scale if loss_scale != 1.0 else batch.loss).backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return batch


@torch.inference_mode()
def validate(net: CACNet, forward, method: Method, loader: Iterable, device: torch.device,
             amp: bool, channels_last: bool) -> dict:
    """Validation loss, anchor loss (mean d_y to the training anchors) and accuracy of one pass."""
    net.eval()
    loss_sum = anchor_sum = correct = torch.zeros((), device=device)
    count = 0
    for x, y in loader:
        batch = _batch_loss(net, forward, method, x, y, device, amp, channels_last)
        loss_sum, anchor_sum, correct = loss_sum + batch.loss_sum, anchor_sum + batch.anchor_sum, correct + batch.correct
        count += y.shape[0]
    return {"val_loss": float(loss_sum) / count, "val_anchor_loss": float(anchor_sum) / count,
            "val_accuracy": float(correct) / count}


def _load_state(path: Path, device: torch.device) -> dict:
    """The resume state at ``path``, read with ``weights_only=True``: tensors, numbers, strings and containers
    only, so a crafted state.pt in a shared or downloaded run folder cannot run code. It must have been written
    by as many processes as train now (a torchrun run resumes with the same ``--nproc-per-node``)."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle.UnpicklingError, RuntimeError (zip), EOFError, ...
        first = str(err).splitlines()[0].split(". ")[0][:200] if str(err) else ""
        why = ("truncated, corrupt, or holding objects other than tensors and numbers, which are never loaded"
               if isinstance(err, pickle.UnpicklingError) else f"{type(err).__name__}: {first}")
        raise ValueError(f"{path} is not a readable classanchor resume state ({why}); delete it to train this job "
                         "from the start.") from None
    if not isinstance(state, dict) or not {"model", "stage", "epoch", "result"} <= set(state):
        raise ValueError(f"{path} is not a classanchor resume state; delete it to train this job from the start.")
    written, now = state.get("world_size", 1), distributed.world_size()
    if written != now:
        raise ValueError(f"{path} was written by a run on {written} process(es), this one has {now}; resume with "
                         f"torchrun --nproc-per-node {written} (1: without torchrun), or delete it to train this job "
                         "from the start.")
    return state


def _check_same_averaging(state: dict, path: Path, config: TrainConfig) -> None:
    """A resume state's weight averaging (``ema_decay``; 0 for states written before it existed) must be this
    run's: the average cannot be made up for the epochs already trained, nor silently dropped."""
    written = state.get("ema_decay", 0.0)
    if written != config.ema_decay:
        raise ValueError(f"{path} was written with ema_decay={written:g}, this run has ema_decay={config.ema_decay:g}; "
                         "resume with the same weight averaging, or delete it to train this job from the start.")


def _check_finite(loss: torch.Tensor, method: Method, stage_index: int, stage: Stage, epoch: int,
                  where: str) -> None:
    """Raise :class:`NonFiniteLossError` if ``loss`` is NaN or infinite (one host sync)."""
    if not bool(torch.isfinite(loss)):
        raise NonFiniteLossError(
            f"the {method.name} loss became {float(loss)} in stage {stage_index + 1}, epoch {epoch + 1}{where}; "
            f"lower the learning rate (now {stage.lr:g}) or check the input data for NaN values. The last "
            "completed epoch is kept in the resume state.")


def train(net: CACNet, method: Method, train_loader: Iterable, val_loader: Iterable, config: TrainConfig, *,
          device: torch.device | str = "cpu", state_path: str | Path | None = None, progress: bool = True,
          description: str = "", on_epoch_end: Callable[[CACNet, dict], None] | None = None) -> TrainResult:
    """Train ``net`` with ``method``; on return ``net`` holds the kept (best-validation) weights, their moving
    average when ``config.ema_decay`` is set.

    Args:
        net: the network (moved to ``device`` here); its anchors must be the training anchors.
        train_loader, val_loader: iterables of ``(x, y)`` batches already on ``device`` with labels in
            0..K-1 (e.g. :class:`classanchor.data.loader.DeviceLoader`); ``len()`` gives batches per epoch.
            If the train loader has ``state_dict``/``load_state_dict``, its data order is resumable.
            Under torchrun each rank trains on its slice of every batch (:mod:`classanchor.distributed`).
        state_path: file for the resumable state; if it exists, training continues from it (rank 0 writes it).
        on_epoch_end: called as ``on_epoch_end(net, record)`` after each epoch's validation, with the weights
            of that epoch (the averaged network when ``config.ema_decay`` is set) and its history record
            (e.g. to save a snapshot per epoch; must not change the network).
    """
    device = torch.device(device)
    net.to(device)
    channels_last = use_channels_last(config.channels_last, device)
    amp = resolve_precision(config.precision, device) == "bf16"
    parallel = distributed.world_size() > 1
    if parallel:
        train_loader = distributed.ShardedLoader(train_loader)
    state_path = Path(state_path) if state_path is not None else None
    state = _load_state(state_path, device) if state_path and state_path.exists() else None
    if state is not None:
        _check_same_averaging(state, state_path, config)
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
    forward = prepare_network(net, config, device, next(iter(val_loader))[0],
                              wrap=distributed.data_parallel if parallel else None)

    for stage_index in range(start_stage, len(config.stages)):
        stage = config.stages[stage_index]
        optimizer, scheduler = _make_optimizer(net, stage, config, stage.epochs * steps_per_epoch)
        mid_stage = state is not None and stage_index == start_stage and start_epoch > 0  # resuming inside it
        if mid_stage:
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
                if scheduler.total_steps != stage.epochs * steps_per_epoch:  # not this run's schedule
                    raise ValueError(f"{state_path} holds a {scheduler.total_steps}-step one-cycle schedule, this run's "
                                     f"stage {stage_index + 1} has {stage.epochs * steps_per_epoch} steps (other epochs "
                                     "or batch size); resume with the same settings, or delete it to start afresh.")
        elif stage_index > 0 and config.restart_from_best and best_state is not None:
            net.load_state_dict(best_state)  # stage 2 restarts from stage 1's best checkpoint
        if stage_index != start_stage or start_epoch == 0:
            best_state, best_metric = None, math.nan  # each stage keeps its own best
        averaged = weight_average(net, config.ema_decay)  # None without weight averaging
        if averaged is not None and mid_stage:
            averaged.load_state_dict(state["averaged"])
        # what is validated, kept and returned, and the function that runs it (the average runs eagerly)
        evaluated, evaluated_forward = (net, forward) if averaged is None else (averaged.module, averaged.module)
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
                lr = optimizer.param_groups[0]["lr"]  # the rate this step uses (a Python float: no sync)
                batch = train_step(net, forward, method, optimizer, x, y, device=device, amp=amp,
                                   channels_last=channels_last, scheduler=scheduler,
                                   loss_scale=train_loader.loss_scale if parallel else 1.0)
                if averaged is not None:
                    averaged.update_parameters(net)
                loss_sum, correct = loss_sum + batch.loss_sum, correct + batch.correct
                seen += y.shape[0]
                bar.update(1)
                if step % config.check_every == 0:
                    _check_finite(batch.loss, method, stage_index, stage, epoch, f", step {step}")
            _check_finite(loss_sum, method, stage_index, stage, epoch, "")
            if parallel:  # the epoch's sums over every rank's shard
                loss_sum, correct, seen = distributed.sum_over_ranks(loss_sum, correct, seen)
                seen = int(seen)
            train_seconds = time.perf_counter() - epoch_start
            record = {"stage": stage_index + 1, "epoch": len(result.history) + 1, "lr": lr,  # of the last step
                      "train_loss": float(loss_sum) / seen, "train_accuracy": float(correct) / seen,
                      "train_images_per_s": seen / max(train_seconds, 1e-9)}
            record.update(validate(evaluated, evaluated_forward, method, val_loader, device, amp, channels_last))
            metric = record[method.checkpoint_metric]
            better = metric < best_metric if method.checkpoint_mode == "min" else metric > best_metric
            if better or math.isnan(best_metric):
                best_metric, best_state = metric, copy.deepcopy(evaluated.state_dict())
                result.best_epoch, result.best_metric = record["epoch"], metric
            record["seconds"] = time.perf_counter() - clock
            result.history.append(record)
            result.seconds = record["seconds"]
            if on_epoch_end is not None:
                on_epoch_end(evaluated, record)
            bar.set_postfix(epoch=f"{epoch + 1}/{stage.epochs}", loss=f"{record['train_loss']:.3f}",
                            val_acc=f"{record['val_accuracy']:.4f}", img_s=f"{record['train_images_per_s']:.0f}")
            if state_path is not None and distributed.is_main():
                last = epoch + 1 == stage.epochs
                save_torch(state_path, {
                    "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "averaged": averaged.state_dict() if averaged is not None else None,
                    "ema_decay": config.ema_decay,
                    "stage": stage_index + 1 if last else stage_index, "epoch": 0 if last else epoch + 1,
                    "best_state": best_state, "best_metric": best_metric, "result": result.__dict__,
                    "loader": train_loader.state_dict() if hasattr(train_loader, "state_dict") else None,
                    "rng_cpu": torch.get_rng_state(),
                    "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    "world_size": distributed.world_size(),
                })
        bar.close()
        state = None
    if best_state is not None:
        net.load_state_dict(best_state)
    distributed.plain_batch_norm(net)
    return result
