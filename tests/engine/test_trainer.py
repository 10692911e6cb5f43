"""The trainer: loss falls, checkpoints resume exactly, bad runs stop with one clear line."""

import shutil
from dataclasses import replace

import pytest
import torch

from conftest import small_run_config
from owp.config import apply_overrides
from owp.data.synthetic import SynthConfig, generate_synthetic_dataset
from owp.engine.checkpoint import load_checkpoint
from owp.engine.runs import load
from owp.engine.schedule import WarmupMultiStep, scaled_lr, schedule_steps
from owp.engine.trainer import Trainer, train
from owp.errors import OwpInputError, TrainingError


@pytest.fixture(scope="module")
def mini_set(synthetic_set_factory):
    return synthetic_set_factory(num_train=16, num_val=4, image_size=96, seed=3)


def mini_config(folder, **train):
    config = small_run_config(
        "demo", folder, 96, "train.batch_size=4", "train.warmup_iters=2", "train.log_period=1"
    )
    return replace(config, train=replace(config.train, **train))


def test_schedule_warmup_steps_and_scaling():
    schedule = WarmupMultiStep(warmup_iters=10, warmup_factor=0.1, steps=[20, 30], gamma=0.1)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(5) == pytest.approx(0.55)
    assert schedule(10) == 1.0 and schedule(19) == 1.0
    assert schedule(20) == pytest.approx(0.1) and schedule(30) == pytest.approx(0.01)
    assert schedule_steps((2 / 3, 8 / 9), 90000) == [60000, 80000]
    assert schedule_steps((60000, 80000), 90000) == [60000, 80000]
    assert scaled_lr(0.01, 8) == pytest.approx(0.005)


def test_twenty_steps_lower_the_loss_and_leave_a_complete_run(mini_set, tmp_path):
    # Centerness only: an IoU branch trained with IoU sampling from scratch first learns
    # "nothing reaches 0.3" and jumps when the boxes get good, which makes a 20-step total noisy.
    config = mini_config(mini_set, max_iters=20, checkpoint_period=10, base_lr=0.02)
    config = apply_overrides(config, ["model.objectness=[centerness]", "model.scoring=centerness"])
    result = train(config, tmp_path / "run", progress=False)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    totals = [float(row.split(",")[header.index("total")]) for row in rows[1:]]
    assert len(totals) == 20
    assert sum(totals[-5:]) / 5 < 0.9 * sum(totals[:5]) / 5
    for name in (
        "config.yaml",
        "last.pt",
        "checkpoint_0000020.pt",
        "eval.csv",
        "eval/metrics.json",
    ):
        assert (tmp_path / "run" / name).exists(), name
    assert {"AR@10", "AR@100", "protocol"} <= set(result.metrics)
    assert load(tmp_path / "run").config.objectness == ("centerness",)


def test_interrupt_saves_and_resume_equals_an_uninterrupted_run(mini_set, tmp_path, monkeypatch):
    config = mini_config(mini_set, max_iters=6, checkpoint_period=100)
    train(config, tmp_path / "straight", progress=False)

    original = Trainer.run_step

    def interrupt_at_step_4(self, *args):
        if self.step == 3:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(Trainer, "run_step", interrupt_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", progress=False)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["step"] == 3
    monkeypatch.setattr(Trainer, "run_step", original)
    with pytest.raises(OwpInputError, match="--resume"):
        train(config, tmp_path / "resumed", progress=False)
    train(config, tmp_path / "resumed", resume=True, progress=False)

    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert straight["step"] == resumed["step"] == 6
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_non_finite_loss_stops_naming_the_step_and_checkpoint(mini_set, tmp_path, monkeypatch):
    config = mini_config(mini_set, max_iters=6, checkpoint_period=2)
    original = Trainer.run_step

    def poison_step_4(self, images, targets):
        if self.step == 3:
            images = [image * float("nan") for image in images]
        return original(self, images, targets)

    monkeypatch.setattr(Trainer, "run_step", poison_step_4)
    with pytest.raises(
        TrainingError, match=r"non-finite loss at step 4 .*checkpoint_0000002\.pt|last\.pt"
    ):
        train(config, tmp_path / "run", progress=False)


def test_unreadable_images_are_skipped_then_stop_the_run(mini_set, tmp_path, caplog):
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in mini_set.iterdir():
        target = broken / item.name
        target.symlink_to(item, target_is_directory=item.is_dir())
    images = tmp_path / "images"
    images.mkdir()
    for picture in (mini_set / "train").iterdir():
        (images / picture.name).write_bytes(picture.read_bytes())
    first = sorted(images.iterdir())[0]
    first.write_bytes(first.read_bytes()[:100])  # truncated
    config = mini_config(mini_set, max_iters=8, checkpoint_period=100)
    config = replace(
        config, data=replace(config.data, train_images=str(images), max_bad_image_fraction=0.5)
    )
    train(config, tmp_path / "tolerant", progress=False)
    assert "unreadable image" in caplog.text and first.name in caplog.text
    strict = replace(config, data=replace(config.data, max_bad_image_fraction=0.0))
    with pytest.raises(TrainingError, match=first.name):
        train(strict, tmp_path / "strict", progress=False)


def test_checkpoint_of_another_model_is_refused(mini_set, tmp_path):
    config = mini_config(mini_set, max_iters=2, checkpoint_period=100)
    train(config, tmp_path / "run", progress=False)
    other = replace(
        config,
        model=replace(config.model, options={**config.model.options, "objectness": ["iou"]}),
        eval=replace(config.eval, extra_proposal_scorings=()),  # the demo's needs centerness
    )
    with pytest.raises(OwpInputError, match=r"cannot resume: model.objectness was"):
        train(other, tmp_path / "run", resume=True, progress=False)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    # Options that act at inference only may change on resume.
    scored = replace(
        config, model=replace(config.model, options={**config.model.options, "scoring": "geomean"})
    )
    Trainer(scored, tmp_path / "run", progress=False).resume()
    state["model"] = {k: v for k, v in state["model"].items() if "bbox_iou" not in k}
    torch.save(state, tmp_path / "pruned.pt")
    with pytest.raises(OwpInputError, match="do not fit"):
        load(tmp_path / "pruned.pt")


def test_resume_after_an_unreadable_batch_keeps_the_data_position(tmp_path):
    """A batch whose every image is unreadable is skipped; the checkpoint remembers how many
    loader batches were drawn, so a resumed run sees what the uninterrupted one saw."""
    folder = tmp_path / "set"
    generate_synthetic_dataset(
        folder, SynthConfig(num_train=6, num_val=2, image_size=96, seed=5, style="flat")
    )
    for path in sorted((folder / "train").iterdir())[:3]:
        path.write_bytes(b"not an image")
    config = mini_config(folder, max_iters=6, checkpoint_period=3, batch_size=1)
    config = replace(config, data=replace(config.data, max_bad_image_fraction=1.0))
    train(config, tmp_path / "straight", progress=False)
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    middle = load_checkpoint(tmp_path / "straight" / "checkpoint_0000003.pt")
    drawn = middle["extra"]["batches_drawn_per_rank"][0]
    assert drawn > middle["step"] == 3  # the case under test: a bad batch before step 3

    (tmp_path / "resumed").mkdir()
    shutil.copy(tmp_path / "straight" / "checkpoint_0000003.pt", tmp_path / "resumed" / "last.pt")
    train(config, tmp_path / "resumed", resume=True, progress=False)
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert resumed["step"] == straight["step"] == 6
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_num_classes_must_equal_the_splits_base_classes(mini_set, tmp_path):
    config = mini_config(mini_set, max_iters=1)
    config = replace(
        config, model=replace(config.model, options={**config.model.options, "num_classes": 5})
    )
    with pytest.raises(OwpInputError, match=r"num_classes is 5 but split .* has 8 base classes"):
        train(config, tmp_path / "run", progress=False)


@pytest.mark.parametrize(
    ("key", "value"),
    [("detection_scoring", "cls*iou"), ("extra_proposal_scorings", ("centerness", "cls*iou"))],
)
def test_an_eval_scoring_the_model_cannot_give_fails_before_training(
    mini_set, tmp_path, key, value
):
    config = mini_config(mini_set, max_iters=1)
    config = replace(config, eval=replace(config.eval, **{key: value}))
    with pytest.raises(OwpInputError, match=rf"eval.{key}='cls\*iou'.*classifier"):
        Trainer(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
