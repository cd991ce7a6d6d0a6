"""A trained job's network evaluated at other test-time input sides, and with the logits of two sides averaged
(multi-scale test-time averaging): does testing at a larger side than the training side pay, as Touvron et
al. (2019, "Fixing the train-test resolution discrepancy") found for networks trained on random-resized crops?

The job folder (``trial{T}/{job}/`` of a ``classanchor benchmark`` or ``recipe_variant.py`` run) must still
hold its ``state.pt``; its best network (the one the job evaluated) is rebuilt from ``result.json`` and the
run's ``config.json``. For each side S the benchmark's own evaluation is repeated with the images resized to S
(:class:`classanchor.data.preprocess.Preprocessing` at S, mirror averaging as the recipe says): logits of the
training, validation and test images, the detector fitted on the training logits (CAC: the anchors re-fitted,
Algorithm 1), accuracy and AUROC on the test images (:func:`classanchor.evaluate.open_set_evaluation`). At the
recipe's own side this reproduces the job's ``result.json``. Every combination ``S1+S2(+..)`` of two or more
sides averages their logits (training, validation and test alike) before the detector is fitted. Run it under
the shared lock::

    flock /tmp/classanchor-cpu.lock .venv/bin/python benchmarks/eval_sides.py runs/tiny_t0/trial0/cac \\
        --sides 48,56,64 --data-root ../shared/data --out runs/tiny_t0_sides.json
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch

from classanchor.data.preprocess import Preprocessing
from classanchor.data.splits import build_trial, get_trial
from classanchor.evaluate import Logits, network_logits, open_set_evaluation
from classanchor.io import read_json, write_json
from classanchor.models.registry import build_backbone
from classanchor.network import CACNet
from classanchor.recipes import Recipe, get_recipe
from classanchor.train import Stage


def job_recipe(run_config: dict) -> Recipe:
    """The recipe a run trained: ``varied_recipe`` of a recipe_variant.py run, else the named recipe."""
    varied = run_config.get("varied_recipe")
    if varied is None:
        return get_recipe(run_config["dataset"], run_config["recipe"])
    fields = {**varied, "stages": tuple(Stage(**s) for s in varied["stages"]),
              "backbone_kwargs": tuple(map(tuple, varied["backbone_kwargs"])),
              "extra_test_sizes": tuple(varied.get("extra_test_sizes", ()))}
    return Recipe(**fields)


def load_best_network(job: Path, result: dict, recipe: Recipe, channels: int) -> CACNet:
    """The job's best network (``state.pt``'s ``best_state``), rebuilt from its backbone record."""
    state = job / "state.pt"
    if not state.is_file():
        raise FileNotFoundError(f"{state} is missing: this script needs the job's state.pt (train the job "
                                "again with recipe_variant.py or classanchor benchmark; finished jobs keep "
                                "it).")
    classes = len(result["known_names"])
    kwargs = result["backbone_kwargs"]
    body = build_backbone(result["backbone"], classes, channels, recipe.image_size, **kwargs)
    net = CACNet(body, classes, anchor_magnitude=result["anchor_magnitude"])
    net.load_state_dict(torch.load(state, map_location="cpu", weights_only=True)["best_state"])
    return net.eval()


def evaluate_sides(job: Path, sides: list[int], data_root: str, detectors: list[str] | None = None,
                   batch_size: int = 1000) -> dict[str, dict[str, dict[str, float]]]:
    """{"S" or "S1+S2+..": {detector: {"accuracy", "auroc"}}} of the job's network at each side and at every
    combination of two or more sides (their logits averaged, as ``Preprocessing.extra_sizes`` does)."""
    result = read_json(job / "result.json")
    run_config = read_json(job.parents[1] / "config.json")["config"]
    recipe = job_recipe(run_config)
    data = build_trial(get_trial(result["dataset"], result["trial"]), data_root, seed=run_config["seed"],
                       progress=False)
    test = data.test()
    net = load_best_network(job, result, recipe, data.input_shape[2])
    sets = (data.train.images, data.val.images, test.images)
    logits: dict[str, tuple[torch.Tensor, ...]] = {}
    for side in sides:
        start = time.perf_counter()
        preprocessing = Preprocessing.fit(data.train.images, side, mirror_average=recipe.test_time_flip)
        logits[str(side)] = tuple(network_logits(net, preprocessing, images, batch_size=batch_size)
                                  for images in sets)
        print(f"side {side}: logits of {sum(map(len, sets))} images in {time.perf_counter() - start:.0f} s",
              flush=True)
    for count in range(2, len(sides) + 1):
        for combination in itertools.combinations(map(str, sides), count):
            # summed in order, then divided: the arithmetic of network_logits' multi-size mean
            logits["+".join(combination)] = tuple(sum(per_side) / count for per_side
                                                  in zip(*(logits[side] for side in combination)))
    labels = [torch.as_tensor(s.labels) for s in (data.train, data.val, test)]
    reports = {}
    for name, (train, val, tested) in logits.items():
        # test_classes (5th) only feed the unknown-confusion rows, which this script does not report
        split = Logits(train, labels[0], tested, labels[2], labels[2], val, labels[1])
        reports[name] = {d: {key: open_set_evaluation(split, d)[key] for key in ("accuracy", "auroc")}
                         for d in (detectors or [result["detector"]])}
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job", type=Path, help="a job folder trial{T}/{job} with result.json and state.pt")
    parser.add_argument("--sides", required=True, help="comma-separated test-time input sides, e.g. 48,56,64")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--detectors", default="", help="comma-separated (default: the job's own detector)")
    parser.add_argument("--out", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    sides = [int(s) for s in args.sides.split(",") if s]
    reports = evaluate_sides(args.job, sides, args.data_root, [d for d in args.detectors.split(",") if d])
    names = list(next(iter(reports.values())))
    print("\n| test-time side | " + " | ".join(f"{d}: accuracy / AUROC" for d in names) + " |")
    print("|---|" + "---|" * len(names))
    for side, by_detector in reports.items():
        cells = " | ".join(f"{r['accuracy']:.4f} / {r['auroc']:.4f}" for r in by_detector.values())
        print(f"| {side} | {cells} |")
    if args.out:
        write_json(args.out, {"job": str(args.job), "sides": reports})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
