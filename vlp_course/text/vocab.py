"""Tokenization and vocabularies: text -> tokens -> integer ids.

The course's word-level pipeline (notebooks 01-03) splits text with a regular expression and maps
every token to a row index of an embedding table. Special tokens come first, so their ids are fixed:
``[PAD]`` = 0, ``[UNK]`` = 1, ``[CLS]`` = 2, ``[SEP]`` = 3, ``[MASK]`` = 4 with the default list (the
same roles as in BERT's vocabulary, Devlin et al. 2019, section 3). Pretrained sub-word tokenizers
(WordPiece) are loaded from ``transformers`` instead, see :mod:`vlp_course.text.pretrained`.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

__all__ = ["PAD", "UNK", "CLS", "SEP", "MASK", "DEFAULT_SPECIALS", "tokenize", "split_sentences", "Vocabulary"]

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
DEFAULT_SPECIALS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK)

# A word is a run of letters/digits, optionally with one apostrophe part ("it's", "don't").
_WORD = r"\w+(?:'\w+)?"
_WORD_RE = re.compile(_WORD)
_WORD_OR_PUNCT_RE = re.compile(_WORD + r"|[^\w\s]")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=[\"'A-Z0-9])")


def tokenize(text: str, *, lowercase: bool = True, keep_punctuation: bool = False) -> list[str]:
    """Split a string into word tokens with a regular expression.

    Args:
        text: the string.
        lowercase: lower-case the tokens.
        keep_punctuation: also return every punctuation character as its own token.

    Returns:
        A list of tokens, e.g. ``tokenize("It's a dog!") == ["it's", "a", "dog"]``.

    Raises:
        ValueError: if ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    if lowercase:
        text = text.lower()
    pattern = _WORD_OR_PUNCT_RE if keep_punctuation else _WORD_RE
    return pattern.findall(text)


def split_sentences(text: str) -> list[str]:
    """Split running text into sentences at ``.``, ``!`` or ``?`` followed by space and a capital/digit.

    A heuristic (abbreviations such as "Mr. Smith" are split too); good enough for the course's corpora.

    Raises:
        ValueError: if ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return [s.strip() for s in _SENTENCE_END_RE.split(text) if s.strip()]


class Vocabulary:
    """A bijection between tokens and ids ``0 .. len(vocab) - 1``; special tokens take the first ids.

    Args:
        tokens: the regular tokens, in id order (after the specials).
        specials: special tokens, given the ids ``0 .. len(specials) - 1``.
        unk_token: the token that unknown tokens map to; it must be in ``specials`` or ``tokens``.
            ``None``: unknown tokens raise a ``ValueError`` in :meth:`encode`.

    Raises:
        ValueError: if the vocabulary would be empty, a token is repeated, or ``unk_token`` is missing.
    """

    def __init__(self, tokens: Sequence[str], specials: Sequence[str] = DEFAULT_SPECIALS, unk_token: str | None = UNK):
        itos = list(specials) + list(tokens)
        if not itos:
            raise ValueError("the vocabulary is empty: give at least one token or special token")
        if len(set(itos)) != len(itos):
            dup = [t for t, c in Counter(itos).items() if c > 1]
            raise ValueError(f"tokens must be unique, repeated: {dup[:5]}")
        if unk_token is not None and unk_token not in itos:
            raise ValueError(f"unk_token {unk_token!r} is not among the tokens; add it to specials or pass unk_token=None")
        self.itos: list[str] = itos
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(itos)}
        self.specials: tuple[str, ...] = tuple(specials)
        self.unk_token = unk_token
        self.counts: dict[str, int] = {}

    @classmethod
    def build(
        cls,
        corpus: Iterable[Sequence[str]],
        *,
        min_count: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = DEFAULT_SPECIALS,
        unk_token: str | None = UNK,
    ) -> "Vocabulary":
        """Count tokens in a tokenized corpus and keep the frequent ones.

        Regular tokens are ordered by decreasing count, ties alphabetically, so the ids are reproducible.

        Args:
            corpus: an iterable of token lists (one per sentence or document).
            min_count: keep tokens that occur at least this many times.
            max_size: keep at most this many regular tokens (``None``: no limit).

        Raises:
            ValueError: on an empty corpus, ``min_count < 1``, ``max_size < 1``, a document that is a
                plain string instead of a token list, or when no token reaches ``min_count``.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be >= 1 or None, got {max_size}")
        counts: Counter[str] = Counter()
        n_docs = 0
        for doc in corpus:
            if isinstance(doc, str):
                raise ValueError("corpus must be an iterable of token lists, got a plain string; tokenize it first")
            counts.update(doc)
            n_docs += 1
        if n_docs == 0 or not counts:
            raise ValueError("the corpus is empty: nothing to build a vocabulary from")
        kept = sorted((t for t, c in counts.items() if c >= min_count and t not in specials), key=lambda t: (-counts[t], t))
        if not kept:
            raise ValueError(f"no token occurs at least min_count={min_count} times: the vocabulary would be empty")
        if max_size is not None:
            kept = kept[:max_size]
        vocab = cls(kept, specials=specials, unk_token=unk_token)
        vocab.counts = {t: counts[t] for t in kept}
        return vocab

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens, specials={list(self.specials)})"

    def id_of(self, token: str) -> int:
        """The id of one token; unknown tokens get the ``[UNK]`` id.

        Raises:
            ValueError: for an unknown token when the vocabulary has no ``unk_token``.
        """
        i = self.stoi.get(token)
        if i is not None:
            return i
        if self.unk_token is None:
            raise ValueError(f"unknown token {token!r} and the vocabulary has no [UNK] token")
        return self.stoi[self.unk_token]

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Map a token list to ids (unknown tokens -> the ``[UNK]`` id).

        Raises:
            ValueError: if ``tokens`` is a plain string, or holds an unknown token and there is no ``[UNK]``.
        """
        if isinstance(tokens, str):
            raise ValueError("encode expects a list of tokens, got a string; call tokenize() first")
        return [self.id_of(t) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Map ids back to tokens.

        Raises:
            ValueError: if an id is outside ``[0, len(vocab))``.
        """
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise ValueError(f"id {i} is outside [0, {len(self.itos)})")
            out.append(self.itos[i])
        return out

    @property
    def pad_id(self) -> int:
        """The id of ``[PAD]``. Raises ValueError if the vocabulary has none."""
        if PAD not in self.stoi:
            raise ValueError("this vocabulary has no [PAD] token")
        return self.stoi[PAD]

    @property
    def unk_id(self) -> int | None:
        """The id of the unknown token, or ``None``."""
        return None if self.unk_token is None else self.stoi[self.unk_token]

    def special_ids(self) -> list[int]:
        """The ids of the special tokens."""
        return [self.stoi[t] for t in self.specials]
