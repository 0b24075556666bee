"""Captions for the synthetic scenes, from a small grammar, and hard negatives for image-text matching.

A caption is generated in two steps. First a **claim** is chosen: a small structured statement
about the scene that is true (``Claim``: an object exists, a number of objects, a spatial relation
between two objects, or a list of everything in the scene). Then the claim is **rendered** as text
with random word order, synonyms ("square"/"box", "under"/"below"/"beneath"), plurals and number
words. Because every caption comes from a claim, :func:`claim_holds` can check it on the scene.

A **hard negative** (:func:`hard_negative`) changes exactly one thing in a true claim: one
attribute of one object (colour, shape or size), one count, or the relation. It is kept only if
the changed claim is false for the scene, so "a red circle left of a blue square" may become "a
red circle right of a blue square" or "a green circle left of a blue square", never a caption
that happens to be true as well.

Main entry points::

    captions = scene_captions(scene, rng, n=5)        # list[Caption]; .text, .claim
    neg = hard_negative(scene, captions[0].claim, rng)  # a Caption that is false for the scene, or None
    claim_holds(scene, claim)                          # bool
    parse_caption("two small blue boxes")              # the Claim a caption states, or None outside the grammar
    caption_is_true(scene, text)                       # bool, or None when the caption does not parse

Captions are lower case without final punctuation (easy for the word-level notebooks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import NamedTuple, Sequence

import numpy as np

from vlp_course.data.scenes import COLORS, RELATIONS, SHAPES, SIZES, Scene, SceneObject, relation_holds

__all__ = [
    "Desc", "Claim", "Caption", "claim_holds", "count_matching", "render_claim", "scene_captions",
    "hard_negative", "SHAPE_WORDS", "RELATION_WORDS", "NUMBER_WORDS", "parse_caption", "caption_is_true",
]

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "round shape"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus sign"),
    "star": ("star",),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
GENERIC_NOUNS = ("shape", "object", "thing")
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "left of": ("left of", "to the left of", "on the left of"),
    "right of": ("right of", "to the right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
    "next to": ("next to", "beside", "near"),
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass(frozen=True)
class Desc:
    """A partial description of an object: any of colour, shape, size (``None`` = not said)."""

    color: str | None = None
    shape: str | None = None
    size: str | None = None

    def matches(self, o: SceneObject) -> bool:
        return ((self.color is None or o.color == self.color) and (self.shape is None or o.shape == self.shape)
                and (self.size is None or o.size == self.size))

    @staticmethod
    def of(o: SceneObject, keys: Sequence[str] = ("color", "shape", "size")) -> "Desc":
        return Desc(**{k: getattr(o, k) for k in keys})


@dataclass(frozen=True)
class Claim:
    """A statement about a scene.

    kinds:
        ``"exists"``: some object matches ``a``.
        ``"count"``: exactly ``n`` objects match ``a`` (``a = Desc()`` counts every object).
        ``"relation"``: some object matching ``a`` is ``rel`` some other object matching ``b``.
        ``"list"``: for each ``(desc, n)`` of ``items``, exactly n objects match desc.
    """

    kind: str
    a: Desc | None = None
    b: Desc | None = None
    rel: str | None = None
    n: int | None = None
    items: tuple[tuple[Desc, int], ...] = ()


@dataclass(frozen=True)
class Caption:
    """A caption's text and the claim it states."""

    text: str
    claim: Claim


def count_matching(scene: Scene, desc: Desc) -> int:
    """Number of objects of the scene that match ``desc``."""
    return sum(desc.matches(o) for o in scene.objects)


def claim_holds(scene: Scene, claim: Claim) -> bool:
    """Whether ``claim`` is true for ``scene`` (see :class:`Claim` for the meaning of each kind).

    Raises:
        ValueError: on an unknown claim kind.
    """
    objs = scene.objects
    if claim.kind == "exists":
        return any(claim.a.matches(o) for o in objs)
    if claim.kind == "count":
        return count_matching(scene, claim.a) == claim.n
    if claim.kind == "relation":
        return any(
            i != j and claim.a.matches(oa) and claim.b.matches(ob) and relation_holds(oa, claim.rel, ob, scene.image_size)
            for i, oa in enumerate(objs) for j, ob in enumerate(objs)
        )
    if claim.kind == "list":
        return all(count_matching(scene, d) == n for d, n in claim.items)
    raise ValueError(f"unknown claim kind {claim.kind!r}; expected exists, count, relation or list")


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _noun_phrase(d: Desc, rng: np.random.Generator, *, n: int = 1, article: str = "a", number_word: bool = False) -> str:
    """'a big red box', 'two small circles', 'the green shape'."""
    words = []
    if d.size is not None:
        words.append(_pick(rng, SIZE_WORDS[d.size]))
    if d.color is not None:
        words.append(d.color)
    noun = _pick(rng, SHAPE_WORDS[d.shape]) if d.shape is not None else _pick(rng, GENERIC_NOUNS)
    if n != 1:
        noun = noun + ("es" if noun.endswith(("x", "s")) else "s")
    words.append(noun)
    if number_word or n != 1:
        det = NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)
    elif article == "a":
        det = "an" if words[0][0] in "aeiou" else "a"
    else:
        det = article
    return " ".join(([det] if det else []) + words)


def render_claim(claim: Claim, rng: np.random.Generator) -> str:
    """One random wording of ``claim`` (lower case, no final punctuation)."""
    if claim.kind == "exists":
        np_ = _noun_phrase(claim.a, rng)
        t = _pick(rng, ("there is {x}", "{x}", "a picture of {x}", "an image with {x}", "{x} on a dark background",
                        "this scene contains {x}", "{x} can be seen here"))
        return t.format(x=np_)
    if claim.kind == "count":
        if claim.a == Desc():
            noun = _pick(rng, GENERIC_NOUNS)
            k = claim.n
            what = f"{NUMBER_WORDS[k]} {noun}" + ("s" if k != 1 else "")
            t = _pick(rng, ("there {be} {x} in total", "{x} in the picture", "a scene with exactly {x}",
                            "the image shows {x}"))
            return t.format(x=what, be="are" if k != 1 else "is")
        x = _noun_phrase(claim.a, rng, n=claim.n, number_word=True)
        t = _pick(rng, ("there {be} {x}", "{x}", "exactly {x}", "the picture has {x}", "we can see {x}"))
        return t.format(x=x, be="are" if claim.n != 1 else "is")
    if claim.kind == "relation":
        a = _noun_phrase(claim.a, rng)
        b = _noun_phrase(claim.b, rng)
        r = _pick(rng, RELATION_WORDS[claim.rel])
        t = _pick(rng, ("{a} {r} {b}", "there is {a} {r} {b}", "{r} {b} there is {a}", "{a} is {r} {b}",
                        "a picture with {a} {r} {b}"))
        return t.format(a=a, b=b, r=r)
    if claim.kind == "list":
        parts = [_noun_phrase(d, rng, n=n) for d, n in claim.items]
        body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        t = _pick(rng, ("{x}", "a scene with {x}", "the picture shows {x}", "{x} on a dark background"))
        return t.format(x=body)
    raise ValueError(f"unknown claim kind {claim.kind!r}")


# ---------------------------------------------------------------------------------------------
# Choosing true claims
# ---------------------------------------------------------------------------------------------

_DESC_KEYS = (("color", "shape"), ("shape",), ("color", "shape", "size"), ("size", "shape"), ("color",))


def _random_desc(o: SceneObject, rng: np.random.Generator) -> Desc:
    return Desc.of(o, _DESC_KEYS[int(rng.integers(len(_DESC_KEYS)))])


def _true_claim(scene: Scene, kind: str, rng: np.random.Generator) -> Claim | None:
    objs = scene.objects
    o = objs[int(rng.integers(len(objs)))]
    if kind == "exists":
        return Claim("exists", a=_random_desc(o, rng))
    if kind == "count":
        if rng.random() < 0.25:
            return Claim("count", a=Desc(), n=len(objs))
        d = Desc.of(o, (("shape",), ("color", "shape"), ("color",))[int(rng.integers(3))])
        return Claim("count", a=d, n=count_matching(scene, d))
    if kind == "relation":
        from vlp_course.data.scenes import relations

        rels = relations(scene)
        if not rels:
            return None
        i, r, j = rels[int(rng.integers(len(rels)))]
        return Claim("relation", a=_random_desc(objs[i], rng), b=_random_desc(objs[j], rng), rel=r)
    if kind == "list":
        keys = ("color", "shape") if rng.random() < 0.7 else ("color", "shape", "size")
        groups: dict[Desc, int] = {}
        for ob in objs:
            d = Desc.of(ob, keys)
            groups[d] = groups.get(d, 0) + 1
        return Claim("list", items=tuple(groups.items()))
    raise ValueError(f"unknown claim kind {kind!r}")


def scene_captions(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[Caption]:
    """``n`` distinct true captions of ``scene`` (mixing the four kinds of claim).

    Some captions describe the whole scene ("list"), most mention only part of it.

    Raises:
        ValueError: if ``n`` < 1 or the scene has no object.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not scene.objects:
        raise ValueError("the scene has no object to describe")
    kinds = ["list", "exists", "count", "relation", "exists", "relation", "count"]
    out: list[Caption] = []
    seen: set[str] = set()
    k = 0
    while len(out) < n and k < 20 * n:
        kind = kinds[k % len(kinds)] if k < len(kinds) else kinds[int(rng.integers(len(kinds)))]
        k += 1
        claim = _true_claim(scene, kind, rng)
        if claim is None:
            continue
        text = render_claim(claim, rng)
        if text not in seen:
            seen.add(text)
            out.append(Caption(text, claim))
    return out


# ---------------------------------------------------------------------------------------------
# Hard negatives
# ---------------------------------------------------------------------------------------------

_VALUES = {"color": COLORS, "shape": SHAPES, "size": SIZES}


def _desc_variants(d: Desc, rng: np.random.Generator) -> list[Desc]:
    """Descriptions that differ from ``d`` in exactly one stated attribute, in random order."""
    out = []
    for key in ("color", "shape", "size"):
        cur = getattr(d, key)
        if cur is None:
            continue
        for v in _VALUES[key]:
            if v != cur:
                out.append(Desc(**{**d.__dict__, key: v}))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def _claim_variants(claim: Claim, rng: np.random.Generator, change: str):
    """Every one-step change of ``claim`` of the kind ``change`` (a generator, built lazily)."""
    if change == "attribute":
        if claim.kind in ("exists", "count", "relation"):
            for d in _desc_variants(claim.a, rng):
                yield replace(claim, a=d)
        if claim.kind == "relation":
            for d in _desc_variants(claim.b, rng):
                yield replace(claim, b=d)
        if claim.kind == "list":
            for k in rng.permutation(len(claim.items)):
                d, n = claim.items[k]
                for d2 in _desc_variants(d, rng):
                    items = list(claim.items)
                    items[k] = (d2, n)
                    yield replace(claim, items=tuple(items))
    elif change == "relation" and claim.kind == "relation":
        for r in RELATIONS:
            if r != claim.rel:
                yield replace(claim, rel=r)
    elif change == "count":
        if claim.kind == "count":
            for m in (claim.n - 1, claim.n + 1):
                if m >= 1:
                    yield replace(claim, n=m)
        if claim.kind == "list":
            for k in rng.permutation(len(claim.items)):
                d, n = claim.items[k]
                for m in (n - 1, n + 1):
                    if m >= 1:
                        items = list(claim.items)
                        items[k] = (d, m)
                        yield replace(claim, items=tuple(items))


_CHANGES = {"exists": ("attribute",), "count": ("attribute", "count"), "relation": ("attribute", "relation"),
            "list": ("attribute", "count")}


def hard_negative(scene: Scene, claim: Claim, rng: np.random.Generator, *, change: str | None = None) -> Caption | None:
    """A false caption that differs from the true ``claim`` in exactly one attribute, count or relation.

    Args:
        change: "attribute", "count" or "relation" to force the kind of change; ``None`` picks a random
            kind among those possible for the claim.

    Returns:
        a :class:`Caption` whose claim is false for ``scene``, or ``None`` when no one-step change is
        false (rare: e.g. "a shape" in a scene with every colour).
    """
    if change is not None and change not in ("attribute", "count", "relation"):
        raise ValueError(f"change must be 'attribute', 'count' or 'relation', got {change!r}")
    possible = _CHANGES.get(claim.kind, ())
    if change is not None:
        kinds = [change] if change in possible else []
    else:  # a random kind first, so relation and count changes are not drowned by attribute changes
        kinds = [possible[i] for i in rng.permutation(len(possible))]
    for kind in kinds:
        for c in _claim_variants(claim, rng, kind):
            if not claim_holds(scene, c):
                return Caption(render_claim(c, rng), c)
    return None


# ---------------------------------------------------------------------------------------------
# Parsing: from a caption back to its claim
# ---------------------------------------------------------------------------------------------
#
# A captioning model trained on these scenes writes captions; in a synthetic world we can do what
# COCO never allows: read a caption back into its Claim and check it on the scene. The grammar is
# in the docstring of parse_caption; the words come from the tables at the top of the module.

#: The templates of :func:`render_claim`, by the kind of claim their slots hold, in the order the
#: parser tries them. Slots: ``{x}`` a noun phrase (a list of them for "list"), ``{a}``/``{b}`` noun
#: phrases, ``{r}`` a relation wording, ``{be}`` "is"/"are" agreeing with the number. "total" is
#: the count of every object ("there are three shapes in total"). A test renders claims with many
#: generators and checks that every template here is used and every rendering parses, so the two
#: lists cannot drift apart silently.
_TEMPLATES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("relation", ("{a} {r} {b}", "there is {a} {r} {b}", "{r} {b} there is {a}", "{a} is {r} {b}",
                  "a picture with {a} {r} {b}")),
    ("total", ("there {be} {x} in total", "{x} in the picture", "a scene with exactly {x}", "the image shows {x}")),
    ("count", ("there {be} {x}", "{x}", "exactly {x}", "the picture has {x}", "we can see {x}")),
    ("exists", ("there is {x}", "{x}", "a picture of {x}", "an image with {x}", "{x} on a dark background",
                "this scene contains {x}", "{x} can be seen here")),
    ("list", ("{x}", "a scene with {x}", "the picture shows {x}", "{x} on a dark background")),
)

_ARTICLES = ("a", "the")  # "an" is rewritten to "a" before matching (see _normalise)


def _plural(noun: str) -> str:
    """The plural as :func:`_noun_phrase` makes it: 'boxes', 'crosses', 'plus signs', 'round shapes'."""
    return noun + ("es" if noun.endswith(("x", "s")) else "s")


# word -> meaning, derived from the tables so that the parser follows any change to them
_NOUN_MEANING: dict[str, tuple[str | None, bool]] = {  # noun -> (shape, or None for "shape"/"thing"; plural?)
    **{w: (shape, False) for shape, ws in SHAPE_WORDS.items() for w in ws},
    **{_plural(w): (shape, True) for shape, ws in SHAPE_WORDS.items() for w in ws},
    **{w: (None, False) for w in GENERIC_NOUNS},
    **{_plural(w): (None, True) for w in GENERIC_NOUNS},
}
_SIZE_MEANING = {w: size for size, ws in SIZE_WORDS.items() for w in ws}
_RELATION_MEANING = {w: rel for rel, ws in RELATION_WORDS.items() for w in ws}
_NUMBER_MEANING = {w: i for i, w in enumerate(NUMBER_WORDS)}


def _alternation(words) -> str:
    """A regex group matching any of ``words``, longest first ("to the left of" before "left of",
    "round shape" before "shape"), so the first alternative tried is the one a reader would take."""
    return "(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=lambda w: (-len(w), w))) + ")"


_DET_RE = "(?:" + _alternation((*_ARTICLES, *NUMBER_WORDS)) + "|[0-9]{1,6})"  # digits: "12 stars"
_SIZE_RE = _alternation(_SIZE_MEANING)
_COLOR_RE = _alternation(COLORS)
_NOUN_RE = _alternation(_NOUN_MEANING)
# one noun phrase, without groups (used inside the templates) and with named groups (to read it)
_NP_RE = rf"{_DET_RE} (?:{_SIZE_RE} )?(?:{_COLOR_RE} )?{_NOUN_RE}"
_NP_PARTS = re.compile(
    rf"(?P<det>{_DET_RE}) (?:(?P<size>{_SIZE_RE}) )?(?:(?P<color>{_COLOR_RE}) )?(?P<noun>{_NOUN_RE})")
_LIST_RE = rf"{_NP_RE}(?: {_NP_RE})* and {_NP_RE}|{_NP_RE}"  # "X", "X and Y", "X, Y and Z" (commas removed)


def _normalise(text: str) -> str:
    """Lower case, commas dropped, single spaces, and the article "an" read as "a" ("a orange box" is
    accepted too). Commas carry no meaning in the grammar, and the course's word tokenizer drops them,
    so a model's "a red box a blue star and a disc" reads as the list "a red box, a blue star and a disc"."""
    return " ".join("a" if w == "an" else w for w in text.lower().replace(",", " ").split())


def _template_regex(kind: str, template: str) -> re.Pattern:
    slots = {"x": _LIST_RE if kind == "list" else _NP_RE, "a": _NP_RE, "b": _NP_RE,
             "r": _alternation(_RELATION_MEANING), "be": "is|are"}
    parts = re.split(r"\{(\w+)\}", _normalise(template))  # literal, slot name, literal, ...
    return re.compile("".join(f"(?P<{p}>{slots[p]})" if i % 2 else re.escape(p) for i, p in enumerate(parts)))


_TEMPLATE_REGEXES = [(kind, t, _template_regex(kind, t)) for kind, ts in _TEMPLATES for t in ts]


class _Phrase(NamedTuple):
    desc: Desc
    n: int  # number of objects it says
    article: bool  # said with a/an/the rather than a number


def _phrase(text: str) -> _Phrase | None:
    """Read one noun phrase ("two small red boxes"), or None.

    "a red circles", "two red circle" and "one red circles" are rejected (number and noun disagree).
    """
    m = _NP_PARTS.fullmatch(text)
    if m is None:
        return None
    shape, plural = _NOUN_MEANING[m["noun"]]
    det = m["det"]
    article = det in _ARTICLES
    n = 1 if article else _NUMBER_MEANING[det] if det in _NUMBER_MEANING else int(det)
    if plural != (n != 1):
        return None
    return _Phrase(Desc(color=m["color"], shape=shape, size=_SIZE_MEANING.get(m["size"])), n, article)


def _disjoint(a: Desc, b: Desc) -> bool:
    """Whether no object can match both: some attribute is stated by both, with different values."""
    return any(x is not None and y is not None and x != y
               for x, y in ((a.color, b.color), (a.shape, b.shape), (a.size, b.size)))


def _list_claim(items: list[_Phrase]) -> Claim | None:
    """A list of exact counts. The same description said twice counts twice ("a white triangle and a
    white triangle": two white triangles); two descriptions that one object could both match ("a red
    circle and a circle") have no single reading: None. render_claim writes neither."""
    counts: dict[Desc, int] = {}
    for desc, n, _ in items:
        counts[desc] = counts.get(desc, 0) + n
    descs = list(counts)
    if any(not _disjoint(a, b) for i, a in enumerate(descs) for b in descs[i + 1:]):
        return None
    return Claim("list", items=tuple(counts.items()))


def _claim_from_match(kind: str, m: re.Match) -> Claim | None:
    """The claim stated by a template match, or None when its slots break the template's rules."""
    if kind == "relation":
        a, b = _phrase(m["a"]), _phrase(m["b"])
        if a is None or b is None or not (a.article and b.article):  # "a X left of a Y": articles only
            return None
        return Claim("relation", a=a.desc, b=b.desc, rel=_RELATION_MEANING[m["r"]])
    if kind == "list":
        items = [_phrase(p) for p in re.findall(_NP_RE, m["x"])]  # each phrase starts with its determiner
        if any(p is None for p in items):
            return None
        if len(items) == 1:  # one phrase alone: read as "exists" or "count" (see parse_caption)
            desc, n, article = items[0]
            return Claim("exists", a=desc) if article else Claim("count", a=desc, n=n)
        return _list_claim(items)
    p = _phrase(m["x"])
    if p is None:
        return None
    desc, n, article = p
    if kind == "exists":
        return Claim("exists", a=desc) if article else None
    # "count" and "total": a number, "there is" with one object and "there are" otherwise
    if article or (m.groupdict().get("be") is not None and (m["be"] == "is") != (n == 1)):
        return None
    if kind == "total" and desc != Desc():  # "three shapes in total", never "three red shapes in total"
        return None
    return Claim("count", a=desc, n=n)


def _readings(text: str):
    """Every ``(kind, template, claim)`` under which ``text`` parses, in the order of _TEMPLATES.

    For a caption of the grammar all the claims are the same (a test checks it); :func:`parse_caption`
    takes the first.
    """
    text = _normalise(text)
    for kind, template, regex in _TEMPLATE_REGEXES:
        m = regex.fullmatch(text)
        if m is not None:
            claim = _claim_from_match(kind, m)
            if claim is not None:
                yield kind, template, claim


def parse_caption(text: str) -> Claim | None:
    """The claim a caption of the grammar states (the inverse of :func:`render_claim`), or None.

    Matching ignores case and extra whitespace. Every caption that :func:`render_claim` writes parses
    to a claim with the same meaning; anything else (a repeated or unknown word, a missing noun, a
    truncated caption, "[SEP]", a final full stop) gives None. Commas are ignored.

    The grammar (``_TEMPLATES`` lists every template; "an" is read as "a")::

        NP       := DET [size] [colour] noun    "a big red box", "two circles", "the thing", "12 stars"
        DET      := a | the                     one object, singular noun
                  | zero .. ten | digits        n objects, plural noun unless n is 1 ("one box")
        exists   := "there is NP" | "NP" | "a picture of NP" | ...       NP with a/the
        count    := "there is/are NP" | "NP" | "exactly NP" | ...         NP with a number
        total    := "there are N shapes in total" | "the image shows N things" | ...  every object
        relation := "NP REL NP" | "REL NP there is NP" | "NP is REL NP" | ...    NPs with a/the
        list     := "NP, NP and NP" in "{x}", "a scene with {x}", "the picture shows {x}", ...

    Where the grammar is ambiguous, the reading a person would take:

    * a single phrase with an article, "a red circle" (also "a scene with a red circle", which
      :func:`render_claim` writes for a one-item "list" claim meaning *exactly* one), is read as
      ``exists``: at least one red circle. So the :func:`hard_negative` "an orange star" of the
      one-item list "two orange stars" (exactly one: false) reads as true of that scene;
    * a single phrase with a number, "two red circles", "one red circle", "3 stars", is ``count``
      (exactly n; a one-item list says the same);
    * two or more phrases joined by ", " and " and " are a ``list`` of exact counts, where
      "a red circle" in the list means exactly one; a description said twice adds up ("a white
      triangle and a white triangle" claims two), and descriptions one object could both match
      ("a red circle and a circle") give None; the commas are optional (the course's tokenizer
      drops them, so a model never writes them);
    * "a" and "an" are interchangeable ("a orange box" is accepted: the meaning does not change);
      "the" reads like "a" (no check that the object is the only one);
    * "one red circle" and digits are accepted in a list too, though render_claim writes neither there.

    Examples::

        parse_caption("two small blue boxes")
        # Claim("count", a=Desc(color="blue", shape="square", size="small"), n=2)
        parse_caption("left of a blue box there is a red circle")
        # Claim("relation", a=Desc(color="red", shape="circle"), b=Desc(color="blue", shape="square"),
        #       rel="left of")
        parse_caption("a red circle circle")   # None

    Raises:
        ValueError: if ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise ValueError(f"parse_caption expects the caption as a str, got {type(text).__name__}")
    for _kind, _template, claim in _readings(text):
        return claim
    return None


def caption_is_true(scene: Scene, text: str) -> bool | None:
    """Whether the caption ``text`` is true of ``scene``: None when it does not parse
    (:func:`parse_caption`), else :func:`claim_holds` of its claim.

    Raises:
        ValueError: if ``text`` is not a str or ``scene`` is not a :class:`Scene`.
    """
    if not isinstance(scene, Scene):
        raise ValueError(f"caption_is_true expects a Scene, got {type(scene).__name__}")
    claim = parse_caption(text)
    return None if claim is None else claim_holds(scene, claim)
