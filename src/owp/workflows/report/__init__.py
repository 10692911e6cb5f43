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

For a study folder the page starts with the comparison table of ``results.json`` and the
study's curves, then one section per run. :mod:`~owp.workflows.report.runs` finds the runs'
data, :mod:`~owp.workflows.report.gallery` marks the gallery's boxes,
:mod:`~owp.workflows.report.page` writes the HTML from the ``templates/`` files.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from owp.errors import OwpInputError
from owp.workflows.report.page import Figures, render_page, run_section, study_section
from owp.workflows.report.runs import evaluate_run, study_rows

GALLERY_IMAGES = 12
"""Val images in a run's gallery by default."""
GALLERY_MAX_K = 100
"""The slider's largest k by default (the proposals carried per gallery image)."""


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
    rows = study_rows(source)
    if rows is None:
        run_dirs = {source.resolve().name: source}
    else:
        run_dirs = {row["run"]: Path(row["run_dir"]) for row in rows}
    runs = [
        evaluate_run(name, run_dir, out / "eval" / name, data, images, progress)
        for name, run_dir in run_dirs.items()
    ]
    title = f"owp {'study' if rows is not None else 'run'} {source.resolve().name}"
    with tempfile.TemporaryDirectory() as scratch:
        figures = Figures(Path(scratch))
        body = []
        if rows is not None:
            body.append(study_section(rows, runs, figures))
        gallery_data: dict[str, Any] = {}
        for run in runs:
            section, items = run_section(run, figures, gallery, max_k)
            body.append(section)
            gallery_data.update(items)
    page = render_page(title, source, body, gallery_data, max_k, [run.name for run in runs])
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
