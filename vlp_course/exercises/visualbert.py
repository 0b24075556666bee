"""Checks for the exercises of notebook 10 (VisualBERT).

Each ``check_*`` runs the learner's function and the package's reference on seeded inputs built
from a small random model, and raises :class:`~vlp_course.exercises.ExerciseFailed` on the first
difference (see :func:`~vlp_course.exercises.run_cases`). Sources: Li et al. 2019, sections 3.1
and 4.1; uclanlp/visualbert ``pytorch_pretrained_bert/modeling.py``.
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
]


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (LayerNorm weights around 1), so no check passes on zeros and ones."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if name.endswith("LayerNorm.weight") else 0.0))
    return module.eval()


# --------------------------------------------------------------------------------------------------
# Exercise 1: the joint embedding
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


# --------------------------------------------------------------------------------------------------
# Exercise 2: the [MASK] token's state
# --------------------------------------------------------------------------------------------------
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
