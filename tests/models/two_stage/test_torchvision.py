"""torchvision detectors as owp model sources, offline: random-weight torchvision models are saved
where the loader looks (a temporary TORCH_HOME), then loaded through owp and compared with
calling torchvision directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

import owp
from conftest import COCO_MINI
from owp.cli import main
from owp.data.images import read_image_tensor
from owp.engine.runs import load_source
from owp.errors import OwpInputError
from owp.models.two_stage.torchvision import init_state, weights_enum, weights_file

SMALL = {"min_size": 224, "max_size": 320}  # torchvision's own resize, at a CPU-friendly size


def hub_file(name: str) -> Path:
    url = weights_enum(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]


def random_fcos(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.detection.fcos_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91, **kwargs
    )
    with torch.no_grad():  # off its init: many scores above 0.2, boxes with extent
        model.head.classification_head.cls_logits.bias.zero_()
        for parameter in model.head.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
        model.head.regression_head.bbox_reg.bias.fill_(1.0)
    return model.eval()


def random_faster_rcnn(builder: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models.detection, builder)(
        weights=None, weights_backbone=None, num_classes=91, **kwargs
    )
    with torch.no_grad():
        for parameter in model.rpn.head.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    return model.eval()


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    """A torch hub cache holding random torchvision FCOS and Faster R-CNN (v1) weights; yields
    those torchvision models (resizing to ``SMALL``)."""
    home = tmp_path_factory.mktemp("torch-home")
    models = {
        "fcos_resnet50_fpn": random_fcos(**SMALL),
        "fasterrcnn_resnet50_fpn": random_faster_rcnn("fasterrcnn_resnet50_fpn", **SMALL),
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(home))
        for name, model in models.items():
            file = hub_file(name)
            file.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), file)
        yield models


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    generator = torch.Generator().manual_seed(2)
    for name, (h, w) in {"street": (120, 160), "desk": (100, 90)}.items():
        pixels = (torch.rand(h, w, 3, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{name}.jpg")
    return folder


def image_tensor(h: int, w: int, seed: int) -> torch.Tensor:
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


def test_fcos_source_gives_torchvision_detections(torch_home):
    model = owp.load("torchvision:fcos_resnet50_fpn", scoring="cls*centerness", **SMALL)
    reference = torch_home["fcos_resnet50_fpn"]
    batch = [image_tensor(240, 320, 1)]
    with torch.no_grad():
        expected, ours = reference(batch), model(batch)
    for theirs, mine in zip(expected, ours, strict=True):
        assert len(theirs["boxes"]) > 10
        torch.testing.assert_close(mine["boxes"], theirs["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(mine["scores"], theirs["scores"], atol=1e-4, rtol=0)
        assert torch.equal(mine["labels"], theirs["labels"])  # torchvision's label = COCO id


def test_fcos_source_proposals_are_ranked_by_centerness(torch_home):
    model = owp.load("torchvision:fcos_resnet50_fpn", **SMALL)
    assert model.postprocess_config.scoring == "centerness"
    image = image_tensor(240, 320, 3)
    with torch.no_grad():
        (output,) = model([image])
        features = list(model.backbone(model.transform([image])[0].tensors).values())
        centerness = torch.sigmoid(model.head(features)["bbox_ctrness"][0, :, 0])
    assert len(output["boxes"]) == 100
    assert torch.equal(output["scores"], output["objectness"])
    assert (output["scores"][:-1] >= output["scores"][1:]).all()
    # every score is the centerness of some location (class scores play no part)
    gap = (output["scores"][:, None] - centerness[None, :]).abs().amin(dim=1)
    assert float(gap.max()) < 1e-6


@pytest.mark.parametrize("builder", ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2"])
def test_faster_rcnn_sources_give_its_rpn_objectness(torch_home, builder, tmp_path):
    reference = torch_home.get(builder)
    weights = None
    if reference is None:  # v2, from a local file instead of the hub cache
        reference = random_faster_rcnn(builder, **SMALL)
        weights = tmp_path / "v2.pth"
        torch.save(reference.state_dict(), weights)
    model = owp.load(f"torchvision:{builder}", weights=weights, **SMALL)
    image = image_tensor(200, 260, 4)
    with torch.no_grad():
        (output,) = model([image])
    (expected,) = owp.rpn_proposals(reference, [image], nms_thresh=0.7, top_n=100)
    assert len(output["boxes"]) == len(expected["boxes"]) == 100
    torch.testing.assert_close(output["boxes"], expected["boxes"], atol=1e-4, rtol=0)
    torch.testing.assert_close(output["scores"], expected["scores"], atol=1e-6, rtol=0)
    assert torch.equal(output["objectness"], output["scores"])


def test_faster_rcnn_source_selects_per_config_from_one_rpn_pass(torch_home):
    from dataclasses import replace

    model = owp.load("torchvision:fasterrcnn_resnet50_fpn", **SMALL)
    configs = [
        replace(model.postprocess_config, nms_thresh=0.7, post_nms_top_n=100),
        replace(model.postprocess_config, nms_thresh=0.5, post_nms_top_n=20),
    ]
    batch = [image_tensor(200, 260, 5), image_tensor(200, 260, 6)]
    together = model.detect_per_config(batch, configs)
    for config, outputs in zip(configs, together, strict=True):
        model.postprocess_config = config
        with torch.no_grad():
            alone = model(batch)
        for mine, expected in zip(outputs, alone, strict=True):
            assert len(mine["boxes"]) == config.post_nms_top_n
            assert torch.equal(mine["boxes"], expected["boxes"])
            assert torch.equal(mine["scores"], expected["scores"])


def test_predict_and_eval_through_the_cli(torch_home, images, tmp_path, monkeypatch):
    import owp.models.two_stage.torchvision as sources

    for options in (sources.FCOS_OPTIONS, sources.FASTER_RCNN_OPTIONS):
        for key, value in SMALL.items():  # the commands, at a CPU-friendly size
            monkeypatch.setitem(options, key, value)
    out = tmp_path / "fcos"
    assert main(["predict", "torchvision:fcos_resnet50_fpn", str(images), "--out", str(out),
                 "--top-k", "30", "--format", "coco"]) == 0  # fmt: skip
    document = json.loads((out / "predictions.json").read_text())
    assert [i["file_name"] for i in document["images"]] == ["desk.jpg", "street.jpg"]
    assert [(i["width"], i["height"]) for i in document["images"]] == [(90, 100), (160, 120)]
    assert len(document["annotations"]) == 60
    names = {c["id"]: c["name"] for c in document["categories"]}
    assert names[1] == "person" and names[18] == "dog"  # torchvision's labels are COCO ids
    assert (out / "desk.png").is_file() and (out / "street.png").is_file()

    from owp.testing import random_coco_problem

    gt, _ = random_coco_problem(num_images=2, num_categories=3, max_gt=4, seed=1)
    for info in gt["images"]:
        Image.new("RGB", (info["width"], info["height"]), (90, 120, 150)).save(
            images / info["file_name"]
        )
    ann = tmp_path / "gt.json"
    ann.write_text(json.dumps(gt))
    split = tmp_path / "every-class-novel.yaml"
    split.write_text("name: every-class-novel\nbase: []\n")
    out = tmp_path / "eval"
    argv = ["eval", "torchvision:fasterrcnn_resnet50_fpn", "--data", str(ann),
            "--images", str(images), "--split", str(split), "--max-dets", "10,100",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scoring"] == "rpn" and "AR@100" in metrics
    proposals = json.loads((out / "proposals.json").read_text())
    assert {p["image_id"] for p in proposals} == {1, 2}


def test_eval_of_torchvision_detections_writes_coco_ids(torch_home, images, tmp_path, monkeypatch):
    """torchvision's labels are COCO ids: evaluated on a split with 20 base classes, a label
    >= 20 neither crashes nor is renamed through the split (car stays 3, not motorcycle)."""
    import owp.models.two_stage.torchvision as sources

    for key, value in SMALL.items():
        monkeypatch.setitem(sources.FCOS_OPTIONS, key, value)
    names = weights_enum("fcos_resnet50_fpn").meta["categories"]
    categories = [
        {"id": i, "name": n} for i, n in enumerate(names) if n not in ("__background__", "N/A")
    ]
    files = sorted(images.glob("*.jpg"))
    gt = {
        "images": [
            {"id": 10 + i, "file_name": f.name, "width": w, "height": h}
            for i, (f, (w, h)) in enumerate(zip(files, [(90, 100), (160, 120)], strict=True))
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 10,
                "category_id": 3,
                "bbox": [5, 5, 40, 30],
                "area": 1200,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 11,
                "category_id": 88,
                "bbox": [9, 9, 50, 50],
                "area": 2500,
                "iscrowd": 0,
            },
        ],  # fmt: skip
        "categories": categories,
    }
    ann = tmp_path / "coco.json"
    ann.write_text(json.dumps(gt))
    out = tmp_path / "eval"
    argv = ["eval", "torchvision:fcos_resnet50_fpn", "--data", str(ann), "--images",
            str(images), "--split", "coco-voc", "--scoring", "cls*centerness",
            "--max-dets", "10,100", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    detections = json.loads((out / "detections.json").read_text())
    ids = {d["category_id"] for d in detections}
    assert max(ids) > 20 and ids <= set(range(1, 91))
    # The same labels as the model gives directly: label i is COCO id i.
    model = owp.load("torchvision:fcos_resnet50_fpn", scoring="cls*centerness", post_nms_top_n=100)
    with torch.inference_mode():  # one image per call, as the evaluation batched them
        outputs = [model([read_image_tensor(f)])[0] for f in files]
    for image_id, output in zip((10, 11), outputs, strict=True):
        written = sorted(d["category_id"] for d in detections if d["image_id"] == image_id)
        assert written == sorted(output["labels"].tolist())
    # A dataset whose category 1 is not torchvision's person is refused, naming both.
    categories[0]["name"] = "aardvark"
    ann.write_text(json.dumps(gt))
    assert main([*argv, "--force"]) == 2


def test_a_missing_weights_file_names_the_file_and_its_url(tmp_path, images, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    assert main(["predict", "torchvision:fasterrcnn_resnet50_fpn_v2", str(images),
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    file = "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth"
    expected = tmp_path / "empty" / "hub" / "checkpoints" / file
    assert err.startswith(f"owp: error: {expected}:") and err.count("\n") == 1
    assert f"https://download.pytorch.org/models/{file}" in err
    with pytest.raises(OwpInputError, match="weights file not found"):
        weights_file("fcos_resnet50_fpn", tmp_path / "nope.pth")


@pytest.mark.parametrize(
    ("source", "options", "message"),
    [
        ("torchvision:retinanet", {}, "unknown model source"),
        ("torchvision:fcos_resnet50_fpn", {"num_classes": 20}, "fixed by torchvision's weights"),
        ("torchvision:fasterrcnn_resnet50_fpn", {"magic": 1}, "unknown option(s)"),
        ("torchvision:fasterrcnn_resnet50_fpn", {"scoring": "roi"}, "unknown scoring"),
    ],
)
def test_bad_sources_and_options(torch_home, source, options, message):
    with pytest.raises(OwpInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_source(source, **options)


def test_wrong_weights_are_named(torch_home, tmp_path):
    file = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, file)
    with pytest.raises(OwpInputError, match="not fcos_resnet50_fpn"):
        load_source("torchvision:fcos_resnet50_fpn", weights=file)
    file.write_bytes(b"garbage")
    with pytest.raises(OwpInputError, match="cannot read weights"):
        load_source("torchvision:fasterrcnn_resnet50_fpn", weights=file)


def test_init_state_starts_a_class_agnostic_iou_model_from_torchvision_fcos(torch_home):
    model = owp.create_model(
        "fcos_owp_r50_fpn", objectness=["centerness", "iou"], backbone_norm="frozen"
    )
    state = init_state("torchvision:fcos_resnet50_fpn", model)["model"]
    assert not any(key.startswith("head.classification_head.") for key in state)
    result = model.load_state_dict(state, strict=False)
    assert result.unexpected_keys == []
    assert set(result.missing_keys) == {
        "head.regression_head.bbox_iou.weight",
        "head.regression_head.bbox_iou.bias",
    }
    reference = torch_home["fcos_resnet50_fpn"]
    torch.testing.assert_close(
        model.backbone.body.layer1[0].conv1.weight, reference.backbone.body.layer1[0].conv1.weight
    )


def test_the_fcos_source_exports(torch_home):
    from owp.export.onnx import FCOSPipeline, RPNPipeline, pipeline_for

    assert isinstance(pipeline_for(owp.load("torchvision:fcos_resnet50_fpn")), FCOSPipeline)
    faster = owp.load("torchvision:fasterrcnn_resnet50_fpn")
    assert isinstance(pipeline_for(faster), RPNPipeline)


def test_export_keeps_the_scorings_threshold_as_predict_does(torch_home, tmp_path, monkeypatch):
    """owp export --scoring cls*centerness exports torchvision's 0.2 score threshold, as
    owp predict --scoring cls*centerness applies it: the same boxes."""
    import owp.export.onnx
    import owp.models.two_stage.torchvision as sources

    for key, value in SMALL.items():
        monkeypatch.setitem(sources.FCOS_OPTIONS, key, value)
    exported = {}

    def capture(model, out, **options):  # the graph itself is tested in tests/export/test_export.py
        exported.update(model=model, **options)
        Path(out).write_bytes(b"onnx")
        return Path(out)

    monkeypatch.setattr(owp.export.onnx, "export_onnx", capture)
    out = tmp_path / "fcos.onnx"
    argv = ["export", "torchvision:fcos_resnet50_fpn", "--scoring", "cls*centerness"]
    assert main([*argv, "--out", str(out)]) == 0
    pipeline = owp.export.onnx.pipeline_for(exported["model"], scorings=exported["scorings"])
    image = image_tensor(100, 140, seed=3)
    with torch.inference_mode():
        boxes = pipeline(image)[0]
        expected = owp.load("torchvision:fcos_resnet50_fpn", scoring="cls*centerness")([image])[0]
    assert exported["model"].postprocess_config.score_thresh == 0.2
    assert boxes.shape == expected["boxes"].shape
    torch.testing.assert_close(boxes, expected["boxes"], atol=1e-3, rtol=0)


def test_the_practical_preset_starts_from_torchvision_fcos(torch_home):
    from owp.config import load_preset
    from owp.engine.recipes import RECIPES

    config = load_preset("coco-all-iou-from-torchvision")
    assert config.train.init == "torchvision:fcos_resnet50_fpn"
    assert config.train.recipe in RECIPES and config.train.recipe == "objectness"
    assert (config.train.max_iters, config.train.batch_size) == (7500, 16)
    assert config.data.split == "all" and "num_classes" not in config.model.options
    assert config.model.options["scoring"] in ("iou", "geomean")
    assert "not an open-world result" in config.description
    model = owp.create_model(config.model.name, **config.model.options)
    result = model.load_state_dict(init_state(config.train.init, model)["model"], strict=False)
    assert result.unexpected_keys == [] and all("bbox_iou" in k for k in result.missing_keys)


def test_the_trainer_starts_from_a_torchvision_source(torch_home, tmp_path):
    from dataclasses import replace

    from owp.config import load_preset
    from owp.engine.trainer import Trainer

    config = load_preset("coco-all-iou-from-torchvision")
    config = replace(config, train=replace(config.train, device="cpu", amp=False))
    trainer = Trainer(config, tmp_path / "run", progress=False)
    theirs = torch_home["fcos_resnet50_fpn"].state_dict()
    ours = trainer.model.state_dict()
    for key in ("backbone.body.layer4.2.conv3.weight", "head.regression_head.bbox_reg.weight"):
        assert torch.equal(ours[key], theirs[key]), key


def test_the_practical_preset_trains_its_objectness_branches_on_coco_mini(torch_home, tmp_path):
    if not COCO_MINI.is_dir():
        pytest.skip("coco-mini is not here (../shared/data/coco-mini)")
    from owp.engine.checkpoint import load_checkpoint

    coco = json.loads((COCO_MINI / "annotations.json").read_text())
    kept = {img["id"] for img in coco["images"][:3]}
    val = tmp_path / "val.json"
    val.write_text(
        json.dumps(
            {
                **coco,
                "images": [img for img in coco["images"] if img["id"] in kept],
                "annotations": [a for a in coco["annotations"] if a["image_id"] in kept],
            }
        )
    )
    run = tmp_path / "run"
    settings = {
        "data.train": COCO_MINI / "annotations.json",
        "data.train_images": COCO_MINI / "images",
        "data.val": val,
        "data.val_images": COCO_MINI / "images",
        "data.num_workers": 0,
        "train.max_iters": 3,
        "train.batch_size": 2,
        "train.warmup_iters": 1,
        "train.steps": "[]",
        "train.checkpoint_period": 3,
        "model.min_size": 128,
        "model.max_size": 160,
        "eval.max_dets": "[10, 100]",
    }
    argv = ["train", "--preset", "coco-all-iou-from-torchvision", "--out", str(run)]
    for key, value in settings.items():
        argv += ["--set", f"{key}={value}"]
    assert main(argv) == 0
    trained = load_checkpoint(run / "last.pt")["model"]
    theirs = torch_home["fcos_resnet50_fpn"].state_dict()
    branches = ("head.regression_head.bbox_ctrness.", "head.regression_head.bbox_iou.")
    for key, value in trained.items():
        if key in theirs and not key.startswith(branches):
            assert torch.equal(value, theirs[key]), key  # torchvision's, untouched
    ctrness = "head.regression_head.bbox_ctrness.weight"
    assert not torch.equal(trained[ctrness], theirs[ctrness])
    assert json.loads((run / "eval" / "metrics.json").read_text())["AR@100"] >= 0
