"""``owp report``: one self-contained HTML page for a run or a study folder.

The page (``index.html``) needs no network: its figures are PNGs and its gallery images JPEGs
inlined as data URIs, its script is plain JavaScript in the page. It shows, per run, the
novel-class recall of both protocols (recomputed from the run's saved val proposals), recall
against k and against the IoU threshold, per-category recall bars, objectness score
histograms, the training losses from ``metrics.csv``, and a gallery of val images — the ones
with the most novel objects — with the top-k proposals drawn; a slider sets k in the browser:

* green: a proposal matched to a novel object (the strict protocol's one-to-one greedy match in
  score order at IoU 0.5: a proposal takes the free novel box it overlaps most);
* blue: a proposal left unmatched that overlaps a base-class object at IoU >= 0.5;
* grey (optional): the other proposals;
* dashed red: a novel object no proposal among the top k matched.

Greedy matching in score order makes the top-k matches a prefix of the top-``max_k`` matches,
so the page carries each proposal's status and each novel object's matching rank once, and the
script only compares ranks with k. For a study folder the page starts with the comparison table
of ``results.json`` and the study's curves, then one section per run.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from torchvision.ops import box_iou

from owp import __version__
from owp.data.coco import image_path, read_coco_json
from owp.data.images import read_rgb
from owp.data.locate import locate, locate_split, run_data
from owp.data.splits import ClassSplit, resolve_split
from owp.errors import OwpInputError
from owp.evaluation.proposals import PROTOCOLS, category_budget, evaluate_proposals
from owp.evaluation.report import format_value, recall_columns
from owp.evaluation.results import Results, read_results
from owp.viz.plots import (
    plot_per_category,
    plot_recall_vs_iou,
    plot_recall_vs_k,
    plot_score_histograms,
    plot_training_curves,
)
from owp.workflows.study import CURVE_BUDGET, IOU_THRESHOLDS, recall_per_iou, scores_by_match

GALLERY_IMAGES = 12
"""Val images in a run's gallery by default."""
GALLERY_MAX_K = 100
"""The slider's largest k by default (the proposals carried per gallery image)."""
GALLERY_K = 10
"""The slider's k when the page opens."""
GALLERY_SIDE = 640
"""Gallery images are shrunk to this longest side (boxes stay in original pixels)."""
MATCH_IOU = 0.5
STATUSES = ("novel", "base", "none")
"""Proposal statuses in the gallery data (index = the code the page carries)."""


@dataclass
class RunEvaluation:
    """What a run's section is made of: its val set, saved proposals and metrics."""

    name: str
    run_dir: Path
    config: dict[str, Any]
    coco: dict[str, Any]
    ann_file: Path
    images_dir: Path
    split: ClassSplit
    proposals: Results
    saved_metrics: dict[str, Any]


def write_report(
    source: str | Path,
    out: str | Path,
    *,
    data: str | Path | None = None,
    images: str | Path | None = None,
    gallery: int = GALLERY_IMAGES,
    max_k: int = GALLERY_MAX_K,
    progress: bool = False,
) -> Path:
    """Write ``out/index.html`` for a run folder or a study folder; returns its path.

    Args:
        source: a run folder (``config.yaml``, a checkpoint, ``eval/``) or a study folder
            (``results.json``, ``runs/``).
        out: the report folder (created).
        data: the val dataset (folder or instances JSON) to report on instead of the one the
            run's saved proposals were made on; a run with no saved proposals for it is
            evaluated on it first (predictions kept, and reused, in ``out/eval/<run>``).
        images: the images folder of ``data`` (default: found next to the JSON).
        gallery: val images in each run's gallery.
        max_k: the largest k of the gallery's slider.
        progress: show the progress of predictions made for the report.
    """
    source, out = Path(source), Path(out)
    if gallery < 0 or max_k < 1:
        raise OwpInputError(f"--gallery must be >= 0 and --max-k >= 1, got {gallery} and {max_k}")
    if out.exists() and not out.is_dir():
        raise OwpInputError("is a file, expected a report folder", path=out)
    study_rows = _study_rows(source)
    if study_rows is None:
        run_dirs = {source.resolve().name: source}
    else:
        run_dirs = {row["run"]: Path(row["run_dir"]) for row in study_rows}
    runs = [
        evaluate_run(name, run_dir, out / "eval" / name, data, images, progress)
        for name, run_dir in run_dirs.items()
    ]
    title = f"owp {'study' if study_rows is not None else 'run'} {source.resolve().name}"
    with tempfile.TemporaryDirectory() as scratch:
        figures = _Figures(Path(scratch))
        body = []
        if study_rows is not None:
            body.append(_study_section(study_rows, runs, figures))
        gallery_data: dict[str, Any] = {}
        for run in runs:
            section, items = _run_section(run, figures, gallery, max_k)
            body.append(section)
            gallery_data.update(items)
    page = _page(title, source, body, gallery_data, max_k, [run.name for run in runs])
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def evaluate_run(
    name: str,
    run_dir: Path,
    work_dir: Path,
    data: str | Path | None = None,
    images: str | Path | None = None,
    progress: bool = False,
) -> RunEvaluation:
    """A run's val set and proposals: its saved ``eval/`` (and the annotation file and images
    folder recorded in ``eval/predictions.json``, else the run's ``data.val``), or, for another
    ``data`` than the saved proposals were made on, a fresh evaluation in ``work_dir``."""
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise OwpInputError("not a run folder (no config.yaml) nor a study folder", path=run_dir)
    config = yaml.safe_load(config_file.read_text()) or {}
    own = run_data(run_dir)
    saved = _saved_key(run_dir / "eval")
    if data is not None:
        ann_file, images_dir = locate(data, "val", images)
    elif saved is not None:
        ann_file, images_dir = Path(saved["annotations"][0]), Path(saved["images"])
    else:
        ann_file, images_dir = locate(own.val, "val", own.val_images)
    coco = read_coco_json(ann_file)
    split_name = locate_split(own.split, data if data is not None else own.val)
    split = resolve_split(split_name, coco["categories"], ann_file)
    eval_dir = run_dir / "eval"
    made_for = None if saved is None else Path(saved["annotations"][0]).resolve()
    if not (eval_dir / "proposals.json").is_file() or (
        data is not None and made_for != ann_file.resolve()
    ):
        _evaluate_for_report(run_dir, ann_file, images_dir, split_name, work_dir, progress)
        eval_dir = work_dir
    image_ids = [info["id"] for info in coco["images"]]
    proposals = read_results(eval_dir / "proposals.json", image_ids)
    metrics_file = eval_dir / "metrics.json"
    saved_metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return RunEvaluation(
        name, run_dir, config, coco, ann_file, images_dir, split, proposals, saved_metrics
    )


def gallery_marks(
    proposals: np.ndarray, novel: np.ndarray, base: np.ndarray, iou: float = MATCH_IOU
) -> tuple[list[int], list[int | None]]:
    """Statuses of ranked proposals and matching ranks of novel objects in one image.

    Args:
        proposals: ``[P, 4]`` xywh boxes, best first.
        novel: ``[N, 4]`` xywh novel (non-crowd) objects.
        base: ``[B, 4]`` xywh base-class objects.

    Returns:
        Per proposal, an index into :data:`STATUSES`: ``novel`` when, in rank order, it takes the
        still-free novel object it overlaps most at IoU >= ``iou`` (the later one on ties, as
        COCOeval), else ``base`` when it overlaps a base object that much, else ``none``; and per
        novel object the rank of the proposal that took it (``None``: not found).
    """
    to_novel = _iou(proposals, novel)
    on_base = (_iou(proposals, base) >= iou).any(axis=1)
    found: list[int | None] = [None] * len(novel)
    statuses = []
    for rank in range(len(proposals)):
        free = np.array([f is None for f in found], dtype=bool)
        candidates = np.flatnonzero(free & (to_novel[rank] >= iou))
        if candidates.size:
            best = candidates[to_novel[rank, candidates] == to_novel[rank, candidates].max()][-1]
            found[best] = rank
            statuses.append(STATUSES.index("novel"))
        else:
            statuses.append(STATUSES.index("base" if on_base[rank] else "none"))
    return statuses, found


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[len(a), len(b)]`` IoU of xywh boxes."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    xyxy = [torch.from_numpy(np.asarray(x, dtype=np.float64).reshape(-1, 4)) for x in (a, b)]
    xyxy = [torch.cat([x[:, :2], x[:, :2] + x[:, 2:]], dim=1) for x in xyxy]
    return box_iou(*xyxy).numpy()


def _evaluate_for_report(
    run_dir: Path, ann_file: Path, images_dir: Path, split: str | Path, work: Path, progress: bool
) -> None:
    """Predict with the run's model on ``ann_file`` into ``work`` (reused when it matches)."""
    from owp.engine.dist import resolve_device
    from owp.engine.inference import evaluate_model
    from owp.engine.runs import load_with_config

    model, saved = load_with_config(run_dir)
    model.to(resolve_device("auto"))
    evaluate_model(
        model,
        ann_file,
        images_dir,
        split,
        proposal_scoring=saved["eval"].get("proposal_scoring"),
        detection_scoring=saved["eval"].get("detection_scoring"),
        out_dir=work,
        progress=progress,
        reuse=True,
    )


def _saved_key(eval_dir: Path) -> dict[str, Any] | None:
    """What ``eval_dir/proposals.json`` was made from (``predictions.json``), if recorded."""
    path = eval_dir / "predictions.json"
    try:
        entry = json.loads(path.read_text()).get("proposals.json")
    except (OSError, ValueError, AttributeError):
        return None
    return entry if isinstance(entry, dict) and "annotations" in entry else None


def _study_rows(source: Path) -> list[dict[str, Any]] | None:
    """A study folder's ``results.json`` rows (run dirs made absolute), ``None`` for a run."""
    results = source / "results.json"
    if not results.is_file() or not (source / "runs").is_dir():
        return None
    rows = json.loads(results.read_text())
    for row in rows:
        run_dir = Path(row["run_dir"])
        if not run_dir.is_dir():  # a moved study: its runs are still in runs/<name>
            run_dir = source / "runs" / row["run"]
        row["run_dir"] = str(run_dir)
    return rows


class _Figures:
    """Plots drawn into a scratch folder and returned as ``<img>`` tags with data URIs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def tag(self, draw: Callable[[Path], Path], alt: str) -> str:
        self.count += 1
        path = draw(self.folder / f"figure{self.count}.png")
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _run_section(
    run: RunEvaluation, figures: _Figures, gallery: int, max_k: int
) -> tuple[str, dict[str, Any]]:
    """One run's ``<section>`` and its gallery data (figure id -> boxes)."""
    anchor = _anchor(run.name)
    metrics = {
        protocol: evaluate_proposals(
            run.coco, run.proposals, run.split, protocol=protocol, per_category=protocol == "strict"
        )
        for protocol in PROTOCOLS
    }
    strict = metrics["strict"]
    columns = recall_columns(strict)
    rows = [
        {**m, "protocol": m["protocol_label"], "novel objects": m["num_gt"]}
        for m in metrics.values()
    ]
    parts = [
        f'<section class="run" id="{anchor}"><h2>Run {html.escape(run.name)}</h2>',
        f"<p>{_run_summary(run)}</p>",
        "<h3>Novel-class recall (%)</h3>",
        _table(rows, ["protocol", *columns, "novel objects"], css_id=f"{anchor}-metrics"),
        "<p class=note>strict: base-class objects deleted, every proposal counts in the budget "
        "k (the paper); oln: proposals matched to a base-class object at IoU 0.5 do not consume "
        "it (OLN).</p>",
    ]
    ap = {k: v for k, v in run.saved_metrics.items() if k.startswith("AP")}
    if ap:
        scoring = run.saved_metrics.get("detection_scoring", "")
        parts += [f"<h3>Base-class AP (%), scored by {html.escape(str(scoring))}</h3>"]
        parts.append(_table([ap], list(ap), css_id=f"{anchor}-ap"))
    curves = {p: {int(k[3:]): v for k, v in m.items() if k.startswith("AR@")} for p, m in
              metrics.items()}  # fmt: skip
    by_iou = {run.name: recall_per_iou(run.coco, run.proposals, run.split, k=CURVE_BUDGET)}
    parts.append('<div class="plots">')
    parts.append(figures.tag(lambda p: plot_recall_vs_k(p, curves), "recall against k"))
    parts.append(
        figures.tag(
            lambda p: plot_recall_vs_iou(p, IOU_THRESHOLDS, by_iou, k=CURVE_BUDGET),
            "recall against the IoU threshold",
        )
    )
    novel_scores, background = scores_by_match(run.coco, run.proposals, run.split)
    parts.append(
        figures.tag(
            lambda p: plot_score_histograms(p, [(run.name, novel_scores, background)]),
            "objectness score histograms",
        )
    )
    parts.append("</div>")
    budget = category_budget(sorted({int(k[3:]) for k in strict if k.startswith("AR@")}))
    per_category = strict["per_category"]
    parts += [
        "<h3>Per novel category (strict protocol, each class's objects alone)</h3>",
        figures.tag(lambda p: plot_per_category(p, per_category, budget=budget), "per category"),
        "<details><summary>table</summary>",
        _table(per_category, ["name", "category_id", "count", f"R50@{budget}", f"AR@{budget}"]),
        "</details>",
    ]
    training = _training_rows(run.run_dir / "metrics.csv")
    if training:
        parts += [
            "<h3>Training</h3>",
            figures.tag(lambda p: plot_training_curves(p, training), "training curves"),
        ]
    items = _gallery_items(run, gallery, max_k)
    parts += [
        f"<h3>Gallery: {len(items)} val images with the most novel objects</h3>",
        f'<div class="gallery" id="{anchor}-gallery">',
        *(_figure_tag(key, item) for key, item in items.items()),
        "</div></section>",
    ]
    return "\n".join(parts), items


def _run_summary(run: RunEvaluation) -> str:
    model = run.config.get("model", {})
    train = run.config.get("train", {})
    scoring = run.saved_metrics.get("scoring") or model.get("scoring") or ""
    facts = [
        run.config.get("description") or "",
        f"model {model.get('name', '?')}",
        f"proposals scored by {scoring}" if scoring else "",
        f"{train.get('max_iters', '?')} iterations at batch {train.get('batch_size', '?')}",
        f"val: {run.ann_file} ({len(run.coco['images'])} images, split {run.split.name}: "
        f"{len(run.split.base_ids)} base, {len(run.split.novel_ids)} novel classes)",
        f"run folder {run.run_dir}",
    ]
    return html.escape("; ".join(f for f in facts if f))


def _study_section(
    rows: Sequence[Mapping[str, Any]], runs: Sequence[RunEvaluation], figures: _Figures
) -> str:
    """The comparison table of a study's ``results.json`` and its curves."""
    cells = []
    for row in rows:
        seconds = row.get("train_seconds")
        speed = row.get("images_per_second")
        delta = row.get("delta_AR@100")
        cells.append(
            {
                "run": f'<a href="#{_anchor(row["run"])}">{html.escape(row["run"])}</a>',
                "description": html.escape(str(row.get("description", ""))),
                "scoring": row.get("scoring"),
                "protocol": row.get("protocol"),
                **{k: v for k, v in row.items() if k.startswith(("AR@", "AR_", "AP"))},
                "train min": "" if seconds is None else f"{seconds / 60:.1f}",
                "img/s": "" if speed is None else f"{speed:.1f}",
                "ΔAR@100": "" if delta is None else f"{delta:+.1f}",
            }
        )
    columns = list(dict.fromkeys(k for cell in cells for k in cell))
    curves = {
        row["run"]: {int(k[3:]): v for k, v in row.items() if k.startswith("AR@")} for row in rows
    }
    by_iou = {r.name: recall_per_iou(r.coco, r.proposals, r.split, k=CURVE_BUDGET) for r in runs}
    return "\n".join(
        [
            '<section id="comparison"><h2>Comparison (results.json)</h2>',
            _table(cells, columns, css_id="comparison-table", raw=("run", "description")),
            "<p class=note>AR: novel-class recall (%) on each run's val set as the study measured "
            "it; ΔAR@100: points against the study's baseline run.</p>",
            '<div class="plots">',
            figures.tag(lambda p: plot_recall_vs_k(p, curves), "recall against k, every run"),
            figures.tag(
                lambda p: plot_recall_vs_iou(p, IOU_THRESHOLDS, by_iou, k=CURVE_BUDGET),
                "recall against IoU, every run",
            ),
            "</div></section>",
        ]
    )


def _gallery_items(run: RunEvaluation, count: int, max_k: int) -> dict[str, dict[str, Any]]:
    """Gallery data of the ``count`` val images with the most novel objects (file order on
    ties): the image as a JPEG data URI, the top ``max_k`` proposals ``[x, y, w, h, status]``
    and the novel objects ``[x, y, w, h, matching rank or -1]``."""
    novel_of: dict[int, list[list[float]]] = {info["id"]: [] for info in run.coco["images"]}
    base_of: dict[int, list[list[float]]] = {info["id"]: [] for info in run.coco["images"]}
    for ann in run.coco["annotations"]:
        if ann.get("iscrowd"):
            continue
        if run.split.is_novel(ann["category_id"]):
            novel_of[ann["image_id"]].append(ann["bbox"])
        elif run.split.is_base(ann["category_id"]):
            base_of[ann["image_id"]].append(ann["bbox"])
    proposals_of: dict[int, list[dict[str, Any]]] = {}
    for proposal in run.proposals:
        proposals_of.setdefault(proposal["image_id"], []).append(proposal)
    chosen = sorted(run.coco["images"], key=lambda info: -len(novel_of[info["id"]]))[:count]
    items = {}
    for index, info in enumerate(chosen):
        ranked = sorted(proposals_of.get(info["id"], []), key=lambda p: -p["score"])[:max_k]
        boxes = np.array([p["bbox"] for p in ranked], dtype=np.float64).reshape(-1, 4)
        novel = np.array(novel_of[info["id"]], dtype=np.float64).reshape(-1, 4)
        statuses, found = gallery_marks(boxes, novel, np.array(base_of[info["id"]]).reshape(-1, 4))
        items[f"{_anchor(run.name)}-{index}"] = {
            "file": str(info.get("file_name", info["id"])),
            "width": info["width"],
            "height": info["height"],
            "src": _jpeg_uri(read_rgb(image_path(run.images_dir, info))),
            "proposals": [[*_rounded(b), s] for b, s in zip(boxes, statuses, strict=True)],
            "novel": [[*_rounded(b), -1 if f is None else f] for b, f in zip(novel, found,
                                                                             strict=True)],
        }  # fmt: skip
    return items


def _rounded(box: np.ndarray) -> list[float]:
    return [round(float(v), 1) for v in box]


def _jpeg_uri(image: np.ndarray) -> str:
    """An RGB array as a JPEG data URI, shrunk to :data:`GALLERY_SIDE` on its longest side."""
    picture = Image.fromarray(image)
    picture.thumbnail((GALLERY_SIDE, GALLERY_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure_tag(key: str, item: Mapping[str, Any]) -> str:
    return (
        f'<figure class="shot" data-key="{key}"><div class="frame">'
        f'<img alt="{html.escape(item["file"])}" src="{item["src"]}">'
        f'<svg viewBox="0 0 {item["width"]} {item["height"]}" preserveAspectRatio="none"></svg>'
        f"</div><figcaption>{html.escape(item['file'])}</figcaption></figure>"
    )


def _training_rows(path: Path) -> list[dict[str, float]]:
    """``metrics.csv`` as rows of floats (columns with a non-number left out)."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    numbers = []
    for row in rows:
        parsed = {}
        for key, value in row.items():
            try:
                parsed[key] = float(value)
            except (TypeError, ValueError):
                continue
        if "step" in parsed:
            numbers.append(parsed)
    keys = set.intersection(*(set(r) for r in numbers)) if numbers else set()
    return [{k: v for k, v in r.items() if k in keys and math.isfinite(v)} for r in numbers]


def _table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    css_id: str | None = None,
    raw: Sequence[str] = (),
) -> str:
    """An HTML table; recalls as percentages (:func:`format_value`), ``raw`` columns unescaped."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            text = str(value) if column in raw else html.escape(format_value(value))
            cells.append(f"<td>{'' if value is None and column in raw else text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    attribute = f' id="{css_id}"' if css_id else ""
    return f"<table{attribute}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _anchor(name: str) -> str:
    return "run-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def _page(
    title: str,
    source: Path,
    sections: Sequence[str],
    gallery: Mapping[str, Any],
    max_k: int,
    run_names: Sequence[str],
) -> str:
    data = json.dumps(gallery, separators=(",", ":")).replace("</", "<\\/")
    links = " · ".join(f'<a href="#{_anchor(n)}">{html.escape(n)}</a>' for n in run_names)
    start = min(GALLERY_K, max_k)
    return _TEMPLATE.format(
        title=html.escape(title),
        source=html.escape(str(source.resolve())),
        version=__version__,
        links=links,
        max_k=max_k,
        k=start,
        sections="\n".join(sections),
        data=data,
        style=_STYLE,
        script=_SCRIPT,
    )


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 1.5em 3em; color: #222; }
header.bar { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ccc;
  padding: .5em 0; z-index: 2; display: flex; gap: 1.5em; align-items: center; flex-wrap: wrap; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: .2em .6em; text-align: right; }
th { background: #f3f3f3; }
.note { color: #666; font-size: 90%; max-width: 60em; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
img.plot { width: 480px; max-width: 100%; height: auto; border: 1px solid #eee; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr));
  gap: 1em; }
figure.shot { margin: 0; }
.frame { position: relative; line-height: 0; }
.frame img { width: 100%; height: auto; }
.frame svg { position: absolute; inset: 0; width: 100%; height: 100%; }
rect { fill: none; stroke-width: 2; vector-effect: non-scaling-stroke; }
rect.novel { stroke: #1db954; }
rect.base { stroke: #2f6fdf; }
rect.none { stroke: rgba(255, 255, 255, .55); stroke-width: 1; }
rect.missed { stroke: #e53935; stroke-dasharray: 6 4; }
figcaption { font-size: 90%; color: #444; margin-top: .3em; }
.key span { display: inline-block; width: 1.6em; height: .8em; margin: 0 .3em 0 .8em;
  border: 2px solid; vertical-align: middle; }
section.run { border-top: 2px solid #ddd; margin-top: 2em; }
"""

_SCRIPT = """
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("gallery-data").textContent);
  const slider = document.getElementById("k-slider");
  const shown = document.getElementById("k-value");
  const unmatched = document.getElementById("show-unmatched");
  const svgNS = "http://www.w3.org/2000/svg";
  const names = ["novel", "base", "none"];
  function box(svg, b, css) {
    const r = document.createElementNS(svgNS, "rect");
    r.setAttribute("x", b[0]); r.setAttribute("y", b[1]);
    r.setAttribute("width", b[2]); r.setAttribute("height", b[3]);
    r.setAttribute("class", css);
    svg.appendChild(r);
  }
  function draw() {
    const k = Number(slider.value);
    shown.textContent = String(k);
    for (const figure of document.querySelectorAll("figure.shot")) {
      const item = data[figure.dataset.key];
      const svg = figure.querySelector("svg");
      svg.replaceChildren();
      const top = item.proposals.slice(0, k);
      for (const wanted of [2, 1, 0]) {
        if (wanted === 2 && !unmatched.checked) continue;
        for (const p of top) if (p[4] === wanted) box(svg, p, names[wanted]);
      }
      let found = 0;
      for (const n of item.novel) {
        if (n[4] >= 0 && n[4] < k) found += 1; else box(svg, n, "missed");
      }
      const onBase = top.filter((p) => p[4] === 1).length;
      figure.querySelector("figcaption").textContent = item.file + ": top " + top.length +
        ", " + found + " of " + item.novel.length + " novel objects found, " + onBase +
        " on base objects";
    }
  }
  slider.addEventListener("input", draw);
  unmatched.addEventListener("change", draw);
  draw();
})();
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{style}</style></head>
<body>
<header class="bar"><strong>{title}</strong>
<label for="k-slider">top k proposals: <input type="range" id="k-slider" min="1" max="{max_k}"
value="{k}"> <output id="k-value">{k}</output></label>
<label><input type="checkbox" id="show-unmatched" checked> other proposals</label>
<span class="key"><span style="border-color:#1db954"></span>novel object hit
<span style="border-color:#2f6fdf"></span>on a base object
<span style="border-color:#e53935;border-style:dashed"></span>novel object missed at IoU 0.5</span>
</header>
<p class="note">{source}; made by owp {version}. Runs: {links}</p>
{sections}
<script type="application/json" id="gallery-data">{data}</script>
<script>{script}</script>
</body></html>
"""
