"""Checks for the exercises of notebook 14 (VQA as a task).

Each check runs the learner's function on seeded inputs and compares it with the stored outputs of
the course's reference (``answers/vqa.json``, computed from :mod:`vlp_course.data.vqa`,
:func:`vlp_course.pretraining.losses.vqa_bce_loss` and :func:`vlp_course.models.visualbert.vqa_kl_loss`).
Sources: the official evaluation, GT-Vision-Lab/VQA ``PythonEvaluationTools/vqaEvaluation/vqaEval.py``
(Antol et al. 2015, section 4; Goyal et al. 2017, section 3); the soft scores of
bottom-up-attention-vqa ``tools/compute_softscore.py``; the losses of airsplay/lxmert
``src/tasks/vqa.py`` (binary cross-entropy times the number of answers) and uclanlp/visualbert
``visualbert/pytorch_pretrained_bert/modeling.py`` (``TrainVisualBERTObjective``:
``KLDivLoss(reduction="batchmean")`` on the log-softmax).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from vlp_course.exercises import Exercise, run_exercise

__all__ = ["check_vqa_accuracy", "check_soft_scores", "check_vqa_losses", "EXERCISES"]

#: the answers a careless annotator of the scenes may type for the canonical ones (see ``simulate_annotators``)
_VARIANTS = {"2": ["two", "2.", "Two"], "red": ["Red", "red."], "star": ["a star", "Star", "star."],
             "yes": ["yes.", "Yes"], "left": ["Left", "left."], "0": ["zero", "none", "0."]}


def _annotators(rng: np.random.Generator, answer: str, wrong: str, n_wrong: int, n_variant: int) -> list[str]:
    """Ten answers: ``n_wrong`` times ``wrong``, ``n_variant`` surface variants of ``answer``, the rest ``answer``."""
    out = [wrong] * n_wrong + [str(rng.choice(_VARIANTS[answer])) for _ in range(n_variant)]
    out += [answer] * (10 - len(out))
    return [str(a) for a in rng.permutation(out)]


def _accuracy_cases():
    cases = [
        ("'yes' against ten 'yes'", ("yes", ["yes"] * 10), {}),
        ("'yes.' against ten 'yes': unanimous, compared as typed", ("yes.", ["yes"] * 10), {}),
        ("'yes.' against nine 'yes' and one 'no': normalised", ("yes.", ["yes"] * 9 + ["no"]), {}),
        ("'2' against ten 'two': unanimous", ("2", ["two"] * 10), {}),
        ("' red ' against ten 'red': whitespace is always stripped", (" red ", ["red"] * 10), {}),
        ("'2' against two, 2, 2, 3, Two, 2, 3, 3, 3, 4", ("2", ["two", "2", "2", "3", "Two", "2", "3", "3", "3", "4"]), {}),
        ("'Red' against three 'red', seven 'orange'", ("Red", ["red"] * 3 + ["orange"] * 7), {}),
        ("'a star' against two 'star', eight 'cross'", ("a star", ["star"] * 2 + ["cross"] * 8), {}),
    ]
    rng = np.random.default_rng(14)
    for answer, wrong in (("2", "3"), ("red", "orange"), ("star", "cross"), ("yes", "no"), ("left", "right"), ("0", "1")):
        n_wrong, n_variant = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        gts = _annotators(rng, answer, wrong, n_wrong, n_variant)
        for pred in (answer, wrong):
            cases.append((f"{pred!r} against {gts}", (pred, gts), {}))
    return cases


_VOCAB = ["0", "1", "2", "3", "blue", "circle", "cross", "left", "no", "orange", "red", "right", "star", "yes"]


def _soft_score_cases():
    cases = [
        ("ten 'yes', vocabulary ['no', 'yes']", (["yes"] * 10, ["no", "yes"]), {}),
        ("8 'yes' and 2 'no', vocabulary ['yes', 'no']", (["yes"] * 8 + ["no"] * 2, ["yes", "no"]), {}),
        ("variants: two, 2, 2, 3, Two, 2, 3, 3, 3, 4", (["two", "2", "2", "3", "Two", "2", "3", "3", "3", "4"], list(_VOCAB)), {}),
        ("answers outside the vocabulary (maybe, purple)", (["maybe"] * 4 + ["purple"] * 3 + ["no"] * 3, list(_VOCAB)), {}),
        ("a star, Star, star.", (["a star", "Star", "star.", "star", "cross", "cross", "star", "star", "cross", "star"],
                                 list(_VOCAB)), {}),
    ]
    rng = np.random.default_rng(41)
    for answer, wrong in (("red", "orange"), ("0", "1"), ("left", "right")):
        gts = _annotators(rng, answer, wrong, int(rng.integers(1, 5)), int(rng.integers(1, 4)))
        vocab = [str(v) for v in rng.permutation(_VOCAB)]
        cases.append((f"{gts}, shuffled vocabulary", (gts, vocab), {}))
    return cases


def _loss_cases():
    g = torch.Generator().manual_seed(0)
    levels = torch.tensor([0.0, 0.3, 0.6, 0.9, 1.0])
    cases = [("one question, 3 answers", (torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([[1.0, 0.3, 0.0]])), {}),
             ("two questions, one with no answer in the vocabulary",
              (torch.tensor([[0.1, 0.2, -0.3, 1.5], [1.0, 0.0, -2.0, 0.5]]),
               torch.tensor([[0.0, 0.6, 0.0, 0.9], [0.0, 0.0, 0.0, 0.0]])), {})]
    for B, A in ((4, 6), (8, 26)):
        logits = torch.randn(B, A, generator=g) * 2
        scores = levels[torch.randint(0, 5, (B, A), generator=g)] * (torch.rand(B, A, generator=g) < 0.2)
        cases.append((f"B={B}, A={A}, random logits and soft scores", (logits, scores), {}))
    return cases


def _as_float_tensor(x):
    try:
        return torch.as_tensor(np.asarray(x, dtype=np.float32))
    except Exception:  # leave odd answers to compare(), which explains what is wrong
        return x


def _as_two_numbers(out):
    if not isinstance(out, (tuple, list)):
        raise ValueError(f"your function returned a {type(out).__name__}; expected a tuple (bce, kl) of two numbers")
    return tuple(out)


EXERCISES = {
    "official VQA accuracy": Exercise(_accuracy_cases, atol=1e-6),
    "soft-score targets": Exercise(_soft_score_cases, postprocess=_as_float_tensor, atol=1e-6),
    "VQA losses (BCE, KL)": Exercise(_loss_cases, postprocess=_as_two_numbers, atol=1e-5),
}


def check_vqa_accuracy(fn: Callable) -> None:
    """Check ``fn(prediction: str, answers: list of 10 str) -> float``: the official VQA accuracy with its
    clean-up (newlines and tabs to spaces, then strip) and its normalisation
    (:func:`vlp_course.data.vqa.normalize_answer`, applied only when the ten cleaned answers are not all the same)."""
    run_exercise("vqa", "official VQA accuracy", EXERCISES, fn)


def check_soft_scores(fn: Callable) -> None:
    """Check ``fn(answers: list of 10 str, vocab: list of A str) -> (A,)`` float soft-score target: each
    answer normalised, counted, scored min(1, 0.3 count), placed at its vocabulary index; answers
    outside the vocabulary are dropped."""
    run_exercise("vqa", "soft-score targets", EXERCISES, fn)


def check_vqa_losses(fn: Callable) -> None:
    """Check ``fn(logits (B, A), soft_scores (B, A)) -> (bce, kl)``: the binary cross-entropy summed over
    answers and averaged over questions (LXMERT, ViLBERT, VL-BERT) and VisualBERT's KL divergence from the
    soft scores (not renormalised) to the softmax, summed over answers and averaged over questions."""
    run_exercise("vqa", "VQA losses (BCE, KL)", EXERCISES, fn)
