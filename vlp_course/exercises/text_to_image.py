"""Checks for the exercises of notebook 18 (text to image with MaskGIT).

Each check runs the learner's function on seeded inputs and compares it with the stored outputs of
the course's reference (``answers/text_to_image.json``). Source: Chang et al. 2022, "MaskGIT: Masked
Generative Image Transformer", sections 3.1 (the training mask), 3.2 (iterative decoding) and 3.3 (the cosine
schedule); google-research/maskgit ``libml/mask_schedule.py`` and ``libml/parallel_decode.py``.
"""

from __future__ import annotations

from typing import Callable

import torch

from vlp_course.exercises import Exercise, run_exercise

__all__ = ["check_tokens_to_mask", "check_training_mask", "check_remask", "EXERCISES"]


def _schedule_cases():
    return [(f"G = {G}, step {t} of {T}", (G, t, T), {}) for G, t, T in
            ((256, 0, 8), (256, 3, 8), (256, 6, 8), (256, 7, 8), (64, 0, 12), (64, 5, 12), (10, 0, 2), (16, 1, 4))]


def _training_cases():
    g = torch.Generator().manual_seed(0)
    cases = []
    for label, B, G, K, ratios in (("B = 1, r = 0 (all hidden)", 1, 8, 5, [0.0]),
                                   ("B = 2, r = 0.5 and 0.9", 2, 16, 7, [0.5, 0.9]),
                                   ("B = 3, r near 1 (one hidden)", 3, 9, 4, [0.999, 0.2, 0.7])):
        codes = torch.randint(0, K, (B, G), generator=g)
        order = torch.stack([torch.randperm(G, generator=g) for _ in range(B)])
        cases.append((label, (codes, torch.tensor(ratios), order, K), {}))
    return cases


def _remask_cases():
    g = torch.Generator().manual_seed(1)
    cases = []
    for label, B, G, n in (("B = 1, G = 6, re-mask 2", 1, 6, [2]), ("B = 2, G = 10, re-mask 1 and 4", 2, 10, [1, 4]),
                           ("B = 2, G = 8, half known", 2, 8, [3, 2])):
        confidence = torch.rand(B, G, generator=g).log()
        unknown = torch.rand(B, G, generator=g) < 0.8
        if label.endswith("half known"):
            unknown = torch.arange(G)[None, :].expand(B, G) % 2 == 0
        unknown[:, 0] = True
        cases.append((label, (confidence, unknown, torch.tensor(n)), {}))
    return cases


def _integer(out):
    if isinstance(out, torch.Tensor):
        if out.numel() != 1:
            raise ValueError(f"your function must return one number, got a tensor of shape {tuple(out.shape)}")
        out = out.item()
    if isinstance(out, float) and not out.is_integer():
        raise ValueError(f"a number of tokens is a whole number, got {out} (use math.floor)")
    try:
        return torch.tensor(int(out))
    except (TypeError, ValueError):
        raise ValueError(f"your function must return an int, got {type(out).__name__}") from None


def _two_long(out):
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ValueError("your function must return two tensors: (inputs, labels)")
    a, b = torch.as_tensor(out[0]), torch.as_tensor(out[1])
    if a.dtype.is_floating_point or b.dtype.is_floating_point:
        raise ValueError("inputs and labels are token ids: return integer tensors")
    return a.long(), b.long()


def _bool(out):
    t = torch.as_tensor(out)
    if t.dtype != torch.bool:
        raise ValueError(f"return a bool tensor (True = mask again), got {t.dtype}")
    return t


EXERCISES = {
    "tokens to mask": Exercise(_schedule_cases, postprocess=_integer),
    "training mask": Exercise(_training_cases, postprocess=_two_long),
    "remask": Exercise(_remask_cases, postprocess=_bool),
}


def check_tokens_to_mask(fn: Callable) -> None:
    """Check ``fn(num_tokens, step, iterations) -> int``: how many tokens stay masked after decoding step ``step``
    (0-based) of ``iterations``, by MaskGIT's cosine schedule."""
    run_exercise("text_to_image", "tokens to mask", EXERCISES, fn)


def check_training_mask(fn: Callable) -> None:
    """Check ``fn(codes (B, G), ratios (B,), order (B, G), mask_id) -> (inputs (B, G), labels (B, G))``: hide the
    ``ceil(cos(pi/2 r) G)`` tokens that come first in each row's ``order``; labels -100 where not hidden."""
    run_exercise("text_to_image", "training mask", EXERCISES, fn)


def check_remask(fn: Callable) -> None:
    """Check ``fn(confidence (B, G), unknown (B, G) bool, n (B,)) -> (B, G) bool``: the ``n`` least confident of
    each row's just-predicted (``unknown``) tokens, which are masked again."""
    run_exercise("text_to_image", "remask", EXERCISES, fn)
