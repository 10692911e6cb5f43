"""On a CUDA GPU (skipped elsewhere; ``benchmarks/gpu_check.sh`` runs them): fp16 and bf16 AMP
training steps, resume under AMP, inductor-compiled and channels-last bf16 inference."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from conftest import small_run_config
from owp.engine.checkpoint import load_checkpoint
from owp.engine.precision import compile_parts, resolve_amp, use_channels_last
from owp.engine.trainer import Trainer, train
from owp.models.registry import create_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def mini_set(synthetic_set_factory):
    return synthetic_set_factory(num_train=16, num_val=4, image_size=128, seed=3)


def mini_config(folder, amp: str, max_iters: int):
    config = small_run_config(
        "demo",
        folder,
        128,
        "train.batch_size=4",
        "train.warmup_iters=2",
        f"train.max_iters={max_iters}",
        "train.checkpoint_period=100",
        f"train.amp={amp}",
    )
    return replace(config, train=replace(config.train, device="cuda"))


def test_auto_amp_is_bf16_on_gpus_that_have_it():
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert resolve_amp("auto", CUDA) == expected


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_amp_training_steps_run_and_fp16_keeps_its_scaler(mini_set, tmp_path, amp):
    trainer = Trainer(mini_config(mini_set, amp, 4), tmp_path / amp, progress=False)
    assert trainer.precision == amp and trainer.scaler.is_enabled() == (amp == "fp16")
    result = trainer.run()
    state = load_checkpoint(result.checkpoint)
    assert state["step"] == 4
    assert (state["scaler"] is not None) == (amp == "fp16")
    for value in state["model"].values():
        assert value.dtype != torch.bfloat16 and value.dtype != torch.float16  # fp32 master weights
        assert torch.isfinite(value.float()).all()


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_resume_under_amp_continues_the_run(mini_set, tmp_path, monkeypatch, amp):
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    config = mini_config(mini_set, amp, 6)
    train(config, tmp_path / "straight", progress=False)
    original = Trainer.run_step

    def interrupt_at_step_4(self, *args):
        if self.step == 3:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(Trainer, "run_step", interrupt_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", progress=False)
    interrupted = load_checkpoint(tmp_path / "resumed" / "last.pt")
    monkeypatch.setattr(Trainer, "run_step", original)
    trainer = Trainer(config, tmp_path / "resumed", progress=False)
    trainer.resume()
    if amp == "fp16":  # the loss scale and its growth tracker come back
        assert trainer.scaler.state_dict() == interrupted["scaler"]
    trainer.run()
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert straight["step"] == resumed["step"] == 6
    # Atomics in some CUDA backward kernels (FPN upsampling) are not bit-reproducible.
    for key, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=1e-3, atol=1e-5)


def tiny_eval_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("fcos_owp_tiny", min_size=256, max_size=320)
    with torch.no_grad():
        model.head.regression_head.bbox_reg.bias.fill_(1.0)
    return model.eval().to(CUDA)


def images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(3, 240, 320, generator=generator).to(CUDA) for _ in range(2)]


def test_inductor_compiled_model_matches_eager():
    eager, compiled = tiny_eval_model(), tiny_eval_model()
    assert compile_parts(compiled) == ["backbone", "head"]
    with torch.inference_mode():
        expected, got = eager(images()), compiled(images())
    assert not compiled.backbone.forward.fallback.failed  # compiled, not fallen back
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(b["scores"][:50], a["scores"][:50], rtol=0, atol=1e-3)


def test_bf16_channels_last_inference_is_close_to_fp32():
    reference, fast = tiny_eval_model(), use_channels_last(tiny_eval_model())
    with torch.inference_mode():
        expected = reference(images())
        with torch.autocast("cuda", dtype=torch.bfloat16):
            got = fast(images())
    for a, b in zip(expected, got, strict=True):
        assert b["boxes"].dtype == torch.float32 and len(b["boxes"]) == len(a["boxes"])
        torch.testing.assert_close(b["scores"][:20], a["scores"][:20], rtol=0, atol=0.05)
