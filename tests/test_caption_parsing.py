"""parse_caption / caption_is_true: reading a caption of the synthetic scenes back into its claim."""

import time

import numpy as np
import pytest

from vlp_course.data import captions as capmod
from vlp_course.data.captions import (
    GENERIC_NOUNS, RELATION_WORDS, SHAPE_WORDS, SIZE_WORDS, Claim, Desc, caption_is_true, claim_holds,
    hard_negative, parse_caption, render_claim, scene_captions,
)
from vlp_course.data.scenes import COLORS, RELATIONS, SceneObject, make_scenes, render_scene


def _is_one_item_list_of_one(claim: Claim) -> bool:
    """The documented ambiguity: a one-item list claiming exactly one object, rendered "a red circle"."""
    return claim.kind == "list" and len(claim.items) == 1 and claim.items[0][1] == 1


def _expected_reading(claim: Claim) -> Claim:
    """The claim parse_caption gives for a rendering of ``claim`` (its docstring's rules)."""
    if claim.kind == "list" and len(claim.items) == 1:
        desc, n = claim.items[0]
        return Claim("exists", a=desc) if n == 1 else Claim("count", a=desc, n=n)
    return claim


# ---------------------------------------------------------------------------------------------
# 1. Round trip over the generator
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_every_generated_caption_parses_and_keeps_its_meaning(seed):
    scenes = list(make_scenes(400, seed))
    rng = np.random.default_rng(seed)
    pick = np.random.default_rng(100 + seed)
    n_pos = n_neg = n_no_neg = n_checks = n_documented = n_neg_read_true = 0
    bad_parse, wrong_truth, wrong_meaning, ambiguous = [], [], [], []
    for k, scene in enumerate(scenes):
        others = [scenes[j] for j in pick.choice(len(scenes), 21, replace=False) if j != k][:20]
        pairs = []
        for c in scene_captions(scene, rng, n=5):
            pairs.append((c, True))
            neg = hard_negative(scene, c.claim, rng)
            if neg is None:
                n_no_neg += 1
            else:
                pairs.append((neg, False))
        for cap, truth in pairs:
            n_pos += truth
            n_neg += not truth
            parsed = parse_caption(cap.text)
            if parsed is None:
                bad_parse.append(cap.text)
                continue
            documented = _is_one_item_list_of_one(cap.claim) and parsed == Claim("exists", a=cap.claim.items[0][0])
            if caption_is_true(scene, cap.text) is not truth:
                if documented and not truth:
                    # a hard negative of "two orange stars" (a one-item list) is "an orange star" (exactly
                    # one, false), which parse_caption reads as "at least one": true of the scene
                    n_neg_read_true += 1
                else:
                    wrong_truth.append((cap.text, truth))
            if len({claim for _, _, claim in capmod._readings(cap.text)}) != 1:
                ambiguous.append(cap.text)
            # meaning, not only truth on the own scene: the same truth value on 20 other scenes
            for other in others:
                n_checks += 1
                if claim_holds(other, parsed) != claim_holds(other, cap.claim):
                    if documented:
                        n_documented += 1  # "a red circle" read as at least one, generated as exactly one
                    else:
                        wrong_meaning.append((cap.text, cap.claim, parsed))
    counts = (f"seed {seed}: {len(scenes)} scenes, {n_pos} true captions, {n_neg} hard negatives "
              f"({n_no_neg} claims without one), {n_checks} checks on other scenes, {n_documented} differ "
              f"only by the documented one-item-list reading, {n_neg_read_true} hard negatives read as true by it")
    print(counts)
    assert n_pos == 5 * len(scenes), counts
    assert n_neg > 0.9 * n_pos, counts
    assert not bad_parse, f"{counts}; {len(bad_parse)} do not parse, e.g. {bad_parse[:5]}"
    assert not wrong_truth, f"{counts}; {len(wrong_truth)} with the wrong truth value, e.g. {wrong_truth[:5]}"
    assert not ambiguous, f"{counts}; {len(ambiguous)} with two different readings, e.g. {ambiguous[:5]}"
    assert not wrong_meaning, f"{counts}; {len(wrong_meaning)} change meaning, e.g. {wrong_meaning[:3]}"


# ---------------------------------------------------------------------------------------------
# 2. Every template and synonym of render_claim
# ---------------------------------------------------------------------------------------------

_CLAIMS = [
    Claim("exists", a=Desc(color="orange", shape="circle")),  # "an orange ..."
    Claim("exists", a=Desc(shape="square", size="small")),
    Claim("exists", a=Desc(color="red")),  # generic nouns: "a red thing"
    Claim("exists", a=Desc(color="white", shape="cross", size="large")),
    Claim("exists", a=Desc(shape="diamond")),
    Claim("exists", a=Desc(shape="triangle", color="green")),
    Claim("count", a=Desc(), n=1),  # "there is one shape in total"
    Claim("count", a=Desc(), n=3),
    Claim("count", a=Desc(shape="square"), n=2),  # "boxes"
    Claim("count", a=Desc(color="blue", shape="cross"), n=1),  # "one blue plus sign"
    Claim("count", a=Desc(color="green", shape="circle"), n=4),  # "round shapes"
    Claim("count", a=Desc(color="purple"), n=2),  # "two purple things"
    Claim("count", a=Desc(shape="star", size="small"), n=0),
    Claim("count", a=Desc(color="yellow", shape="triangle"), n=12),  # digits past ten
    *[Claim("relation", a=Desc(color="red", shape="circle"), b=Desc(color="blue", shape="square"), rel=r)
      for r in RELATIONS],
    Claim("relation", a=Desc(shape="diamond", size="large"), b=Desc(color="orange"), rel="next to"),
    Claim("list", items=((Desc(color="red", shape="circle"), 1),)),  # read as exists (documented)
    Claim("list", items=((Desc(color="red", shape="cross"), 3),)),  # read as count (same meaning)
    Claim("list", items=((Desc(color="red", shape="circle"), 1), (Desc(color="blue", shape="square"), 2))),
    Claim("list", items=((Desc(color="green", shape="circle", size="small"), 2),
                         (Desc(color="yellow", shape="cross", size="large"), 3),
                         (Desc(color="orange", shape="star", size="small"), 1))),
]


def _says(text: str, words: str) -> bool:
    return f" {words} " in f" {text} "


def test_every_template_and_synonym_parses_back_to_its_claim():
    used, texts, wrong = set(), [], []
    for claim in _CLAIMS:
        for seed in range(50):
            text = render_claim(claim, np.random.default_rng(seed))
            texts.append(text)
            readings = list(capmod._readings(text))
            used |= {(kind, template) for kind, template, _ in readings}
            expected = _expected_reading(claim)
            if parse_caption(text) != expected or {c for _, _, c in readings} != {expected}:
                wrong.append((text, claim, parse_caption(text)))
    assert not wrong, f"{len(wrong)} of {len(texts)} renderings parse to another claim, e.g. {wrong[:3]}"
    every = {(kind, t) for kind, ts in capmod._TEMPLATES for t in ts}
    assert used == every, f"templates never rendered: {sorted(every - used)}"
    words = ([w for ws in SHAPE_WORDS.values() for w in ws] + [w for ws in SIZE_WORDS.values() for w in ws]
             + [w for ws in RELATION_WORDS.values() for w in ws] + list(GENERIC_NOUNS)
             + ["an orange", "boxes", "crosses", "plus signs", "round shapes", "one blue", "zero", "12"])
    missing = [w for w in words if not any(_says(t, w) for t in texts)]
    assert not missing, f"never rendered: {missing}"


# ---------------------------------------------------------------------------------------------
# 3. Hand-written captions, accepted and rejected
# ---------------------------------------------------------------------------------------------

RED_CIRCLE, BLUE_BOX = Desc(color="red", shape="circle"), Desc(color="blue", shape="square")


@pytest.mark.parametrize("text, claim", [
    # exists: one phrase with a/an/the
    ("a red circle", Claim("exists", a=RED_CIRCLE)),
    ("  A   Red\tCIRCLE ", Claim("exists", a=RED_CIRCLE)),
    ("there is an orange plus sign", Claim("exists", a=Desc(color="orange", shape="cross"))),
    ("a orange disc can be seen here", Claim("exists", a=Desc(color="orange", shape="circle"))),  # wrong article
    ("an image with a little thing", Claim("exists", a=Desc(size="small"))),
    ("the red round shape", Claim("exists", a=RED_CIRCLE)),
    ("a scene with a red circle", Claim("exists", a=RED_CIRCLE)),  # one-item list: read as exists
    # count: a number
    ("two small blue boxes", Claim("count", a=Desc(color="blue", shape="square", size="small"), n=2)),
    ("there is one red circle", Claim("count", a=RED_CIRCLE, n=1)),
    ("there are three crosses", Claim("count", a=Desc(shape="cross"), n=3)),
    ("we can see zero big stars", Claim("count", a=Desc(shape="star", size="large"), n=0)),
    ("exactly 12 red stars", Claim("count", a=Desc(color="red", shape="star"), n=12)),
    ("two green plus signs on a dark background", Claim("count", a=Desc(color="green", shape="cross"), n=2)),
    # count of every object
    ("there are three shapes in total", Claim("count", a=Desc(), n=3)),
    ("there is one object in total", Claim("count", a=Desc(), n=1)),
    ("the image shows two things", Claim("count", a=Desc(), n=2)),
    ("a scene with exactly four shapes", Claim("count", a=Desc(), n=4)),
    # relation
    ("a red circle left of a blue box", Claim("relation", a=RED_CIRCLE, b=BLUE_BOX, rel="left of")),
    ("left of a blue box there is a red circle", Claim("relation", a=RED_CIRCLE, b=BLUE_BOX, rel="left of")),
    ("a big green rhombus is to the right of a tiny white round shape",
     Claim("relation", a=Desc(color="green", shape="diamond", size="large"),
           b=Desc(color="white", shape="circle", size="small"), rel="right of")),
    ("a picture with an object beneath a yellow star",
     Claim("relation", a=Desc(), b=Desc(color="yellow", shape="star"), rel="below")),
    # list: two or more phrases, exact counts
    ("a red circle and two blue boxes", Claim("list", items=((RED_CIRCLE, 1), (BLUE_BOX, 2)))),
    ("the picture shows a red circle, two blue boxes and a little star",
     Claim("list", items=((RED_CIRCLE, 1), (BLUE_BOX, 2), (Desc(shape="star", size="small"), 1)))),
    ("a scene with two green round shapes and three yellow plus signs",
     Claim("list", items=((Desc(color="green", shape="circle"), 2), (Desc(color="yellow", shape="cross"), 3)))),
])
def test_hand_written_captions(text, claim):
    assert parse_caption(text) == claim


def test_purple_is_a_colour_and_pink_is_not():
    assert "purple" in COLORS and "pink" not in COLORS
    assert parse_caption("a purple circle") == Claim("exists", a=Desc(color="purple", shape="circle"))


@pytest.mark.parametrize("text", [
    "", "   ", "a", "red", "circle", "a red", "red circle", "a red circle circle", "a red circle left of",
    "a red circle left of a blue", "two red", "a pink circle", "the the red circle", "a red circle [SEP]",
    "[CLS] a red circle", "a red circle and", "a red circle and and two blue boxes", "a red circle, a blue box",
    "a red circle near a blue zebra", "a red small circle",
    "a red circles", "two red circle", "one red circles", "there is two red circles", "there are one red circle",
    "there are three red shapes in total", "one red circle left of a blue box", "a red circle.",
    "a red circle left of left of a blue box", "there is there is a red circle", "exactly a red circle",
    "a picture of two red circles", "eleven red circles",
])
def test_captions_outside_the_grammar_give_none(text):
    assert parse_caption(text) is None


def test_long_garbage_gives_none_quickly():
    rng = np.random.default_rng(0)
    vocab = ["a", "red", "circle", "and", ",", "left", "of", "there", "is", "two", "boxes", "the", "zebra"]
    garbage = [
        " ".join(rng.choice(vocab, 5000)),
        "a red circle and " * 2000 + "a",
        "a red circle, " * 2000 + "and a",
        "9" * 5000 + " red circles",
        "x" * 100_000,
    ]
    t0 = time.perf_counter()
    assert all(parse_caption(g) is None for g in garbage)
    assert time.perf_counter() - t0 < 5.0


# ---------------------------------------------------------------------------------------------
# 4. caption_is_true on a hand-built scene
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def red_circle_left_of_blue_square():
    # large red circle (19 px) at x 4..23, small blue square (12 px) at x 40..52, same height band:
    # left of, not next to (gap 17 px > 0.12 * 64), not above/below
    return render_scene([SceneObject("circle", "red", "large", 4, 20), SceneObject("square", "blue", "small", 40, 22)],
                        image_size=64, background="plain")


@pytest.mark.parametrize("text, expected", [
    ("a red circle left of a blue box", True),
    ("to the right of a red disc there is a small blue square", True),
    ("a blue square to the left of a red circle", False),
    ("a red circle next to a blue box", False),
    ("a red circle above a blue box", False),
    ("there are two shapes in total", True),
    ("the image shows three things", False),
    ("the picture has one large red disc", True),
    ("exactly two red circles", False),
    ("a red circle and a small blue box", True),
    ("a red circle and a large blue box", False),
    ("a green circle", False),
    ("an orange thing", False),
    ("a red circle circle", None),
    ("a red circle [SEP]", None),
])
def test_caption_is_true(red_circle_left_of_blue_square, text, expected):
    assert caption_is_true(red_circle_left_of_blue_square, text) is expected


# ---------------------------------------------------------------------------------------------
# 5. Argument types
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [None, 3, b"a red circle", ["a", "red", "circle"]])
def test_a_caption_that_is_not_a_str_raises(bad, red_circle_left_of_blue_square):
    with pytest.raises(ValueError, match="str"):
        parse_caption(bad)
    with pytest.raises(ValueError, match="str"):
        caption_is_true(red_circle_left_of_blue_square, bad)


def test_a_scene_that_is_not_a_scene_raises():
    with pytest.raises(ValueError, match="Scene"):
        caption_is_true("a red circle", "a red circle")


def test_commas_are_optional_as_the_word_tokenizer_drops_them():
    # the course's tokenizer drops punctuation, so a captioner writes lists without commas
    with_commas = parse_caption("a red circle, a blue box and a star")
    assert with_commas == parse_caption("a red circle a blue box and a star") == parse_caption("a red circle, a blue box, and a star")
    assert with_commas.kind == "list" and len(with_commas.items) == 3
    assert parse_caption("a red circle a blue box") is None  # still no list without "and"


def test_a_list_adds_up_repeated_items_and_refuses_overlapping_ones():
    # captioners write lists that repeat an item; each phrase is one more object
    two = parse_caption("the picture shows a white triangle and a white triangle")
    assert two == Claim("list", items=((Desc(color="white", shape="triangle"), 2),))
    three = parse_caption("two red circles and a red circle")
    assert three == Claim("list", items=((Desc(color="red", shape="circle"), 3),))
    # one object could match both descriptions: no single reading
    assert parse_caption("a red circle and a circle") is None
    assert parse_caption("a red circle and a small thing") is None
    # disjoint descriptions stay separate items
    assert parse_caption("a red circle and a blue circle") == Claim(
        "list", items=((Desc(color="red", shape="circle"), 1), (Desc(color="blue", shape="circle"), 1)))
