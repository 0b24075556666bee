"""NLVR2-style visual reasoning: a pair of images, a statement about both, and a True/False label.

NLVR2 (Suhr et al., 2019) pairs two photos with a sentence such as "the left image contains twice
the number of dogs as the right image"; a model decides whether the sentence is true. Here the
two images are synthetic scenes and the sentences come from templates whose truth is computed
from the scenes' objects, so labels are exact. :func:`make_nlvr2` balances True and False.

File format (NLVR2's JSON lines, one example per line)::

    {"identifier": "train-12-0-0", "sentence": "...", "label": "True", "left_url": ..., "right_url": ...,
     "left_image_id": 24, "right_image_id": 25, "synset": "shapes", "query": "synthetic", "writer": "grammar"}

The real dataset's images are named from the identifier: ``train-12-0-0`` -> ``train-12-0-img0.png``
(left) and ``train-12-0-img1.png`` (right); :func:`load_nlvr2` gives those names (and the scene ids
when the extra ``*_image_id`` fields are present).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vlp_course.data.captions import Desc, count_matching
from vlp_course.data.scenes import COLORS, SHAPES, Scene

__all__ = ["NLVR2Example", "nlvr2_statements", "statement_holds", "make_nlvr2", "write_nlvr2", "load_nlvr2"]


@dataclass(frozen=True)
class NLVR2Example:
    """One example. ``label`` is True when the sentence holds for (left, right)."""

    identifier: str
    sentence: str
    label: bool
    left_image: str
    right_image: str
    left_id: int | None = None
    right_id: int | None = None


def _words(d: Desc) -> tuple[str, str]:
    """Canonical singular and plural nouns: ("red object", "red objects"), ("circle", "circles")."""
    if d.shape is not None:
        sing = d.shape
        plural = sing + ("es" if sing.endswith(("x", "s")) else "s")
    else:
        sing, plural = "object", "objects"
    if d.color is not None:
        sing, plural = f"{d.color} {sing}", f"{d.color} {plural}"
    return sing, plural


_DESCS = [Desc(shape=s) for s in SHAPES] + [Desc(color=c) for c in COLORS]


_NUM = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _counts(scene: Scene) -> np.ndarray:
    """(len(_DESCS) + 1,) how many of the scene's objects match each description, then how many objects in all."""
    return np.array([count_matching(scene, d) for d in _DESCS] + [len(scene.objects)])


def _statements(cl: np.ndarray, cr: np.ndarray, every_number: bool = False) -> list[tuple[str, str, Callable]]:
    """The templated statements one can make about a pair with counts ``cl``, ``cr`` (:func:`_counts`):
    ``(kind, sentence, holds)``, where ``holds(L, R)`` gives the sentence's truth for counts ``L``, ``R``
    of shape (..., len(_DESCS) + 1) (so one sentence can be checked against many pairs at once).
    The numbers in "in total" and "exactly n objects" statements are the true one and its two
    neighbours, or with ``every_number`` all of 1 .. 10."""
    out = []
    for d, desc in enumerate(_DESCS):
        sing, pl = _words(desc)
        a = ("an " if sing[0] in "aeiou" else "a ") + sing
        for first, second, left_first in (("left", "right", True), ("right", "left", False)):
            def twice(L, R, d=d, lf=left_first):
                a_, b_ = (L[..., d], R[..., d]) if lf else (R[..., d], L[..., d])
                return (a_ == 2 * b_) & (b_ > 0)

            def more(L, R, d=d, lf=left_first):
                a_, b_ = (L[..., d], R[..., d]) if lf else (R[..., d], L[..., d])
                return a_ > b_
            out.append(("twice", f"the {first} image has twice as many {pl} as the {second} image", twice))
            out.append(("more", f"the {first} image contains more {pl} than the {second} image", more))
        out.append(("both", f"both images contain {a}", lambda L, R, d=d: (L[..., d] > 0) & (R[..., d] > 0)))
        out.append(("exactly_one", f"exactly one of the two images contains {a}",
                    lambda L, R, d=d: (L[..., d] > 0) != (R[..., d] > 0)))
        out.append(("neither", f"neither image contains {a}", lambda L, R, d=d: (L[..., d] == 0) & (R[..., d] == 0)))
        tot = int(cl[d] + cr[d])
        for n in range(1, 11) if every_number else (tot - 1, tot, tot + 1):
            if 1 <= n <= 10:
                text = f"there are {_NUM[n]} {pl} in total" if n != 1 else f"there is exactly one {sing} in total"
                out.append(("total", text, lambda L, R, d=d, n=n: L[..., d] + R[..., d] == n))
    for side, c, is_left in (("left", cl, True), ("right", cr, False)):
        n = int(c[-1])
        for m in range(1, 11) if every_number else (n - 1, n, n + 1):
            if 1 <= m <= 10:
                noun = "objects" if m != 1 else "object"
                out.append((f"count_{side}", f"the {side} image shows exactly {_NUM[m]} {noun}",
                            lambda L, R, m=m, il=is_left: (L if il else R)[..., -1] == m))
    return out


def nlvr2_statements(left: Scene, right: Scene) -> list[tuple[str, str, bool]]:
    """Every templated statement about the pair: ``(kind, sentence, is_true)``.

    Kinds: "twice" (the left image has twice as many X as the right image), "more", "both",
    "exactly_one", "neither", "count_left"/"count_right" (exactly n objects), "total" (n X in total).
    """
    cl, cr = _counts(left), _counts(right)
    return [(kind, text, bool(holds(cl, cr))) for kind, text, holds in _statements(cl, cr)]


def statement_holds(sentence: str, left: Scene, right: Scene) -> bool:
    """Whether one of the templated statements (:func:`nlvr2_statements`' sentences, any number from 1 to
    10) is true of the pair (``left``, ``right``).

    Raises:
        ValueError: if ``sentence`` is not a templated statement.
    """
    cl, cr = _counts(left), _counts(right)
    for _, text, holds in _statements(cl, cr, every_number=True):
        if text == sentence:
            return bool(holds(cl, cr))
    raise ValueError(f"not a templated NLVR2 statement: {sentence!r}")


def make_nlvr2(scenes: Sequence[Scene], n: int, rng: np.random.Generator, *, split: str = "train",
               max_tries: int = 256) -> list[NLVR2Example]:
    """``n`` examples (``n`` rounded down to even) over random pairs of ``scenes``: every sentence
    appears **twice**, once with a pair it is true of and once with a pair it is false of.

    That is how NLVR2 removes the sentence's own bias (Suhr et al., 2019, section 3: each sentence is
    paired with image pairs for which it holds and pairs for which it does not), and it makes the
    statement-only baseline score 50% by construction: a model that ignores the images gives both copies
    of a sentence the same answer. Generation: draw a pair and one of its statements with the wanted
    truth value (a kind first, uniformly, so rare kinds like "twice as many" appear, then a sentence of
    that kind), then check the same sentence against ``max_tries`` other random pairs and take the first
    one where it has the other truth value (none: start over). The first copy's label alternates True,
    False, ... Identifiers: ``{split}-{sentence}-{copy}-0``.

    Raises:
        ValueError: fewer than 2 scenes or n < 2.
    """
    if len(scenes) < 2:
        raise ValueError(f"NLVR2 pairs need at least 2 scenes, got {len(scenes)}")
    if n < 2:
        raise ValueError(f"n must be >= 2 (each sentence comes with a true and a false pair), got {n}")
    counts = np.stack([_counts(sc) for sc in scenes])  # (S, len(_DESCS) + 1)
    S = len(scenes)
    out: list[NLVR2Example] = []
    while len(out) + 2 <= n:
        want = len(out) % 4 == 0  # the first copy's label alternates: exactly balanced either way
        i, j = (int(v) for v in rng.choice(S, size=2, replace=False))
        cands = [c for c in _statements(counts[i], counts[j]) if bool(c[2](counts[i], counts[j])) == want]
        if not cands:
            continue
        kinds = sorted({c[0] for c in cands})
        kind = kinds[int(rng.integers(len(kinds)))]
        pool = [c for c in cands if c[0] == kind]
        _, sentence, holds = pool[int(rng.integers(len(pool)))]
        i2 = rng.integers(S, size=max_tries)
        j2 = (i2 + rng.integers(1, S, size=max_tries)) % S  # another scene than i2
        hit = np.flatnonzero(holds(counts[i2], counts[j2]) != want)
        if len(hit) == 0:
            continue
        i2, j2 = int(i2[hit[0]]), int(j2[hit[0]])
        k = len(out) // 2
        for copy, (a, b, label) in enumerate(((i, j, want), (i2, j2, not want))):
            stem = f"{split}-{k}-{copy}"
            out.append(NLVR2Example(f"{stem}-0", sentence, bool(label), f"{stem}-img0.png", f"{stem}-img1.png",
                                    scenes[a].scene_id, scenes[b].scene_id))
    return out


def write_nlvr2(examples: Sequence[NLVR2Example], path) -> Path:
    """Write examples as NLVR2 JSON lines (labels as the strings "True"/"False", as in the dataset)."""
    from vlp_course.files import atomic_write_text

    lines = []
    for e in examples:
        rec = {"identifier": e.identifier, "sentence": e.sentence, "label": "True" if e.label else "False",
               "left_url": e.left_image, "right_url": e.right_image, "synset": "shapes", "query": "synthetic",
               "writer": "grammar"}
        if e.left_id is not None:
            rec["left_image_id"] = int(e.left_id)
            rec["right_image_id"] = int(e.right_id)
        lines.append(json.dumps(rec))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def load_nlvr2(path) -> list[NLVR2Example]:
    """Read NLVR2 JSON lines (ours or the real ``train.json``/``dev.json``/``test1.json``).

    Image names follow the identifier (``dev-850-0-0`` -> ``dev-850-0-img0.png``/``-img1.png``).

    Raises:
        ValueError: a line that is not JSON, lacks ``identifier``/``sentence``/``label``, or has a
            label other than True/False.
    """
    out = []
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ValueError(f"NLVR2 file not found: {path}") from None
    for ln, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{ln}: not a JSON object: {err}") from None
        missing = {"identifier", "sentence", "label"} - set(rec)
        if missing:
            raise ValueError(f"{path}:{ln}: an NLVR2 example needs {sorted(missing)}")
        lab = rec["label"]
        if isinstance(lab, str) and lab.lower() in ("true", "false"):
            lab = lab.lower() == "true"
        if not isinstance(lab, bool):
            raise ValueError(f"{path}:{ln}: label must be 'True' or 'False', got {rec['label']!r}")
        stem = rec["identifier"].rsplit("-", 1)[0]
        out.append(NLVR2Example(rec["identifier"], rec["sentence"], lab, f"{stem}-img0.png", f"{stem}-img1.png",
                                rec.get("left_image_id"), rec.get("right_image_id")))
    return out
