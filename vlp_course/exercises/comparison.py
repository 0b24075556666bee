"""Checks for the exercises of notebook 16 (the four models compared).

Each check runs the learner's function on fixed inputs and compares it with the stored outputs of
the course's reference (``answers/comparison.json``). Sources: Devlin et al. 2019 (BERT's layer:
self-attention, Add & LayerNorm, feed-forward, Add & LayerNorm); the standard error of a difference
of two independent means.
"""

from __future__ import annotations

from typing import Callable

from vlp_course.exercises import Exercise, run_exercise

__all__ = ["check_layer_parameters", "check_settled", "EXERCISES"]


def _layer_cases():
    return [("D = 64, F = 256 (the course)", (64, 256), {}), ("D = 768, F = 3072 (BERT-base)", (768, 3072), {}),
            ("D = 2, F = 3", (2, 3), {})]


def _settled_cases():
    return [("a clear lead", ([0.84, 0.85, 0.845], [0.80, 0.78, 0.79]), {}),
            ("noisy, not settled", ([0.80, 0.70, 0.75], [0.78, 0.74, 0.72]), {}),
            ("behind, settled", ([0.50, 0.51], [0.60, 0.62, 0.61, 0.60]), {})]


def _int(out):
    try:
        return int(out)
    except (TypeError, ValueError):
        raise ValueError(f"your function returned a {type(out).__name__}; expected one whole number") from None


def _triple(out):
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise ValueError("your function must return three values: (difference, standard error, settled)")
    try:
        return float(out[0]), float(out[1]), bool(out[2])
    except (TypeError, ValueError):
        raise ValueError("(difference, standard error, settled) must be two numbers and a bool") from None


EXERCISES = {
    "layer parameters": Exercise(_layer_cases, postprocess=_int),
    "settled difference": Exercise(_settled_cases, postprocess=_triple, atol=1e-6),
}


def check_layer_parameters(fn: Callable) -> None:
    """Check ``fn(D, F) -> int``: the parameters of one BERT encoder layer of width D and feed-forward width F."""
    run_exercise("comparison", "layer parameters", EXERCISES, fn)


def check_settled(fn: Callable) -> None:
    """Check ``fn(a, b) -> (difference of means, standard error of the difference, settled)`` for two lists of
    per-seed accuracies: sample standard deviations, settled = |difference| > 2 standard errors."""
    run_exercise("comparison", "settled difference", EXERCISES, fn)
