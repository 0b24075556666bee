"""Checks for the exercises of notebook 13 (VL-BERT).

Each check runs the learner's function and the package's reference (:mod:`vlp_course.models.vlbert`)
on seeded inputs and compares them with :func:`vlp_course.exercises.run_cases`.
"""

from __future__ import annotations

from typing import Callable

import torch

from vlp_course.exercises import run_cases

__all__ = ["check_geometry_embedding", "check_vlbert_layout", "reference_vlbert_layout"]


def check_geometry_embedding(fn: Callable) -> None:
    """Check ``fn(boxes (B, N, 4) pixel xyxy, (W, H), dim) -> (B, N, 8 dim)`` against
    :func:`vlp_course.models.vlbert.geometry_embedding` (VL-BERT ``common/utils/bbox.py`` ``coordinate_embeddings``)."""
    from vlp_course.models.vlbert import geometry_embedding

    cases = [("one box, dim 1", (torch.tensor([[[10.0, 20.0, 30.0, 60.0]]]), (100, 80), 1), {}),
             ("the whole image [0, 0, W-1, H-1], dim 4", (torch.tensor([[[0.0, 0.0, 63.0, 63.0]]]), (64, 64), 4), {})]
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 5, 2, generator=g) * 30
    wh = torch.rand(2, 5, 2, generator=g) * 30 + 1
    cases.append(("2 x 5 random boxes, dim 16", (torch.cat([xy, xy + wh], -1), (64, 64), 16), {}))
    run_cases("geometry embedding", fn, lambda b, s, d: geometry_embedding(b, s, d), cases, atol=1e-4)


def reference_vlbert_layout(text_token_type_ids, num_regions):
    """Segment and position ids of one unpadded example ``[CLS] text [SEP] [IMG] x num_regions [END]``.

    Args:
        text_token_type_ids: (T,) 0/1 segment of each text token. num_regions: n (whole image included).

    Returns:
        ``(token_type_ids (T + n + 1,), position_ids (T + n + 1,))`` int64.
    """
    from vlp_course.models.vlbert import sequence_layout

    t = torch.as_tensor(text_token_type_ids).long()[None]
    lay = sequence_layout(torch.ones_like(t), t, torch.ones(1, int(num_regions)))
    return lay.token_type_ids[0], lay.position_ids[0]


def check_vlbert_layout(fn: Callable) -> None:
    """Check ``fn(text_token_type_ids (T,), num_regions) -> (token_type_ids, position_ids)``."""
    cases = [("5 words, 3 regions", (torch.zeros(5, dtype=torch.long), 3), {}),
             ("1 word, 1 region", (torch.zeros(1, dtype=torch.long), 1), {}),
             ("two segments, 4 regions", (torch.tensor([0, 0, 0, 1, 1]), 4), {})]
    run_cases("VL-BERT layout", lambda *a: tuple(torch.as_tensor(x).long() for x in fn(*a)), reference_vlbert_layout, cases)
