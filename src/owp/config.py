"""Run configuration: typed dataclasses, YAML presets and files, ``--set key=value`` overrides.

A run is described by :class:`RunConfig` = ``model`` + ``data`` + ``train`` + ``eval``. It is
built from a shipped preset (``presets/<family>/NAME.yaml``) or a YAML file (either may build on
``_base_`` files: :func:`read_yaml_with_bases`), then dotted overrides (``train.max_iters=200``,
``model.scoring=geomean``); the resolved config is saved in the run folder and every checkpoint.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any, get_type_hints

import yaml

from owp.checks import Choices, Range, Rule, check_value
from owp.errors import OwpInputError


@dataclass
class ModelConfig:
    """A named model (``owp.list_models()``) and its option overrides (fields of its config
    dataclass, e.g. FCOSOWPConfig). ``compile``: ``torch.compile`` the backbone and head for
    training and its evaluations (:func:`owp.engine.precision.compile_parts`); it is not a
    model option and does not change what is trained."""

    name: str = "fcos_owp_tiny"
    options: dict[str, Any] = field(default_factory=dict)
    compile: bool = False


@dataclass
class DataConfig:
    """Where the data is and how it is read.

    ``train`` / ``val``: a dataset folder (``train.json`` + ``train/``, COCO layouts, ...) or an
    instances JSON; the special value ``synthetic`` is the cached default synthetic set.
    ``split``: built-in name or split file; ``synthetic`` means the dataset folder's
    ``split.yaml``. ``pseudo_labels``: self-training boxes for the train images, a COCO JSON
    written by ``owp pseudo-label`` (or edited by hand), or ``run:NAME`` to mine them first from
    the run of preset NAME next to this run (:mod:`owp.engine.pseudo`). A run saves these paths
    absolute (:func:`resolve_data_paths`), so that it finds its data from any folder;
    ``as_written`` then keeps the values as they were written.
    """

    train: str = "synthetic"
    val: str = "synthetic"
    train_images: str | None = None
    val_images: str | None = None
    split: str = "synthetic"
    keep_empty: bool = False
    horizontal_flip: float = 0.5
    num_workers: int = 2
    max_bad_image_fraction: float = 0.01
    pseudo_labels: str | None = None
    as_written: dict[str, str] | None = None


@dataclass
class TrainConfig:
    """The iteration schedule and optimisation (detectron2-style).

    ``base_lr`` is the learning rate at ``batch_size`` 16 and is scaled linearly with the batch
    size. ``steps`` are fractions of ``max_iters`` (values < 1) or iteration numbers.
    ``pseudo_weight``: loss weight of the locations assigned to ``data.pseudo_labels`` boxes
    (FCOS-OWP; 0 leaves them only as ignore regions, two-stage models take 1 only).
    """

    max_iters: int = 1000
    batch_size: int = 16
    base_lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 500
    warmup_factor: float = 0.001
    steps: tuple[float, ...] = (2 / 3, 8 / 9)
    gamma: float = 0.1
    clip_grad_norm: float | None = 10.0
    amp: str = "auto"
    channels_last: bool = False
    seed: int = 0
    recipe: str = "owp"
    init: str | None = None
    pseudo_weight: float = 1.0
    checkpoint_period: int = 1000
    keep_checkpoints: int = 2
    eval_period: int = 0
    log_period: int = 20
    device: str = "auto"


@dataclass
class EvalConfig:
    """How the val set is evaluated: protocol (and the ``oln`` protocol's pool), budgets k,
    batch size, scorings.

    ``proposal_scoring`` ranks the proposals whose novel AR is measured, ``detection_scoring``
    the class-labelled detections whose base AP is measured (classifying models only); ``None``
    uses the model's own ``scoring`` (and ``cls*<scoring>`` for AP when that is class-agnostic).
    ``extra_proposal_scorings`` rank the same proposals again, from the same forward pass:
    their novel AR is logged as ``<scoring>/AR@k``.
    """

    protocol: str = "strict"
    oln_pool: int = 1500
    max_dets: tuple[int, ...] = (10, 20, 50, 100, 300, 1000)
    batch_size: int = 8
    proposal_scoring: str | None = None
    detection_scoring: str | None = None
    extra_proposal_scorings: tuple[str, ...] = ()


@dataclass
class RunConfig:
    """Everything a training run needs; ``description`` is the preset's one-line summary."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    description: str = ""
    notices: tuple[str, ...] = field(default=(), compare=False)
    """Warnings about how the config was built (a scaled schedule), logged when a run starts,
    after its checks (a failing command prints only its error); not saved."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["notices"]
        return data


def list_presets() -> dict[str, str]:
    """Shipped preset name -> its one-line description."""
    files = _preset_files()
    return {name: str(_preset_data(path).get("description", "")) for name, path in files.items()}


def load_preset(name: str) -> RunConfig:
    """The shipped preset ``name`` (see :func:`list_presets`), its ``_base_`` files merged in."""
    files = _preset_files()
    if name not in files:
        raise OwpInputError(f"unknown preset {name!r}; available: {', '.join(files)}")
    return config_from_dict(_preset_data(files[name]), f"preset {name}")


def _preset_files() -> dict[str, str]:
    """Preset name (its file's stem) -> its path in the ``owp.presets`` package, by name.

    Every ``.yaml`` file in the package's folders is a preset, except ``groups.yaml`` (the
    study groups) and the files under folders named ``_*`` (``_base/``: shared blocks).
    """
    found: dict[str, str] = {}
    pending = [(resources.files("owp.presets"), "")]
    while pending:
        folder, prefix = pending.pop()
        for entry in folder.iterdir():
            path = prefix + entry.name
            if entry.is_dir() and not entry.name.startswith("_"):
                pending.append((entry, path + "/"))
            elif entry.is_file() and path.endswith(".yaml") and path != "groups.yaml":
                found[entry.name[: -len(".yaml")]] = path
    return dict(sorted(found.items()))


def _preset_data(path: str) -> dict[str, Any]:
    read = resources.files("owp.presets").joinpath
    return read_yaml_with_bases(path, lambda name: read(name).read_text(), posixpath)


BASE_KEY = "_base_"
"""The key of a YAML config that names its base file(s) (detectron2's ``_BASE_``)."""


def read_yaml_with_bases(
    path: str, read: Callable[[str], str], paths: ModuleType = os.path, chain: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The mapping of the YAML file ``path`` merged over its ``_base_`` files.

    detectron2's rule: ``_base_`` names a file, or a list of files, relative to the file that
    names it. Each base is read the same way (its own bases first); bases are merged in the
    order listed, then the file's own keys over them: mappings key by key (recursively), any
    other value (lists too) replaced whole. A cycle of bases is refused. ``read`` returns a
    file's text; ``paths`` is ``os.path`` for files, ``posixpath`` in the presets package.
    """
    if path in chain:
        cycle = " -> ".join((*chain[chain.index(path) :], path))
        raise OwpInputError(f"{BASE_KEY} files form a cycle: {cycle}")
    try:
        text = read(path)
    except OSError as err:
        if not chain:
            raise
        message = f"cannot read {BASE_KEY} file {path} ({err.strerror})"
        raise OwpInputError(message, path=chain[-1]) from None
    data = _read_yaml_text(text, path)
    bases = data.get(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise OwpInputError(f"{BASE_KEY} must name a YAML file or list of them", path=path)
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = paths.normpath(paths.join(paths.dirname(path), base))
        merged = _merge(merged, read_yaml_with_bases(base_path, read, paths, (*chain, path)))
    return _merge(merged, {k: v for k, v in data.items() if k != BASE_KEY})


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base`` (a new dict): mappings merged recursively, others replaced."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config_file(path: str | Path) -> RunConfig:
    """A run config from a YAML file (same layout as the presets).

    Relative paths in it (the ``data`` paths, a ``train.init`` checkpoint) are relative to the
    file's folder, as detectron2 and mmdetection read their configs, and are made absolute here
    (the ``data`` values as written are kept in ``data.as_written``). Presets keep theirs
    relative to the current folder (``datasets/coco/...``), as do ``--set`` values. Paths
    that come from a ``_base_`` file (:func:`read_yaml_with_bases`) are relative to ``path`` too.
    """
    path = Path(path)
    if path.is_dir():
        raise OwpInputError("is a folder, expected a YAML config file", path=path)
    if not path.is_file():
        raise OwpInputError("config file not found", path=path)
    data = read_yaml_with_bases(str(path), lambda name: Path(name).read_text())
    config = config_from_dict(data, str(path))
    config = resolve_data_paths(config, path.parent.absolute())
    init = config.train.init
    if init and not _NAME_PREFIX.match(init) and not Path(init).is_absolute():
        init = os.path.normpath(path.parent.absolute() / init)
        config = replace(config, train=replace(config.train, init=init))
    return config


_NAME_PREFIX = re.compile(r"[a-z]+:")
"""``run:NAME``, ``torchvision:NAME``: names of weights, not paths."""


def config_from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    """Build a :class:`RunConfig` from nested dicts, rejecting unknown keys by name.

    In the ``model`` section every key other than ``name`` is a model option.
    """
    if not isinstance(data, dict):
        raise OwpInputError(f"{source}: a run config must be a mapping")
    config = RunConfig()
    for key, value in data.items():
        if key == "model":
            config.model = _model_section(value, source)
        elif key == "description":
            config.description = str(value)
        elif key in ("data", "train", "eval"):
            setattr(config, key, _section(type(getattr(config, key)), value, f"{source}: {key}"))
        else:
            raise OwpInputError(f"{source}: unknown section {key!r}; use model, data, train, eval")
    return config


def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.key=value`` strings (values parsed as YAML) and return a new config.

    The description gains the overrides (``... (overridden: train.max_iters=30)``), so that
    the run's ``config.yaml`` and reports describe what was run. A ``train.max_iters`` that
    leaves the warm-up or absolute lr steps beyond the new end scales them with it
    (:func:`fit_schedule`), unless the same overrides set them.
    """
    data = config.to_dict()
    model = data["model"]
    flat_model = {"name": model["name"], "compile": model["compile"], **model["options"]}
    data["model"] = flat_model
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise OwpInputError(f"--set expects section.key=value, got {item!r}")
        if section not in ("model", "data", "train", "eval"):
            raise OwpInputError(f"--set {item!r}: unknown section {section!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        data[section][name] = value
    updated = config_from_dict(data, "--set")
    if not overrides:
        return updated
    explicit = {item.partition("=")[0].strip() for item in overrides}
    updated, scaled = fit_schedule(updated, config.train.max_iters, explicit)
    named = "; ".join([*(item.strip() for item in overrides), *scaled])
    description = f"{config.description} (overridden: {named})".strip()
    return replace(updated, description=description)


def schedule_beyond_end(train: TrainConfig) -> list[str]:
    """The parts of the lr schedule that lie beyond ``max_iters`` (``["warmup_iters 1000"]``);
    empty when it fits. Fractional steps always fit."""
    beyond = []
    if train.warmup_iters > train.max_iters:
        beyond.append(f"warmup_iters {train.warmup_iters}")
    late = [int(step) for step in train.steps if step >= 1 and step > train.max_iters]
    if late:
        beyond.append(f"steps {late}")
    return beyond


def fit_schedule(
    config: RunConfig, written_for: int, explicit: Collection[str] = ()
) -> tuple[RunConfig, list[str]]:
    """``config`` with its warm-up and absolute lr steps scaled by ``max_iters / written_for``
    when they lie beyond ``max_iters`` (a preset shrunk with ``--set train.max_iters``), and
    the scaled values as ``key=value`` strings; one warning line naming them is added to
    ``config.notices`` (the trainer logs it).

    Keys in ``explicit`` (``train.warmup_iters``, ``train.steps``: set by the user) are kept;
    a schedule still beyond the end is refused when training starts.
    """
    train = config.train
    if train.max_iters == written_for or not schedule_beyond_end(train):
        return config, []
    factor = train.max_iters / written_for
    changes: dict[str, Any] = {}
    if "train.warmup_iters" not in explicit:
        changes["warmup_iters"] = round(train.warmup_iters * factor)
    if "train.steps" not in explicit and any(step >= 1 for step in train.steps):
        changes["steps"] = tuple(
            step if step < 1 else max(1, round(step * factor)) for step in train.steps
        )
    if not changes:
        return config, []
    scaled = [f"train.{key}={_plain(value)}" for key, value in changes.items()]
    notice = (
        f"train.max_iters {train.max_iters} (was {written_for}) ends before the warm-up or lr "
        f"steps: scaled with it to {', '.join(scaled)}"
    )
    notices = (*config.notices, notice)
    return replace(config, train=replace(train, **changes), notices=notices), scaled


DATA_PATH_KEYS: tuple[str, ...] = (
    "train",
    "val",
    "train_images",
    "val_images",
    "split",
    "pseudo_labels",
)
"""The ``data`` keys that name files or folders."""


def resolve_data_paths(config: RunConfig, base: str | Path | None = None) -> RunConfig:
    """``config`` with its relative ``data`` paths made absolute against ``base`` (default:
    the current folder), the original values kept in ``data.as_written``.

    ``synthetic``, built-in split names and ``run:NAME`` pseudo labels are names, not paths,
    and stay as they are; so do absolute paths. Resolving twice changes nothing.
    """
    from owp.data.splits import BUILTIN_SPLITS

    base = Path.cwd() if base is None else Path(base)
    data = config.data
    written = dict(data.as_written or {})
    changed: dict[str, str] = {}
    for key in DATA_PATH_KEYS:
        value = getattr(data, key)
        if value is None or str(value) == "synthetic" or Path(value).is_absolute():
            continue
        if key == "pseudo_labels" and str(value).startswith(RUN_PREFIX):
            continue
        # A split is a name unless such a file exists (``voc`` is an unknown name, not a path).
        if key == "split" and (str(value) in BUILTIN_SPLITS or not (base / value).is_file()):
            continue
        changed[key] = os.path.normpath(base / value)
        written.setdefault(key, str(value))
    if not changed:
        return config
    return replace(config, data=replace(data, **changed, as_written=written))


def save_config(config: RunConfig, path: str | Path) -> Path:
    """Write the config as YAML (loadable with :func:`load_config_file`), its data paths made
    absolute against the current folder (:func:`resolve_data_paths`)."""
    config = resolve_data_paths(config)
    data = config.to_dict()
    data["model"] = {"name": config.model.name, **config.model.options}
    if config.model.compile:
        data["model"]["compile"] = True
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(_plain(data), sort_keys=False))
    return path


def _model_section(value: Any, source: str) -> ModelConfig:
    if not isinstance(value, dict) or "name" not in value:
        raise OwpInputError(f"{source}: 'model' must be a mapping with a 'name'")
    options = {k: v for k, v in value.items() if k not in ("name", "compile")}
    compiled = check_value(f"{source}: model.compile", value.get("compile", False), bool)
    return ModelConfig(name=str(value["name"]), options=options, compile=compiled)


def _section(kind: type, value: Any, source: str):
    """A ``kind`` dataclass from a mapping: unknown keys, wrong types, values out of range and
    unknown choices are refused here, before any data is read (one line naming the key)."""
    if not isinstance(value, dict):
        raise OwpInputError(f"{source} must be a mapping")
    known = {f.name: f for f in fields(kind)}
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise OwpInputError(
            f"{source}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(known)}"
        )
    hints = get_type_hints(kind)
    section = source.rsplit(": ", 1)[-1]
    value = _upgrade_section(section, value)
    converted = {
        key: check_value(f"{source}.{key}", item, hints[key], _RULES.get(section, {}).get(key))
        for key, item in value.items()
    }
    config = kind(**converted)
    if section == "train":
        _check_steps(config, source)
    if section == "data":
        _check_pseudo_labels(config, source)
    return config


LEGACY_BOOLEANS: dict[tuple[str, str], tuple[str, str]] = {("train", "amp"): ("none", "auto")}
"""``(section, key)`` -> what ``false`` and ``true`` mean now, for keys that older runs saved
as booleans (``train.amp: true`` was AMP on CUDA, now ``auto``)."""


def _upgrade_section(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with booleans of :data:`LEGACY_BOOLEANS` keys replaced by their meaning."""
    upgraded = dict(values)
    for key, item in values.items():
        meanings = LEGACY_BOOLEANS.get((section, key))
        if meanings is not None and isinstance(item, bool):
            upgraded[key] = meanings[item]
    return upgraded


def upgrade_saved_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved run config (the :meth:`RunConfig.to_dict` layout, as checkpoints hold it) in
    today's terms: legacy booleans replaced (:data:`LEGACY_BOOLEANS`) and keys added since it
    was saved given their defaults, so that comparing it with a new config shows only real
    differences."""
    defaults = RunConfig().to_dict()
    upgraded = dict(saved)
    for section in ("data", "train", "eval"):
        if isinstance(saved.get(section), dict):
            values = _upgrade_section(section, saved[section])
            upgraded[section] = {**defaults[section], **values}
    if isinstance(saved.get("model"), dict):
        upgraded["model"] = {"compile": False, **saved["model"]}
    return upgraded


def _check_steps(train: TrainConfig, source: str) -> None:
    if any(step >= 1 and step != int(step) for step in train.steps):
        raise OwpInputError(
            f"{source}.steps must be fractions of max_iters (< 1) or iteration numbers, "
            f"got {list(train.steps)}"
        )


RUN_PREFIX = "run:"
"""``run:NAME`` names the run of preset NAME in the same runs folder (``train.init``,
``data.pseudo_labels``)."""


def _check_pseudo_labels(data: DataConfig, source: str) -> None:
    value = data.pseudo_labels
    if value is not None and (not value.strip() or value.strip() == RUN_PREFIX):
        raise OwpInputError(
            f"{source}.pseudo_labels must name a pseudo-label JSON file or run:<preset>, "
            f"got {value!r}"
        )


def _recipe_names() -> tuple[str, ...]:
    from owp.engine.recipes import RECIPES

    return tuple(RECIPES)


def _amp_choices() -> tuple[str, ...]:
    from owp.engine.precision import AMP_CHOICES

    return AMP_CHOICES


# Per section: key -> the range or choices its values must satisfy (types come from the
# dataclass annotations).
_RULES: dict[str, dict[str, Rule]] = {
    "train": {
        "max_iters": Range(1),
        "batch_size": Range(1),
        "base_lr": Range(0, open_low=True),
        "momentum": Range(0, 1, open_high=True),
        "weight_decay": Range(0),
        "warmup_iters": Range(0),
        "warmup_factor": Range(0, 1, open_low=True),
        "steps": Range(0, open_low=True),
        "gamma": Range(0, open_low=True),
        "clip_grad_norm": Range(0, open_low=True),
        "pseudo_weight": Range(0),
        "checkpoint_period": Range(1),
        "keep_checkpoints": Range(0),
        "eval_period": Range(0),
        "log_period": Range(1),
        "recipe": Choices(_recipe_names),
        "amp": Choices(_amp_choices),
        "device": Choices(lambda: ("auto", "cpu", "cuda"), prefix_of=":"),
    },
    "data": {
        "horizontal_flip": Range(0, 1),
        "num_workers": Range(0),
        "max_bad_image_fraction": Range(0, 1),
    },
    "eval": {
        "protocol": Choices(lambda: ("strict", "oln")),
        "oln_pool": Range(1),
        "max_dets": Range(1),
        "batch_size": Range(1),
    },
}


def _read_yaml_text(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0]
        raise OwpInputError(f"{source}: not valid YAML ({first})") from None
    if not isinstance(data, dict):
        raise OwpInputError(f"{source}: a run config must be a mapping")
    return data


def _plain(value: Any) -> Any:
    """Tuples to lists (recursively) so that ``yaml.safe_dump`` writes plain YAML."""
    if is_dataclass(value):
        value = asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class StudyGroup:
    """A named set of presets compared in one table (``owp study NAME``), against a baseline."""

    name: str
    description: str
    presets: tuple[str, ...]
    baseline: str


def list_groups() -> dict[str, str]:
    """Study group name -> one-line description (from ``presets/groups.yaml``)."""
    return {name: group.description for name, group in _groups().items()}


def load_group(name: str) -> StudyGroup:
    """The study group ``name``; its presets all exist."""
    groups = _groups()
    if name not in groups:
        raise OwpInputError(f"unknown study group {name!r}; available: {', '.join(groups)}")
    return groups[name]


def _groups() -> dict[str, StudyGroup]:
    text = resources.files("owp.presets").joinpath("groups.yaml").read_text()
    data = _read_yaml_text(text, "presets/groups.yaml")
    return {
        name: StudyGroup(
            name=name,
            description=str(entry["description"]),
            presets=tuple(entry["presets"]),
            baseline=str(entry.get("baseline", entry["presets"][0])),
        )
        for name, entry in data.items()
    }
