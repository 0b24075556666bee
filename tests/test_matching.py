"""Image-text matching sampler: negative rate, negatives never show the same image, hard
negatives, the is_matched polarity and its ViLBERT conversion (transformers issue 7266), and the
labels of mismatched pairs (lxmert issue 51). docs/pitfalls.md describes both faults."""

from __future__ import annotations

import math

import pytest
import torch

from vlp_course.pretraining.matching import (
    IGNORE_INDEX,
    MLM_ON_MISMATCHED,
    drop_mismatched_labels,
    from_vilbert_is_next,
    matching_from_uniforms,
    sample_matching,
    to_vilbert_is_next,
)


def test_negative_rate_over_120k_pairs():
    g = torch.Generator().manual_seed(0)
    B, reps = 400, 300  # 120,000 pairs
    neg = 0
    for _ in range(reps):
        m = sample_matching(B, generator=g)
        assert torch.equal(m.is_matched, (m.caption_index == torch.arange(B)).long())
        neg += int((m.is_matched == 0).sum())
    n = B * reps
    assert abs(neg / n - 0.5) < 5 * math.sqrt(0.25 / n)


def test_every_other_caption_equally_likely():
    g = torch.Generator().manual_seed(1)
    B, reps = 5, 2000
    counts = torch.zeros(B, B)
    for _ in range(reps):
        m = sample_matching(B, p_negative=1.0, generator=g)
        counts[torch.arange(B), m.caption_index] += 1
    assert counts.diagonal().sum() == 0
    off = counts[~torch.eye(B, dtype=torch.bool)]
    expect = reps / (B - 1)
    assert ((off - expect).abs() < 5 * math.sqrt(expect)).all(), off


def test_image_ids_exclude_captions_of_the_same_image():
    ids = torch.tensor([0, 0, 1, 1, 2, 2])  # two captions per image
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        m = sample_matching(6, p_negative=1.0, image_ids=ids, generator=g)
        assert (ids[m.caption_index] != ids).all()
        assert (m.is_matched == 0).all()


def test_decisions_by_hand():
    u_swap = torch.tensor([0.7, 0.2, 0.49, 0.1])
    u_pick = torch.tensor([0.0, 0.0, 0.5, 0.99])
    m = matching_from_uniforms(u_swap, u_pick, 0.5)
    # row 0 keeps; row 1 -> k=0 of [0,2,3] = 0; row 2 -> k=floor(1.5)=1 of [0,1,3] = 1; row 3 -> k=2 of [0,1,2] = 2
    assert m.caption_index.tolist() == [0, 0, 1, 2]
    assert m.is_matched.tolist() == [1, 0, 0, 0]


def test_hard_negatives_used_with_their_probability():
    hard = torch.tensor([[3, -1], [-1, -1], [0, 1], [2, -1]])
    u_swap = torch.zeros(4)
    u_pick = torch.tensor([0.9, 0.5, 0.6, 0.1])
    u_hard = torch.tensor([0.1, 0.1, 0.1, 0.9])
    m = matching_from_uniforms(u_swap, u_pick, 0.5, hard_negatives=hard, u_hard=u_hard, hard_prob=0.5)
    # row 0: hard [3] -> 3; row 1: no hard -> random k=floor(1.5)=1 of [0,2,3] = 2
    # row 2: hard [0,1], k=floor(1.2)=1 -> 1; row 3: u_hard 0.9 >= 0.5 -> random k=0 of [0,1,2] = 0
    assert m.caption_index.tolist() == [3, 2, 1, 0]
    assert m.is_hard.tolist() == [True, False, True, False]
    g = torch.Generator().manual_seed(0)
    B = 4000
    hard = ((torch.arange(B) + 1) % B)[:, None]
    frac = torch.cat([sample_matching(B, p_negative=1.0, hard_negatives=hard, hard_prob=0.3, generator=g).is_hard
                      for _ in range(3)]).float().mean().item()
    assert abs(frac - 0.3) < 5 * math.sqrt(0.21 / (3 * B))


def test_is_matched_polarity_converts_to_vilbert_is_next():
    """transformers issue 7266: LXMERT's matching head read the wrong way round scores at chance.
    The package speaks of is_matched (1 = the caption belongs to the image); ViLBERT's is_next (1 =
    random caption, vilbert-multi-task vilbert/datasets/concept_cap_dataset.py random_cap) is
    converted at its boundary, and the ignore label survives both ways."""
    is_matched = torch.tensor([1, 0, IGNORE_INDEX])
    is_next = to_vilbert_is_next(is_matched)
    assert is_next.tolist() == [0, 1, -1]  # ViLBERT: 1 = random caption, -1 = ignore
    assert torch.equal(from_vilbert_is_next(is_next), is_matched)
    with pytest.raises(ValueError):
        to_vilbert_is_next(torch.tensor([2]))


def test_mismatched_labels_dropped_for_vilbert_kept_for_lxmert():
    """lxmert issue 51: LXMERT computes the masked-word loss on mismatched pairs too (its author: on
    purpose); ViLBERT's pretraining command (--objective 1, train_concap.py) drops it. A named
    per-model option, each default following its original."""
    labels = torch.tensor([[5, -100, 7], [8, 9, -100]])
    is_matched = torch.tensor([1, 0])
    assert drop_mismatched_labels(labels, is_matched).tolist() == [[5, -100, 7], [-100, -100, -100]]
    assert MLM_ON_MISMATCHED == {"lxmert": True, "vilbert": False}
    with pytest.raises(ValueError, match=r"is_matched must have shape \(B,\)"):
        drop_mismatched_labels(labels, torch.tensor([1, 0, 1]))


def test_errors():
    for p in (-0.5, 1.01):
        with pytest.raises(ValueError, match=r"p_negative must be a probability in \[0, 1\]"):
            sample_matching(4, p_negative=p)
    with pytest.raises(ValueError, match="another image"):
        sample_matching(1, p_negative=1.0)
    with pytest.raises(ValueError, match="another image"):
        sample_matching(3, p_negative=1.0, image_ids=torch.tensor([4, 4, 4]))
    with pytest.raises(ValueError, match=r"image_ids must have shape \(B,\) = \(3,\)"):
        sample_matching(3, image_ids=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="same image"):
        sample_matching(3, p_negative=1.0, hard_negatives=torch.tensor([[0], [0], [1]]))
    with pytest.raises(ValueError, match=r"hard_negatives must have shape \(B, K\)"):
        sample_matching(3, hard_negatives=torch.tensor([1, 2, 0]))
    # p_negative 0: everything matched, and a batch of one works
    m = sample_matching(1, p_negative=0.0)
    assert m.is_matched.tolist() == [1] and m.caption_index.tolist() == [0]
