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
from owp.models.factory import create_model, model_config


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
            "train.amp=false",
        ],
    )
    assert config.train.max_iters == 7 and config.train.amp is False
    assert config.model.options["scoring"] == "geomean"
    assert config.eval.max_dets == (10, 100)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.max_iter=5", "unknown key"),
        ("trainer.max_iters=5", "unknown section"),
        ("max_iters=5", "section.key=value"),
        ("train.max_iters=many", "must be a number"),
        ("train.amp=3", "true or false"),
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
