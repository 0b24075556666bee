"""Checks for the exercises of notebook 13 (VL-BERT).

Each check runs the learner's function on seeded inputs and compares it with the stored outputs of
the course's reference (``answers/vlbert.json``, computed from :mod:`vlp_course.models.vlbert`).
Sources: Su et al. 2020, section 3.2 (visual geometry embedding, the [IMG] and [END] elements);
jackroos/VL-BERT ``common/utils/bbox.py`` (``coordinate_embeddings``).
"""

from __future__ import annotations

from typing import Callable

import torch

from vlp_course.exercises import Exercise, run_exercise

__all__ = ["check_geometry_embedding", "check_vlbert_layout", "EXERCISES"]


def _geometry_cases():
    cases = [("one box, dim 1", (torch.tensor([[[10.0, 20.0, 30.0, 60.0]]]), (100, 80), 1), {}),
             ("the whole image [0, 0, W-1, H-1], dim 4", (torch.tensor([[[0.0, 0.0, 63.0, 63.0]]]), (64, 64), 4), {})]
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 5, 2, generator=g) * 30
    wh = torch.rand(2, 5, 2, generator=g) * 30 + 1
    cases.append(("2 x 5 random boxes, dim 16", (torch.cat([xy, xy + wh], -1), (64, 64), 16), {}))
    return cases


def _layout_cases():
    return [("5 words, 3 regions", (torch.zeros(5, dtype=torch.long), 3), {}),
            ("1 word, 1 region", (torch.zeros(1, dtype=torch.long), 1), {}),
            ("two segments, 4 regions", (torch.tensor([0, 0, 0, 1, 1]), 4), {})]


def _as_long_pair(out):
    if not isinstance(out, (tuple, list)):
        raise ValueError(f"your function returned a {type(out).__name__}; expected (token_type_ids, position_ids)")
    try:
        return tuple(torch.as_tensor(x).long() for x in out)
    except Exception:  # leave odd answers to compare(), which explains what is wrong
        return tuple(out)


EXERCISES = {
    "geometry embedding": Exercise(_geometry_cases, atol=1e-4),
    "VL-BERT layout": Exercise(_layout_cases, postprocess=_as_long_pair),
}


def check_geometry_embedding(fn: Callable) -> None:
    """Check ``fn(boxes (B, N, 4) pixel xyxy, (W, H), dim) -> (B, N, 8 dim)``: VL-BERT's sinusoidal
    box embedding (:func:`vlp_course.models.vlbert.geometry_embedding`)."""
    run_exercise("vlbert", "geometry embedding", EXERCISES, fn)


def check_vlbert_layout(fn: Callable) -> None:
    """Check ``fn(text_token_type_ids (T,), num_regions) -> (token_type_ids, position_ids)``, both
    (T + n + 1,) int64: segment and position ids of one unpadded example
    ``[CLS] text [SEP] [IMG] x num_regions [END]`` (``num_regions`` counts the whole image)."""
    run_exercise("vlbert", "VL-BERT layout", EXERCISES, fn)
