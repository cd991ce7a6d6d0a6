"""Data-parallel training of one job across the processes (ranks) that ``torchrun`` starts.

Under ``torchrun --nproc-per-node N -m classanchor benchmark ...`` each training runs on all N ranks in step
and behaves as the single-process run with the same global batch:

- every rank draws the same global batch and trains on its own contiguous slice (:class:`ShardedLoader`);
- DDP averages the gradients of the ranks' mean losses, each weighted by its share of the global batch;
- batch norm uses the global batch's statistics (:func:`data_parallel`; torch's ``SyncBatchNorm`` refuses CPU
  tensors, so two autograd-aware all-reduces per layer compute them, on gloo and NCCL alike);
- only rank 0 writes; the other ranks resume from rank 0's state (which records the number of ranks).

Outside torchrun (no ``WORLD_SIZE`` > 1 in the environment) every function here is a no-op.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import types
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

__all__ = ["ShardedLoader", "data_parallel", "is_main", "launched", "plain_batch_norm", "rank", "session",
           "sum_over_ranks", "world_size"]


def launched() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    """Processes training together: 1 unless a process group of several is initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 outside torchrun): the group's if initialised, else torchrun's ``RANK``."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes (rank 0, or the only process)."""
    return rank() == 0


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[None]:
    """Join torchrun's process group for the block (NCCL on GPU ``LOCAL_RANK``, gloo on CPU), then leave it.
    Joining waits for every rank, so the jobs each rank found unfinished are fixed before any of them writes.
    Outside torchrun, or when a group exists already: nothing."""
    if not launched() or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def sum_over_ranks(*values) -> list[torch.Tensor]:
    """Each value (number or 0-d tensor) summed over the ranks, as float64 0-d tensors (one all-reduce)."""
    device = next((v.device for v in values if isinstance(v, torch.Tensor)), torch.device("cpu"))
    total = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device) for v in values])
    if world_size() > 1:
        dist.all_reduce(total)
    return list(total.unbind())


class ShardedLoader:
    """This rank's part of ``tensor_split(batch, world)`` of every global batch of ``loader`` (a
    :class:`~classanchor.data.loader.DeviceLoader`); ``loss_scale`` is then ``len(y) * world / len(batch)``
    (makes DDP's average of the ranks' mean losses the global batch's mean). Each epoch seeds this rank's
    torch RNG (dropout) from (loader seed, epoch, rank): independent streams, the same on resume."""

    def __init__(self, loader) -> None:
        self.loader, self.rank, self.world, self.loss_scale = loader, rank(), world_size(), 1.0

    def __len__(self) -> int:
        return len(self.loader)

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        seed = np.random.SeedSequence([self.loader.seed, self.loader.epoch, self.rank]).generate_state(1)[0]
        torch.manual_seed(int(seed))
        for x, y in self.loader:
            part = y.tensor_split(self.world)[self.rank]
            self.loss_scale = part.shape[0] * self.world / y.shape[0]
            yield x.tensor_split(self.world)[self.rank], part


class _AllSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of each rank's input is the sum of the ranks' gradients
    (the output is the same on every rank, and every rank's loss depends on it), so backward is forward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    backward = forward


def _global_batch_norm(self: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """Batch norm of ``x`` (B, C, ...) in float32 with the mean and variance of the global batch (all ranks).
    Two passes (mean, then mean squared deviation) as torch's kernel; the running variance is unbiased."""
    if not self.training:
        return type(self).forward(self, x)
    x = x.float()
    shape, dims = (1, -1) + (1,) * (x.ndim - 2), [0, *range(2, x.ndim)]
    stats = _AllSum.apply(torch.cat([x.sum(dims), x.new_tensor([x.numel() / x.shape[1]])]))
    count, mean = stats[-1], stats[:-1] / stats[-1]
    centred = x - mean.view(shape)
    var = _AllSum.apply(centred.square().sum(dims)) / count
    if self.track_running_stats:
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean.detach(), factor)
            self.running_var.lerp_(var.detach() * count / (count - 1).clamp(min=1), factor)
    y = centred * torch.rsqrt(var + self.eps).view(shape)
    return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def data_parallel(net: nn.Module) -> nn.Module:
    """``net`` in ``DistributedDataParallel``, its batch norm layers normalising over the global batch. The
    layers keep their class, parameters and buffers (undo with :func:`plain_batch_norm`). Buffers are not
    broadcast: the global statistics are the same on every rank."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.forward = types.MethodType(_global_batch_norm, module)
    ddp = nn.parallel.DistributedDataParallel
    new_name = "forward_sync_buffers" in inspect.signature(ddp).parameters  # torch >= 2.13 warns on the old one
    no_sync = "forward_sync_buffers" if new_name else "broadcast_buffers"
    on_gpu = next(net.parameters()).device.type == "cuda"
    return ddp(net, device_ids=[torch.cuda.current_device()] if on_gpu else None, **{no_sync: False})


def plain_batch_norm(net: nn.Module) -> None:
    """Undo :func:`data_parallel`'s batch norm change."""
    for module in net.modules():
        module.__dict__.pop("forward", None)
