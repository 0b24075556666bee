"""The pretraining and question-answering losses of ViLBERT, LXMERT, VisualBERT and VL-BERT.

Every loss here is finite, with finite gradients, when nothing is masked or no example is valid: it
then returns 0 (a zero that still depends on the logits, so ``backward`` works). The originals do
not all do this: ViLBERT's masked-region KL divides by the number of masked regions with
``max(count, 0)``, i.e. by zero when no region is masked (vilbert-multi-task issue 28;
docs/pitfalls.md, "A batch with no masked region"); PyTorch's own
``cross_entropy`` with every label ignored returns NaN.

Conventions: ``IGNORE_INDEX`` = -100 marks positions without a target; region tensors are (B, N, …),
token tensors (B, T, …); ``mask`` arguments are (B, N) bool/0-1, 1 = masked (a target).

Sources per loss (paper section and original file) are in each docstring.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "IGNORE_INDEX",
    "LXMERT_VISUAL_LOSS_NORMALIZER",
    "mlm_loss",
    "region_class_loss",
    "region_kl_loss",
    "soft_cross_entropy",
    "feature_regression_loss",
    "lxmert_label_loss",
    "lxmert_feature_loss",
    "itm_loss",
    "vqa_bce_loss",
    "qa_ce_loss",
]

#: marks a position without a target (torch's cross_entropy ignore_index); defined here only.
IGNORE_INDEX = -100
#: LXMERT multiplies each visual loss, a mean over all boxes, by 1 / 0.15 (HF ``visual_loss_normalizer``).
LXMERT_VISUAL_LOSS_NORMALIZER = 1 / 0.15


def _shape(t) -> object:
    return tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__


def _check_logits_labels(logits: Tensor, labels: Tensor, what: str) -> None:
    if not isinstance(logits, Tensor) or logits.ndim < 2:
        raise ValueError(f"{what}: logits must have shape (..., C), got {_shape(logits)}")
    if not isinstance(labels, Tensor) or tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"{what}: labels must have shape {tuple(logits.shape[:-1])} (the logits' shape without C), got {_shape(labels)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"{what}: labels must be integer class indices (with {IGNORE_INDEX} = ignore), got {labels.dtype}")
    C = logits.shape[-1]
    bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= C))
    if bool(bad.any()):
        raise ValueError(f"{what}: labels must lie in [0, {C}) or be {IGNORE_INDEX}, got {int(labels[bad][0])}")


def _check_mask(mask: Tensor, shape: tuple, what: str) -> Tensor:
    if not isinstance(mask, Tensor) or tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{what}: mask must have shape {tuple(shape)}, got {_shape(mask)}")
    return mask.bool()


def _safe_mean(total: Tensor, count: Tensor) -> Tensor:
    """total / count, and 0 (not NaN) when count is 0 (vilbert-multi-task issue 28)."""
    return total / count.clamp(min=1).to(total.dtype)


def _ce_mean(logits: Tensor, labels: Tensor) -> Tensor:
    flat = logits.reshape(-1, logits.shape[-1]).float()  # (M, C)
    lab = labels.reshape(-1)  # (M,)
    per = F.cross_entropy(flat, lab, ignore_index=IGNORE_INDEX, reduction="none")  # 0 where ignored
    return _safe_mean(per.sum(), (lab != IGNORE_INDEX).sum())


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Masked language modelling: cross-entropy over the vocabulary at labelled positions.

    Args:
        logits: (B, T, V) token scores. labels: (B, T) int64, original id or -100. Any leading
            shape works, e.g. (M, V) and (M,) for scores taken at the M masked positions only.

    Returns:
        Scalar mean over labelled tokens (0 when none). Source: BERT section 3.1; all four originals
        (ignore -1 there, -100 here).

    Raises:
        ValueError: if labels are not (B, T), not integers, or out of [0, V).
    """
    _check_logits_labels(logits, labels, "mlm_loss")
    return _ce_mean(logits, labels)


def region_class_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Masked region classification against the detector's top label: cross-entropy.

    Args:
        logits: (B, N, C) region class scores. labels: (B, N) int64 detector class, -100 where not masked.

    Returns:
        Scalar mean over labelled regions (0 when none). Source: the unweighted form of LXMERT's object
        loss (:func:`lxmert_label_loss`), as in UNITER's masked region classification.

    Raises:
        ValueError: on shape or range errors.
    """
    _check_logits_labels(logits, labels, "region_class_loss")
    return _ce_mean(logits, labels)


def region_kl_loss(logits: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """ViLBERT's masked region loss: KL(detector distribution || predicted distribution).

    ``sum over masked regions and classes of p * (log p - log softmax(logits)) / (number of masked regions)``,
    as in vilbert-multi-task ``BertForMultiModalPreTraining.forward`` (``KLDivLoss(reduction="none")``,
    ``visual_target`` 0; Lu et al. 2019, "ViLBERT", section 3.2, masked multi-modal modelling), except
    that a batch with no masked region gives 0 (the original divides by 0; vilbert-multi-task issue 28).

    Args:
        logits: (B, N, C) predicted class scores. target: (B, N, C) detector class probabilities
            (rows sum to 1, 0 log 0 = 0). mask: (B, N) 1 = masked region.

    Raises:
        ValueError: on shape mismatches or a negative target.
    """
    if not isinstance(logits, Tensor) or logits.ndim != 3:
        raise ValueError(f"region_kl_loss: logits must have shape (B, N, C), got {_shape(logits)}")
    if not isinstance(target, Tensor) or target.shape != logits.shape:
        raise ValueError(f"region_kl_loss: target must have the logits' shape {tuple(logits.shape)}, got {_shape(target)}")
    if bool((target < 0).any()):
        raise ValueError("region_kl_loss: target probabilities must be >= 0")
    m = _check_mask(mask, logits.shape[:2], "region_kl_loss")
    logq = logits.float().log_softmax(-1)
    kl = F.kl_div(logq, target.float(), reduction="none").sum(-1)  # (B, N), xlogy: 0 log 0 = 0
    total = torch.where(m, kl, torch.zeros_like(kl)).sum()
    return _safe_mean(total, m.sum())


def soft_cross_entropy(logits: Tensor, target: Tensor, tol: float = 1e-3) -> Tensor:
    """VL-BERT's masked RoI classification loss: cross-entropy against soft detector scores.

    ``-sum_c target * log_softmax(logits)`` per region, averaged over the regions whose target sums
    to 1 (rows of zeros are not targets). Source: VL-BERT ``common/utils/misc.py`` ``soft_cross_entropy``
    and its use in ``resnet_vlbert_for_pretraining_multitask.py`` (Su et al. 2020, "VL-BERT", section 3.3,
    masked RoI classification with linguistic clues).

    Args:
        logits: (B, N, C) (or (M, C)). target: same shape; each row sums to 1 (a target) or to 0 (none).
        tol: how far a row's sum may be from 0 or 1.

    Raises:
        ValueError: on a shape mismatch, negative targets, or a row that sums to neither 0 nor 1.
    """
    if not isinstance(logits, Tensor) or logits.ndim < 2:
        raise ValueError(f"soft_cross_entropy: logits must have shape (..., C), got {_shape(logits)}")
    if not isinstance(target, Tensor) or target.shape != logits.shape:
        raise ValueError(f"soft_cross_entropy: target must have the logits' shape {tuple(logits.shape)}, got {_shape(target)}")
    t = target.float()
    s = t.sum(-1)
    row = (s - 1).abs() <= tol
    if bool((t < 0).any()) or not bool((row | (s.abs() <= tol)).all()):
        raise ValueError("soft_cross_entropy: each target row must be a probability vector (sum 1) or all zeros (no target)")
    nll = -(t * logits.float().log_softmax(-1)).sum(-1)  # (...,)
    total = torch.where(row, nll, torch.zeros_like(nll)).sum()
    return _safe_mean(total, row.sum())


def feature_regression_loss(pred: Tensor, target: Tensor, mask: Tensor, kind: str = "l2") -> Tensor:
    """RoI-feature regression on masked regions: squared error or smooth-L1, mean over D and masked regions.

    ``kind="l2"`` is ViLBERT's ``visual_target`` 1 (``MSELoss``, sum over masked elements / their
    count); ``kind="smooth_l1"`` is the elementwise loss of LXMERT's "feat" task (for LXMERT's own
    normalisation over all boxes use :func:`lxmert_feature_loss`).

    Args:
        pred, target: (B, N, D). mask: (B, N) 1 = masked region. kind: ``"l2"`` or ``"smooth_l1"`` (beta 1).

    Raises:
        ValueError: on shape mismatches or an unknown kind.
    """
    if kind not in ("l2", "smooth_l1"):
        raise ValueError(f"kind must be 'l2' or 'smooth_l1', got {kind!r}")
    if not isinstance(pred, Tensor) or pred.ndim != 3 or not isinstance(target, Tensor) or target.shape != pred.shape:
        raise ValueError(f"feature_regression_loss: pred and target must both be (B, N, D), got {_shape(pred)} and {_shape(target)}")
    m = _check_mask(mask, pred.shape[:2], "feature_regression_loss")
    fn = F.mse_loss if kind == "l2" else F.smooth_l1_loss
    per = fn(pred.float(), target.float(), reduction="none").mean(-1)  # (B, N)
    return _safe_mean(torch.where(m, per, torch.zeros_like(per)).sum(), m.sum())


def lxmert_label_loss(
    logits: Tensor,
    labels: Tensor,
    confidence: Tensor,
    mask: Tensor | None = None,
    *,
    masked_only: bool = False,
    normalizer: float = LXMERT_VISUAL_LOSS_NORMALIZER,
) -> Tensor:
    """LXMERT's object (1600-way) or attribute (400-way) loss on the detector's top labels.

    Tan & Bansal 2019, "LXMERT", section 3.1.2 (detected-label classification). Default, as in
    airsplay/lxmert ``src/lxrt/modeling.py`` ``LXRTPretraining.forward``: cross-entropy on **every** box,
    weighted by the detector's confidence, averaged over all B x N boxes, times 1/0.15. With
    ``masked_only=True`` the weight is the mask instead (only masked boxes count; HF lets the caller
    pass either as ``obj_labels[key][1]``).

    Args:
        logits: (B, N, C). labels: (B, N) int64 detector label (-100: no label, weight 0).
        confidence: (B, N) detector confidence in [0, 1]. mask: (B, N) 1 = masked box (needed with ``masked_only``).
        normalizer: the factor on the mean (``visual_loss_normalizer``, 6.67).

    Raises:
        ValueError: on shape/range errors, a confidence outside [0, 1], or ``masked_only`` without a mask.
    """
    _check_logits_labels(logits, labels, "lxmert_label_loss")
    if not isinstance(confidence, Tensor) or tuple(confidence.shape) != tuple(labels.shape):
        raise ValueError(f"lxmert_label_loss: confidence must have shape {tuple(labels.shape)}, got {_shape(confidence)}")
    if bool(((confidence < 0) | (confidence > 1)).any()):
        raise ValueError("lxmert_label_loss: confidence must lie in [0, 1]")
    if masked_only:
        if mask is None:
            raise ValueError("lxmert_label_loss: masked_only=True needs the mask")
        weight = _check_mask(mask, labels.shape, "lxmert_label_loss").float()
    else:
        weight = confidence.float()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                         ignore_index=IGNORE_INDEX, reduction="none").view(labels.shape)  # (B, N)
    n = max(labels.numel(), 1)
    return (ce * weight).sum() / n * normalizer


def lxmert_feature_loss(pred: Tensor, target: Tensor, mask: Tensor, normalizer: float = LXMERT_VISUAL_LOSS_NORMALIZER) -> Tensor:
    """LXMERT's "feat" loss: smooth-L1 (named "l2" in the code) mean over D, times the mask,
    averaged over all B x N boxes, times 1/0.15 (airsplay/lxmert ``src/lxrt/modeling.py``
    ``LXRTPretraining.forward``; LXMERT paper section 3.1.2, RoI-feature regression).

    Args:
        pred, target: (B, N, D). mask: (B, N) 1 = masked box.

    Raises:
        ValueError: on shape mismatches.
    """
    if not isinstance(pred, Tensor) or pred.ndim != 3 or not isinstance(target, Tensor) or target.shape != pred.shape:
        raise ValueError(f"lxmert_feature_loss: pred and target must both be (B, N, D), got {_shape(pred)} and {_shape(target)}")
    m = _check_mask(mask, pred.shape[:2], "lxmert_feature_loss").float()
    per = F.smooth_l1_loss(pred.float(), target.float(), reduction="none").mean(-1)  # (B, N)
    return (per * m).sum() / max(m.numel(), 1) * normalizer


def itm_loss(logits: Tensor, is_matched: Tensor) -> Tensor:
    """Image-text matching: 2-way cross-entropy, class 1 = matched (``is_matched``; -100 ignored).

    ViLBERT section 3.2 (multi-modal alignment prediction), LXMERT section 3.1.3 (cross-modality
    matching), VisualBERT (Li et al. 2019) section 3.3 (sentence-image prediction).

    For ViLBERT's alignment head, whose class 1 means "random caption", swap its two logits (or
    convert labels with :func:`vlp_course.pretraining.matching.to_vilbert_is_next`).

    Args:
        logits: (B, 2). is_matched: (B,) int64 in {0, 1, -100}.

    Raises:
        ValueError: if logits are not (B, 2) or labels not (B,) in {0, 1, -100}.
    """
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"itm_loss: logits must have shape (B, 2), got {_shape(logits)}")
    _check_logits_labels(logits, is_matched, "itm_loss")
    return _ce_mean(logits, is_matched)


def vqa_bce_loss(logits: Tensor, soft_scores: Tensor) -> Tensor:
    """VQA with soft scores: ``BCEWithLogits(mean) x number of answers`` (LXMERT ``vqa.py``,
    ViLBERT ``task_utils.py``, VL-BERT VQA): per question, the sum over answers of the binary loss.

    Args:
        logits: (B, A). soft_scores: (B, A) in [0, 1] (0/0.3/0.6/0.9/1).

    Raises:
        ValueError: on a shape mismatch or scores outside [0, 1].
    """
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise ValueError(f"vqa_bce_loss: logits must have shape (B, A), got {_shape(logits)}")
    if not isinstance(soft_scores, Tensor) or soft_scores.shape != logits.shape:
        raise ValueError(f"vqa_bce_loss: soft_scores must have the logits' shape {tuple(logits.shape)}, got {_shape(soft_scores)}")
    if bool(((soft_scores < 0) | (soft_scores > 1)).any()):
        raise ValueError("vqa_bce_loss: soft scores must lie in [0, 1]")
    if logits.numel() == 0:
        return logits.sum()
    return F.binary_cross_entropy_with_logits(logits.float(), soft_scores.float()) * logits.shape[1]


def qa_ce_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Image QA with one answer index per question: softmax cross-entropy (LXMERT's pretraining QA
    task, ``answer_head`` in ``src/lxrt/modeling.py``; LXMERT paper section 3.1.3; -100 for mismatched
    pairs or questions without an answer).

    Args:
        logits: (B, A). labels: (B,) int64 in [0, A) or -100.

    Raises:
        ValueError: on shape or range errors.
    """
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise ValueError(f"qa_ce_loss: logits must have shape (B, A), got {_shape(logits)}")
    _check_logits_labels(logits, labels, "qa_ce_loss")
    return _ce_mean(logits, labels)
