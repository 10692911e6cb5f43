"""``owp study``: train (or resume, or reuse) a set of presets and compare them in one table.

A study folder ``<out>`` holds one run per preset in ``<out>/runs/<preset>`` (so that
``train.init: run:NAME`` finds the run of preset NAME), ``results.json`` and ``results.md`` (one
row per run, with ΔAR@100 against a baseline row, train time and inference speed) and
``plots/``: ``recall_vs_k.png``, ``recall_vs_iou.png``, ``score_histograms.png`` and
``heatmaps.png`` (FCOS-OWP runs only: the maps are per FPN location).

Inference speed is measured by the study itself, for every row under the same conditions: the
run's model on this machine's default device, in batches of the run's ``eval.batch_size``
images of one padded input shape (:func:`owp.engine.batching.inference_batches`) over the
first :data:`SPEED_IMAGES` val images (after :data:`SPEED_WARMUP` untimed ones), proposal
scoring, input resizing and postprocessing included, image decoding excluded.

Re-running the same study continues it: a finished run (its checkpoint at ``train.max_iters``
and an ``eval/metrics.json`` written after it) is reused, an unfinished one is resumed, a missing
one is trained. A run folder whose saved config differs from the requested one in anything that
changes the result (anything but :data:`CONTINUABLE_KEYS`) is an error rather than silently
mixed in.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torchvision.ops import box_iou

from owp.config import (
    RunConfig,
    apply_overrides,
    list_groups,
    list_presets,
    load_group,
    load_preset,
    upgrade_saved_config,
)
from owp.data.coco import image_path, read_coco_json
from owp.data.images import read_image_tensor
from owp.data.locate import locate, locate_split, run_data
from owp.data.splits import ClassSplit, SplitSpec, resolve_split
from owp.engine.batching import inference_batches, input_shape_of
from owp.engine.checkpoint import latest_checkpoint, load_checkpoint
from owp.engine.inference import metrics_file_name
from owp.engine.runs import load
from owp.engine.trainer import RUN_PREFIX, train
from owp.errors import OwpInputError
from owp.evaluation.cocoeval import run_cocoeval
from owp.evaluation.matching import IOU_THRESHOLDS
from owp.evaluation.results import Results, read_results
from owp.evaluation.tables import markdown_table
from owp.files import write_json
from owp.models.registry import model_spec
from owp.viz.heatmaps import objectness_maps, save_heatmap_grid
from owp.viz.plots import plot_recall_vs_iou, plot_recall_vs_k, plot_score_histograms

STUDY_FILE = "study.json"
CURVE_BUDGET = 100
SPEED_IMAGES = 50
SPEED_WARMUP = 3
MATCH_IOU = 0.5
CONTINUABLE_KEYS = frozenset(
    {
        "description",
        "train.device",
        "train.checkpoint_period",
        "train.keep_checkpoints",
        "train.log_period",
        "train.eval_period",
        "data.num_workers",
        "eval.batch_size",
        "model.compile",
        "train.channels_last",
    }
)
"""Config keys that may change between sessions of one run: where it runs, how often it logs,
checkpoints and evaluates, its description, and how fast (memory layout, compilation; not
``train.amp``, which changes the arithmetic). Not ``train.max_iters``: a resumed run keeps the lr
steps of its first schedule, so a longer run would not be the run its config describes."""

TRAINED, RESUMED, REUSED = "trained", "resumed", "reused"
RECALL_COLUMNS = ("AR@10", "AR@100", "AR_small@100", "AR_medium@100", "AR_large@100")
TABLE_COLUMNS = (
    "run",
    "description",
    "scoring",
    "protocol",
    *RECALL_COLUMNS,
    "AP (base)",
    "train time (min)",
    "inference img/s",
    "ΔAR@100",
)


@dataclass
class StudyResult:
    """What :func:`run_study` leaves: the table rows and the files written."""

    rows: list[dict[str, Any]]
    results_md: Path
    results_json: Path
    plots: dict[str, Path]


@dataclass
class _ValSet:
    """A run's val ground truth, its split and its images folder."""

    coco: dict[str, Any]
    split: ClassSplit
    images: Path


def expand_names(names: Sequence[str]) -> tuple[list[str], str | None]:
    """Study groups and presets -> presets (in order, without repeats) and the first group's
    baseline (``None`` when only presets are named)."""
    groups, presets = list_groups(), list_presets()
    expanded: list[str] = []
    baseline = None
    for name in names:
        if name in groups:
            group = load_group(name)
            members = group.presets
            baseline = baseline or group.baseline
        elif name in presets:
            members = (name,)
        else:
            raise OwpInputError(
                f"unknown study group or preset {name!r}; groups: {', '.join(groups)}; "
                f"presets: {', '.join(presets)}"
            )
        expanded += [member for member in members if member not in expanded]
    if not expanded:
        raise OwpInputError("name at least one study group or preset")
    return expanded, baseline


def plan_runs(
    presets: Sequence[str], overrides: Sequence[str] = (), data: str | Path | None = None
) -> dict[str, RunConfig]:
    """Preset -> its config (``data`` as train and val set, then ``overrides``), in training
    order: a preset whose ``train.init`` or ``data.pseudo_labels`` is ``run:NAME`` comes after
    NAME, which is added when missing."""
    planned: dict[str, RunConfig] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in planned:
            return
        if name in chain:
            cycle = " -> ".join((*chain[chain.index(name) :], name))
            raise OwpInputError(f"train.init run dependencies form a cycle: {cycle}")
        config = load_preset(name)
        if data is not None:
            config = replace(config, data=replace(config.data, train=str(data), val=str(data)))
        config = apply_overrides(config, list(overrides))
        for source in (config.train.init, config.data.pseudo_labels):
            if source and source.startswith(RUN_PREFIX):
                visit(source.removeprefix(RUN_PREFIX), (*chain, name))
        planned[name] = config

    for name in presets:
        visit(name, ())
    return planned


def run_action(run_dir: Path, config: RunConfig) -> str:
    """What a study does with ``run_dir`` for ``config``: :data:`TRAINED` (nothing there yet),
    :data:`RESUMED` (a checkpoint before ``max_iters``, or no evaluation after the last one) or
    :data:`REUSED` (finished and evaluated)."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        return TRAINED
    state = load_checkpoint(checkpoint)
    differences = config_differences(state.get("config", {}), config.to_dict())
    if differences:
        raise OwpInputError(
            f"holds a run with another config ({'; '.join(differences[:3])}); delete it or "
            "choose another --out",
            path=run_dir,
        )
    metrics = run_dir / "eval" / metrics_file_name(config.eval.protocol, config.eval.oln_pool)
    evaluated = metrics.is_file() and metrics.stat().st_mtime_ns >= checkpoint.stat().st_mtime_ns
    return REUSED if state["step"] == config.train.max_iters and evaluated else RESUMED


def recall_per_iou(
    gt: str | Path | Mapping[str, Any],
    proposals: str | Path | Results,
    split: str | Path | SplitSpec | ClassSplit,
    k: int = CURVE_BUDGET,
) -> list[float]:
    """Novel-class recall at ``k`` proposals per image for each IoU threshold 0.50..0.95.

    Class-agnostic, as the strict protocol (base ground truth deleted, COCOeval with
    ``useCats=0``). NaN at every threshold when the images hold no novel object.
    """
    dataset, proposals, split = _inputs(gt, proposals, split)
    recall = run_cocoeval(
        _novel_ground_truth(dataset, split),
        proposals,
        [k],
        use_cats=False,
        category_id=split.novel_ids[0],
    )["recall"]
    return [float(r) if r > -1 else math.nan for r in recall[:, 0, 0, 0]]


def scores_by_match(
    gt: str | Path | Mapping[str, Any],
    proposals: str | Path | Results,
    split: str | Path | SplitSpec | ClassSplit,
    *,
    iou: float = MATCH_IOU,
) -> tuple[list[float], list[float]]:
    """Scores of the proposals overlapping a novel object at IoU >= ``iou`` (any, not one to
    one), and of those overlapping no ground-truth box at all (base, novel or crowd).

    Proposals on base objects only are in neither list.
    """
    dataset, proposals, split = _inputs(gt, proposals, split)
    gt_boxes: dict[int, list[list[float]]] = defaultdict(list)
    gt_novel: dict[int, list[bool]] = defaultdict(list)
    for ann in dataset["annotations"]:
        gt_boxes[ann["image_id"]].append(ann["bbox"])
        gt_novel[ann["image_id"]].append(split.is_novel(ann["category_id"]))
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for proposal in proposals:
        by_image[proposal["image_id"]].append(proposal)
    novel_scores: list[float] = []
    background_scores: list[float] = []
    for image_id, items in by_image.items():
        scores = torch.tensor([p["score"] for p in items], dtype=torch.float64)
        boxes = _xyxy([p["bbox"] for p in items])
        hits = box_iou(boxes, _xyxy(gt_boxes[image_id])) >= iou
        novel = torch.tensor(gt_novel[image_id], dtype=torch.bool)
        novel_scores += scores[(hits & novel).any(dim=1)].tolist()
        background_scores += scores[~hits.any(dim=1)].tolist()
    return novel_scores, background_scores


def most_novel_image(coco: Mapping[str, Any], split: ClassSplit) -> dict[str, Any]:
    """The image entry with the most novel non-crowd objects (the first one on ties)."""
    counts: dict[int, int] = defaultdict(int)
    for ann in coco["annotations"]:
        if split.is_novel(ann["category_id"]) and not ann["iscrowd"]:
            counts[ann["image_id"]] += 1
    return max(coco["images"], key=lambda image: counts[image["id"]])


def run_study(
    names: Sequence[str],
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    data: str | Path | None = None,
    baseline: str | None = None,
    heatmap_runs: Sequence[str] | None = None,
    progress: bool = True,
) -> StudyResult:
    """Train, resume or reuse the runs of ``names`` (study groups and/or presets) in
    ``out/runs``, then write ``results.json``, ``results.md`` and the plots into ``out``.

    Args:
        names: study groups (``owp.config.list_groups()``) and presets, expanded in order.
        out: the study folder.
        overrides: ``section.key=value`` strings applied to every preset.
        data: dataset used as train and val set of every preset.
        baseline: the run ΔAR@100 is measured against (default: the first group's baseline,
            else the first preset).
        heatmap_runs: the runs drawn in ``heatmaps.png`` (default: the first two).
        progress: print a status line per run and show the trainer's progress bars.
    """
    out = Path(out)
    presets, group_baseline = expand_names(names)
    configs = plan_runs(presets, overrides, data)
    baseline = baseline or group_baseline or presets[0]
    one_stage = [name for name, config in configs.items() if _has_heatmaps(config)]
    chosen = list(heatmap_runs) if heatmap_runs else one_stage[:2]
    for name, role in [(baseline, "baseline"), *((n, "heatmap run") for n in chosen)]:
        if name not in configs:
            raise OwpInputError(
                f"{role} {name!r} is not one of the study's runs: {', '.join(configs)}"
            )
    for name in chosen:
        if name not in one_stage:
            raise OwpInputError(
                f"heatmap run {name!r} is not an FCOS-OWP model (objectness heat maps are per "
                f"FPN location); FCOS-OWP runs here: {', '.join(one_stage) or 'none'}"
            )
    rows = []
    for index, (name, config) in enumerate(configs.items(), start=1):
        run_dir = out / "runs" / name
        prefix = f"[{index}/{len(configs)}] {name}"
        status = run_action(run_dir, config)
        if status != REUSED:
            verb = "training" if status == TRAINED else "resuming"
            _say(progress, f"{prefix}: {verb} in {run_dir}")
            _timed_train(config, run_dir, resume=status == RESUMED, progress=progress)
        seconds = _recorded_seconds(run_dir)
        _say(progress, f"{prefix}: {status} ({_duration(seconds)})")
        rows.append(_row(name, config, run_dir, status, seconds))
    # Each run is measured on its own data (its config.yaml: absolute paths).
    configs = {
        name: replace(config, data=run_data(out / "runs" / name, asdict(config.data)))
        for name, config in configs.items()
    }
    val_sets: dict[tuple, _ValSet] = {}
    for row in rows:
        val = _val_set(configs[row["run"]], val_sets)
        row["images_per_second"] = inference_speed(
            load(row["run_dir"]), val, batch_size=configs[row["run"]].eval.batch_size
        )
    _add_deltas(rows, baseline)
    results_json = write_json(out / "results.json", rows)
    results_md = out / "results.md"
    results_md.write_text(_results_markdown(rows, presets, baseline))
    plots = _plots(rows, configs, out / "plots", chosen, val_sets)
    return StudyResult(rows, results_md, results_json, plots)


def inference_speed(model: torch.nn.Module, val: _ValSet, batch_size: int = 1) -> float:
    """Images per second of ``model`` on the first :data:`SPEED_IMAGES` val images, in batches
    of at most ``batch_size`` images of one input shape (see the module docstring)."""
    device = next(model.parameters()).device
    entries = val.coco["images"][: SPEED_WARMUP + SPEED_IMAGES]
    images = [read_image_tensor(image_path(val.images, entry)).to(device) for entry in entries]
    warmup, timed = images[:SPEED_WARMUP], images[SPEED_WARMUP:]
    sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in timed]
    batches = inference_batches(sizes, batch_size, input_shape_of(model))
    model.eval()
    with torch.inference_mode():
        for image in warmup:
            model([image])
        _synchronize(device)
        start = time.perf_counter()
        for batch in batches:
            model([timed[index] for index in batch])
        _synchronize(device)
    return round(len(timed) / (time.perf_counter() - start), 2)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _has_heatmaps(config: RunConfig) -> bool:
    """Whether the run's model has per-location objectness maps (FCOS-OWP)."""
    return model_spec(config.model.name).model_type.OBJECTNESS_MAPS


def _say(enabled: bool, line: str) -> None:
    if enabled:
        print(line, flush=True)


def _timed_train(config: RunConfig, run_dir: Path, *, resume: bool, progress: bool) -> None:
    """Train or resume, adding the wall time (also of an interrupted session) to ``study.json``.

    A resumed run with no recorded time (trained outside a study) keeps none: its total is
    unknown.
    """
    before = _recorded_seconds(run_dir) if resume else 0.0
    start = time.perf_counter()
    try:
        train(config, run_dir, resume=resume, progress=progress)
    finally:
        if before is not None and latest_checkpoint(run_dir) is not None:
            total = before + time.perf_counter() - start
            write_json(run_dir / STUDY_FILE, {"train_seconds": round(total, 1)})


def _recorded_seconds(run_dir: Path) -> float | None:
    """The training wall time in ``run_dir/study.json`` (``None`` when not recorded)."""
    path = run_dir / STUDY_FILE
    if not path.is_file():
        return None
    return float(json.loads(path.read_text())["train_seconds"])


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "train time unknown"
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _row(
    name: str, config: RunConfig, run_dir: Path, status: str, seconds: float | None
) -> dict[str, Any]:
    """One results.json row: the run, how it was obtained, its val metrics (fractions)."""
    metrics_path = run_dir / "eval" / metrics_file_name(config.eval.protocol, config.eval.oln_pool)
    metrics = json.loads(metrics_path.read_text())
    return {
        "run": name,
        "description": config.description,
        "run_dir": str(run_dir),
        "status": status,
        "scoring": metrics.get("scoring"),
        "protocol": metrics.get("protocol_label", metrics.get("protocol")),
        **{k: v for k, v in metrics.items() if k.startswith(("AR", "AP"))},
        "num_gt": metrics.get("num_gt"),
        "train_seconds": seconds,
    }


def _add_deltas(rows: list[dict[str, Any]], baseline: str) -> None:
    """``delta_AR@100``: points of AR@100 above the baseline row (``None`` when unknown)."""
    reference = next(row for row in rows if row["run"] == baseline).get("AR@100")
    for row in rows:
        value = row.get("AR@100")
        known = value is not None and reference is not None
        row["delta_AR@100"] = round(100.0 * (value - reference), 2) if known else None


def _results_markdown(rows: list[dict[str, Any]], presets: Sequence[str], baseline: str) -> str:
    """results.md: a title, what the numbers are, the table."""
    cells = []
    for row in rows:
        seconds, delta = row["train_seconds"], row["delta_AR@100"]
        cells.append(
            {
                "run": row["run"],
                "description": row["description"].replace("|", "\\|"),
                "scoring": row["scoring"],
                "protocol": row["protocol"],
                **{column: row.get(column) for column in RECALL_COLUMNS},
                "AP (base)": row.get("AP", ""),
                "train time (min)": "" if seconds is None else f"{seconds / 60:.1f}",
                "inference img/s": f"{row['images_per_second']:.1f}",
                "ΔAR@100": "baseline"
                if row["run"] == baseline
                else ("n/a" if delta is None else f"{delta:+.1f}"),
            }
        )
    return (
        f"# owp study: {', '.join(presets)}\n\n"
        "AR: novel-class recall (%) on each run's val set; AP: base-class AP (%) of models "
        f"that classify; ΔAR@100: points against {baseline}.\n\n"
        f"{markdown_table(cells, TABLE_COLUMNS)}\n"
    )


def _plots(
    rows: list[dict[str, Any]],
    configs: Mapping[str, RunConfig],
    folder: Path,
    chosen: list[str],
    val_sets: dict[tuple, _ValSet],
) -> dict[str, Path]:
    """The study figures from the runs' metrics, val proposals and models (no heat maps
    without FCOS-OWP runs)."""
    by_iou, panels = {}, []
    for row in rows:
        val = _val_set(configs[row["run"]], val_sets)
        proposals = _proposals(row, val)
        by_iou[row["run"]] = recall_per_iou(val.coco, proposals, val.split)
        novel, background = scores_by_match(val.coco, proposals, val.split)
        panels.append((f"{row['run']} ({row['scoring']})", novel, background))
    curves = {
        row["run"]: {int(k.removeprefix("AR@")): v for k, v in row.items() if k.startswith("AR@")}
        for row in rows
    }
    plots = {
        "recall_vs_k": plot_recall_vs_k(folder / "recall_vs_k.png", curves),
        "recall_vs_iou": plot_recall_vs_iou(
            folder / "recall_vs_iou.png", IOU_THRESHOLDS, by_iou, k=CURVE_BUDGET
        ),
        "score_histograms": plot_score_histograms(
            folder / "score_histograms.png", panels, iou=MATCH_IOU
        ),
    }
    if chosen:
        plots["heatmaps"] = _heatmaps(folder / "heatmaps.png", rows, configs, chosen, val_sets)
    return plots


def _heatmaps(
    path: Path,
    rows: list[dict[str, Any]],
    configs: Mapping[str, RunConfig],
    chosen: list[str],
    val_sets: dict[tuple, _ValSet],
) -> Path:
    """heatmaps.png: the objectness maps of the ``chosen`` runs on one image, the one with the
    most novel objects in the val set of the first chosen run."""
    val = _val_set(configs[chosen[0]], val_sets)
    entry = most_novel_image(val.coco, val.split)
    image = read_image_tensor(image_path(val.images, entry))
    run_dirs = {row["run"]: Path(row["run_dir"]) for row in rows}
    maps = [(name, objectness_maps(load(run_dirs[name]), image)) for name in chosen]
    return save_heatmap_grid(path, image, maps)


def _val_set(config: RunConfig, cache: dict[tuple, _ValSet]) -> _ValSet:
    """The val ground truth of ``config`` (read once per dataset and split)."""
    data = config.data
    key = (data.val, data.val_images, data.split)
    if key not in cache:
        ann_file, images = locate(data.val, "val", data.val_images)
        coco = read_coco_json(ann_file)
        split = resolve_split(locate_split(data.split, data.val), coco["categories"], ann_file)
        cache[key] = _ValSet(coco, split, images)
    return cache[key]


def _proposals(row: Mapping[str, Any], val: _ValSet) -> Results:
    """A run's val proposals (``eval/proposals.json``), checked against the val images."""
    image_ids = [image["id"] for image in val.coco["images"]]
    return read_results(Path(row["run_dir"]) / "eval" / "proposals.json", image_ids)


def _inputs(
    gt: str | Path | Mapping[str, Any],
    proposals: str | Path | Results,
    split: str | Path | SplitSpec | ClassSplit,
) -> tuple[Mapping[str, Any], Results, ClassSplit]:
    """Ground truth, checked proposals and the resolved split, with novel classes."""
    name = gt if isinstance(gt, str | Path) else "ground truth"
    dataset = read_coco_json(gt) if isinstance(gt, str | Path) else gt
    split = resolve_split(split, dataset["categories"], name)
    if not split.novel_ids:
        raise OwpInputError(f"split {split.name!r} has no novel classes")
    image_ids = [image["id"] for image in dataset["images"]]
    return dataset, read_results(proposals, image_ids, name="proposals"), split


def _novel_ground_truth(dataset: Mapping[str, Any], split: ClassSplit) -> dict[str, Any]:
    """The ground truth with only the novel classes (the strict protocol's)."""
    return {
        "images": dataset["images"],
        "annotations": [a for a in dataset["annotations"] if split.is_novel(a["category_id"])],
        "categories": [c for c in dataset["categories"] if split.is_novel(c["id"])],
    }


def _xyxy(boxes: list[list[float]]) -> torch.Tensor:
    """COCO ``[x, y, w, h]`` boxes -> ``[N, 4]`` xyxy float64."""
    tensor = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    return torch.cat([tensor[:, :2], tensor[:, :2] + tensor[:, 2:]], dim=1)


def config_differences(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """``key saved -> wanted`` for the dotted config keys that differ, bar
    :data:`CONTINUABLE_KEYS`."""
    saved = upgrade_saved_config(dict(saved))  # older runs: legacy values, keys added since
    old, new = _flatten(json.loads(json.dumps(saved))), _flatten(json.loads(json.dumps(wanted)))
    return [
        f"{key} {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(old.keys() | new.keys())
        if key not in CONTINUABLE_KEYS and old.get(key) != new.get(key)
    ]


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"section.key": value}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
