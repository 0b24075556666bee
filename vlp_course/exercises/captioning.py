"""Checks for the exercises of notebook 17 (image captioning).

Each check runs the learner's function on seeded inputs and compares it with the stored outputs of
the course's reference (``answers/captioning.json``). Sources: Zhou et al. 2020, "Unified
Vision-Language Pre-Training for Image Captioning and VQA", section 3.1 (the seq2seq attention
mask); LuoweiZhou/VLP ``pytorch_pretrained_bert/modeling.py``, ``BertForSeq2SeqDecoder.beam_search``
(a finished hypothesis is not extended: its extensions get -10000 there).
"""

from __future__ import annotations

from typing import Callable

import torch

from vlp_course.exercises import Exercise, run_exercise

__all__ = ["check_seq2seq_mask", "check_beam_step", "EXERCISES"]


def _mask_cases():
    return [("T = 2, V = 1", (2, 1), {}), ("T = 4, V = 3", (4, 3), {}), ("T = 6, V = 2", (6, 2), {}),
            ("T = 1 (only [CLS]), V = 2", (1, 2), {})]


def _beam_cases():
    g = torch.Generator().manual_seed(0)
    cases = []
    for label, K, vocab, done in (("K = 2, nothing finished", 2, 5, [False, False]),
                                  ("K = 3, the best one finished", 3, 6, [True, False, False]),
                                  ("K = 4, two finished", 4, 7, [True, False, True, False])):
        scores = (-torch.rand(K, generator=g) * 3).sort(descending=True).values  # best first, as a beam is kept
        log_probs = torch.log_softmax(torch.randn(K, vocab, generator=g) * 2, dim=-1)
        cases.append((label, (scores, log_probs, torch.tensor(done)), {}))
    return cases


def _bool_matrix(out):
    try:
        out = torch.as_tensor(out)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"your function returned a {type(out).__name__}; expected a (T + V, T + V) bool tensor") from None
    if out.ndim != 2:
        raise ValueError(f"your function must return a (T + V, T + V) matrix, got {out.ndim} dimension(s)")
    return out.bool()


def _three(out):
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise ValueError("your function must return three tensors: (scores, parent, token)")
    parent, token = torch.as_tensor(out[1]), torch.as_tensor(out[2])
    if parent.dtype.is_floating_point or token.dtype.is_floating_point:
        raise ValueError("parent and token must be integer tensors (use // and %, not /): they are indices")
    return torch.as_tensor(out[0]), parent.long(), token.long()


EXERCISES = {
    "seq2seq mask": Exercise(_mask_cases, postprocess=_bool_matrix),
    "beam step": Exercise(_beam_cases, postprocess=_three),
}


def check_seq2seq_mask(fn: Callable) -> None:
    """Check ``fn(T, V) -> (T + V, T + V)`` bool tensor: Unified VLP's seq2seq mask for ``[CLS] caption [SEP]``
    (T tokens) followed by V regions, no padding; ``mask[i, j]`` True when position i may attend to j."""
    run_exercise("captioning", "seq2seq mask", EXERCISES, fn)


def check_beam_step(fn: Callable) -> None:
    """Check ``fn(scores (K,), log_probs (K, vocab), done (K,)) -> (scores (K,), parent (K,), token (K,))``:
    the K best one-token extensions of the unfinished hypotheses, best first; a finished one has none."""
    run_exercise("captioning", "beam step", EXERCISES, fn)
