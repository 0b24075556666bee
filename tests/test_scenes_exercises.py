"""The checks of notebook 08 accept the reference answers and reject wrong or missing ones."""

from __future__ import annotations

import pytest
import torch

from vlp_course.boxes import normalize
from vlp_course.data.vqa import soft_scores, vqa_accuracy
from vlp_course.exercises import ExerciseFailed
from vlp_course.exercises.scenes import check_normalize_boxes, check_single_stream_mask, check_soft_scores, check_vqa_accuracy

from exercise_references import single_stream_mask


def stub(*args, **kwargs):
    raise NotImplementedError()


def test_checks_pass_the_references(capsys):
    check_soft_scores(lambda a: soft_scores(a, normalize=False))  # the course's functions, wrapped
    check_vqa_accuracy(lambda p, a: vqa_accuracy(p, a))
    check_normalize_boxes(lambda b, w, h: normalize(b, w, h))
    check_single_stream_mask(lambda *a: single_stream_mask(*a))
    assert capsys.readouterr().out.count("✔") == 4


@pytest.mark.parametrize("check", [check_soft_scores, check_vqa_accuracy, check_normalize_boxes, check_single_stream_mask])
def test_stubs_fail(check):
    with pytest.raises(ExerciseFailed, match="not implemented"):
        check(stub)


def test_common_mistakes_fail():
    # counting k * 0.3 without the cap at 1
    with pytest.raises(ExerciseFailed):
        check_soft_scores(lambda a: {x: 0.3 * a.count(x) for x in set(a)})
    # min(1, matches / 3) over all ten answers, without leaving one out
    with pytest.raises(ExerciseFailed):
        check_vqa_accuracy(lambda p, a: min(1.0, sum(x == p for x in a) / 3))
    # dividing by (H, W, H, W)
    with pytest.raises(ExerciseFailed):
        check_normalize_boxes(lambda b, w, h: b / torch.tensor([h, w, h, w]))
    # regions first
    with pytest.raises(ExerciseFailed):
        check_single_stream_mask(lambda t, r, mt, mr: single_stream_mask(r, t, mr, mt))


def test_single_stream_mask_reference_by_hand():
    m = single_stream_mask([2, 3], [1, 0], 3, 2)
    assert m.tolist() == [[1, 1, 0, 1, 0], [1, 1, 1, 0, 0]]
