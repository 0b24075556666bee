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
from typing import Sequence

import numpy as np

from vlp_course.data.captions import Desc, count_matching
from vlp_course.data.scenes import COLORS, SHAPES, Scene

__all__ = ["NLVR2Example", "nlvr2_statements", "make_nlvr2", "write_nlvr2", "load_nlvr2"]


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


def nlvr2_statements(left: Scene, right: Scene) -> list[tuple[str, str, bool]]:
    """Every templated statement about the pair: ``(kind, sentence, is_true)``.

    Kinds: "twice" (the left image has twice as many X as the right image), "more", "both",
    "exactly_one", "neither", "count_left"/"count_right" (exactly n objects), "total" (n X in total).
    """
    out = []
    num = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    for d in _DESCS:
        cl, cr = count_matching(left, d), count_matching(right, d)
        sing, pl = _words(d)
        a = ("an " if sing[0] in "aeiou" else "a ") + sing
        for first, second, c1, c2 in (("left", "right", cl, cr), ("right", "left", cr, cl)):
            out.append(("twice", f"the {first} image has twice as many {pl} as the {second} image", c1 == 2 * c2 and c2 > 0))
            out.append(("more", f"the {first} image contains more {pl} than the {second} image", c1 > c2))
        out.append(("both", f"both images contain {a}", cl > 0 and cr > 0))
        out.append(("exactly_one", f"exactly one of the two images contains {a}", (cl > 0) != (cr > 0)))
        out.append(("neither", f"neither image contains {a}", cl == 0 and cr == 0))
        tot = cl + cr
        for n in (tot - 1, tot, tot + 1):
            if 1 <= n <= 10:
                text = f"there are {num[n]} {pl} in total" if n != 1 else f"there is exactly one {sing} in total"
                out.append(("total", text, n == tot))
    for side, sc in (("left", left), ("right", right)):
        n = len(sc.objects)
        for m in (n - 1, n, n + 1):
            if 1 <= m <= 10:
                noun = "objects" if m != 1 else "object"
                out.append((f"count_{side}", f"the {side} image shows exactly {num[m]} {noun}", m == n))
    return out


def make_nlvr2(scenes: Sequence[Scene], n: int, rng: np.random.Generator, *, split: str = "train") -> list[NLVR2Example]:
    """``n`` examples over random pairs of ``scenes``, half True and half False (alternating).

    For each example the label is fixed first, then a kind of statement that has a candidate with
    that label is drawn uniformly (so rare kinds like "twice as many" appear), then a sentence.

    Raises:
        ValueError: fewer than 2 scenes or n < 1.
    """
    if len(scenes) < 2:
        raise ValueError(f"NLVR2 pairs need at least 2 scenes, got {len(scenes)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    out = []
    k = 0
    while len(out) < n:
        want = len(out) % 2 == 0  # alternate True / False: exactly balanced
        i, j = (int(v) for v in rng.choice(len(scenes), size=2, replace=False))
        left, right = scenes[i], scenes[j]
        cands = [s for s in nlvr2_statements(left, right) if s[2] == want]
        k += 1
        if not cands:
            continue
        kinds = sorted({c[0] for c in cands})
        kind = kinds[int(rng.integers(len(kinds)))]
        pool = [c for c in cands if c[0] == kind]
        _, sentence, label = pool[int(rng.integers(len(pool)))]
        ident = f"{split}-{len(out)}-0-0"
        stem = ident.rsplit("-", 1)[0]
        out.append(NLVR2Example(ident, sentence, bool(label), f"{stem}-img0.png", f"{stem}-img1.png",
                                left.scene_id, right.scene_id))
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
