"""The saved open-set model (model_io) and the predictor, on a small untrained network (no training here)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from classanchor.cli import main
from classanchor.data.preprocess import Preprocessing
from classanchor.model_io import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    ModelFormatError,
    load_open_set_model,
    save_open_set_model,
)
from classanchor.models.registry import build_backbone
from classanchor.network import CACNet
from classanchor.predictor import OpenSetPredictor

from .helpers.files import write_image_folder

NAMES = ("red", "green", "stripes")
PREP = Preprocessing(16, 3, mean=(0.4, 0.5, 0.3), std=(0.2, 0.25, 0.3))


def make_net(k: int = 3, channels: int = 3, size: int = 16, seed: int = 0) -> CACNet:
    torch.manual_seed(seed)
    net = CACNet(build_backbone("classifier32", k, channels, size, dropout=0.2), k)
    net.head.set_anchors(torch.randn(k, k) * 0.05)
    return net.eval()


def save(path: Path, net: CACNet | None = None, threshold: float = 0.05, **kw) -> Path:
    net = net or make_net()
    calibration = {"method": "accept_rate", "target_accept_rate": 0.95, "n_images": 30, "achieved_accept_rate": 0.9667}
    return save_open_set_model(path, net, NAMES[:net.num_classes], threshold, calibration, kw.pop("preprocessing", PREP),
                               "classifier32", {"dropout": 0.2}, {"training": {"epochs": 3}})


def reference_predictions(net: CACNet, images: np.ndarray, threshold: float, mirror_average: bool = False):
    """Algorithm 1 / Eqs. 2, 9-11 with explicit loops over images and classes; with ``mirror_average`` the
    logits of each image are the mean of its own and its left-right mirror image's, one image at a time."""
    x = (images.astype(np.float64) / 255 - np.array(PREP.mean)) / np.array(PREP.std)
    with torch.no_grad():
        logits = net.backbone(torch.tensor(x, dtype=torch.float32).permute(0, 3, 1, 2)).double().numpy()
        if mirror_average:
            for i in range(len(x)):
                mirrored = torch.tensor(x[i, :, ::-1].copy(), dtype=torch.float32).permute(2, 0, 1)[None]
                logits[i] = (logits[i] + net.backbone(mirrored)[0].double().numpy()) / 2
    return reference_decisions(net, logits, threshold)


def multi_size_logits(net: CACNet, images: np.ndarray, sides) -> np.ndarray:
    """Per image and side, one at a time: the resize rule written out (bilinear, align_corners=False,
    antialiased when shrinking, rounded to uint8), (x / 255 - mean) / std, the mean of the logits of the image
    and of its mirror image; then the mean over the sides (Preprocessing steps 1-4)."""
    mean, std = torch.tensor(PREP.mean).view(3, 1, 1), torch.tensor(PREP.std).view(3, 1, 1)
    rows = []
    with torch.no_grad():
        for image in images:
            pixels = torch.tensor(image).permute(2, 0, 1).float()[None]
            per_side = []
            for side in sides:
                resized = pixels if side == image.shape[0] else torch.nn.functional.interpolate(
                    pixels, size=(side, side), mode="bilinear", align_corners=False, antialias=side < image.shape[0])
                x = (resized.round().clamp(0, 255)[0] / 255 - mean) / std
                z = (net.backbone(x[None])[0] + net.backbone(x.flip(-1)[None])[0]) / 2
                per_side.append(z.double())
            rows.append(torch.stack(per_side).mean(0))
    return torch.stack(rows).numpy()


def reference_decisions(net: CACNet, logits: np.ndarray, threshold: float):
    """Eqs. 2, 9-11 with explicit loops: (prediction, best class, score, SoftMin confidence) per logit row."""
    anchors = net.head.anchors.double().numpy()
    out = []
    for z in logits:
        d = [math.sqrt(sum((z[m] - anchors[j][m]) ** 2 for m in range(len(z)))) for j in range(len(anchors))]
        e = [math.exp(-dj) for dj in d]
        c = [ej / sum(e) for ej in e]
        s = [(1 - cj) * dj for cj, dj in zip(c, d)]
        best = min(range(len(s)), key=s.__getitem__)
        out.append((best if s[best] < threshold else -1, best, s[best], c[best]))
    return out


def images_of(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3)).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ the folder


def test_saved_folder_holds_weights_and_a_readable_description(tmp_path):
    net = make_net()
    folder = save(tmp_path / "model", net, threshold=0.0421)
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    text = (folder / CONFIG_FILE).read_text()
    assert text.startswith("{\n  ")  # indented
    card = json.loads(text)
    assert card["format_version"] == FORMAT_VERSION and card["class_names"] == list(NAMES)
    assert card["threshold"] == 0.0421 and card["calibration"]["target_accept_rate"] == 0.95
    assert card["input"]["size"] == 16 and card["input"]["channels"] == 3
    assert card["input"]["mean"] == [0.4, 0.5, 0.3] and card["input"]["std"] == [0.2, 0.25, 0.3]
    assert card["backbone"] == {"name": "classifier32", "kwargs": {"dropout": 0.2}}
    assert np.array_equal(np.array(card["anchors"], np.float32), net.head.anchors.numpy())
    assert card["classanchor_version"] and "git_commit" in card and card["extra"]["training"] == {"epochs": 3}
    assert card["weights"]["sha256"]
    assert oct(os.stat(folder / WEIGHTS_FILE).st_mode & 0o044) != "0o0"  # normal permissions, not 0600


def test_load_gives_the_same_network_without_training_code(tmp_path):
    net = make_net()
    save(tmp_path / "m", net)
    loaded, _ = load_open_set_model(tmp_path / "m")
    assert not loaded.training
    for (name, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.randn(4, 3, 16, 16)
    assert torch.equal(net.distances(x), loaded.distances(x))


def test_saving_again_replaces_a_model_folder_but_never_another_folder(tmp_path):
    save(tmp_path / "m", threshold=1.0)
    save(tmp_path / "m", threshold=2.0)
    assert json.loads((tmp_path / "m" / CONFIG_FILE).read_text())["threshold"] == 2.0
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"precious")
    with pytest.raises(ValueError, match="not a saved open-set model folder"):
        save(other)
    assert [p.name for p in other.iterdir()] == ["cat.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "photos"]


def test_a_failure_while_saving_leaves_nothing_half_written(tmp_path, monkeypatch):
    import safetensors.torch

    save(tmp_path / "m", threshold=1.0)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path / "m", threshold=2.0)
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp folder, no half model
    assert json.loads((tmp_path / "m" / CONFIG_FILE).read_text())["threshold"] == 1.0


@pytest.mark.parametrize("damage, message", [
    (lambda m: (m / WEIGHTS_FILE).unlink(), "weights.safetensors is missing"),
    (lambda m: (m / CONFIG_FILE).unlink(), "model.json is missing"),
    (lambda m: (m / CONFIG_FILE).write_text('{"format": "classanchor-open'), "not valid JSON"),
    (lambda m: _edit(m, format_version=FORMAT_VERSION + 1),
     f"format version {FORMAT_VERSION + 1} .* upgrade classanchor"),
    (lambda m: _edit(m, format="something-else"), "not a classanchor open-set model"),
    (lambda m: _edit(m, class_names=["a", "b"], anchors=[[0, 0], [0, 0]]), "does not fit the backbone .* 2 classes"),
    (lambda m: _edit(m, input={"size": 24, "channels": 3, "mean": [0, 0, 0], "std": [1, 1, 1]}),
     r"does not fit .*classifier\.weight"),
    (lambda m: _edit(m, anchors=[[1, 0, 0], [0, 1, 0], [0, 0, 1]]), "anchors .* differ"),
    (lambda m: (m / WEIGHTS_FILE).write_bytes((m / WEIGHTS_FILE).read_bytes()[:1000]), "checksum"),
    (lambda m: _edit(m, weights={"file": WEIGHTS_FILE, "sha256": None}) or
     (m / WEIGHTS_FILE).write_bytes(b"\x00" * 100), "cannot be read as safetensors"),
])
def test_broken_model_folders_give_a_clear_error_naming_the_file(tmp_path, damage, message):
    folder = save(tmp_path / "m")
    damage(folder)
    with pytest.raises((ModelFormatError, FileNotFoundError), match=message) as err:
        OpenSetPredictor.load(folder)
    assert str(folder) in str(err.value)


def _edit(folder: Path, **fields) -> None:
    card = json.loads((folder / CONFIG_FILE).read_text())
    card.update(fields)
    (folder / CONFIG_FILE).write_text(json.dumps(card))


def test_loading_a_missing_folder_or_a_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        OpenSetPredictor.load(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ModelFormatError, match="is a file"):
        OpenSetPredictor.load(tmp_path / "f")


# ------------------------------------------------------------------------------------------------ predicting


def test_predictions_follow_algorithm_1_computed_with_loops(tmp_path):
    net = make_net()
    images = images_of(12)
    with torch.no_grad():
        scores = torch.sort(torch.tensor([r[2] for r in reference_predictions(net, images, 1.0)])).values
    threshold = float(scores[5] + scores[6]) / 2  # half of them unknown, no score near the threshold
    save(tmp_path / "m", net, threshold=threshold)
    p = OpenSetPredictor.load(tmp_path / "m")
    result = p.predict(images)
    expected = reference_predictions(net, images, threshold)
    assert result.class_index.tolist() == [e[0] for e in expected]
    assert result.best_index.tolist() == [e[1] for e in expected]
    np.testing.assert_allclose(result.scores, [e[2] for e in expected], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.confidences, [e[3] for e in expected], rtol=1e-5, atol=1e-6)
    assert result.labels == [NAMES[e[0]] if e[0] >= 0 else "unknown" for e in expected]
    assert result.labels.count("unknown") == 6 and result.paths[3] == "array[3]"
    row = result[0]
    assert (row.prediction, row.best_class) == (result.labels[0], NAMES[expected[0][1]])
    # batching, another threshold, and a single (H, W, C) image give the same numbers, up to float rounding:
    # other batch shapes may take other vectorised kernels (e.g. AVX2 vs AVX-512), never compare them exactly
    again = p.predict(images, batch_size=5, threshold=1e9)
    np.testing.assert_allclose(again.scores, result.scores, rtol=1e-5, atol=1e-7)
    assert (again.class_index >= 0).all()
    assert p.predict(images[2]).scores[0] == pytest.approx(result.scores[2], rel=1e-5)


def test_a_mirror_averaging_model_scores_the_mean_logits_of_image_and_mirror(tmp_path):
    net = make_net(seed=3)
    images = images_of(10, seed=4)
    plain, averaged = (reference_predictions(net, images, 1e9, mirror) for mirror in (False, True))
    assert max(abs(a[2] - b[2]) for a, b in zip(plain, averaged)) > 1e-3  # the average changes the scores
    folder = save(tmp_path / "m", net, preprocessing=dataclasses.replace(PREP, mirror_average=True))
    assert json.loads((folder / CONFIG_FILE).read_text())["input"]["mirror_average"] is True
    result = OpenSetPredictor.load(folder).predict(images, batch_size=4, threshold=1e9)
    np.testing.assert_allclose(result.scores, [e[2] for e in averaged], rtol=1e-5, atol=1e-6)
    assert result.best_index.tolist() == [e[1] for e in averaged]
    # a model folder written before the option existed has no such key: no averaging
    card = json.loads((folder / CONFIG_FILE).read_text())
    del card["input"]["mirror_average"]
    assert Preprocessing.from_dict(card["input"]).mirror_average is False
    _edit(folder, input={**card["input"], "mirror_average": "yes"})
    with pytest.raises(ModelFormatError, match="mirror_average must be true or false"):
        OpenSetPredictor.load(folder)


def make_pooling_net(k: int = 3, seed: int = 0) -> CACNet:
    """resnet9 (global max pooling): takes any input side."""
    torch.manual_seed(seed)
    net = CACNet(build_backbone("resnet9", k, 3, 16, width=8), k)
    net.head.set_anchors(torch.randn(k, k) * 0.05)
    return net.eval()


def test_a_multi_size_model_scores_the_mean_logits_over_its_sides(tmp_path):
    net = make_pooling_net(seed=5)
    images = images_of(7, seed=6)
    sides = (16, 24, 12)  # the model's side, one larger (upsampled) and one smaller (antialiased)
    one_side = reference_decisions(net, multi_size_logits(net, images, sides[:1]), 1e9)
    expected = reference_decisions(net, multi_size_logits(net, images, sides), 1e9)
    assert max(abs(a[2] - b[2]) for a, b in zip(one_side, expected)) > 1e-3  # the sides change the scores
    prep = dataclasses.replace(PREP, mirror_average=True, extra_sizes=sides[1:])
    folder = save_open_set_model(tmp_path / "m", net, NAMES, 0.05, {}, prep, "resnet9", {"width": 8})
    assert json.loads((folder / CONFIG_FILE).read_text())["input"]["extra_sizes"] == [24, 12]
    predictor = OpenSetPredictor.load(folder)
    assert predictor.preprocessing.sizes == sides
    result = predictor.predict(images, batch_size=3, threshold=1e9)
    np.testing.assert_allclose(result.scores, [e[2] for e in expected], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.confidences, [e[3] for e in expected], rtol=1e-4, atol=1e-5)
    assert result.best_index.tolist() == [e[1] for e in expected]
    # a folder saved before the option has no key (one side); a malformed value is refused, naming the field
    card = json.loads((folder / CONFIG_FILE).read_text())
    assert Preprocessing.from_dict({k: v for k, v in card["input"].items() if k != "extra_sizes"}).sizes == (16,)
    for bad in ("24", [24.5], [16], [0]):
        _edit(folder, input={**card["input"], "extra_sizes": bad})
        with pytest.raises(ModelFormatError, match="extra_sizes|sizes must"):
            OpenSetPredictor.load(folder)


def test_extra_test_sizes_need_a_network_that_takes_them(tmp_path):
    prep = dataclasses.replace(PREP, extra_sizes=(24,))
    folder = save(tmp_path / "m", preprocessing=prep)  # classifier32 flattens 16 px features: 16 px only
    with pytest.raises(ModelFormatError, match="does not take 24 x 24 px inputs.*global pooling"):
        OpenSetPredictor.load(folder)
    with pytest.raises(ValueError, match="must differ"):
        Preprocessing(16, 3, PREP.mean, PREP.std, extra_sizes=(24, 24))


def test_arrays_of_other_sizes_grey_pixels_and_pil_images(tmp_path):
    save(tmp_path / "m")
    p = OpenSetPredictor.load(tmp_path / "m")
    big = np.kron(images_of(2), np.ones((1, 2, 2, 1), np.uint8))  # 32 px: each pixel doubled
    resized = p.predict(big)
    via_pil = p.predict([Image.fromarray(im) for im in big])
    assert np.array_equal(resized.scores, via_pil.scores) and via_pil.paths == ["image[0]", "image[1]"]
    grey = p.predict(np.full((3, 16, 16), 90, np.uint8))
    assert grey.converted == {"grey -> RGB": 3} and len(grey) == 3
    same = p.predict(np.full((1, 16, 16, 3), 90, np.uint8))
    assert grey.scores[0] == pytest.approx(same.scores[0], rel=1e-5)  # batch of 3 vs batch of 1: not exact
    with pytest.raises(TypeError, match="uint8"):
        p.predict(np.zeros((2, 16, 16, 3), np.float32))
    with pytest.raises(TypeError, match="paths, a uint8 array or PIL images"):
        p.predict([1, 2])


def test_a_grey_model_converts_colour_images_and_says_so(tmp_path):
    prep = Preprocessing(16, 1, mean=(0.5,), std=(0.25,))
    save_open_set_model(tmp_path / "g", make_net(k=2, channels=1), ["dark", "light"], 0.1, {"method": "user"}, prep,
                        "classifier32", {"dropout": 0.2}, {})
    p = OpenSetPredictor.load(tmp_path / "g")
    assert p.channels == 1 and p.card["input"]["mean"] == [0.5]
    colour = p.predict(images_of(2))
    assert colour.converted == {"colour -> grey": 2}
    grey = np.asarray(Image.fromarray(images_of(1)[0]).convert("L"))
    assert p.predict(grey).scores[0] == pytest.approx(colour.scores[0], rel=1e-5)


@pytest.mark.parametrize("shape", [(37, 23, 3), (37, 23)])
def test_a_file_an_array_and_a_pil_image_give_identical_pixels_and_scores(tmp_path, monkeypatch, shape):
    """One path from image to decision: decoded at its own size, converted, resized by the one rule."""
    save(tmp_path / "m")
    p = OpenSetPredictor.load(tmp_path / "m")
    image = np.random.default_rng(3).integers(0, 256, shape).astype(np.uint8)  # 23 x 37 (and grey): resized
    Image.fromarray(image).save(tmp_path / "x.png")
    seen = []
    pixels = Preprocessing.pixels

    def spy(self, images, layout=None):
        out = pixels(self, images, layout)
        seen.append(out.clone())
        return out

    monkeypatch.setattr(Preprocessing, "pixels", spy)
    results, prepared = [], []
    for given in (tmp_path / "x.png", image, Image.fromarray(image)):
        results.append(p.predict(given, progress=False) if isinstance(given, Path) else p.predict(given))
        prepared.append(seen[-1])
    assert prepared[0].shape == (1, 3, 16, 16) and prepared[0].dtype == torch.uint8
    assert torch.equal(prepared[0], prepared[1]) and torch.equal(prepared[0], prepared[2])
    assert results[0].scores[0] == results[1].scores[0] == results[2].scores[0]  # same input, same batch shape
    assert results[0].converted == results[1].converted == results[2].converted


def test_files_folders_zips_and_bad_files(tmp_path):
    save(tmp_path / "m")
    p = OpenSetPredictor.load(tmp_path / "m")
    data = write_image_folder(tmp_path / "imgs", per_class=2, kinds=("red", "blue"))
    (data / "red" / "notes.txt").write_text("x")
    whole = (data / "red" / "000.png").read_bytes()
    (data / "blue" / "cut.png").write_bytes(whole[: len(whole) // 2])
    Image.fromarray(np.full((20, 20), 100, np.uint8)).save(data / "grey.png")
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(data.rglob("*.png")):
            z.write(f, "wrap/" + f.relative_to(data).as_posix())
    single = data / "red" / "001.png"
    result = p.predict([data, archive / "wrap" / "red", single, tmp_path / "missing.jpg",
                        archive / "wrap" / "blue" / "000.png"], batch_size=3, progress=False)
    names = [Path(q).name if "imgs.zip" not in q else "zip:" + q.split("imgs.zip/")[1] for q in result.paths]
    assert names == ["grey.png", "000.png", "001.png", "000.png", "001.png", "zip:wrap/red/000.png",
                     "zip:wrap/red/001.png", "001.png", "zip:wrap/blue/000.png"]  # files of a folder, then sub-folders
    assert result.scores[1] == pytest.approx(result.scores[8], rel=1e-5)  # blue/000.png: folder and zip
    assert result.converted == {"grey -> RGB": 1}
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert set(reasons) == {"notes.txt", "cut.png", "missing.jpg"}
    assert reasons["missing.jpg"] == "no such file or folder" and "truncated" in reasons["cut.png"]
    # the same image gives the same score from a folder, a zip and an explicit path
    np.testing.assert_allclose(result.scores[[6, 7]], result.scores[4], rtol=1e-5)  # (batches differ)
    assert len(p.predict([tmp_path / "missing.jpg"])) == 0


def test_predict_command_formats_output_file_and_exit_codes(tmp_path, capsys):
    save(tmp_path / "m")
    data = write_image_folder(tmp_path / "imgs", per_class=2, kinds=("red", "blue"))
    (data / "red" / "bad.jpg").write_bytes(b"nope")
    assert main(["predict", str(tmp_path / "m"), str(data), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["path", "prediction", "score", "confidence"] and len(lines) == 5
    assert "4 image(s) predicted" in err and "bad.jpg: not an image PIL can read" in err

    assert main(["predict", str(tmp_path / "m"), str(data), "--format", "json", "--no-progress"]) == 0
    record = json.loads(capsys.readouterr().out)
    expected = OpenSetPredictor.load(tmp_path / "m").predict(data, progress=False)
    assert [r["path"] for r in record["predictions"]] == expected.paths
    assert [r["score"] for r in record["predictions"]] == expected.scores.tolist()
    assert record["skipped"][0]["path"].endswith("bad.jpg") and record["threshold"] == 0.05

    target = tmp_path / "out" / "pred.csv"
    assert main(["predict", str(tmp_path / "m"), str(data), "--format", "csv", "--output", str(target),
                 "--threshold", "1e9", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    rows = target.read_text().splitlines()
    assert out == "" and rows[0] == "path,prediction,best_class,score,confidence" and len(rows) == 5
    assert all(r.split(",")[1] != "unknown" for r in rows[1:]) and f"written to {target}" in err
    assert [p.name for p in target.parent.iterdir()] == ["pred.csv"]

    assert main(["predict", str(tmp_path / "m"), str(data / "red" / "bad.jpg"), "--no-progress"]) == 1
    assert "no image could be predicted" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nomodel"), str(data)]) == 2
    assert "no such model folder" in capsys.readouterr().err
