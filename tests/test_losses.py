"""Pretraining losses: each equals a value computed by hand with explicit arithmetic on a tiny
input; finite (0) with finite gradients when nothing is masked or valid (vilbert-multi-task issue
28, docs/pitfalls.md "A batch with no masked region"); bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from vlp_course.pretraining.losses import (
    IGNORE_INDEX,
    feature_regression_loss,
    itm_loss,
    lxmert_feature_loss,
    lxmert_label_loss,
    mlm_loss,
    qa_ce_loss,
    region_class_loss,
    region_kl_loss,
    soft_cross_entropy,
    vqa_bce_loss,
)


def lse(xs):
    return math.log(sum(math.exp(x) for x in xs))


def ce(xs, y):
    return lse(xs) - xs[y]


def log_softmax(xs):
    z = lse(xs)
    return [x - z for x in xs]


def smooth_l1(d):
    d = abs(d)
    return 0.5 * d * d if d < 1 else d - 0.5


def softplus(x):
    return math.log1p(math.exp(x))


L = [[[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], [[2.0, 2.0, 2.0], [-0.5, 0.25, 1.5]]]  # (2, 2, 3)


def test_mlm_and_region_class_by_hand():
    logits = torch.tensor(L)
    labels = torch.tensor([[1, IGNORE_INDEX], [0, 2]])
    want = (ce(L[0][0], 1) + ce(L[1][0], 0) + ce(L[1][1], 2)) / 3
    assert math.isclose(mlm_loss(logits, labels).item(), want, rel_tol=1e-6)
    assert math.isclose(region_class_loss(logits, labels).item(), want, rel_tol=1e-6)


def test_region_kl_by_hand():
    logits = torch.tensor(L)
    p = [[[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], [[1.0, 0.0, 0.0], [0.1, 0.1, 0.8]]]
    mask = torch.tensor([[1, 0], [1, 1]])

    def kl(pp, xs):
        lq = log_softmax(xs)
        return sum(a * (math.log(a) - b) for a, b in zip(pp, lq) if a > 0)

    want = (kl(p[0][0], L[0][0]) + kl(p[1][0], L[1][0]) + kl(p[1][1], L[1][1])) / 3
    assert math.isclose(region_kl_loss(logits, torch.tensor(p), mask).item(), want, rel_tol=1e-6)


def test_soft_cross_entropy_by_hand_rows_of_zeros_skipped():
    logits = torch.tensor(L)
    t = [[[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]], [[0.2, 0.2, 0.6], [0.0, 0.0, 0.0]]]
    want = (-(0.5 * log_softmax(L[0][0])[0] + 0.5 * log_softmax(L[0][0])[1])
            - (0.2 * log_softmax(L[1][0])[0] + 0.2 * log_softmax(L[1][0])[1] + 0.6 * log_softmax(L[1][0])[2])) / 2
    assert math.isclose(soft_cross_entropy(logits, torch.tensor(t)).item(), want, rel_tol=1e-6)


def test_feature_regression_by_hand():
    pred = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, -1.0], [0.5, 0.5]]])
    target = torch.tensor([[[0.0, 2.5], [9.0, 9.0]], [[0.5, 0.0], [0.5, 0.0]]])
    mask = torch.tensor([[1, 0], [1, 1]])
    sq = [(1 ** 2 + 0.5 ** 2) / 2, (2.5 ** 2 + 1 ** 2) / 2, (0 + 0.5 ** 2) / 2]
    assert math.isclose(feature_regression_loss(pred, target, mask, "l2").item(), sum(sq) / 3, rel_tol=1e-6)
    sl = [(smooth_l1(1) + smooth_l1(0.5)) / 2, (smooth_l1(2.5) + smooth_l1(1)) / 2, (0 + smooth_l1(0.5)) / 2]
    assert math.isclose(feature_regression_loss(pred, target, mask, "smooth_l1").item(), sum(sl) / 3, rel_tol=1e-6)
    # LXMERT's normalisation: sum over masked boxes / all 4 boxes x 1/0.15
    assert math.isclose(lxmert_feature_loss(pred, target, mask).item(), sum(sl) / 4 / 0.15, rel_tol=1e-6)


def test_lxmert_label_loss_confidence_default_and_masked_only():
    logits = torch.tensor(L)
    labels = torch.tensor([[1, 2], [0, 2]])
    conf = torch.tensor([[0.9, 0.5], [0.2, 1.0]])
    mask = torch.tensor([[0, 1], [0, 0]])
    c = [ce(L[0][0], 1), ce(L[0][1], 2), ce(L[1][0], 0), ce(L[1][1], 2)]
    want_conf = (0.9 * c[0] + 0.5 * c[1] + 0.2 * c[2] + 1.0 * c[3]) / 4 / 0.15
    assert math.isclose(lxmert_label_loss(logits, labels, conf, mask).item(), want_conf, rel_tol=1e-6)
    want_mask = c[1] / 4 / 0.15
    assert math.isclose(lxmert_label_loss(logits, labels, conf, mask, masked_only=True).item(), want_mask, rel_tol=1e-6)


def test_itm_qa_and_vqa_by_hand():
    itm = torch.tensor([[0.3, -0.2], [1.0, 2.0], [0.0, 0.0]])
    is_matched = torch.tensor([0, 1, IGNORE_INDEX])
    want = (ce([0.3, -0.2], 0) + ce([1.0, 2.0], 1)) / 2
    assert math.isclose(itm_loss(itm, is_matched).item(), want, rel_tol=1e-6)
    qa = torch.tensor([[0.1, 0.2, 0.3], [3.0, 0.0, -1.0]])
    assert math.isclose(qa_ce_loss(qa, torch.tensor([2, IGNORE_INDEX])).item(), ce([0.1, 0.2, 0.3], 2), rel_tol=1e-6)
    s = [[1.0, 0.3, 0.0], [0.0, 0.6, 0.9]]
    # BCE with logits: softplus(x) - y x ; mean over 6 entries, times A = 3
    bce = [softplus(x) - y * x for xr, yr in zip(qa.tolist(), s) for x, y in zip(xr, yr)]
    assert math.isclose(vqa_bce_loss(qa, torch.tensor(s)).item(), sum(bce) / 6 * 3, rel_tol=1e-6)


def _finite_zero_with_grad(fn, *tensors):
    tensors = [t.clone().requires_grad_(True) if t.is_floating_point() else t for t in tensors]
    loss = fn(*tensors)
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    assert tensors[0].grad is not None and torch.isfinite(tensors[0].grad).all()  # the prediction's gradient
    for t in tensors[1:]:
        assert t.grad is None or torch.isfinite(t.grad).all()


def test_empty_cases_are_zero_with_finite_gradients():
    """vilbert-multi-task issue 28: ViLBERT's masked-region KL divides by the number of masked regions
    (max(count, 0) in vilbert/vilbert.py), so a batch without one gives NaN. Every loss here must give
    exactly 0 with finite gradients when nothing is masked or every label is ignored."""
    logits = torch.randn(2, 3, 5)
    none = torch.full((2, 3), IGNORE_INDEX)
    nomask = torch.zeros(2, 3)
    p = torch.softmax(torch.randn(2, 3, 5), -1)
    _finite_zero_with_grad(mlm_loss, logits, none)
    _finite_zero_with_grad(region_class_loss, logits, none)
    _finite_zero_with_grad(lambda a, b: region_kl_loss(a, b, nomask), logits, p)  # the ViLBERT divide-by-zero case
    _finite_zero_with_grad(soft_cross_entropy, logits, torch.zeros(2, 3, 5))
    f = torch.randn(2, 3, 4)
    _finite_zero_with_grad(lambda a, b: feature_regression_loss(a, b, nomask), f, torch.randn(2, 3, 4))
    _finite_zero_with_grad(lambda a, b: lxmert_feature_loss(a, b, nomask), f, torch.randn(2, 3, 4))
    _finite_zero_with_grad(lambda a: lxmert_label_loss(a, torch.zeros(2, 3, dtype=torch.long), torch.rand(2, 3), nomask,
                                                       masked_only=True), logits)
    _finite_zero_with_grad(itm_loss, torch.randn(3, 2), torch.full((3,), IGNORE_INDEX))
    _finite_zero_with_grad(qa_ce_loss, torch.randn(3, 7), torch.full((3,), IGNORE_INDEX))
    _finite_zero_with_grad(vqa_bce_loss, torch.zeros(0, 7), torch.zeros(0, 7))


def test_bad_inputs():
    logits = torch.randn(2, 3, 5)
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 3\)"):
        mlm_loss(logits, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        mlm_loss(logits, torch.full((2, 3), 5))
    with pytest.raises(ValueError, match="integer class indices"):
        region_class_loss(logits, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 3\)"):
        region_kl_loss(logits, torch.softmax(logits, -1), torch.ones(3, 2))
    with pytest.raises(ValueError, match="target must have the logits' shape"):
        region_kl_loss(logits, torch.ones(2, 3, 4), torch.ones(2, 3))
    with pytest.raises(ValueError, match="sum 1"):
        soft_cross_entropy(logits, torch.full((2, 3, 5), 0.5))
    with pytest.raises(ValueError, match=r"logits must have shape \(B, 2\)"):
        itm_loss(torch.randn(3, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        itm_loss(torch.randn(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"soft scores must lie in \[0, 1\]"):
        vqa_bce_loss(torch.randn(2, 3), torch.full((2, 3), 1.5))
    with pytest.raises(ValueError, match=r"confidence must lie in \[0, 1\]"):
        lxmert_label_loss(logits, torch.zeros(2, 3, dtype=torch.long), torch.full((2, 3), 2.0))
    with pytest.raises(ValueError, match="masked_only=True needs the mask"):
        lxmert_label_loss(logits, torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), masked_only=True)
    with pytest.raises(ValueError, match="kind must be"):
        feature_regression_loss(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), torch.ones(1, 1), "l1")
