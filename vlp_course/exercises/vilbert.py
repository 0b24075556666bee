"""Checks for the exercises of notebook 12 (ViLBERT).

Each check runs the learner's function and the package's reference (:mod:`vlp_course.models.vilbert`)
on seeded inputs and compares them with :func:`vlp_course.exercises.run_cases`. Sources: Lu et al.
2019, section 3.1 (co-attentional transformer layers); facebookresearch/vilbert-multi-task
``vilbert/vilbert.py`` (``BertBiAttention``, ``BertEncoder.forward``).
"""

from __future__ import annotations

from typing import Callable

import torch

from vlp_course.exercises import run_cases

__all__ = ["check_coattention", "check_layer_schedule", "reference_coattention", "reference_layer_schedule"]


def reference_coattention(bi, visual, text, text_mask):
    """Regions attend to words with a ViLBERT ``BiAttention`` module's projections.

    Queries ``bi.query1(visual)``, keys ``bi.key2(text)``, values ``bi.value2(text)``, split into
    ``bi.num_heads`` heads; softmax over the words with padded words (``text_mask`` 0) excluded.

    Returns:
        ``(context (B, N, Db), weights (B, H, N, T))``.
    """
    vctx, _, v2t, _ = bi(visual, None, text, text_mask)
    return vctx, v2t


def _coattention_cases():
    from vlp_course.models.vilbert import BiAttention, ViLBERTConfig

    cases = []
    for seed, (B, N, T, heads) in enumerate([(1, 3, 4, 1), (2, 5, 6, 2), (3, 4, 7, 4)]):
        torch.manual_seed(seed)
        cfg = ViLBERTConfig(vocab_size=10, hidden_size=12, num_attention_heads=2, intermediate_size=8, v_feature_size=4,
                            v_target_size=3, v_hidden_size=8, v_num_attention_heads=2, v_intermediate_size=8,
                            bi_hidden_size=16, bi_num_attention_heads=heads, attention_probs_dropout_prob=0.0,
                            v_attention_probs_dropout_prob=0.0)
        bi = BiAttention(cfg).eval()
        g = torch.Generator().manual_seed(100 + seed)
        visual = torch.randn(B, N, 8, generator=g)
        text = torch.randn(B, T, 12, generator=g)
        mask = torch.ones(B, T, dtype=torch.long)
        if B > 1:
            mask[1, T - 2:] = 0
        cases.append((f"B={B} N={N} T={T} heads={heads}", (bi, visual, text, mask), {}))
    return cases


def check_coattention(fn: Callable) -> None:
    """Check ``fn(bi, visual, text, text_mask) -> (context, weights)`` against :func:`reference_coattention`."""
    with torch.no_grad():
        run_cases("co-attention (regions -> words)", fn, reference_coattention, _coattention_cases(), atol=1e-5)


def reference_layer_schedule(v_biattention_id, t_biattention_id, num_visual_layers, num_text_layers):
    """ViLBERT's layer order as a list of ``("t", i)``, ``("v", j)``, ``("c", k)``
    (:func:`vlp_course.models.vilbert.layer_schedule`)."""
    from vlp_course.models.vilbert import layer_schedule

    class _C:  # only the four fields the schedule reads
        pass

    c = _C()
    c.v_biattention_id, c.t_biattention_id = list(v_biattention_id), list(t_biattention_id)
    c.v_num_hidden_layers, c.num_hidden_layers = num_visual_layers, num_text_layers
    return layer_schedule(c)


def check_layer_schedule(fn: Callable) -> None:
    """Check ``fn(v_ids, t_ids, num_visual_layers, num_text_layers) -> list of (kind, index)``."""
    cases = [
        ("6/6 (bert_base_6layer_6conect)", ([0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], 6, 12), {}),
        ("8/8 (bert_base_8layer_8conect)", (list(range(8)), list(range(4, 12)), 8, 12), {}),
        ("one co-attention before the last text layer", ([2], [11], 2, 12), {}),
        ("two co-attentions, layers after", ([1, 2], [2, 3], 4, 5), {}),
        ("the course's scene model: a co-attention before each layer pair", ([0, 1], [0, 1], 2, 2), {}),
    ]
    run_cases("layer schedule", lambda *a: [tuple(x) for x in fn(*a)], reference_layer_schedule, cases)
