"""Sequence encoders: from a sentence of token vectors to one vector.

* :func:`mean_pool` / :class:`MeanEmbeddingClassifier` — the average of the word vectors (padding
  excluded). Order-blind: any permutation of the words gives the same vector.
* :class:`LSTMClassifier` — a (bidirectional) LSTM reads the words in order; its final hidden states
  summarise the sentence (Hochreiter & Schmidhuber 1997; ``torch.nn.LSTM``).
* :func:`pad_sequences` — ragged id lists to a (B, T) batch and its (B, T) mask.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["pad_sequences", "mean_pool", "MeanEmbeddingClassifier", "LSTMClassifier", "shuffle_tokens"]


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int = 0, max_len: int | None = None) -> tuple[Tensor, Tensor]:
    """Pad (right) or cut id lists to a common length.

    Args:
        seqs: B lists of ids.
        pad_id: the id written in padded positions.
        max_len: cut longer sequences to this length (``None``: the longest length).

    Returns:
        ``(ids, mask)``: (B, T) int64 ids and (B, T) bool mask, True on real tokens.

    Raises:
        ValueError: if ``seqs`` is empty, a sequence is empty, or ``max_len < 1``.
    """
    if len(seqs) == 0:
        raise ValueError("seqs is empty")
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    lengths = [len(s) for s in seqs]
    if min(lengths) == 0:
        raise ValueError(f"sequence {lengths.index(0)} is empty; drop empty sentences before padding")
    T = max(lengths) if max_len is None else min(max(lengths), max_len)
    ids = torch.full((len(seqs), T), int(pad_id), dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.bool)
    for i, s in enumerate(seqs):
        s = list(s)[:T]
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, : len(s)] = True
    return ids, mask


def mean_pool(vectors: Tensor, mask: Tensor) -> Tensor:
    """Average the token vectors of each sequence, ignoring padded positions.

    Args:
        vectors: (B, T, D) token vectors.
        mask: (B, T), 1/True on real tokens and 0/False on padding.

    Returns:
        (B, D): ``sum_t mask[b, t] * vectors[b, t] / sum_t mask[b, t]`` (a row with no real token gives 0).

    Raises:
        ValueError: if ``vectors`` is not 3-D or ``mask`` is not (B, T).
    """
    if vectors.ndim != 3:
        raise ValueError(f"vectors must be (B, T, D), got {tuple(vectors.shape)}")
    if mask.shape != vectors.shape[:2]:
        raise ValueError(f"mask must be (B, T) = {tuple(vectors.shape[:2])}, got {tuple(mask.shape)}")
    m = mask.to(vectors.dtype).unsqueeze(-1)  # (B, T, 1)
    total = (vectors * m).sum(dim=1)  # (B, D)
    return total / m.sum(dim=1).clamp_min(1.0)


class MeanEmbeddingClassifier(nn.Module):
    """Embed the tokens, average them (:func:`mean_pool`), then a linear layer: (B, T) ids -> (B, C) logits.

    Args:
        vocab_size, dim: the embedding table's size. n_classes: C. pad_id: the padding id.
        pretrained: optional (V, D) vectors to initialise the table with.
    """

    def __init__(self, vocab_size: int, dim: int, n_classes: int, pad_id: int = 0, pretrained: Tensor | None = None):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        if pretrained is not None:
            if pretrained.shape != (vocab_size, dim):
                raise ValueError(f"pretrained must be ({vocab_size}, {dim}), got {tuple(pretrained.shape)}")
            self.embed.weight.data.copy_(pretrained)
        self.head = nn.Linear(dim, n_classes)

    def encode(self, ids: Tensor, mask: Tensor) -> Tensor:
        """(B, T) ids and mask -> (B, D) sentence vectors."""
        return mean_pool(self.embed(ids), mask)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """(B, T) ids and mask -> (B, C) logits."""
        return self.head(self.encode(ids, mask))


class LSTMClassifier(nn.Module):
    """Embed, run a (bi)LSTM over the real tokens (packed, so padding is never read), classify.

    The sentence vector is the last hidden state of each direction, concatenated: (B, dirs * H).

    Args:
        vocab_size, dim: embedding table size. hidden: H. n_classes: C.
        bidirectional: also read right to left. pad_id: the padding id.
    """

    def __init__(self, vocab_size: int, dim: int, hidden: int, n_classes: int, *, bidirectional: bool = True, pad_id: int = 0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), n_classes)

    def encode(self, ids: Tensor, mask: Tensor) -> Tensor:
        """(B, T) ids and mask -> (B, dirs * H) sentence vectors.

        Raises:
            ValueError: if a sequence has no real token or shapes differ.
        """
        if ids.shape != mask.shape or ids.ndim != 2:
            raise ValueError(f"ids and mask must both be (B, T), got {tuple(ids.shape)} and {tuple(mask.shape)}")
        lengths = mask.sum(dim=1).cpu()
        if (lengths == 0).any():
            raise ValueError("every sequence needs at least one real token")
        x = self.embed(ids)  # (B, T, D)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)  # h: (dirs, B, H)
        return h.transpose(0, 1).reshape(ids.shape[0], -1)  # (B, dirs * H)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """(B, T) ids and mask -> (B, C) logits."""
        return self.head(self.encode(ids, mask))


def shuffle_tokens(seq: Sequence, generator: torch.Generator | None = None) -> list:
    """A random permutation of a sequence that differs from it (when the tokens allow it).

    Used to build the word-order task of notebook 03: original vs shuffled sentences have exactly the
    same bag of words, so only an order-aware encoder can tell them apart.

    Raises:
        ValueError: if ``seq`` has fewer than 2 items.
    """
    seq = list(seq)
    if len(seq) < 2:
        raise ValueError("need at least 2 tokens to shuffle")
    if len(set(seq)) == 1:
        return seq
    while True:
        perm = torch.randperm(len(seq), generator=generator).tolist()
        out = [seq[i] for i in perm]
        if out != seq:
            return out
