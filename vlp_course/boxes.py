"""One place for bounding boxes: formats, conversion, normalization and validation.

Every model and loader of the course goes through these functions, so a box in the wrong format
fails here with a clear message instead of silently training on garbage: LXMERT's boxes are
(x1, y1, x2, y2) divided by the image size (airsplay/lxmert ``src/pretrain/lxmert_data.py``; lxmert
issue 26), and reading them in another order or unnormalized is a reported fault (mmf issue 520).
See docs/pitfalls.md, "Boxes in the wrong format" and "Pixel boxes left unnormalized".

Formats (the ``fmt`` argument):
    ``"xyxy"``  (x1, y1, x2, y2): corners; the format every model input uses.
    ``"xywh"``  (x, y, w, h): top-left corner plus width and height (COCO annotations).
    ``"yxyx"``  (y1, x1, y2, x2): rows first (TensorFlow detection APIs).
    ``"cxcywh"`` (xc, yc, w, h): centre plus size (VL-BERT's geometry embedding, DETR).
Boxes are tensors or arrays of shape (..., 4), in pixels unless said normalized, in which case each
coordinate lies in [0, 1] (x divided by the image width W, y by the height H).
"""

from __future__ import annotations

import numpy as np
import torch

FORMATS = ("xyxy", "xywh", "yxyx", "cxcywh")

__all__ = ["FORMATS", "convert", "normalize", "denormalize", "validate_xyxy", "vilbert_location", "area"]


def _as_tensor(boxes) -> torch.Tensor:
    t = torch.as_tensor(boxes)
    if not t.is_floating_point():
        t = t.float()
    if t.ndim == 0 or t.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (..., 4), got {tuple(t.shape)}")
    return t


def convert(boxes, src: str, dst: str = "xyxy") -> torch.Tensor:
    """Convert boxes of shape (..., 4) from format ``src`` to ``dst`` (see the module docstring).

    Raises:
        ValueError: on an unknown format or a last dimension other than 4.
    """
    for name, f in (("src", src), ("dst", dst)):
        if f not in FORMATS:
            raise ValueError(f"{name} format must be one of {FORMATS}, got {f!r}")
    b = _as_tensor(boxes)
    a, c, d, e = b.unbind(-1)
    if src == "xyxy":
        x1, y1, x2, y2 = a, c, d, e
    elif src == "xywh":
        x1, y1, x2, y2 = a, c, a + d, c + e
    elif src == "yxyx":
        x1, y1, x2, y2 = c, a, e, d
    else:  # cxcywh
        x1, y1, x2, y2 = a - d / 2, c - e / 2, a + d / 2, c + e / 2
    if dst == "xyxy":
        out = (x1, y1, x2, y2)
    elif dst == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    elif dst == "yxyx":
        out = (y1, x1, y2, x2)
    else:
        out = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    return torch.stack(out, dim=-1)


def validate_xyxy(boxes, *, normalized: bool, image_size: tuple[int, int] | None = None, name: str = "boxes") -> torch.Tensor:
    """Check boxes in xyxy format and return them as a float tensor.

    Args:
        boxes: (..., 4) boxes (x1, y1, x2, y2).
        normalized: True if the coordinates must lie in [0, 1].
        image_size: (W, H) in pixels; pixel boxes must lie inside [0, W] x [0, H].

    Raises:
        ValueError: naming the expected format when x2 < x1 or y2 < y1, when a value is not finite,
            or when a coordinate lies outside [0, 1] (normalized) or outside the image.
    """
    b = _as_tensor(boxes)
    if not torch.isfinite(b).all():
        raise ValueError(f"{name}: every coordinate must be finite")
    x1, y1, x2, y2 = b.unbind(-1)
    if (x2 < x1).any() or (y2 < y1).any():
        raise ValueError(
            f"{name} must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1; got a box with x2 < x1 or y2 < y1. "
            "If yours are (x, y, w, h) or (y1, x1, y2, x2), convert them with vlp_course.boxes.convert(boxes, src=...)"
        )
    tol = 1e-6
    if normalized:
        if (b < -tol).any() or (b > 1 + tol).any():
            raise ValueError(
                f"{name} must be normalized (x1, y1, x2, y2) in [0, 1]; got values in "
                f"[{b.min().item():.3g}, {b.max().item():.3g}]. Pixel boxes? Use vlp_course.boxes.normalize(boxes, W, H)"
            )
    elif image_size is not None:
        w, h = image_size
        if (b < -tol).any() or (x2 > w + tol).any() or (y2 > h + tol).any():
            raise ValueError(f"{name}: pixel boxes must lie inside the image [0, {w}] x [0, {h}] (W x H)")
    return b


def normalize(boxes, width: float, height: float) -> torch.Tensor:
    """Pixel xyxy boxes (..., 4) divided by [W, H, W, H]: normalized xyxy in [0, 1] (lxmert
    issue 26; docs/pitfalls.md, "Pixel boxes left unnormalized").

    Raises:
        ValueError: if W or H is not positive, or a box lies outside the image.
    """
    if not (width > 0 and height > 0):
        raise ValueError(f"image width and height must be positive, got W={width}, H={height}")
    b = validate_xyxy(boxes, normalized=False, image_size=(width, height))
    scale = torch.tensor([width, height, width, height], dtype=b.dtype, device=b.device)
    return b / scale


def denormalize(boxes, width: float, height: float) -> torch.Tensor:
    """Normalized xyxy boxes (..., 4) multiplied by [W, H, W, H]: pixel xyxy."""
    if not (width > 0 and height > 0):
        raise ValueError(f"image width and height must be positive, got W={width}, H={height}")
    b = validate_xyxy(boxes, normalized=True)
    return b * torch.tensor([width, height, width, height], dtype=b.dtype, device=b.device)


def area(boxes) -> torch.Tensor:
    """Area of xyxy boxes (..., 4): (x2 - x1) * (y2 - y1), in the boxes' own units."""
    b = _as_tensor(boxes)
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def vilbert_location(boxes, width: float, height: float) -> torch.Tensor:
    """ViLBERT's 5-d region location from pixel xyxy boxes (..., 4) -> (..., 5).

    ``[x1/W, y1/H, x2/W, y2/H, (x2-x1)(y2-y1)/(W*H)]`` as computed in vilbert-multi-task's
    ``vilbert/datasets/_image_features_reader.py``.
    """
    nb = normalize(boxes, width, height)
    return torch.cat([nb, area(nb).unsqueeze(-1)], dim=-1)
