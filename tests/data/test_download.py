"""``owp data download`` against a loopback server of small archives shaped like the real ones:
fresh, skipped, interrupted and resumed, resumed from an earlier run, a server ignoring ranges,
corrupted, of the wrong size, offline."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import replace

import pytest
from PIL import Image

from owp.cli import main
from owp.data import download
from owp.data.download import DATASETS, download_dataset
from owp.errors import OwpInputError


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def instances(part: str, ids: list[int]) -> bytes:
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 32, "height": 24} for i in ids]
    annotations = [
        {"id": i, "image_id": i, "category_id": 1, "bbox": [2, 3, 10, 8], "iscrowd": 0} for i in ids
    ]
    categories = [{"id": 1, "name": "person"}]
    return json.dumps({"images": images, "annotations": annotations, "categories": categories})


@pytest.fixture
def served(file_server, monkeypatch) -> dict[str, bytes]:
    """Small COCO and LVIS archives with the real ones' names and members, served from
    127.0.0.1, and :data:`DATASETS` pointing at them; returns name -> bytes."""
    train, val = [1, 2, 3], [7, 8]
    lvis_val = json.loads(instances("val", val))
    for img in lvis_val["images"]:
        img["coco_url"] = f"http://images.cocodataset.org/val2017/{img.pop('file_name')}"
        img["neg_category_ids"], img["not_exhaustive_category_ids"] = [], []
    lvis_val["images"].append(
        {"id": 1, "coco_url": "http://images.cocodataset.org/train2017/000000000001.jpg",
         "width": 32, "height": 24, "neg_category_ids": [], "not_exhaustive_category_ids": []}
    )  # fmt: skip
    lvis_train = {**json.loads(instances("train", train)), "images": lvis_val["images"][-1:]}
    lvis_train["annotations"] = lvis_train["annotations"][:1]
    content = {
        "annotations_trainval2017.zip": zip_bytes(
            {
                "annotations/instances_train2017.json": instances("train", train).encode(),
                "annotations/instances_val2017.json": instances("val", val).encode(),
            }
        ),
        "val2017.zip": zip_bytes({f"val2017/{i:012d}.jpg": jpeg(32, 24) for i in val}),
        "train2017.zip": zip_bytes({f"train2017/{i:012d}.jpg": jpeg(32, 24) for i in train}),
        "lvis_v1_val.json.zip": zip_bytes({"lvis_v1_val.json": json.dumps(lvis_val).encode()}),
        "lvis_v1_train.json.zip": zip_bytes(
            {"lvis_v1_train.json": json.dumps(lvis_train).encode()}
        ),
    }
    for name, data in content.items():
        (file_server.root / name).write_bytes(data)
    local = {
        dataset: tuple(
            replace(
                archive,
                url=file_server.url(archive.name),
                size=len(content[archive.name]),
                md5=hashlib.md5(content[archive.name]).hexdigest(),
            )
            for archive in archives
        )
        for dataset, archives in DATASETS.items()
    }
    monkeypatch.setattr(download, "DATASETS", local)
    monkeypatch.delenv("OWP_OFFLINE")
    return content


def test_fresh_download_has_detectron2_layout_then_is_skipped(tmp_path, served, file_server):
    root = tmp_path / "datasets"
    report = download_dataset("coco", root, progress=False, log=lambda line: None)
    assert report.fetched == [a.name for a in download.DATASETS["coco"]] and not report.skipped
    assert (root / "coco/train2017/000000000003.jpg").is_file()
    assert (root / "coco/val2017/000000000008.jpg").is_file()
    assert (root / "coco/annotations/instances_val2017.json").is_file()
    assert sorted(p.name for p in (root / "downloads").iterdir()) == sorted(
        f"{name}.done" for name in report.fetched
    )  # archives deleted once extracted
    assert report.checks == [
        f"{root}/coco/annotations/instances_train2017.json: 3 images, 3 boxes (+0 crowd), "
        "1 classes; every image found",
        f"{root}/coco/annotations/instances_val2017.json: 2 images, 2 boxes (+0 crowd), "
        "1 classes; every image found",
    ]
    requests = len(file_server.requests)
    again = download_dataset("coco", root, progress=False)
    assert again.skipped == report.fetched and not again.fetched
    assert len(file_server.requests) == requests  # nothing asked of the server
    lvis = download_dataset("lvis", root, progress=False, log=lambda line: None)
    assert lvis.checks[0].startswith(f"{root}/lvis/lvis_v1_val.json: 3 images, 2 boxes")
    assert lvis.checks[0].endswith("every image found")  # in both COCO image folders


def test_interrupted_downloads_resume_with_a_range_request(tmp_path, served, file_server):
    size = len(served["val2017.zip"])
    file_server.cut_after["/val2017.zip"] = size // 3
    report = download_dataset("coco", tmp_path, progress=False, log=lambda line: None)
    assert "val2017.zip" in report.fetched
    assert [r for r in file_server.requests if r[1] == "/val2017.zip"] == [
        ("GET", "/val2017.zip", None),
        ("GET", "/val2017.zip", f"bytes={size // 3}-"),
    ]
    assert (tmp_path / "coco/val2017/000000000007.jpg").read_bytes() == jpeg(32, 24)


def test_a_partial_file_from_an_earlier_run_is_resumed(tmp_path, served, file_server):
    data = served["lvis_v1_val.json.zip"]
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads/lvis_v1_val.json.zip.part").write_bytes(data[:100])
    download_dataset("lvis", tmp_path, progress=False, log=lambda line: None)
    assert ("GET", "/lvis_v1_val.json.zip", "bytes=100-") in file_server.requests
    assert (tmp_path / "lvis/lvis_v1_val.json").is_file()


def test_a_server_ignoring_ranges_restarts_the_file(tmp_path, served, file_server):
    file_server.server.ranges = False
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads/lvis_v1_val.json.zip.part").write_bytes(b"x" * 100)  # not a prefix
    download_dataset("lvis", tmp_path, progress=False, log=lambda line: None)
    assert (tmp_path / "lvis/lvis_v1_val.json").is_file()


def test_a_corrupted_download_is_deleted_and_one_line(tmp_path, served, file_server):
    data = bytearray(served["lvis_v1_val.json.zip"])
    data[len(data) // 2] ^= 0xFF
    (file_server.root / "lvis_v1_val.json.zip").write_bytes(bytes(data))
    with pytest.raises(OwpInputError, match="not the published") as error:
        download_dataset("lvis", tmp_path, progress=False)
    assert "\n" not in str(error.value) and "lvis_v1_val.json.zip" in str(error.value)
    assert list((tmp_path / "downloads").iterdir()) == [] and not (tmp_path / "lvis").exists()
    (file_server.root / "lvis_v1_val.json.zip").write_bytes(served["lvis_v1_val.json.zip"])
    assert download_dataset("lvis", tmp_path, progress=False).fetched  # the next run works


def test_a_file_of_another_size_is_not_downloaded(tmp_path, served, file_server):
    (file_server.root / "val2017.zip").write_bytes(served["val2017.zip"] + b"more")
    with pytest.raises(OwpInputError, match=r"bytes on the server, not the published"):
        download_dataset("coco", tmp_path, progress=False, log=lambda line: None)
    assert not (tmp_path / "downloads/val2017.zip.part").exists()


def test_the_command_line(tmp_path, served, file_server, capsys, monkeypatch):
    root = tmp_path / "datasets"
    assert main(["--offline", "data", "download", "lvis", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("owp: error: ") and err.count("\n") == 1
    assert "downloads are off" in err and file_server.requests == []
    monkeypatch.delenv("OWP_OFFLINE")
    assert main(["data", "download", "lvis", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "lvis_v1_val.json: 3 images" in out and "lvis_v1_train.json: 1 images" in out
    assert main(["data", "download", "voc", "--root", str(root)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_download_that_keeps_breaking_off_is_one_line_and_resumable(
    tmp_path, served, file_server, monkeypatch
):
    monkeypatch.setattr(download, "ATTEMPTS", 2)
    file_server.cut_every["/lvis_v1_val.json.zip"] = 10  # every connection drops after 10 bytes
    with pytest.raises(OwpInputError, match="kept breaking off") as error:
        download_dataset("lvis", tmp_path, progress=False)
    assert "\n" not in str(error.value)
    assert (tmp_path / "downloads/lvis_v1_val.json.zip.part").stat().st_size == 20
    file_server.cut_every.clear()
    assert download_dataset("lvis", tmp_path, progress=False).fetched  # resumes, completes
