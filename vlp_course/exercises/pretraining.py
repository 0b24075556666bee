"""Checks for the exercises of notebook 09 (pretraining tasks): each runs the learner's function
and the package's reference on the same seeded inputs (random draws included, so the answer is
deterministic) and reports the first difference."""

from __future__ import annotations

from typing import Any, Callable

import torch

from vlp_course.exercises import ExerciseFailed, run_cases
from vlp_course.pretraining.matching import matching_from_uniforms
from vlp_course.pretraining.regions import KEEP_UNSELECTED, apply_region_actions, region_actions_from_uniforms

__all__ = ["check_region_masking_801010", "check_negative_sampler", "reference_region_masking_801010",
           "reference_negative_sampler"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_region_masking_801010(features, eligible, u_select, u_action, replacement, prob: float = 0.15):
    """The package's answer to the 80/10/10 exercise: ``(masked_features (B, N, D), selected (B, N) bool)``.

    Selected = eligible and ``u_select < prob``; of those, ``u_action < 0.8`` -> zeros,
    ``0.8 <= u_action < 0.9`` -> ``replacement``, else kept (LXMERT's ``random_feat``).
    """
    actions = region_actions_from_uniforms(eligible, u_select, u_action, prob, "lxmert")
    return apply_region_actions(features, actions, replacement), actions != KEEP_UNSELECTED


def reference_negative_sampler(u_swap, u_pick, p_negative: float = 0.5):
    """The package's answer to the sampler exercise: ``(caption_index (B,), is_matched (B,))``."""
    m = matching_from_uniforms(u_swap, u_pick, p_negative)
    return m.caption_index, m.is_matched


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


def check_region_masking_801010(fn: Callable[..., Any]) -> None:
    """Exercise (notebook 09): ``fn(features, eligible, u_select, u_action, replacement, prob=0.15)``
    -> ``(masked_features, selected)``, LXMERT's 80/10/10 region masking given the random draws."""
    run_cases("region_masking_801010", fn, reference_region_masking_801010, _masking_cases())


def check_negative_sampler(fn: Callable[..., Any]) -> None:
    """Exercise (notebook 09): ``fn(u_swap, u_pick, p_negative=0.5)`` -> ``(caption_index, is_matched)``:
    a row is a negative when ``u_swap < p_negative``; it then takes caption number
    ``k = floor(u_pick * (B - 1))`` among the other rows, in increasing order."""
    cases = [
        ("4 rows by hand", (torch.tensor([0.7, 0.2, 0.49, 0.1]), torch.tensor([0.0, 0.0, 0.5, 0.99])), {}),
        ("all matched", (torch.ones(3), torch.rand(3, generator=_gen(9))), {}),
    ]
    for seed, (B, p) in enumerate([(5, 0.5), (16, 0.5), (7, 1.0), (2, 0.8)]):
        g = _gen(seed)
        cases.append((f"random draws (seed {seed}), B={B}, p_negative={p}",
                      (torch.rand(B, generator=g), torch.rand(B, generator=g)), {"p_negative": p}))

    def as_long(x: Any) -> Any:
        if isinstance(x, tuple):
            return tuple(torch.as_tensor(v).long() if not isinstance(v, torch.Tensor) else v.long() for v in x)
        return x

    run_cases("negative_sampler", fn, reference_negative_sampler, cases, postprocess=as_long)
    # a negative must never keep its own caption
    u_swap, u_pick = torch.zeros(6), torch.rand(6, generator=_gen(42))
    idx, _ = fn(u_swap, u_pick, 0.5)
    if (torch.as_tensor(idx) == torch.arange(6)).any():
        raise ExerciseFailed("negative_sampler: a negative pair kept its own caption")
