"""VQA: the official accuracy, soft scores, the VQA v2 file formats, and questions about the scenes.

**Accuracy.** A VQA v2 question has 10 human answers. The official evaluation
(GT-Vision-Lab/VQA, ``PythonEvaluationTools/vqaEvaluation/vqaEval.py``) scores a prediction by
leaving out each annotator in turn: with the 9 others, the prediction earns ``min(1, matches / 3)``;
the accuracy is the mean over the 10 subsets. Before comparing, it replaces newlines and tabs by
spaces and strips both the prediction and the answers; only when the 10 answers are **not all
identical** does it also normalise them (:func:`normalize_answer`: punctuation, number words to
digits, articles dropped, missing apostrophes restored). So "yes." scores 0 against ten "yes" but
1 against nine "yes" and a "no". :func:`vqa_accuracy` reproduces that rule by hand, as the file
stands since commit a013f00 (March 2021); before it, the prediction was always normalised and the
answers only by punctuation, so older copies of the script score a few predictions differently.

**Soft scores.** Training targets (bottom-up-attention-vqa ``tools/compute_softscore.py``,
VisualBERT, LXMERT): an answer given by k of the 10 annotators gets ``min(1, 0.3 k)``, i.e. 0.3, 0.6,
0.9, 1.0 for k = 1, 2, 3, >= 4, which is the official accuracy of predicting it (averaged over the
10 subsets, rounded to one decimal for k = 3: exact is 0.9).

**Files.** :func:`load_vqa` reads the official questions + annotations JSON (the same loader reads
VQA v2 on Colab), :func:`load_vqa_results` a results file ``[{"question_id", "answer"}]``,
:func:`evaluate_vqa` gives the overall, per-question-type and per-answer-type accuracies in percent,
rounded to 2 decimals, as the official code prints them. :func:`write_vqa` writes our questions in
that format.

**Questions about scenes.** :func:`scene_questions` makes questions of the three VQA answer types
(yes/no; number; other: colour, shape, relation) with 10 simulated annotators who sometimes
disagree (a per-question difficulty, confusable colours and shapes, counts off by one, and surface
variants such as "two" for "2" or "Red" for "red").
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from vlp_course.data.captions import Claim, Desc, claim_holds, count_matching, hard_negative, _noun_phrase
from vlp_course.data.scenes import COLORS, SHAPES, Scene, relation_holds

__all__ = [
    "normalize_answer", "process_punctuation", "process_digit_article", "vqa_accuracy", "soft_score",
    "soft_scores", "VQAQuestion", "load_vqa", "load_vqa_results", "evaluate_vqa", "write_vqa",
    "AnswerVocab", "scene_questions", "ANSWER_TYPES",
]

ANSWER_TYPES = ("yes/no", "number", "other")

# --- the official normalisation tables (vqaEval.py) ------------------------------------------
# Missing-apostrophe forms and their spelling (stored here as "from=to" pairs).
_CONTRACTION_PAIRS = """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've
hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's
howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd
itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't
mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've
neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at
'ow'sat='ow's'at shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've
shouldnt=shouldn't shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd
somebodyd've=somebody'd've somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's
someoned=someone'd someoned've=someone'd've someone'dve=someone'd've someonell=someone'll
someones=someone's somethingd=something'd somethingd've=something'd've something'dve=something'd've
somethingll=something'll thats=that's thered=there'd thered've=there'd've there'dve=there'd've
therere=there're theres=there's theyd=they'd theyd've=they'd've they'dve=they'd've theyll=they'll
theyre=they're theyve=they've twas='twas wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've
werent=weren't whatll=what'll whatre=what're whats=what's whatve=what've whens=when's whered=where'd
wheres=where's whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's
whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll
yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've
you'dve=you'd've youll=you'll youre=you're youve=you've
"""
CONTRACTIONS: dict[str, str] = dict(p.split("=", 1) for p in _CONTRACTION_PAIRS.split())
NUMBER_MAP: dict[str, str] = {w: str(i) for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"])}
NUMBER_MAP["none"] = "0"
ARTICLES = ("a", "an", "the")
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
# A period not followed by a digit is removed. (The official pattern starts with "(?!<=\d)", a
# look-ahead that is always true, not the look-behind it seems to mean; we keep it for parity.)
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def process_punctuation(text: str) -> str:
    """The official punctuation step: each mark is deleted if it touches a space somewhere in the
    text (or the text holds a digit-comma-digit such as "1,000"), else replaced by a space; then
    periods not followed by a digit are removed."""
    out = text
    has_number_comma = _COMMA_STRIP.search(text) is not None
    for p in PUNCTUATION:
        if (p + " " in text or " " + p in text) or has_number_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=32)  # the official call passes re.UNICODE (32) as the count


def process_digit_article(text: str) -> str:
    """The official word step: lower case, number words zero..ten (and "none") to digits, articles
    a/an/the dropped, missing apostrophes restored ("dont" -> "don't")."""
    words = []
    for w in text.lower().split():
        w = NUMBER_MAP.get(w, w)
        if w not in ARTICLES:
            words.append(w)
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


@lru_cache(maxsize=65536)
def normalize_answer(text: str) -> str:
    """Whitespace clean-up, then :func:`process_punctuation` and :func:`process_digit_article`."""
    return process_digit_article(process_punctuation(_clean(text)))


def _check_answers(gt_answers: Sequence[str], where: str = "") -> list[str]:
    if isinstance(gt_answers, str) or not isinstance(gt_answers, Sequence):
        raise ValueError(f"{where}the ground truth must be a list of 10 answer strings, got {type(gt_answers).__name__}")
    if len(gt_answers) != 10:
        raise ValueError(f"{where}VQA needs exactly 10 ground-truth answers per question, got {len(gt_answers)}")
    if not all(isinstance(a, str) for a in gt_answers):
        raise ValueError(f"{where}every ground-truth answer must be a string")
    return list(gt_answers)


def vqa_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
    """Official VQA accuracy of one prediction against the 10 human answers, in [0, 1].

    ``mean over the 10 annotators i of min(1, #{j != i : answer_j == prediction} / 3)``, after the
    official clean-up (always) and normalisation (only when the answers are not all identical).

    Raises:
        ValueError: if there are not exactly 10 answers or the prediction is not a string.
    """
    gts = [_clean(a) for a in _check_answers(gt_answers)]
    if not isinstance(prediction, str):
        raise ValueError(f"the prediction must be a string, got {type(prediction).__name__}")
    pred = _clean(prediction)
    if len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(a)) for a in gts]
        pred = process_digit_article(process_punctuation(pred))
    matches = sum(a == pred for a in gts)
    # leaving out annotator i removes one match exactly when annotator i gave the prediction
    accs = [min(1.0, (matches - (a == pred)) / 3.0) for a in gts]
    return float(sum(accs) / len(accs))


def soft_score(count: int) -> float:
    """Soft score of an answer given by ``count`` of the 10 annotators: 0, 0.3, 0.6, 0.9, then 1.0."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return (0.0, 0.3, 0.6, 0.9)[count] if count < 4 else 1.0


def soft_scores(gt_answers: Sequence[str], *, normalize: bool = True) -> dict[str, float]:
    """Soft score of every distinct answer among the 10: ``{answer: soft_score(count)}``.

    Args:
        normalize: apply :func:`normalize_answer` to every answer first (as the bottom-up-attention
            preprocessing does), so "Two" and "2" count together.

    Raises:
        ValueError: if there are not exactly 10 answers.
    """
    gts = _check_answers(gt_answers)
    gts = [normalize_answer(a) if normalize else a for a in gts]
    return {a: soft_score(c) for a, c in Counter(gts).items()}


# ---------------------------------------------------------------------------------------------
# Files in the official VQA v2 format
# ---------------------------------------------------------------------------------------------

@dataclass
class VQAQuestion:
    """One question with its annotation (the fields of the two official files, merged)."""

    question_id: int
    image_id: int
    question: str
    answers: list[str] = field(default_factory=list)
    answer_type: str = ""
    question_type: str = ""
    multiple_choice_answer: str = ""
    answer_confidence: list[str] = field(default_factory=list)

    def to_question(self) -> dict:
        return {"image_id": self.image_id, "question": self.question, "question_id": self.question_id}

    def to_annotation(self) -> dict:
        conf = self.answer_confidence or ["yes"] * len(self.answers)
        return {
            "question_type": self.question_type, "multiple_choice_answer": self.multiple_choice_answer,
            "answers": [{"answer": a, "answer_confidence": c, "answer_id": k + 1}
                        for k, (a, c) in enumerate(zip(self.answers, conf))],
            "image_id": self.image_id, "answer_type": self.answer_type, "question_id": self.question_id,
        }


def _read_json(path, what: str):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{what} file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} file {path} is not valid JSON: {err}") from None


def _as_id(value, where: str, key: str = "question_id") -> int:
    """An id from a VQA file: a JSON integer (an integral float such as 11.0 is accepted as 11).

    The official tools use the ids as dictionary keys and compare them as numbers, so "11" (a
    string), 11.7 or true would never match a question; ``int()`` would silently turn 11.7 into 11.

    Raises:
        ValueError: naming ``where`` (file and entry), the key and the value, if it is not an integer.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: {key} must be an integer, got {value!r} ({type(value).__name__})")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{where}: {key} must be an integer, got {value!r} (not a whole number; "
                         "it would be truncated to a different question)")
    return int(value)


def load_vqa(questions_path, annotations_path=None) -> dict[int, VQAQuestion]:
    """Read VQA v2 questions (and annotations) JSON into ``{question_id: VQAQuestion}``.

    Questions file: ``{"questions": [{"image_id", "question", "question_id"}, ...], ...}``.
    Annotations file: ``{"annotations": [{"question_id", "image_id", "question_type", "answer_type",
    "multiple_choice_answer", "answers": [{"answer", "answer_confidence", "answer_id"} x 10]}, ...]}``.
    Without annotations (a test split) the answers stay empty.

    Raises:
        ValueError: naming the file and the entry: a missing key, an id that is not an integer
            (11.7, "11"), an annotation without ``answers`` or without exactly 10 answers, an
            annotation for an unknown question, a question id given twice, a second annotation for
            the same question (it would silently replace the first).
    """
    q = _read_json(questions_path, "VQA questions")
    if not isinstance(q, dict) or "questions" not in q:
        raise ValueError(f"{questions_path}: a VQA questions file is a JSON object with a 'questions' list")
    out: dict[int, VQAQuestion] = {}
    for k, item in enumerate(q["questions"]):
        if not isinstance(item, dict):
            raise ValueError(f"{questions_path}: question {k} must be an object "
                             f"{{'image_id', 'question', 'question_id'}}, got {type(item).__name__}")
        missing = {"image_id", "question", "question_id"} - set(item)
        if missing:
            raise ValueError(f"{questions_path}: question {k} lacks {sorted(missing)}")
        where = f"{questions_path}: question {k}"
        qid = _as_id(item["question_id"], where)
        if qid in out:
            raise ValueError(f"{questions_path}: question_id {qid} appears twice")
        if not isinstance(item["question"], str):
            raise ValueError(f"{where} (question_id {qid}): 'question' must be a string, got {type(item['question']).__name__}")
        out[qid] = VQAQuestion(qid, _as_id(item["image_id"], where, "image_id"), item["question"])
    if annotations_path is None:
        return out
    a = _read_json(annotations_path, "VQA annotations")
    if not isinstance(a, dict) or "annotations" not in a:
        raise ValueError(f"{annotations_path}: a VQA annotations file is a JSON object with an 'annotations' list")
    seen: dict[int, int] = {}  # question_id -> the annotation's index
    for k, ann in enumerate(a["annotations"]):
        if not isinstance(ann, dict) or "question_id" not in ann:
            raise ValueError(f"{annotations_path}: annotation {k} has no 'question_id'")
        qid = _as_id(ann["question_id"], f"{annotations_path}: annotation {k}")
        if qid not in out:
            raise ValueError(f"{annotations_path}: annotation {k} is for question_id {qid}, which is not in the questions file")
        if qid in seen:
            raise ValueError(f"{annotations_path}: annotations {seen[qid]} and {k} are both for question_id {qid}; "
                             "each question has exactly one annotation (with its 10 answers)")
        if "answers" not in ann:
            raise ValueError(f"{annotations_path}: annotation of question {qid} has no 'answers' (expected 10 answers)")
        answers = ann["answers"]
        if not isinstance(answers, list) or len(answers) != 10:
            n = len(answers) if isinstance(answers, list) else type(answers).__name__
            raise ValueError(f"{annotations_path}: question {qid} has {n} answers; VQA v2 has exactly 10")
        if not all(isinstance(x, dict) and isinstance(x.get("answer"), str) for x in answers):
            raise ValueError(f"{annotations_path}: question {qid}: each answer must be {{'answer': str, ...}}")
        for key in ("answer_type", "question_type", "multiple_choice_answer"):
            if key not in ann:
                raise ValueError(f"{annotations_path}: annotation of question {qid} has no {key!r}")
        rec = out[qid]
        rec.answers = [x["answer"] for x in answers]
        rec.answer_confidence = [x.get("answer_confidence", "yes") for x in answers]
        rec.answer_type = ann["answer_type"]
        rec.question_type = ann["question_type"]
        rec.multiple_choice_answer = ann["multiple_choice_answer"]
        seen[qid] = k
    if set(seen) != set(out):
        missing = sorted(set(out) - set(seen))
        raise ValueError(f"{annotations_path}: {len(missing)} questions have no annotation, e.g. {missing[:5]}")
    return out


def load_vqa_results(path_or_list, question_ids: Iterable[int] | None = None) -> dict[int, str]:
    """Read a results file ``[{"question_id": int, "answer": str}, ...]`` into ``{question_id: answer}``.

    Args:
        path_or_list: the results file, or the list itself.
        question_ids: the questions the results must answer (as the official ``loadRes`` asserts:
            every one, and no other).

    Raises:
        ValueError: naming the file and the entry: an entry that is not an object, has no
            ``question_id`` or a non-integer one (11.7 is refused, not read as 11), has no
            ``answer`` or a non-string one; a question id answered twice; and (with
            ``question_ids``) unknown question ids or questions left unanswered.
    """
    src = "VQA results" if isinstance(path_or_list, list) else str(path_or_list)
    data = path_or_list if isinstance(path_or_list, list) else _read_json(path_or_list, "VQA results")
    if not isinstance(data, list):
        raise ValueError(f"{src}: a VQA results file is a JSON list of {{'question_id': int, 'answer': str}} objects, "
                         f"got {type(data).__name__}")
    out: dict[int, str] = {}
    first: dict[int, int] = {}
    for k, r in enumerate(data):
        where = f"{src}: result {k}"
        if not isinstance(r, dict):
            raise ValueError(f"{where} must be an object {{'question_id': int, 'answer': str}}, got {r!r}")
        if "question_id" not in r:
            raise ValueError(f"{where} has no 'question_id' (expected {{'question_id': int, 'answer': str}}), got {r!r}")
        qid = _as_id(r["question_id"], where)
        if "answer" not in r:
            raise ValueError(f"{where} (question_id {qid}) has no 'answer'; every result needs an answer string")
        if not isinstance(r["answer"], str):
            raise ValueError(f"{where} (question_id {qid}): 'answer' must be a string, got {r['answer']!r}")
        if qid in out:
            raise ValueError(f"{src}: results {first[qid]} and {k} both answer question_id {qid}; answer each question once")
        out[qid], first[qid] = r["answer"], k
    if question_ids is not None:
        known = {_as_id(q, "question_ids") for q in question_ids}
        unknown = sorted(set(out) - known)
        if unknown:
            raise ValueError(f"{src}: results answer {len(unknown)} question ids that are not among the questions, "
                             f"e.g. {unknown[:5]}")
        missing = sorted(known - set(out))
        if missing:
            raise ValueError(f"{src}: results do not answer {len(missing)} questions, e.g. {missing[:5]}; "
                             "the official evaluation needs an answer for every question")
    return out


def evaluate_vqa(questions: dict[int, VQAQuestion], results: dict[int, str], ndigits: int = 2) -> dict:
    """The official evaluation: accuracies in percent, rounded to ``ndigits`` as vqaEval.py does.

    Returns:
        ``{"overall": float, "perQuestionType": {type: float}, "perAnswerType": {type: float},
        "perQuestion": {question_id: accuracy in [0, 1], unrounded}}``

    Raises:
        ValueError: if a question has no 10 answers, or the results miss or add a question.
    """
    load_vqa_results([{"question_id": q, "answer": a} for q, a in results.items()], questions.keys())
    per_q, by_qt, by_at = {}, {}, {}
    for qid, rec in questions.items():
        acc = vqa_accuracy(results[qid], _check_answers(rec.answers, f"question {qid}: "))
        per_q[qid] = acc
        by_qt.setdefault(rec.question_type, []).append(acc)
        by_at.setdefault(rec.answer_type, []).append(acc)
    if not per_q:
        raise ValueError("no questions to evaluate")

    def pct(v):
        return round(100 * float(sum(v)) / len(v), ndigits)

    return {
        "overall": pct(list(per_q.values())),
        "perQuestionType": {k: pct(v) for k, v in by_qt.items()},
        "perAnswerType": {k: pct(v) for k, v in by_at.items()},
        "perQuestion": per_q,
    }


def _atomic_write_text(path: Path, text: str) -> None:
    from vlp_course.files import atomic_write_text

    atomic_write_text(path, text)


def write_vqa(questions: Sequence[VQAQuestion], out_dir, *, split: str = "val2014", prefix: str = "synthscenes") -> tuple[Path, Path]:
    """Write ``{prefix}_OpenEnded_mscoco_{split}_questions.json`` and ``{prefix}_mscoco_{split}_annotations.json``.

    The layout is VQA v2's (the file names follow ``v2_OpenEnded_mscoco_val2014_questions.json``).
    Returns the two paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {"description": "Synthetic scenes of the vlp-course, in VQA v2 format", "version": "2.0"}
    qfile = out_dir / f"{prefix}_OpenEnded_mscoco_{split}_questions.json"
    afile = out_dir / f"{prefix}_mscoco_{split}_annotations.json"
    _atomic_write_text(qfile, json.dumps({"info": info, "task_type": "Open-Ended", "data_type": "mscoco",
                                          "data_subtype": split, "questions": [q.to_question() for q in questions]}))
    _atomic_write_text(afile, json.dumps({"info": info, "data_type": "mscoco", "data_subtype": split,
                                          "annotations": [q.to_annotation() for q in questions]}))
    return qfile, afile


# ---------------------------------------------------------------------------------------------
# Answer vocabulary
# ---------------------------------------------------------------------------------------------

class AnswerVocab:
    """The answers a VQA classifier chooses from, with soft-score targets.

    Build it from training questions: every normalised answer given at least ``min_count`` times
    (real VQA v2 setups keep answers seen >= 9 times, 3,129 answers).
    """

    def __init__(self, answers: Sequence[str]):
        self.answers = list(answers)
        self.index = {a: i for i, a in enumerate(self.answers)}
        if len(self.index) != len(self.answers):
            raise ValueError("answers must be distinct")

    @classmethod
    def from_questions(cls, questions: Iterable[VQAQuestion], min_count: int = 1) -> "AnswerVocab":
        c = Counter(normalize_answer(a) for q in questions for a in q.answers)
        return cls(sorted(a for a, n in c.items() if n >= min_count))

    def __len__(self) -> int:
        return len(self.answers)

    def targets(self, gt_answers: Sequence[str]) -> np.ndarray:
        """(len(vocab),) float32 soft-score target; answers outside the vocabulary are dropped."""
        t = np.zeros(len(self.answers), dtype=np.float32)
        for a, s in soft_scores(gt_answers).items():
            if a in self.index:
                t[self.index[a]] = s
        return t

    def decode(self, index: int) -> str:
        return self.answers[int(index)]


# ---------------------------------------------------------------------------------------------
# Questions about scenes, with simulated annotators
# ---------------------------------------------------------------------------------------------

_CONFUSE_COLOR = {"red": ("orange", "purple"), "orange": ("red", "yellow"), "yellow": ("orange", "white"),
                  "green": ("blue", "yellow"), "blue": ("purple", "green"), "purple": ("blue", "red"),
                  "white": ("yellow", "gray")}
_CONFUSE_SHAPE = {"circle": ("diamond", "star"), "square": ("diamond", "cross"), "triangle": ("star", "diamond"),
                  "diamond": ("square", "circle"), "cross": ("star", "square"), "star": ("cross", "triangle")}
_CONFUSE_REL = {"left": ("right", "above", "below"), "right": ("left", "above", "below"),
                "above": ("below", "left", "right"), "below": ("above", "left", "right")}


def _wrong_answer(answer: str, answer_type: str, rng: np.random.Generator) -> str:
    if answer_type == "yes/no":
        return "no" if answer == "yes" else "yes"
    if answer_type == "number":
        n = int(answer)
        return str(n + 1) if (n == 0 or rng.random() < 0.5) else str(n - 1)
    for table in (_CONFUSE_COLOR, _CONFUSE_SHAPE, _CONFUSE_REL):
        if answer in table:
            opts = table[answer]
            return opts[int(rng.integers(len(opts)))]
    return answer


def _surface_variant(answer: str, rng: np.random.Generator) -> str:
    """How a careless annotator may type the same answer ("two" for "2", "Red", "a star")."""
    r = rng.random()
    if answer.isdigit() and int(answer) <= 10 and r < 0.5:
        return ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"][int(answer)]
    if r < 0.5:
        return answer.capitalize()
    if answer in SHAPES:
        return "a " + answer
    return answer + "."


def simulate_annotators(answer: str, answer_type: str, rng: np.random.Generator, *, n: int = 10,
                        difficulty: float | None = None) -> tuple[list[str], list[str]]:
    """``n`` human-like answers around the true ``answer`` and their ``answer_confidence``.

    Each question draws a difficulty (probability that an annotator errs, mostly small, up to 0.5);
    an erring annotator gives a confusable answer; 5% of the answers are surface variants of the
    right one ("two", "Red", "a star") that the official normalisation maps back.
    """
    d = float(min(0.5, rng.beta(1.0, 5.0))) if difficulty is None else float(difficulty)
    u = rng.random((n, 3)).tolist()  # per annotator: errs?, variant?, confidence
    answers, conf = [], []
    for err, var, c in u:
        if err < d:
            answers.append(_wrong_answer(answer, answer_type, rng))
            conf.append(("maybe", "no", "yes")[int(c * 3)])
        else:
            answers.append(_surface_variant(answer, rng) if var < 0.05 else answer)
            conf.append("yes" if c < 0.85 else "maybe")
    return answers, conf


def _unique_desc(scene: Scene, idx: int, hide: str) -> Desc | None:
    """The shortest description of object ``idx`` not using attribute ``hide`` that picks it alone."""
    o = scene.objects[idx]
    keys_options = [("shape",), ("color",), ("size", "shape"), ("color", "shape"), ("size", "color"),
                    ("size", "color", "shape")]
    for keys in keys_options:
        if hide in keys:
            continue
        d = Desc.of(o, keys)
        if count_matching(scene, d) == 1:
            return d
    return None


def _the(d: Desc, rng: np.random.Generator) -> str:
    return _noun_phrase(d, rng, article="the")


def _one_question(scene: Scene, kind: str, rng: np.random.Generator):
    """(question, answer, answer_type, question_type) or None if this kind does not fit the scene."""
    objs = scene.objects
    i = int(rng.integers(len(objs)))
    o = objs[i]
    if kind == "exists":
        claim = Claim("exists", a=Desc.of(o, (("color", "shape"), ("shape",), ("size", "shape"))[int(rng.integers(3))]))
        ans = "yes"
        if rng.random() < 0.5:
            neg = hard_negative(scene, claim, rng)
            if neg is not None:
                claim, ans = neg.claim, "no"
        return f"is there {_noun_phrase(claim.a, rng)}?", ans, "yes/no", "is there a"
    if kind == "relation_yn":
        from vlp_course.data.scenes import RELATIONS

        pairs = [(a, r, b) for a in range(len(objs)) for b in range(len(objs)) if a != b
                 for r in RELATIONS[:4] if relation_holds(objs[a], r, objs[b], scene.image_size)]
        if not pairs:
            return None
        a, r, b = pairs[int(rng.integers(len(pairs)))]
        da, db = _unique_desc(scene, a, ""), _unique_desc(scene, b, "")
        if da is None or db is None:
            return None
        if rng.random() < 0.5:
            others = [r2 for r2 in RELATIONS[:4] if not relation_holds(objs[a], r2, objs[b], scene.image_size)]
            r = others[int(rng.integers(len(others)))]
        ans = "yes" if relation_holds(objs[a], r, objs[b], scene.image_size) else "no"
        return f"is {_the(da, rng)} {r} {_the(db, rng)}?", ans, "yes/no", "is the"
    if kind == "count":
        u = rng.random()
        if u < 0.2:
            return "how many objects are there?", str(len(objs)), "number", "how many"
        keys = (("shape",), ("color",), ("color", "shape"))[int(rng.integers(3))]
        d = Desc.of(o, keys)
        if u > 0.9:  # sometimes ask about something absent
            d = Desc(color=COLORS[int(rng.integers(len(COLORS)))], shape=SHAPES[int(rng.integers(len(SHAPES)))])
        noun = _noun_phrase(d, rng, n=2).split(" ", 1)[1]  # plural without the number word
        return f"how many {noun} are there?", str(count_matching(scene, d)), "number", "how many"
    if kind == "color":
        d = _unique_desc(scene, i, "color")
        if d is None:
            return None
        return f"what color is {_the(d, rng)}?", o.color, "other", "what color is the"
    if kind == "shape":
        d = _unique_desc(scene, i, "shape")
        if d is None:
            return None
        what = _the(d, rng)
        if d.shape is None:
            what = what.rsplit(" ", 1)[0] + " object"
        return f"what shape is {what}?", o.shape, "other", "what shape is the"
    if kind == "where":
        if len(objs) < 2:
            return None
        j = int(rng.integers(len(objs) - 1))
        j = j + (j >= i)
        p = objs[j]
        dx = p.center[0] - o.center[0]
        dy = p.center[1] - o.center[1]
        if abs(abs(dx) - abs(dy)) < 4:  # too diagonal to have one answer
            return None
        ans = ("left" if dx > 0 else "right") if abs(dx) > abs(dy) else ("above" if dy > 0 else "below")
        da, db = _unique_desc(scene, i, ""), _unique_desc(scene, j, "")
        if da is None or db is None:
            return None
        return f"where is {_the(da, rng)} relative to {_the(db, rng)}?", ans, "other", "where is the"
    raise ValueError(f"unknown question kind {kind!r}")


QUESTION_KINDS = ("exists", "relation_yn", "count", "color", "shape", "where")


def scene_questions(scene: Scene, rng: np.random.Generator, n: int = 6, *, first_question_id: int | None = None) -> list[VQAQuestion]:
    """Up to ``n`` distinct questions about ``scene``, cycling over yes/no, number and other kinds.

    Question ids are ``scene_id * 1000 + k`` (VQA v2 style), unless ``first_question_id`` is given.
    ``multiple_choice_answer`` is the most frequent normalised answer of the 10.
    """
    base = scene.scene_id * 1000 if first_question_id is None else int(first_question_id)
    out: list[VQAQuestion] = []
    seen = set()
    order = list(QUESTION_KINDS)
    tries = 0
    while len(out) < n and tries < 6 * n:
        kind = order[tries % len(order)] if tries < len(order) else order[int(rng.integers(len(order)))]
        tries += 1
        q = _one_question(scene, kind, rng)
        if q is None or q[0] in seen:
            continue
        text, ans, atype, qtype = q
        seen.add(text)
        answers, conf = simulate_annotators(ans, atype, rng)
        mca = Counter(normalize_answer(a) for a in answers).most_common(1)[0][0]
        out.append(VQAQuestion(base + len(out), scene.scene_id, text, answers, atype, qtype, mca, conf))
    return out
