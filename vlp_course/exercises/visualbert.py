"""Checks for the exercises of notebook 10 (VisualBERT).

Each ``check_*`` runs the learner's function on seeded inputs built from a small random model and
compares it with the stored outputs of the course's reference (``answers/visualbert.json``); it
raises :class:`~vlp_course.exercises.ExerciseFailed` on the first difference. Sources: Li et al.
2019, sections 3.1 and 4.1; uclanlp/visualbert ``pytorch_pretrained_bert/modeling.py``.
"""

from __future__ import annotations

from typing import Callable

import torch

from vlp_course.exercises import Exercise, randomize, run_exercise

__all__ = ["check_visualbert_embeddings", "check_mask_token_states", "EXERCISES"]


# --------------------------------------------------------------------------------------------------
# Exercise 1: the joint embedding
# --------------------------------------------------------------------------------------------------
def _visualbert_cases():
    from vlp_course.models.visualbert import VisualBertConfig, VisualBertEmbeddings

    cases = []
    for seed, (B, T, V, F, D) in enumerate([(2, 5, 3, 6, 8), (1, 4, 1, 3, 4), (3, 7, 5, 10, 12)]):
        cfg = VisualBertConfig(vocab_size=30, hidden_size=D, num_attention_heads=2, num_hidden_layers=0,
                               intermediate_size=8, max_position_embeddings=16, visual_embedding_dim=F,
                               hidden_dropout_prob=0.0)
        with torch.random.fork_rng(devices=[]):  # leaves the notebook's random stream alone
            torch.manual_seed(seed)
            emb = randomize(VisualBertEmbeddings(cfg), seed)
        g = torch.Generator().manual_seed(100 + seed)
        ids = torch.randint(0, 30, (B, T), generator=g)
        feats = torch.randn(B, V, F, generator=g)
        cases.append((f"B={B}, T={T}, V={V}, F={F}, D={D}", (emb, ids, feats), {}))
    return cases


def check_visualbert_embeddings(student_fn: Callable) -> None:
    """Check ``student_fn(emb, input_ids (B, T), visual_feats (B, V, F)) -> (B, T+V, D)``: the output of
    :class:`~vlp_course.models.visualbert.VisualBertEmbeddings` (token types 0, visual position 0)
    computed from its tables; calling ``emb`` itself fails the check."""
    run_exercise("visualbert", "visualbert_embeddings", EXERCISES, student_fn)


# --------------------------------------------------------------------------------------------------
# Exercise 2: the [MASK] token's state
# --------------------------------------------------------------------------------------------------
def _mask_token_cases():
    cases = []
    g = torch.Generator().manual_seed(0)
    for B, T, V, D in [(3, 6, 2, 4), (4, 9, 3, 5), (1, 3, 0, 2)]:
        hidden = torch.randn(B, T + V, D, generator=g)
        lengths = torch.randint(2, T + 1, (B,), generator=g)
        mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
        cases.append((f"B={B}, T={T}, V={V}, lengths={lengths.tolist()}", (hidden, mask), {}))
    return cases


EXERCISES = {
    "visualbert_embeddings": Exercise(_visualbert_cases, no_grad=True, whole_module_blocked=True),
    "mask_token_states": Exercise(_mask_token_cases),
}


def check_mask_token_states(student_fn: Callable) -> None:
    """Check ``student_fn(hidden (B, T+V, D), attention_mask (B, T)) -> (B, D)``: the [MASK] state of
    ``[CLS] q ? [MASK] [SEP] pad…``, at index ``attention_mask.sum(1) - 2`` of each row."""
    run_exercise("visualbert", "mask_token_states", EXERCISES, student_fn)
