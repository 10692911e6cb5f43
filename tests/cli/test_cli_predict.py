"""``owp predict`` as something to build on: COCO output, top-k and thresholds, batches of
similar aspect ratio, distinct output names, never an output over an input, overlays with a
legend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from owp.cli import main
from owp.config import DataConfig, ModelConfig, RunConfig
from owp.engine.batching import input_shape_of
from owp.engine.checkpoint import save_checkpoint
from owp.models.registry import create_model
from owp.viz.overlays import LEGEND_HEIGHT
from owp.workflows.predict import aspect_batches, output_names

SIZES = {"wide": (60, 150), "tall": (140, 70), "square": (90, 90), "wider": (50, 140)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A class-agnostic fcos_owp_tiny checkpoint with random weights that propose real boxes."""
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    options = {"min_size": 128, "max_size": 192}
    model = create_model("fcos_owp_tiny", **options)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith("head."):
                parameter.add_(torch.randn_like(parameter) * 0.05)
        model.head.regression_head.bbox_reg.bias.fill_(1.0)
    data = DataConfig(train=str(folder / "none"), val=str(folder / "none"))
    config = RunConfig(model=ModelConfig(name="fcos_owp_tiny", options=options), data=data)
    save_checkpoint(
        folder / "last.pt", model=model, optimizer=None, scheduler=None, step=0,
        config=config.to_dict(),
    )  # fmt: skip
    return folder / "last.pt"


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    generator = torch.Generator().manual_seed(1)
    for name, (h, w) in SIZES.items():
        pixels = (torch.rand(h, w, 3, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{name}.jpg")
    return folder


def predict(run, *argv) -> int:
    return main(["predict", str(run), *map(str, argv)])


def test_coco_format_keeps_file_names_and_sizes(run, images, tmp_path):
    out = tmp_path / "out"
    assert predict(run, images, "--out", out, "--format", "coco", "--top-k", "7") == 0
    document = json.loads((out / "predictions.json").read_text())
    assert [i["file_name"] for i in document["images"]] == sorted(f"{n}.jpg" for n in SIZES)
    for info in document["images"]:
        h, w = SIZES[Path(info["file_name"]).stem]
        assert (info["height"], info["width"]) == (h, w)
        assert Path(info["path"]) == images / info["file_name"]
    annotations = document["annotations"]
    assert len(annotations) == 7 * len(SIZES)
    assert {a["image_id"] for a in annotations} == {i["id"] for i in document["images"]}
    assert document["categories"] == [{"id": 1, "name": "object"}]
    assert all(a["category_id"] == 1 and a["area"] > 0 for a in annotations)
    assert not list(out.glob("*.json"))[1:]  # one JSON for the whole input
    assert len(list(out.glob("*.png"))) == len(SIZES)


def test_top_k_and_score_thresh_cut_the_boxes(run, images, tmp_path):
    assert predict(run, images, "--out", tmp_path / "all") == 0
    every = json.loads((tmp_path / "all" / "wide.json").read_text())
    assert len(every) == 100  # the model's post_nms_top_n
    assert predict(run, images, "--out", tmp_path / "k", "--top-k", "250") == 0
    more = json.loads((tmp_path / "k" / "wide.json").read_text())
    assert len(more) > 100 and more[:100] == every  # the model is asked for more boxes
    threshold = every[30]["score"]
    assert predict(run, images, "--out", tmp_path / "t", "--score-thresh", threshold) == 0
    kept = json.loads((tmp_path / "t" / "wide.json").read_text())
    assert kept == [r for r in every if r["score"] > threshold] and 0 < len(kept) <= 30


def test_batches_group_images_of_one_padded_shape(run, images, tmp_path):
    paths = sorted(images.glob("*.jpg"))
    shape = input_shape_of(create_model("fcos_owp_tiny", min_size=128, max_size=192))
    batches = aspect_batches(paths, 2, shape)
    # wide and wider both resize to 192 px wide and pad to 96 x 192; the others stay alone.
    assert sorted(sorted(paths[i].stem for i in batch) for batch in batches) == [
        ["square"],
        ["tall"],
        ["wide", "wider"],
    ]
    assert predict(run, images, "--out", tmp_path / "one") == 0
    assert predict(run, images, "--out", tmp_path / "two", "--batch-size", "2") == 0
    for name in SIZES:  # no image is padded more in a batch than alone: the same boxes
        single = json.loads((tmp_path / "one" / f"{name}.json").read_text())
        batched = json.loads((tmp_path / "two" / f"{name}.json").read_text())
        assert len(batched) == len(single) == 100
        for got, expected in zip(batched[:20], single[:20], strict=True):
            assert got["bbox"] == pytest.approx(expected["bbox"], abs=0.02)
            assert got["score"] == pytest.approx(expected["score"], abs=1e-4)


def test_colliding_stems_get_distinct_names(run, tmp_path):
    for folder, suffix in (("a", "jpg"), ("b", "jpg"), ("a", "png")):
        (tmp_path / folder).mkdir(exist_ok=True)
        Image.new("RGB", (64, 48), (10, 200, 30)).save(tmp_path / folder / f"cat.{suffix}")
    inputs = [tmp_path / "a" / "cat.jpg", tmp_path / "b" / "cat.jpg", tmp_path / "a" / "cat.png"]
    assert output_names(inputs) == ["cat.jpg", "b-cat.jpg", "cat.png"]
    assert output_names([Path("x/one.jpg"), Path("y/two.jpg")]) == ["one", "two"]
    out = tmp_path / "out"
    assert predict(run, *inputs, "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "b-cat.jpg.json", "b-cat.jpg.png", "cat.jpg.json", "cat.jpg.png", "cat.png.json",
        "cat.png.png",
    ]  # fmt: skip


def test_never_writes_into_the_input_folder(run, images, capsys):
    before = sorted(p.name for p in images.iterdir())
    assert predict(run, images, "--out", images) == 2
    err = capsys.readouterr().err
    assert err.startswith("owp: error:") and "--out holds input images" in err
    assert err.count("\n") == 1
    assert sorted(p.name for p in images.iterdir()) == before


def test_overlays_have_a_score_legend(run, images, tmp_path):
    assert predict(run, images, "--out", tmp_path / "o", "--draw", "5") == 0
    picture = Image.open(tmp_path / "o" / "wide.png")
    h, w = SIZES["wide"]
    assert picture.size == (w, h + LEGEND_HEIGHT)
    strip = torch.from_numpy(np.asarray(picture.convert("RGB")).copy())
    legend = strip[h:]
    assert (legend == 255).all(dim=-1).float().mean() > 0.3  # a white strip with a colour bar
    assert ((legend[..., 2] > 150) & (legend[..., 0] < 100)).any()  # blue: low scores
    assert ((legend[..., 0] > 200) & (legend[..., 2] < 100)).any()  # yellow: high scores


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--top-k", "0"], "--top-k must be a positive integer"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--draw", "-1"], "--draw must be a positive integer"),
        (["--weights", "w.pth"], "--weights is for torchvision: sources"),
    ],
)
def test_bad_options_are_one_line(run, images, tmp_path, argv, message, capsys):
    assert predict(run, images, "--out", tmp_path / "o", *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("owp: error:") and message in err and err.count("\n") == 1


def test_a_source_needs_images(capsys):
    assert main(["predict", "torchvision:fcos_resnet50_fpn", "--out", "o"]) == 2
    assert "name the image files or folders" in capsys.readouterr().err


def test_help_of_export_and_predict_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, contextlib, io\n"
        "from owp.cli import main\n"
        "for command in ('export', 'predict'):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main([command, '--help'])\n"
        "        except SystemExit:\n"
        "            pass\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    """A random fcos_owp_tiny run (class-agnostic and classifying) on a small synthetic set."""
    from owp.data.coco import read_coco_json
    from owp.data.splits import resolve_split
    from owp.data.synthetic import SynthConfig, generate_synthetic_dataset

    folder = tmp_path_factory.mktemp("predict-synth")
    data = folder / "synth"
    generate_synthetic_dataset(
        data, SynthConfig(num_train=2, num_val=3, image_size=96, seed=6, style="flat")
    )
    categories = read_coco_json(data / "val.json")["categories"]
    split = resolve_split(data / "split.yaml", categories, data / "val.json")
    runs = {}
    for name, classes in (("agnostic", None), ("classifying", len(split.base_ids))):
        torch.manual_seed(0)
        options = {"min_size": 96, "max_size": 96, "num_classes": classes}
        model = create_model("fcos_owp_tiny", **options)
        with torch.no_grad():
            for key, parameter in model.named_parameters():
                if key.startswith("head."):
                    parameter.add_(torch.randn_like(parameter) * 0.05)
        config = RunConfig(
            model=ModelConfig(name="fcos_owp_tiny", options=options),
            data=DataConfig(train=str(data), val=str(data), split=str(data / "split.yaml")),
        )
        # Reversed label order: a label index must not be read as the split's.
        extra = {"category_ids": list(reversed(split.base_ids)), "class_names": []}
        save_checkpoint(
            folder / name / "last.pt", model=model, optimizer=None, scheduler=None, step=0,
            config=config.to_dict(), extra=extra if classes else None,
        )  # fmt: skip
        runs[name] = folder / name
    return data, runs


def test_predict_coco_round_trips_into_the_evaluators(synth_run, tmp_path, capsys):
    data, runs = synth_run
    evaluated = tmp_path / "eval"
    argv = ["eval", runs["classifying"], "--out", evaluated, "--device", "cpu", "--batch-size", 1]
    assert main(list(map(str, argv))) == 0
    expected = json.loads((evaluated / "metrics.json").read_text())
    out = tmp_path / "predicted"
    assert predict(runs["classifying"], "--out", out, "--format", "coco") == 0
    document = json.loads((out / "predictions.json").read_text())
    val = json.loads((data / "val.json").read_text())
    assert [i["id"] for i in document["images"]] == [i["id"] for i in val["images"]]
    assert document["info"]["image_ids"] == "dataset"
    # The same boxes as owp eval scored (its budget, 1000, not the model's default 100).
    scored = json.loads((evaluated / "proposals.json").read_text())
    written = [{k: a[k] for k in ("image_id", "bbox", "score")} for a in document["annotations"]]
    assert written == [{k: p[k] for k in ("image_id", "bbox", "score")} for p in scored]
    capsys.readouterr()
    metrics = tmp_path / "proposals.json"
    assert main(["eval-proposals", "--gt", str(data / "val.json"), "--proposals",
                 str(out / "predictions.json"), "--split", str(data / "split.yaml"),
                 "--out", str(metrics)]) == 0  # fmt: skip
    recalls = json.loads(metrics.read_text())
    for key in ("AR@10", "AR@100", "AR@1000", "AR_small@100"):
        assert recalls[key] == expected[key], key
    detections = tmp_path / "detections.json"
    assert main(["eval-detections", "--gt", str(data / "val.json"), "--detections",
                 str(out / "predictions.json"), "--split", str(data / "split.yaml"),
                 "--out", str(detections)]) == 0  # fmt: skip
    # Category ids are the dataset's, through the model's own (reversed) ids.
    assert {a["category_id"] for a in document["annotations"]} <= {
        c["id"] for c in val["categories"]
    }


def test_predict_coco_takes_image_ids_from_data_by_file_name(synth_run, tmp_path, capsys):
    data, runs = synth_run
    val = json.loads((data / "val.json").read_text())
    picked = data / "val" / val["images"][1]["file_name"]
    out = tmp_path / "one"
    assert predict(runs["agnostic"], picked, "--data", data, "--out", out, "--format", "coco") == 0
    document = json.loads((out / "predictions.json").read_text())
    assert [i["id"] for i in document["images"]] == [val["images"][1]["id"]]
    stranger = tmp_path / "stranger.jpg"
    Image.new("RGB", (40, 30)).save(stranger)
    capsys.readouterr()
    code = predict(runs["agnostic"], stranger, "--data", data, "--out", tmp_path / "x",
                   "--format", "coco")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "has no image named stranger.jpg" in err and err.count("\n") == 1
