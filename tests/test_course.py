"""Notebook set-up and the exercise-check helpers."""

import numpy as np
import pytest
import torch

from vlp_course import course
from vlp_course.exercises import ExerciseFailed, compare, run_cases


def test_seed_everything_makes_torch_and_numpy_repeat():
    course.seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))
    course.seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="non-negative integer"):
        course.seed_everything(-1)


def test_pick_device_prefers_cpu_here_and_rejects_unknown():
    dev = course.pick_device()
    assert dev.type in {"cpu", "cuda", "mps"}
    assert course.pick_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="prefer must be"):
        course.pick_device("tpu")


def test_offline_flag(monkeypatch):
    for name in ("VLP_COURSE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    assert not course.is_offline()
    monkeypatch.setenv("VLP_COURSE_OFFLINE", "1")
    assert course.is_offline()


def test_setup_notebook_returns_device_and_prints_versions(capsys):
    env = course.setup_notebook(seed=0)
    out = capsys.readouterr().out
    assert "torch" in out and "device" in out
    assert env.device.type in {"cpu", "cuda", "mps"} and env.seed == 0


def test_compare_names_shape_and_first_differing_value():
    with pytest.raises(ExerciseFailed, match=r"^x has shape \(2,\), expected \(3,\)$"):
        compare("x", torch.zeros(2), torch.zeros(3))
    with pytest.raises(ExerciseFailed, match=r"^x: 1 of 3 values differ; first at index \(1,\): yours 2.5, expected 2$"):
        compare("x", torch.tensor([1.0, 2.5, 3.0]), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ExerciseFailed, match=r"^x is None \(is a `return` missing\?\); expected an array of shape \(2,\)$"):
        compare("x", None, np.zeros(2))
    compare("x", [1.0, 2.0], np.array([1.0, 2.0]))


def test_run_cases_reports_stubs_and_crashes_and_passes_correct_code(capsys):
    cases = [("small", (torch.arange(3.0),), {})]
    ref = [torch.arange(3.0) * 2]  # the stored output of the case

    def stub(x):
        raise NotImplementedError()

    with pytest.raises(ExerciseFailed, match="not implemented yet"):
        run_cases("double", stub, cases, ref)
    with pytest.raises(ExerciseFailed, match="raised ZeroDivisionError"):
        run_cases("double", lambda x: 1 / 0, cases, ref)
    with pytest.raises(ExerciseFailed, match="values differ"):
        run_cases("double", lambda x: x * 3, cases, ref)
    run_cases("double", lambda x: x + x, cases, ref)
