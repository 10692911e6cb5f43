"""Mixed precision, channels-last and torch.compile: the options, fp32 targets under autocast,
losses within tolerance of fp32, exact resume under bf16, and compile's eager fallback."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch

import owp.models.fcos.model as fcos_module
from owp.config import RunConfig, apply_overrides, config_from_dict, load_preset
from owp.engine.checkpoint import load_checkpoint
from owp.engine.precision import (
    autocast,
    compile_parts,
    grad_scaler,
    resolve_amp,
    use_channels_last,
)
from owp.engine.trainer import Trainer, train
from owp.errors import OwpInputError
from owp.models.fcos.assign import assign, pad_targets
from owp.models.fcos.points import make_points
from owp.models.fcos.targets import centerness_targets, gather_boxes, iou_targets, ltrb_targets
from owp.models.registry import create_model
from owp.workflows.study import config_differences

CPU = torch.device("cpu")
# bf16 keeps 8 bits of mantissa (relative step 2**-8 = 0.4 %); through the tiny network's
# convolutions the losses of a random-init model move by well under 2 %.
LOSS_RTOL = 2e-2


def tiny_model(**options) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(
        "fcos_owp_tiny",
        min_size=96,
        max_size=128,
        objectness=("centerness", "iou"),
        num_classes=3,
        **options,
    )


def batch(seed: int = 0) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(seed)
    images = [
        torch.rand(3, 96, 128, generator=generator),
        torch.rand(3, 112, 96, generator=generator),
    ]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [50.0, 20.0, 120.0, 90.0]]),
            "labels": torch.tensor([0, 2]),
        },
        {"boxes": torch.tensor([[5.0, 5.0, 40.0, 100.0]]), "labels": torch.tensor([1])},
    ]
    return images, targets


def test_amp_choices_resolve_per_device_and_only_fp16_scales():
    assert resolve_amp("auto", CPU) == "none"
    assert resolve_amp("bf16", CPU) == "bf16" and resolve_amp("fp16", CPU) == "fp16"
    assert resolve_amp("none", CPU) == "none"
    assert resolve_amp(True, CPU) == "none" and resolve_amp(False, CPU) == "none"  # legacy
    with pytest.raises(ValueError, match="auto, none, fp16, bf16"):
        resolve_amp("fp8", CPU)
    assert grad_scaler(CPU, "fp16").is_enabled()
    assert not grad_scaler(CPU, "bf16").is_enabled() and not grad_scaler(CPU, "none").is_enabled()
    with autocast(CPU, "bf16"):
        assert (
            torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == torch.bfloat16
        )
    with autocast(CPU, "none"):
        assert torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == torch.float32


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.amp=fp8", "train.amp must be one of auto, none, fp16, bf16, got 'fp8'"),
        ("train.amp=1", "train.amp must be a string, got 1"),
        ("train.channels_last=3", "train.channels_last must be true or false, got 3"),
        ("model.compile=2", "model.compile must be true or false, got 2"),
    ],
)
def test_bad_precision_options_are_refused_at_load(override, message):
    with pytest.raises(OwpInputError, match=message):
        apply_overrides(load_preset("demo"), [override])


def test_options_load_and_old_amp_booleans_still_load_and_continue():
    config = apply_overrides(
        load_preset("demo"), ["train.amp=bf16", "train.channels_last=true", "model.compile=true"]
    )
    assert (config.train.amp, config.train.channels_last, config.model.compile) == (
        "bf16",
        True,
        True,
    )
    assert "compile" not in config.model.options  # not a model option
    assert config_from_dict({"train": {"amp": True}}).train.amp == "auto"
    assert config_from_dict({"train": {"amp": False}}).train.amp == "none"
    # A run saved before these options (amp a boolean, no channels_last / compile keys) is the
    # run a default config asks for: a study continues it.
    old = RunConfig().to_dict()
    old["train"]["amp"] = True
    del old["train"]["channels_last"], old["model"]["compile"]
    assert config_differences(old, RunConfig().to_dict()) == []
    old["train"]["amp"] = False
    assert config_differences(old, RunConfig().to_dict()) == ["train.amp 'none' -> 'auto'"]


def test_assignment_and_targets_are_bit_identical_under_autocast():
    points = make_points([(12, 16), (6, 8), (3, 4)], image_size=(96, 128), strides=(8, 16, 32),
                         size_ranges=((0, 32), (32, 64), (64, float("inf"))))  # fmt: skip
    boxes, valid, ignore, _ = pad_targets(
        [torch.tensor([[10.0, 12.0, 60.0, 70.0], [3.5, 2.25, 120.0, 90.0]]),
         torch.tensor([[5.0, 5.0, 40.0, 80.0]])]
    )  # fmt: skip
    pred = torch.rand(2, points.xy.shape[0], 4, generator=torch.Generator().manual_seed(0)) * 40

    def targets():
        matched = assign(points, boxes, valid, ignore, center_radius=1.5)
        ltrb = ltrb_targets(points, gather_boxes(boxes, matched))
        return matched, ltrb, centerness_targets(ltrb), iou_targets(pred, ltrb, threshold=0.3)

    plain = targets()
    for precision in ("bf16", "fp16"):
        with autocast(CPU, precision):
            mixed = targets()
        for expected, got in zip(plain, mixed, strict=True):
            assert got.dtype == expected.dtype and torch.equal(got, expected)
    assert plain[2].dtype == plain[3].dtype == torch.float32
    assert (plain[0] >= 0).any() and (plain[3] > 0).any()  # real work was compared


def test_fcos_losses_under_bf16_autocast_match_fp32_with_fp32_targets(monkeypatch):
    seen: dict[str, list] = {"assign": [], "targets": []}
    original_assign = fcos_module.assign_targets
    original_loss = fcos_module.objectness_loss

    def recording_assign(*args, **kwargs):
        seen["assign"].append(original_assign(*args, **kwargs))
        return seen["assign"][-1]

    def recording_loss(logits, targets, normalizer):
        seen["targets"].append((logits.dtype, targets))
        return original_loss(logits, targets, normalizer)

    monkeypatch.setattr(fcos_module, "assign_targets", recording_assign)
    monkeypatch.setattr(fcos_module, "objectness_loss", recording_loss)
    model = tiny_model().train()
    images, targets = batch()
    fp32 = model(images, targets)
    fp32_seen = {key: list(value) for key, value in seen.items()}
    for value in seen.values():
        value.clear()
    with autocast(CPU, "bf16"):
        bf16 = model(images, targets)
    assert fp32.keys() == bf16.keys() == set(model.LOSS_PARTS)
    for name, value in fp32.items():
        assert bf16[name].dtype == torch.float32
        assert bf16[name].item() == pytest.approx(value.item(), rel=LOSS_RTOL), name
    for expected, got in zip(fp32_seen["assign"], seen["assign"], strict=True):
        assert torch.equal(expected, got)
    (_, ctr_fp32), (_, iou_fp32) = fp32_seen["targets"]
    (ctr_dtype, ctr_bf16), (iou_dtype, iou_bf16) = seen["targets"]
    assert ctr_dtype == iou_dtype == torch.float32  # logits reach the BCE in fp32
    assert ctr_bf16.dtype == iou_bf16.dtype == torch.float32
    assert torch.equal(ctr_bf16, ctr_fp32)  # centerness: from the boxes alone
    # The IoU target is that of the predicted box, which bf16 moves a little.
    torch.testing.assert_close(iou_bf16, iou_fp32, rtol=0, atol=0.05)


def test_channels_last_gives_the_same_outputs_and_losses():
    images, targets = batch()
    reference = tiny_model().eval()
    model = use_channels_last(tiny_model().eval())
    conv = model.backbone.body.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    with torch.inference_mode():
        expected, got = reference(images), model(images)
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(b["boxes"], a["boxes"], rtol=0, atol=1e-3)
        torch.testing.assert_close(b["scores"], a["scores"], rtol=0, atol=1e-4)
    losses, cl_losses = reference.train()(images, targets), model.train()(images, targets)
    for name, value in losses.items():
        assert cl_losses[name].item() == pytest.approx(value.item(), rel=1e-4), name
    assert model.state_dict().keys() == reference.state_dict().keys()


def test_compiled_model_matches_eager_or_is_skipped(caplog):
    images, _ = batch()
    eager = tiny_model().eval()
    model = tiny_model().eval()
    # aot_eager traces the parts as the default inductor backend does (Dynamo + AOTAutograd)
    # without generating C++, which takes minutes on a small CPU; CUDA tests use inductor.
    with caplog.at_level(logging.WARNING, logger="owp.engine.precision"):
        assert compile_parts(model, backend="aot_eager") == ["backbone", "head"]
        with torch.inference_mode():
            expected, got = eager(images), model(images)
    if "torch.compile failed" in caplog.text:
        pytest.skip(f"torch.compile is not supported here: {caplog.text.strip()}")
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(b["boxes"], a["boxes"], rtol=0, atol=1e-3)
        torch.testing.assert_close(b["scores"], a["scores"], rtol=0, atol=1e-4)
    assert model.state_dict().keys() == eager.state_dict().keys()


@pytest.mark.parametrize("where", ["compiling", "running"])
def test_a_failing_compile_falls_back_to_eager_with_one_warning(monkeypatch, caplog, where):
    def broken_compile(function, **kwargs):
        if where == "compiling":
            raise RuntimeError("Python 3.99 is not supported\nsecond line")

        def fails(*args, **kwargs):
            raise RuntimeError("InductorError: no working C++ compiler found\nmore")

        return fails

    images, _ = batch()
    with torch.inference_mode():
        expected = tiny_model().eval()(images)
    model = tiny_model().eval()
    monkeypatch.setattr(torch, "compile", broken_compile)
    with caplog.at_level(logging.WARNING, logger="owp.engine.precision"):
        compiled = compile_parts(model)
        with torch.inference_mode():
            first, second = model(images), model(images)
    assert compiled == ([] if where == "compiling" else ["backbone", "head"])
    warnings = [r.getMessage() for r in caplog.records if r.name == "owp.engine.precision"]
    assert len(warnings) == 1 and "running the model eagerly" in warnings[0]
    assert "\n" not in warnings[0] and "more" not in warnings[0] and "second" not in warnings[0]
    for output in (first, second):
        for a, b in zip(expected, output, strict=True):
            assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


@pytest.fixture(scope="module")
def mini_set(synthetic_set_factory):
    return synthetic_set_factory(num_train=8, num_val=2, image_size=96, seed=3)


def test_bf16_channels_last_training_resumes_exactly(mini_set, tmp_path, monkeypatch):
    config = apply_overrides(
        load_preset("demo"),
        [
            f"data.train={mini_set}",
            f"data.val={mini_set}",
            "data.num_workers=0",
            "model.min_size=96",
            "model.max_size=96",
            "train.batch_size=2",
            "train.warmup_iters=1",
            "train.max_iters=4",
            "train.checkpoint_period=100",
            "train.amp=bf16",
            "train.channels_last=true",
            "eval.max_dets=[10]",
        ],
    )
    config = replace(config, train=replace(config.train, device="cpu"))
    straight = Trainer(config, tmp_path / "straight", progress=False)
    assert straight.precision == "bf16" and not straight.scaler.is_enabled()
    straight.run()
    original = Trainer.run_step

    def interrupt_at_step_3(self, *args):
        if self.step == 2:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(Trainer, "run_step", interrupt_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(Trainer, "run_step", original)
    train(config, tmp_path / "resumed", resume=True, progress=False)
    first = load_checkpoint(tmp_path / "straight" / "last.pt")
    second = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert first["step"] == second["step"] == 4 and first["scaler"] is None
    for key, value in first["model"].items():
        assert torch.equal(value, second["model"][key]), key
