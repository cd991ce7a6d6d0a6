"""The embedded demo: CAC against cross-entropy on scikit-learn's 8x8 digits as an open-set task.

Per random split, 6 digits are known and 4 unknown; a third of all images is the test set, the rest of
the known images is split 80/20 into train/validation. The same small CNN is trained from the same
initialisation once with CAC (scored by the min rejection score, Eq. 11) and once with cross-entropy
(scored by the maximum softmax probability). Runs in well under two minutes on two CPU cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from tqdm.auto import tqdm

from .data.imageset import ImageSet
from .data.splits import relabel
from .evaluate import SCORE_LABELS, aggregate_reports
from .io import RunFolder, write_json, write_text
from .methods import get_method
from .pipeline import fit_open_set
from .recipes import Recipe
from .train import Stage

__all__ = ["DemoConfig", "run_demo", "format_table"]


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo; the defaults are what ``classanchor demo`` runs."""

    splits: int = 5
    known_classes: int = 6
    epochs: int = 30
    lr: float = 0.05
    batch_size: int = 64
    weight_decay: float = 5e-4
    seed: int = 0
    out: str = "runs/demo"


def digits_open_set_split(seed: int, n_known: int):
    """uint8 images (N, 8, 8), original digits (N,), and the split of one trial (vectorised)."""
    images, digits = load_digits(return_X_y=True)
    images = np.rint(images.reshape(-1, 8, 8) * (255 / 16)).astype(np.uint8)
    rng = np.random.default_rng(seed)
    known = np.sort(rng.permutation(10)[:n_known])
    labels = relabel(digits, known)  # 0..K-1 known, -1 unknown
    order = rng.permutation(len(digits))
    n_test = len(digits) // 3
    test, rest = order[:n_test], order[n_test:]
    rest = rest[labels[rest] >= 0]
    n_val = len(rest) // 5
    return images, digits, labels, known, {"train": rest[n_val:], "val": rest[:n_val], "test": test}


def run_split(config: DemoConfig, split: int, method_name: str) -> dict:
    """Fit one method on one split (:func:`classanchor.pipeline.fit_open_set`); returns its accuracy and AUROC."""
    images, digits, labels, known, index = digits_open_set_split(config.seed + split, config.known_classes)
    names = tuple(str(d) for d in known)
    train, val, test = (ImageSet(images[index[part], :, :, None], labels[index[part]], names)
                        for part in ("train", "val", "test"))
    # one one-cycle stage, no augmentation (8 x 8 digits), no dropout
    recipe = Recipe("digits", "demo", (Stage(config.epochs, config.lr, schedule="onecycle"),), config.batch_size,
                    config.weight_decay, image_size=8, scale_min=1.0, flip_p=0.0, rotation_deg=0.0, dropout=0.0,
                    flip_anchor_fit=False)
    fitted = fit_open_set(train, val, recipe, get_method(method_name),
                          backbone="small_cnn", device="cpu", seed=config.seed + split, precision="float32",
                          channels_last=False, eval_batch_size=512, progress=False)
    _, report = fitted.model.evaluate(test.images, test.labels, device="cpu", batch_size=512)
    return {"split": split, "method": method_name, "known_digits": known.tolist(),
            **{key: report[key] for key in ("accuracy", "auroc", "unknown_recall", "known_acceptance")}}


def format_table(results: list[dict]) -> str:
    """A Markdown table: method, score, closed-set accuracy and AUROC as mean ± std over splits."""
    lines = ["| method | open-set score | closed-set accuracy | AUROC |", "|---|---|---|---|"]
    for method, label in (("cac", "CAC"), ("ce", "cross-entropy")):
        stats = aggregate_reports([r for r in results if r["method"] == method], ("accuracy", "auroc"))
        cells = [f"{stats[key]['mean']:.4f} ± {stats[key]['std']:.4f}" for key in ("accuracy", "auroc")]
        lines.append(f"| {label} | {SCORE_LABELS[get_method(method).detector]} | {' | '.join(cells)} |")
    return "\n".join(lines)


def run_demo(config: DemoConfig = DemoConfig(), progress: bool = True) -> tuple[list[dict], str]:
    """Run every (split, method) pair, write the run folder, and return the results and the table."""
    if config.splits < 1:
        raise ValueError(f"the demo needs at least one split, got {config.splits}.")
    folder = RunFolder.create(Path(config.out), config)
    start = time.perf_counter()
    jobs = tqdm([(split, method) for split in range(config.splits) for method in ("cac", "ce")],
                desc="demo: train + evaluate", unit="run", disable=not progress)
    results = [run_split(config, split, method) for split, method in jobs]
    summary = (f"Open-set digits (scikit-learn 8x8): {config.known_classes} known / {10 - config.known_classes} "
               f"unknown digits, {config.splits} random splits, mean ± std.\n\n{format_table(results)}\n\n"
               f"Wall time: {time.perf_counter() - start:.1f} s on {torch.get_num_threads()} CPU threads.\n")
    write_json(folder.file("results.json"), results)
    write_text(folder.file("results.md"), summary)
    return results, summary
