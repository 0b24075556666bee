"""Image features for the vision-language part: RoI, grid (pixel) and patch representations.

* **RoI** features: one vector per region, pooled with torchvision's ``ops.roi_align`` from a CNN
  feature map (what Faster R-CNN's bottom-up features are, and what ViLBERT, LXMERT, VisualBERT and
  VL-BERT consume).
* **Grid** (pixel) features: every cell of a CNN feature map is a token (Pixel-BERT, grid features).
* **Patch** features: the image cut into P x P patches, each flattened (ViT, ViLT), and
  :class:`PatchEmbedding`, the same followed by a linear projection.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import roi_align

from vlp_course.boxes import validate_xyxy

__all__ = ["roi_features", "grid_features", "patchify", "PatchEmbedding"]


def _check_map(feature_map: Tensor, name: str = "feature_map") -> None:
    if not isinstance(feature_map, Tensor) or feature_map.ndim != 4:
        shape = tuple(feature_map.shape) if isinstance(feature_map, Tensor) else type(feature_map).__name__
        raise ValueError(f"{name} must be a (B, C, H, W) tensor, got {shape}")


def roi_features(
    feature_map: Tensor,
    boxes: Tensor | list[Tensor],
    *,
    box_format: str,
    image_size: tuple[int, int],
    output_size: int = 7,
    sampling_ratio: int = 2,
    pool: bool = True,
) -> Tensor | list[Tensor]:
    """Pool one feature vector per box from a CNN feature map with ``torchvision.ops.roi_align``.

    Args:
        feature_map: (B, C, Hf, Wf) features of B images of size ``image_size``.
        boxes: (B, N, 4) xyxy boxes, or a list of B tensors (N_i, 4).
        box_format: ``"pixel"`` (xyxy in pixels) or ``"normalized"`` (xyxy in [0, 1]); explicit, so a
            normalized box is never read as pixels.
        image_size: (W, H) of the input images in pixels; the scale from image to feature map is
            Wf / W (the feature map must have the image's aspect ratio).
        output_size: RoIAlign's k x k output grid.
        sampling_ratio: bilinear samples per bin side (torchvision's argument).
        pool: average the k x k grid to one vector per box.

    Returns:
        (B, N, C) when ``boxes`` is a tensor (or (B, N, C, k, k) with ``pool=False``), else a list of
        (N_i, C) tensors.

    Raises:
        ValueError: on a bad box format, boxes outside the image or [0, 1], x2 < x1, a feature map
            that is not 4-D, or a batch size that differs between the map and the boxes.
    """
    _check_map(feature_map)
    if box_format not in ("pixel", "normalized"):
        raise ValueError(f"box_format must be 'pixel' or 'normalized', got {box_format!r}")
    w, h = image_size
    if w <= 0 or h <= 0:
        raise ValueError(f"image_size must be positive (W, H), got {image_size}")
    as_list = isinstance(boxes, (list, tuple))
    box_list = list(boxes) if as_list else None
    if not as_list:
        if not isinstance(boxes, Tensor) or boxes.ndim != 3 or boxes.shape[-1] != 4:
            raise ValueError(f"boxes must be (B, N, 4) or a list of (N_i, 4), got {getattr(boxes, 'shape', type(boxes))}")
        box_list = list(boxes.unbind(0))
    if len(box_list) != feature_map.shape[0]:
        raise ValueError(f"feature_map has batch size {feature_map.shape[0]} but boxes are given for {len(box_list)} images")
    scale = torch.tensor([w, h, w, h], dtype=feature_map.dtype, device=feature_map.device)
    pixel_boxes = []
    for b in box_list:
        b = b.to(feature_map.device, feature_map.dtype)
        if box_format == "normalized":
            b = validate_xyxy(b, normalized=True) * scale
        else:
            b = validate_xyxy(b, normalized=False, image_size=(w, h))
        pixel_boxes.append(b.reshape(-1, 4))
    spatial_scale = feature_map.shape[-1] / w
    out = roi_align(
        feature_map, pixel_boxes, output_size=output_size, spatial_scale=spatial_scale,
        sampling_ratio=sampling_ratio, aligned=True,
    )  # (sum N_i, C, k, k)
    if pool:
        out = out.mean(dim=(-2, -1))  # (sum N_i, C)
    counts = [len(b) for b in pixel_boxes]
    if as_list:
        return list(out.split(counts, dim=0))
    return out.reshape(len(box_list), counts[0], *out.shape[1:])  # (B, N, C[, k, k])


def grid_features(feature_map: Tensor) -> Tensor:
    """Flatten a (B, C, H, W) feature map into H*W grid tokens: (B, H*W, C), row-major order.

    Raises:
        ValueError: if the input is not a 4-D tensor.
    """
    _check_map(feature_map)
    b, c, h, w = feature_map.shape
    return feature_map.flatten(2).transpose(1, 2)  # (B, C, H*W) -> (B, H*W, C)


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cut (B, C, H, W) images into non-overlapping P x P patches: (B, (H/P)*(W/P), C*P*P).

    Patches are in row-major order and each is flattened channel-first (the layout of a ViT
    patch-embedding convolution with kernel = stride = P).

    Raises:
        ValueError: if the input is not 4-D or H, W are not multiples of P.
    """
    _check_map(images, "images")
    b, c, h, w = images.shape
    p = int(patch_size)
    if p <= 0 or h % p or w % p:
        raise ValueError(f"image size {h}x{w} must be a multiple of the patch size {patch_size}")
    x = images.reshape(b, c, h // p, p, w // p, p)  # (B, C, H/P, P, W/P, P)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, H/P, W/P, C, P, P)
    return x.reshape(b, (h // p) * (w // p), c * p * p)  # (B, N, C*P*P)


class PatchEmbedding(torch.nn.Module):
    """ViT's patch embedding: (B, C, H, W) -> (B, N, D) with N = (H/P)(W/P) (Dosovitskiy et al. 2021,
    "An image is worth 16x16 words", Sec. 3.1, Eq. 1 and the "hybrid" note).

    A Conv2d with kernel = stride = P; it equals :func:`patchify` followed by a Linear layer whose
    weight is the convolution kernel flattened channel-first (:meth:`as_linear`).

    Raises:
        ValueError: if the input is not (B, in_channels, H, W) with H and W multiples of P.
    """

    def __init__(self, in_channels: int = 3, patch_size: int = 16, dim: int = 768):
        super().__init__()
        self.in_channels, self.patch_size, self.dim = in_channels, patch_size, dim
        self.proj = torch.nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> Tensor:
        _check_map(images, "images")
        b, c, h, w = images.shape
        p = self.patch_size
        if c != self.in_channels or h % p or w % p:
            raise ValueError(
                f"images must be (B, {self.in_channels}, H, W) with H, W multiples of {p}, got {tuple(images.shape)}"
            )
        return self.proj(images).flatten(2).transpose(1, 2)  # (B, D, H/P, W/P) -> (B, N, D)

    def as_linear(self) -> torch.nn.Linear:
        """The equivalent Linear(C*P*P, D) acting on :func:`patchify`'s output."""
        lin = torch.nn.Linear(self.in_channels * self.patch_size**2, self.dim)
        with torch.no_grad():
            lin.weight.copy_(self.proj.weight.reshape(self.dim, -1))  # (D, C, P, P) -> (D, C*P*P)
            lin.bias.copy_(self.proj.bias)
        return lin
