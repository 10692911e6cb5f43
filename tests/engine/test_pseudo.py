"""Self-training: the pseudo-label filter on hand-made boxes, mining and its COCO file, the
quality against a hand-made objects.json, reading the file into training targets."""

import json
from types import SimpleNamespace

import pytest
import torch
from torchvision.ops import box_iou

from owp.data.coco import CocoDetection
from owp.data.pseudo import PSEUDO_CATEGORY, read_pseudo_labels
from owp.data.splits import SplitSpec, resolve_split
from owp.engine import pseudo
from owp.engine.pseudo import (
    PseudoLabelSettings,
    covered_share,
    mine_pseudo_labels,
    pseudo_label_quality,
    read_objects,
    select_pseudo_boxes,
)
from owp.errors import OwpInputError

NONE = torch.zeros(0, 4, dtype=torch.float64)


def boxes(*rows):
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)


def scores(*values):
    return torch.tensor(values, dtype=torch.float64)


def select(proposals, values, annotated=NONE, crowd=NONE, **settings):
    chosen = select_pseudo_boxes(
        proposals, values, annotated, crowd, PseudoLabelSettings(**settings)
    )
    return chosen.tolist()


def test_filter_drops_low_scores_and_overlaps_with_annotated_and_crowd_boxes():
    proposals = boxes(
        [0, 0, 10, 10],  # 0: the annotated box itself
        [0, 0, 10, 20],  # 1: IoU 100 / 200 = 0.5 with it
        [5, 0, 25, 10],  # 2: IoU 50 / 250 = 0.2: kept
        [60, 10, 70, 20],  # 3: IoU 0.04 with the crowd region but wholly inside it
        [40, 0, 60, 10],  # 4: half inside the crowd region
        [42, 40, 52, 60],  # 5: 20 of its 200 px inside the crowd region: kept
        [0, 80, 10, 90],  # 6: overlaps nothing but scores below 0.5
    )
    values = scores(0.99, 0.9, 0.8, 0.85, 0.7, 0.6, 0.4)
    annotated, crowd = boxes([0, 0, 10, 10]), boxes([50, 0, 100, 50])
    assert select(proposals, values, annotated, crowd) == [2, 5]
    assert select(proposals, values, annotated, crowd, min_score=0.3) == [2, 5, 6]
    # max_iou 0.6 lets an overlap of 0.5 through (1 and 4), not a region wholly covered (3);
    # 1 lies half inside the annotated box, which max_cover 0.5 drops and 0.6 lets through.
    assert select(proposals, values, annotated, crowd, max_iou=0.6) == [2, 4, 5]
    assert select(proposals, values, annotated, crowd, max_iou=0.6, max_cover=0.6) == [1, 2, 4, 5]
    assert covered_share(proposals[3:6], crowd).flatten().tolist() == pytest.approx([1, 0.5, 0.1])


def test_filter_drops_a_part_of_an_annotated_object_despite_its_low_iou():
    """The issue's repro: a proposal inside an annotated box has IoU 0.16 with it."""
    proposals = boxes([50, 50, 90, 90], [0, 50, 40, 90], [150, 150, 190, 190])
    values = scores(0.9, 0.8, 0.7)
    annotated, crowd = boxes([20, 20, 120, 120]), boxes()
    assert float(box_iou(proposals[:1], annotated)) == pytest.approx(0.16)
    # 0: wholly inside; 1: 20 x 40 of its 40 x 40 inside (half); 2: outside.
    assert select(proposals, values, annotated, crowd) == [2]
    assert select(proposals, values, annotated, crowd, max_cover=0.6) == [1, 2]
    assert select(proposals, values, annotated, crowd, max_cover=1.0) == [1, 2]


def test_filter_nms_is_class_agnostic_and_runs_after_the_overlap_filter():
    proposals = boxes([0, 0, 10, 10], [0, 0, 10, 12], [20, 20, 30, 30])  # IoU(0, 1) = 100/120
    values = scores(0.9, 0.8, 0.7)
    assert select(proposals, values) == [0, 2]
    assert select(proposals, values, nms_iou=0.9) == [0, 1, 2]
    # x overlaps the annotated box (IoU 1/3) and y (IoU 1/3); y overlaps nothing annotated.
    # Dropping x first leaves y to NMS: y survives.
    annotated, x_y = boxes([0, 0, 10, 10]), boxes([5, 0, 15, 10], [10, 0, 20, 10])
    assert select(x_y, scores(0.9, 0.8), annotated, nms_iou=0.3) == [1]


def test_filter_caps_the_boxes_per_image_best_first():
    proposals = boxes([0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10])
    values = scores(0.6, 0.9, 0.7, 0.8)
    assert select(proposals, values, per_image=2) == [1, 3]
    assert select(proposals, values, per_image=10) == [1, 3, 2, 0]
    assert select(boxes(), scores()) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_score", 1.5),
        ("max_iou", -0.1),
        ("max_cover", 1.1),
        ("nms_iou", 2),
        ("per_image", 0),
    ],
)
def test_settings_out_of_range_are_refused(field, value):
    with pytest.raises(OwpInputError, match=field):
        PseudoLabelSettings(**{field: value})


SPLIT = resolve_split(
    SplitSpec("toy", base=(1,), novel=(2,)),
    [{"id": 1, "name": "base"}, {"id": 2, "name": "novel"}],
    "toy",
)


def test_quality_against_a_hand_made_objects_list(tmp_path):
    objects = [
        {"image_id": 1, "bbox": [10, 10, 40, 40], "category_id": 2, "annotated": True},  # A
        {"image_id": 1, "bbox": [60, 10, 30, 30], "category_id": 1, "annotated": True},  # labelled
        {"image_id": 1, "bbox": [10, 60, 20, 20], "category_id": 1, "annotated": False},  # C
        {"image_id": 1, "bbox": [60, 60, 10, 10], "category_id": 2, "annotated": False},  # D
        {"image_id": 3, "bbox": [0, 0, 50, 50], "category_id": 2, "annotated": True},  # elsewhere
    ]
    path = tmp_path / "objects.json"
    path.write_text(json.dumps(objects))
    boxes_and_scores = [
        (1, [10, 10, 40, 40], 0.9),  # A: a novel hit (medium)
        (1, [12, 12, 38, 38], 0.8),  # IoU 0.9 with A, already taken: a duplicate (medium)
        (1, [10, 60, 20, 20], 0.7),  # C: an unannotated base object found (small)
        (1, [58, 58, 20, 20], 0.6),  # IoU 100 / 400 with D: poor localisation (small)
        (2, [50, 50, 20, 20], 0.95),  # nothing there: background (small)
    ]
    labels = {
        "images": [{"id": 1}, {"id": 2}],
        "annotations": [
            {"image_id": i, "bbox": b, "score": s, "pseudo": True} for i, b, s in boxes_and_scores
        ],
    }
    quality = pseudo_label_quality(labels, read_objects(path), SPLIT)
    assert (quality["pseudo_boxes"], quality["targets"]) == (5, 3)  # A, C, D
    assert quality["precision"] == pytest.approx(2 / 5)
    assert quality["recall"] == pytest.approx(2 / 3)
    assert quality["by_side"]["novel"] == {
        "targets": 2,
        "found": 1,
        "recall": 0.5,
        "share_of_pseudo": 0.2,
    }
    assert quality["by_side"]["base"] == {
        "targets": 1,
        "found": 1,
        "recall": 1.0,
        "share_of_pseudo": 0.2,
    }
    assert quality["by_size"]["small"] == {
        "pseudo_boxes": 3,
        "precision": pytest.approx(1 / 3),
        "targets": 2,
        "recall": 0.5,
    }
    assert quality["by_size"]["medium"] == {
        "pseudo_boxes": 2,
        "precision": 0.5,
        "targets": 1,
        "recall": 1.0,
    }
    assert quality["by_size"]["large"] == {
        "pseudo_boxes": 0,
        "precision": None,
        "targets": 0,
        "recall": None,
    }
    assert quality["false_positives"] == {"duplicate": 1, "poor_localisation": 1, "background": 1}
    assert "precision 40.0 %" in pseudo.describe_quality(quality)[0]


def test_objects_file_without_the_fields_is_refused(tmp_path):
    path = tmp_path / "objects.json"
    path.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1]}]))
    with pytest.raises(OwpInputError, match="annotated"):
        read_objects(path)


@pytest.fixture
def toy_set(tmp_path):
    """Two 100 x 100 images: image 1 has a base box, a novel box and a base crowd region;
    image 2 has only a novel box."""
    (tmp_path / "images").mkdir()
    coco = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 100, "height": 100},
            {"id": 2, "file_name": "b.png", "width": 100, "height": 100},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 20, 20]},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [80, 0, 20, 20], "iscrowd": 1},
            {"id": 4, "image_id": 2, "category_id": 2, "bbox": [5, 5, 10, 10]},
        ],
        "categories": [{"id": 1, "name": "base"}, {"id": 2, "name": "novel"}],
    }
    ann_file = tmp_path / "train.json"
    ann_file.write_text(json.dumps(coco))
    return ann_file, tmp_path / "images"


def test_mining_keeps_unannotated_objects_and_writes_a_coco_file(toy_set, monkeypatch):
    ann_file, images = toy_set
    proposals = [
        {"image_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},  # the base box
        {"image_id": 1, "bbox": [50, 50, 20, 20], "score": 0.8},  # the novel one: unannotated
        {"image_id": 1, "bbox": [82, 2, 10, 10], "score": 0.85},  # inside the crowd region
        {"image_id": 2, "bbox": [5, 5, 30, 30], "score": 0.3},
        {"image_id": 2, "bbox": [5, 5, 30, 31], "score": 0.6},
    ]
    monkeypatch.setattr(pseudo, "predict_dataset", lambda model, dataset, **_: proposals)
    dataset = CocoDetection(images, ann_file, SplitSpec("toy", (1,), (2,)), training=False)

    model = torch.nn.Module()
    model.postprocess_config = SimpleNamespace(scoring="iou")  # all mining reads of the model
    coco = mine_pseudo_labels(model, dataset, info={"checkpoint": "x.pt"})
    assert coco["images"] == json.loads(ann_file.read_text())["images"]
    assert coco["categories"] == [PSEUDO_CATEGORY]
    assert coco["info"]["settings"] == {
        "min_score": 0.5,
        "per_image": 5,
        "max_iou": 0.3,
        "max_cover": 0.5,
        "nms_iou": 0.5,
    }
    assert coco["info"]["scoring"] == "iou" and coco["info"]["checkpoint"] == "x.pt"
    assert [(a["image_id"], a["bbox"], a["score"]) for a in coco["annotations"]] == [
        (1, [50, 50, 20, 20], 0.8),
        (2, [5, 5, 30, 31], 0.6),
    ]
    assert all(
        a["pseudo"] is True and a["category_id"] == 1 and a["iscrowd"] == 0
        for a in coco["annotations"]
    )
    assert coco["annotations"][1]["area"] == 930


def write_pseudo(tmp_path, annotations, images=None):
    path = tmp_path / "pseudo.json"
    sizes = images or [{"id": i, "width": 100, "height": 100} for i in (1, 2)]
    path.write_text(
        json.dumps({"images": sizes, "annotations": annotations, "categories": [PSEUDO_CATEGORY]})
    )
    return path


def test_pseudo_boxes_reach_the_training_targets(toy_set, tmp_path):
    ann_file, images = toy_set
    path = write_pseudo(
        tmp_path,
        [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [5, 5, 10, 10]},
        ],
    )
    pseudo_boxes = read_pseudo_labels(path, json.loads(ann_file.read_text()), ann_file)
    assert pseudo_boxes == {1: [[50.0, 50.0, 20.0, 20.0]], 2: [[5.0, 5.0, 10.0, 10.0]]}
    split = SplitSpec("toy", (1,), (2,))
    dataset = CocoDetection(images, ann_file, split, training=True, pseudo_boxes=pseudo_boxes)
    assert [img["id"] for img in dataset.images] == [1, 2]  # image 2 has a pseudo box only
    first = dataset.target_of(0)
    assert first["boxes"].tolist() == [[0, 0, 10, 10], [80, 0, 100, 20], [50, 50, 70, 70]]
    assert first["labels"].tolist() == [0, 0, -1]
    assert first["ignore"].tolist() == [False, True, False]
    assert first["pseudo"].tolist() == [False, False, True]
    plain = CocoDetection(images, ann_file, split, training=True)
    assert [img["id"] for img in plain.images] == [1]
    assert plain.target_of(0)["pseudo"].tolist() == [False, False]


def test_pseudo_file_on_other_images_or_sizes_is_refused(toy_set, tmp_path):
    ann_file, _ = toy_set
    train_coco = json.loads(ann_file.read_text())
    stray = [{"id": 1, "image_id": 9, "category_id": 1, "bbox": [0, 0, 5, 5]}]
    images = [{"id": 9, "width": 100, "height": 100}]
    with pytest.raises(OwpInputError, match="image id 9, which the training set"):
        read_pseudo_labels(write_pseudo(tmp_path, stray, images), train_coco, ann_file)
    resized = [{"id": 1, "width": 50, "height": 100}, {"id": 2, "width": 100, "height": 100}]
    one = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}]
    with pytest.raises(OwpInputError, match="50x100 here but 100x100"):
        read_pseudo_labels(write_pseudo(tmp_path, one, resized), train_coco, ann_file)
    with pytest.raises(OwpInputError, match="not found"):
        read_pseudo_labels(tmp_path / "missing.json", train_coco, ann_file)
