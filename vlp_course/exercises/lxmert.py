"""Checks for the exercises of notebook 11 (LXMERT).

Each ``check_*`` runs the learner's function on seeded inputs built from a small random model and
compares it with the stored outputs of the course's reference (``answers/lxmert.json``); it raises
:class:`~vlp_course.exercises.ExerciseFailed` on the first difference. Sources: Tan & Bansal 2019,
sections 2.1 (object-level image embeddings) and 2.2 (cross-modality encoder); airsplay/lxmert
``src/lxrt/modeling.py`` (``VisualFeatEncoder``, ``LXRTXLayer``).
"""

from __future__ import annotations

from typing import Callable

import torch

from vlp_course.exercises import Exercise, randomize, run_exercise

__all__ = ["check_object_embedding", "check_cross_modality_layer", "EXERCISES"]


def _lxmert_config(D: int, F: int):
    from vlp_course.models.lxmert import LxmertConfig

    return LxmertConfig(vocab_size=30, hidden_size=D, num_attention_heads=2, intermediate_size=2 * D, l_layers=1,
                        r_layers=1, x_layers=1, visual_feat_dim=F, num_qa_labels=3, num_object_labels=3,
                        num_attr_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _object_cases():
    from vlp_course.models.lxmert import VisualFeatEncoder

    cases = []
    for seed, (B, N, F, D) in enumerate([(2, 3, 6, 8), (1, 1, 4, 4), (3, 5, 10, 6)]):
        enc = randomize(VisualFeatEncoder(_lxmert_config(D, F)), seed)
        g = torch.Generator().manual_seed(50 + seed)
        xy = torch.rand(B, N, 2, generator=g) * 0.5
        boxes = torch.cat([xy, xy + torch.rand(B, N, 2, generator=g) * 0.5], -1)
        cases.append((f"B={B}, N={N}, F={F}, D={D}", (enc, torch.randn(B, N, F, generator=g), boxes), {}))
    return cases


def _cross_cases():
    from vlp_course.models.lxmert import LxmertXLayer

    cases = []
    for seed, (B, T, N, D) in enumerate([(2, 5, 3, 8), (3, 4, 6, 6), (1, 2, 1, 4)]):
        layer = randomize(LxmertXLayer(_lxmert_config(D, 4)), seed)
        g = torch.Generator().manual_seed(70 + seed)
        lang, visn = torch.randn(B, T, D, generator=g), torch.randn(B, N, D, generator=g)
        lmask, vmask = torch.ones(B, T, dtype=torch.long), torch.ones(B, N, dtype=torch.long)
        lmask[0, T - 1:] = 0
        if N > 1:
            vmask[-1, N - 1:] = 0
        cases.append((f"B={B}, T={T}, N={N}, D={D}", (layer, lang, lmask, visn, vmask), {}))
    return cases


EXERCISES = {
    "object_embedding": Exercise(_object_cases, no_grad=True, whole_module_blocked=True),
    "cross_modality_layer": Exercise(_cross_cases, atol=1e-4, no_grad=True, whole_module_blocked=True),
}


def check_object_embedding(student_fn: Callable) -> None:
    """Check ``student_fn(enc, feats (B, N, F), boxes (B, N, 4)) -> (B, N, D)``: the output of
    :class:`~vlp_course.models.lxmert.VisualFeatEncoder`, ``(LN(visn_fc(f)) + LN(box_fc(b))) / 2``,
    computed from its parts; calling ``enc`` itself fails the check."""
    run_exercise("lxmert", "object_embedding", EXERCISES, student_fn)


def check_cross_modality_layer(student_fn: Callable) -> None:
    """Check ``student_fn(layer, lang (B, T, D), lang_mask (B, T), visn (B, N, D), visn_mask (B, N))
    -> (lang_out, visn_out)``: the output of :class:`~vlp_course.models.lxmert.LxmertXLayer` (masks
    padded on both sides) computed from its submodules; calling ``layer`` itself fails the check."""
    run_exercise("lxmert", "cross_modality_layer", EXERCISES, student_fn)
