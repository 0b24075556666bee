"""Checks for the exercises of notebook 09 (pretraining tasks): each runs the learner's function on
seeded inputs (the random draws included, so the answer is deterministic) and compares it with the
stored outputs of the course's reference (``answers/pretraining.json``), reporting the first
difference. Sources: Tan & Bansal 2019, sections 3.1.2 (masked object prediction) and 3.1.3
(cross-modality matching: a sentence replaced by another image's with probability 0.5);
airsplay/lxmert ``src/pretrain/lxmert_pretrain.py`` (``random_feat``: of the selected boxes, 80 %
zeroed, 10 % replaced by another image's feature, 10 % kept)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from vlp_course.exercises import Exercise, ExerciseFailed, run_exercise

__all__ = ["check_region_masking_801010", "check_negative_sampler", "EXERCISES"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _masking_cases() -> list[tuple[str, tuple, dict]]:
    feats = torch.arange(1.0, 13.0).view(1, 4, 3)
    elig = torch.tensor([[False, True, True, True]])
    cases = [(
        "4 regions, global first; one zeroed, one replaced, one kept",
        (feats, elig, torch.tensor([[0.0, 0.1, 0.05, 0.12]]), torch.tensor([[0.5, 0.3, 0.85, 0.95]]), -feats),
        {},
    ), (
        "nothing eligible", (feats, torch.zeros(1, 4, dtype=torch.bool), torch.zeros(1, 4), torch.zeros(1, 4), -feats), {},
    )]
    for seed, (B, N, D, p) in enumerate([(3, 6, 4, 0.15), (4, 10, 5, 0.5), (2, 8, 3, 1.0)]):
        g = _gen(seed)
        f = torch.randn(B, N, D, generator=g)
        e = torch.rand(B, N, generator=g) < 0.8
        e[:, 0] = False
        args = (f, e, torch.rand(B, N, generator=g), torch.rand(B, N, generator=g), torch.randn(B, N, D, generator=g))
        cases.append((f"random batch (seed {seed}), B={B}, N={N}, prob={p}", args, {"prob": p}))
    return cases


def _sampler_cases() -> list[tuple[str, tuple, dict]]:
    cases = [
        ("4 rows by hand", (torch.tensor([0.7, 0.2, 0.49, 0.1]), torch.tensor([0.0, 0.0, 0.5, 0.99])), {}),
        # k = 0, 1, 1: rows 0 and 1 have k >= i, so they must skip their own row (j = k + 1)
        ("3 rows, all negatives, u_pick [0, 0.5, 0.9]: a row skips itself",
         (torch.zeros(3), torch.tensor([0.0, 0.5, 0.9])), {}),
        ("all matched", (torch.ones(3), torch.rand(3, generator=_gen(9))), {}),
    ]
    for seed, (B, p) in enumerate([(5, 0.5), (16, 0.5), (7, 1.0), (2, 0.8)]):
        g = _gen(seed)
        cases.append((f"random draws (seed {seed}), B={B}, p_negative={p}",
                      (torch.rand(B, generator=g), torch.rand(B, generator=g)), {"p_negative": p}))
    return cases


def _as_long(x: Any) -> Any:
    if isinstance(x, (tuple, list)):
        try:
            return tuple(torch.as_tensor(v).long() for v in x)
        except Exception:  # leave odd answers to compare(), which explains what is wrong
            return x
    return x


def _never_own_caption(fn: Callable[..., Any]) -> None:
    """Every row a negative: none may keep its own caption."""
    u_swap, u_pick = torch.zeros(6), torch.rand(6, generator=_gen(42))
    idx, _ = fn(u_swap, u_pick, 0.5)
    own = (torch.as_tensor(idx) == torch.arange(6)).nonzero().flatten().tolist()
    if own:
        raise ExerciseFailed(f"negative_sampler, case '6 rows, all negatives (seed 42)': row #{own[0] + 1} "
                             "is a negative but kept its own caption")


EXERCISES = {
    "region_masking_801010": Exercise(_masking_cases),
    "negative_sampler": Exercise(_sampler_cases, postprocess=_as_long, extra=_never_own_caption),
}


def check_region_masking_801010(fn: Callable[..., Any]) -> None:
    """Exercise (notebook 09): ``fn(features, eligible, u_select, u_action, replacement, prob=0.15)``
    -> ``(masked_features (B, N, D), selected (B, N) bool)``, LXMERT's 80/10/10 region masking given
    the random draws: selected = eligible and ``u_select < prob``; of those, ``u_action < 0.8`` ->
    zeros, ``0.8 <= u_action < 0.9`` -> ``replacement``, else kept."""
    run_exercise("pretraining", "region_masking_801010", EXERCISES, fn)


def check_negative_sampler(fn: Callable[..., Any]) -> None:
    """Exercise (notebook 09): ``fn(u_swap, u_pick, p_negative=0.5)`` -> ``(caption_index, is_matched)``:
    a row is a negative when ``u_swap < p_negative``; it then takes caption number
    ``k = floor(u_pick * (B - 1))`` among the other rows, in increasing order."""
    run_exercise("pretraining", "negative_sampler", EXERCISES, fn)
