"""Checks for the exercises of Part 2 (notebooks 04-07: LeNet-5, deeper CNNs, ResNet, GAN).

Each ``check_*`` runs the learner's function and the package's reference on the same seeded inputs
and raises :class:`~vlp_course.exercises.ExerciseFailed` with the differing case.
"""

from __future__ import annotations

from typing import Callable

import torch

from vlp_course.exercises import run_cases
from vlp_course.vision.blocks import ResidualBlock, receptive_field
from vlp_course.vision.gan import discriminator_loss, generator_loss
from vlp_course.vision.lenet import conv_output_size, conv_params

__all__ = [
    "check_conv_output_size", "check_conv_params", "check_receptive_field", "check_reduced_conv_params",
    "check_residual_forward", "check_shortcut_params", "check_discriminator_loss", "check_generator_loss",
    "reduced_conv_params", "shortcut_params",
]


# ---- 04 LeNet-5 -------------------------------------------------------------------------------

def check_conv_output_size(fn: Callable[[int, int, int, int], int]) -> None:
    """``fn(size, kernel, stride, padding) -> int``: the side of a convolution's output."""
    cases = [
        ("LeNet C1: 32, k=5", (32, 5, 1, 0), {}),
        ("LeNet S2: 28, k=2, s=2", (28, 2, 2, 0), {}),
        ("LeNet C3: 14, k=5", (14, 5, 1, 0), {}),
        ("'same' conv: 15, k=3, p=1", (15, 3, 1, 1), {}),
        ("AlexNet conv1: 227, k=11, s=4", (227, 11, 4, 0), {}),
        ("odd size, stride 2: 7, k=3, s=2, p=1", (7, 3, 2, 1), {}),
        ("ResNet stem: 224, k=7, s=2, p=3", (224, 7, 2, 3), {}),
    ]
    run_cases("conv_output_size", fn, lambda n, k, s, p: conv_output_size(n, k, s, p), cases)


def check_conv_params(fn: Callable[[int, int, int], int]) -> None:
    """``fn(c_in, c_out, kernel) -> int``: parameters of a Conv2d with bias; checked against PyTorch too."""
    cases = [("LeNet C1", (1, 6, 5), {}), ("LeNet C3 (full table)", (6, 16, 5), {}),
             ("LeNet C5", (16, 120, 5), {}), ("1 x 1", (64, 32, 1), {}), ("VGG 3 x 3", (64, 128, 3), {})]
    torch_count = lambda ci, co, k: sum(p.numel() for p in torch.nn.Conv2d(ci, co, k).parameters())  # noqa: E731
    for _, args, _ in cases:
        assert conv_params(*args) == torch_count(*args)
    run_cases("conv_params", fn, torch_count, cases)


# ---- 05 AlexNet, VGG, GoogLeNet -----------------------------------------------------------------

def check_receptive_field(fn: Callable[[list[int], list[int]], int]) -> None:
    """``fn(kernels, strides) -> int``: the receptive field of a stack of layers."""
    cases = [
        ("one 5 x 5", ([5], [1]), {}), ("two 3 x 3", ([3, 3], [1, 1]), {}), ("three 3 x 3", ([3, 3, 3], [1, 1, 1]), {}),
        ("3 x 3, pool 2/2, 3 x 3", ([3, 2, 3], [1, 2, 1]), {}),
        ("LeNet C1 S2 C3 S4 C5", ([5, 2, 5, 2, 5], [1, 2, 1, 2, 1]), {}),
        ("AlexNet conv1, pool1", ([11, 3], [4, 2]), {}),
    ]
    run_cases("receptive_field", fn, receptive_field, cases)


def reduced_conv_params(c_in: int, c_reduce: int, c_out: int, kernel: int) -> int:
    """Parameters (with biases) of a 1 x 1 reduction to ``c_reduce`` channels followed by a k x k conv to ``c_out``."""
    return conv_params(c_in, c_reduce, 1) + conv_params(c_reduce, c_out, kernel)


def check_reduced_conv_params(fn: Callable[[int, int, int, int], int]) -> None:
    """``fn(c_in, c_reduce, c_out, kernel) -> int``; cases from GoogLeNet's Table 1 (inception 3a, 4a, 5b)."""
    cases = [("3a 3x3", (192, 96, 128, 3), {}), ("3a 5x5", (192, 16, 32, 5), {}),
             ("4a 5x5", (480, 16, 48, 5), {}), ("5b 3x3", (832, 192, 384, 3), {}), ("tiny", (4, 2, 3, 3), {})]

    def torch_count(ci, cr, co, k):
        m = torch.nn.Sequential(torch.nn.Conv2d(ci, cr, 1), torch.nn.Conv2d(cr, co, k))
        return sum(p.numel() for p in m.parameters())

    run_cases("reduced_conv_params", fn, torch_count, cases)


# ---- 06 ResNet ---------------------------------------------------------------------------------

def _blocks() -> list[tuple[str, ResidualBlock, torch.Tensor]]:
    out = []
    for label, (ci, co, s) in {"identity shortcut": (8, 8, 1), "projection, stride 2": (4, 8, 2),
                               "projection, channels only": (6, 10, 1)}.items():
        torch.manual_seed(len(out) + 1)
        blk = ResidualBlock(ci, co, s)
        for m in blk.modules():  # non-trivial batch-norm statistics and affine parameters
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.normal_(0, 0.3)
        blk.eval()
        out.append((label, blk, torch.randn(2, ci, 7, 7)))
    return out


def check_residual_forward(fn: Callable[[ResidualBlock, torch.Tensor], torch.Tensor]) -> None:
    """``fn(block, x)``: the basic block's output computed from its parts (conv1, bn1, conv2, bn2, shortcut, relu)."""
    cases = [(label, (blk, x), {}) for label, blk, x in _blocks()]
    with torch.no_grad():
        run_cases("residual_forward", lambda b, x: fn(b, x), lambda b, x: b(x), cases, atol=1e-5)


def shortcut_params(c_in: int, c_out: int, stride: int) -> int:
    """Parameters of a basic block's shortcut: 0 (identity) or c_in*c_out + 2*c_out (1 x 1 conv, no bias, + BN)."""
    return sum(p.numel() for p in ResidualBlock(c_in, c_out, stride).shortcut.parameters())


def check_shortcut_params(fn: Callable[[int, int, int], int]) -> None:
    """``fn(c_in, c_out, stride) -> int``: parameters of the shortcut, compared with :class:`ResidualBlock`."""
    cases = [("same shape", (64, 64, 1), {}), ("ResNet-18 layer2", (64, 128, 2), {}),
             ("ResNet-18 layer4", (256, 512, 2), {}), ("wider, stride 1", (16, 32, 1), {}),
             ("same channels, stride 2", (32, 32, 2), {})]
    run_cases("shortcut_params", fn, shortcut_params, cases)


# ---- 07 GAN ------------------------------------------------------------------------------------

def _logit_cases(n_args: int):
    g = torch.Generator().manual_seed(7)
    cases = []
    for label, scale, b in (("small logits", 1.0, 8), ("large logits", 20.0, 5), ("one sample", 3.0, 1)):
        args = tuple(torch.randn(b, generator=g) * scale for _ in range(n_args))
        cases.append((label, args, {}))
    return cases


def check_discriminator_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``fn(real_logits, fake_logits) -> scalar``: -mean log D(x) - mean log(1 - D(G(z))), from logits."""
    run_cases("discriminator_loss", fn, discriminator_loss, _logit_cases(2), atol=1e-4)


def check_generator_loss(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """``fn(fake_logits) -> scalar``: the non-saturating loss -mean log D(G(z)), from logits."""
    run_cases("generator_loss", fn, generator_loss, _logit_cases(1), atol=1e-4)
