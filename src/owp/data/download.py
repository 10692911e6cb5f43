"""``owp data download coco|lvis``: the official archives, laid out as detectron2 lays them out.

::

    <root>/coco/train2017/            COCO 2017 train images   (train2017.zip, 18 GiB)
    <root>/coco/val2017/              COCO 2017 val images     (val2017.zip, 778 MiB)
    <root>/coco/annotations/instances_{train,val}2017.json     (annotations_trainval2017.zip)
    <root>/lvis/lvis_v1_{train,val}.json                       (lvis_v1_*.json.zip; LVIS uses
                                                                the COCO images above)

This is the layout owp's presets name (``datasets/coco``, ``datasets/lvis``). Each archive is
listed in :data:`DATASETS` with its official URL, size and MD5 (the checksum COCO's and LVIS's
files are published with). A download goes to ``<root>/downloads/<file>.part``; an interrupted
one resumes with an HTTP ``Range`` request (from the next run too), restarting only when the
server ignores the range. A complete file is checked against its size and MD5 (a mismatch
deletes it and is one error line), extracted, deleted, and marked done
(``<root>/downloads/<file>.done``), so that the next run skips it. Finally every annotation
file is read and counted as ``owp data stats`` does, and its listed images looked up.
``OWP_OFFLINE=1`` refuses to download. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.error import HTTPError, URLError

from tqdm import tqdm

from owp.data.coco import image_path, load_instances
from owp.data.stats import instances_stats
from owp.errors import OwpInputError
from owp.offline import OFFLINE_ENV, is_offline

CHUNK = 1 << 20
ATTEMPTS = 5
"""Connections tried per archive before a download that keeps breaking off is an error."""
TIMEOUT = 60.0
"""Seconds without data before a connection counts as broken."""


@dataclass(frozen=True)
class Archive:
    """One official archive: where it comes from, its size and MD5, and where it extracts."""

    url: str
    size: int
    md5: str
    into: str  # folder under the root that the archive's members extract into
    annotations: tuple[str, ...] = ()  # annotation files it holds, relative to the root

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


# Sizes and MD5s as published alongside the files and listed by several projects that fetch
# them (e.g. PaddleDetection's and GluonCV's COCO scripts, avalanche's LVIS list); every COCO
# value below is listed by more than one of them. The MD5 of lvis_v1_train.json.zip was found
# in one public list only (avalanche, ContinualAI): a mismatch there may mean that list is
# wrong, and the error says which file to check by hand.
DATASETS: dict[str, tuple[Archive, ...]] = {
    "coco": (
        Archive(
            "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
            252_907_541,
            "f4bbac642086de4f52a3fdda2de5fa2c",
            "coco",
            (
                "coco/annotations/instances_train2017.json",
                "coco/annotations/instances_val2017.json",
            ),
        ),
        Archive(
            "http://images.cocodataset.org/zips/val2017.zip",
            815_585_330,
            "442b8da7639aecaf257c1dceb8ba8c80",
            "coco",
        ),
        Archive(
            "http://images.cocodataset.org/zips/train2017.zip",
            19_336_861_798,
            "cced6f7f71b7629ddf16f17bbcfab6b2",
            "coco",
        ),
    ),
    "lvis": (
        Archive(
            "https://dl.fbaipublicfiles.com/LVIS/lvis_v1_val.json.zip",
            64_026_968,
            "87734a7f895990b9552075d7ce723e27",
            "lvis",
            ("lvis/lvis_v1_val.json",),
        ),
        Archive(
            "https://dl.fbaipublicfiles.com/LVIS/lvis_v1_train.json.zip",
            350_264_821,
            "4410d837f71203af226950447ef9d422",
            "lvis",
            ("lvis/lvis_v1_train.json",),
        ),
    ),
}
"""The archives of each dataset ``owp data download`` knows, smallest first."""

IMAGES_ROOT = {"coco": "coco", "lvis": "coco"}
"""Where each dataset's images live under the root (LVIS reads COCO's, by ``coco_url``)."""


@dataclass
class DownloadReport:
    """What :func:`download_dataset` did: archives fetched and skipped, and one summary line
    per annotation file (``owp data stats``'s counts and problems)."""

    fetched: list[str]
    skipped: list[str]
    checks: list[str]


def download_dataset(
    name: str, root: str | Path, *, progress: bool = True, log: Callable[[str], None] = print
) -> DownloadReport:
    """Download, verify and extract dataset ``name`` (a key of :data:`DATASETS`) under
    ``root``; then check its annotation files (see the module docstring)."""
    if name not in DATASETS:
        raise OwpInputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    root = Path(root)
    downloads = root / "downloads"
    report = DownloadReport([], [], [])
    for archive in DATASETS[name]:
        done = downloads / f"{archive.name}.done"
        if done.is_file():
            report.skipped.append(archive.name)
            continue
        if is_offline():
            raise OwpInputError(
                f"{archive.name} is not downloaded yet and downloads are off ({OFFLINE_ENV}=1 or "
                f"--offline); fetch {archive.url} into this folder and run again",
                path=downloads,
            )
        downloads.mkdir(parents=True, exist_ok=True)
        file = fetch_archive(archive, downloads, progress=progress)
        log(f"extracting {archive.name} into {root / archive.into}")
        extract(file, root / archive.into)
        file.unlink()
        done.write_text(f"{archive.md5}  {archive.url}\n")
        report.fetched.append(archive.name)
    for archive in DATASETS[name]:
        for relative in archive.annotations:
            report.checks.append(check_annotations(root / relative, root / IMAGES_ROOT[name]))
    return report


def fetch_archive(archive: Archive, folder: Path, *, progress: bool = True) -> Path:
    """Download ``archive`` into ``folder`` (resuming ``<name>.part``), check its size and
    MD5, and return the complete file ``folder/<name>``."""
    part = folder / f"{archive.name}.part"
    for attempt in range(ATTEMPTS + 1):
        have = part.stat().st_size if part.is_file() else 0
        if have > archive.size:
            part.unlink()
            have = 0
        if have == archive.size:
            break
        if attempt == ATTEMPTS:
            raise OwpInputError(
                f"the download of {archive.url} kept breaking off ({ATTEMPTS} connections); "
                "run again to resume it",
                path=part,
            )
        _continue_download(archive, part, have, progress)
    digest = md5_of(part, progress=progress)
    if digest != archive.md5:
        part.unlink()
        raise OwpInputError(
            f"{archive.url} downloaded with MD5 {digest}, not the published {archive.md5}: the "
            "file was deleted; run again to download it anew",
            path=part,
        )
    file = folder / archive.name
    os.replace(part, file)
    return file


def _continue_download(archive: Archive, part: Path, have: int, progress: bool) -> None:
    """Append to ``part`` from byte ``have`` (the whole file when the server ignores the
    range); a connection that breaks off leaves what arrived for the next attempt."""
    request = urllib.request.Request(archive.url, headers={"User-Agent": "owp"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except HTTPError as error:
        raise OwpInputError(
            f"cannot download {archive.url}: HTTP {error.code} {error.reason}", path=part
        ) from None
    except (URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise OwpInputError(f"cannot download {archive.url} ({reason})", path=part) from None
    with response:
        if have and response.status != 206:
            have = 0  # the server sends the whole file: start over
        length = response.headers.get("Content-Length")
        if length is not None and have + int(length) != archive.size:
            raise OwpInputError(
                f"{archive.url} is {have + int(length)} bytes on the server, not the published "
                f"{archive.size}: not downloaded",
                path=part,
            )
        with (
            part.open("ab" if have else "wb") as out,
            tqdm(
                total=archive.size,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=archive.name,
                disable=not progress,
            ) as bar,
        ):
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            except (HTTPException, OSError):
                return  # broke off: the next attempt resumes from what was written


def md5_of(file: Path, *, progress: bool = False) -> str:
    """The MD5 hex digest of ``file``."""
    digest = hashlib.md5(usedforsecurity=False)
    with (
        file.open("rb") as f,
        tqdm(
            total=file.stat().st_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"checking {file.name}",
            disable=not progress,
        ) as bar,
    ):
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def extract(file: Path, folder: Path) -> None:
    """Extract the zip ``file`` into ``folder``; a member that would land outside it is an
    error, and nothing is written then."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(file) as archive:
            target = folder.resolve()
            for member in archive.namelist():
                if not (target / member).resolve().is_relative_to(target):
                    raise OwpInputError(f"archive member {member!r} leaves the folder", path=file)
            archive.extractall(folder)
    except zipfile.BadZipFile as error:
        raise OwpInputError(f"not a readable zip archive ({error})", path=file) from None


def check_annotations(ann_file: Path, images_root: Path) -> str:
    """One line on ``ann_file``: ``owp data stats``'s counts and problems, and how many of its
    images are missing under ``images_root`` (looked up, not decoded)."""
    coco, repairs = load_instances(ann_file)
    stats = instances_stats(coco, repairs)
    line = (
        f"{ann_file}: {stats.num_images} images, {stats.num_boxes} boxes "
        f"(+{stats.num_crowd} crowd), {stats.num_classes} classes"
    )
    folder = images_root
    if "file_name" in (coco["images"][0] if coco["images"] else {}):
        folder = images_root / ann_file.stem.removeprefix("instances_")
    if folder.is_dir():
        missing = sum(not image_path(folder, info).is_file() for info in coco["images"])
        line += f"; {missing} images missing from {folder}" if missing else "; every image found"
    else:
        line += f"; images not downloaded ({folder})"
    problems = stats.problems
    return line + (f"; problems: {'; '.join(problems)}" if problems else "")
