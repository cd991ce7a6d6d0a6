"""``classanchor train``: fit an open-set model on your own image folder with the one pipeline, and save it.

Steps: read and split the folder (:func:`classanchor.data.folders.load_user_data`), check the backbone, write
the run folder's config, :func:`classanchor.pipeline.fit_open_set` (resumable: ``out/state.pt``), measure the
test split (known test images + every image of the unknown classes) at the threshold, save ``out/model``.
A run folder whose ``metrics.json`` exists is not trained again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .data.folders import load_user_data
from .io import RunFolder, read_json, run_environment, write_json
from .methods import get_method
from .models.registry import build_backbone
from .pipeline import ACCEPT_RATE, backbone_for, fit_open_set, resolve_device
from .predictor import OpenSetPredictor, evaluation_report
from .recipes import Recipe, get_recipe
from .train import PRECISIONS, Stage

__all__ = ["USER_RECIPES", "FolderTrainConfig", "train_on_folder", "user_recipe"]

#: The recipes ``classanchor train`` offers (:func:`user_recipe`); the first is the default.
USER_RECIPES = ("fast", "paper")
MIN_FAST_STEPS = 1000  #: fast recipe's default on a small folder: epochs for this many steps (15-60 epochs)
#: The fast recipe's weight decay on a folder (``--weight-decay`` overrides it): on the CIFAR-10 zip's
#: 2,700-image folder 2e-3, the CIFAR10 benchmark's value, did no better over three seeds
#: (docs/own-images.md).
FOLDER_FAST_WEIGHT_DECAY = 5e-4


@dataclass(frozen=True)
class FolderTrainConfig:
    """What to train on, how long, and where to write.

    Attributes:
        data: the image folder / zip / ``archive.zip/inner/folder`` (one sub-folder per class).
        out: the run folder (config.json, data.json, state.pt, history.json, model/, metrics.json).
        known, unknown: class folder names; known None = every class not in ``unknown``.
        recipe: ``"fast"`` (default) or ``"paper"``, from CIFAR10's recipes (:func:`user_recipe`). epochs,
            lr, weight_decay: None = the recipe's (fast 15-60 epochs by folder size, peak lr 0.05, weight
            decay :data:`FOLDER_FAST_WEIGHT_DECAY`; paper 30, lr 0.01, weight decay 5e-6).
        image_size, channels: every image becomes S x S pixels (classifier32: a multiple of 8) with 1 or 3
            channels (None: 1 if every image is grey).
        backbone, backbone_kwargs: ``models.registry`` name and arguments (None: the recipe's;
            classifier32: dropout 0.2 unless given). accept_rate / threshold: share of known validation
            images accepted, or a fixed threshold.
        val_fraction, test_fraction, max_per_class: per-class shares of each known class for validation and
            the test metrics; at most this many images per class (seeded subset) for quick runs.
        flip: random horizontal flips and mirrored copies in the anchor fit (off for e.g. text).
        batch_size, seed: SGD batch size; seed of split, weights and augmentation.
        device, precision: 'auto', 'cpu', 'cuda', ...; training precision 'auto', 'float32' or 'bf16'.
    """

    data: str
    out: str
    known: tuple[str, ...] | None = None
    unknown: tuple[str, ...] = ()
    recipe: str = "fast"
    epochs: int | None = None
    image_size: int = 32
    channels: int | None = None
    backbone: str | None = None
    backbone_kwargs: dict = field(default_factory=dict)
    accept_rate: float = ACCEPT_RATE
    threshold: float | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    max_per_class: int | None = None
    batch_size: int = 128
    lr: float | None = None
    weight_decay: float | None = None
    flip: bool = True
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.recipe not in USER_RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(USER_RECIPES)}, got {self.recipe!r}.")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}.")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}.")
        if self.weight_decay is not None and not (np.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight decay must be a finite number >= 0 (e.g. 5e-4), got "
                             f"{self.weight_decay}.")
        if not 0 < self.accept_rate <= 1:
            raise ValueError(f"accept_rate must be in (0, 1], got {self.accept_rate}.")
        if self.threshold is not None and not np.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number, got {self.threshold}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        if (self.backbone or get_recipe("CIFAR10", self.recipe).backbone) == "classifier32" and (
                self.image_size % 8 or self.image_size < 8):
            raise ValueError(f"classifier32 needs an image size that is a multiple of 8 (e.g. 32 or 64), got "
                             f"{self.image_size}.")


def user_recipe(name: str = "fast", epochs: int | None = None, image_size: int = 32, batch_size: int = 128,
                lr: float | None = None, flip: bool = True, train_images: int | None = None,
                weight_decay: float | None = None) -> Recipe:
    """The recipe for your own images: CIFAR10's recipe ``name`` (augmentation: RandomResizedCrop scale 0.8-1,
    flip 0.5, rotation 10 degrees) at ``image_size``, without flips when ``flip`` is False. ``fast``
    (default): resnet9 width 32, one one-cycle stage of ``epochs`` (default: 15, or on ``train_images`` images
    enough for :data:`MIN_FAST_STEPS` steps, at most 60) to peak ``lr`` (default 0.05), Nesterov, weight decay
    :data:`FOLDER_FAST_WEIGHT_DECAY` (5e-4), test-time mirror averaging. ``paper``: classifier32 (dropout
    0.2), weight decay 5e-6, ``epochs`` (default 30) instead of 150 + 50: stage 1 = the first
    ``max(1, floor(3/4 epochs))`` at ``lr`` (default 0.01), stage 2 = the rest at ``lr / 10`` from stage 1's
    best checkpoint, anchors also fitted on mirrored images. ``weight_decay`` (None: the recipe's) replaces
    the weight decay of either."""
    base = get_recipe("CIFAR10", name)
    lr = base.stages[0].lr if lr is None else lr
    if weight_decay is None:  # the folder's fast default, not the CIFAR10 benchmark's
        weight_decay = FOLDER_FAST_WEIGHT_DECAY if name == "fast" else base.weight_decay
    if name == "paper":
        epochs = epochs or 30
        first = max(1, (3 * epochs) // 4)
        stages = (Stage(first, lr),) + ((Stage(epochs - first, lr / 10),) if epochs > first else ())
    else:
        least = -(-MIN_FAST_STEPS * batch_size // train_images) if train_images else 0  # ceil division
        epochs = epochs or min(4 * base.total_epochs, max(base.total_epochs, least))
        stages = (replace(base.stages[0], epochs=epochs, lr=lr),)
    return replace(base, dataset="user images", stages=stages, batch_size=batch_size, image_size=image_size,
                   weight_decay=weight_decay,
                   flip_p=base.flip_p if flip else 0.0, flip_anchor_fit=flip and base.flip_anchor_fit,
                   test_time_flip=flip and base.test_time_flip)


def train_on_folder(config: FolderTrainConfig, *, progress: bool = True) -> tuple[OpenSetPredictor, dict]:
    """Fit CAC on an image folder and save the open-set model; returns (OpenSetPredictor, metrics dict of
    ``metrics.json``). Nothing is written before the data and the backbone check out."""
    out = Path(config.out)
    device = resolve_device(config.device)
    if (out / "metrics.json").exists():
        RunFolder.create(out, config)  # raises if the folder holds another config
        return OpenSetPredictor.load(out / "model", device), read_json(out / "metrics.json")
    start = time.perf_counter()
    data = load_user_data(config.data, config.known, config.unknown, image_size=config.image_size,
                          channels=config.channels, val_fraction=config.val_fraction,
                          test_fraction=config.test_fraction, max_per_class=config.max_per_class,
                          seed=config.seed, progress=progress)
    read_seconds = time.perf_counter() - start
    recipe = user_recipe(config.recipe, config.epochs, config.image_size, config.batch_size, config.lr,
                         config.flip, len(data.train), config.weight_decay)
    backbone, backbone_kwargs = backbone_for(recipe, config.backbone, config.backbone_kwargs)
    # a wrong backbone or argument fails before anything is written
    build_backbone(backbone, len(data.known_names), data.channels, config.image_size, **backbone_kwargs)
    folder = RunFolder.create(out, config)
    write_json(folder.file("data.json"), data.summary())
    fitted = fit_open_set(data.train, data.val, recipe, get_method("cac"), class_names=data.known_names,
                          backbone=backbone, backbone_kwargs=backbone_kwargs, device=device,
                          seed=config.seed, precision=config.precision, state_path=folder.path / "state.pt",
                          accept_rate=config.accept_rate, threshold=config.threshold, eval_batch_size=512,
                          progress=progress)
    model = fitted.model
    start = time.perf_counter()
    val_best, _ = model.decide(fitted.val_logits)
    metrics: dict = {"known_names": list(data.known_names), "unknown_names": list(data.unknown_names),
                     "n_train": len(data.train), "n_val": len(data.val),
                     "val_accuracy": float((val_best == fitted.val_labels).float().mean()),
                     "threshold": model.threshold, "calibration": model.calibration}
    test_images = np.concatenate([data.test_known.images, data.test_unknown.images])
    test_labels = np.concatenate([data.test_known.labels, data.test_unknown.labels])
    if len(test_labels):
        best, scores = model.decide(model.logits(test_images, device=device, batch_size=512))
        unknown_class = np.concatenate([np.zeros(len(data.test_known), np.int64), data.unknown_class])
        metrics["test"] = evaluation_report(scores.numpy(), best.numpy(), test_labels, model.threshold,
                                            data.known_names, unknown_class, data.unknown_names)
    metrics.update(best_epoch=fitted.history.best_epoch, epochs=recipe.total_epochs,
                   train_seconds=fitted.seconds["train"], read_seconds=read_seconds,
                   eval_seconds=fitted.seconds["fit"] + time.perf_counter() - start,
                   skipped_files=len(data.skipped), converted=data.converted,
                   **run_environment(device, fitted.precision))
    model.save(folder.path / "model", {"training": config, "recipe": recipe, "data": {
        k: v for k, v in data.summary().items() if k != "skipped"}, "metrics": metrics})
    write_json(folder.file("history.json"), fitted.history.history)
    write_json(folder.file("metrics.json"), metrics)
    return OpenSetPredictor.from_model(model, device), metrics
