"""VQA accuracy, soft scores and the VQA v2 file formats.

The accuracy and its leave-one-annotator-out subsets follow the official evaluation
(GT-Vision-Lab/VQA ``PythonEvaluationTools/vqaEvaluation/vqaEval.py``; Goyal et al., CVPR 2017,
section 3, and Antol et al., ICCV 2015, section 4); the soft scores follow bottom-up-attention-vqa
``tools/compute_softscore.py`` (as discussed in facebookresearch/mmf issue 187 and GT-Vision-Lab/VQA
issue 1). The sample files in ``cases/`` are in the official VQA v2 formats."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vlp_course.data.scenes import make_scenes
from vlp_course.data.vqa import (
    AnswerVocab, VQAQuestion, evaluate_vqa, load_vqa, load_vqa_results, normalize_answer, process_punctuation,
    scene_questions, soft_score, soft_scores, vqa_accuracy, write_vqa,
)

CASES = Path(__file__).parent / "cases"
ACC = json.loads((CASES / "vqa_accuracy_cases.json").read_text())["cases"]


# --- soft scores and the leave-one-annotator-out accuracy ---------------------------------------

def test_soft_scores_of_ten_answers():
    s = soft_scores(["a", "b", "c", "a", "b", "c", "a", "b", "c", "a"], normalize=False)
    assert s == {"a": 1.0, "b": 0.9, "c": 0.9}
    # with words (the normalisation would drop the article "a")
    s = soft_scores(["red", "blue", "green", "red", "blue", "green", "red", "blue", "green", "red"])
    assert s == {"red": 1.0, "blue": 0.9, "green": 0.9}
    assert [soft_score(k) for k in range(6)] == [0.0, 0.3, 0.6, 0.9, 1.0, 1.0]


def test_eight_yes_two_no():
    gts = ["yes"] * 8 + ["no"] * 2
    assert vqa_accuracy("yes", gts) == pytest.approx(1.0)
    assert vqa_accuracy("no", gts) == pytest.approx(0.6)
    assert vqa_accuracy("maybe", gts) == 0.0


@pytest.mark.parametrize("k", range(11))
def test_soft_score_is_the_leave_one_out_accuracy(k):
    # k annotators say "cat", the others distinct answers: hand computation of the 10 subsets
    gts = ["cat"] * k + [f"w{j}" for j in range(10 - k)]
    by_hand = (k * min(1, (k - 1) / 3) + (10 - k) * min(1, k / 3)) / 10
    assert vqa_accuracy("cat", gts) == pytest.approx(by_hand, abs=1e-12)
    assert soft_score(k) == pytest.approx(round(by_hand, 1))


def test_normalisation_only_when_answers_disagree():
    assert vqa_accuracy("yes.", ["yes"] * 10) == 0.0  # unanimous: raw comparison
    assert vqa_accuracy("yes.", ["yes"] * 9 + ["no"]) == 1.0
    assert vqa_accuracy("  yes\n", ["yes"] * 10) == 1.0  # whitespace is always cleaned


@pytest.mark.parametrize("raw,norm", [
    ("1,000", "1000"), ("T-Shirt", "t shirt"), ("U.S.A", "usa"), ("dont know", "don't know"),
    ("A Dog", "dog"), ("two", "2"), ("none", "0"), ("eleven", "eleven"), ("3.5", "3.5"), ("fire, truck", "fire truck"),
])
def test_normalize_answer_by_hand(raw, norm):
    assert normalize_answer(raw) == norm


def test_punctuation_touching_a_space_is_deleted():
    assert process_punctuation("a-b") == "a b"
    assert process_punctuation("a - b") == "a  b"


@pytest.mark.parametrize("case", ACC, ids=[str(c["question_id"]) for c in ACC])
def test_accuracy_equals_official_for_every_case(case):
    assert vqa_accuracy(case["prediction"], case["answers"]) == pytest.approx(case["official_accuracy"], abs=1e-9)


def test_official_files_overall_and_per_answer_type():
    qs = load_vqa(CASES / "vqa_sample_questions.json", CASES / "vqa_sample_annotations.json")
    res = load_vqa_results(CASES / "vqa_sample_results.json", qs.keys())
    ev = evaluate_vqa(qs, res)
    official = {c["question_id"]: c["official_accuracy"] for c in ACC}
    assert set(ev["perQuestion"]) == set(official)
    for qid, acc in ev["perQuestion"].items():
        assert acc == pytest.approx(official[qid], abs=1e-9)
    assert ev["overall"] == round(100 * sum(official.values()) / len(official), 2)
    by_type: dict[str, list[float]] = {}
    for c in ACC:
        by_type.setdefault(c["answer_type"], []).append(c["official_accuracy"])
    assert ev["perAnswerType"] == {t: round(100 * sum(v) / len(v), 2) for t, v in by_type.items()}
    # hand check of the figures: yes/no 4 of 5 right; number (1 + 1 + 0.9) / 3
    assert ev["perAnswerType"]["yes/no"] == 80.0
    assert ev["perAnswerType"]["number"] == pytest.approx(96.67)
    assert ev["overall"] == pytest.approx(83.5)


# --- malformed files ----------------------------------------------------------------------------

def _write(tmp_path, name, obj):
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return p


def _sample(tmp_path):
    q = json.loads((CASES / "vqa_sample_questions.json").read_text())
    a = json.loads((CASES / "vqa_sample_annotations.json").read_text())
    return q, a


def test_missing_answers_is_a_value_error(tmp_path):
    q, a = _sample(tmp_path)
    del a["annotations"][3]["answers"]
    with pytest.raises(ValueError, match="no 'answers'"):
        load_vqa(_write(tmp_path, "q.json", q), _write(tmp_path, "a.json", a))


def test_not_ten_answers_is_a_value_error(tmp_path):
    q, a = _sample(tmp_path)
    a["annotations"][0]["answers"] = a["annotations"][0]["answers"][:9]
    with pytest.raises(ValueError, match="exactly 10"):
        load_vqa(_write(tmp_path, "q.json", q), _write(tmp_path, "a.json", a))
    with pytest.raises(ValueError, match="exactly 10"):
        vqa_accuracy("yes", ["yes"] * 9)
    with pytest.raises(ValueError, match="10"):
        soft_scores("yes yes")


def test_annotation_for_unknown_question_is_a_value_error(tmp_path):
    q, a = _sample(tmp_path)
    a["annotations"][0]["question_id"] = 1
    with pytest.raises(ValueError, match="not in the questions file"):
        load_vqa(_write(tmp_path, "q.json", q), _write(tmp_path, "a.json", a))


def test_results_with_unknown_or_missing_question_ids(tmp_path):
    qs = load_vqa(CASES / "vqa_sample_questions.json", CASES / "vqa_sample_annotations.json")
    res = json.loads((CASES / "vqa_sample_results.json").read_text())
    bad = res + [{"question_id": 123, "answer": "yes"}]
    with pytest.raises(ValueError, match=r"r\.json: results answer 1 question ids that are not among the questions, e\.g\. \[123\]"):
        load_vqa_results(_write(tmp_path, "r.json", bad), qs.keys())
    with pytest.raises(ValueError, match="do not answer"):
        load_vqa_results(res[1:], qs.keys())
    with pytest.raises(ValueError, match=rf"results 0 and {len(res)} both answer question_id {res[0]['question_id']}"):
        load_vqa_results(res + res[:1])
    with pytest.raises(ValueError, match="not valid JSON"):
        p = tmp_path / "broken.json"
        p.write_text("{")
        load_vqa_results(p)


def test_a_second_annotation_for_a_question_is_refused(tmp_path):
    q, a = _sample(tmp_path)
    dup = json.loads(json.dumps(a["annotations"][2]))
    dup["answers"] = [dict(x, answer="banana") for x in dup["answers"]]
    a["annotations"].append(dup)  # silently replacing the first would score the question against "banana"
    n, qid = len(a["annotations"]) - 1, dup["question_id"]
    with pytest.raises(ValueError, match=rf"a\.json: annotations 2 and {n} are both for question_id {qid}"):
        load_vqa(_write(tmp_path, "q.json", q), _write(tmp_path, "a.json", a))


@pytest.mark.parametrize("bad, why", [(910001000.7, "not a whole number"), ("910001000", "str"), (True, "bool"),
                                      (None, "NoneType")])
def test_non_integer_result_ids_are_refused_not_truncated(tmp_path, bad, why):
    qs = load_vqa(CASES / "vqa_sample_questions.json", CASES / "vqa_sample_annotations.json")
    res = json.loads((CASES / "vqa_sample_results.json").read_text())
    res[3]["question_id"] = bad
    path = _write(tmp_path, "r.json", res)
    with pytest.raises(ValueError, match=rf"r\.json: result 3: question_id must be an integer, got .*{why}"):
        load_vqa_results(path, qs.keys())


def test_integral_float_ids_are_the_same_question():
    """11.0 is the integer 11 (as it is for the official tools' dictionaries); 11.7 is not 11."""
    assert load_vqa_results([{"question_id": 11.0, "answer": "yes"}]) == {11: "yes"}
    with pytest.raises(ValueError, match="11.7"):
        load_vqa_results([{"question_id": 11.7, "answer": "yes"}])


def test_non_integer_ids_in_the_official_files_name_the_entry(tmp_path):
    q, a = _sample(tmp_path)
    q2 = json.loads(json.dumps(q))
    q2["questions"][4]["question_id"] = "910002002"
    with pytest.raises(ValueError, match=r"q\.json: question 4: question_id must be an integer, got '910002002' \(str\)"):
        load_vqa(_write(tmp_path, "q.json", q2))
    q2 = json.loads(json.dumps(q))
    q2["questions"][1]["image_id"] = 1.5
    with pytest.raises(ValueError, match=r"question 1: image_id must be an integer, got 1\.5"):
        load_vqa(_write(tmp_path, "q.json", q2))
    a["annotations"][6]["question_id"] = [1]
    with pytest.raises(ValueError, match=r"a\.json: annotation 6: question_id must be an integer, got \[1\] \(list\)"):
        load_vqa(_write(tmp_path, "q.json", q), _write(tmp_path, "a.json", a))


def test_results_without_an_answer_or_with_a_bad_entry(tmp_path):
    res = json.loads((CASES / "vqa_sample_results.json").read_text())
    no_answer = [dict(r) for r in res]
    del no_answer[5]["answer"]
    with pytest.raises(ValueError, match=rf"r\.json: result 5 \(question_id {res[5]['question_id']}\) has no 'answer'"):
        load_vqa_results(_write(tmp_path, "r.json", no_answer))
    with pytest.raises(ValueError, match=r"result 0 \(question_id 7\): 'answer' must be a string, got 3"):
        load_vqa_results([{"question_id": 7, "answer": 3}])
    with pytest.raises(ValueError, match=r"result 1 has no 'question_id'"):
        load_vqa_results([{"question_id": 7, "answer": "a"}, {"answer": "b"}])
    with pytest.raises(ValueError, match=r"result 0 must be an object"):
        load_vqa_results([[7, "a"]])
    with pytest.raises(ValueError, match=r"r\.json: a VQA results file is a JSON list .* got dict"):
        load_vqa_results(_write(tmp_path, "r.json", {"question_id": 7, "answer": "a"}))


def test_the_evaluation_refuses_results_for_other_questions():
    qs = load_vqa(CASES / "vqa_sample_questions.json", CASES / "vqa_sample_annotations.json")
    res = load_vqa_results(CASES / "vqa_sample_results.json", qs.keys())
    with pytest.raises(ValueError, match=r"not among the questions, e\.g\. \[5\]"):
        evaluate_vqa(qs, {**res, 5: "yes"})
    first = next(iter(res))
    with pytest.raises(ValueError, match=rf"do not answer 1 questions, e\.g\. \[{first}\]"):
        evaluate_vqa(qs, {k: v for k, v in res.items() if k != first})


# --- questions about scenes ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def questions():
    scenes = make_scenes(300, seed=5)
    rng = np.random.default_rng(0)
    return scenes, [q for sc in scenes for q in scene_questions(sc, rng, 6)]


def test_generated_questions_have_three_answer_types_and_ten_answers(questions):
    _, qs = questions
    types = Counter(q.answer_type for q in qs)
    assert set(types) == {"yes/no", "number", "other"} and min(types.values()) > 0.15 * len(qs)
    assert all(len(q.answers) == 10 and len(q.answer_confidence) == 10 for q in qs)
    assert len({q.question_id for q in qs}) == len(qs)
    yn = Counter(q.multiple_choice_answer for q in qs if q.answer_type == "yes/no")
    assert 0.35 < yn["yes"] / (yn["yes"] + yn["no"]) < 0.65  # balanced yes/no
    # annotators disagree on a fair share of questions, but the majority is usually unanimous enough
    disagree = np.mean([len(set(normalize_answer(a) for a in q.answers)) > 1 for q in qs])
    assert 0.2 < disagree < 0.8
    kinds = Counter(q.question_type for q in qs)
    assert {"how many", "what color is the", "what shape is the", "is there a"} <= set(kinds)


def test_generated_answers_are_true_for_the_scene(questions):
    scenes, qs = questions
    from vlp_course.data.captions import Desc, count_matching

    n_checked = 0
    for q in qs:
        sc = scenes[q.image_id]
        if q.question == "how many objects are there?":
            assert q.multiple_choice_answer == str(len(sc.objects)) or max(soft_scores(q.answers).values()) < 1
            n_checked += 1
        if q.question_type == "what color is the":
            # the majority answer is the colour of some object of the scene
            assert q.multiple_choice_answer in {o.color for o in sc.objects} or len(set(q.answers)) > 1
            n_checked += 1
    assert n_checked > 50


def test_vqa_files_round_trip(tmp_path, questions):
    _, qs = questions
    qf, af = write_vqa(qs[:40], tmp_path)
    back = load_vqa(qf, af)
    assert [back[q.question_id].answers for q in qs[:40]] == [q.answers for q in qs[:40]]
    assert back[qs[0].question_id].multiple_choice_answer == qs[0].multiple_choice_answer
    doc = json.loads(af.read_text())
    ans = doc["annotations"][0]["answers"][0]
    assert set(ans) == {"answer", "answer_confidence", "answer_id"}
    # a perfect model (predicting the multiple-choice answer) scores high but not 100
    ev = evaluate_vqa(back, {q: r.multiple_choice_answer for q, r in back.items()})
    assert 85 < ev["overall"] <= 100


def test_answer_vocab_targets():
    q = VQAQuestion(1, 1, "how many?", ["2", "2", "two", "3", "2", "2", "3", "2", "2", "4"], "number", "how many", "2")
    vocab = AnswerVocab.from_questions([q])
    assert vocab.answers == ["2", "3", "4"]
    np.testing.assert_allclose(vocab.targets(q.answers), [1.0, 0.6, 0.3])
