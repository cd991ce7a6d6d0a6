"""Does evaluating in bfloat16 change the benchmark's numbers? One trained job, logits in float32 and bf16.

Loads ``model.pt`` of a finished benchmark job, rebuilds its trial, computes the training (anchor fit) and
test logits twice (float32 NCHW, and bf16 autocast NHWC as on CUDA or an AMX CPU) and prints accuracy, AUROC,
the largest logit difference and the time of each pass. Run it under the lock::

    flock /tmp/classanchor-cpu.lock .venv/bin/python benchmarks/bf16_eval.py runs/mnist_short --job cac
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from classanchor import CACNet
from classanchor.data.augment import AugmentSpec
from classanchor.data.loader import DeviceLoader
from classanchor.data.splits import build_trial, get_trial
from classanchor.evaluate import Logits, evaluate_logits
from classanchor.models.registry import build_backbone
from classanchor.recipes import get_recipe


@torch.inference_mode()
def logits_of(net: CACNet, loader: DeviceLoader, bf16: bool, hflip: bool = False) -> torch.Tensor:
    net.to(memory_format=torch.channels_last if bf16 else torch.contiguous_format).eval()
    out = []
    for x, _ in loader:
        x = x.flip(-1) if hflip else x
        x = x.contiguous(memory_format=torch.channels_last if bf16 else torch.contiguous_format)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out.append(net(x).float())
    return torch.cat(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="benchmark run folder")
    parser.add_argument("--job", default="cac")
    parser.add_argument("--trial", type=int, default=0)
    args = parser.parse_args(argv)
    run = Path(args.run)
    config = json.loads((run / "config.json").read_text())["config"]
    job = run / f"trial{args.trial}" / args.job
    saved = torch.load(job / "model.pt", weights_only=False)
    recipe = get_recipe(config["dataset"], config["recipe"])
    data = build_trial(get_trial(config["dataset"], args.trial), config["data_root"], seed=config["seed"])
    size, _, channels = data.input_shape
    k = data.num_known
    net = CACNet(build_backbone(saved["backbone"], k, channels, size, dropout=recipe.dropout), k)
    net.load_state_dict(saved["model"])
    spec = AugmentSpec(**saved["augment"])
    test = data.test()

    def loader(images, labels):
        return DeviceLoader(images, labels, config["eval_batch_size"], spec, train=False, channels_last=False)

    known_classes = np.asarray(data.trial.known_sorted)[data.test_known.labels]
    classes = torch.from_numpy(np.concatenate([known_classes, data.unknown_labels]))
    results = {}
    for bf16 in (False, True):
        start = time.perf_counter()
        train_logits = logits_of(net, loader(data.train.images, data.train.labels), bf16)
        train_labels = torch.as_tensor(data.train.labels)
        if recipe.flip_anchor_fit:
            flipped = logits_of(net, loader(data.train.images, data.train.labels), bf16, hflip=True)
            train_logits, train_labels = torch.cat([train_logits, flipped]), torch.cat([train_labels, train_labels])
        test_logits = logits_of(net, loader(test.images, test.labels), bf16)
        seconds = time.perf_counter() - start
        metrics = evaluate_logits(Logits(train_logits, train_labels, test_logits, torch.as_tensor(test.labels),
                                         classes), args.job if args.job == "ce" else "cac", empty_class="all_samples")
        results[bf16] = (metrics, test_logits, seconds)
        images = len(train_labels) + len(test.labels)
        print(f"{'bf16 NHWC' if bf16 else 'fp32 NCHW'}: accuracy {metrics['accuracy']:.4f}  AUROC "
              f"{metrics['auroc']:.5f}  ({images} images in {seconds:.1f} s, {images / seconds:.0f} img/s)")
    diff = (results[True][1] - results[False][1]).abs()
    print(f"test logits: max |bf16 - fp32| = {diff.max():.4f}, mean {diff.mean():.4f}; logit scale "
          f"{results[False][1].abs().mean():.2f}")
    stored = json.loads((job / "result.json").read_text())
    print(f"stored result.json: accuracy {stored['accuracy']:.4f}  AUROC {stored['auroc']:.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
