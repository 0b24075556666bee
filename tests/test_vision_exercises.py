"""The Part 2 exercise checks accept the reference and reject stubs and wrong answers."""

from __future__ import annotations

import pytest
import torch

from vlp_course.exercises import ExerciseFailed
from vlp_course.exercises import vision as ex
from vlp_course.vision.blocks import receptive_field
from vlp_course.vision.gan import discriminator_loss, generator_loss
from vlp_course.vision.lenet import conv_output_size, conv_params

from exercise_references import reduced_conv_params, shortcut_params


def stub(*args, **kwargs):
    raise NotImplementedError()


def residual_ref(block, x):
    out = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
    return block.relu(out + block.shortcut(x))


CHECKS = [
    (ex.check_conv_output_size, lambda n, k, s, p: conv_output_size(n, k, s, p), lambda n, k, s, p: (n - k) // s + 1),  # forgets padding
    (ex.check_conv_params, lambda ci, co, k: conv_params(ci, co, k), lambda ci, co, k: ci * co * k * k),  # forgets biases
    (ex.check_receptive_field, lambda ks, ss: receptive_field(ks, ss), lambda ks, ss: 1 + sum(k - 1 for k in ks)),  # ignores strides
    (ex.check_reduced_conv_params, reduced_conv_params, lambda ci, cr, co, k: conv_params(ci, co, k)),
    (ex.check_residual_forward, residual_ref, lambda b, x: b.relu(b.residual_branch(x))),  # no shortcut
    (ex.check_shortcut_params, shortcut_params, lambda ci, co, s: ci * co),
    (ex.check_discriminator_loss, lambda r, f: discriminator_loss(r, f),
     lambda r, f: -(torch.log(torch.sigmoid(r)) + torch.log(1 - torch.sigmoid(f))).mean()),  # overflows
    (ex.check_generator_loss, lambda f: generator_loss(f), lambda f: torch.log(1 - torch.sigmoid(f)).mean()),  # saturating
]


@pytest.mark.parametrize("check,good,bad", CHECKS, ids=[c[0].__name__ for c in CHECKS])
def test_check_accepts_reference_and_rejects_stub_and_wrong_answer(check, good, bad, capsys):
    check(good)
    assert "✔" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="not implemented"):
        check(stub)
    with pytest.raises(ExerciseFailed):
        check(bad)
