"""Pseudo-label mining under a real two-process gloo group: each rank mines its share of the
training images and every rank gets the whole, gathered result (issue 20)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.multiprocessing as mp

from owp.data.dataset import CocoDetection
from owp.data.splits import SplitSpec
from owp.engine import dist, pseudo

SPLIT = SplitSpec("toy", (1,), (2,))
NUM_IMAGES = 5


def _proposals(image_ids):
    """Two proposals per image: an unannotated object and a copy of the annotated box."""
    return [
        result
        for image_id in image_ids
        for result in (
            {"image_id": image_id, "bbox": [50, 50, 10 + image_id, 20], "score": 0.9},
            {"image_id": image_id, "bbox": [0, 0, 10, 10], "score": 0.8},
        )
    ]


def _toy_set(folder: Path) -> Path:
    (folder / "images").mkdir()
    coco = {
        "images": [
            {"id": i, "file_name": f"{i}.png", "width": 100, "height": 100}
            for i in range(1, NUM_IMAGES + 1)
        ],
        "annotations": [
            {"id": i, "image_id": i, "category_id": 1, "bbox": [0, 0, 10, 10]}
            for i in range(1, NUM_IMAGES + 1)
        ],
        "categories": [{"id": 1, "name": "base"}, {"id": 2, "name": "novel"}],
    }
    path = folder / "train.json"
    path.write_text(json.dumps(coco))
    return path


def _mine(folder: Path) -> tuple[dict, list[int]]:
    seen: list[int] = []

    def predict(model, dataset, **_):
        seen.extend(image["id"] for image in dataset.images)
        return _proposals([image["id"] for image in dataset.images])

    pseudo.predict_dataset = predict
    dataset = CocoDetection(folder / "images", folder / "train.json", SPLIT, training=False)
    model = torch.nn.Module()
    model.postprocess_config = SimpleNamespace(scoring="iou")
    return pseudo.mine_pseudo_labels(model, dataset), seen


def _worker(rank: int, folder: str) -> None:
    os.environ["RANK"] = str(rank)
    os.environ["LOCAL_RANK"] = str(rank)
    assert dist.init_distributed(backend="gloo")
    coco, seen = _mine(Path(folder))
    dist.cleanup()
    Path(folder, f"{rank}.json").write_text(json.dumps({"coco": coco, "seen": seen}))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_mine_disjoint_shards_and_gather_the_one_process_result(monkeypatch, tmp_path):
    _toy_set(tmp_path)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    predict = pseudo.predict_dataset
    try:
        alone, seen_alone = _mine(tmp_path)
    finally:
        pseudo.predict_dataset = predict
    assert seen_alone == [1, 2, 3, 4, 5]
    assert [a["image_id"] for a in alone["annotations"]] == [1, 2, 3, 4, 5]

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    assert ranks[0]["seen"] == [1, 3, 5] and ranks[1]["seen"] == [2, 4]
    for seen in ranks:
        assert seen["coco"] == json.loads(json.dumps(alone))
