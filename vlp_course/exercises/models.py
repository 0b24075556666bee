"""Checks for the exercises of the model notebooks (10 VisualBERT, 11 LXMERT).

Each ``check_*`` runs the learner's function and the package's reference on seeded inputs built
from a small random model, and raises :class:`~vlp_course.exercises.ExerciseFailed` on the first
difference (see :func:`~vlp_course.exercises.run_cases`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from vlp_course.exercises import run_cases

__all__ = [
    "reference_visualbert_embeddings",
    "check_visualbert_embeddings",
    "reference_mask_token_states",
    "check_mask_token_states",
    "reference_object_embedding",
    "check_object_embedding",
    "reference_cross_modality_layer",
    "check_cross_modality_layer",
]


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            ln = name.endswith(("LayerNorm.weight", "layer_norm.weight"))
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if ln else 0.0))
    return module.eval()


# --------------------------------------------------------------------------------------------------
# 10 VisualBERT
# --------------------------------------------------------------------------------------------------
def reference_visualbert_embeddings(emb, input_ids: Tensor, visual_feats: Tensor) -> Tensor:
    """VisualBERT's joint embedding (token types 0, visual position 0): (B, T+V, D)."""
    return emb(input_ids, visual_feats=visual_feats)


def _visualbert_cases():
    from vlp_course.models.visualbert import VisualBertConfig, VisualBertEmbeddings

    cases = []
    for seed, (B, T, V, F, D) in enumerate([(2, 5, 3, 6, 8), (1, 4, 1, 3, 4), (3, 7, 5, 10, 12)]):
        cfg = VisualBertConfig(vocab_size=30, hidden_size=D, num_attention_heads=2, num_hidden_layers=0,
                               intermediate_size=8, max_position_embeddings=16, visual_embedding_dim=F,
                               hidden_dropout_prob=0.0)
        torch.manual_seed(seed)
        emb = _randomize(VisualBertEmbeddings(cfg), seed)
        g = torch.Generator().manual_seed(100 + seed)
        ids = torch.randint(0, 30, (B, T), generator=g)
        feats = torch.randn(B, V, F, generator=g)
        cases.append((f"B={B}, T={T}, V={V}, F={F}, D={D}", (emb, ids, feats), {}))
    return cases


def check_visualbert_embeddings(student_fn: Callable) -> None:
    """Check ``student_fn(emb, input_ids, visual_feats) -> (B, T+V, D)`` against VisualBertEmbeddings."""
    with torch.no_grad():
        run_cases("visualbert_embeddings", student_fn, reference_visualbert_embeddings, _visualbert_cases(), atol=1e-5)


def reference_mask_token_states(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """(B, L, D), (B, T) -> (B, D): the state at index ``attention_mask.sum(1) - 2`` of each row."""
    pos = attention_mask.long().sum(1) - 2  # (B,)
    return hidden[torch.arange(hidden.shape[0]), pos]


def check_mask_token_states(student_fn: Callable) -> None:
    """Check ``student_fn(hidden, attention_mask) -> (B, D)``: the [MASK] state of ``[CLS] q ? [MASK] [SEP] pad…``."""
    cases = []
    g = torch.Generator().manual_seed(0)
    for B, T, V, D in [(3, 6, 2, 4), (4, 9, 3, 5), (1, 3, 0, 2)]:
        hidden = torch.randn(B, T + V, D, generator=g)
        lengths = torch.randint(2, T + 1, (B,), generator=g)
        mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
        cases.append((f"B={B}, T={T}, V={V}, lengths={lengths.tolist()}", (hidden, mask), {}))
    run_cases("mask_token_states", student_fn, reference_mask_token_states, cases)


# --------------------------------------------------------------------------------------------------
# 11 LXMERT
# --------------------------------------------------------------------------------------------------
def reference_object_embedding(enc, feats: Tensor, boxes: Tensor) -> Tensor:
    """LXMERT's object encoder: (LN(visn_fc(f)) + LN(box_fc(b))) / 2, (B, N, D)."""
    return enc(feats, boxes)


def _lxmert_config(D: int, F: int):
    from vlp_course.models.lxmert import LxmertConfig

    return LxmertConfig(vocab_size=30, hidden_size=D, num_attention_heads=2, intermediate_size=2 * D, l_layers=1,
                        r_layers=1, x_layers=1, visual_feat_dim=F, num_qa_labels=3, num_object_labels=3,
                        num_attr_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def check_object_embedding(student_fn: Callable) -> None:
    """Check ``student_fn(enc, feats, boxes) -> (B, N, D)`` against :class:`~vlp_course.models.lxmert.VisualFeatEncoder`."""
    from vlp_course.models.lxmert import VisualFeatEncoder

    cases = []
    for seed, (B, N, F, D) in enumerate([(2, 3, 6, 8), (1, 1, 4, 4), (3, 5, 10, 6)]):
        enc = _randomize(VisualFeatEncoder(_lxmert_config(D, F)), seed)
        g = torch.Generator().manual_seed(50 + seed)
        xy = torch.rand(B, N, 2, generator=g) * 0.5
        boxes = torch.cat([xy, xy + torch.rand(B, N, 2, generator=g) * 0.5], -1)
        cases.append((f"B={B}, N={N}, F={F}, D={D}", (enc, torch.randn(B, N, F, generator=g), boxes), {}))
    with torch.no_grad():
        run_cases("object_embedding", student_fn, reference_object_embedding, cases)


def reference_cross_modality_layer(layer, lang: Tensor, lang_mask: Tensor, visn: Tensor, visn_mask: Tensor):
    """One LXMERT cross-modality layer: ``(lang_out (B, T, D), visn_out (B, N, D))``."""
    lang_out, visn_out, _, _ = layer(lang, lang_mask, visn, visn_mask)
    return lang_out, visn_out


def check_cross_modality_layer(student_fn: Callable) -> None:
    """Check ``student_fn(layer, lang, lang_mask, visn, visn_mask) -> (lang_out, visn_out)`` against
    :class:`~vlp_course.models.lxmert.LxmertXLayer` (masks padded on both sides)."""
    from vlp_course.models.lxmert import LxmertXLayer

    cases = []
    for seed, (B, T, N, D) in enumerate([(2, 5, 3, 8), (3, 4, 6, 6), (1, 2, 1, 4)]):
        layer = _randomize(LxmertXLayer(_lxmert_config(D, 4)), seed)
        g = torch.Generator().manual_seed(70 + seed)
        lang, visn = torch.randn(B, T, D, generator=g), torch.randn(B, N, D, generator=g)
        lmask, vmask = torch.ones(B, T, dtype=torch.long), torch.ones(B, N, dtype=torch.long)
        lmask[0, T - 1:] = 0
        if N > 1:
            vmask[-1, N - 1:] = 0
        cases.append((f"B={B}, T={T}, N={N}, D={D}", (layer, lang, lmask, visn, vmask), {}))
    with torch.no_grad():
        run_cases("cross_modality_layer", student_fn, reference_cross_modality_layer, cases, atol=1e-4)
