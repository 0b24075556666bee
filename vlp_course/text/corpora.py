"""Small real English corpora that ship offline with gensim's test data.

* ``lee_background.cor``: 300 Australian news articles (about 60k words), one article per line
  (Lee, Pincombe & Welsh 2005; distributed with gensim for its word2vec/doc2vec tests).
* ``pang_lee_polarity.cor``: 200 movie-review sentences labelled ``__label__neg``/``__label__pos``
  (a sample of Pang & Lee 2005's sentence polarity data, shipped with gensim's fastText tests).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["gensim_data_path", "lee_documents", "lee_sentences", "polarity_sentences"]


def gensim_data_path(name: str) -> Path:
    """The path of one file of gensim's test data.

    Raises:
        FileNotFoundError: if gensim is installed without its test data.
    """
    from gensim.test.utils import datapath

    p = Path(datapath(name))
    if not p.is_file():
        raise FileNotFoundError(f"{name} is not in gensim's test data ({p}); reinstall gensim>=4.3")
    return p


def _lines(name: str) -> list[str]:
    # the files hold a few bytes that are not UTF-8 (e.g. Windows-1252 dashes): decode leniently
    text = gensim_data_path(name).read_bytes().decode("utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def lee_documents() -> list[str]:
    """The Lee background corpus: a list of 300 news articles (strings)."""
    return _lines("lee_background.cor")


def lee_sentences() -> list[str]:
    """The Lee corpus split into sentences with :func:`vlp_course.text.split_sentences`."""
    from vlp_course.text.vocab import split_sentences

    return [s for doc in lee_documents() for s in split_sentences(doc)]


def polarity_sentences() -> tuple[list[str], list[int]]:
    """The 200 labelled movie-review sentences: ``(texts, labels)`` with label 1 = positive, 0 = negative."""
    texts, labels = [], []
    for line in _lines("pang_lee_polarity.cor"):
        label, _, text = line.partition(" ")
        if label not in ("__label__pos", "__label__neg"):
            raise ValueError(f"unexpected label {label!r} in pang_lee_polarity.cor")
        texts.append(text)
        labels.append(int(label == "__label__pos"))
    return texts, labels
