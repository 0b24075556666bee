"""Checks for the exercises of Part 2 (notebooks 04-07: LeNet-5, deeper CNNs, ResNet, GAN).

Each ``check_*`` runs the learner's function on seeded inputs and compares it with the stored
outputs of the course's reference (``answers/vision.json``), raising
:class:`~vlp_course.exercises.ExerciseFailed` with the differing case.
"""

from __future__ import annotations

from typing import Callable

import torch

from vlp_course.exercises import Exercise, run_exercise
from vlp_course.vision.blocks import ResidualBlock

__all__ = [
    "check_conv_output_size", "check_conv_params", "check_receptive_field", "check_reduced_conv_params",
    "check_residual_forward", "check_shortcut_params", "check_discriminator_loss", "check_generator_loss",
    "EXERCISES",
]


# ---- 04 LeNet-5 -------------------------------------------------------------------------------

def _conv_output_size_cases():
    return [
        ("LeNet C1: 32, k=5", (32, 5, 1, 0), {}),
        ("LeNet S2: 28, k=2, s=2", (28, 2, 2, 0), {}),
        ("LeNet C3: 14, k=5", (14, 5, 1, 0), {}),
        ("'same' conv: 15, k=3, p=1", (15, 3, 1, 1), {}),
        ("AlexNet conv1: 227, k=11, s=4", (227, 11, 4, 0), {}),
        ("odd size, stride 2: 7, k=3, s=2, p=1", (7, 3, 2, 1), {}),
        ("ResNet stem: 224, k=7, s=2, p=3", (224, 7, 2, 3), {}),
    ]


def _conv_params_cases():
    return [("LeNet C1", (1, 6, 5), {}), ("LeNet C3 (full table)", (6, 16, 5), {}),
            ("LeNet C5", (16, 120, 5), {}), ("1 x 1", (64, 32, 1), {}), ("VGG 3 x 3", (64, 128, 3), {})]


# ---- 05 AlexNet, VGG, GoogLeNet -----------------------------------------------------------------

def _receptive_field_cases():
    return [
        ("one 5 x 5", ([5], [1]), {}), ("two 3 x 3", ([3, 3], [1, 1]), {}), ("three 3 x 3", ([3, 3, 3], [1, 1, 1]), {}),
        ("3 x 3, pool 2/2, 3 x 3", ([3, 2, 3], [1, 2, 1]), {}),
        ("LeNet C1 S2 C3 S4 C5", ([5, 2, 5, 2, 5], [1, 2, 1, 2, 1]), {}),
        ("AlexNet conv1, pool1", ([11, 3], [4, 2]), {}),
    ]


def _reduced_conv_params_cases():
    """GoogLeNet's Table 1 (inception 3a, 4a, 5b) and a tiny one."""
    return [("3a 3x3", (192, 96, 128, 3), {}), ("3a 5x5", (192, 16, 32, 5), {}),
            ("4a 5x5", (480, 16, 48, 5), {}), ("5b 3x3", (832, 192, 384, 3), {}), ("tiny", (4, 2, 3, 3), {})]


# ---- 06 ResNet ---------------------------------------------------------------------------------

def _residual_cases():
    out = []
    for label, (ci, co, s) in {"identity shortcut": (8, 8, 1), "projection, stride 2": (4, 8, 2),
                               "projection, channels only": (6, 10, 1)}.items():
        with torch.random.fork_rng(devices=[]):  # leaves the notebook's random stream alone
            torch.manual_seed(len(out) + 1)
            blk = ResidualBlock(ci, co, s)
            for m in blk.modules():  # non-trivial batch-norm statistics and affine parameters
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.normal_(0, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.data.uniform_(0.5, 1.5)
                    m.bias.data.normal_(0, 0.3)
            x = torch.randn(2, ci, 7, 7)
        out.append((label, (blk.eval(), x), {}))
    return out


def _shortcut_params_cases():
    return [("same shape", (64, 64, 1), {}), ("ResNet-18 layer2", (64, 128, 2), {}),
            ("ResNet-18 layer4", (256, 512, 2), {}), ("wider, stride 1", (16, 32, 1), {}),
            ("same channels, stride 2", (32, 32, 2), {})]


# ---- 07 GAN ------------------------------------------------------------------------------------

def _logit_cases(n_args: int):
    g = torch.Generator().manual_seed(7)
    cases = []
    for label, scale, b in (("small logits", 1.0, 8), ("large logits", 20.0, 5), ("one sample", 3.0, 1)):
        args = tuple(torch.randn(b, generator=g) * scale for _ in range(n_args))
        cases.append((label, args, {}))
    return cases


EXERCISES = {
    "conv_output_size": Exercise(_conv_output_size_cases),
    "conv_params": Exercise(_conv_params_cases),
    "receptive_field": Exercise(_receptive_field_cases),
    "reduced_conv_params": Exercise(_reduced_conv_params_cases),
    "residual_forward": Exercise(_residual_cases, no_grad=True, whole_module_blocked=True),
    "shortcut_params": Exercise(_shortcut_params_cases),
    "discriminator_loss": Exercise(lambda: _logit_cases(2), atol=1e-4),
    "generator_loss": Exercise(lambda: _logit_cases(1), atol=1e-4),
}


def check_conv_output_size(fn: Callable[[int, int, int, int], int]) -> None:
    """``fn(size, kernel, stride, padding) -> int``: the side of a convolution's output."""
    run_exercise("vision", "conv_output_size", EXERCISES, fn)


def check_conv_params(fn: Callable[[int, int, int], int]) -> None:
    """``fn(c_in, c_out, kernel) -> int``: parameters of a Conv2d with bias (the stored answers count
    PyTorch's ``Conv2d`` parameters)."""
    run_exercise("vision", "conv_params", EXERCISES, fn)


def check_receptive_field(fn: Callable[[list[int], list[int]], int]) -> None:
    """``fn(kernels, strides) -> int``: the receptive field of a stack of layers."""
    run_exercise("vision", "receptive_field", EXERCISES, fn)


def check_reduced_conv_params(fn: Callable[[int, int, int, int], int]) -> None:
    """``fn(c_in, c_reduce, c_out, kernel) -> int``: parameters (with biases) of a 1 x 1 reduction to
    ``c_reduce`` channels followed by a k x k convolution to ``c_out``; cases from GoogLeNet's Table 1."""
    run_exercise("vision", "reduced_conv_params", EXERCISES, fn)


def check_residual_forward(fn: Callable[[ResidualBlock, torch.Tensor], torch.Tensor]) -> None:
    """``fn(block, x)``: the basic block's output computed from its parts (conv1, bn1, conv2, bn2,
    shortcut, relu); calling ``block(x)`` itself fails the check."""
    run_exercise("vision", "residual_forward", EXERCISES, fn)


def check_shortcut_params(fn: Callable[[int, int, int], int]) -> None:
    """``fn(c_in, c_out, stride) -> int``: parameters of a basic block's shortcut (0 for the identity,
    else a 1 x 1 convolution without bias and a batch norm), counted on :class:`ResidualBlock`."""
    run_exercise("vision", "shortcut_params", EXERCISES, fn)


def check_discriminator_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``fn(real_logits, fake_logits) -> scalar``: -mean log D(x) - mean log(1 - D(G(z))), from logits."""
    run_exercise("vision", "discriminator_loss", EXERCISES, fn)


def check_generator_loss(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """``fn(fake_logits) -> scalar``: the non-saturating loss -mean log D(G(z)), from logits."""
    run_exercise("vision", "generator_loss", EXERCISES, fn)
