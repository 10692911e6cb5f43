"""Hold out part of a single-file COCO dataset as its val set: ``train.json`` + ``val.json``.

Run by hand: ``python benchmarks/holdout.py /work/shared/data/coco-mini datasets/coco-mini``.
A folder holding one instances JSON (``annotations.json``, as coco-mini ships) has no val
split; this writes ``OUT/train.json`` and ``OUT/val.json`` (every image in exactly one, a
seeded ``--val-fraction`` of them in val, categories and info kept) and links ``OUT/images`` to
the source's images folder, so that ``OUT`` is a dataset folder whose ``train`` and ``val``
parts owp finds by name (preset ``coco-voc-cpu``).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from owp.data.coco import find_annotation_file, find_image_folder, read_json
from owp.files import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="dataset folder or instances JSON")
    parser.add_argument("out", type=Path, help="folder to write train.json, val.json, images")
    parser.add_argument("--val-fraction", type=float, default=0.25, help="share of images held out")
    parser.add_argument("--seed", type=int, default=0, help="the same seed holds out the same")
    args = parser.parse_args()
    ann_file = find_annotation_file(args.source, "train")
    coco = read_json(ann_file, "annotation file")
    ids = sorted(image["id"] for image in coco["images"])
    held_out = set(random.Random(args.seed).sample(ids, round(args.val_fraction * len(ids))))
    args.out.mkdir(parents=True, exist_ok=True)
    for part, keep in (("train", lambda i: i not in held_out), ("val", lambda i: i in held_out)):
        images = [image for image in coco["images"] if keep(image["id"])]
        kept = {image["id"] for image in images}
        annotations = [a for a in coco["annotations"] if a["image_id"] in kept]
        path = write_json(
            args.out / f"{part}.json", {**coco, "images": images, "annotations": annotations}
        )
        print(f"{path}: {len(images)} images, {len(annotations)} boxes")
    link = args.out / "images"
    if not link.exists():
        link.symlink_to(find_image_folder(ann_file, coco).resolve(), target_is_directory=True)
    print(f"{link} -> {link.resolve()}")


if __name__ == "__main__":
    main()
