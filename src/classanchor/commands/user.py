"""``classanchor train``, ``classanchor evaluate`` and ``classanchor predict``: CAC on your own images.

    classanchor train photos/ --known cat,dog,bird --unknown fox --out runs/photos
    classanchor evaluate runs/photos/model more_photos/ --known cat,dog,bird --unknown fox,owl
    classanchor predict runs/photos/model new_photos/ img.jpg --format csv --output predictions.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys

from ._options import (add_device, add_model_training, add_progress, fields_from, finite_float, names,
                       positive_int)


def _train(args: argparse.Namespace) -> int:
    from ..folder_training import FolderTrainConfig, train_on_folder

    config = FolderTrainConfig(**{**fields_from(FolderTrainConfig, args), "known": names(args.known),
                                  "unknown": names(args.unknown) or (), "flip": not args.no_flip})
    _, metrics = train_on_folder(config, progress=not args.no_progress)
    print(_train_summary(metrics))
    print(f"Run folder: {args.out}/  (open-set model: {args.out}/model)")
    return 0


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _train_summary(m: dict) -> str:
    cal = m["calibration"]
    unknown = f"; held-out unknown classes: {', '.join(m['unknown_names'])}" if m["unknown_names"] else ""
    how = (f"calibrated to accept {_pct(cal['target_accept_rate'])}" if cal["method"] == "accept_rate"
           else "set by the user")
    lines = [f"known classes: {', '.join(m['known_names'])}{unknown}",
             (f"trained {m['epochs']} epochs on {m['n_train']} images in {m['train_seconds']:.0f} s; "
              f"validation accuracy {_pct(m['val_accuracy'])}"),
             (f"threshold {m['threshold']:.4f} ({how}; accepts {_pct(cal['achieved_accept_rate'])} of "
              f"{cal['n_images']} known validation images)")]
    if "test" in m:
        lines.append("test: " + _eval_line(m["test"]))
    if m.get("skipped_files"):
        lines.append(f"{m['skipped_files']} file(s) skipped: see data.json in the run folder")
    return "\n".join(lines)


def _eval_line(r: dict) -> str:
    parts = [(f"{r['n_known']} known images: accuracy {_pct(r['accuracy'])}, "
              f"accepted {_pct(r['known_acceptance'])}") if r["n_known"] else "",
             (f"{r['n_unknown']} unknown images: rejected {_pct(r['unknown_rejection'])}"
              if r["n_unknown"] else ""),
             f"AUROC {r['auroc']:.4f}" if "auroc" in r else ""]
    return "; ".join(p for p in parts if p)


def _load(args: argparse.Namespace):
    from ..pipeline import resolve_device
    from ..predictor import OpenSetPredictor

    return OpenSetPredictor.load(args.model, device=resolve_device(args.device))


def _evaluate(args: argparse.Namespace) -> int:
    from ..io import write_json

    predictor = _load(args)
    if args.threshold is not None:
        predictor.threshold = args.threshold
    report = predictor.evaluate(args.data, names(args.known), names(args.unknown), batch_size=args.batch_size,
                                progress=not args.no_progress)
    print(f"model {args.model}: {len(predictor.class_names)} classes, threshold {predictor.threshold:.4f}")
    print(_eval_line(report))
    for name, r in report["per_unknown_class"].items():
        print(f"  unknown {name}: {r['n']} images, rejected {_pct(r['rejected'])}")
    for name, r in report["per_known_class"].items():
        print(f"  known {name}: {r['n']} images, accepted {_pct(r['accepted'])}, accuracy {_pct(r['accuracy'])}")
    for kind, n in sorted(report["converted"].items()):
        print(f"converted {n} image(s) {kind} for this model", file=sys.stderr)
    if report["skipped"]:
        print(f"skipped {len(report['skipped'])} file(s), e.g. {report['skipped'][0]['path']}: "
              f"{report['skipped'][0]['reason']}", file=sys.stderr)
    if args.output:
        write_json(args.output, {"model": args.model, **report})
        print(f"metrics written to {args.output}")
    return 0


def format_table(result) -> str:
    """Aligned columns: path, prediction, score, confidence."""
    rows = [("path", "prediction", "score", "confidence")] + [
        (r.path, r.prediction, f"{r.score:.4f}", f"{r.confidence:.3f}") for r in result]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d:>{widths[3]}}"
                     for a, b, c, d in rows) + "\n"


def format_csv(result) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "prediction", "best_class", "score", "confidence"])
    writer.writerows([r.path, r.prediction, r.best_class, repr(r.score), repr(r.confidence)] for r in result)
    return buffer.getvalue()


def format_json(result, model: str) -> str:
    return json.dumps({"model": model, "threshold": result.threshold, "class_names": list(result.class_names),
                       "predictions": result.records(), "converted": result.converted,
                       "skipped": [{"path": s.path, "reason": s.reason} for s in result.skipped]}, indent=2) + "\n"


def _predict(args: argparse.Namespace) -> int:
    from ..io import write_text

    result = _load(args).predict(args.paths, batch_size=args.batch_size, threshold=args.threshold,
                                 progress=not args.no_progress)
    text = {"table": lambda: format_table(result), "csv": lambda: format_csv(result),
            "json": lambda: format_json(result, args.model)}[args.format]()
    if args.output:
        write_text(args.output, text)
    elif len(result) or args.format != "table":
        sys.stdout.write(text)
    notes = result.notes()
    if len(result):
        notes.insert(0, f"{len(result)} image(s) predicted, {int(result.is_unknown.sum())} unknown (threshold "
                     f"{result.threshold:.4f})" + (f"; written to {args.output}" if args.output else ""))
    else:
        notes.append("classanchor predict: error: no image could be predicted.")
    for line in notes:
        print(line, file=sys.stderr)
    return 0 if len(result) else 1


def add_parser(subparsers) -> None:
    train = subparsers.add_parser("train", help="train an open-set model on your own image folder (or zip)",
                                  description="Train CAC on DATA (one sub-folder per class; a folder, a zip, or "
                                              "archive.zip/inner/folder) and save the open-set model in OUT/model.")
    train.add_argument("data", help="image folder, zip, or archive.zip/inner/folder with one sub-folder per class")
    train.add_argument("--out", required=True, help="run folder to write (re-running resumes it)")
    train.add_argument("--known", help="comma list of known classes (default: every class not in --unknown)")
    train.add_argument("--unknown", help="comma list of classes held out to measure rejection (never trained on)")
    train.add_argument("--recipe", choices=("fast", "paper"), default="fast",  # folder_training.USER_RECIPES
                       help="fast (default; resnet9, one-cycle) or paper (classifier32, lr then lr/10)")
    train.add_argument("--epochs", type=positive_int, help="total epochs (default: fast 15, or up to 60 on a "
                       "small folder to make 1000 steps; paper 30)")
    train.add_argument("--image-size", type=positive_int, default=32,
                       help="images are stretched to SxS (default 32; classifier32 needs a multiple of 8)")
    train.add_argument("--channels", type=int, choices=(1, 3), help="1 grey or 3 RGB (default: 1 if all images are grey)")
    train.add_argument("--accept-rate", type=float, default=0.95,
                       help="share of known validation images the threshold accepts (default 0.95)")
    train.add_argument("--threshold", type=finite_float, help="fixed threshold instead of calibrating one")
    train.add_argument("--val-fraction", type=float, default=0.1, help="per-class validation share (default 0.1)")
    train.add_argument("--test-fraction", type=float, default=0.2, help="per-class test share (default 0.2)")
    train.add_argument("--max-per-class", type=int, help="use at most N images per class (seeded random subset)")
    train.add_argument("--batch-size", type=positive_int, default=128)
    train.add_argument("--lr", type=float, help="peak (fast: 0.05) or stage-1 (paper: 0.01) learning rate")
    train.add_argument("--weight-decay", type=finite_float,
                       help="SGD weight decay (default: the recipe's; fast 5e-4, paper 5e-6)")
    train.add_argument("--no-flip", action="store_true", help="no horizontal flips (e.g. for text or digits)")
    add_model_training(train)
    add_progress(train)
    train.set_defaults(func=_train)

    def use_a_model(parser: argparse.ArgumentParser, func) -> None:
        parser.add_argument("--threshold", type=finite_float, help="override the model's threshold")
        parser.add_argument("--batch-size", type=positive_int, default=256)
        add_device(parser)
        add_progress(parser)
        parser.set_defaults(func=func)

    ev = subparsers.add_parser("evaluate", help="open-set metrics of a saved model on a labelled image folder")
    ev.add_argument("model", help="model folder (RUN_DIR/model)")
    ev.add_argument("data", help="labelled image folder, zip, or archive.zip/inner/folder")
    ev.add_argument("--known", help="comma list of known classes (default: the model's classes found in DATA)")
    ev.add_argument("--unknown", help="comma list of unknown classes (default: every other class folder in DATA)")
    ev.add_argument("--output", help="also write the metrics as JSON to this file")
    use_a_model(ev, _evaluate)

    pr = subparsers.add_parser("predict", help="known class or 'unknown' for image files, folders or zips")
    pr.add_argument("model", help="model folder (RUN_DIR/model)")
    pr.add_argument("paths", nargs="+", help="image files, folders, zips, or archive.zip/inner/folder")
    pr.add_argument("--format", choices=("table", "csv", "json"), default="table", help="default: table")
    pr.add_argument("--output", help="write the predictions to this file (atomically) instead of the terminal")
    use_a_model(pr, _predict)
