"""Run configs: presets, YAML files, --set overrides, round trips, and clear errors."""

import pytest

from owp.config import (
    RunConfig,
    apply_overrides,
    config_from_dict,
    list_presets,
    load_config_file,
    load_preset,
    save_config,
)
from owp.errors import OwpInputError
from owp.models.registry import create_model, model_config


def test_every_preset_loads_with_a_description_and_a_valid_model():
    presets = list_presets()
    expected = {"demo", "synth-centerness", "synth-iou", "synth-geomean", "synth-iou-cs-is"}
    assert expected | {"coco-voc-iou-cs-is"} <= set(presets)
    for name, description in presets.items():
        assert description, name
        config = load_preset(name)
        model_config(config.model.name, **config.model.options)  # validates every option
        if config.model.name == "fcos_owp_tiny":
            create_model(config.model.name, **config.model.options)


def test_coco_preset_is_the_paper_schedule():
    config = load_preset("coco-voc-iou-cs-is")
    assert (config.train.max_iters, config.train.batch_size, config.train.base_lr) == (
        90000,
        16,
        0.01,
    )
    assert config.train.steps == (60000, 80000)
    assert config.data.split == "coco-voc"
    assert config.model.options["iou_sample_threshold"] == 0.3


def test_overrides_parse_yaml_values():
    config = apply_overrides(
        load_preset("demo"),
        [
            "train.max_iters=7",
            "model.scoring=geomean",
            "eval.max_dets=[10, 100]",
            "train.amp=bf16",
        ],
    )
    assert config.train.max_iters == 7 and config.train.amp == "bf16"
    assert config.model.options["scoring"] == "geomean"
    assert config.eval.max_dets == (10, 100)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.max_iter=5", "unknown key"),
        ("trainer.max_iters=5", "unknown section"),
        ("max_iters=5", "section.key=value"),
        ("train.max_iters=many", "train.max_iters must be an integer, got 'many'"),
        ("train.amp=3", "train.amp must be a string, got 3"),
        ("train.channels_last=3", "true or false"),
        ("train.checkpoint_period=0", r"train.checkpoint_period must be >= 1, got 0"),
        ("train.log_period=0", r"train.log_period must be >= 1, got 0"),
        ("train.steps=abc", r"train.steps must be a list of numbers, got 'abc'"),
        ("train.steps=[0.5, 1.5]", "fractions of max_iters"),
        ("data.num_workers=-1", r"data.num_workers must be >= 0, got -1"),
        ("train.keep_checkpoints=-1", r"train.keep_checkpoints must be >= 0, got -1"),
        ("train.max_iters=-5", r"train.max_iters must be >= 1, got -5"),
        ("train.max_iters=2.5", "train.max_iters must be an integer"),
        ("train.base_lr=0", r"train.base_lr must be > 0"),
        ("train.momentum=1", r"train.momentum must be >= 0 and < 1"),
        ("data.horizontal_flip=1.5", r"data.horizontal_flip must be >= 0 and <= 1"),
        ("eval.protocol=nope", "eval.protocol must be one of strict, oln, got 'nope'"),
        ("eval.max_dets=[0, 100]", r"eval.max_dets must be >= 1"),
        ("train.recipe=fancy", "train.recipe must be one of owp, joint"),
        ("train.device=tpu", "train.device must be one of auto, cpu, cuda"),
        ("data.train=[1, 2]", "data.train must be a string"),
        ("train.batch_size=null", "train.batch_size must be an integer, got null"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(OwpInputError, match=message):
        apply_overrides(load_preset("demo"), [override])


def test_save_and_load_round_trip(tmp_path):
    config = apply_overrides(load_preset("synth-iou-cs-is"), ["train.steps=[0.5, 0.75]"])
    loaded = load_config_file(save_config(config, tmp_path / "config.yaml"))
    assert loaded == config


def test_bad_files_and_names(tmp_path):
    with pytest.raises(OwpInputError, match="unknown preset 'nope'; available: .*demo"):
        load_preset("nope")
    with pytest.raises(OwpInputError, match="config file not found"):
        load_config_file(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(OwpInputError, match="not valid YAML"):
        load_config_file(bad)
    with pytest.raises(OwpInputError, match="'model' must be a mapping with a 'name'"):
        config_from_dict({"model": {"scoring": "iou"}})
    assert config_from_dict({}) == RunConfig()


def test_numbers_written_as_yaml_strings_and_paths_are_accepted():
    config = apply_overrides(
        load_preset("demo"),
        ["train.weight_decay=1e-4", "train.device=cuda:1", "train.clip_grad_norm=null"],
    )
    assert config.train.weight_decay == 1e-4 and isinstance(config.train.weight_decay, float)
    assert config.train.device == "cuda:1" and config.train.clip_grad_norm is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_size": "abc"}, "min_size must be an integer, got 'abc'"),
        ({"min_size": 0}, "min_size must be >= 1"),
        ({"num_classes": 2.5}, "num_classes must be an integer"),
        ({"norm_groups": 5}, "norm_groups"),
        ({"iou_sample_threshold": 2}, "iou_sample_threshold must be >= 0 and <= 1"),
        ({"objectness": [3]}, "objectness must be a list of strings"),
    ],
)
def test_bad_model_options_are_refused_when_built(options, message):
    from owp.models.registry import create_model

    with pytest.raises(OwpInputError, match=message):
        create_model("fcos_owp_tiny", **options)


def test_a_config_file_builds_on_its_base_files(tmp_path):
    """detectron2's rule: bases relative to the file naming them, read first (recursively, in
    the order listed); mappings merge key by key, other values (lists too) are replaced."""
    (tmp_path / "bases").mkdir()
    (tmp_path / "bases" / "schedule.yaml").write_text(
        "train: {max_iters: 50, steps: [10, 20], batch_size: 2}\neval: {max_dets: [10, 100]}\n"
    )
    (tmp_path / "bases" / "model.yaml").write_text(
        "_base_: schedule.yaml\nmodel: {name: fcos_owp_tiny, scoring: iou, num_classes: 3}\n"
        "train: {batch_size: 4}\n"
    )
    (tmp_path / "other.yaml").write_text("train: {batch_size: 6, warmup_iters: 5}\n")
    (tmp_path / "run.yaml").write_text(
        "_base_: [bases/model.yaml, other.yaml]\ndescription: mine\n"
        "model: {scoring: geomean}\ntrain: {steps: [30]}\n"
    )
    config = load_config_file(tmp_path / "run.yaml")
    assert config.description == "mine"
    assert config.model.name == "fcos_owp_tiny"
    assert config.model.options == {"scoring": "geomean", "num_classes": 3}
    train = config.train
    assert (train.max_iters, train.steps, train.batch_size, train.warmup_iters) == (50, (30,), 6, 5)
    assert config.eval.max_dets == (10, 100)


def test_base_files_that_loop_are_missing_or_malformed_are_refused_in_one_line(tmp_path):
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: ./a.yaml\n")
    with pytest.raises(OwpInputError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml$"):
        load_config_file(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("_base_: [absent.yaml]\n")
    with pytest.raises(OwpInputError, match=r"c\.yaml: cannot read _base_ file .*absent\.yaml"):
        load_config_file(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("_base_: {model: 1}\n")
    with pytest.raises(OwpInputError, match="_base_ must name a YAML file or list of them"):
        load_config_file(tmp_path / "d.yaml")
    (tmp_path / "e.yaml").write_text("_base_: c.yaml\n")
    with pytest.raises(OwpInputError) as caught:
        load_config_file(tmp_path / "e.yaml")
    assert "\n" not in str(caught.value)
