"""Sparse (local) representations: one-hot vectors, bags of words and bags of n-grams.

A sentence of n tokens with ids ``i_1 .. i_n`` over a vocabulary V becomes the one-hot matrix
``X = [x_1 ... x_n]^T`` of shape (n, |V|), where row t is 1 at column ``i_t`` and 0 elsewhere.
Summing the rows gives the bag of words (a count per vocabulary entry, order forgotten); counting
runs of n consecutive tokens gives a bag of n-grams, which keeps a little local order.
Reference: Jurafsky & Martin, *Speech and Language Processing* (3rd ed. draft), chapters 4 and 6.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["one_hot", "bag_of_words", "ngrams", "bag_of_ngrams", "document_term_matrix", "cosine_similarity_matrix"]


def _as_ids(ids, name: str = "ids") -> Tensor:
    if isinstance(ids, Tensor):
        t = ids
    else:
        ids = list(ids)
        t = torch.as_tensor(ids) if ids else torch.zeros(0, dtype=torch.long)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer ids, got dtype {t.dtype}")
    if t.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of ids (n,), got shape {tuple(t.shape)}")
    return t.long()


def one_hot(ids, vocab_size: int) -> Tensor:
    """The one-hot matrix of a token sequence.

    Args:
        ids: (n,) integer token ids (tensor or list).
        vocab_size: |V|, the number of columns.

    Returns:
        (n, |V|) float32 matrix X with ``X[t, ids[t]] = 1`` and zeros elsewhere.

    Raises:
        ValueError: if ``vocab_size < 1``, ``ids`` is not 1-D integer, or an id is outside ``[0, vocab_size)``.
    """
    if int(vocab_size) < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    t = _as_ids(ids)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= vocab_size):
        raise ValueError(f"ids must lie in [0, {vocab_size}), got min {int(t.min())} and max {int(t.max())}")
    x = torch.zeros(t.numel(), int(vocab_size))
    x[torch.arange(t.numel()), t] = 1.0
    return x


def bag_of_words(ids, vocab_size: int) -> Tensor:
    """The bag-of-words vector: how often each vocabulary entry occurs, i.e. ``one_hot(ids).sum(0)``.

    Args:
        ids: (n,) integer token ids.
        vocab_size: |V|.

    Returns:
        (|V|,) float32 counts.

    Raises:
        ValueError: as :func:`one_hot`.
    """
    return one_hot(ids, vocab_size).sum(dim=0)


def ngrams(tokens: Sequence[str], n: int) -> list[str]:
    """The n-grams of a token list, in order, each joined by single spaces (scikit-learn's convention).

    ``ngrams(["a", "b", "c"], 2) == ["a b", "b c"]``; a list shorter than n has no n-gram.

    Raises:
        ValueError: if ``n < 1`` or ``tokens`` is a plain string.
    """
    if isinstance(tokens, str):
        raise ValueError("ngrams expects a list of tokens, got a string; tokenize it first")
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tokens = list(tokens)
    return [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _check_range(ngram_range: tuple[int, int]) -> tuple[int, int]:
    lo, hi = ngram_range
    if lo < 1 or hi < lo:
        raise ValueError(f"ngram_range must be (min_n, max_n) with 1 <= min_n <= max_n, got {ngram_range}")
    return int(lo), int(hi)


def bag_of_ngrams(tokens: Sequence[str], ngram_range: tuple[int, int] = (1, 1)) -> Counter:
    """Count the n-grams of one token list for every n in ``ngram_range`` (inclusive).

    Returns:
        A ``Counter`` mapping each n-gram string to its count.

    Raises:
        ValueError: on a bad ``ngram_range`` or a plain-string ``tokens``.
    """
    lo, hi = _check_range(ngram_range)
    bag: Counter = Counter()
    for n in range(lo, hi + 1):
        bag.update(ngrams(tokens, n))
    return bag


def document_term_matrix(
    docs: Sequence[Sequence[str]], ngram_range: tuple[int, int] = (1, 1), features: Sequence[str] | None = None
) -> tuple[Tensor, list[str]]:
    """Bags of n-grams of several documents stacked into a (D, F) count matrix.

    Columns are the n-grams sorted alphabetically (as scikit-learn's ``CountVectorizer`` orders them),
    unless ``features`` is given, in which case n-grams outside it are dropped.

    Args:
        docs: D token lists.
        ngram_range: (min_n, max_n), inclusive.
        features: a fixed list of F column names, or ``None`` to use every n-gram seen.

    Returns:
        ``(counts, features)``: a (D, F) int64 tensor and the F column names.

    Raises:
        ValueError: if ``docs`` is empty, a document is a plain string, or no n-gram is found.
    """
    if isinstance(docs, str) or len(docs) == 0:
        raise ValueError("docs must be a non-empty list of token lists")
    bags = [bag_of_ngrams(d, ngram_range) for d in docs]
    if features is None:
        features = sorted(set().union(*bags))
    features = list(features)
    if not features:
        raise ValueError("no n-gram found in docs: every document is shorter than min_n (or empty)")
    col = {f: j for j, f in enumerate(features)}
    m = torch.zeros(len(docs), len(features), dtype=torch.long)
    for i, bag in enumerate(bags):
        for g, c in bag.items():
            j = col.get(g)
            if j is not None:
                m[i, j] = c
    return m, features


def cosine_similarity_matrix(a: Tensor, b: Tensor | None = None, eps: float = 1e-12) -> Tensor:
    """Cosine similarity between the rows of ``a`` (N, D) and of ``b`` (M, D; default ``a``): an (N, M) matrix.

    Raises:
        ValueError: if the inputs are not 2-D or their widths differ.
    """
    b = a if b is None else b
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (N, D) and (M, D) matrices, got {tuple(a.shape)} and {tuple(b.shape)}")
    a = a.float() / a.float().norm(dim=1, keepdim=True).clamp_min(eps)
    b = b.float() / b.float().norm(dim=1, keepdim=True).clamp_min(eps)
    return a @ b.T
