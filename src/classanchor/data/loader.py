"""A data loader whose whole split lives on the device as uint8; batches are augmented with tensor ops.

No worker processes, no per-sample Python: per batch one index gather, one batched augmentation (train) or
resize + normalise (eval), one label gather. Example::

    >>> import numpy as np, torch
    >>> from classanchor.data.augment import AugmentSpec
    >>> images = np.zeros((10, 28, 28), dtype=np.uint8); labels = np.arange(10) % 3
    >>> loader = DeviceLoader(images, labels, 4, AugmentSpec(32, 0.7), train=True, device="cpu", seed=0)
    >>> [tuple(x.shape) for x, y in loader]
    [(4, 1, 32, 32), (4, 1, 32, 32), (2, 1, 32, 32)]
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from classanchor.data.augment import AugmentSpec, augment_batch, eval_transform, to_nchw

__all__ = ["DeviceLoader"]


def _epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for (seed, epoch), so each epoch's stream is independent of the others."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint64)[0] >> 1)


class DeviceLoader:
    """Iterate (x, y) batches of a split held on ``device``. images_uint8: uint8 (N, H, W), (N, C, H, W) or
    (N, H, W, C) (layout as in :func:`to_nchw`), stored once as contiguous NCHW; labels: (N,) integers,
    already 0..K-1 (or -1 unknown), stored as int64. Yields x: float32 (B, C, S, S), normalised (channels-last
    memory if ``channels_last``), y: int64 (B,). ``train=True``: a new permutation per epoch and random
    augmentation; ``train=False``: in order, ``eval_transform``. Each ``iter()`` starts the next epoch e,
    drawn from a generator (on ``device``) seeded by (seed, e) alone; ``state_dict()`` / ``load_state_dict()``
    save and restore (epoch, seed), so a resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, images_uint8, labels, batch_size: int, spec: AugmentSpec, train: bool,
                 device: torch.device | str = "cpu", seed: int = 0, drop_last: bool = False,
                 channels_last: bool = True, layout: str | None = None):
        images = torch.as_tensor(images_uint8)
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8, got {images.dtype}")
        labels = torch.as_tensor(labels)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.ndim != 1:
            raise TypeError(f"labels must be a 1-D integer array, got {labels.dtype} of shape "
                            f"{tuple(labels.shape)}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.images = to_nchw(images, layout).to(self.device).contiguous()  # (N, C, H, W) uint8
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size, self.spec, self.train = int(batch_size), spec, bool(train)
        self.seed, self.drop_last, self.channels_last = int(seed), bool(drop_last), bool(channels_last)
        self.epoch = 0  # index of the next epoch that iter() starts

    @property
    def num_samples(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        """Number of batches per epoch."""
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def state_dict(self) -> dict:
        """{'epoch': next epoch index, 'seed': seed}: enough to reproduce every later batch."""
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.seed = int(state["epoch"]), int(state["seed"])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        self.epoch += 1
        return self._batches(self.epoch - 1)

    def _batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        n, b = self.num_samples, self.batch_size
        if self.train:  # one generator per epoch: concurrent iterators stay independent
            gen = torch.Generator(device=self.device).manual_seed(_epoch_seed(self.seed, epoch))
            order = torch.randperm(n, generator=gen, device=self.device)
        for k in range(len(self)):
            start, stop = k * b, min((k + 1) * b, n)
            if self.train:
                idx = order[start:stop]
                x = augment_batch(self.images.index_select(0, idx), self.spec, gen, layout="NCHW")
                y = self.labels.index_select(0, idx)
            else:
                x = eval_transform(self.images[start:stop], self.spec, layout="NCHW")
                y = self.labels[start:stop]
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y
