"""Caption metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D as the COCO caption evaluation computes them.

Every number comes from the installed ``pycocoevalcap`` (1.2, github.com/salaniz/pycocoevalcap, the
Python 3 port of the original tylin/coco-caption; Chen et al. 2015, "Microsoft COCO Captions: Data
Collection and Evaluation Server"), called scorer by scorer as ``pycocoevalcap/eval.py`` does, but
never through ``COCOEvalCap.evaluate``: that one always runs SPICE, which downloads a Stanford model.

* **BLEU-n** (Papineni et al., ACL 2002; ``bleu/bleu.py``, ``bleu/bleu_scorer.py``): clipped n-gram
  precision up to n, geometric mean, times a brevity penalty. **Corpus-level**: ``Bleu.compute_score``
  returns BLEU over the n-gram counts and lengths summed over all captions (the brevity penalty
  uses, per caption, the reference length closest to the candidate's); the per-caption scores it
  also returns are computed separately and do not average to it. They are not smoothed, only kept
  off exact zero by 1e-15 / 1e-9 terms: a caption with no matching 4-gram gets a BLEU-4 near 0.
* **METEOR** (Banerjee & Lavie, 2005; ``meteor/meteor.py``): unigram matches (exact, stem, synonym,
  paraphrase) aligned between candidate and reference, an F-mean weighted to recall with a
  fragmentation penalty. It runs ``meteor-1.5.jar`` (``-l en -norm``, 2 GB Java heap), which takes
  ~10-15 s to start (it loads a paraphrase table); the corpus score is the jar's own aggregate over the
  statistics of all captions, not the mean of the per-caption scores. Skipped without Java.
* **ROUGE-L** (Lin, 2004; ``rouge/rouge.py``): longest common subsequence F-measure (beta = 1.2),
  precision and recall each taken as the best over the references; the mean over captions.
* **CIDEr-D** (Vedantam, Zitnick & Parikh, CVPR 2015, the CIDEr-D variant defined there):
  cosine similarity of TF-IDF weighted 1- to 4-gram vectors, averaged over the references and n,
  times 10. pycocoevalcap's ``Cider`` (``cider/cider.py``, ``cider/cider_scorer.py``) is CIDEr-D,
  not the plain CIDEr of the paper: it clips the candidate's n-gram weights at the reference's
  (``min(vec_hyp, vec_ref)``), multiplies by a Gaussian length penalty ``exp(-delta**2 / (2 sigma**2))``
  with sigma = 6, and does not stem. The idf comes from the references of the **evaluated set**
  (document frequency over its images, log of its size), so a score depends on the whole set:
  compare models only on the same split, and a one-image set always scores 0 (every idf is 0).

Tokenisation. The COCO pipeline first runs Stanford CoreNLP 3.4.1's PTBTokenizer (Java, through
``tokenizer/ptbtokenizer.py``) on every caption: lower case, punctuation split off words, then the
tokens in ``PUNCTUATIONS`` dropped. Without Java (Colab) :func:`fallback_tokenize` reproduces it in
Python for plain English captions; ``tests/test_caption_metrics.py`` checks both give the same
tokens, and so the same scores, on the course's captions.

Main entry points::

    s = caption_scores({1: "a red circle"}, {1: ["a red disc", "a red circle left of a box"]})
    s["CIDEr-D"], s.per_caption["BLEU-4"], s.note      # "METEOR skipped: ..." without Java
    tokenize_captions({1: ["A red circle."]})          # {1: ["a red circle"]}
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, PTBTokenizer

__all__ = ["METRICS", "CaptionScores", "java_available", "fallback_tokenize", "tokenize_captions",
           "caption_scores"]

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")
NO_JAVA = "METEOR skipped: no Java (pycocoevalcap's METEOR runs a Java jar)"


def java_available() -> bool:
    """Whether a ``java`` executable is on the PATH (``shutil.which``).

    PTBTokenizer and METEOR run Java programs shipped inside pycocoevalcap. Colab has no Java:
    there the captions go through :func:`fallback_tokenize` and METEOR is skipped (installing a
    JRE, e.g. apt's ``default-jre-headless``, brings both back). This only looks for the program,
    it does not run it: a stub ``java`` that is not a working JRE (macOS without a JDK) still
    counts; pass ``use_java=False`` then.
    """
    return shutil.which("java") is not None


# --- the pure-Python stand-in for PTBTokenizer ---------------------------------------------------
# PTBTokenizer writes brackets as -LRB- etc. and -lowerCase lower-cases them too, so pycocoevalcap's
# PUNCTUATIONS (written "-LRB-") never matches them: "(a box)" keeps the tokens "-lrb-" and "-rrb-".
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_SPLIT_WORDS = {"cannot": "can not", "gonna": "gon na", "gotta": "got ta", "wanna": "wan na"}
# words whose final period PTB keeps (besides single letters and dotted ones: "b.", "u.s.", "e.g.")
_ABBREVIATIONS = frozenset("mr mrs ms dr prof st jr sr gen mt ave fig dept ft co inc corp ltd vs etc".split())


def _period(m: re.Match) -> str:
    word, dots = m[1], m[2]
    keep = dots == "." and (word in _ABBREVIATIONS or re.fullmatch(r"[^\W\d_](\.[^\W\d_])*", word))
    return m[0] if keep else f"{word} {dots}"


_RULES = [  # applied in order to the lower-cased caption
    (r"[\"“”]", " "),                                      # double quotes: PTB's `` and '', dropped
    (r"[‘’]", "'"), ("…", " ... "), (r"[—–]|-{2,}", " -- "),
    (r"[!?]+|;|(?<!\d)[,:](?!//)|[,:](?!\d|//)|[%$&+=*]", r" \g<0> "),  # not "1,000", "12:30", "http:"
    (r"(?<=\S)([-/])(?=\s|$)|(?<!\S)(-(?=[^\W\d_])|/(?=\S))", r" \g<0> "),  # "x-", "-dash", "w/" (not "-3")
    (r"[()\[\]{}]", lambda m: f" {_BRACKETS[m[0]]} "),
    (r"(?<!\S)['`]+(?!(s|m|d|ll|re|ve)(\s|$))|['`]+(?=\.*(\s|$))", " "),  # quotes, not "'s" alone
    (r"(?<!\S)(\S+?)(\.+)(?=\s|$)", _period),                   # "circle." -> "circle ."
    (r"(?<=[^\W_])(n't|'s|'m|'d|'ll|'re|'ve)(?=\s|$)", r" \1"),  # "don't" -> "do n't"
    (r"(?<!\S)(cannot|gonna|gotta|wanna)(?!\S)", lambda m: _SPLIT_WORDS[m[0]]),
]
_RULES = [(re.compile(p), r) for p, r in _RULES]


def fallback_tokenize(caption: str) -> str:
    """One caption tokenised as pycocoevalcap's PTBTokenizer would, in pure Python (no Java).

    Mirrors ``tokenizer/ptbtokenizer.py``: lower case; punctuation split off words; the tokens of
    its ``PUNCTUATIONS`` list dropped (. , ; : ! ? - -- ... quotes); and what PTB does besides for
    plain English: clitics ("don't" -> "do n't", "man's" -> "man 's", "cannot" -> "can not"), runs
    of ! and ? kept as one token ("?!"), brackets kept as "-lrb-" / "-rrb-" / "-lsb-" ...,
    % $ & + = * split off, commas and colons kept inside numbers ("1,000", "12:30"), and a final
    period kept on single letters, dotted abbreviations ("u.s.", "e.g.") and common titles ("mr.",
    "etc."). Not reproduced (rare in captions): PTB's context-dependent abbreviations ("no. 5" keeps
    its period, "vitamin C." at the end of a sentence loses it; here "no." always loses it and a
    single letter always keeps it), apostrophes at the start of a word ("'90s", "'n'", "'tis") or
    after a single letter ("y'all" -> "y' all"), "a...b" -> "a. b", splitting of # < > _ in some
    positions ("#1" -> "# 1", "a<b" -> "a < b"), and Unicode normalisation beyond curly quotes,
    dashes and the ellipsis character.
    """
    s = caption.lower()
    for pattern, repl in _RULES:
        s = pattern.sub(repl, s)
    return " ".join(t for t in s.split() if t not in PUNCTUATIONS and t.strip("."))


# --- input checks --------------------------------------------------------------------------------
def _examples(keys) -> str:
    keys = list(keys)
    return f"{keys[:3]!r}" + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _check_references(references: Mapping, name: str = "references") -> None:
    if not isinstance(references, Mapping):
        raise ValueError(f"{name} must be a dict {{key: [reference caption, ...]}}, got {type(references).__name__}")
    for k, refs in references.items():
        if isinstance(refs, str):
            raise ValueError(f"{name}[{k!r}] is a string; expected a list of reference strings (iterating a string "
                             f"gives its characters, and pycocoevalcap's Bleu fails with a bare AssertionError): "
                             f"write [{refs!r}]")
        if not isinstance(refs, (list, tuple)) or not refs:
            raise ValueError(f"{name}[{k!r}] must be a non-empty list of reference strings, got {refs!r}")
        for i, r in enumerate(refs):
            if not isinstance(r, str) or not r.strip():
                raise ValueError(f"{name}[{k!r}][{i}] must be a non-empty string, got {r!r}")


def _check_inputs(candidates: Mapping, references: Mapping) -> None:
    if not isinstance(candidates, Mapping):
        raise ValueError(f"candidates must be a dict {{key: caption string}}, got {type(candidates).__name__}")
    if not candidates:
        raise ValueError("candidates is empty: expected a dict {key: caption string}, one generated caption per image")
    _check_references(references)
    only_c = [k for k in candidates if k not in references]
    only_r = [k for k in references if k not in candidates]
    if only_c or only_r:
        raise ValueError(f"candidates and references must have the same keys: {len(only_c)} candidate key(s) with "
                         f"no references (e.g. {_examples(only_c)}), {len(only_r)} reference key(s) with no "
                         f"candidate (e.g. {_examples(only_r)})")
    for k, c in candidates.items():
        if not isinstance(c, str):
            raise ValueError(f"candidates[{k!r}] must be one caption string, got {type(c).__name__} {c!r}")
        if not c.strip():
            raise ValueError(f"candidates[{k!r}] is empty: expected a non-empty caption (pycocoevalcap would not "
                             f"complain and would silently score it 0 on every metric)")


# --- tokenisation and scores ---------------------------------------------------------------------
def _resolve_java(use_java: bool | None) -> bool:
    if use_java is None:
        return java_available()
    if use_java and not java_available():
        raise RuntimeError("use_java=True but no `java` on the PATH (pass use_java=None or False)")
    return bool(use_java)


def tokenize_captions(captions: Mapping[Hashable, list[str]], *,
                      use_java: bool | None = None) -> dict[Hashable, list[str]]:
    """``{key: [caption, ...]}`` -> ``{key: [tokenised caption, ...]}``, in the same order (keys int or str).

    With Java, pycocoevalcap's ``PTBTokenizer().tokenize`` (fed ``{key: [{"caption": c}, ...]}``),
    in one Java call; without Java, :func:`fallback_tokenize`. ``use_java``: None detects Java,
    False forces the fallback, True requires Java. Runs of whitespace, line breaks included, are
    turned into single spaces first: PTBTokenizer reads one caption per line, so a "\\r" inside a
    caption would silently shift every following caption onto the wrong key.
    """
    _check_references(captions, "captions")
    clean = {k: [" ".join(c.split()) for c in v] for k, v in captions.items()}
    if not _resolve_java(use_java):
        return {k: [fallback_tokenize(c) for c in v] for k, v in clean.items()}
    out = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in clean.items()})
    if any(len(out.get(k, ())) != len(v) for k, v in clean.items()):
        raise RuntimeError("PTBTokenizer returned a different number of captions than it was given")
    return {k: out[k] for k in clean}


@dataclass(frozen=True, eq=False)
class CaptionScores(Mapping):
    """Corpus scores by metric name (``METRICS`` order), read like a dict: ``s["CIDEr-D"]``.

    Attributes:
        scores: metric -> corpus score (BLEU-n corpus-level, METEOR the jar's aggregate, ROUGE-L and
            CIDEr-D the mean over captions).
        per_caption: metric -> one score per caption, in the order of ``ids``.
        ids: the candidates' keys, in the order given.
        tokenizer: "PTBTokenizer (Java)" or "fallback_tokenize (Python)".
        skipped: metrics not computed; ``note`` says why ("" when none).
    """

    scores: dict[str, float]
    per_caption: dict[str, list[float]]
    ids: list
    tokenizer: str
    skipped: tuple[str, ...] = ()
    note: str = ""

    def __getitem__(self, metric: str) -> float:
        return self.scores[metric]

    def __iter__(self):
        return iter(self.scores)

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        text = ", ".join(f"{m} {v:.4f}" for m, v in self.scores.items())
        return f"CaptionScores({text}; {len(self.ids)} captions" + (f"; {self.note})" if self.note else ")")


@lru_cache(maxsize=1)
def _meteor():
    """pycocoevalcap's METEOR scorer, started once per Python process and reused: starting its Java
    process and loading its paraphrase tables takes about 10 s, scoring a few hundred captions well
    under one. The process ends with Python (the scorer's ``__del__``)."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def caption_scores(candidates: Mapping[Hashable, str], references: Mapping[Hashable, list[str]], *,
                   use_java: bool | None = None) -> CaptionScores:
    """Score one generated caption per image against its references: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D.

    Args:
        candidates: ``{key: caption}``, keys int or str (e.g. image ids).
        references: ``{key: [reference, ...]}`` with exactly the keys of ``candidates``.
        use_java: None detects Java; False tokenises with :func:`fallback_tokenize` and skips
            METEOR (what happens on Colab); True requires Java.

    Both sides are tokenised as the COCO evaluation does (see :func:`tokenize_captions`), then scored
    by pycocoevalcap's ``Bleu(4)``, ``Meteor()`` (with Java only), ``Rouge()`` and ``Cider()``.
    CIDEr-D depends on the whole set (its idf comes from these references): compare only on the
    same split.

    Raises:
        ValueError: before any score, for empty candidates, keys that differ between the two dicts,
            a candidate that is not a string or is empty (also after tokenisation: only punctuation),
            ``references[k]`` that is a string instead of a list, or not a non-empty list of
            non-empty strings.
    """
    _check_inputs(candidates, references)
    java = _resolve_java(use_java)
    ids = list(candidates)
    both = {("candidate", k): [candidates[k]] for k in ids} | {("reference", k): list(references[k]) for k in ids}
    tok = tokenize_captions(both, use_java=java)
    res = {k: tok[("candidate", k)] for k in ids}
    gts = {k: tok[("reference", k)] for k in ids}
    for what, raw, toks in [(f"candidates[{k!r}]", candidates[k], res[k][0]) for k in ids] + [
            (f"references[{k!r}][{i}]", references[k][i], t) for k in ids for i, t in enumerate(gts[k])]:
        if not toks:
            raise ValueError(f"{what} is empty after tokenisation ({raw!r} has only punctuation): expected words "
                             f"(pycocoevalcap would not complain and would silently score it 0)")
    scores, per = {}, {}
    bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        scores[f"BLEU-{n + 1}"], per[f"BLEU-{n + 1}"] = float(bleu[n]), [float(x) for x in bleu_each[n]]
    if java:
        scores["METEOR"], each = _meteor().compute_score(gts, res)
        per["METEOR"] = [float(x) for x in each]
    for name, scorer in (("ROUGE-L", Rouge()), ("CIDEr-D", Cider())):
        score, each = scorer.compute_score(gts, res)
        scores[name], per[name] = float(score), [float(x) for x in each]
    note = "" if java else NO_JAVA + ("" if use_java is None else " [use_java=False]")
    return CaptionScores(scores=scores, per_caption=per, ids=ids,
                         tokenizer="PTBTokenizer (Java)" if java else "fallback_tokenize (Python)",
                         skipped=() if java else ("METEOR",), note=note)
