"""The building blocks of the deeper convolutional networks, written by hand.

* :class:`VGGBlock` — n 3 x 3 convolutions (+ ReLU) then a 2 x 2 max pool (Simonyan & Zisserman 2015,
  "Very deep convolutional networks for large-scale image recognition", Sec. 2.1 and 2.3: a stack of
  two 3 x 3 convolutions has the receptive field of one 5 x 5, three that of a 7 x 7).
* :class:`InceptionModule` — parallel 1 x 1, 3 x 3, 5 x 5 and pooled branches concatenated along the
  channels, with 1 x 1 "reductions" before the expensive convolutions (Szegedy et al. 2015, "Going
  deeper with convolutions", Sec. 4 and Fig. 2b).
* :class:`ResidualBlock` — ResNet's basic block y = ReLU(F(x) + shortcut(x)) with an identity or a
  1 x 1 projection shortcut (He et al. 2016, "Deep residual learning for image recognition",
  Sec. 3.2-3.3, option B; torchvision's ``models/resnet.py`` ``BasicBlock``).
* :func:`receptive_field` — the receptive field of a stack of layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["VGGBlock", "InceptionModule", "ResidualBlock", "PlainBlock", "receptive_field", "check_image_batch"]


def check_image_batch(x: Tensor, channels: int, name: str = "input") -> None:
    """Raise a ValueError naming the expected (B, C, H, W) shape unless ``x`` is 4-D with ``channels`` channels."""
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{name} must be a (B, {channels}, H, W) tensor, got {tuple(getattr(x, 'shape', ())) or type(x).__name__}")


def receptive_field(kernels: list[int], strides: list[int] | None = None) -> int:
    """Receptive field (in input pixels) of one output unit of a stack of convolutions/poolings.

    r = 1 + sum_l (k_l - 1) * prod_{i<l} s_i : each layer widens the field by (k - 1) times the
    product of the strides below it.

    Raises:
        ValueError: if the lists differ in length or a kernel/stride is not positive.
    """
    strides = [1] * len(kernels) if strides is None else list(strides)
    if len(strides) != len(kernels):
        raise ValueError(f"kernels and strides must have the same length, got {len(kernels)} and {len(strides)}")
    if any(k <= 0 for k in kernels) or any(s <= 0 for s in strides):
        raise ValueError("kernels and strides must be positive integers")
    r, jump = 1, 1
    for k, s in zip(kernels, strides):
        r += (k - 1) * jump
        jump *= s
    return r


class VGGBlock(nn.Module):
    """``n_convs`` 3 x 3 convolutions (padding 1, ReLU) followed by a 2 x 2 max pool.

    Input (B, c_in, H, W); output (B, c_out, H/2, W/2).

    Raises:
        ValueError: on an input without ``c_in`` channels.
    """

    def __init__(self, c_in: int, c_out: int, n_convs: int = 2, batch_norm: bool = False):
        super().__init__()
        self.c_in = c_in
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers.append(nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, self.c_in)
        return self.body(x)  # (B, c_out, H/2, W/2)


def _conv_relu(c_in: int, c_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.ReLU(inplace=True))


class InceptionModule(nn.Module):
    """GoogLeNet's Inception module with dimension reductions (Szegedy et al. 2015, Fig. 2b).

    Four branches on the same input, concatenated along channels:
    1 x 1 conv (``c1``); 1 x 1 reduce (``c3_reduce``) then 3 x 3 (``c3``); 1 x 1 reduce (``c5_reduce``)
    then 5 x 5 (``c5``); 3 x 3 max pool (stride 1) then 1 x 1 projection (``pool_proj``).
    With ``reduce=False`` the 3 x 3 and 5 x 5 convolutions read the input directly (the "naive"
    module of Fig. 2a, whose pooled branch keeps its c_in channels).

    Input (B, c_in, H, W); output (B, c1 + c3 + c5 + pool_proj, H, W) (naive: c1 + c3 + c5 + c_in).

    Raises:
        ValueError: on an input without ``c_in`` channels.
    """

    def __init__(self, c_in: int, c1: int, c3_reduce: int, c3: int, c5_reduce: int, c5: int, pool_proj: int, reduce: bool = True):
        super().__init__()
        self.c_in = c_in
        self.branch1 = _conv_relu(c_in, c1, 1)
        if reduce:
            self.branch3 = nn.Sequential(_conv_relu(c_in, c3_reduce, 1), _conv_relu(c3_reduce, c3, 3))
            self.branch5 = nn.Sequential(_conv_relu(c_in, c5_reduce, 1), _conv_relu(c5_reduce, c5, 5))
            self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), _conv_relu(c_in, pool_proj, 1))
            self.out_channels = c1 + c3 + c5 + pool_proj
        else:
            self.branch3 = _conv_relu(c_in, c3, 3)
            self.branch5 = _conv_relu(c_in, c5, 5)
            self.branch_pool = nn.MaxPool2d(3, stride=1, padding=1)
            self.out_channels = c1 + c3 + c5 + c_in

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, self.c_in)
        branches = [self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)]  # each (B, c_i, H, W)
        return torch.cat(branches, dim=1)  # (B, sum c_i, H, W)


class ResidualBlock(nn.Module):
    """ResNet's basic block: y = ReLU(BN(conv3x3(ReLU(BN(conv3x3(x))))) + shortcut(x)).

    The first convolution has stride ``stride``. The shortcut is the identity when the shape is kept
    (``stride == 1`` and ``c_in == c_out``), otherwise a projection: a 1 x 1 convolution with stride
    ``stride`` and no bias, then batch norm (He et al. 2016, Sec. 3.3, option B; torchvision's
    ``downsample``). Same parameters and layout as torchvision's ``BasicBlock``.

    Input (B, c_in, H, W); output (B, c_out, H', W') with H' = ceil(H / stride).

    Raises:
        ValueError: on an input without ``c_in`` channels.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, residual: bool = True):
        super().__init__()
        self.c_in, self.c_out, self.residual = c_in, c_out, residual
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if residual and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Sequential(  # the projection shortcut W_s x
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def residual_branch(self, x: Tensor) -> Tensor:
        """F(x): conv-BN-ReLU-conv-BN, (B, c_in, H, W) -> (B, c_out, H', W')."""
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, self.c_in)
        out = self.residual_branch(x)
        if self.residual:
            out = out + self.shortcut(x)  # F(x) + x  (or F(x) + W_s x)
        return self.relu(out)


class PlainBlock(ResidualBlock):
    """The same two convolutions as :class:`ResidualBlock` without the shortcut (He et al.'s "plain" net)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__(c_in, c_out, stride, residual=False)
