"""COCO-format files: captions (``captions_*.json``) and instances (boxes, ``instances_*.json``).

The writers put the synthetic scenes in COCO's layout so that the loaders, and pycocotools, read
them exactly as they read COCO on Colab:

* captions: ``{"images": [{"id", "file_name", "width", "height"}], "annotations": [{"id",
  "image_id", "caption"}], "info", "licenses"}``;
* instances: the same ``images`` plus ``"categories": [{"id", "name", "supercategory"}]`` and
  ``"annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h], "area", "iscrowd"}]``.
  COCO boxes are (x, y, w, h) in pixels; :func:`load_coco_instances` returns xyxy through
  :func:`vlp_course.boxes.convert` (docs/pitfalls.md, "Boxes in the wrong format").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from vlp_course.boxes import convert, validate_xyxy
from vlp_course.files import atomic_write_text

__all__ = ["image_file_name", "write_coco_captions", "load_coco_captions", "write_coco_instances", "load_coco_instances"]


def image_file_name(image_id: int, split: str = "train2014", prefix: str = "SYNTH") -> str:
    """COCO-style file name, e.g. ``SYNTH_train2014_000000000042.png``."""
    return f"{prefix}_{split}_{int(image_id):012d}.png"


def _images_block(sizes: Mapping[int, tuple[int, int]], split: str) -> list[dict]:
    return [{"id": int(i), "file_name": image_file_name(i, split), "width": int(w), "height": int(h)}
            for i, (w, h) in sorted(sizes.items())]


def write_coco_captions(path, captions: Mapping[int, Sequence[str]], sizes: Mapping[int, tuple[int, int]],
                        *, split: str = "train2014") -> Path:
    """Write ``{image_id: [caption, ...]}`` as a COCO captions file; ``sizes`` maps image id to (W, H)."""
    missing = set(captions) - set(sizes)
    if missing:
        raise ValueError(f"no (W, H) size for image ids {sorted(missing)[:5]}")
    anns, k = [], 1
    for i in sorted(captions):
        for c in captions[i]:
            anns.append({"id": k, "image_id": int(i), "caption": c})
            k += 1
    doc = {"info": {"description": "vlp-course synthetic scenes (COCO captions format)"}, "licenses": [],
           "images": _images_block(sizes, split), "annotations": anns}
    return atomic_write_text(path, json.dumps(doc))


def _read(path, what: str) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{what} file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} file {path} is not valid JSON: {err}") from None
    if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
        raise ValueError(f"{path}: a COCO {what} file is a JSON object with 'images' and 'annotations'")
    return doc


def load_coco_captions(path) -> tuple[dict[int, list[str]], dict[int, dict]]:
    """Read a COCO captions file: ``({image_id: [captions]}, {image_id: image record})``.

    Raises:
        ValueError: a missing key, or a caption for an image id absent from ``images``.
    """
    doc = _read(path, "captions")
    images = {int(im["id"]): im for im in doc["images"]}
    caps: dict[int, list[str]] = {i: [] for i in images}
    for a in doc["annotations"]:
        if "image_id" not in a or "caption" not in a:
            raise ValueError(f"{path}: every caption annotation needs 'image_id' and 'caption', got {a}")
        i = int(a["image_id"])
        if i not in images:
            raise ValueError(f"{path}: caption {a.get('id')} refers to image {i}, not listed in 'images'")
        caps[i].append(a["caption"])
    return caps, images


def write_coco_instances(path, boxes_xyxy: Mapping[int, np.ndarray], labels: Mapping[int, Sequence[int]],
                         categories: Sequence[str], sizes: Mapping[int, tuple[int, int]], *, split: str = "train2014") -> Path:
    """Write pixel xyxy boxes and class indices (into ``categories``) as a COCO instances file."""
    anns, k = [], 1
    for i in sorted(boxes_xyxy):
        w, h = sizes[i]
        b = validate_xyxy(np.asarray(boxes_xyxy[i], dtype=np.float32), normalized=False, image_size=(w, h))
        xywh = convert(b, "xyxy", "xywh").tolist()
        for bb, lab in zip(xywh, labels[i]):
            anns.append({"id": k, "image_id": int(i), "category_id": int(lab) + 1, "bbox": [float(v) for v in bb],
                         "area": float(bb[2] * bb[3]), "iscrowd": 0})
            k += 1
    doc = {"info": {"description": "vlp-course synthetic scenes (COCO instances format)"}, "licenses": [],
           "images": _images_block(sizes, split), "annotations": anns,
           "categories": [{"id": c + 1, "name": n, "supercategory": "shape"} for c, n in enumerate(categories)]}
    return atomic_write_text(path, json.dumps(doc))


def load_coco_instances(path) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, str], dict[int, dict]]:
    """Read a COCO instances file: ``(boxes, category_ids, category names, images)``.

    ``boxes[image_id]`` is an (N, 4) float32 array of **pixel xyxy** boxes (converted from COCO's
    xywh and checked to lie inside the image); ``category_ids[image_id]`` the (N,) COCO category ids.

    Raises:
        ValueError: malformed file, unknown image or category, or a box outside its image.
    """
    doc = _read(path, "instances")
    images = {int(im["id"]): im for im in doc["images"]}
    cats = {int(c["id"]): c["name"] for c in doc.get("categories", [])}
    boxes: dict[int, list] = {i: [] for i in images}
    ids: dict[int, list] = {i: [] for i in images}
    for a in doc["annotations"]:
        i = int(a["image_id"])
        if i not in images:
            raise ValueError(f"{path}: annotation {a.get('id')} refers to unknown image {i}")
        if int(a["category_id"]) not in cats:
            raise ValueError(f"{path}: annotation {a.get('id')} has unknown category {a['category_id']}")
        if len(a.get("bbox", [])) != 4:
            raise ValueError(f"{path}: annotation {a.get('id')}: bbox must be [x, y, w, h]")
        boxes[i].append(a["bbox"])
        ids[i].append(int(a["category_id"]))
    out_boxes = {}
    for i, bl in boxes.items():
        b = convert(np.asarray(bl, dtype=np.float32).reshape(-1, 4), "xywh", "xyxy")
        im = images[i]
        validate_xyxy(b, normalized=False, image_size=(im["width"], im["height"]), name=f"image {i} boxes")
        out_boxes[i] = b.numpy().astype(np.float32)
    return out_boxes, {i: np.asarray(v, dtype=np.int64) for i, v in ids.items()}, cats, images
