"""Open-world class splits: which categories are trained (base) and which are evaluated (novel).

A :class:`SplitSpec` is what the user names — a built-in (``coco-voc``, ``lvis-v1``, ``all``) or
a YAML/JSON file listing base and novel classes by id or by name. It is resolved against a
dataset's ``categories`` into a :class:`ClassSplit` holding concrete category ids, which is what
the data loader and the evaluators use.

Custom split file format (YAML or JSON)::

    name: my-split          # optional, defaults to the file stem
    base: [person, 3, dog]  # ids or names; omit the key (or write "rest") for "every other class"
    novel: rest             # ids or names; omit the key (or write "rest") for "every other class"

Categories named on neither side (possible only when both lists are explicit) are neither
trained nor evaluated.

A split is resolved against the categories the dataset has: category *ids* it lacks (a pruned
LVIS category list, a COCO subset) are left out with one warning, and only a side that was
listed and ends up empty is an error. A category *name* the dataset lacks is an error (most
likely a typo).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import yaml

from owp.errors import OwpInputError

log = logging.getLogger(__name__)

COCO_VOC_BASE_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 9, 16, 17, 18, 19, 20, 21, 44, 62, 63, 64, 67, 72,
)  # fmt: skip
"""The 20 PASCAL VOC classes as COCO category ids (base of the ``coco-voc`` split)."""

COCO_VOC_BASE_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "boat", "bird", "cat",
    "dog", "horse", "sheep", "cow", "bottle", "chair", "couch", "potted plant", "dining table",
    "tv",
)  # fmt: skip
"""COCO's names of :data:`COCO_VOC_BASE_IDS`, in the same order."""

BUILTIN_SPLITS: tuple[str, ...] = ("coco-voc", "lvis-v1", "all")

ClassRef = int | str
"""A category named by its dataset id or by its name."""


def lvis_v1_novel_ids() -> tuple[int, ...]:
    """The 100 frequent LVIS v1 category ids that form the novel side of ``lvis-v1``."""
    text = resources.files("owp.data").joinpath("lvis_v1_novel.json").read_text()
    return tuple(json.loads(text)["novel_ids"])


@dataclass(frozen=True)
class ClassSplit:
    """A split resolved against one dataset's categories.

    Attributes:
        name: the split's name (``coco-voc``, a file stem, ...).
        base_ids: trained category ids, sorted. Training label ``i`` is ``base_ids[i]``.
        novel_ids: evaluated (held-out) category ids, sorted.
        names: category id -> name for every category of the dataset.
    """

    name: str
    base_ids: tuple[int, ...]
    novel_ids: tuple[int, ...]
    names: Mapping[int, str]

    def label_of(self, category_id: int) -> int:
        """Contiguous training label (0-based index into ``base_ids``) of a base category id."""
        return self._label_index[category_id]

    def category_of(self, label: int) -> int:
        """Dataset category id of a contiguous training label."""
        return self.base_ids[label]

    @property
    def num_base(self) -> int:
        return len(self.base_ids)

    @property
    def base_names(self) -> tuple[str, ...]:
        return tuple(self.names[i] for i in self.base_ids)

    @property
    def novel_names(self) -> tuple[str, ...]:
        return tuple(self.names[i] for i in self.novel_ids)

    @cached_property
    def _label_index(self) -> dict[int, int]:
        return {cat: i for i, cat in enumerate(self.base_ids)}

    @cached_property
    def _novel_set(self) -> frozenset[int]:
        return frozenset(self.novel_ids)

    def is_base(self, category_id: int) -> bool:
        return category_id in self._label_index

    def is_novel(self, category_id: int) -> bool:
        return category_id in self._novel_set


@dataclass(frozen=True)
class SplitSpec:
    """A split as the user names it; ``None`` on a side means "every other category"."""

    name: str
    base: tuple[ClassRef, ...] | None
    novel: tuple[ClassRef, ...] | None
    source: str = "built-in"

    def resolve(self, categories: Sequence[Mapping], dataset: str | Path = "dataset") -> ClassSplit:
        """Bind the split to a dataset's COCO ``categories`` list.

        Category ids the dataset does not have are left out with a warning naming
        ``dataset``. Raises :class:`OwpInputError` naming ``dataset`` when the split names a
        category *name* the dataset does not have, when a listed side keeps no category, or
        when a class would be both base and novel.
        """
        names = {int(c["id"]): str(c["name"]) for c in categories}
        if not names:
            raise OwpInputError("has no categories to split", path=dataset)
        warnings: list[str] = []
        family = _same_family(self, categories)
        base = (
            None if self.base is None else self._lookup(self.base, names, dataset, family, warnings)
        )
        novel = (
            None
            if self.novel is None
            else self._lookup(self.novel, names, dataset, family, warnings)
        )
        if base is None and novel is None:
            raise OwpInputError(
                f"split {self.name!r} ({self.source}) names neither base nor novel classes"
            )
        if base is None:
            base = set(names) - novel
        if novel is None:
            novel = set(names) - base
        both = base & novel
        if both:
            listed = ", ".join(f"{names[i]} ({i})" for i in sorted(both))
            raise OwpInputError(
                f"split {self.name!r} ({self.source}) puts classes on both sides: {listed}"
            )
        if self.name == "coco-voc" and self.source == "built-in":
            _check_coco_names(names, dataset)
        for warning in warnings:  # only once the split is known to be usable
            log.warning("%s", warning)
        return ClassSplit(self.name, tuple(sorted(base)), tuple(sorted(novel)), names)

    def _lookup(
        self,
        refs: Iterable[ClassRef],
        names: Mapping[int, str],
        dataset,
        family: bool,
        warnings: list[str],
    ) -> set[int]:
        """The dataset ids of ``refs``; a built-in split finding fewer than half of its ids in
        data of another family (``family`` False: not LVIS for ``lvis-v1``, not COCO's names
        for ``coco-voc``) is refused, since the ids it does find mean other classes."""
        by_name = {name: cid for cid, name in names.items()}
        refs = list(refs)
        ids, missing_ids, missing_names = set(), [], []
        for ref in refs:
            if isinstance(ref, int) and ref in names:
                ids.add(ref)
            elif isinstance(ref, str) and ref in by_name:
                ids.add(by_name[ref])
            else:
                (missing_ids if isinstance(ref, int) else missing_names).append(str(ref))
        if missing_names:
            raise OwpInputError(
                f"split {self.name!r} ({self.source}) names categories absent from the "
                f"dataset: {_shown(missing_names)}",
                path=dataset,
            )
        if refs and not ids:
            raise OwpInputError(
                f"split {self.name!r} ({self.source}) names categories absent from the "
                f"dataset: {_shown(missing_ids)} (none of the {len(refs)} listed is present)",
                path=dataset,
            )
        if self.source == "built-in" and not family and 2 * len(missing_ids) > len(refs):
            raise OwpInputError(
                f"split {self.name!r} (built-in) finds only {len(ids)} of its {len(refs)} "
                f"category ids in the dataset; {_looks_like(names)}",
                path=dataset,
            )
        if missing_ids:
            warnings.append(
                f"{dataset}: split {self.name!r} ({self.source}): {len(missing_ids)} of its "
                f"{len(refs)} listed category ids are not in the dataset and are left out: "
                f"{_shown(missing_ids)}"
            )
        return ids


def _same_family(spec: SplitSpec, categories: Sequence[Mapping]) -> bool:
    """Whether ``categories`` belong to the dataset family a built-in split was made for:
    LVIS's (categories carry ``synset``) for ``lvis-v1``, COCO's (the VOC ids it has carry
    COCO's names) for ``coco-voc``. Pruned category lists of that family stay usable."""
    if spec.source != "built-in":
        return True
    if spec.name == "lvis-v1":
        return any("synset" in c for c in categories)
    if spec.name == "coco-voc":
        names = {int(c["id"]): str(c["name"]) for c in categories}
        present = [(i, n) for i, n in zip(COCO_VOC_BASE_IDS, COCO_VOC_BASE_NAMES, strict=True)
                   if i in names]  # fmt: skip
        return bool(present) and 2 * sum(_same_name(names[i], n) for i, n in present) > len(present)
    return True


def _same_name(a: str, b: str) -> bool:
    return a.lower().replace("_", " ") == b.lower().replace("_", " ")


def _looks_like(names: Mapping[int, str]) -> str:
    """What a dataset's categories look like, as advice on the split to use."""
    if len(names) > 1000:
        return "the data looks like LVIS: use --split lvis-v1"
    coco = sum(
        _same_name(names.get(i, ""), n)
        for i, n in zip(COCO_VOC_BASE_IDS, COCO_VOC_BASE_NAMES, strict=True)
    )
    if 2 * coco > len(COCO_VOC_BASE_IDS):
        return "the data looks like COCO: use --split coco-voc"
    return "the data is neither COCO nor LVIS: write a split file listing its base classes"


def _check_coco_names(names: Mapping[int, str], dataset) -> None:
    """Refuse ``coco-voc`` on data whose category ids are not COCO's (e.g. LVIS, whose id 1 is
    not person): most VOC ids must carry COCO's names."""
    present = [
        (i, n) for i, n in zip(COCO_VOC_BASE_IDS, COCO_VOC_BASE_NAMES, strict=True) if i in names
    ]
    wrong = [(i, n) for i, n in present if not _same_name(names[i], n)]
    if 2 * len(wrong) > len(present):
        i, n = wrong[0]
        raise OwpInputError(
            f"split 'coco-voc' (built-in) takes COCO's category ids, but {len(wrong)} of its "
            f"{len(present)} ids name other classes here (id {i} is {names[i]!r}, not {n!r}); "
            f"{_looks_like(names)}",
            path=dataset,
        )


def _shown(items: Sequence[str]) -> str:
    """The first ten items, then how many more."""
    more = f" and {len(items) - 10} more" if len(items) > 10 else ""
    return ", ".join(items[:10]) + more


def builtin_split(name: str) -> SplitSpec:
    """The built-in split ``name`` (one of :data:`BUILTIN_SPLITS`)."""
    if name == "coco-voc":
        return SplitSpec("coco-voc", base=COCO_VOC_BASE_IDS, novel=None)
    if name == "lvis-v1":
        return SplitSpec("lvis-v1", base=None, novel=lvis_v1_novel_ids())
    if name == "all":
        return SplitSpec("all", base=None, novel=())
    raise OwpInputError(
        f"unknown split {name!r}; use one of {', '.join(BUILTIN_SPLITS)} or a YAML/JSON split file"
    )


def read_split_file(path: str | Path) -> SplitSpec:
    """Read a custom split file (YAML or JSON, format in the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise OwpInputError("is a folder, expected a split file", path=path)
    if not path.is_file():
        raise OwpInputError("split file not found", path=path)
    try:
        data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise OwpInputError(
            f"not a valid YAML/JSON split file ({_first_line(err)})", path=path
        ) from None
    if not isinstance(data, dict) or not ({"base", "novel"} & set(data)):
        raise OwpInputError(
            "a split file must be a mapping with 'base' and/or 'novel' lists", path=path
        )
    sides = {side: _read_side(data.get(side, "rest"), side, path) for side in ("base", "novel")}
    return SplitSpec(
        str(data.get("name", path.stem)), sides["base"], sides["novel"], source=str(path)
    )


def load_split(split: str | Path | SplitSpec) -> SplitSpec:
    """A built-in name, a split file path, or an existing :class:`SplitSpec`."""
    if isinstance(split, SplitSpec):
        return split
    if (
        isinstance(split, Path)
        or Path(split).exists()
        or split.endswith((".yaml", ".yml", ".json"))
    ):
        return read_split_file(split)
    return builtin_split(str(split))


def resolve_split(
    split: str | Path | SplitSpec | ClassSplit, categories: Sequence[Mapping], dataset: str | Path
) -> ClassSplit:
    """Resolve ``split`` (name, file, spec or an already resolved split) for a dataset."""
    if isinstance(split, ClassSplit):
        return split
    return load_split(split).resolve(categories, dataset)


def _read_side(value, side: str, path: Path) -> tuple[ClassRef, ...] | None:
    if value is None or value == "rest":
        return None
    if not isinstance(value, list) or not all(_is_ref(v) for v in value):
        raise OwpInputError(
            f"'{side}' must be a list of category ids or names, or 'rest'", path=path
        )
    return tuple(value)


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _is_ref(value) -> bool:
    # YAML reads yes/no/true/on... as booleans, which would otherwise pass as the ids 1 and 0
    return isinstance(value, int | str) and not isinstance(value, bool)
