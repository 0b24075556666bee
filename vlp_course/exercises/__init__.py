"""Checks for the course's exercises.

Each notebook's graded cells call a ``check_*`` function from this package. A check runs the
learner's function and the package's reference implementation on the same seeded inputs and
compares them, printing specific feedback: which input, which shape or which value differs. A
failing check raises :class:`ExerciseFailed` (an ``AssertionError``), so nbgrader and nbval count it
as a failure; an exercise that is still a stub (``raise NotImplementedError``) fails with a hint.

The per-part checks live in submodules (``vlp_course.exercises.text`` and so on); this module holds
the comparison helpers they share.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

__all__ = ["ExerciseFailed", "compare", "run_cases", "passed"]


class ExerciseFailed(AssertionError):
    """Raised by a check when the learner's answer differs from the reference."""


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def compare(name: str, got: Any, expected: Any, *, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Compare a learner's value with the reference and raise :class:`ExerciseFailed` with details.

    Tensors and arrays are compared by shape, then values (``np.allclose(atol, rtol)``); the message
    names the first differing index. Other values (ints, strings, lists of strings, dicts) must be equal.

    Raises:
        ExerciseFailed: if the value's type, shape or content differs.
    """
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        if got is None:
            raise ExerciseFailed(f"{name}: your function returned None; expected an array of shape {tuple(expected.shape)}")
        if not isinstance(got, (torch.Tensor, np.ndarray, list, tuple, float, int)):
            raise ExerciseFailed(f"{name}: expected an array/tensor, got {type(got).__name__}")
        g, e = _as_array(got), _as_array(expected)
        if g.shape != e.shape:
            raise ExerciseFailed(f"{name}: shape {tuple(g.shape)} but expected {tuple(e.shape)}")
        if e.dtype == bool or g.dtype == bool:
            bad = np.argwhere(g.astype(bool) != e.astype(bool))
        else:
            with np.errstate(invalid="ignore"):
                bad = np.argwhere(~np.isclose(g.astype(np.float64), e.astype(np.float64), atol=atol, rtol=rtol))
        if len(bad):
            idx = tuple(int(i) for i in bad[0])
            raise ExerciseFailed(
                f"{name}: {len(bad)} of {e.size} values differ; first at index {idx}: "
                f"yours {g[idx]!r}, expected {e[idx]!r}"
            )
        return
    if isinstance(expected, float):
        if not isinstance(got, (int, float, np.floating, np.integer)) and not (
            isinstance(got, torch.Tensor) and got.numel() == 1
        ):
            raise ExerciseFailed(f"{name}: expected a number, got {type(got).__name__}")
        g = float(got)
        if not np.isclose(g, expected, atol=atol, rtol=rtol):
            raise ExerciseFailed(f"{name}: yours {g:.6g}, expected {expected:.6g}")
        return
    if got != expected:
        raise ExerciseFailed(f"{name}: yours {got!r}, expected {expected!r}")


def run_cases(
    exercise: str,
    student_fn: Callable[..., Any],
    reference_fn: Callable[..., Any],
    cases: list[tuple[str, tuple, dict]],
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    postprocess: Callable[[Any], Any] | None = None,
) -> None:
    """Run ``student_fn`` and ``reference_fn`` on each case and compare their outputs.

    Args:
        exercise: the exercise's name, used in messages.
        student_fn, reference_fn: the learner's function and the package's reference.
        cases: ``(label, args, kwargs)`` triples, built from seeded generators by the caller.
        postprocess: applied to both outputs before comparing (for example to sort a list).

    Raises:
        ExerciseFailed: on the first case that differs, naming the case.
    """
    if not callable(student_fn):
        raise ExerciseFailed(f"{exercise}: expected a function, got {type(student_fn).__name__}")
    for label, args, kwargs in cases:
        try:
            got = student_fn(*args, **kwargs)
        except NotImplementedError:
            raise ExerciseFailed(f"{exercise}: not implemented yet — replace `raise NotImplementedError()` with your code") from None
        except ExerciseFailed:
            raise
        except Exception as err:  # the learner's code crashed: say where
            raise ExerciseFailed(f"{exercise} [{label}]: your function raised {type(err).__name__}: {err}") from err
        expected = reference_fn(*args, **kwargs)
        if postprocess is not None:
            got, expected = postprocess(got), postprocess(expected)
        if isinstance(expected, tuple):
            if not isinstance(got, tuple) or len(got) != len(expected):
                raise ExerciseFailed(f"{exercise} [{label}]: expected a tuple of {len(expected)} values")
            for i, (g, e) in enumerate(zip(got, expected)):
                compare(f"{exercise} [{label}] output {i}", g, e, atol=atol, rtol=rtol)
        else:
            compare(f"{exercise} [{label}]", got, expected, atol=atol, rtol=rtol)
    passed(exercise, len(cases))


def passed(exercise: str, n_cases: int) -> None:
    """Print the success line of a check."""
    print(f"✔ {exercise}: all {n_cases} checks passed")
