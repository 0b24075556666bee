"""Checks for the exercises of notebook 12 (ViLBERT).

Each check runs the learner's function on seeded inputs and compares it with the stored outputs of
the course's reference (``answers/vilbert.json``, computed from :mod:`vlp_course.models.vilbert`).
Sources: Lu et al. 2019, section 3.1 (co-attentional transformer layers);
facebookresearch/vilbert-multi-task ``vilbert/vilbert.py`` (``BertBiAttention``, ``BertEncoder.forward``).
"""

from __future__ import annotations

from typing import Callable

import torch

from vlp_course.exercises import Exercise, run_exercise

__all__ = ["check_coattention", "check_layer_schedule", "EXERCISES"]


def _coattention_cases():
    from vlp_course.models.vilbert import BiAttention, ViLBERTConfig

    cases = []
    for seed, (B, N, T, heads) in enumerate([(1, 3, 4, 1), (2, 5, 6, 2), (3, 4, 7, 4)]):
        cfg = ViLBERTConfig(vocab_size=10, hidden_size=12, num_attention_heads=2, intermediate_size=8, v_feature_size=4,
                            v_target_size=3, v_hidden_size=8, v_num_attention_heads=2, v_intermediate_size=8,
                            bi_hidden_size=16, bi_num_attention_heads=heads, attention_probs_dropout_prob=0.0,
                            v_attention_probs_dropout_prob=0.0)
        with torch.random.fork_rng(devices=[]):  # leaves the notebook's random stream alone
            torch.manual_seed(seed)
            bi = BiAttention(cfg).eval()
        g = torch.Generator().manual_seed(100 + seed)
        visual = torch.randn(B, N, 8, generator=g)
        text = torch.randn(B, T, 12, generator=g)
        mask = torch.ones(B, T, dtype=torch.long)
        if B > 1:
            mask[1, T - 2:] = 0
        cases.append((f"B={B} N={N} T={T} heads={heads}", (bi, visual, text, mask), {}))
    return cases


def _schedule_cases():
    return [
        ("6/6 (bert_base_6layer_6conect)", ([0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], 6, 12), {}),
        ("8/8 (bert_base_8layer_8conect)", (list(range(8)), list(range(4, 12)), 8, 12), {}),
        ("one co-attention before the last text layer", ([2], [11], 2, 12), {}),
        ("two co-attentions, layers after", ([1, 2], [2, 3], 4, 5), {}),
        ("the course's scene model: a co-attention before each layer pair", ([0, 1], [0, 1], 2, 2), {}),
    ]


def _as_pairs(out):
    if not isinstance(out, (list, tuple)):
        raise ValueError(f"your function returned a {type(out).__name__}; expected a list of (kind, index) pairs")
    try:
        return [tuple(x) for x in out]
    except TypeError:
        raise ValueError("expected a list of (kind, index) pairs such as ('v', 0)") from None


EXERCISES = {
    "co-attention (regions -> words)": Exercise(_coattention_cases, no_grad=True, whole_module_blocked=True),
    "layer schedule": Exercise(_schedule_cases, postprocess=_as_pairs),
}


def check_coattention(fn: Callable) -> None:
    """Check ``fn(bi, visual (B, N, Dv), text (B, T, Dt), text_mask (B, T)) -> (context (B, N, Db),
    weights (B, H, N, T))``: regions attend to words with a ViLBERT ``BiAttention`` module's
    projections (queries ``bi.query1(visual)``, keys ``bi.key2(text)``, values ``bi.value2(text)``,
    ``bi.num_heads`` heads, padded words excluded); calling ``bi`` itself fails the check."""
    run_exercise("vilbert", "co-attention (regions -> words)", EXERCISES, fn)


def check_layer_schedule(fn: Callable) -> None:
    """Check ``fn(v_ids, t_ids, num_visual_layers, num_text_layers) -> list of (kind, index)``:
    ViLBERT's layer order, ``("t", i)``, ``("v", j)``, ``("c", k)``."""
    run_exercise("vilbert", "layer schedule", EXERCISES, fn)
