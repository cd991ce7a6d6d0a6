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

from .data.augment import AugmentSpec, compute_mean_std
from .data.loader import DeviceLoader
from .evaluate import Logits, collect_logits, evaluate_logits
from .io import RunFolder, write_json, write_text
from .methods import get_method
from .models.small_cnn import SmallCNN
from .network import CACNet
from .train import Stage, TrainConfig, train

__all__ = ["DemoConfig", "run_demo", "format_table"]

SCORE_NAMES = {"cac": "min rejection score (Eq. 11)", "ce": "max softmax probability"}


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
    lookup = np.full(10, -1)
    lookup[known] = np.arange(n_known)
    labels = lookup[digits]
    order = rng.permutation(len(digits))
    n_test = len(digits) // 3
    test, rest = order[:n_test], order[n_test:]
    rest = rest[labels[rest] >= 0]
    n_val = len(rest) // 5
    return images, digits, labels, known, {"train": rest[n_val:], "val": rest[:n_val], "test": test}


def run_split(config: DemoConfig, split: int, method_name: str) -> dict:
    """Train one method on one split and return its accuracy and AUROC."""
    images, digits, labels, known, index = digits_open_set_split(config.seed + split, config.known_classes)
    mean, std = compute_mean_std(images[index["train"]])
    spec = AugmentSpec(size=8, scale_min=1.0, mean=mean, std=std)  # no augmentation on 8x8 digits

    def loader(part: str, train_mode: bool) -> DeviceLoader:
        return DeviceLoader(images[index[part]], labels[index[part]], config.batch_size if train_mode else 512,
                            spec, train=train_mode, seed=config.seed + split, channels_last=False)

    torch.manual_seed(config.seed + split)  # the same initial weights for both methods
    net = CACNet(SmallCNN(config.known_classes), config.known_classes)
    train_config = TrainConfig(stages=(Stage(config.epochs, config.lr, schedule="onecycle"),),
                               weight_decay=config.weight_decay, channels_last=False)
    train(net, get_method(method_name), loader("train", True), loader("val", False), train_config, progress=False)
    train_logits, train_labels = collect_logits(net, loader("train", False), device="cpu", channels_last=False)
    test_logits, test_labels = collect_logits(net, loader("test", False), device="cpu", channels_last=False)
    logits = Logits(train_logits, train_labels, test_logits, test_labels, torch.from_numpy(digits[index["test"]]))
    result = evaluate_logits(logits, method_name)
    return {"split": split, "method": method_name, "known_digits": known.tolist(),
            "accuracy": result["accuracy"], "auroc": result["auroc"]}


def format_table(results: list[dict]) -> str:
    """A Markdown table: method, score, closed-set accuracy and AUROC as mean ± std over splits."""
    lines = ["| method | open-set score | closed-set accuracy | AUROC |", "|---|---|---|---|"]
    for method in ("cac", "ce"):
        rows = [r for r in results if r["method"] == method]
        acc = np.array([r["accuracy"] for r in rows])
        auc = np.array([r["auroc"] for r in rows])
        label = "CAC" if method == "cac" else "cross-entropy"
        lines.append(f"| {label} | {SCORE_NAMES[method]} | {acc.mean():.4f} ± {acc.std():.4f} "
                     f"| {auc.mean():.4f} ± {auc.std():.4f} |")
    return "\n".join(lines)


def run_demo(config: DemoConfig = DemoConfig(), progress: bool = True) -> tuple[list[dict], str]:
    """Run every (split, method) pair, write the run folder, and return the results and the table."""
    if config.splits < 1:
        raise ValueError(f"the demo needs at least one split, got {config.splits}.")
    folder = RunFolder.create(Path(config.out), config)
    start = time.perf_counter()
    jobs = [(split, method) for split in range(config.splits) for method in ("cac", "ce")]
    results = []
    for split, method in tqdm(jobs, desc="demo: train + evaluate", unit="run", disable=not progress):
        results.append(run_split(config, split, method))
    table = format_table(results)
    summary = (f"Open-set digits (scikit-learn 8x8): {config.known_classes} known / {10 - config.known_classes} "
               f"unknown digits, {config.splits} random splits, mean ± std.\n\n{table}\n\n"
               f"Wall time: {time.perf_counter() - start:.1f} s on {torch.get_num_threads()} CPU threads.\n")
    write_json(folder.file("results.json"), results)
    write_text(folder.file("results.md"), summary)
    return results, summary
