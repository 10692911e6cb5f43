"""Tests of open-world class splits: built-ins, custom split files and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owp.data.splits import (
    BUILTIN_SPLITS,
    COCO_VOC_BASE_IDS,
    COCO_VOC_BASE_NAMES,
    ClassSplit,
    SplitSpec,
    builtin_split,
    load_split,
    lvis_v1_novel_ids,
    read_split_file,
    resolve_split,
)
from owp.errors import OwpInputError

COCO_MISSING_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
COCO_IDS = [i for i in range(1, 91) if i not in COCO_MISSING_IDS]
VOC_IDS = (1, 2, 3, 4, 5, 6, 7, 9, 16, 17, 18, 19, 20, 21, 44, 62, 63, 64, 67, 72)
ANIMALS = [
    {"id": 1, "name": "cat"},
    {"id": 2, "name": "dog"},
    {"id": 3, "name": "kite"},
    {"id": 4, "name": "bird"},
]


COCO_NAMES = dict(zip(COCO_VOC_BASE_IDS, COCO_VOC_BASE_NAMES, strict=True))


def categories(ids: list[int]) -> list[dict]:
    """A COCO categories list: the 20 VOC classes by their COCO names, the others ``c<id>``."""
    return [{"id": i, "name": COCO_NAMES.get(i, f"c{i}")} for i in ids]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(OwpInputError) as info:
        call(*args, **kwargs)
    return str(info.value)


# --- built-in splits -------------------------------------------------------------------------


def test_coco_voc_against_the_80_coco_classes() -> None:
    assert len(COCO_IDS) == 80
    split = builtin_split("coco-voc").resolve(categories(COCO_IDS))
    assert split.name == "coco-voc"
    assert split.base_ids == VOC_IDS
    assert COCO_VOC_BASE_IDS == VOC_IDS
    expected_novel = tuple(i for i in COCO_IDS if i not in VOC_IDS)
    assert len(expected_novel) == 60
    assert split.novel_ids == expected_novel
    assert split.num_base == 20
    assert split.base_names == COCO_VOC_BASE_NAMES
    assert split.novel_names[:3] == ("c8", "c10", "c11")
    assert split.names[90] == "c90"
    assert split.is_base(72) and not split.is_novel(72)
    assert split.is_novel(8) and not split.is_base(8)
    assert not split.is_base(12) and not split.is_novel(12)  # not a COCO id at all


def test_coco_voc_labels_are_contiguous_in_sorted_base_id_order() -> None:
    split = builtin_split("coco-voc").resolve(categories(COCO_IDS))
    assert split.label_of(1) == 0
    assert split.label_of(9) == 7
    assert split.label_of(44) == 14
    assert split.label_of(72) == 19
    assert split.category_of(15) == 62
    for label, category_id in enumerate(VOC_IDS):
        assert split.label_of(category_id) == label
        assert split.category_of(label) == category_id
    with pytest.raises(KeyError):
        split.label_of(8)  # novel classes have no training label


def test_lvis_v1_against_1203_categories() -> None:
    novel = lvis_v1_novel_ids()
    assert len(novel) == 100 == len(set(novel))
    assert all(1 <= i <= 1203 for i in novel)
    split = builtin_split("lvis-v1").resolve(categories(list(range(1, 1204))))
    assert split.name == "lvis-v1"
    assert len(split.novel_ids) == 100
    assert len(split.base_ids) == 1103
    assert split.novel_ids == tuple(sorted(novel))
    for category_id in (19, 27, 34, 1191):
        assert split.is_novel(category_id)
        assert not split.is_base(category_id)
    assert split.is_base(1) and split.is_base(1203)
    assert set(split.base_ids) | set(split.novel_ids) == set(range(1, 1204))
    assert split.label_of(1) == 0
    assert split.category_of(split.label_of(20)) == 20
    assert split.label_of(20) == 18  # 19 is novel, so 20 follows 1..18


def test_all_makes_every_class_base() -> None:
    split = builtin_split("all").resolve(categories([3, 1, 7]))
    assert split.base_ids == (1, 3, 7)
    assert split.novel_ids == ()
    assert [split.label_of(i) for i in (1, 3, 7)] == [0, 1, 2]
    assert split.category_of(2) == 7


def test_unknown_builtin_lists_the_valid_names() -> None:
    message = error_of(builtin_split, "voc")
    assert "unknown split 'voc'" in message
    assert "coco-voc, lvis-v1, all" in message
    assert BUILTIN_SPLITS == ("coco-voc", "lvis-v1", "all")
    assert "unknown split 'lvis'" in error_of(load_split, "lvis")


def test_builtin_against_a_dataset_lacking_some_of_its_ids_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 8 of the 20 VOC ids are in 1..10: the split keeps those and names the absent ones once.
    with caplog.at_level("WARNING", logger="owp"):
        split = builtin_split("coco-voc").resolve(categories(range(1, 11)), "ds.json")
    assert split.base_ids == (1, 2, 3, 4, 5, 6, 7, 9)
    assert split.novel_ids == (8, 10)
    [record] = caplog.records
    assert record.getMessage() == (
        "ds.json: split 'coco-voc' (built-in): 12 of its 20 listed category ids are not in the "
        "dataset and are left out: 16, 17, 18, 19, 20, 21, 44, 62, 63, 64 and 2 more"
    )


def test_builtin_against_a_dataset_lacking_all_of_a_side_is_an_error() -> None:
    message = error_of(builtin_split("coco-voc").resolve, categories(range(100, 111)), "ds.json")
    assert message.startswith("ds.json: split 'coco-voc' (built-in) names categories absent")
    assert message.endswith("and 10 more (none of the 20 listed is present)")


def test_lvis_v1_against_a_pruned_category_list(caplog: pytest.LogCaptureFixture) -> None:
    novel = lvis_v1_novel_ids()
    kept = sorted(set(range(1, 301)) | set(novel[:40]))  # 300 base-side ids, 40 novel ones
    with caplog.at_level("WARNING", logger="owp"):
        lvis_style = [{**c, "synset": f"{c['name']}.n.01"} for c in categories(kept)]
        split = builtin_split("lvis-v1").resolve(lvis_style, "lvis_v1_val.json")
    assert set(split.novel_ids) == set(novel) & set(kept)
    assert set(split.base_ids) == set(kept) - set(novel)
    assert "60 of its 100 listed category ids are not in the dataset" in caplog.text


def test_a_builtin_split_on_data_of_another_family_is_refused_naming_the_right_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # lvis-v1 on COCO: 10 of its 100 novel ids collide with COCO ids (VOC's horse among them).
    with caplog.at_level("WARNING", logger="owp"):
        message = error_of(builtin_split("lvis-v1").resolve, categories(COCO_IDS), "coco.json")
    assert "finds only" in message and "looks like COCO: use --split coco-voc" in message
    assert "\n" not in message and not caplog.text  # the error alone, no warning before it
    # coco-voc on LVIS: every VOC id exists there, naming other classes (id 1: aerosol can).
    lvis = [{"id": i, "name": f"thing_{i}", "synset": f"thing_{i}.n.01"} for i in range(1, 1204)]
    message = error_of(builtin_split("coco-voc").resolve, lvis, "lvis_v1_val.json")
    assert "id 1 is 'thing_1', not 'person'" in message
    assert "looks like LVIS: use --split lvis-v1" in message
    # Neither: a split file is the way.
    message = error_of(builtin_split("coco-voc").resolve, ANIMALS, "pets.json")
    assert "neither COCO nor LVIS: write a split file" in message


def test_resolve_without_categories() -> None:
    message = error_of(builtin_split("all").resolve, [], "empty.json")
    assert message == "empty.json: has no categories to split"


# --- load_split / resolve_split ----------------------------------------------------------------


def test_load_split_dispatch(tmp_path: Path) -> None:
    spec = SplitSpec("mine", base=("cat",), novel=None)
    assert load_split(spec) is spec
    assert load_split("all") == builtin_split("all")
    file = write(tmp_path / "s.yaml", "base: [cat]\n")
    assert load_split(file).base == ("cat",)
    assert load_split(str(file)).base == ("cat",)
    resolved = resolve_split("all", ANIMALS, "ds")
    assert resolve_split(resolved, [], "ignored") is resolved
    assert isinstance(resolve_split(str(file), ANIMALS, "ds"), ClassSplit)


# --- custom split files ------------------------------------------------------------------------


def test_yaml_by_names_with_rest(tmp_path: Path) -> None:
    file = write(tmp_path / "animals.yaml", "base: [dog, cat]\nnovel: rest\n")
    spec = read_split_file(file)
    assert spec == SplitSpec("animals", ("dog", "cat"), None, source=str(file))
    split = spec.resolve(ANIMALS)
    assert split.name == "animals"
    assert split.base_ids == (1, 2)
    assert split.novel_ids == (3, 4)
    assert split.base_names == ("cat", "dog")
    assert split.novel_names == ("kite", "bird")
    assert split.label_of(1) == 0 and split.label_of(2) == 1


def test_yaml_by_ids_with_omitted_novel_and_name(tmp_path: Path) -> None:
    file = write(tmp_path / "ids.yml", "name: my-split\nbase: [4, 1]\n")
    split = read_split_file(file).resolve(ANIMALS)
    assert split.name == "my-split"
    assert split.base_ids == (1, 4)
    assert split.novel_ids == (2, 3)
    assert split.label_of(4) == 1
    assert split.category_of(1) == 4


def test_yaml_mixed_refs_and_omitted_base(tmp_path: Path) -> None:
    file = write(tmp_path / "mixed.yaml", "novel: [kite, 4]\n")
    split = read_split_file(file).resolve(ANIMALS)
    assert split.base_ids == (1, 2)
    assert split.novel_ids == (3, 4)


def test_json_split_file(tmp_path: Path) -> None:
    file = write(tmp_path / "s.json", json.dumps({"base": ["cat", 2], "novel": [3]}))
    split = load_split(file).resolve(ANIMALS)
    assert split.name == "s"
    assert split.base_ids == (1, 2)
    assert split.novel_ids == (3,)
    # bird is named on neither side: neither trained nor evaluated
    assert not split.is_base(4) and not split.is_novel(4)
    assert split.names[4] == "bird"


def test_json_rest_keyword(tmp_path: Path) -> None:
    file = write(tmp_path / "s.json", json.dumps({"base": "rest", "novel": ["dog"]}))
    split = read_split_file(file).resolve(ANIMALS)
    assert split.base_ids == (1, 3, 4)
    assert split.novel_ids == (2,)


def test_empty_base_makes_everything_novel(tmp_path: Path) -> None:
    file = write(tmp_path / "zero.yaml", "base: []\n")
    split = read_split_file(file).resolve(ANIMALS)
    assert split.base_ids == ()
    assert split.novel_ids == (1, 2, 3, 4)
    assert split.num_base == 0
    assert not split.is_base(1)


# --- split file errors -------------------------------------------------------------------------


def test_split_naming_absent_categories(tmp_path: Path) -> None:
    # An absent name is an error (a typo); an absent id alone would only be warned about.
    file = write(tmp_path / "s.yaml", "base: [cat, zebra, 99, gnu]\n")
    message = error_of(read_split_file(file).resolve, ANIMALS, "data/val.json")
    assert message.startswith("data/val.json: ")
    assert f"({file})" in message
    assert message.endswith("names categories absent from the dataset: zebra, gnu")
    ids_only = write(tmp_path / "ids.yaml", "base: [1, 99]\n")
    assert read_split_file(ids_only).resolve(ANIMALS).base_ids == (1,)


def test_class_on_both_sides(tmp_path: Path) -> None:
    file = write(tmp_path / "both.yaml", "name: clash\nbase: [cat, 2]\nnovel: [dog, kite]\n")
    message = error_of(read_split_file(file).resolve, ANIMALS)
    assert "split 'clash'" in message
    assert str(file) in message
    assert message.endswith("puts classes on both sides: dog (2)")


def test_both_sides_rest(tmp_path: Path) -> None:
    file = write(tmp_path / "rest.yaml", "base: rest\nnovel: rest\n")
    message = error_of(read_split_file(file).resolve, ANIMALS)
    assert "names neither base nor novel classes" in message
    assert str(file) in message


def test_missing_split_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert error_of(read_split_file, path) == f"{path}: split file not found"
    assert error_of(load_split, str(path)) == f"{path}: split file not found"
    assert error_of(read_split_file, tmp_path) == f"{tmp_path}: is a folder, expected a split file"


@pytest.mark.parametrize(
    "text",
    ["base: [cat, dog\nnovel: rest\n", "base: cat: dog\n", '{"base": [1,]\n'],
    ids=["unclosed-list", "nested-colon", "broken-json"],
)
def test_malformed_split_file(tmp_path: Path, text: str) -> None:
    file = write(tmp_path / "bad.yaml", text)
    message = error_of(read_split_file, file)
    assert message.startswith(f"{file}: not a valid YAML/JSON split file (")
    assert "\n" not in message


def test_split_file_not_utf8(tmp_path: Path) -> None:
    file = tmp_path / "bin.yaml"
    file.write_bytes(b"base: [\xff\xfe]\n")
    assert error_of(read_split_file, file).startswith(f"{file}: not a valid YAML/JSON split file")


@pytest.mark.parametrize(
    "text",
    ["- cat\n- dog\n", "[1, 2]", "just text\n", "", "name: only-a-name\n", "other: [cat]\n"],
    ids=["yaml-list", "json-list", "scalar", "empty", "no-sides", "unknown-key"],
)
def test_split_file_not_a_mapping_with_sides(tmp_path: Path, text: str) -> None:
    file = write(tmp_path / "s.yaml", text)
    message = error_of(read_split_file, file)
    assert message == f"{file}: a split file must be a mapping with 'base' and/or 'novel' lists"


@pytest.mark.parametrize(
    ("text", "side"),
    [
        ("base: cat\n", "base"),
        ("base: 3\n", "base"),
        ("base: [cat]\nnovel: {kite: 1}\n", "novel"),
        ("novel: [kite, [3]]\n", "novel"),
        ("base: [1.5]\n", "base"),
        ("base: [yes]\n", "base"),  # YAML 1.1 boolean, must not pass as id 1
        ("novel: [cat, false]\n", "novel"),
    ],
    ids=["string", "number", "mapping", "nested-list", "float", "yes", "false"],
)
def test_split_side_not_a_list(tmp_path: Path, text: str, side: str) -> None:
    file = write(tmp_path / "s.yaml", text)
    message = error_of(read_split_file, file)
    assert message == f"{file}: '{side}' must be a list of category ids or names, or 'rest'"
