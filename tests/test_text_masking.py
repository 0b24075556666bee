"""BERT's masked-language-modeling corruption: rates, exclusions, whole words, errors."""

from __future__ import annotations

import math

import pytest
import torch

from vlp_course.pretraining.text_masking import IGNORE_INDEX, apply_mask_decisions, mask_tokens

V, MASK, SPECIALS = 1000, 4, [0, 1, 2, 3, 4]  # [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4


def _sigma(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


@pytest.fixture(scope="module")
def big_batch():
    g = torch.Generator().manual_seed(123)
    ids = torch.randint(5, V, (400, 512), generator=g)  # 204,800 ordinary tokens
    masked, labels = mask_tokens(ids, V, MASK, special_token_ids=SPECIALS, generator=torch.Generator().manual_seed(0))
    return ids, masked, labels


def test_selection_rate_is_15_percent(big_batch):
    ids, _, labels = big_batch
    n = ids.numel()
    rate = (labels != IGNORE_INDEX).float().mean().item()
    assert abs(rate - 0.15) < 4 * _sigma(0.15, n)


def test_80_10_10_split(big_batch):
    ids, masked, labels = big_batch
    sel = labels != IGNORE_INDEX
    n = int(sel.sum())
    assert n > 25_000
    to_mask = (masked[sel] == MASK).float().mean().item()
    changed = ((masked[sel] != MASK) & (masked[sel] != ids[sel])).float().mean().item()
    kept = (masked[sel] == ids[sel]).float().mean().item()
    # a random replacement equals the original with probability 1/(V - 5)
    p_same = 0.1 / (V - len(SPECIALS))
    assert abs(to_mask - 0.8) < 4 * _sigma(0.8, n)
    assert abs(changed - (0.1 - p_same)) < 4 * _sigma(0.1, n)
    assert abs(kept - (0.1 + p_same)) < 4 * _sigma(0.1, n)


def test_labels_hold_originals_and_unselected_are_untouched(big_batch):
    ids, masked, labels = big_batch
    sel = labels != IGNORE_INDEX
    assert torch.equal(labels[sel], ids[sel])
    assert torch.equal(masked[~sel], ids[~sel])
    assert set(labels[~sel].unique().tolist()) == {IGNORE_INDEX}


def test_random_replacements_are_never_special(big_batch):
    ids, masked, labels = big_batch
    sel = labels != IGNORE_INDEX
    replaced = masked[sel & (masked != MASK) & (masked != ids)]
    assert replaced.numel() > 1000
    assert not torch.isin(replaced, torch.tensor(SPECIALS)).any()
    assert int(replaced.min()) >= 5 and int(replaced.max()) < V


def test_specials_and_padding_never_masked():
    g = torch.Generator().manual_seed(1)
    B, T = 64, 40
    ids = torch.randint(5, V, (B, T), generator=g)
    lengths = torch.randint(5, T + 1, (B,), generator=g)
    attention = torch.arange(T)[None, :] < lengths[:, None]
    ids[:, 0] = 2  # [CLS]
    ids[torch.arange(B), lengths - 1] = 3  # [SEP]
    ids[~attention] = 0  # [PAD]
    ids[5, 3] = 1  # an [UNK] inside a sentence
    for kwargs in (dict(special_token_ids=SPECIALS, attention_mask=attention),
                   dict(special_tokens_mask=(ids <= 4), attention_mask=attention)):
        masked, labels = mask_tokens(ids, V, MASK, mlm_probability=1.0, generator=torch.Generator().manual_seed(0), **kwargs)
        forbidden = (ids <= 4) | ~attention
        assert (labels[forbidden] == IGNORE_INDEX).all()
        assert torch.equal(masked[forbidden], ids[forbidden])
        assert (labels[~forbidden] != IGNORE_INDEX).all(), "with p = 1 every ordinary token is selected"


def test_padding_excluded_by_attention_mask_alone():
    ids = torch.full((2, 6), 7)
    attention = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    _, labels = mask_tokens(ids, V, MASK, attention_mask=attention, mlm_probability=1.0)
    assert (labels[0, 3:] == IGNORE_INDEX).all() and (labels[0, :3] == 7).all() and (labels[1] == 7).all()


def test_probability_zero_selects_nothing():
    ids = torch.randint(5, V, (8, 16))
    masked, labels = mask_tokens(ids, V, MASK, mlm_probability=0.0)
    assert torch.equal(masked, ids) and (labels == IGNORE_INDEX).all()


def test_generator_makes_it_reproducible():
    ids = torch.randint(5, V, (16, 32), generator=torch.Generator().manual_seed(0))
    a = mask_tokens(ids, V, MASK, generator=torch.Generator().manual_seed(7))
    b = mask_tokens(ids, V, MASK, generator=torch.Generator().manual_seed(7))
    c = mask_tokens(ids, V, MASK, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_input_is_not_modified():
    ids = torch.randint(5, V, (4, 10))
    before = ids.clone()
    mask_tokens(ids, V, MASK, mlm_probability=1.0)
    assert torch.equal(ids, before)


def test_whole_word_masking_is_consistent_and_has_the_right_rate():
    """VL-BERT masks whole words (jackroos/VL-BERT pretrain/data/datasets/conceptual_captions.py
    random_word_wwm; Su et al. 2020, section 3.3): 15% of the words, all pieces of a chosen word,
    every piece a target (docs/pitfalls.md, "VL-BERT's text-only corpus and whole-word masking")."""
    g = torch.Generator().manual_seed(3)
    B, W = 200, 60  # 200 sequences of 60 words, each word 1-3 pieces
    rows_ids, rows_words = [], []
    for _ in range(B):
        sizes = torch.randint(1, 4, (W,), generator=g)
        words = torch.repeat_interleave(torch.arange(W), sizes)
        rows_words.append(torch.cat([torch.tensor([-1]), words, torch.tensor([-1])]))
        rows_ids.append(torch.cat([torch.tensor([2]), torch.randint(5, V, (len(words),), generator=g), torch.tensor([3])]))
    T = max(len(r) for r in rows_ids)
    ids = torch.zeros(B, T, dtype=torch.long)
    wid = torch.full((B, T), -1)
    for i, (r, w) in enumerate(zip(rows_ids, rows_words)):
        ids[i, : len(r)], wid[i, : len(w)] = r, w
    masked, labels = mask_tokens(ids, V, MASK, special_token_ids=SPECIALS, whole_word_ids=wid,
                                 generator=torch.Generator().manual_seed(0))
    sel = labels != IGNORE_INDEX
    # one key per (row, word): count its pieces and its selected pieces
    inside = wid >= 0
    key = (torch.arange(B)[:, None] * W + wid)[inside]
    pieces = torch.bincount(key, minlength=B * W)
    chosen = torch.bincount(key, weights=sel[inside].float(), minlength=B * W).long()
    assert torch.all((chosen == 0) | (chosen == pieces)), "a word is never partly selected"
    assert (pieces > 1).sum() > 5000, "the test has many multi-piece words"
    n_words, n_selected_words = B * W, int((chosen > 0).sum())
    assert abs(n_selected_words / n_words - 0.15) < 4 * _sigma(0.15, n_words)
    assert not sel[wid < 0].any(), "positions outside words ([CLS], [SEP], padding) are never selected"
    assert torch.equal(labels[sel], ids[sel])


def test_apply_mask_decisions_by_hand():
    ids = torch.tensor([[10, 11, 12, 13, 14, 15]])
    selected = torch.tensor([[True, True, True, True, True, False]])
    u = torch.tensor([[0.0, 0.79, 0.8, 0.89, 0.95, 0.1]])
    rnd = torch.full((1, 6), 50)
    out = apply_mask_decisions(ids, selected, u, rnd, mask_token_id=4)
    assert out.tolist() == [[4, 4, 50, 50, 14, 15]]
    assert ids.tolist() == [[10, 11, 12, 13, 14, 15]]


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_bad_probability_raises(p):
    with pytest.raises(ValueError, match="mlm_probability"):
        mask_tokens(torch.ones(2, 3, dtype=torch.long), V, MASK, mlm_probability=p)


def test_bad_inputs_raise():
    ids = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="attention_mask"):
        mask_tokens(ids, V, MASK, attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="special_tokens_mask"):
        mask_tokens(ids, V, MASK, special_tokens_mask=torch.ones(3, 3))
    with pytest.raises(ValueError, match="whole_word_ids"):
        mask_tokens(ids, V, MASK, whole_word_ids=torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        mask_tokens(ids.float(), V, MASK)
    with pytest.raises(ValueError, match="mask_token_id"):
        mask_tokens(ids, V, V)
    with pytest.raises(ValueError, match="vocab_size"):
        mask_tokens(ids * 5000, V, MASK)
    with pytest.raises(ValueError, match="<= 1"):
        mask_tokens(ids, V, MASK, mask_ratio=0.8, random_ratio=0.3)
    with pytest.raises(ValueError, match="shape"):
        apply_mask_decisions(ids, torch.ones(2, 2, dtype=torch.bool), torch.rand(2, 3), ids, 4)
