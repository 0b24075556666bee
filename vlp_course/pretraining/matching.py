"""Image-text matching (ITM): build negative pairs by swapping captions, and keep label polarity explicit.

With probability ``p_negative`` (0.5 in ViLBERT, LXMERT and VisualBERT) an image's caption is
replaced by a caption of *another* image; the model predicts whether the pair belongs together.
Everywhere in this package the label is ``is_matched``: **1 = the caption belongs to the image**,
0 = it was swapped (LXMERT's and VisualBERT's polarity). ViLBERT's original code uses the opposite
(``is_next``: 1 = random caption; vilbert-multi-task ``BertPreprocessBatch.random_cap``), so a
ViLBERT checkpoint converts at its boundary with :func:`to_vilbert_is_next` /
:func:`from_vilbert_is_next` (transformers issue 7266 shows how easily the polarity is
misread; docs/pitfalls.md, "Which way round the matching label is").

Captions are row-aligned with images: caption i belongs to image i. A negative for image i is a
caption j whose image id differs (``image_ids``: two rows that show the same image are not
negatives of each other). Hard negatives (e.g. the most similar captions under some model) can be
supplied by the caller per image; they are used with probability ``hard_prob`` for each negative.

Whether the masked-token loss of a mismatched pair counts is a per-model choice: LXMERT counts it
(airsplay/lxmert ``src/pretrain/lxmert_pretrain.py``; its author explains why in lxmert issue 51),
ViLBERT's pretraining command (``--objective 1`` in vilbert-multi-task ``train_concap.py``) does not
(docs/pitfalls.md, "Masked words of mismatched pairs").
:func:`drop_mismatched_labels` applies the ViLBERT choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vlp_course.pretraining.losses import IGNORE_INDEX  # -100: no target here (the one definition)

__all__ = [
    "IGNORE_INDEX",
    "MLM_ON_MISMATCHED",
    "Matching",
    "matching_from_uniforms",
    "sample_matching",
    "to_vilbert_is_next",
    "from_vilbert_is_next",
    "drop_mismatched_labels",
]


#: Whether each original computes the masked losses on mismatched pairs (lxmert issue 51;
#: vilbert-multi-task ``train_concap.py --objective 1``).
MLM_ON_MISMATCHED = {"lxmert": True, "vilbert": False}


@dataclass
class Matching:
    """A sampled set of pairs.

    Attributes:
        caption_index: (B,) int64, the row of the caption paired with image i (i itself when matched).
        is_matched: (B,) int64, 1 = the caption belongs to the image, 0 = swapped.
        is_hard: (B,) bool, True where the negative came from the hard-negative list.
    """

    caption_index: Tensor
    is_matched: Tensor
    is_hard: Tensor


def _check_p(name: str, p: float) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    return p


def matching_from_uniforms(
    u_swap: Tensor,
    u_pick: Tensor,
    p_negative: float = 0.5,
    image_ids: Tensor | None = None,
    hard_negatives: Tensor | None = None,
    u_hard: Tensor | None = None,
    hard_prob: float = 1.0,
) -> Matching:
    """The sampler's decisions given the random draws (deterministic; what the exercise asks for).

    Row i is a negative when ``u_swap[i] < p_negative``. Its caption is then the k-th candidate in
    increasing row order, ``k = floor(u_pick[i] * n_i)``, where the candidates are the n_i rows j
    with ``image_ids[j] != image_ids[i]`` (default ids: every j != i), or, when the row has hard
    negatives and ``u_hard[i] < hard_prob``, the valid entries of ``hard_negatives[i]`` in their order.

    Args:
        u_swap, u_pick: (B,) uniform draws in [0, 1).
        p_negative: the probability that a pair is a negative.
        image_ids: (B,) int64 id of each row's image (rows with equal ids are never negatives of each other).
        hard_negatives: (B, K) int64 caption rows, -1 = no candidate; entries must be rows of other images.
        u_hard: (B,) uniform draws deciding hard vs random (required with ``hard_negatives``).
        hard_prob: the probability to take a hard negative when the row has one.

    Returns:
        A :class:`Matching`.

    Raises:
        ValueError: if a probability is outside [0, 1], shapes differ from (B,) / (B, K), a
            negative row has no candidate (e.g. B = 1), or a hard negative shows the same image.
    """
    p = _check_p("p_negative", p_negative)
    hp = _check_p("hard_prob", hard_prob)
    if u_swap.ndim != 1:
        raise ValueError(f"u_swap must have shape (B,), got {tuple(u_swap.shape)}")
    B = u_swap.shape[0]
    dev = u_swap.device
    if tuple(u_pick.shape) != (B,):
        raise ValueError(f"u_pick must have shape (B,) = ({B},), got {tuple(u_pick.shape)}")
    ids = torch.arange(B, device=dev) if image_ids is None else image_ids.to(dev)
    if tuple(ids.shape) != (B,):
        raise ValueError(f"image_ids must have shape (B,) = ({B},), got {tuple(ids.shape)}")
    negative = u_swap < p  # (B,)
    rows = torch.arange(B, device=dev)
    if image_ids is None:
        # candidates are every j != i: the k-th of them is k, or k + 1 once k reaches i
        if bool(negative.any()) and B < 2:
            raise ValueError("a negative pair needs a caption of another image, but the batch holds one image")
        k = (u_pick.clamp(0, 1 - 1e-7) * max(B - 1, 1)).floor().long()  # (B,)
        pick_random = k + (k >= rows).long()  # (B,)
    else:
        other = ids[None, :] != ids[:, None]  # (B, B): candidate j for row i
        n_other = other.sum(1)  # (B,)
        if bool((negative & (n_other == 0)).any()):
            raise ValueError("a negative pair needs a caption of another image, but some row has none (all rows show one image?)")
        # k-th candidate in row order: the j whose rank among i's candidates equals k
        k = (u_pick.clamp(0, 1 - 1e-7) * n_other).floor().long()  # (B,)
        rank = other.long().cumsum(1) - 1  # (B, B)
        pick_random = ((rank == k[:, None]) & other).long().argmax(1)  # (B,)
    pick = pick_random
    is_hard = torch.zeros(B, dtype=torch.bool, device=dev)
    if hard_negatives is not None:
        if hard_negatives.ndim != 2 or hard_negatives.shape[0] != B:
            raise ValueError(f"hard_negatives must have shape (B, K) with B = {B}, got {tuple(hard_negatives.shape)}")
        if u_hard is None or tuple(u_hard.shape) != (B,):
            raise ValueError(f"hard negatives need u_hard of shape (B,) = ({B},)")
        hn = hard_negatives.to(dev).long()
        valid = hn >= 0  # (B, K)
        if bool((hn >= B).any()):
            raise ValueError(f"hard_negatives must be caption rows in [0, {B}) or -1, got max {int(hn.max())}")
        same = valid & (ids[hn.clamp(min=0)] == ids[:, None])
        if bool(same.any()):
            raise ValueError("a hard negative shows the same image as its row (its image id is equal)")
        n_hard = valid.sum(1)  # (B,)
        kh = (u_pick.clamp(0, 1 - 1e-7) * n_hard).floor().long()
        hrank = valid.long().cumsum(1) - 1
        slot = ((hrank == kh[:, None]) & valid).long().argmax(1)  # (B,)
        pick_hard = hn.gather(1, slot[:, None]).squeeze(1)
        use_hard = negative & (n_hard > 0) & (u_hard.to(dev) < hp)
        pick = torch.where(use_hard, pick_hard, pick_random)
        is_hard = use_hard
    caption_index = torch.where(negative, pick, rows)
    return Matching(caption_index=caption_index, is_matched=(~negative).long(), is_hard=is_hard)


def sample_matching(
    batch_size: int,
    *,
    p_negative: float = 0.5,
    image_ids: Tensor | None = None,
    hard_negatives: Tensor | None = None,
    hard_prob: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Matching:
    """Sample which rows keep their caption and which get another image's caption.

    Apply the result with ``captions[m.caption_index]`` (and the same for the caption's mask).
    See :func:`matching_from_uniforms` for the rule and the arguments.

    Raises:
        ValueError: see :func:`matching_from_uniforms`; also if ``batch_size`` < 1.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    u_swap = torch.rand(batch_size, generator=generator, device=device)
    u_pick = torch.rand(batch_size, generator=generator, device=device)
    u_hard = torch.rand(batch_size, generator=generator, device=device) if hard_negatives is not None else None
    return matching_from_uniforms(u_swap, u_pick, p_negative, image_ids, hard_negatives, u_hard, hard_prob)


def to_vilbert_is_next(is_matched: Tensor, ignore_index: int = IGNORE_INDEX, vilbert_ignore: int = -1) -> Tensor:
    """``is_matched`` (1 = belongs) -> ViLBERT's ``is_next`` (1 = random caption); ignore -100 -> -1.

    Raises:
        ValueError: on values other than 0, 1 and ``ignore_index``.
    """
    ok = (is_matched == 0) | (is_matched == 1) | (is_matched == ignore_index)
    if not bool(ok.all()):
        raise ValueError(f"is_matched must hold 0, 1 or {ignore_index}")
    return torch.where(is_matched == ignore_index, torch.full_like(is_matched, vilbert_ignore), 1 - is_matched)


def from_vilbert_is_next(is_next: Tensor, vilbert_ignore: int = -1, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """ViLBERT's ``is_next`` (1 = random caption; -1 ignore) -> ``is_matched`` (1 = belongs; -100 ignore).

    Raises:
        ValueError: on values other than 0, 1 and ``vilbert_ignore``.
    """
    ok = (is_next == 0) | (is_next == 1) | (is_next == vilbert_ignore)
    if not bool(ok.all()):
        raise ValueError(f"is_next must hold 0, 1 or {vilbert_ignore}")
    return torch.where(is_next == vilbert_ignore, torch.full_like(is_next, ignore_index), 1 - is_next)


def drop_mismatched_labels(labels: Tensor, is_matched: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Set the labels of mismatched rows to ``ignore_index`` (ViLBERT ``--objective 1``; lxmert issue 51).

    Args:
        labels: (B, ...) per-token or per-region labels. is_matched: (B,) 1/0.

    Raises:
        ValueError: if the batch sizes differ.
    """
    if is_matched.ndim != 1 or labels.shape[0] != is_matched.shape[0]:
        raise ValueError(f"is_matched must have shape (B,) with B = labels.shape[0] = {labels.shape[0]}, got {tuple(is_matched.shape)}")
    keep = (is_matched == 1).view(-1, *([1] * (labels.ndim - 1)))
    return torch.where(keep, labels, torch.full_like(labels, ignore_index))
