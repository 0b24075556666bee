"""The handwritten digits that scikit-learn ships, as image tensors for the vision notebooks.

``sklearn.datasets.load_digits`` holds 1,797 grey 8 x 8 images of the digits 0-9 (pixel values 0-16,
from the UCI "Optical Recognition of Handwritten Digits" set). Nothing is downloaded: the file comes
with scikit-learn. LeNet-5 expects 32 x 32 inputs (LeCun et al. 1998, Sec. II-B: the 20 x 20 MNIST
digit is centred in a 32 x 32 field), so :func:`load_digits` can upsample them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Digits", "load_digits"]


@dataclass
class Digits:
    """A seeded train/test split of the digits.

    Attributes:
        X_train, X_test: (N, 1, S, S) float32 images, pixel values scaled to [0, 1] then standardised
            with the training set's mean and standard deviation (``mean``, ``std``).
        y_train, y_test: (N,) int64 labels 0-9.
        size: S, the image side in pixels.
    """

    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor
    size: int
    mean: float
    std: float

    def to_pixels(self, x: Tensor) -> Tensor:
        """Undo the standardisation: images back in [0, 1] (for plotting)."""
        return (x * self.std + self.mean).clamp(0, 1)


def load_digits(size: int = 32, test_fraction: float = 0.2, seed: int = 0, pad: int = 0) -> Digits:
    """Load scikit-learn's 8 x 8 digits as (N, 1, size, size) tensors with a stratified split.

    Args:
        size: output side in pixels (8 keeps the originals; larger sizes use bilinear upsampling of
            the 8 x 8 image to ``size - 2 * pad`` pixels, then zero padding of ``pad`` pixels).
        test_fraction: share of the 1,797 images held out for testing, in (0, 1).
        seed: seed of the stratified split (same seed, same split).
        pad: blank border in pixels around the digit (LeNet-5 centres its digits in a larger field).

    Returns:
        A :class:`Digits` split.

    Raises:
        ValueError: if ``size - 2 * pad`` is below 8 or ``test_fraction`` lies outside (0, 1).
    """
    from sklearn.datasets import load_digits as sk_load
    from sklearn.model_selection import train_test_split

    inner = int(size) - 2 * int(pad)
    if inner < 8 or pad < 0:
        raise ValueError(f"size - 2 * pad must be at least 8 (the digits are 8 x 8), got size={size}, pad={pad}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    data = sk_load()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    if inner != 8:
        x = F.interpolate(x, size=(inner, inner), mode="bilinear", align_corners=False).clamp(0, 1)
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))  # (N, 1, size, size)
    y = torch.tensor(data.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=data.target
    )
    idx_train, idx_test = torch.as_tensor(idx_train), torch.as_tensor(idx_test)
    mean, std = float(x[idx_train].mean()), float(x[idx_train].std())
    x = (x - mean) / std
    return Digits(x[idx_train], y[idx_train], x[idx_test], y[idx_test], int(size), mean, std)
