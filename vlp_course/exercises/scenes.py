"""Checks for notebook 08 (the three key problems of vision-language pretraining).

Each ``check_*`` runs the learner's function on seeded inputs and compares it with the stored
outputs of the course's reference (``answers/scenes.json``) with
:func:`vlp_course.exercises.run_cases`, raising :class:`~vlp_course.exercises.ExerciseFailed` with
the first difference.
"""

from __future__ import annotations

import numpy as np
import torch

from vlp_course.exercises import Exercise, run_exercise

__all__ = ["check_soft_scores", "check_vqa_accuracy", "check_normalize_boxes", "check_single_stream_mask",
           "EXERCISES"]

_POOL = ["yes", "no", "red", "blue", "2", "3", "circle", "star"]


def _answer_cases(seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    cases = [["a", "b", "c", "a", "b", "c", "a", "b", "c", "a"], ["yes"] * 8 + ["no"] * 2, ["red"] * 10,
             ["red", "blue", "green", "white", "black", "gray", "pink", "brown", "orange", "yellow"]]
    for _ in range(6):
        k = int(rng.integers(2, 5))
        opts = list(rng.choice(_POOL, size=k, replace=False))
        cases.append([str(x) for x in rng.choice(opts, size=10, p=rng.dirichlet(np.ones(k)))])
    return cases


def _soft_score_cases():
    return [(f"answers {a}", (list(a),), {}) for a in _answer_cases(0)]


def _as_score_dict(d):
    if not isinstance(d, dict):
        raise ValueError(f"your function returned a {type(d).__name__}; expected a dict {{answer: score}}")
    return {str(k): v for k, v in d.items()}


def _vqa_accuracy_cases():
    cases = []
    for a in _answer_cases(1):
        for pred in sorted(set(a))[:2] + ["nothing"]:
            cases.append((f"prediction {pred!r} vs {a}", (pred, list(a)), {}))
    return cases


def _normalize_boxes_cases():
    g = torch.Generator().manual_seed(0)
    cases = []
    for w, h in ((64, 64), (640, 480), (451, 300)):
        xy = torch.rand(5, 2, generator=g) * torch.tensor([w / 2, h / 2])
        wh = torch.rand(5, 2, generator=g) * torch.tensor([w / 2, h / 2])
        cases.append((f"{w}x{h} image", (torch.cat([xy, xy + wh], 1), w, h), {}))
    return cases


def _single_stream_mask_cases():
    rng = np.random.default_rng(3)
    cases = [("one full example", ([4], [2], 4, 2), {}), ("padding on both sides", ([2, 4], [1, 3], 5, 3), {})]
    for k in range(3):
        b = int(rng.integers(2, 5))
        t, v = int(rng.integers(3, 12)), int(rng.integers(2, 8))
        cases.append((f"random batch {k}", ([int(x) for x in rng.integers(1, t + 1, b)],
                                            [int(x) for x in rng.integers(0, v + 1, b)], t, v), {}))
    return cases


def _as_float_tensor(m):
    try:
        return torch.as_tensor(m).float()
    except Exception:
        return m


EXERCISES = {
    "soft scores": Exercise(_soft_score_cases, postprocess=_as_score_dict, atol=1e-6),
    "VQA accuracy": Exercise(_vqa_accuracy_cases, atol=1e-6),
    "normalize boxes": Exercise(_normalize_boxes_cases),
    "single-stream mask": Exercise(_single_stream_mask_cases, postprocess=_as_float_tensor),
}


def check_soft_scores(fn) -> None:
    """``fn(answers: list[str]) -> dict[str, float]``: the soft score of each distinct answer among the 10
    (count 1 -> 0.3, 2 -> 0.6, 3 -> 0.9, 4 or more -> 1.0), answers compared as given."""
    run_exercise("scenes", "soft scores", EXERCISES, fn)


def check_vqa_accuracy(fn) -> None:
    """``fn(prediction: str, answers: list[str]) -> float``: the VQA accuracy (average over the 10
    leave-one-annotator-out subsets of min(1, matches / 3)); answers are already normalised."""
    run_exercise("scenes", "VQA accuracy", EXERCISES, fn)


def check_normalize_boxes(fn) -> None:
    """``fn(boxes: Tensor (N, 4) pixel xyxy, width, height) -> Tensor (N, 4)`` in [0, 1]."""
    run_exercise("scenes", "normalize boxes", EXERCISES, fn)


def check_single_stream_mask(fn) -> None:
    """``fn(text_lengths, region_counts, max_text, max_regions) -> (B, T + V)`` padding mask of a
    single-stream input ``[text tokens (padded to T) | regions (padded to V)]``: 1 for a real token or
    region, 0 for padding."""
    run_exercise("scenes", "single-stream mask", EXERCISES, fn)
