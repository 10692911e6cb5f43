"""ONNX export: ONNX Runtime gives PyTorch's proposals, on image sizes the export never saw.

Random weights are perturbed (and the box regression biased to real extents) so that scores
are distinct and the ranking comparison means something. One FCOS-OWP export carries all five
scorings (``boxes``, ``boxes:<scoring>``, ...), so that every scoring is compared for the cost of
one export; the RPN proposer is exported through ``owp export``.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from owp.cli import main  # noqa: E402
from owp.config import DataConfig, ModelConfig, RunConfig  # noqa: E402
from owp.engine.checkpoint import save_checkpoint  # noqa: E402
from owp.export import OnnxProposer, export_onnx  # noqa: E402
from owp.models.registry import create_model  # noqa: E402

SCORINGS = ("iou", "centerness", "geomean", "cls*centerness", "cls*iou")
SIZES = [(240, 320), (333, 251)]  # the export traces a 224 x 288 image
RTOL = 1e-4


def perturbed(name: str, **options) -> torch.nn.Module:
    """``name`` with random weights moved off their initialisation: distinct scores, boxes
    with extent."""
    torch.manual_seed(0)
    model = create_model(name, **options)
    with torch.no_grad():
        for key, parameter in model.named_parameters():
            if key.startswith(("head.", "rpn.")):
                parameter.add_(torch.randn_like(parameter) * 0.05)
        if hasattr(model, "head"):
            model.head.regression_head.bbox_reg.bias.fill_(1.0)
            if model.head.classification_head is not None:  # class probabilities near 0.5
                model.head.classification_head.cls_logits.bias.zero_()
        else:
            model.rpn.head.bbox_pred.bias.fill_(0.3)
    return model.eval()


def save_run(model: torch.nn.Module, name: str, folder, **options):
    # Data that does not exist: the run's class names are unknown (no dataset is generated).
    data = DataConfig(train=str(folder / "no-data"), val=str(folder / "no-data"))
    config = RunConfig(model=ModelConfig(name=name, options=options), data=data)
    return save_checkpoint(
        folder / "last.pt",
        model=model,
        optimizer=None,
        scheduler=None,
        step=0,
        config=config.to_dict(),
    )


def assert_same_ranking(got: dict, expected: dict, side: int, *, k: int = 100) -> dict:
    """ONNX Runtime's boxes and scores equal PyTorch's for the top ``k``, in the same order;
    runs of scores equal to ``RTOL`` (ties) are compared as sets. Returns the largest
    differences (boxes relative to the image side)."""
    count = len(expected["scores"])
    assert count > 10 and len(got["scores"]) == count
    count = min(count, k)
    scores, reference = got["scores"][:count], expected["scores"][:count]
    torch.testing.assert_close(scores, reference, rtol=RTOL, atol=0)
    tolerance = RTOL * side
    largest = 0.0  # box difference, each PyTorch box against its ONNX Runtime match
    start = 0
    while start < count:
        end = start + 1
        while end < count and reference[end - 1] - reference[end] <= RTOL * reference[end - 1]:
            end += 1
        mine = got["boxes"][start:end]
        theirs = expected["boxes"][start:end]
        distance = (mine[:, None, :] - theirs[None, :, :]).abs().amax(dim=-1)
        matched = distance <= tolerance
        largest = max(largest, float(distance.amin(dim=0).max()))
        if end - start == 1:
            assert matched.all(), f"box {start}: {mine[0].tolist()} vs {theirs[0].tolist()}"
        else:  # a tie: the same boxes, in any order
            assert matched.any(dim=0).all() and matched.any(dim=1).all(), f"tie {start}:{end}"
        if "labels" in expected and end - start == 1:
            assert got["labels"][start] == expected["labels"][start]
        start = end
    return {
        "box_abs": largest,
        "box_rel_side": largest / side,
        "score_rel": float(((scores - reference).abs() / reference).max()),
    }


def onnx_outputs(proposer: OnnxProposer, image: torch.Tensor, suffix: str) -> dict:
    names = [o.name for o in proposer.session.get_outputs() if o.name.endswith(suffix)]
    if not suffix:
        names = [n for n in names if ":" not in n]
    values = proposer.session.run(names, {"image": image.numpy()})
    return {n.removesuffix(suffix): torch.from_numpy(v) for n, v in zip(names, values, strict=True)}


@pytest.fixture(scope="module")
def fcos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fcos")
    options = {"num_classes": 5, "objectness": ["centerness", "iou"]}
    model = perturbed("fcos_owp_tiny", **options)
    save_run(model, "fcos_owp_tiny", folder, **options)
    names = ["circle", "square", "star", "ring", "cross"]
    path = export_onnx(
        model,
        folder / "fcos.onnx",
        scorings=SCORINGS,
        metadata={"class_names": json.dumps(names)},
    )
    return model, path, folder


@pytest.fixture(scope="module")
def rpn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rpn")
    model = perturbed("rpn_tiny")
    save_run(model, "rpn_tiny", folder)
    out = folder / "rpn.onnx"
    assert main(["export", str(folder / "last.pt"), "--format", "onnx", "--out", str(out)]) == 0
    return model, out, folder


@pytest.mark.parametrize("size", SIZES)
def test_fcos_every_scoring_matches_pytorch(fcos, size):
    model, path, _ = fcos
    proposer = OnnxProposer(path)
    image = torch.rand(3, *size, generator=torch.Generator().manual_seed(size[0]))
    for index, scoring in enumerate(SCORINGS):
        model.postprocess_config = replace(model.postprocess_config, scoring=scoring)
        with torch.no_grad():
            expected = model([image])[0]
        got = onnx_outputs(proposer, image, "" if index == 0 else f":{scoring}")
        assert set(got) == {"boxes", "scores", "objectness", "labels", "class_scores"}
        assert_same_ranking(got, expected, max(size))
    model.postprocess_config = replace(model.postprocess_config, scoring=SCORINGS[0])


@pytest.mark.parametrize("size", SIZES)
def test_rpn_matches_pytorch(rpn, size):
    model, path, _ = rpn
    image = torch.rand(3, *size, generator=torch.Generator().manual_seed(7 + size[1]))
    with torch.no_grad():
        expected = model([image])[0]
    got = OnnxProposer(path)([image])[0]
    assert set(got) == {"boxes", "scores", "objectness"}
    assert_same_ranking(got, expected, max(size))


def test_the_graph_keeps_the_resize_of_extreme_aspect_ratios(rpn):
    """torchvision floors side x scale in doubles (a 16 x 149 image becomes 143 x 1332, not
    1333, at 800 / 1333): the graph resizes identically, so the boxes agree."""
    model, path, _ = rpn
    image = torch.rand(3, 40, 373, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model([image])[0]
    got = OnnxProposer(path)([image])[0]
    assert_same_ranking(got, expected, 373)


def test_metadata_names_the_model_and_its_outputs(fcos, rpn):
    from owp import __version__

    _, path, _ = fcos
    proposer = OnnxProposer(path)
    meta = proposer.metadata
    assert meta["version"] == __version__ and meta["scorings"] == list(SCORINGS)
    assert meta["config"]["num_classes"] == 5 and meta["config"]["depth"] == 18
    assert proposer.class_names == ["circle", "square", "star", "ring", "cross"]
    outputs = [o.name for o in proposer.session.get_outputs()]
    assert outputs[:5] == ["boxes", "scores", "objectness", "labels", "class_scores"]
    assert "boxes:cls*iou" in outputs and len(outputs) == 25
    (image,) = proposer.session.get_inputs()
    assert image.name == "image" and image.shape[0] == 3 and isinstance(image.shape[1], str)
    rpn_meta = OnnxProposer(rpn[1]).metadata
    assert rpn_meta["model"] == "rpn_tiny" and rpn_meta["scorings"] == ["rpn"]


def test_predict_from_onnx_writes_what_the_run_writes(fcos, tmp_path):
    model, path, folder = fcos
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    generator = torch.Generator().manual_seed(11)
    for name, (h, w) in {"a": (120, 170), "b": (150, 100)}.items():
        pixels = (torch.rand(h, w, 3, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(images / f"{name}.png")
    ran, exported = tmp_path / "run", tmp_path / "onnx"
    assert main(["predict", str(folder / "last.pt"), str(images), "--out", str(ran)]) == 0
    assert main(["predict", str(path), str(images), "--out", str(exported)]) == 0
    for name in ("a", "b"):
        theirs = json.loads((ran / f"{name}.json").read_text())
        mine = json.loads((exported / f"{name}.json").read_text())
        assert len(mine) == len(theirs) > 10
        for got, expected in zip(mine[:20], theirs[:20], strict=True):
            assert got["score"] == pytest.approx(expected["score"], rel=RTOL, abs=1e-5)
            assert got["bbox"] == pytest.approx(expected["bbox"], abs=0.05)
        assert all(r["label"] in ("circle", "square", "star", "ring", "cross") for r in mine)
        assert (exported / f"{name}.png").is_file()


def test_two_stage_models_that_do_not_export_say_why(tmp_path, capsys):
    for name in ("oln_tiny", "double_head_tiny"):
        run = tmp_path / name
        save_run(create_model(name), name, run)
        assert main(["export", str(run / "last.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("owp: error:") and "does not export to ONNX" in err
        assert "MultiScaleRoIAlign" in err and err.count("\n") == 1
    run = tmp_path / "rpn-roi"
    save_run(create_model("rpn_tiny", roi_heads=True, scoring="roi"), "rpn_tiny", run,
             roi_heads=True, scoring="roi")  # fmt: skip
    assert main(["export", str(run / "last.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "only scoring 'rpn' exports" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "/no/such/run", "--out", "m.onnx"], "not found"),
        (["export", "RUN", "--out", "model.pt"], "must end in .onnx"),
        (["export", "RUN", "--out", "m.onnx", "--scoring", "magic"], "unknown scoring 'magic'"),
        (["export", "RUN", "--out", "m.onnx", "--opset", "9"], "--opset must be between"),
        (["export", "RUN", "--out", "m.onnx", "--weights", "w.pth"], "--weights is for"),
        (["predict", "NOT_ONNX", "x.png", "--out", "o"], "not a readable ONNX file"),
        (["predict", "NOT_OWP", "x.png", "--out", "o"], "not an owp export"),
        (["predict", "ONNX", "x.png", "--out", "o", "--scoring", "iou"], "options built in"),
        (["eval", "ONNX"], "owp eval runs PyTorch models"),
    ],
)
def test_bad_export_input_is_one_line(argv, message, fcos, tmp_path, capsys, monkeypatch):
    import onnx

    monkeypatch.chdir(tmp_path)
    _, path, folder = fcos
    (tmp_path / "x.png").write_bytes(b"")
    (tmp_path / "bad.onnx").write_text("not a graph")
    value = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    output = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    identity = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph([identity], "g", [value], [output])
    onnx.save(onnx.helper.make_model(graph), tmp_path / "plain.onnx")
    replacements = {
        "RUN": str(folder / "last.pt"),
        "NOT_ONNX": str(tmp_path / "bad.onnx"),
        "NOT_OWP": str(tmp_path / "plain.onnx"),
        "ONNX": str(path),
    }
    assert main([replacements.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("owp: error:") and message in err, err
    assert "Traceback" not in err and err.count("\n") == 1


def test_an_existing_file_is_kept_without_force(fcos, tmp_path, capsys):
    _, _, folder = fcos
    out = tmp_path / "m.onnx"
    out.write_text("keep me")
    assert main(["export", str(folder / "last.pt"), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_text() == "keep me"
