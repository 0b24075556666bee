"""Checks for the exercises of notebook 15 (visual reasoning, NLVR2 style).

Each check runs the learner's function on seeded inputs and compares it with the stored outputs of
the course's reference (``answers/nlvr2.json``). Sources: Suhr et al. 2019, section 3 (each sentence
paired with image pairs it is true and false of); airsplay/lxmert ``src/tasks/nlvr2_model.py`` (the
two pooled vectors concatenated); uclanlp/visualbert ``nlvr_dataset.py`` (both images' regions in one
sequence, visual token types 0 and 1).
"""

from __future__ import annotations

from typing import Callable

import torch

from vlp_course.exercises import Exercise, run_exercise

__all__ = ["check_pair_classifier", "check_one_pass_regions", "check_statement_only_ceiling", "EXERCISES"]


def _classifier_cases():
    g = torch.Generator().manual_seed(0)
    cases = []
    for label, P, D in (("1 pair, D = 2", 1, 2), ("3 pairs, D = 4", 3, 4), ("5 pairs, D = 8", 5, 8)):
        cases.append((label, (torch.randn(2 * P, D, generator=g), torch.randn(2, 2 * D, generator=g),
                              torch.randn(2, generator=g)), {}))
    return cases


def _regions_cases():
    g = torch.Generator().manual_seed(1)
    cases = []
    for label, P, N, F, holes in (("1 pair, 2 slots, all real", 1, 2, 3, False),
                                  ("2 pairs, 3 slots, padding in the left image", 2, 3, 2, True),
                                  ("3 pairs, 4 slots, padding", 3, 4, 5, True)):
        mask = torch.ones(P, 2, N)
        if holes:
            mask[:, 0, -1] = 0  # the left image has one box fewer
            mask[-1, 1, 1:] = 0  # the last pair's right image has one box
        cases.append((label, (torch.randn(P, 2, N, F, generator=g), mask), {}))
    return cases


def _ceiling_cases():
    return [("each sentence once true, once false", (["a", "b", "a", "b"], [1, 0, 0, 1]), {}),
            ("one sentence always true", (["a", "a", "a", "b", "b"], [1, 1, 1, 0, 1]), {}),
            ("two to one", (["x", "x", "x", "y"], [1, 0, 1, 0]), {}),
            ("all different", (["p", "q", "r"], [0, 1, 0]), {})]


def _three(out):
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise ValueError("your function must return three tensors: (visual_feats, visual_attention_mask, visual_token_type_ids)")
    return tuple(out)


def _number(out):
    try:
        return float(out)
    except (TypeError, ValueError):
        raise ValueError(f"your function returned a {type(out).__name__}; expected one number in [0, 1]") from None


EXERCISES = {
    "pair classifier": Exercise(_classifier_cases),
    "one-pass regions": Exercise(_regions_cases, postprocess=_three),
    "statement-only ceiling": Exercise(_ceiling_cases, postprocess=_number),
}


def check_pair_classifier(fn: Callable) -> None:
    """Check ``fn(pooled (2P, D), weight (2, 2D), bias (2,)) -> (P, 2)``: rows 2p and 2p+1 are pair p's left
    and right image; concatenate their pooled vectors, [left ; right], and apply the linear layer."""
    run_exercise("nlvr2", "pair classifier", EXERCISES, fn)


def check_one_pass_regions(fn: Callable) -> None:
    """Check ``fn(features (P, 2, N, F), region_mask (P, 2, N)) -> (visual_feats (P, 2N, F),
    visual_attention_mask (P, 2N), visual_token_type_ids (P, 2N))``: VisualBERT's one-pass layout, the
    left image's N slots then the right's, types 0 then 1, padding slots kept in place."""
    run_exercise("nlvr2", "one-pass regions", EXERCISES, fn)


def check_statement_only_ceiling(fn: Callable) -> None:
    """Check ``fn(sentences: list[str], labels: list[int]) -> float``: the highest accuracy any classifier
    that sees only the sentence can reach on these examples (each distinct sentence gets one answer)."""
    run_exercise("nlvr2", "statement-only ceiling", EXERCISES, fn)
