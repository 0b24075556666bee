"""Images as discrete tokens: k-means over small pixel patches (a stand-in for a VQ-VAE's codebook).

A text-to-image transformer writes an image the way a language model writes a sentence: one token
at a time, or (MaskGIT) many at a time. For that an image must first become a short sequence of
tokens from a fixed vocabulary, and a token sequence must turn back into pixels. MaskGIT (Chang et
al. 2022, section 3, its first stage) uses a VQGAN tokenizer trained for days; the course's scenes are flat colours
on a dark background, and k-means over P x P patches (scikit-learn's ``MiniBatchKMeans``) does the
job in seconds: each patch becomes the index of its nearest centre (a *code*), and decoding pastes
each code's centre back in its place.

For a 64 x 64 scene and P = 4 that is a 16 x 16 grid of 256 tokens, in row-major order (token
``r * 16 + c`` is the patch of rows ``4r .. 4r+3`` and columns ``4c .. 4c+3``). How much of what a
caption speaks of survives (``benchmarks/results/text_to_image.md``, the course's eyes on rebuilt
held-out scenes, flat background, first captions; 95% on the originals): 1,024 codes fitted on every
patch 60.5-68.5%, fitted on the distinct patches 89-91.5% (the flat background makes most patches
identical, and k-means over all of them wastes codes on it); 8 x 8 patches lose the shapes (13-29.5%).

Usage::

    tok = PatchTokenizer.fit(images, codes=1024, patch=4)   # images (N, 64, 64, 3) uint8
    codes = tok.encode(images)                                # (N, 256) int64 in [0, 1024)
    again = tok.decode(codes)                                 # (N, 64, 64, 3) uint8
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["PatchTokenizer", "to_patches", "from_patches"]


def _check_images(images, patch: int) -> np.ndarray:
    """(N, S, S, 3) uint8 with S divisible by ``patch``, as a numpy array."""
    x = images.numpy() if isinstance(images, Tensor) else np.asarray(images)
    if x.ndim != 4 or x.shape[1] != x.shape[2] or x.shape[3] != 3:
        raise ValueError(f"images must be (N, S, S, 3) RGB, got shape {x.shape}")
    if x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0-255), got {x.dtype}")
    if x.shape[1] % patch:
        raise ValueError(f"the image side {x.shape[1]} px is not a multiple of the patch side {patch} px")
    return x


def to_patches(images, patch: int) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, (S/P)^2, P*P*3) float32 in [0, 1], patches in row-major order.

    Raises:
        ValueError: images that are not (N, S, S, 3) uint8, or S not a multiple of ``patch``.
    """
    x = _check_images(images, patch)
    N, S = x.shape[:2]
    g = S // patch
    x = x.reshape(N, g, patch, g, patch, 3).transpose(0, 1, 3, 2, 4, 5)  # (N, g, g, P, P, 3)
    return x.reshape(N, g * g, patch * patch * 3).astype(np.float32) / 255.0  # (N, G, P*P*3)


def from_patches(patches: np.ndarray, patch: int) -> np.ndarray:
    """The inverse of :func:`to_patches`: (N, G, P*P*3) in [0, 1] -> (N, S, S, 3) uint8, S = P * sqrt(G)."""
    p = np.asarray(patches, dtype=np.float32)
    N, G = p.shape[:2]
    g = int(round(G ** 0.5))
    if g * g != G or p.shape[2] != patch * patch * 3:
        raise ValueError(f"patches must be (N, G, {patch * patch * 3}) with G a square number, got {p.shape}")
    x = p.reshape(N, g, g, patch, patch, 3).transpose(0, 1, 3, 2, 4, 5)  # (N, g, P, g, P, 3)
    return np.clip(x.reshape(N, g * patch, g * patch, 3) * 255.0 + 0.5, 0, 255).astype(np.uint8)


class PatchTokenizer:
    """A codebook of K patch centres: images to (N, G) codes and back.

    Attributes:
        codebook: (K, P*P*3) float32 tensor, each row one P x P x 3 patch in [0, 1].
        patch: P, the patch side in pixels. image_size: S, the image side in pixels.
    """

    def __init__(self, codebook: Tensor, patch: int, image_size: int):
        codebook = torch.as_tensor(codebook, dtype=torch.float32)
        if codebook.ndim != 2 or codebook.shape[1] != patch * patch * 3:
            raise ValueError(f"codebook must be (K, {patch * patch * 3}) for {patch} x {patch} RGB patches, "
                             f"got {tuple(codebook.shape)}")
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of the patch side {patch}")
        self.codebook, self.patch, self.image_size = codebook, int(patch), int(image_size)

    @property
    def num_codes(self) -> int:
        """K, the vocabulary of image tokens."""
        return self.codebook.shape[0]

    @property
    def grid(self) -> int:
        """Tokens per side: S / P."""
        return self.image_size // self.patch

    @property
    def num_tokens(self) -> int:
        """G, tokens per image: (S / P)^2."""
        return self.grid ** 2

    @classmethod
    def fit(cls, images, codes: int = 1024, patch: int = 4, seed: int = 0) -> "PatchTokenizer":
        """k-means (``MiniBatchKMeans``, batch 4,096, 3 initialisations) over every P x P patch of ``images``.

        Raises:
            ValueError: bad images, or fewer patches than ``codes``.
        """
        from sklearn.cluster import MiniBatchKMeans

        x = to_patches(images, patch).reshape(-1, patch * patch * 3)  # (N*G, P*P*3)
        if codes < 2 or codes > len(x):
            raise ValueError(f"codes must lie in [2, {len(x)}] (the number of patches), got {codes}")
        km = MiniBatchKMeans(n_clusters=codes, random_state=seed, batch_size=4096, n_init=3, max_iter=50)
        km.fit(x)
        return cls(torch.from_numpy(km.cluster_centers_.astype(np.float32)), patch, _check_images(images, patch).shape[1])

    def encode(self, images) -> Tensor:
        """(N, S, S, 3) uint8 -> (N, G) int64 codes: each patch's nearest centre (squared Euclidean distance).

        Raises:
            ValueError: images that are not (N, S, S, 3) uint8 at this tokenizer's size.
        """
        x = _check_images(images, self.patch)
        if x.shape[1] != self.image_size:
            raise ValueError(f"images must be {self.image_size} x {self.image_size}, got {x.shape[1]} x {x.shape[2]}")
        p = torch.from_numpy(to_patches(x, self.patch))  # (N, G, P*P*3)
        out = []
        for chunk in p.split(256):  # (n, G, P*P*3): bounded memory for the (n*G, K) distances
            d = torch.cdist(chunk.reshape(-1, p.shape[-1]), self.codebook)  # (n*G, K)
            out.append(d.argmin(1).reshape(len(chunk), -1))  # (n, G)
        return torch.cat(out) if out else torch.zeros(0, self.num_tokens, dtype=torch.long)

    def decode(self, codes) -> np.ndarray:
        """(N, G) integer codes in [0, K) -> (N, S, S, 3) uint8 images.

        Raises:
            ValueError: codes that are not integers, not (N, G), or outside [0, K).
        """
        c = torch.as_tensor(codes)
        if c.dtype.is_floating_point or c.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got {c.dtype}")
        if c.ndim != 2 or c.shape[1] != self.num_tokens:
            raise ValueError(f"codes must be (N, {self.num_tokens}), got {tuple(c.shape)}")
        if c.numel() and (int(c.min()) < 0 or int(c.max()) >= self.num_codes):
            raise ValueError(f"codes must lie in [0, {self.num_codes}), got {int(c.min())} .. {int(c.max())}")
        return from_patches(self.codebook[c.long().cpu()].numpy(), self.patch)  # (N, G, P*P*3) -> (N, S, S, 3)
