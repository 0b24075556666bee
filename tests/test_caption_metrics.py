"""Caption metrics (vlp_course.data.caption_metrics) against pycocoevalcap run the standard way.

``cases/caption_metric_cases.json`` holds 8 candidate / reference sets and the scores that
pycocoevalcap 1.2 gives them through its standard pipeline (:func:`standard_pipeline`: PTBTokenizer
on the references and on the candidates, then each scorer, as ``COCOEvalCap.evaluate`` does without
SPICE). They were computed once with ``python tests/test_caption_metrics.py --write``; a test
recomputes them whenever Java is present, so the file cannot silently go stale. The Python
fallback tokenizer must reproduce PTBTokenizer on those captions, on the stored ``tokenizer_cases``
(no Java needed) and on a few hundred generated scene captions (Java needed).
"""

from __future__ import annotations

import json
import math
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from vlp_course.data import caption_metrics as cm
from vlp_course.data.caption_metrics import caption_scores, fallback_tokenize, tokenize_captions
from vlp_course.data.captions import scene_captions
from vlp_course.data.scenes import make_scenes

CASE_FILE = Path(__file__).parent / "cases" / "caption_metric_cases.json"
try:
    DATA = json.loads(CASE_FILE.read_text(encoding="utf-8"))
except FileNotFoundError:
    if __name__ != "__main__":  # only --write may run without it
        raise
    DATA = {"cases": [], "expected": {}}
CASES = DATA["cases"]
CANDIDATES = {c["id"]: c["candidate"] for c in CASES}
REFERENCES = {c["id"]: c["references"] for c in CASES}
EXPECTED = DATA["expected"]
NO_METEOR = [m for m in cm.METRICS if m != "METEOR"]
needs_java = pytest.mark.skipif(not cm.java_available(), reason="no `java` on the PATH: PTBTokenizer and METEOR "
                                "are Java programs (the no-Java path is tested with use_java=False)")


def close(x):
    return pytest.approx(x, rel=1e-9, abs=1e-12)


def standard_pipeline(cases) -> dict:
    """pycocoevalcap 1.2 as ``pycocoevalcap/eval.py`` runs it, minus SPICE (which downloads a model)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({c["id"]: [{"caption": r} for r in c["references"]] for c in cases})
    res = tokenizer.tokenize({c["id"]: [{"caption": c["candidate"]}] for c in cases})
    scores, per = {}, {}
    for scorer, names in [(Bleu(4), ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"]), (Meteor(), ["METEOR"]),
                          (Rouge(), ["ROUGE-L"]), (Cider(), ["CIDEr-D"])]:
        score, each = scorer.compute_score(gts, res)
        if len(names) == 1:
            score, each = [score], [each]
        for name, s, e in zip(names, score, each):
            scores[name], per[name] = float(s), [float(x) for x in e]
    return {"scores": scores, "per_caption": per, "ptb_candidates": [res[c["id"]][0] for c in cases],
            "ptb_references": [gts[c["id"]] for c in cases]}


def ptb(captions: list[str]) -> list[str]:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    out = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    return [out[i][0] for i in range(len(captions))]


@pytest.fixture(scope="module")
def live():
    return standard_pipeline(CASES)


@pytest.fixture(scope="module")
def with_java():
    return caption_scores(CANDIDATES, REFERENCES, use_java=True)


# --- parity with the stored standard-pipeline numbers --------------------------------------------

@needs_java
def test_the_stored_numbers_are_what_pycocoevalcap_gives_now(live):
    assert version("pycocoevalcap") == DATA["pycocoevalcap_version"]
    assert live["ptb_candidates"] == [c["ptb_candidate"] for c in CASES]
    assert live["ptb_references"] == [c["ptb_references"] for c in CASES]
    assert live["scores"] == close(EXPECTED["scores"])
    for m in cm.METRICS:
        assert live["per_caption"][m] == close(EXPECTED["per_caption"][m]), m
    raw, tokens = zip(*DATA["tokenizer_cases"])
    assert ptb(list(raw)) == list(tokens)


@needs_java
def test_caption_scores_with_java_equal_the_standard_pipeline(with_java):
    assert list(with_java) == list(cm.METRICS) and with_java.note == "" and with_java.skipped == ()
    assert with_java.tokenizer == "PTBTokenizer (Java)" and with_java.ids == list(CANDIDATES)
    assert dict(with_java) == close(EXPECTED["scores"])
    for m in cm.METRICS:
        assert with_java.per_caption[m] == close(EXPECTED["per_caption"][m]), m


def test_caption_scores_without_java_equal_the_standard_pipeline_but_meteor():
    s = caption_scores(CANDIDATES, REFERENCES, use_java=False)
    assert list(s) == NO_METEOR and "METEOR" not in s.per_caption
    assert dict(s) == close({m: EXPECTED["scores"][m] for m in NO_METEOR})
    for m in NO_METEOR:
        assert s.per_caption[m] == close(EXPECTED["per_caption"][m]), m


# --- the fallback tokenizer ----------------------------------------------------------------------

def test_fallback_tokenizer_gives_the_stored_ptb_tokens():
    for c in CASES:
        assert fallback_tokenize(c["candidate"]) == c["ptb_candidate"]
        assert [fallback_tokenize(r) for r in c["references"]] == c["ptb_references"]
    for raw, tokens in DATA["tokenizer_cases"]:
        assert fallback_tokenize(raw) == tokens, raw
    assert tokenize_captions({7: ["A red circle.", "don't"]}, use_java=False) == {7: ["a red circle", "do n't"]}


@needs_java
def test_fallback_tokenizer_equals_ptb_on_generated_scene_captions():
    rng = np.random.default_rng(0)
    texts = [c.text for scene in make_scenes(80, seed=0) for c in scene_captions(scene, rng, n=5)]
    # the same captions as a person might type them: capital, final punctuation, a comma
    texts += [t[0].upper() + t[1:] + ".!?"[i % 3] for i, t in enumerate(texts[:100])]
    texts += [t.replace(" and ", ", and ").replace(" a ", " a (") + ")" for t in texts[:50]]
    assert len(texts) == 550
    captions = {f"img{i}": [t] for i, t in enumerate(texts)}
    assert tokenize_captions(captions, use_java=False) == tokenize_captions(captions, use_java=True)
    assert [fallback_tokenize(t) for t in texts] == ptb(texts)


# --- values worked out by hand -------------------------------------------------------------------

def test_bleu1_by_hand_and_bleu_is_corpus_level():
    # candidate "a red red circle" (4 words), reference "a red circle left of a box" (7 words):
    # candidate counts a 1, red 2, circle 1; clipped by the reference's (a 2, red 1, circle 1)
    # to 1 + 1 + 1 = 3, so p1 = 3/4; brevity penalty exp(1 - r/c) = exp(1 - 7/4) = 0.4723666;
    # BLEU-1 = 0.75 * 0.4723666 = 0.3542749.
    one = caption_scores({"a": "a red red circle"}, {"a": ["a red circle left of a box"]}, use_java=False)
    assert one["BLEU-1"] == pytest.approx(0.75 * math.exp(-0.75), rel=1e-6)
    assert one["BLEU-1"] == pytest.approx(0.3542749, abs=1e-7)
    # add "a blue box" against "a blue box": corpus BLEU-1 pools the counts, (3 + 3) / (4 + 3), and
    # the lengths, c = 7, r = 10: 6/7 * exp(1 - 10/7) = 0.5583763, not the mean of the per-caption
    # scores (0.3542749 + 1) / 2 = 0.6771375.
    two = caption_scores({"a": "a red red circle", "b": "a blue box"},
                         {"a": ["a red circle left of a box"], "b": ["a blue box"]}, use_java=False)
    assert two["BLEU-1"] == pytest.approx(6 / 7 * math.exp(1 - 10 / 7), rel=1e-6)
    assert two.per_caption["BLEU-1"] == pytest.approx([0.75 * math.exp(-0.75), 1.0], rel=1e-6)


def test_identical_captions_score_one_and_cider_d_needs_a_set():
    same = {"s1": "two small blue boxes", "s2": "a big red circle", "s3": "one green star"}
    s = caption_scores(same, {k: [v] for k, v in same.items()}, use_java=False)
    assert s["BLEU-4"] == pytest.approx(1.0, abs=1e-6) and s["ROUGE-L"] == pytest.approx(1.0, abs=1e-12)
    # CIDEr-D of a caption identical to its only reference: cosine 1 for every n that has an
    # n-gram, times 10, averaged over n = 1..4; a 3-word caption has no 4-gram: 10 * 3/4 = 7.5.
    assert s.per_caption["CIDEr-D"] == pytest.approx([10.0, 10.0, 7.5], abs=1e-9)
    # the idf comes from the evaluated set: with one image every idf is log(1) - log(1) = 0
    one = caption_scores({"s1": same["s1"]}, {"s1": [same["s1"]]}, use_java=False)
    assert one["CIDEr-D"] == 0.0 and one["BLEU-4"] == pytest.approx(1.0, abs=1e-6)


# --- bad input -----------------------------------------------------------------------------------

BAD = [
    ({}, {}, "candidates is empty"),
    (["a red circle"], {0: ["a red circle"]}, "candidates must be a dict"),
    ({1: "a red circle", 2: "a box", 3: "a star"}, {1: ["a red disc"], 4: ["a star"]},
     r"same keys: 2 candidate key\(s\) with no references \(e\.g\. \[2, 3\]\), 1 reference key\(s\) with no "
     r"candidate \(e\.g\. \[4\]\)"),
    ({1: "a red circle"}, {1: "a red circle"}, r"references\[1\] is a string; expected a list of reference strings"),
    ({1: "a red circle"}, {1: []}, r"references\[1\] must be a non-empty list"),
    ({1: "a red circle"}, {1: None}, r"references\[1\] must be a non-empty list"),
    ({1: "a red circle"}, {1: ["a red disc", ""]}, r"references\[1\]\[1\] must be a non-empty string"),
    ({1: "a red circle"}, {1: ["a red disc", 3]}, r"references\[1\]\[1\] must be a non-empty string"),
    ({"x": ["a red circle"]}, {"x": ["a red disc"]}, r"candidates\['x'\] must be one caption string, got list"),
    ({"x": None}, {"x": ["a red disc"]}, r"candidates\['x'\] must be one caption string"),
    ({"x": "  \n"}, {"x": ["a red disc"]}, r"candidates\['x'\] is empty.*silently score it 0"),
    ({"x": "..."}, {"x": ["a red disc"]}, r"candidates\['x'\] is empty after tokenisation \('\.\.\.' has only punct"),
    ({"x": "a disc"}, {"x": ["a red disc", "!"]}, r"references\['x'\]\[1\] is empty after tokenisation"),
]


@pytest.mark.parametrize("candidates, references, message", BAD)
def test_bad_input_is_refused_with_a_clear_message(candidates, references, message):
    with pytest.raises(ValueError, match=message):
        caption_scores(candidates, references, use_java=False)


@needs_java
def test_punctuation_only_caption_is_refused_after_ptb_too():
    with pytest.raises(ValueError, match=r"candidates\[5\] is empty after tokenisation"):
        caption_scores({5: "?"}, {5: ["a red disc"]}, use_java=True)


def test_tokenize_captions_refuses_a_string_instead_of_a_list():
    with pytest.raises(ValueError, match=r"captions\[1\] is a string; expected a list"):
        tokenize_captions({1: "a red circle"}, use_java=False)


# --- without Java (Colab) ------------------------------------------------------------------------

def test_without_java_meteor_is_skipped_and_the_note_says_why(monkeypatch):
    forced = caption_scores(CANDIDATES, REFERENCES, use_java=False)
    assert "METEOR" not in forced and forced.skipped == ("METEOR",)
    assert forced.note.startswith("METEOR skipped: no Java (pycocoevalcap's METEOR runs a Java jar)")
    assert forced.tokenizer == "fallback_tokenize (Python)" and "METEOR skipped" in repr(forced)
    monkeypatch.setattr(cm, "java_available", lambda: False)  # as on Colab
    auto = caption_scores(CANDIDATES, REFERENCES)
    assert auto.note == "METEOR skipped: no Java (pycocoevalcap's METEOR runs a Java jar)"
    assert dict(auto) == dict(forced)
    with pytest.raises(RuntimeError, match="use_java=True but no `java`"):
        caption_scores(CANDIDATES, REFERENCES, use_java=True)


# --- writing the case file (run once, by hand) ---------------------------------------------------

_CASES = [
    ("a red circle left of a blue box",
     ["a red circle to the left of a blue square", "a blue box right of a red circle", "A red disc is left of a blue box."]),
    ("two small green triangles",
     ["two little green triangles", "Two small green triangles.", "a scene with two tiny green triangles"]),
    ("A scene with a red star, two blue boxes and a green cross.",
     ["a scene with a red star, two blue boxes and a green cross", "a red star, two blue squares and a green plus sign",
      "three shapes: a red star, two blue blocks and a green cross"]),
    ("A red circle.", ["a red circle", "a big red disc", "There's a red circle above a yellow star."]),
    ("a large yellow diamond above a small purple star",
     ["a big yellow rhombus over a small purple star", "a yellow diamond (large) above a purple star",
      "The purple star is below the yellow diamond!"]),
    ("three objects: a blue disc, a red block and a green triangle",
     ["a blue circle, a red square and a green triangle", "Three shapes; a blue disc, a red box, a green triangle.",
      "the picture's three objects are blue, red and green"]),
    ("a green cross next to an orange square",
     ["a green plus sign beside an orange box", "an orange square near a green cross",
      "It's a \"green cross\" next to an orange square..."]),
    ("one tiny white triangle", ["a small white triangle", "one little white triangle",
                                 "a single white triangle - tiny, isn't it?"]),
]
_TOKENIZER_CASES = [
    "A man riding a wave on top of a surfboard.", "a cat laying on a persons lap , looking at the camera",
    "A woman's hand holding a cell phone.", "An old-fashioned clock tower in the city.",
    'A sign that says "STOP" on a pole.', "A bus (number 12) driving down the street.",
    "Is this a bathroom? Yes, with a toilet and sink.", "A pizza with pepperoni & cheese on it",
    "Some people at a table, eating dinner...", "A 5-year-old boy flying a kite",
    "A black and white photo of a street in the 1950's.", "A close up of a sandwich cut in half: ham & cheese",
    "A teddy bear sitting on a bed - it's brown.", "A train is pulling into the station at 3:45 p.m.",
    "A plane flying in the blue sky over the U.S. capitol", "People can't find their luggage at the airport.",
    "A group of kids who're playing soccer", "A  laptop computer sitting on top of a desk .",
    "Hot dogs with ketchup/mustard on a plate", "A motorcycle parked on the side of the road!!",
    "'A cat on a couch'", "A table with wine glasses, e.g. red and white", "Food on a plate: rice, beans, etc.",
    "A stop sign at the corner of 5th Ave. and Main St.", "A man in a suit and tie at a podium. He's speaking.",
    "A computer desk w/ a printer", "THE CAT IS ON THE MAT.", "A shelf with books [and toys] {and games}",
    "He said \u201ccheese!\u201d \u2014 it\u2019s a photo\u2026", "what?! really?", "I cannot see 1,000 boxes",
    "100% sure, $5", "the boys' toys", "x-ray -dash x- well--ok", "a b. c d and the letter a.",
]


def _write_case_file() -> None:
    cases = [{"id": i + 1, "candidate": c, "references": r} for i, (c, r) in enumerate(_CASES)]
    std = standard_pipeline(cases)
    for c, tc, tr in zip(cases, std["ptb_candidates"], std["ptb_references"]):
        c["ptb_candidate"], c["ptb_references"] = tc, tr
    data = {
        "description": "Captions of synthetic scenes (lower case, and a few typed with capitals and punctuation so "
                       "that tokenisation matters), one candidate per image id with 3 references each, and the "
                       "scores pycocoevalcap gives them through its standard pipeline: PTBTokenizer().tokenize on "
                       "the references and on the candidates (ptb_* fields), then Bleu(4), Meteor(), Rouge() and "
                       "Cider() compute_score(gts, res) as pycocoevalcap/eval.py COCOEvalCap.evaluate does, without "
                       "SPICE (standard_pipeline in tests/test_caption_metrics.py; written by running that file "
                       "with --write). per_caption lists follow the order of cases. tokenizer_cases: more captions "
                       "with their PTBTokenizer output (after pycocoevalcap drops its PUNCTUATIONS), which the "
                       "Python fallback must reproduce.",
        "pycocoevalcap_version": version("pycocoevalcap"),
        "cases": cases,
        "expected": {"scores": std["scores"], "per_caption": std["per_caption"]},
        "tokenizer_cases": [list(p) for p in zip(_TOKENIZER_CASES, ptb(_TOKENIZER_CASES))],
    }
    CASE_FILE.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    _write_case_file()
