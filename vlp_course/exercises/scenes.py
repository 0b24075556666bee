"""Checks for notebook 08 (the three key problems of vision-language pretraining).

Each ``check_*`` runs the learner's function and the course's reference on seeded inputs with
:func:`vlp_course.exercises.run_cases` and raises :class:`~vlp_course.exercises.ExerciseFailed`
with the first difference.
"""

from __future__ import annotations

import numpy as np
import torch

from vlp_course.boxes import normalize
from vlp_course.data.vqa import soft_scores, vqa_accuracy
from vlp_course.exercises import ExerciseFailed, run_cases

__all__ = ["check_soft_scores", "check_vqa_accuracy", "check_normalize_boxes", "check_single_stream_mask",
           "single_stream_mask"]

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


def check_soft_scores(fn) -> None:
    """``fn(answers: list[str]) -> dict[str, float]``: the soft score of each distinct answer among the 10
    (count 1 -> 0.3, 2 -> 0.6, 3 -> 0.9, 4 or more -> 1.0), answers compared as given."""
    cases = [(f"answers {a}", (list(a),), {}) for a in _answer_cases(0)]

    def ref(answers):
        return soft_scores(answers, normalize=False)

    def as_sorted(d):
        if not isinstance(d, dict):
            raise ExerciseFailed(f"soft scores: expected a dict {{answer: score}}, got {type(d).__name__}")
        return sorted((str(k), round(float(v), 6)) for k, v in d.items())

    run_cases("soft scores", fn, ref, cases, postprocess=as_sorted)


def check_vqa_accuracy(fn) -> None:
    """``fn(prediction: str, answers: list[str]) -> float``: the VQA accuracy (average over the 10
    leave-one-annotator-out subsets of min(1, matches / 3)); answers are already normalised."""
    cases = []
    for k, a in enumerate(_answer_cases(1)):
        for pred in sorted(set(a))[:2] + ["nothing"]:
            cases.append((f"prediction {pred!r} vs {a}", (pred, list(a)), {}))
    run_cases("VQA accuracy", fn, vqa_accuracy, cases, atol=1e-6)


def check_normalize_boxes(fn) -> None:
    """``fn(boxes: Tensor (N, 4) pixel xyxy, width, height) -> Tensor (N, 4)`` in [0, 1]."""
    g = torch.Generator().manual_seed(0)
    cases = []
    for w, h in ((64, 64), (640, 480), (451, 300)):
        xy = torch.rand(5, 2, generator=g) * torch.tensor([w / 2, h / 2])
        wh = torch.rand(5, 2, generator=g) * torch.tensor([w / 2, h / 2])
        cases.append((f"{w}x{h} image", (torch.cat([xy, xy + wh], 1), w, h), {}))
    run_cases("normalize boxes", fn, lambda b, w, h: normalize(b, w, h), cases)


def single_stream_mask(text_lengths, region_counts, max_text: int, max_regions: int) -> torch.Tensor:
    """Padding mask of a single-stream input ``[text tokens (padded to T) | regions (padded to V)]``.

    Args:
        text_lengths: B real text lengths (<= T = ``max_text``), region_counts: B region counts (<= V).

    Returns:
        (B, T + V) float tensor: 1.0 for a real token, 0.0 for padding. Every query may attend to
        every real key of both modalities (the broadcast (B, 1, 1, T+V) form is what BERT-style
        encoders add to their attention scores after ``(1 - mask) * -10000``).

    Raises:
        ValueError: if a length exceeds its maximum or the two lists differ in length.
    """
    if len(text_lengths) != len(region_counts):
        raise ValueError(f"{len(text_lengths)} text lengths but {len(region_counts)} region counts")
    t = torch.arange(max_text)
    v = torch.arange(max_regions)
    tl = torch.as_tensor(list(text_lengths))
    rc = torch.as_tensor(list(region_counts))
    if (tl > max_text).any() or (rc > max_regions).any() or (tl < 0).any() or (rc < 0).any():
        raise ValueError(f"lengths must lie in [0, {max_text}] (text) and [0, {max_regions}] (regions)")
    text = (t[None, :] < tl[:, None]).float()  # (B, T)
    vis = (v[None, :] < rc[:, None]).float()  # (B, V)
    return torch.cat([text, vis], dim=1)  # (B, T + V)


def check_single_stream_mask(fn) -> None:
    """``fn(text_lengths, region_counts, max_text, max_regions) -> (B, T + V)`` 1/0 padding mask."""
    rng = np.random.default_rng(3)
    cases = [("one full example", ([4], [2], 4, 2), {}), ("padding on both sides", ([2, 4], [1, 3], 5, 3), {})]
    for k in range(3):
        b = int(rng.integers(2, 5))
        t, v = int(rng.integers(3, 12)), int(rng.integers(2, 8))
        cases.append((f"random batch {k}", ([int(x) for x in rng.integers(1, t + 1, b)],
                                            [int(x) for x in rng.integers(0, v + 1, b)], t, v), {}))
    run_cases("single-stream mask", fn, single_stream_mask, cases, postprocess=lambda m: torch.as_tensor(m).float())
