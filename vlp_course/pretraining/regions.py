"""Masked region modelling: which image regions are hidden from the model, and how.

The visual counterpart of BERT's masked language modelling. Each *real* region is selected with
probability ``prob`` (15% in all three originals); a selected region is then zeroed (or replaced by a
learned mask vector), replaced by another region's feature, or kept unchanged, and the model must
predict something about it (its detector class, class distribution or feature). One scheme per
original (:data:`SCHEMES`; the source file of each is in the table):

=========  ======  ==========  ===========  =====  ===================================================
scheme     select  zeroed      replaced     kept   source
=========  ======  ==========  ===========  =====  ===================================================
vilbert    15%     90%         0%           10%    vilbert-multi-task ``concept_cap_dataset.random_region``
lxmert     15%     80%         10%          10%    airsplay/lxmert ``lxmert_pretrain.random_feat``
vlbert     15%     90% masked  0%           10%    VL-BERT ``conceptual_captions.random_mask_region``
=========  ======  ==========  ===========  =====  ===================================================

VL-BERT masks *before* the detector in its end-to-end mode: it zeroes the RoI's pixels in the
input image (:func:`mask_pixels`), so neither the region's feature nor the whole-image feature can
leak it; with precomputed features it replaces the feature by a trainable zero vector
(``mask_value`` of :func:`mask_regions`).

Never masked: padded regions (``region_mask`` 0), the first ``num_global`` positions (ViLBERT's
global image token, VL-BERT's whole-image box 0) and any position in ``never_mask``. Box
coordinates are never masked in any of the originals; these functions only touch features.

Conventions: the returned ``labels`` hold the caller's target (e.g. the detector's class) at
selected positions and ``IGNORE_INDEX`` (-100) elsewhere; ``selected`` is the boolean version.
Random draws come from a ``torch.Generator`` so a run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vlp_course.pretraining.losses import IGNORE_INDEX  # -100: no target here (the one definition)

__all__ = [
    "IGNORE_INDEX",
    "RegionScheme",
    "SCHEMES",
    "KEEP_UNSELECTED",
    "ZERO",
    "REPLACE",
    "KEEP",
    "RegionMasking",
    "eligible_regions",
    "region_actions_from_uniforms",
    "sample_region_actions",
    "apply_region_actions",
    "mask_regions",
    "mask_pixels",
]


# What happened to each region (the ``actions`` tensor).
KEEP_UNSELECTED = 0  # not selected: input unchanged, no target
ZERO = 1  # selected, feature zeroed (or set to ``mask_value``)
REPLACE = 2  # selected, feature replaced by another region's feature
KEEP = 3  # selected, feature left unchanged (still a target)


@dataclass(frozen=True)
class RegionScheme:
    """Shares of the selected regions that are zeroed, replaced and kept (they sum to 1).

    Raises:
        ValueError: if a share is outside [0, 1] or the three do not sum to 1.
    """

    zero: float
    replace: float
    keep: float
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("zero", "replace", "keep"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"RegionScheme.{name} must be a probability in [0, 1], got {v}")
        if abs(self.zero + self.replace + self.keep - 1.0) > 1e-6:
            raise ValueError(f"zero + replace + keep must be 1, got {self.zero + self.replace + self.keep}")


SCHEMES: dict[str, RegionScheme] = {
    "vilbert": RegionScheme(0.9, 0.0, 0.1, "vilbert-multi-task vilbert/datasets/concept_cap_dataset.py random_region"),
    "lxmert": RegionScheme(0.8, 0.1, 0.1, "airsplay/lxmert src/pretrain/lxmert_pretrain.py random_feat"),
    "vlbert": RegionScheme(0.9, 0.0, 0.1, "jackroos/VL-BERT pretrain/data/datasets/conceptual_captions.py random_mask_region"),
}


def _scheme(scheme: str | RegionScheme) -> RegionScheme:
    if isinstance(scheme, RegionScheme):
        return scheme
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {sorted(SCHEMES)} or a RegionScheme, got {scheme!r}")
    return SCHEMES[scheme]


def _check_prob(prob: float) -> float:
    p = float(prob)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"the masking probability must lie in [0, 1], got {prob}")
    return p


def eligible_regions(
    shape: tuple[int, int],
    region_mask: Tensor | None = None,
    num_global: int = 0,
    never_mask: Tensor | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """(B, N) bool: the regions that may be selected (real, not global, not protected).

    Args:
        shape: (B, N).
        region_mask: (B, N) 1 for a real region, 0 for padding; ``None``: all real.
        num_global: the first ``num_global`` positions are global/whole-image tokens, never masked.
        never_mask: (B, N) bool, True where a position must never be masked.

    Raises:
        ValueError: if a mask does not have shape (B, N) or ``num_global`` is outside [0, N].
    """
    B, N = shape
    if not 0 <= int(num_global) <= N:
        raise ValueError(f"num_global must lie in [0, N={N}], got {num_global}")
    dev = device if device is not None else (region_mask.device if region_mask is not None else None)
    ok = torch.ones(B, N, dtype=torch.bool, device=dev)
    for name, m in (("region_mask", region_mask), ("never_mask", never_mask)):
        if m is not None and tuple(m.shape) != (B, N):
            raise ValueError(f"{name} must have shape (B, N) = ({B}, {N}), got {tuple(m.shape)}")
    if region_mask is not None:
        ok &= region_mask.bool()
    if never_mask is not None:
        ok &= ~never_mask.bool()
    ok[:, : int(num_global)] = False
    return ok


def region_actions_from_uniforms(
    eligible: Tensor, u_select: Tensor, u_action: Tensor, prob: float = 0.15, scheme: str | RegionScheme = "vilbert"
) -> Tensor:
    """The masking decision given the random draws (deterministic; what the exercise asks for).

    A region is selected when it is eligible and ``u_select < prob``. A selected region with draw
    ``u = u_action`` is zeroed if ``u < zero``, replaced if ``zero <= u < zero + replace``, kept
    otherwise (shares from the scheme).

    Args:
        eligible: (B, N) bool, see :func:`eligible_regions`.
        u_select, u_action: (B, N) uniform draws in [0, 1).
        prob: the selection probability.
        scheme: a name in :data:`SCHEMES` or a :class:`RegionScheme`.

    Returns:
        (B, N) int64 actions: ``KEEP_UNSELECTED`` (0), ``ZERO`` (1), ``REPLACE`` (2), ``KEEP`` (3).

    Raises:
        ValueError: if ``prob`` is outside [0, 1], the scheme is unknown or the shapes differ.
    """
    p = _check_prob(prob)
    s = _scheme(scheme)
    for name, t in (("u_select", u_select), ("u_action", u_action)):
        if t.shape != eligible.shape:
            raise ValueError(f"{name} must have the shape of eligible {tuple(eligible.shape)}, got {tuple(t.shape)}")
    selected = eligible.bool() & (u_select < p)
    actions = torch.full(eligible.shape, KEEP_UNSELECTED, dtype=torch.long, device=eligible.device)
    actions[selected & (u_action < s.zero)] = ZERO
    actions[selected & (u_action >= s.zero) & (u_action < s.zero + s.replace)] = REPLACE
    actions[selected & (u_action >= s.zero + s.replace)] = KEEP
    return actions


def sample_region_actions(
    eligible: Tensor, prob: float = 0.15, scheme: str | RegionScheme = "vilbert", generator: torch.Generator | None = None
) -> Tensor:
    """Draw the two uniforms per region and decide (:func:`region_actions_from_uniforms`).

    Args:
        eligible: (B, N) bool. prob: the selection probability. generator: for reproducibility.

    Returns:
        (B, N) int64 actions.
    """
    u_select = torch.rand(eligible.shape, generator=generator, device=eligible.device)
    u_action = torch.rand(eligible.shape, generator=generator, device=eligible.device)
    return region_actions_from_uniforms(eligible, u_select, u_action, prob, scheme)


def _replacement_sources(eligible_pool: Tensor, actions: Tensor, generator: torch.Generator | None) -> Tensor:
    """(B, N, 2) (image, region) index of the feature that replaces each REPLACE region.

    Drawn uniformly among the real regions of *another* image of the batch (as LXMERT takes a box of
    a random other datum), or of the same image when the batch holds only one image.
    """
    B, N = actions.shape
    dev = actions.device
    src = torch.zeros(B, N, 2, dtype=torch.long, device=dev)
    rows, cols = torch.nonzero(actions == REPLACE, as_tuple=True)
    if rows.numel() == 0:
        return src
    if B > 1:
        offset = torch.randint(1, B, (rows.numel(),), generator=generator, device=dev)
        img = (rows + offset) % B  # another image
    else:
        img = rows
    weights = eligible_pool[img].float()  # (R, N)
    if B == 1:
        weights[torch.arange(rows.numel(), device=dev), cols] = 0.0  # another region of the same image
    empty = weights.sum(-1) == 0
    weights[empty] = 1.0  # no real region there: fall back to any position (still not the same token)
    reg = torch.multinomial(weights, 1, generator=generator).squeeze(-1)
    src[rows, cols, 0] = img
    src[rows, cols, 1] = reg
    return src


def apply_region_actions(
    features: Tensor, actions: Tensor, replacement: Tensor | None = None, mask_value: Tensor | None = None
) -> Tensor:
    """Apply decided actions to region features.

    Args:
        features: (B, N, D) region features.
        actions: (B, N) int64 from :func:`sample_region_actions`.
        replacement: (B, N, D) the features that REPLACE regions take (required if any region is REPLACE).
        mask_value: (D,) what ZERO regions become (VL-BERT's trainable ``object_mask_visual_embedding``);
            zeros when omitted.

    Returns:
        (B, N, D) masked features (a new tensor; gradients flow to ``mask_value``).

    Raises:
        ValueError: on mismatched shapes, or REPLACE actions without ``replacement``.
    """
    if features.ndim != 3:
        raise ValueError(f"features must have shape (B, N, D), got {tuple(features.shape)}")
    B, N, D = features.shape
    if tuple(actions.shape) != (B, N):
        raise ValueError(f"actions must have shape (B, N) = ({B}, {N}), got {tuple(actions.shape)}")
    out = features
    zero = (actions == ZERO)[..., None]  # (B, N, 1)
    fill = torch.zeros((), dtype=features.dtype, device=features.device) if mask_value is None else mask_value
    if mask_value is not None and tuple(mask_value.shape) != (D,):
        raise ValueError(f"mask_value must have shape (D,) = ({D},), got {tuple(mask_value.shape)}")
    out = torch.where(zero, fill.to(features.dtype), out)
    rep = actions == REPLACE
    if rep.any():
        if replacement is None or tuple(replacement.shape) != (B, N, D):
            shape = None if replacement is None else tuple(replacement.shape)
            raise ValueError(f"REPLACE actions need replacement features of shape (B, N, D) = ({B}, {N}, {D}), got {shape}")
        out = torch.where(rep[..., None], replacement.to(features.dtype), out)
    return out


@dataclass
class RegionMasking:
    """What :func:`mask_regions` returns.

    Attributes:
        features: (B, N, D) the masked features (model input).
        selected: (B, N) bool, the regions the model must predict (zeroed, replaced or kept).
        labels: (B, N) int64: ``targets`` (or 1 when no targets were given) where selected, -100 elsewhere.
        actions: (B, N) int64: 0 not selected, 1 zeroed, 2 replaced, 3 kept.
        original: (B, N, D) the unmasked features (targets for feature regression).
    """

    features: Tensor
    selected: Tensor
    labels: Tensor
    actions: Tensor
    original: Tensor


def mask_regions(
    features: Tensor,
    *,
    scheme: str | RegionScheme = "vilbert",
    prob: float = 0.15,
    region_mask: Tensor | None = None,
    num_global: int = 0,
    never_mask: Tensor | None = None,
    targets: Tensor | None = None,
    mask_value: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> RegionMasking:
    """Mask region features with one original's scheme.

    Args:
        features: (B, N, D) region features (global token first if ``num_global`` > 0).
        scheme: ``"vilbert"``, ``"lxmert"``, ``"vlbert"`` or a :class:`RegionScheme`.
        prob: the probability to select an eligible region (0.15 in all originals).
        region_mask: (B, N) 1 = real region, 0 = padding (never masked).
        num_global: leading global/whole-image tokens, never masked.
        never_mask: (B, N) bool, more positions never masked.
        targets: (B, N) int64 per-region targets (e.g. the detector's class) copied into ``labels``.
        mask_value: (D,) the value zeroed regions take (default zeros).
        generator: a ``torch.Generator`` for reproducible draws.

    Returns:
        A :class:`RegionMasking`.

    Raises:
        ValueError: if ``prob`` is outside [0, 1], the scheme is unknown, or a shape does not match (B, N).
    """
    if not isinstance(features, Tensor) or features.ndim != 3:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"features must have shape (B, N, D), got {shape}")
    _check_prob(prob)
    B, N, D = features.shape
    if targets is not None and tuple(targets.shape) != (B, N):
        raise ValueError(f"targets must have shape (B, N) = ({B}, {N}), got {tuple(targets.shape)}")
    eligible = eligible_regions((B, N), region_mask, num_global, never_mask, device=features.device)
    actions = sample_region_actions(eligible, prob, scheme, generator)
    replacement = None
    if (actions == REPLACE).any():
        src = _replacement_sources(eligible, actions, generator)  # (B, N, 2)
        replacement = features[src[..., 0], src[..., 1]]  # (B, N, D)
    masked = apply_region_actions(features, actions, replacement, mask_value)
    selected = actions != KEEP_UNSELECTED
    fill = targets.long() if targets is not None else torch.ones(B, N, dtype=torch.long, device=features.device)
    labels = torch.where(selected, fill, torch.full_like(fill, IGNORE_INDEX))
    return RegionMasking(features=masked, selected=selected, labels=labels, actions=actions, original=features)


def mask_pixels(images: Tensor, boxes: Tensor, selected: Tensor, value: float = 0.0) -> Tensor:
    """Zero the pixels of the selected regions' boxes in the images (VL-BERT's end-to-end masking).

    A pixel (row y, column x) is masked when ``floor(x1) <= x < ceil(x2)`` and
    ``floor(y1) <= y < ceil(y2)``, i.e. every pixel the box touches (VL-BERT ``mask_raw_pixels``
    in ``resnet_vlbert_for_pretraining.py`` zeroes the box's pixel rectangle before the backbone).

    Args:
        images: (B, C, H, W) images (pixel values, any normalisation).
        boxes: (B, N, 4) pixel boxes (x1, y1, x2, y2) inside [0, W] x [0, H].
        selected: (B, N) bool, the regions to hide.
        value: what masked pixels become (0, as in VL-BERT; after mean subtraction that is the mean colour).

    Returns:
        (B, C, H, W) a masked copy.

    Raises:
        ValueError: on shapes other than these, or boxes not in pixel xyxy inside the image.
    """
    from vlp_course.boxes import validate_xyxy

    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    B, _, H, W = images.shape
    if boxes.ndim != 3 or boxes.shape[0] != B or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (B, N, 4) with B = {B}, got {tuple(boxes.shape)}")
    if tuple(selected.shape) != tuple(boxes.shape[:2]):
        raise ValueError(f"selected must have shape (B, N) = {tuple(boxes.shape[:2])}, got {tuple(selected.shape)}")
    b = validate_xyxy(boxes, normalized=False, image_size=(W, H))
    x1 = b[..., 0].floor()[..., None, None]  # (B, N, 1, 1)
    y1 = b[..., 1].floor()[..., None, None]
    x2 = b[..., 2].ceil()[..., None, None]
    y2 = b[..., 3].ceil()[..., None, None]
    xs = torch.arange(W, device=images.device, dtype=b.dtype)[None, None, None, :]  # (1, 1, 1, W)
    ys = torch.arange(H, device=images.device, dtype=b.dtype)[None, None, :, None]  # (1, 1, H, 1)
    inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)  # (B, N, H, W)
    hide = (inside & selected.bool()[..., None, None]).any(dim=1)  # (B, H, W)
    return images.masked_fill(hide[:, None, :, :], value)  # (B, C, H, W)
