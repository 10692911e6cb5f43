"""The report's HTML: run and study sections (tables, inlined figures, gallery) and the page.

The page's markup, style and script are package data (``templates/report.html``, ``.css``,
``.js``), filled in with :class:`string.Template`; figures are PNG data URIs, the gallery's
boxes JSON in the page that its script draws as SVG over each image.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from owp.evaluation.matching import IOU_THRESHOLDS
from owp.evaluation.proposals import PROTOCOLS, category_budget, evaluate_proposals
from owp.evaluation.tables import format_value, recall_columns
from owp.version import __version__
from owp.viz.plots import (
    plot_per_category,
    plot_recall_vs_iou,
    plot_recall_vs_k,
    plot_score_histograms,
    plot_training_curves,
)
from owp.workflows.report.gallery import figure_tag, gallery_items
from owp.workflows.report.runs import RunEvaluation
from owp.workflows.study import CURVE_BUDGET, recall_per_iou, scores_by_match

GALLERY_K = 10
"""The slider's k when the page opens."""


class Figures:
    """Plots drawn into a scratch folder and returned as ``<img>`` tags with data URIs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def tag(self, draw: Callable[[Path], Path], alt: str) -> str:
        self.count += 1
        path = draw(self.folder / f"figure{self.count}.png")
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def run_section(
    run: RunEvaluation, figures: Figures, gallery: int, max_k: int
) -> tuple[str, dict[str, Any]]:
    """One run's ``<section>`` and its gallery data (figure id -> boxes)."""
    anchor = run_anchor(run.name)
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
    items = gallery_items(run, gallery, max_k, anchor)
    parts += [
        f"<h3>Gallery: {len(items)} val images with the most novel objects</h3>",
        f'<div class="gallery" id="{anchor}-gallery">',
        *(figure_tag(key, item) for key, item in items.items()),
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


def study_section(
    rows: Sequence[Mapping[str, Any]], runs: Sequence[RunEvaluation], figures: Figures
) -> str:
    """The comparison table of a study's ``results.json`` and its curves."""
    cells = []
    for row in rows:
        seconds = row.get("train_seconds")
        speed = row.get("images_per_second")
        delta = row.get("delta_AR@100")
        cells.append(
            {
                "run": f'<a href="#{run_anchor(row["run"])}">{html.escape(row["run"])}</a>',
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


def run_anchor(name: str) -> str:
    """The page anchor of a run's section (``run-<name>``, other characters as ``-``)."""
    return "run-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def render_page(
    title: str,
    source: Path,
    sections: Sequence[str],
    gallery: Mapping[str, Any],
    max_k: int,
    run_names: Sequence[str],
) -> str:
    """The whole page: ``templates/report.html`` with the sections, the gallery data, the
    style and the script filled in."""
    data = json.dumps(gallery, separators=(",", ":")).replace("</", "<\\/")
    links = " · ".join(f'<a href="#{run_anchor(n)}">{html.escape(n)}</a>' for n in run_names)
    start = min(GALLERY_K, max_k)
    return Template(_template("report.html")).substitute(
        title=html.escape(title),
        source=html.escape(str(source.resolve())),
        version=__version__,
        links=links,
        max_k=max_k,
        k=start,
        sections="\n".join(sections),
        data=data,
        style=_template("report.css"),
        script=_template("report.js"),
    )


def _template(name: str) -> str:
    folder = resources.files("owp.workflows.report").joinpath("templates")
    return folder.joinpath(name).read_text(encoding="utf-8")
