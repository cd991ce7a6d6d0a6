"""Does evaluating in bfloat16 change the benchmark's numbers? One trained job, logits in float32 and bf16.

Loads the ``model/`` folder of a finished CAC benchmark job, rebuilds its trial, computes the training (anchor fit) and
test logits twice (float32 NCHW, and bf16 autocast NHWC as on CUDA or an AMX CPU) and prints accuracy, AUROC,
the largest logit difference and the time of each pass. Run it under the lock::

    flock /tmp/classanchor-cpu.lock .venv/bin/python benchmarks/bf16_eval.py runs/mnist_short --job cac
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from classanchor import CACNet, Preprocessing
from classanchor.data.splits import build_trial, get_trial
from classanchor.detectors import make_detector
from classanchor.metrics import auroc, closed_set_accuracy
from classanchor.model_io import load_open_set_model
from classanchor.recipes import get_recipe


@torch.inference_mode()
def logits_of(net: CACNet, prep: Preprocessing, images, bf16: bool, batch: int, hflip: bool = False) -> torch.Tensor:
    net.to(memory_format=torch.channels_last if bf16 else torch.contiguous_format).eval()
    out = []
    for lo in range(0, len(images), batch):
        x = prep(torch.as_tensor(images[lo:lo + batch]))
        x = (x.flip(-1) if hflip else x).contiguous(memory_format=torch.channels_last if bf16 else torch.contiguous_format)
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
    net, card = load_open_set_model(job / "model")
    prep = Preprocessing.from_dict(card["input"])
    recipe = get_recipe(config["dataset"], config["recipe"])
    data = build_trial(get_trial(config["dataset"], args.trial), config["data_root"], seed=config["seed"])
    test = data.test()
    batch = config["eval_batch_size"]
    results = {}
    for bf16 in (False, True):
        start = time.perf_counter()
        train_logits = logits_of(net, prep, data.train.images, bf16, batch)
        train_labels = torch.as_tensor(data.train.labels)
        if recipe.flip_anchor_fit:
            flipped = logits_of(net, prep, data.train.images, bf16, batch, hflip=True)
            train_logits, train_labels = torch.cat([train_logits, flipped]), torch.cat([train_labels, train_labels])
        test_logits = logits_of(net, prep, test.images, bf16, batch)
        seconds = time.perf_counter() - start
        detector = make_detector("cac", empty_class="all_samples").fit(train_logits, train_labels)
        prediction, score = detector.decide(test_logits)
        known = test.labels >= 0
        metrics = {"accuracy": closed_set_accuracy(prediction[known], torch.as_tensor(test.labels)[known]),
                   "auroc": auroc(score, ~torch.as_tensor(known))}
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
