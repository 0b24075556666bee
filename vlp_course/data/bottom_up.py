"""Reading (and writing) precomputed bottom-up-attention region features.

The 2019-2020 models were trained on features extracted once by the bottom-up-attention Faster
R-CNN and stored per image as ``image_id``, ``image_w``, ``image_h``, ``num_boxes``, ``boxes``
((N, 4) **pixel xyxy**, float32) and ``features`` ((N, 2048) float32). Two layouts are common:

* **TSV with base64 fields** (bottom-up-attention ``tools/generate_tsv.py``; LXMERT's
  ``src/utils.py`` ``load_obj_tsv`` and VisualBERT read it): one tab-separated line per image, the
  arrays as base64 of their raw float32 bytes. The original has the 6 fields above
  (:data:`BUTD_FIELDS`); LXMERT's files have 10 (:data:`LXMERT_FIELDS`: ``img_id``, ``img_h``,
  ``img_w``, ``objects_id``, ``objects_conf``, ``attrs_id``, ``attrs_conf``, ``num_boxes``,
  ``boxes``, ``features``) — note the different names and the order of h and w.
* **One file per image** (ViLBERT-style readers, Detectron feature extractors): an ``.npz`` (or a
  pickled ``.npy`` dict) with the same keys.

:func:`read_bottom_up_tsv` and :func:`read_bottom_up_npz` return :class:`BottomUpRecord` with the
canonical names and validated shapes; :func:`write_bottom_up_tsv` writes either TSV layout (the
course's stand-in detector's features can be written that way, and tests use it).
"""

from __future__ import annotations

import base64
import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from vlp_course.boxes import validate_xyxy

__all__ = ["BUTD_FIELDS", "LXMERT_FIELDS", "BottomUpRecord", "read_bottom_up_tsv", "write_bottom_up_tsv",
           "read_bottom_up_npz", "write_bottom_up_npz", "record_from_regions"]

BUTD_FIELDS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
LXMERT_FIELDS = ("img_id", "img_h", "img_w", "objects_id", "objects_conf", "attrs_id", "attrs_conf",
                 "num_boxes", "boxes", "features")
_RENAME = {"img_id": "image_id", "img_h": "image_h", "img_w": "image_w"}
_DTYPES = {"boxes": np.float32, "features": np.float32, "objects_id": np.int64, "objects_conf": np.float32,
           "attrs_id": np.int64, "attrs_conf": np.float32, "cls_prob": np.float32}


@dataclass
class BottomUpRecord:
    """One image's region features.

    Attributes:
        image_id: as stored (a string in the TSV files, e.g. "COCO_val2014_000000000042" or "42").
        image_w, image_h: image size in pixels.
        boxes: (N, 4) float32 pixel xyxy.  features: (N, D) float32 (D = 2048 for the real ones).
        extra: the other arrays of the record (``objects_id``, ``objects_conf``, ``attrs_id``, …).
    """

    image_id: str
    image_w: int
    image_h: int
    boxes: np.ndarray
    features: np.ndarray
    extra: dict = field(default_factory=dict)

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])

    def normalized_boxes(self) -> np.ndarray:
        """(N, 4) boxes / [W, H, W, H] (clipped to [0, 1], since some detectors reach W or H exactly)."""
        s = np.array([self.image_w, self.image_h, self.image_w, self.image_h], dtype=np.float32)
        return np.clip(self.boxes / s, 0.0, 1.0)


def _check(rec: BottomUpRecord, num_boxes: int, where: str) -> BottomUpRecord:
    if rec.boxes.shape != (num_boxes, 4):
        raise ValueError(f"{where}: boxes must be (num_boxes, 4) = ({num_boxes}, 4), got {rec.boxes.shape}")
    if rec.features.ndim != 2 or rec.features.shape[0] != num_boxes:
        raise ValueError(f"{where}: features must be (num_boxes, D) with num_boxes = {num_boxes}, got {rec.features.shape}")
    if rec.image_w <= 0 or rec.image_h <= 0:
        raise ValueError(f"{where}: image_w and image_h must be positive, got {rec.image_w} x {rec.image_h}")
    validate_xyxy(rec.boxes, normalized=False, image_size=(rec.image_w, rec.image_h), name=f"{where} boxes")
    return rec


def _decode(text: str, key: str, n: int, where: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: field {key!r} is not valid base64: {err}") from None
    arr = np.frombuffer(raw, dtype=_DTYPES.get(key, np.float32))
    if key in ("boxes",):
        if arr.size != 4 * n:
            raise ValueError(f"{where}: {key} holds {arr.size} values, expected num_boxes * 4 = {4 * n}")
        return arr.reshape(n, 4).copy()
    if key == "features":
        if n == 0 or arr.size % n:
            raise ValueError(f"{where}: features hold {arr.size} values, not a multiple of num_boxes = {n}")
        return arr.reshape(n, -1).copy()
    return arr.copy()


def read_bottom_up_tsv(path, fieldnames: Sequence[str] | None = None, limit: int | None = None) -> list[BottomUpRecord]:
    """Read a bottom-up-attention TSV (6-field original or LXMERT's 10 fields, detected by the count).

    Raises:
        ValueError: a line with another number of fields, bad base64, arrays whose size does not
            match ``num_boxes``, boxes outside the image.
    """
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    out = []
    with open(path, newline="") as fh:
        for ln, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if not row:
                continue
            names = tuple(fieldnames) if fieldnames else (BUTD_FIELDS if len(row) == 6 else LXMERT_FIELDS if len(row) == 10 else None)
            if names is None or len(row) != len(names):
                raise ValueError(f"{path}:{ln}: expected {len(BUTD_FIELDS)} (bottom-up) or {len(LXMERT_FIELDS)} "
                                 f"(LXMERT) tab-separated fields, got {len(row)}")
            item = {_RENAME.get(k, k): v for k, v in zip(names, row)}
            where = f"{path}:{ln}"
            try:
                n = int(item["num_boxes"])
                w, h = int(float(item["image_w"])), int(float(item["image_h"]))
            except (KeyError, ValueError) as err:
                raise ValueError(f"{where}: num_boxes, image_w, image_h must be numbers ({err})") from None
            arrays = {k: _decode(v, k, n, where) for k, v in item.items()
                      if k not in ("image_id", "image_w", "image_h", "num_boxes")}
            rec = BottomUpRecord(item["image_id"], w, h, arrays.pop("boxes"), arrays.pop("features"), arrays)
            out.append(_check(rec, n, where))
            if limit is not None and len(out) >= limit:
                break
    return out


def write_bottom_up_tsv(path, records: Iterable[BottomUpRecord], *, layout: str = "butd") -> Path:
    """Write records as a TSV: ``layout`` "butd" (6 fields) or "lxmert" (10 fields; missing object
    and attribute arrays are written as zeros)."""
    from vlp_course.files import atomic_write_text

    if layout not in ("butd", "lxmert"):
        raise ValueError(f"layout must be 'butd' or 'lxmert', got {layout!r}")
    lines = []
    for r in records:
        n = r.num_boxes
        enc = {"boxes": r.boxes, "features": r.features}
        if layout == "lxmert":
            for k in ("objects_id", "objects_conf", "attrs_id", "attrs_conf"):
                enc[k] = r.extra.get(k, np.zeros(n, dtype=_DTYPES[k]))
        b64 = {k: base64.b64encode(np.ascontiguousarray(v, dtype=_DTYPES[k]).tobytes()).decode("ascii") for k, v in enc.items()}
        if layout == "butd":
            vals = [str(r.image_id), str(r.image_w), str(r.image_h), str(n), b64["boxes"], b64["features"]]
        else:
            vals = [str(r.image_id), str(r.image_h), str(r.image_w), b64["objects_id"], b64["objects_conf"],
                    b64["attrs_id"], b64["attrs_conf"], str(n), b64["boxes"], b64["features"]]
        lines.append("\t".join(vals))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_bottom_up_npz(path, *, allow_pickle: bool = False) -> BottomUpRecord:
    """Read one image's features from an ``.npz`` (or a pickled-dict ``.npy`` with ``allow_pickle=True``).

    Raises:
        ValueError: a missing key, a pickled file without ``allow_pickle``, wrong shapes.
    """
    path = Path(path)
    if path.suffix == ".npy":
        if not allow_pickle:
            raise ValueError(f"{path}: a .npy feature dict needs allow_pickle=True (only for files you trust)")
        data = np.load(path, allow_pickle=True).item()
    else:
        data = dict(np.load(path))
    data = {_RENAME.get(k, k): v for k, v in data.items()}
    missing = {"image_id", "image_w", "image_h", "boxes", "features"} - set(data)
    if missing:
        raise ValueError(f"{path}: a region-feature file needs {sorted(missing)}")
    boxes = np.asarray(data.pop("boxes"), dtype=np.float32)
    feats = np.asarray(data.pop("features"), dtype=np.float32)
    n = int(data.pop("num_boxes", boxes.shape[0]))
    image_id = data.pop("image_id")
    image_id = str(image_id.item() if isinstance(image_id, np.ndarray) else image_id)
    rec = BottomUpRecord(image_id, int(data.pop("image_w")), int(data.pop("image_h")), boxes, feats, data)
    return _check(rec, n, str(path))


def write_bottom_up_npz(path, record: BottomUpRecord) -> Path:
    """Write one record as an ``.npz`` with the canonical keys."""
    import io

    from vlp_course.files import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, image_id=np.array(record.image_id), image_w=record.image_w, image_h=record.image_h,
             num_boxes=record.num_boxes, boxes=record.boxes.astype(np.float32),
             features=record.features.astype(np.float32), **record.extra)
    return atomic_write_bytes(path, buf.getvalue())


def record_from_regions(regions, image_id) -> BottomUpRecord:
    """A :class:`~vlp_course.data.detector.RegionFeatures` as a bottom-up record (pixel boxes, class ids)."""
    w, h = regions.image_size
    extra = {"objects_id": regions.class_probs.argmax(1).numpy().astype(np.int64),
             "objects_conf": regions.class_probs.max(1).values.numpy().astype(np.float32),
             "attrs_id": regions.attr_probs.argmax(1).numpy().astype(np.int64),
             "attrs_conf": regions.attr_probs.max(1).values.numpy().astype(np.float32)}
    return BottomUpRecord(str(image_id), int(w), int(h), regions.pixel_boxes().numpy().astype(np.float32),
                          regions.features.numpy().astype(np.float32), extra)
