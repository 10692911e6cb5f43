"""The cached default synthetic set (``data.train: synthetic``): named by its style, reused only
while its manifest records the requested config, regenerated otherwise."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

import owp.data.locate
from owp.data.locate import default_synthetic_dataset
from owp.data.synthetic import SynthConfig, generate_synthetic_dataset, is_synthetic_dataset


@pytest.fixture
def tiny_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """OWP_HOME in tmp_path and a tiny default config (the style's default stays)."""
    monkeypatch.setenv("OWP_HOME", str(tmp_path))
    tiny = functools.partial(SynthConfig, num_train=2, num_val=1, image_size=64, seed=0)
    monkeypatch.setattr(owp.data.locate, "SynthConfig", tiny)
    return tmp_path


def test_default_config_is_the_photo_style_at_640_px() -> None:
    config = SynthConfig()
    assert (config.style, config.image_size, config.num_train, config.num_val) == (
        "photo",
        640,
        800,
        200,
    )


def test_the_folder_names_the_style_and_is_reused(
    tiny_default: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = default_synthetic_dataset(progress=False)
    assert folder == tiny_default / "synthetic-photo-64px-seed0"
    assert "(once)" in capsys.readouterr().out
    written = (folder / "manifest.json").stat().st_mtime_ns
    assert default_synthetic_dataset(progress=False) == folder
    assert capsys.readouterr().out == ""  # reused: nothing generated, nothing printed
    assert (folder / "manifest.json").stat().st_mtime_ns == written


@pytest.mark.parametrize(
    "other",
    [
        {"style": "flat"},  # another style in the folder
        {"seed": 1},
        {"num_train": 3},
        {"unannotated_base_fraction": 0.5},
    ],
)
def test_a_folder_of_another_config_is_regenerated_with_one_line(
    tiny_default: Path, capsys: pytest.CaptureFixture[str], other: dict
) -> None:
    folder = tiny_default / "synthetic-photo-64px-seed0"
    stale = SynthConfig(**{"num_train": 2, "num_val": 1, "image_size": 64, "seed": 0, **other})
    generate_synthetic_dataset(folder, stale)
    assert is_synthetic_dataset(folder)
    assert not is_synthetic_dataset(folder, owp.data.locate.SynthConfig())
    assert default_synthetic_dataset(progress=False) == folder
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and "another config or generator version: regenerating" in printed[0]
    assert is_synthetic_dataset(folder, owp.data.locate.SynthConfig())


def test_a_folder_of_another_generator_version_is_regenerated(
    tiny_default: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = default_synthetic_dataset(progress=False)
    manifest = folder / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"version":1', '"version":0'))
    capsys.readouterr()
    default_synthetic_dataset(progress=False)
    assert "regenerating" in capsys.readouterr().out
    assert '"version":1' in manifest.read_text()
