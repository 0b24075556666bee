"""Skip-gram with negative sampling (SGNS), written by hand in PyTorch.

Every word w has two vectors: ``v_w`` when it is the centre word and ``u_w`` when it is a context
word. For a (centre c, context o) pair seen in the corpus and K "negative" words n_1..n_K drawn from
the noise distribution P_n(w) proportional to count(w)^0.75, SGNS minimises

    L = -log sigma(u_o . v_c) - sum_k log sigma(-u_{n_k} . v_c)

(Mikolov et al. 2013, "Distributed Representations of Words and Phrases and their
Compositionality", section 2.2, equation 4; the 0.75 power and the frequent-word subsampling of
section 2.3 follow the original ``word2vec.c``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_course.text.bags import _as_ids, cosine_similarity_matrix

__all__ = [
    "skipgram_pairs",
    "corpus_skipgram_pairs",
    "noise_distribution",
    "subsample_keep_probability",
    "sgns_loss",
    "SkipGramNS",
    "nearest_neighbours",
]


def skipgram_pairs(ids, window: int) -> Tensor:
    """All (centre, context) pairs of one token sequence within a symmetric window.

    Position i is paired with every position j != i with ``|i - j| <= window``. Pairs are ordered by
    centre position, then by context position.

    Args:
        ids: (n,) token ids of one sentence.
        window: the largest distance between centre and context (>= 1).

    Returns:
        (P, 2) int64 tensor of ``(centre_id, context_id)`` rows; P = 0 for a sequence shorter than 2.

    Raises:
        ValueError: if ``window < 1`` or ``ids`` is not a 1-D integer sequence.
    """
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    t = _as_ids(ids)
    n = t.numel()
    centres, contexts = [], []
    for off in range(-window, window + 1):
        if off == 0:
            continue
        lo = max(0, -off)
        pos = torch.arange(lo, max(lo, n - max(0, off)))  # centre positions i with i + off inside
        centres.append(pos)
        contexts.append(pos + off)
    c_pos = torch.cat(centres)
    o_pos = torch.cat(contexts)
    order = torch.argsort(c_pos * (2 * window + 1) + (o_pos - c_pos + window))  # by centre, then context
    return torch.stack([t[c_pos[order]], t[o_pos[order]]], dim=1)


def corpus_skipgram_pairs(sentences: Sequence, window: int) -> Tensor:
    """:func:`skipgram_pairs` of every sentence, concatenated (pairs never cross a sentence boundary).

    Computed on the whole corpus at once: the ids are laid end to end with a sentence number per
    position, and a pair is kept when both positions carry the same number. The rows come out
    grouped by offset (not sentence by sentence); the multiset of pairs is the same.

    Returns:
        (P, 2) int64 tensor.

    Raises:
        ValueError: on an empty list of sentences or a bad ``window``.
    """
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    if len(sentences) == 0:
        raise ValueError("sentences is empty")
    seqs = [_as_ids(s) for s in sentences]
    flat = torch.cat(seqs)  # (N,)
    sent = torch.repeat_interleave(torch.arange(len(seqs)), torch.as_tensor([len(s) for s in seqs]))  # (N,)
    n = flat.numel()
    out = []
    for off in range(-window, window + 1):
        if off == 0 or abs(off) >= n:
            continue
        lo, hi = max(0, -off), n - max(0, off)
        pos = torch.arange(lo, hi)
        same = sent[pos] == sent[pos + off]
        out.append(torch.stack([flat[pos[same]], flat[pos[same] + off]], dim=1))
    return torch.cat(out) if out else torch.zeros(0, 2, dtype=torch.long)


def noise_distribution(counts, power: float = 0.75) -> Tensor:
    """The negative-sampling distribution ``P_n(w) = count(w)^power / sum_w' count(w')^power``.

    Args:
        counts: (V,) non-negative word counts (ids without counts, e.g. specials, get 0).
        power: 0.75 in word2vec; 1 is the unigram distribution, 0 the uniform one over seen words.

    Returns:
        (V,) float probabilities summing to 1.

    Raises:
        ValueError: on a negative count, a non 1-D input, or counts that are all zero.
    """
    c = torch.as_tensor(counts, dtype=torch.float64)
    if c.ndim != 1 or (c < 0).any():
        raise ValueError("counts must be a 1-D vector of non-negative numbers")
    if c.sum() <= 0:
        raise ValueError("counts are all zero: no word to sample")
    p = torch.where(c > 0, c.pow(power), torch.zeros_like(c))
    return (p / p.sum()).float()


def subsample_keep_probability(counts, threshold: float = 1e-3) -> Tensor:
    """Probability of keeping each occurrence of a word when frequent words are subsampled.

    ``word2vec.c``'s formula, with f the word's relative frequency and t the threshold:
    ``keep = (sqrt(f / t) + 1) * t / f``, clipped to 1 (so words rarer than about t are always kept).

    Returns:
        (V,) float probabilities in (0, 1] (1 for ids with a zero count).

    Raises:
        ValueError: on a negative count or ``threshold <= 0``.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    c = torch.as_tensor(counts, dtype=torch.float64)
    if c.ndim != 1 or (c < 0).any() or c.sum() <= 0:
        raise ValueError("counts must be a 1-D vector of non-negative numbers, not all zero")
    f = c / c.sum()
    keep = torch.where(f > 0, ((f / threshold).sqrt() + 1) * threshold / f.clamp_min(1e-300), torch.ones_like(f))
    return keep.clamp(max=1.0).float()


def sgns_loss(centre: Tensor, context: Tensor, negatives: Tensor) -> Tensor:
    """The SGNS loss averaged over a batch of pairs.

    Args:
        centre: (B, D) centre vectors v_c.
        context: (B, D) context vectors u_o of the observed pairs.
        negatives: (B, K, D) context vectors of K noise words per pair.

    Returns:
        A scalar: ``mean_b [-log sigma(u_o . v_c) - sum_k log sigma(-u_k . v_c)]``.

    Raises:
        ValueError: if the shapes do not fit (B, D), (B, D), (B, K, D).
    """
    if centre.ndim != 2 or context.shape != centre.shape:
        raise ValueError(f"centre and context must both be (B, D), got {tuple(centre.shape)} and {tuple(context.shape)}")
    if negatives.ndim != 3 or negatives.shape[0] != centre.shape[0] or negatives.shape[2] != centre.shape[1]:
        raise ValueError(f"negatives must be (B, K, D) = ({centre.shape[0]}, K, {centre.shape[1]}), got {tuple(negatives.shape)}")
    pos = F.logsigmoid((centre * context).sum(-1))  # (B,)
    neg_scores = torch.bmm(negatives, centre.unsqueeze(-1)).squeeze(-1)  # (B, K)
    neg = F.logsigmoid(-neg_scores).sum(-1)  # (B,)
    return -(pos + neg).mean()


class SkipGramNS(nn.Module):
    """Two embedding tables, centre (``v``) and context (``u``), trained with :func:`sgns_loss`.

    Initialised as in ``word2vec.c``: centre vectors uniform in [-0.5/D, 0.5/D], context vectors 0.

    Args:
        vocab_size: V. dim: D.

    Raises:
        ValueError: if ``vocab_size`` or ``dim`` is < 1.
    """

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        if vocab_size < 1 or dim < 1:
            raise ValueError(f"vocab_size and dim must be >= 1, got {vocab_size} and {dim}")
        self.centre = nn.Embedding(vocab_size, dim)
        self.context = nn.Embedding(vocab_size, dim)
        nn.init.uniform_(self.centre.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.context.weight)

    def forward(self, centre_ids: Tensor, context_ids: Tensor, negative_ids: Tensor) -> Tensor:
        """Loss of a batch: ``centre_ids`` (B,), ``context_ids`` (B,), ``negative_ids`` (B, K) -> scalar."""
        return sgns_loss(self.centre(centre_ids), self.context(context_ids), self.context(negative_ids))

    def vectors(self) -> Tensor:
        """The learned word vectors (the centre table), (V, D), detached."""
        return self.centre.weight.detach()


def nearest_neighbours(vectors: Tensor, queries, k: int = 5, exclude=None) -> tuple[Tensor, Tensor]:
    """The k rows of ``vectors`` with the highest cosine similarity to each query row (itself excluded).

    Args:
        vectors: (V, D) embedding table.
        queries: (Q,) row ids.
        k: neighbours per query.
        exclude: optional ids never returned (e.g. special tokens).

    Returns:
        ``(similarities, ids)``, both (Q, k), best first.

    Raises:
        ValueError: if ``vectors`` is not 2-D, k is not in [1, V - 1], or a query id is out of range.
    """
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (V, D), got {tuple(vectors.shape)}")
    q = _as_ids(queries, "queries")
    V = vectors.shape[0]
    if not 1 <= k <= V - 1:
        raise ValueError(f"k must be in [1, {V - 1}], got {k}")
    if q.numel() and (int(q.min()) < 0 or int(q.max()) >= V):
        raise ValueError(f"query ids must lie in [0, {V})")
    sims = cosine_similarity_matrix(vectors[q], vectors)  # (Q, V)
    sims[torch.arange(q.numel()), q] = -float("inf")
    if exclude is not None:
        sims[:, _as_ids(exclude, "exclude")] = -float("inf")
    return sims.topk(k, dim=1)
