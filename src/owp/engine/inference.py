"""Running models and proposal generators over datasets: COCO results and their metrics."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from owp.data.coco import CocoDetection, image_path, is_federated, read_coco_json
from owp.data.images import read_rgb
from owp.data.splits import ClassSplit
from owp.engine import dist
from owp.engine.batching import inference_batches, input_shape_of, to_device
from owp.engine.precision import autocast, prepare_for_inference
from owp.errors import OwpInputError
from owp.evaluation.detection import DETECTION_MAX_DETS, evaluate_detections
from owp.evaluation.lvis import LVIS_MAX_DETS
from owp.evaluation.proposals import DEFAULT_MAX_DETS, DEFAULT_OLN_POOL, evaluate_proposals
from owp.evaluation.results import read_results
from owp.files import write_json
from owp.models.baselines import (
    random_proposals,
    selective_search_proposals,
    sliding_window_proposals,
)
from owp.parallel import ordered_map

Results = list[dict[str, Any]]
SizeProposer = Callable[[int, int], dict[str, torch.Tensor]]
PixelProposer = Callable[[np.ndarray], dict[str, torch.Tensor]]


def to_coco_results(image_id: int, output: Mapping[str, torch.Tensor]) -> Results:
    """One image's model output (``boxes`` xyxy ``[N, 4]``, ``scores`` ``[N]``) as COCO results.

    ``labels`` (when present) are written as ``category_id`` unchanged; callers that map
    contiguous labels to dataset ids do so before.
    """
    boxes = output["boxes"].detach().cpu().double()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    scores = output["scores"].detach().cpu().tolist()
    labels = output.get("labels")
    results = [
        {"image_id": int(image_id), "bbox": [round(v, 2) for v in box], "score": round(s, 5)}
        for box, s in zip(xywh, scores, strict=True)
    ]
    if labels is not None:
        for result, label in zip(results, labels.tolist(), strict=True):
            result["category_id"] = int(label)
    return results


def baseline_proposer(
    method: str, num: int, seed: int = 0, mode: str = "fast"
) -> SizeProposer | PixelProposer:
    """The named non-learned baseline as a function ``(width, height) -> output``, or for
    the baselines of :data:`owp.models.baselines.PIXEL_BASELINES`, ``(RGB uint8 [H, W, 3]) ->
    output``; ``mode`` is Selective Search's (``fast`` or ``quality``)."""
    if method == "sliding-window":
        return partial(sliding_window_proposals, num=num, seed=seed)
    if method == "random":
        return partial(random_proposals, num=num, seed=seed)
    if method == "selective-search":
        return partial(selective_search_proposals, num=num, mode=mode, seed=seed)
    raise ValueError(f"unknown baseline {method!r}")


def propose_for_images(
    images: Sequence[Mapping[str, Any]],
    proposer: SizeProposer | PixelProposer,
    *,
    images_dir: str | Path | None = None,
    progress: bool = False,
    workers: int | None = 1,
) -> Results:
    """Run a proposer on every COCO ``images`` entry; results in COCO format. Without
    ``images_dir`` the proposer gets each image's ``(width, height)``, with it the decoded RGB
    pixels of the entry's file there, in ``workers`` processes (``None``: one per available
    CPU, :func:`owp.parallel.resolve_workers`; more than one needs a proposer that pickles, as
    those of :func:`baseline_proposer` do). The results do not depend on ``workers``."""
    if images_dir is None:
        jobs = [(proposer, None, info) for info in images]
        workers = 1  # a box grid of a size costs less than starting a process
    else:
        jobs = [(proposer, image_path(images_dir, info), info) for info in images]
    results: Results = []
    outputs = ordered_map(_propose_one, jobs, workers)
    for output in tqdm(
        outputs, total=len(jobs), desc="proposing", unit="img", disable=not progress
    ):
        results.extend(output)
    return results


def _propose_one(
    job: tuple[SizeProposer | PixelProposer, Path | None, Mapping[str, Any]],
) -> Results:
    """COCO results of one ``(proposer, image file or None, image entry)``."""
    proposer, path, info = job
    if path is None:
        output = proposer(int(info["width"]), int(info["height"]))
    else:
        output = proposer(read_rgb(path))
    return to_coco_results(info["id"], output)


class UnreadableAsMessage(Dataset):
    """A dataset whose unreadable items come back as their one-line error message instead of
    raising: an error raised inside a DataLoader worker reaches the main process wrapped in
    the worker's traceback, a message does not."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except OwpInputError as err:
            return str(err)


def predict_dataset(
    model: nn.Module,
    dataset: CocoDetection,
    *,
    batch_size: int = 8,
    num_workers: int = 2,
    precision: str = "none",
    progress: bool = False,
    shard: bool = False,
) -> Results:
    """Run ``model`` (eval mode, no grad) over every image of ``dataset``; COCO results.

    Images go in batches of at most ``batch_size`` that the model pads to one input shape
    (:func:`owp.engine.batching.inference_batches`), so the results, given in dataset order,
    do not depend on the batch size. ``precision``: autocast ``none`` (fp32), ``bf16`` or
    ``fp16``. On CUDA, batches are read into pinned memory and copied without blocking.
    A classifying model's labels become dataset category ids through the model's own
    ``category_ids`` (:func:`model_category_ids`), never through the dataset's split.
    ``shard``: see :func:`predict_dataset_per_config`.
    """
    return predict_dataset_per_config(
        model,
        dataset,
        [model.postprocess_config],
        batch_size=batch_size,
        num_workers=num_workers,
        precision=precision,
        progress=progress,
        shard=shard,
    )[0]


def predict_dataset_per_config(
    model: nn.Module,
    dataset: CocoDetection,
    configs: Sequence[Any],
    *,
    batch_size: int = 8,
    num_workers: int = 2,
    precision: str = "none",
    progress: bool = False,
    shard: bool = False,
) -> list[Results] | None:
    """:func:`predict_dataset` under each postprocess config (scoring, top-k, thresholds) in
    one pass over the data: one list of COCO results per config.

    The model's ``detect_per_config`` runs the backbone (for FCOS-OWP the whole network) once
    per batch and postprocesses its outputs with each config, so comparing scorings, or
    proposals with detections, costs one forward pass, not one per config.

    ``shard`` inside a process group (every rank calls this): rank ``r`` of ``w`` predicts
    images ``r, r + w, ...`` and rank 0 gathers every image's results, in dataset order; the
    other ranks return ``None``. The results equal one process's: exactly at ``batch_size=1``,
    else up to the float rounding that batching itself brings (a batch's composition changes
    the kernels' summation order). Without a group it changes nothing.
    """
    if batch_size < 1:
        raise OwpInputError(f"the batch size must be a positive integer, got {batch_size}")
    device = next(model.parameters()).device
    records = dataset.records
    mine = (
        range(dist.get_rank(), len(dataset), dist.get_world_size())
        if shard
        else range(len(dataset))
    )
    sizes = [(int(records.heights[i]), int(records.widths[i])) for i in mine]
    batches = [
        [mine[j] for j in batch]
        for batch in inference_batches(sizes, batch_size, input_shape_of(model))
    ]
    loader = DataLoader(
        UnreadableAsMessage(dataset),
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=_lists_and_unreadable,
        pin_memory=device.type == "cuda",
    )
    was_training = model.training
    model.eval()
    per_image: list[dict[int, Results]] = [{} for _ in configs]
    label_ids: torch.Tensor | None = None  # read when the first labels appear
    with torch.inference_mode(), autocast(device, precision):
        for images, targets, unreadable in tqdm(
            loader, desc="predicting", unit="batch", disable=not progress
        ):
            if unreadable:
                raise OwpInputError(unreadable[0])
            per_config = model.detect_per_config(to_device(images, device), list(configs))
            for results, outputs in zip(per_image, per_config, strict=True):
                for output, target in zip(outputs, targets, strict=True):
                    if "labels" in output:
                        if label_ids is None:
                            label_ids = torch.tensor(model_category_ids(model))
                        ids = label_ids.to(output["labels"].device)
                        output = {**output, "labels": ids[output["labels"]]}
                    image_id = int(target["image_id"])
                    results[image_id] = to_coco_results(image_id, output)
    model.train(was_training)
    if shard:
        gathered = dist.gather_object(per_image)
        if gathered is None:
            return None
        per_image = [
            {k: v for ranks in shares for k, v in ranks.items()}
            for shares in zip(*gathered, strict=True)
        ]
    order = records.image_ids.tolist()
    return [[r for image_id in order for r in results[image_id]] for results in per_image]


def model_category_ids(model: Any) -> list[int]:
    """The dataset category id of each label of a classifying ``model`` (its ``category_ids``:
    saved with owp's checkpoints, COCO ids for torchvision sources), or an
    :class:`OwpInputError` when it has none: a label index means nothing outside its model."""
    ids = model.category_ids
    if ids is None:
        raise OwpInputError(
            "the model's labels have no dataset category ids: set model.category_ids (label i "
            "-> category id) or load it from an owp run or a torchvision: source"
        )
    return [int(i) for i in ids]


def check_model_classes(model: Any, categories: Sequence[Mapping[str, Any]]) -> None:
    """Refuse, in one line naming both class lists, a classifying ``model`` whose classes are
    not the dataset's: each of its category ids that the dataset has must carry the same name
    (case and ``_``/space aside) there. Models without names are not checked."""
    names = model.class_names
    if not names:
        return
    ids = model_category_ids(model)
    theirs = {int(c["id"]): str(c.get("name", "")) for c in categories}
    ours = {i: str(n) for i, n in zip(ids, names, strict=True) if i in theirs}
    same = lambda a, b: a.lower().replace("_", " ") == b.lower().replace("_", " ")  # noqa: E731
    if ours and all(same(n, theirs[i]) for i, n in ours.items()):
        return
    pairs = lambda table: ", ".join(f"{i} {table[i]}" for i in sorted(ours)[:6])  # noqa: E731
    raise OwpInputError(
        f"the model's classes are not this dataset's: model {pairs(ours) or ', '.join(names[:6])}"
        f" ...; dataset {pairs(theirs) if ours else ', '.join(sorted(theirs.values())[:6])} ..."
    )


def evaluate_model(
    model: nn.Module,
    ann_file: str | Path,
    images_dir: str | Path,
    split: str | Path,
    *,
    protocol: str = "strict",
    oln_pool: int = DEFAULT_OLN_POOL,
    max_dets: Sequence[int] = DEFAULT_MAX_DETS,
    batch_size: int = 8,
    proposal_scoring: str | None = None,
    detection_scoring: str | None = None,
    extra_proposal_scorings: Sequence[str] = (),
    out_dir: str | Path | None = None,
    progress: bool = False,
    reuse: bool = False,
    precision: str = "none",
    shard: bool = False,
) -> dict[str, Any]:
    """Novel-class AR@k of ``model``'s proposals, and base AP when it classifies.

    A split without novel classes (``all``: a model trained on every class) has its AR
    measured over every class instead.

    Proposals are ranked by ``proposal_scoring`` (default: the model's ``scoring``) and the
    model keeps ``max(max_dets)`` per image. A classifying model is also run with
    ``detection_scoring`` (default: the model's ``postprocess_config.detection_scoring()``:
    FCOS-OWP's scoring if class-aware, else ``cls*<scoring>``; ``cls`` for two-stage models)
    for base AP at 100 detections (300 on LVIS-style ground truth, as LVIS's AP keeps).
    Each of ``extra_proposal_scorings`` ranks the proposals once more, from the same forward
    pass (:func:`predict_dataset_per_config`); its novel-AR metrics are added under the keys
    ``"<scoring>/<metric>"`` (``"centerness/AR@100"``).

    With ``out_dir``, ``proposals.json`` (``proposals.<scoring>.json`` per extra scoring, and
    ``detections.json``), the metrics (:func:`metrics_file_name`: ``metrics.json`` for the
    strict protocol, ``metrics.oln-pool<N>.json`` for oln, so that neither overwrites the
    other) and ``predictions.json`` (what the predictions were
    made from: a digest of the weights, the model and postprocess settings, the annotation
    file and images folder) are written there. With ``reuse``, predictions saved in
    ``out_dir`` whose ``predictions.json`` entry matches are evaluated again instead of
    predicted again (``metrics["reused"]`` names them). ``batch_size`` images go through the
    model at a time (the results do not depend on it) under autocast ``precision`` (``none``
    = fp32, ``bf16``, ``fp16``).

    ``shard`` inside a process group (every rank calls this): each rank predicts its share of
    the images and rank 0 gathers, evaluates and writes (:func:`predict_dataset_per_config`);
    the metrics equal one process's. The other ranks return ``{}``. Rank 0 alone decides
    which saved predictions ``reuse`` takes and tells the others, so that every rank predicts
    the same files even when the nodes' disks differ.
    """
    dataset = CocoDetection(images_dir, ann_file, split, training=False)
    coco = read_coco_json(ann_file)
    config = model.postprocess_config
    scoring = proposal_scoring or config.scoring
    for chosen in dict.fromkeys([scoring, *extra_proposal_scorings]):
        check_scoring(model, chosen)
    top_n = max(max_dets)
    wanted = {"proposals.json": (scoring, top_n)}
    for extra in extra_proposal_scorings:
        if extra != scoring:
            wanted[f"proposals.{extra}.json"] = (extra, top_n)
    classifying = model.config.num_classes is not None and bool(dataset.split.base_ids)
    if classifying:
        check_model_classes(model, coco["categories"])
        class_scoring = detection_scoring or config.detection_scoring()
        budget = LVIS_MAX_DETS if is_federated(coco) else DETECTION_MAX_DETS[-1]
        wanted["detections.json"] = (class_scoring, budget)
    decides = not shard or dist.is_main_process()  # rank 0 reads and writes the files
    keys = {
        name: prediction_key(model, dataset, chosen, n, precision)
        for name, (chosen, n) in wanted.items()
        if decides
    }
    saved = _saved_predictions(out_dir) if reuse and decides else {}
    reused = [
        name
        for name in wanted
        if decides and saved.get(name) == keys[name] and (Path(out_dir) / name).is_file()
    ]
    if shard:
        # Every rank must take part in the same prediction, whatever its node's disk holds.
        reused = dist.broadcast_object(reused)
    missing = [name for name in wanted if name not in reused]
    configs = [replace(config, scoring=wanted[n][0], post_nms_top_n=wanted[n][1]) for n in missing]
    predicted: list[Results] | None = []
    if missing:
        predicted = predict_dataset_per_config(
            model,
            dataset,
            configs,
            batch_size=batch_size,
            precision=precision,
            progress=progress,
            shard=shard,
        )
    if not decides:
        return {}  # rank 0 has every rank's predictions
    image_ids = [img["id"] for img in coco["images"]]
    outputs = {name: read_results(Path(out_dir) / name, image_ids) for name in reused}
    outputs.update(zip(missing, predicted, strict=True))

    recall_split = dataset.split
    if not recall_split.novel_ids:
        # Trained on every class (split "all", e.g. a practical proposer): nothing is novel,
        # and the recall that tells how good its proposals are is over every object.
        recall_split = ClassSplit(
            f"{recall_split.name} (every class evaluated)",
            (),
            tuple(sorted(recall_split.names)),
            recall_split.names,
        )

    def novel_recall(name: str) -> dict[str, Any]:
        return evaluate_proposals(
            coco,
            outputs[name],
            recall_split,
            protocol=protocol,
            max_dets=max_dets,
            oln_pool=oln_pool,
        )

    metrics = novel_recall("proposals.json")
    metrics["scoring"] = scoring
    for extra in extra_proposal_scorings:
        if extra != scoring:
            for key, value in novel_recall(f"proposals.{extra}.json").items():
                if key.startswith("AR"):
                    metrics[f"{extra}/{key}"] = value
    if classifying:
        # Classes of the model that the dataset lacks (torchvision's "N/A" slots) score nothing.
        known = {int(c["id"]) for c in coco["categories"]}
        labelled = [d for d in outputs["detections.json"] if d["category_id"] in known]
        ap = evaluate_detections(coco, labelled, dataset.split)
        metrics.update({k: v for k, v in ap.items() if k.startswith("AP")})
        metrics["detection_scoring"] = class_scoring
    if reused:
        metrics["reused"] = reused
    if out_dir is not None:
        for name in missing:
            write_json(Path(out_dir) / name, outputs[name], indent=None)
        write_json(Path(out_dir) / PREDICTIONS_FILE, keys)
        write_json(Path(out_dir) / metrics_file_name(protocol, oln_pool), metrics)
    return metrics


def metrics_file_name(protocol: str, oln_pool: int = DEFAULT_OLN_POOL) -> str:
    """Where an evaluation folder keeps one protocol's metrics: ``metrics.json`` (strict) or
    ``metrics.oln-pool<N>.json``."""
    return "metrics.json" if protocol == "strict" else f"metrics.{protocol}-pool{oln_pool}.json"


def check_scoring(model: nn.Module, scoring: str) -> None:
    """Raise a one-line :class:`OwpInputError` when ``model`` cannot rank by ``scoring`` (an
    unknown name, a branch it lacks, a class scoring without a classifier)."""
    try:
        replace(model.config, scoring=scoring)
    except ValueError as err:
        raise OwpInputError(f"scoring {scoring!r} does not fit this model: {err}") from None


PREDICTIONS_FILE = "predictions.json"
"""What the saved predictions of an evaluation folder were made from (see evaluate_model)."""


def prediction_key(
    model: nn.Module, dataset: CocoDetection, scoring: str, top_n: int, precision: str = "none"
) -> dict[str, Any]:
    """What predictions on ``dataset`` depend on: the weights (a digest), the model and
    postprocess settings, the annotation file (path, size, modification time), the images
    folder, the split's base ids (labels of detections) and the autocast precision; not the
    batch size (:func:`predict_dataset` gives the same results at any)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        digest.update(raw.numpy().tobytes())
    stat = dataset.ann_file.stat()
    postprocess = replace(model.postprocess_config, scoring=scoring, post_nms_top_n=top_n)
    return {
        "weights": digest.hexdigest(),
        "model": repr(model.config),
        "postprocess": repr(postprocess),
        "annotations": [str(dataset.ann_file.absolute()), stat.st_size, stat.st_mtime_ns],
        "images": str(dataset.images_dir.absolute()),
        "base_ids": list(dataset.split.base_ids),
        "precision": precision,
    }


def _saved_predictions(out_dir: str | Path | None) -> dict[str, Any]:
    """The ``predictions.json`` of ``out_dir`` ({} when absent or unreadable)."""
    path = None if out_dir is None else Path(out_dir) / PREDICTIONS_FILE
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class InferenceRuntime:
    """Where and how fast a model runs for inference (``owp eval`` / ``owp predict``'s
    ``--device``, ``--amp``, ``--channels-last`` and ``--compile``; see
    :func:`~owp.engine.precision.prepare_for_inference`)."""

    device: torch.device | str = "auto"
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False


DEFAULT_RUNTIME = InferenceRuntime()
"""``auto`` device, fp32, contiguous memory, eager."""


def load_for_inference(
    source: str | Path,
    runtime: InferenceRuntime = DEFAULT_RUNTIME,
    *,
    weights: str | Path | None = None,
    **overrides: Any,
) -> tuple[Any, dict, str]:
    """The model of ``source`` (a run folder, checkpoint, model source or ONNX file) ready to
    run: moved to ``runtime.device`` (``auto``: CUDA when present) with its speed options
    applied.

    Args:
        source: what :func:`~owp.engine.runs.load_with_config` loads.
        runtime: where and how fast the model runs.
        weights: the weights file of a ``torchvision:`` source (others hold their own).
        overrides: model options replacing the saved ones (e.g. ``scoring``).

    Returns:
        ``(model, config, precision)``: the model, the run's full configuration dict and the
        autocast precision to run it under.
    """
    from owp.engine.runs import load_with_config
    from owp.models.two_stage.torchvision import TORCHVISION_PREFIX

    if weights is not None:
        if not str(source).startswith(TORCHVISION_PREFIX):
            raise OwpInputError(
                "--weights is for torchvision: sources; a run or checkpoint holds its own weights"
            )
        overrides["weights"] = weights
    model, saved = load_with_config(source, **overrides)
    device = runtime.device
    target = dist.resolve_device(device) if isinstance(device, str) else device
    model.to(target)
    precision = prepare_for_inference(
        model, target, amp=runtime.amp, channels_last=runtime.channels_last, compile=runtime.compile
    )
    return model, saved, precision


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def image_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named directly or found (sorted, not recursively) in named folders."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise OwpInputError("folder holds no image files", path=item)
            paths.extend(found)
        elif item.is_file():
            paths.append(item)
        else:
            raise OwpInputError("image or folder not found", path=item)
    return paths


def _lists_and_unreadable(items: list) -> tuple[list, list, list[str]]:
    """Images, targets and the messages of the unreadable items (collated in a worker; the
    main process raises them)."""
    good = [item for item in items if not isinstance(item, str)]
    images, targets = _as_lists(good) if good else ([], [])
    return list(images), list(targets), [item for item in items if isinstance(item, str)]


def _as_lists(items: list) -> tuple:
    """Collate ``[(image, target), ...]`` into ``(images, targets)`` without stacking."""
    return tuple(zip(*items, strict=True))
