"""Masked language modeling (MLM) corruption of token ids, as in BERT.

Each real token is *selected* with probability ``mlm_probability`` (15%). A selected token is
replaced by ``[MASK]`` with probability 0.8, by a random token with probability 0.1, and kept
unchanged with probability 0.1; the model must predict the original token at every selected
position (Devlin et al. 2019, "BERT", section 3.1 and appendix A.1). Special tokens ([CLS], [SEP],
[PAD], ...) and padding are never selected. Labels hold the original id at selected positions and
``IGNORE_INDEX`` (-100, the default ``ignore_index`` of ``torch.nn.CrossEntropyLoss``) elsewhere.

Whole-word masking (the later BERT release's option, ``create_pretraining_data.py``
``--do_whole_word_mask``) selects *words*: when a word is selected, all its word pieces are; the
80/10/10 choice is then made for each piece, as in the original script.

The same function serves the vision-language models, which mask the text stream the same way.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

from vlp_course.pretraining.losses import IGNORE_INDEX  # -100: no target here (the one definition)

__all__ = ["IGNORE_INDEX", "mask_tokens", "apply_mask_decisions", "mask_caption_tokens"]



def _check_ratio(name: str, p: float) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    return p


def apply_mask_decisions(
    input_ids: Tensor,
    selected: Tensor,
    uniform: Tensor,
    random_ids: Tensor,
    mask_token_id: int,
    mask_ratio: float = 0.8,
    random_ratio: float = 0.1,
) -> Tensor:
    """The 80/10/10 step, given the random draws: where ``selected``, use ``uniform`` to choose.

    For a selected position with draw u: ``u < mask_ratio`` -> ``mask_token_id``;
    ``mask_ratio <= u < mask_ratio + random_ratio`` -> ``random_ids`` at that position; otherwise the
    token is kept. Unselected positions are always kept.

    Args:
        input_ids: (...) int64 token ids, any shape.
        selected: (...) bool, the positions chosen for prediction.
        uniform: (...) floats in [0, 1), one draw per position.
        random_ids: (...) int64 replacement ids, one per position.
        mask_token_id: the id of ``[MASK]``.

    Returns:
        (...) int64 corrupted ids (a new tensor).

    Raises:
        ValueError: if the shapes differ or the ratios are not probabilities summing to at most 1.
    """
    for name, t in (("selected", selected), ("uniform", uniform), ("random_ids", random_ids)):
        if t.shape != input_ids.shape:
            raise ValueError(f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(t.shape)}")
    mask_ratio, random_ratio = _check_ratio("mask_ratio", mask_ratio), _check_ratio("random_ratio", random_ratio)
    if mask_ratio + random_ratio > 1.0 + 1e-9:
        raise ValueError(f"mask_ratio + random_ratio must be <= 1, got {mask_ratio + random_ratio}")
    selected = selected.bool()
    to_mask = selected & (uniform < mask_ratio)
    to_random = selected & (uniform >= mask_ratio) & (uniform < mask_ratio + random_ratio)
    out = input_ids.clone()
    out[to_mask] = int(mask_token_id)
    out[to_random] = random_ids[to_random].to(out.dtype)
    return out


def mask_tokens(
    input_ids: Tensor,
    vocab_size: int,
    mask_token_id: int,
    *,
    special_token_ids: Iterable[int] | None = None,
    special_tokens_mask: Tensor | None = None,
    attention_mask: Tensor | None = None,
    mlm_probability: float = 0.15,
    mask_ratio: float = 0.8,
    random_ratio: float = 0.1,
    generator: torch.Generator | None = None,
    whole_word_ids: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's masked-language-modeling corruption of a batch of token ids.

    Args:
        input_ids: (B, T) (or any shape) int64 token ids.
        vocab_size: V; random replacements are drawn uniformly from the ids in ``[0, V)`` that are not
            in ``special_token_ids``.
        mask_token_id: the id of ``[MASK]`` (103 in bert-base-uncased).
        special_token_ids: ids never selected (e.g. [CLS], [SEP], [PAD]) and never drawn as replacements.
        special_tokens_mask: (B, T) bool/0-1, True where a position must never be selected (as returned
            by a Hugging Face tokenizer with ``return_special_tokens_mask=True``).
        attention_mask: (B, T) bool/0-1, 0 on padding; padding is never selected.
        mlm_probability: the probability to select a token (or, with ``whole_word_ids``, a word).
        mask_ratio, random_ratio: the shares of selected tokens set to [MASK] and to a random token;
            the rest (1 - both) is kept.
        generator: a ``torch.Generator`` for reproducible draws.
        whole_word_ids: (B, T) int64 word index of each token inside its sequence (the word pieces of
            one word share an index; -1 for positions that belong to no word). When given, words are
            selected, and all pieces of a selected word are predicted.

    Returns:
        ``(masked_ids, labels)``, both like ``input_ids``: the corrupted ids, and the original id at
        selected positions with ``IGNORE_INDEX`` (-100) elsewhere.

    Raises:
        ValueError: if a probability is outside [0, 1] (or mask_ratio + random_ratio > 1), an optional
            tensor's shape differs from ``input_ids``, ``input_ids`` is not an integer tensor, or
            ``mask_token_id`` is outside ``[0, vocab_size)``.
    """
    if not isinstance(input_ids, Tensor) or input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise ValueError("input_ids must be an integer tensor of token ids")
    p = _check_ratio("mlm_probability", mlm_probability)
    mask_ratio, random_ratio = _check_ratio("mask_ratio", mask_ratio), _check_ratio("random_ratio", random_ratio)
    if mask_ratio + random_ratio > 1.0 + 1e-9:
        raise ValueError(f"mask_ratio + random_ratio must be <= 1, got {mask_ratio + random_ratio}")
    if int(vocab_size) < 1 or not 0 <= int(mask_token_id) < int(vocab_size):
        raise ValueError(f"mask_token_id must lie in [0, vocab_size={vocab_size}), got {mask_token_id}")
    for name, t in (("special_tokens_mask", special_tokens_mask), ("attention_mask", attention_mask), ("whole_word_ids", whole_word_ids)):
        if t is not None and t.shape != input_ids.shape:
            raise ValueError(f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(t.shape)}")
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab_size):
        raise ValueError(f"input_ids must lie in [0, vocab_size={vocab_size})")
    dev = input_ids.device

    # 1. which positions may be selected at all
    allowed = torch.ones_like(input_ids, dtype=torch.bool)
    specials = sorted({int(i) for i in special_token_ids}) if special_token_ids is not None else []
    if specials:
        allowed &= ~torch.isin(input_ids, torch.as_tensor(specials, device=dev))
    if special_tokens_mask is not None:
        allowed &= ~special_tokens_mask.bool()
    if attention_mask is not None:
        allowed &= attention_mask.bool()

    # 2. select tokens (or whole words) with probability p
    if whole_word_ids is None:
        selected = torch.rand(input_ids.shape, generator=generator, device=dev) < p
    else:
        wid = whole_word_ids.long()
        flat = wid.reshape(-1, wid.shape[-1]) if wid.ndim > 0 else wid.reshape(1, 1)  # (B, T)
        n_words = int(flat.max()) + 1 if flat.numel() else 0
        word_selected = torch.rand(flat.shape[0], max(n_words, 1), generator=generator, device=dev) < p  # (B, W)
        selected = torch.gather(word_selected, 1, flat.clamp_min(0)) & (flat >= 0)  # (B, T)
        selected = selected.reshape(input_ids.shape)
    selected &= allowed

    # 3. the 80/10/10 decision, per token
    uniform = torch.rand(input_ids.shape, generator=generator, device=dev)
    candidates = torch.arange(int(vocab_size), device=dev)
    if specials:
        candidates = candidates[~torch.isin(candidates, torch.as_tensor(specials, device=dev))]
    pick = torch.randint(0, candidates.numel(), input_ids.shape, generator=generator, device=dev)
    random_ids = candidates[pick]
    masked = apply_mask_decisions(input_ids, selected, uniform, random_ids, mask_token_id, mask_ratio, random_ratio)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return masked, labels


def mask_caption_tokens(
    input_ids: Tensor,
    attention_mask: Tensor,
    vocab_size: int,
    mask_token_id: int,
    *,
    special_token_ids: Iterable[int] = (),
    mlm_probability: float = 0.15,
    max_predictions: int = 3,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Unified VLP's masking for caption generation: a fixed number of caption tokens per caption.

    For each row ``[CLS] w_1 … w_n [SEP]`` (then padding) the number of predictions is
    ``min(max_predictions, max(1, round(n * mlm_probability)))``, chosen uniformly among the
    positions ``w_1 … w_n`` **and the final [SEP]** (so the model learns where a caption ends;
    never [CLS] or padding); each chosen token becomes [MASK] with probability 0.8, a random token
    with 0.1, or stays (LuoweiZhou/VLP ``vlp/seq2seq_loader.py``, ``Preprocess4Seq2seq.__call__``,
    with ``--mask_prob 0.15 --max_pred 3`` for COCO captioning in its ``run_img2txt_dist.py``).
    Unlike :func:`mask_tokens`, every caption gets at least one target.

    Args:
        input_ids: (B, T) int64 ``[CLS] caption [SEP]`` rows; attention_mask: (B, T), 0 on padding.
        vocab_size: random replacements are drawn from ``[0, vocab_size)`` minus ``special_token_ids``.
        mask_token_id: the id of [MASK].
        special_token_ids: ids never drawn as random replacements.
        mlm_probability, max_predictions: the share of the n words to predict, and its cap.
        generator: for reproducible draws.

    Returns:
        ``(masked_ids, labels)`` (B, T): labels hold the original id at the chosen positions, -100 elsewhere.

    Raises:
        ValueError: ids not integer (B, T) in the vocabulary, a mask of another shape, a row whose
            first position is padding or that has no token after [CLS], ``max_predictions`` < 1, or a
            probability outside [0, 1].
    """
    if not isinstance(input_ids, Tensor) or input_ids.ndim != 2 or input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids must be an integer (B, T) tensor, got {getattr(input_ids, 'shape', type(input_ids).__name__)}")
    if not isinstance(attention_mask, Tensor) or attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}")
    p = _check_ratio("mlm_probability", mlm_probability)
    if int(max_predictions) < 1:
        raise ValueError(f"max_predictions must be >= 1, got {max_predictions}")
    if not 0 <= int(mask_token_id) < int(vocab_size):
        raise ValueError(f"mask_token_id must lie in [0, vocab_size={vocab_size}), got {mask_token_id}")
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab_size):
        raise ValueError(f"input_ids must lie in [0, vocab_size={vocab_size})")
    real = attention_mask != 0  # (B, T)
    lengths = real.sum(dim=1)  # (B,) [CLS] + n words + [SEP]
    if bool((~real[:, 0]).any()) or bool((lengths < 2).any()):
        raise ValueError("every row must be [CLS] ... [SEP] with [CLS] real and at least one token after it")
    dev = input_ids.device
    B, T = input_ids.shape

    # 1. candidates: every real position but [CLS] (the words and the final [SEP])
    candidate = real.clone()
    candidate[:, 0] = False  # (B, T)
    n_words = (lengths - 2).clamp_min(0)  # (B,) words, [CLS] and [SEP] not counted
    n_pred = torch.clamp(torch.round(n_words.double() * p).long(), min=1, max=int(max_predictions))  # (B,)

    # 2. choose n_pred of the candidates uniformly: the n_pred smallest random keys
    keys = torch.rand(B, T, generator=generator, device=dev).masked_fill(~candidate, 2.0)  # (B, T)
    rank = keys.argsort(dim=1).argsort(dim=1)  # (B, T) each position's rank among its row's keys
    selected = candidate & (rank < n_pred[:, None])  # (B, T)

    # 3. the 80/10/10 decision
    uniform = torch.rand(B, T, generator=generator, device=dev)
    specials = sorted({int(i) for i in special_token_ids})
    pool = torch.arange(int(vocab_size), device=dev)
    if specials:
        pool = pool[~torch.isin(pool, torch.as_tensor(specials, device=dev))]
    random_ids = pool[torch.randint(0, pool.numel(), (B, T), generator=generator, device=dev)]
    masked = apply_mask_decisions(input_ids, selected, uniform, random_ids, mask_token_id)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return masked, labels
