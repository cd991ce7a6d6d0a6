"""The paper's open-set benchmark: one trial and method at a time, resumable, written to a run folder.

Run folder layout (``out/``)::

    config.json                        the BenchmarkConfig, library version, git commit
    trial{t}/{job}/state.pt            resumable training state (kept after the job)
    trial{t}/{job}/history.json        per-epoch training history
    trial{t}/{job}/model.pt            the kept (best-validation) weights with the re-fitted anchors
    trial{t}/{job}/model/              CAC jobs: the open-set model for ``classanchor predict`` (threshold
                                       keeping 95 % of the known validation images)
    trial{t}/{job}/logits.npz          train / val / test logits (every score is computed from these)
    trial{t}/{job}/result.json         accuracy, AUROC, timing; its presence means "done"
    results.json, table.md             all finished jobs and the Markdown table with published numbers

A job is a method with its hyperparameters (e.g. ``cac``, ``ce``, ``cac_a5_l0.8``). A job whose
``result.json`` exists is never trained again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data.augment import AugmentSpec, compute_mean_std
from .data.loader import DeviceLoader
from .data.splits import OpenSetData, build_trial, get_benchmark, get_trial
from .evaluate import Logits, collect_logits, evaluate_logits
from .heads import anchor_distances
from .io import RunFolder, read_json, save_torch, write_json, write_text
from .methods import Method, get_method
from .metrics import calibrate_threshold
from .model_io import save_open_set_model
from .models.registry import build_backbone
from .network import CACNet
from .recipes import Recipe, get_recipe
from .scores import cac_decision
from .train import train

__all__ = ["BenchmarkConfig", "PUBLISHED", "job_name", "run_job", "run_benchmark", "format_benchmark_table",
           "resolve_device", "parse_trials"]

#: Published numbers (paper Tables 2 and 3): dataset -> method -> (closed-set accuracy, AUROC).
PUBLISHED: dict[str, dict[str, tuple[float | None, float]]] = {
    "MNIST": {"cac": (0.998, 0.985), "ce": (0.997, 0.978), "openmax": (None, 0.981)},
    "SVHN": {"cac": (0.970, 0.938), "ce": (0.963, 0.886), "openmax": (None, 0.894)},
    "CIFAR10": {"cac": (0.934, 0.803), "ce": (0.927, 0.677), "openmax": (None, 0.695)},
    "CIFAR+10": {"cac": (0.952, 0.863), "ce": (0.947, 0.816), "openmax": (None, 0.817)},
    "CIFAR+50": {"cac": (0.952, 0.872), "ce": (0.947, 0.805), "openmax": (None, 0.796)},
    "TinyImageNet": {"cac": (0.759, 0.772), "ce": (0.733, 0.577), "openmax": (None, 0.576)},
}
SCORE_OF = {"cac": "min rejection score", "anchor": "min rejection score", "tuplet": "min rejection score",
            "ce": "max softmax probability"}


@dataclass(frozen=True)
class BenchmarkConfig:
    """One benchmark command: dataset, trials, methods, recipe and where to write."""

    dataset: str
    data_root: str
    out: str
    trials: tuple[int, ...] = (0, 1, 2, 3, 4)
    methods: tuple[str, ...] = ("cac", "ce")
    recipe: str = "paper"
    epochs_scale: float = 1.0
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    anchor_magnitude: float = 10.0
    anchor_weight: float = 0.1
    backbone: str = "classifier32"
    eval_batch_size: int = 1000
    extra: dict = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA if available, else CPU; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def parse_trials(text: str) -> tuple[int, ...]:
    """'0-4' -> (0, 1, 2, 3, 4); '0,2' -> (0, 2)."""
    trials: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            trials.extend(range(int(lo), int(hi) + 1))
        elif part.strip():
            trials.append(int(part))
    if not trials or min(trials) < 0:
        raise ValueError(f"bad trial list {text!r}; use e.g. '0-4' or '0,2'.")
    return tuple(dict.fromkeys(trials))


def job_name(method: Method) -> str:
    """Folder name of a method with its hyperparameters; the paper's defaults give just the name."""
    name = method.name
    if method.anchor_magnitude != 10.0:
        name += f"_a{method.anchor_magnitude:g}"
    if method.uses_anchors and method.name == "cac" and method.anchor_weight != 0.1:
        name += f"_l{method.anchor_weight:g}"
    return name


def _augment_spec(recipe: Recipe, data: OpenSetData) -> AugmentSpec:
    mean, std = compute_mean_std(data.train.images)
    return AugmentSpec(size=recipe.image_size, scale_min=recipe.scale_min, flip_p=recipe.flip_p,
                       rotation_deg=recipe.rotation_deg, mean=mean, std=std)


def run_job(data: OpenSetData, recipe: Recipe, method: Method, job_dir: Path, *, device: torch.device,
            seed: int = 0, backbone: str = "classifier32", compile: bool = False, eval_batch_size: int = 1000,
            progress: bool = True) -> dict:
    """Train and evaluate one method on one trial (resumable); returns the contents of ``result.json``."""
    result_path = job_dir / "result.json"
    if result_path.exists():
        return read_json(result_path)
    job_dir.mkdir(parents=True, exist_ok=True)
    k = data.num_known
    size, _, channels = data.input_shape
    spec = _augment_spec(recipe, data)
    trial = data.trial.trial

    def loader(images: np.ndarray, labels: np.ndarray, training: bool) -> DeviceLoader:
        return DeviceLoader(images, labels, recipe.batch_size if training else eval_batch_size, spec,
                            train=training, device=device, seed=seed + 1000 * trial,
                            drop_last=training and len(labels) > recipe.batch_size)

    torch.manual_seed(seed + trial)  # the same initial weights for every method of a trial
    net = CACNet(build_backbone(backbone, k, channels, size, dropout=recipe.dropout), k, method.anchor_magnitude)
    if method.name == "ce" and recipe.label_smoothing:
        method = Method("ce", 0.0, 0.0, method.anchor_magnitude, recipe.label_smoothing)
    history = train(net, method, loader(data.train.images, data.train.labels, True),
                    loader(data.val.images, data.val.labels, False), recipe.train_config(compile=compile),
                    device=device, state_path=job_dir / "state.pt", progress=progress,
                    description=f"{data.trial.dataset} t{trial} ")
    start = time.perf_counter()
    train_eval = loader(data.train.images, data.train.labels, False)
    train_logits, train_labels = collect_logits(net, train_eval, device=device)
    if recipe.flip_anchor_fit:  # Algorithm 1 on the training split plus its mirror images (reference code)
        flipped, _ = collect_logits(net, train_eval, device=device, hflip=True)
        train_logits, train_labels = torch.cat([train_logits, flipped]), torch.cat([train_labels, train_labels])
    test = data.test()
    test_logits, test_labels = collect_logits(net, loader(test.images, test.labels, False), device=device)
    known_classes = np.asarray(data.trial.known_sorted)[data.test_known.labels]
    classes = torch.from_numpy(np.concatenate([known_classes, data.unknown_labels]))
    val_logits, val_labels = collect_logits(net, loader(data.val.images, data.val.labels, False), device=device)
    logits = Logits(train_logits, train_labels, test_logits, test_labels, classes, val_logits, val_labels)
    metrics = evaluate_logits(logits, method.name, empty_class="all_samples")
    if "anchors" in metrics:
        net.head.set_anchors(torch.tensor(metrics["anchors"]))
        _save_predictor(job_dir / "model", net, data, spec, backbone, recipe, val_logits, method)
    np.savez_compressed(job_dir / "logits.npz", **logits.to_npz())
    save_torch(job_dir / "model.pt", {"model": net.state_dict(), "num_classes": k, "backbone": backbone,
                                      "known_names": data.known_names, "augment": spec.__dict__})
    write_json(job_dir / "history.json", history.history)
    result = {"dataset": data.trial.dataset, "trial": trial, "job": job_name(method), "method": method.name,
              "anchor_magnitude": method.anchor_magnitude, "anchor_weight": method.anchor_weight,
              "accuracy": metrics["accuracy"], "auroc": metrics["auroc"], "openness": data.trial.openness,
              "best_epoch": history.best_epoch, "epochs": recipe.total_epochs, "train_seconds": history.seconds,
              "eval_seconds": time.perf_counter() - start, "device": str(device),
              "known_names": list(data.known_names), "unknown_names": list(data.unknown_names)}
    write_json(result_path, result)
    return result


def _save_predictor(path: Path, net: CACNet, data: OpenSetData, spec: AugmentSpec, backbone: str, recipe: Recipe,
                    val_logits: torch.Tensor, method: Method, accept_rate: float = 0.95) -> None:
    """Save a CAC job as an open-set model folder that ``classanchor predict`` loads; the threshold keeps
    ``accept_rate`` of the known validation images (the anchors are already re-fitted on ``net``)."""
    _, val_scores = cac_decision(anchor_distances(val_logits, net.head.anchors.cpu()))
    threshold = calibrate_threshold(val_scores, accept_rate)
    calibration = {"method": "accept_rate", "data": "known validation split", "target_accept_rate": accept_rate,
                   "n_images": int(val_scores.numel()),
                   "achieved_accept_rate": float((val_scores < threshold).float().mean())}
    save_open_set_model(path, net, data.known_names, threshold, calibration, spec, backbone,
                        {"dropout": recipe.dropout},
                        extra={"dataset": data.trial.dataset, "trial": data.trial.trial, "job": job_name(method),
                               "recipe": recipe.name})


def format_benchmark_table(dataset: str, results: list[dict], recipe: Recipe, full: Recipe) -> str:
    """Markdown: measured mean ± std over trials beside the published values, plus a per-trial table."""
    lines = [f"# {dataset}: open-set benchmark", ""]
    if recipe.total_epochs < full.total_epochs:
        epochs = " + ".join(str(s.epochs) for s in recipe.stages)
        paper = " + ".join(str(s.epochs) for s in full.stages)
        lines += [f"**Shortened run**: {epochs} epochs instead of the recipe's {paper}; numbers below are not "
                  "comparable to the published ones at full length.", ""]
    lines += [f"Recipe `{recipe.name}`; score: CAC = {SCORE_OF['cac']}, cross-entropy = {SCORE_OF['ce']}.", "",
              "| method | trials | closed-set accuracy | published | AUROC | published |", "|---|---|---|---|---|---|"]
    published = PUBLISHED.get(dataset, {})
    jobs = list(dict.fromkeys(r["job"] for r in results))
    for job in jobs:
        rows = sorted((r for r in results if r["job"] == job), key=lambda r: r["trial"])
        acc, auc = np.array([r["accuracy"] for r in rows]), np.array([r["auroc"] for r in rows])
        pub_acc, pub_auc = published.get(job, (None, None))
        lines.append(f"| {job} | {len(rows)} | {acc.mean():.4f} ± {acc.std():.4f} | {_fmt(pub_acc)} "
                     f"| {auc.mean():.4f} ± {auc.std():.4f} | {_fmt(pub_auc)} |")
    lines += ["", "Per trial (accuracy / AUROC):", "", "| job | " + " | ".join(
        f"trial {t}" for t in sorted({r['trial'] for r in results})) + " |",
        "|---|" + "---|" * len({r["trial"] for r in results})]
    for job in jobs:
        by_trial = {r["trial"]: r for r in results if r["job"] == job}
        cells = [f"{by_trial[t]['accuracy']:.4f} / {by_trial[t]['auroc']:.4f}" if t in by_trial else "-"
                 for t in sorted({r['trial'] for r in results})]
        lines.append(f"| {job} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def run_benchmark(config: BenchmarkConfig, progress: bool = True) -> tuple[list[dict], str]:
    """Run every (trial, method) of ``config`` not yet done; write results.json and table.md."""
    dataset = get_benchmark(config.dataset).name
    full = get_recipe(dataset, config.recipe)
    recipe = full.scaled(config.epochs_scale)
    methods = [get_method(m, anchor_magnitude=config.anchor_magnitude,
                          anchor_weight=config.anchor_weight if m == "cac" else None) for m in config.methods]
    folder = RunFolder.create(config.out, config)
    device = resolve_device(config.device)
    results = []
    for trial_index in config.trials:
        data = build_trial(get_trial(dataset, trial_index), config.data_root, seed=config.seed, progress=progress)
        for method in methods:
            job_dir = folder.path / f"trial{trial_index}" / job_name(method)
            results.append(run_job(data, recipe, method, job_dir, device=device, seed=config.seed,
                                   backbone=config.backbone, compile=config.compile,
                                   eval_batch_size=config.eval_batch_size, progress=progress))
    table = format_benchmark_table(dataset, results, recipe, full)
    write_json(folder.file("results.json"), results)
    write_text(folder.file("table.md"), table)
    return results, table
