"""Self-training in configs, the trainer and the CLI: ``data.pseudo_labels`` and
``train.pseudo_weight`` checked at load time, ``run:`` mining beside the run, pseudo boxes in
every batch, ``owp pseudo-label`` and its refusals."""

import json
import logging
import os
from dataclasses import replace

import pytest

from conftest import run_owp, small_run_config
from owp.config import config_from_dict, resolve_data_paths
from owp.engine.pseudo import quality_path
from owp.engine.run_labels import RUN_LABELS
from owp.engine.trainer import Trainer, train
from owp.errors import OwpInputError
from owp.workflows.study import plan_runs

PSEUDO_CATEGORY = {"id": 1, "name": "object"}


def write_pseudo(folder, annotations, images):
    """A pseudo-label file with these annotations on these image entries."""
    path = folder / "pseudo.json"
    coco = {"images": images, "annotations": annotations, "categories": [PSEUDO_CATEGORY]}
    path.write_text(json.dumps(coco))
    return path


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"train": {"pseudo_weight": -1}}, "train.pseudo_weight must be >= 0"),
        ({"train": {"pseudo_weight": "heavy"}}, "train.pseudo_weight"),
        ({"data": {"pseudo_labels": "run:"}}, "pseudo_labels must name"),
        ({"data": {"pseudo_labels": 3}}, "data.pseudo_labels"),
    ],
)
def test_bad_pseudo_settings_are_refused_at_load_time(section, message):
    with pytest.raises(OwpInputError, match=message):
        config_from_dict(section)


def test_pseudo_label_paths_resolve_like_data_paths(tmp_path):
    assert config_from_dict({"train": {"pseudo_weight": 0}}).train.pseudo_weight == 0.0
    mined = resolve_data_paths(config_from_dict({"data": {"pseudo_labels": "run:a"}}), tmp_path)
    assert mined.data.pseudo_labels == "run:a"
    given = resolve_data_paths(config_from_dict({"data": {"pseudo_labels": "p.json"}}), tmp_path)
    assert given.data.pseudo_labels == str(tmp_path / "p.json")
    assert given.data.as_written["pseudo_labels"] == "p.json"


def test_a_study_trains_the_run_it_mines_from_first():
    assert list(plan_runs(["synth-self-train"])) == ["synth-t1-iou-cs-is", "synth-self-train"]


@pytest.fixture(scope="module")
def mini_set(synthetic_set_factory):
    return synthetic_set_factory(num_train=6, num_val=2, image_size=96, seed=5)


def mini_config(folder, *extra):
    return small_run_config(
        "synth-t1-iou-cs-is",
        folder,
        96,
        "train.batch_size=2",
        "train.max_iters=1",
        "train.warmup_iters=1",
        "eval.batch_size=2",
        *extra,
    )


@pytest.fixture(scope="module")
def source_run(mini_set, tmp_path_factory):
    """An untrained IoU-CS-IS run (a step-0 checkpoint) in ``runs/source``."""
    run_dir = tmp_path_factory.mktemp("runs") / "source"
    Trainer(mini_config(mini_set), run_dir, progress=False).save()
    return run_dir


def test_pseudo_label_command_writes_labels_and_their_quality(source_run, mini_set, tmp_path):
    out = tmp_path / "pseudo.json"
    assert (
        run_owp("pseudo-label", source_run, "--out", out, "--min-score", 0, "--per-image", 2) == 0
    )
    coco = json.loads(out.read_text())
    train_images = json.loads((mini_set / "train.json").read_text())["images"]
    assert coco["images"] == train_images
    per_image = {}
    for ann in coco["annotations"]:
        per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
        assert ann["pseudo"] is True and 0 <= ann["score"] <= 1
    assert per_image and max(per_image.values()) <= 2
    quality = json.loads(quality_path(out).read_text())
    assert quality["pseudo_boxes"] == len(coco["annotations"])
    # Re-running needs --force; writing over the training annotations is refused even then.
    assert run_owp("pseudo-label", source_run, "--out", out) == 2
    assert run_owp("pseudo-label", source_run, "--out", mini_set / "train.json", "--force") == 2
    assert json.loads((mini_set / "train.json").read_text())["images"] == train_images


def test_pseudo_label_command_rejects_bad_options(source_run, tmp_path, capsys):
    assert run_owp("pseudo-label", source_run, "--out", tmp_path / "p.json", "--max-iou", 2) == 2
    assert "max_iou must lie in [0, 1]" in capsys.readouterr().err
    assert run_owp("pseudo-label", source_run, "--out", tmp_path / "p.json", "--max-cover", 2) == 2
    assert "max_cover must lie in [0, 1]" in capsys.readouterr().err


def test_training_mines_run_labels_once_and_trains_on_them(source_run, mini_set):
    run_dir = source_run.parent / "self"
    config = resolve_data_paths(mini_config(mini_set, "data.pseudo_labels=run:source"))
    trainer = Trainer(config, run_dir, progress=False)
    mined = run_dir / RUN_LABELS
    info = json.loads(mined.read_text())["info"]
    assert info["checkpoint"] == str((source_run / "last.pt").resolve())
    assert quality_path(mined).is_file()  # the synthetic set has objects.json
    stamp = mined.stat().st_mtime_ns
    Trainer(config, run_dir, progress=False)
    assert mined.stat().st_mtime_ns == stamp  # same source checkpoint: not mined again
    counts = {k: len(v) for k, v in trainer.pseudo_boxes.items()}
    assert sum(counts.values()) == len(json.loads(mined.read_text())["annotations"])


def test_a_resumed_run_keeps_the_labels_it_mined_when_the_source_moves_on(
    mini_set, tmp_path, caplog
):
    source = tmp_path / "runs" / "source"
    Trainer(mini_config(mini_set), source, progress=False).save()
    run_dir = tmp_path / "runs" / "self"
    config = resolve_data_paths(mini_config(mini_set, "data.pseudo_labels=run:source"))
    train(config, run_dir, progress=False)
    mined = run_dir / RUN_LABELS
    before = mined.read_bytes()
    # The source run saves a newer checkpoint (here: the same file, written again).
    checkpoint = (source / "last.pt").resolve()
    os.utime(checkpoint, ns=(checkpoint.stat().st_atime_ns, checkpoint.stat().st_mtime_ns + 10**9))
    with caplog.at_level(logging.WARNING, logger="owp"):
        resumed = Trainer(replace_iters(config, 2), run_dir, progress=False)
    assert mined.read_bytes() == before  # not mined again, not overwritten
    assert "keeps the labels it started with" in caplog.text
    assert sum(len(v) for v in resumed.pseudo_boxes.values()) == len(
        json.loads(before)["annotations"]
    )


def test_a_run_trains_on_its_copy_of_a_pseudo_file_after_the_file_changes(
    mini_set, tmp_path, caplog
):
    train_coco = json.loads((mini_set / "train.json").read_text())
    image = train_coco["images"][0]
    box = {"id": 1, "image_id": image["id"], "category_id": 1, "bbox": [10, 10, 30, 30]}
    path = write_pseudo(tmp_path, [box], train_coco["images"])
    config = mini_config(mini_set, f"data.pseudo_labels={path}")
    run_dir = tmp_path / "run"
    train(config, run_dir, progress=False)
    assert json.loads((run_dir / RUN_LABELS).read_text())["annotations"] == [box]
    write_pseudo(tmp_path, [{**box, "bbox": [0, 0, 50, 50]}], train_coco["images"])
    with caplog.at_level(logging.WARNING, logger="owp"):
        resumed = Trainer(replace_iters(config, 2), run_dir, progress=False)
    assert resumed.pseudo_boxes == {image["id"]: [[10.0, 10.0, 30.0, 30.0]]}
    assert "differs from the pseudo labels this run started with" in caplog.text


def replace_iters(config, max_iters):
    return replace(config, train=replace(config.train, max_iters=max_iters))


def test_training_with_a_pseudo_file_reads_it_into_every_batch(source_run, mini_set, tmp_path):
    train_coco = json.loads((mini_set / "train.json").read_text())
    path = write_pseudo(
        tmp_path,
        [
            {"id": i + 1, "image_id": img["id"], "category_id": 1, "bbox": [10, 10, 30, 30]}
            for i, img in enumerate(train_coco["images"])
        ],
        train_coco["images"],
    )
    config = mini_config(mini_set, f"data.pseudo_labels={path}", "train.pseudo_weight=0.5")
    trainer = Trainer(config, tmp_path / "run", progress=False)
    assert trainer.model.pseudo_weight == 0.5
    _, targets, _ = next(iter(trainer.train_loader()))
    assert all(
        t["pseudo"].sum() == 1 and t["labels"][t["pseudo"]].tolist() == [-1] for t in targets
    )
    result = train(config, tmp_path / "trained", progress=False)
    assert result.step == 1 and (tmp_path / "trained" / "last.pt").is_file()


def test_bad_pseudo_labels_fail_when_the_trainer_is_built(source_run, mini_set, tmp_path):
    missing = mini_config(mini_set, f"data.pseudo_labels={tmp_path / 'none.json'}")
    with pytest.raises(OwpInputError, match="data.pseudo_labels: .*none.json: annotation file"):
        Trainer(missing, tmp_path / "a", progress=False)
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(OwpInputError, match="data.pseudo_labels: .*broken.json: malformed JSON"):
        Trainer(mini_config(mini_set, f"data.pseudo_labels={broken}"), tmp_path / "a")
    not_coco = tmp_path / "list.json"
    not_coco.write_text("[]")
    with pytest.raises(OwpInputError, match="not a COCO instances file"):
        Trainer(mini_config(mini_set, f"data.pseudo_labels={not_coco}"), tmp_path / "a")
    no_run = mini_config(mini_set, "data.pseudo_labels=run:absent")
    with pytest.raises(OwpInputError, match="no run of preset 'absent'"):
        Trainer(no_run, source_run.parent / "b", progress=False)
    stray = write_pseudo(
        tmp_path,
        [{"id": 1, "image_id": 999, "category_id": 1, "bbox": [0, 0, 5, 5]}],
        [{"id": 999, "width": 96, "height": 96}],
    )
    with pytest.raises(OwpInputError, match="image id 999, which the training set"):
        Trainer(mini_config(mini_set, f"data.pseudo_labels={stray}"), tmp_path / "c")
    two_stage = replace(
        mini_config(mini_set, "train.pseudo_weight=2"),
        model=config_from_dict({"model": {"name": "rpn_tiny"}}).model,
    )
    with pytest.raises(OwpInputError, match="weight 1 only"):
        Trainer(two_stage, tmp_path / "d", progress=False)


def test_bring_your_own_pseudo_labels_as_a_coco_file(mini_set, tmp_path):
    """Boxes mined elsewhere (SAM, CutLER): the README's minimal format — ``images`` with id,
    width and height, ``annotations`` with image_id, category_id and bbox (no id, score or
    pseudo flag needed; extra fields such as a segmentation are ignored), any categories."""
    train_coco = json.loads((mini_set / "train.json").read_text())
    first, second = train_coco["images"][:2]
    own = {
        "images": [
            {"id": im["id"], "width": im["width"], "height": im["height"]} for im in (first, second)
        ],
        "annotations": [
            {"image_id": first["id"], "category_id": 7, "bbox": [4, 6, 20, 30]},
            {
                "image_id": first["id"],
                "category_id": 7,
                "bbox": [50.5, 40, 30, 30],
                "score": 0.93,
                "segmentation": {"size": [96, 96], "counts": "abc"},
            },
            {"image_id": second["id"], "category_id": 7, "bbox": [90, 90, 20, 20]},  # clipped
        ],
        "categories": [{"id": 7, "name": "fg"}],
    }
    path = tmp_path / "cutler.json"
    path.write_text(json.dumps(own))
    config = mini_config(mini_set, f"data.pseudo_labels={path}")
    trainer = Trainer(config, tmp_path / "run", progress=False)
    assert trainer.pseudo_boxes == {
        first["id"]: [[4.0, 6.0, 20.0, 30.0], [50.5, 40.0, 30.0, 30.0]],
        second["id"]: [[90.0, 90.0, 6.0, 6.0]],
    }
    assert train(config, tmp_path / "run", progress=False).step == 1
