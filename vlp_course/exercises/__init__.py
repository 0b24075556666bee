"""Checks for the course's exercises.

Each notebook's graded cells call a ``check_*`` function from this package. A check runs the
learner's function on seeded inputs and compares each output with the **stored** output of the
course's reference on the same inputs (``answers/<part>.json``, computed once by
``tools/exercise_answers.py`` from the references kept outside the package, in
``tests/exercise_references.py``; a test recomputes them so they cannot drift). The package itself
holds no reference answer a student copy could import and pass to a check.

A failing check raises :class:`ExerciseFailed` (an ``AssertionError``, so nbgrader and nbval count
the cell as failed) whose message is one line naming the exercise, the case and what differs, e.g.
``region_masking_801010, case 'one zeroed, one replaced': output #2 has shape (1, 4, 1), expected
(1, 4)``. In Jupyter, IPython shows that line instead of a traceback through this package
(``_render_traceback_``); when the learner's own code crashed, the lines of their code that were
running are shown under it.

The per-part checks live in submodules (``vlp_course.exercises.text`` and so on), one per topic or
model; each declares its exercises in ``EXERCISES`` (cases, tolerances, post-processing).
"""

from __future__ import annotations

import hashlib
import json
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["ExerciseFailed", "Exercise", "compare", "run_cases", "run_exercise", "passed", "load_answers",
           "encode", "decode", "ANSWERS_DIR", "randomize"]

ANSWERS_DIR = Path(__file__).resolve().parent / "answers"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


class ExerciseFailed(AssertionError):
    """Raised by a check when the learner's answer differs from the stored reference output.

    ``str(err)`` is the one-line message. ``detail`` holds extra lines (where the learner's code
    crashed) shown under it in Jupyter.
    """

    def __init__(self, message: str, detail: list[str] | None = None):
        super().__init__(message)
        self.detail = list(detail or [])

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of the traceback (IPython calls this when present)."""
        return [f"✘ {self.args[0]}", *self.detail]


@dataclass
class Exercise:
    """One auto-checked exercise.

    Attributes:
        cases: builds the ``(label, args, kwargs)`` triples from seeded generators (no argument).
        postprocess: applied to the learner's output before comparing (the stored outputs went
            through it too); may raise ``ValueError`` with a phrase saying what is wrong.
        atol, rtol: tolerances of the value comparison.
        no_grad: run the learner's function under ``torch.no_grad()``.
        whole_module_blocked: calling a ``torch.nn.Module`` argument itself (its ``forward``) fails
            the check: the exercise is to compute that module's output from its parts.
    """

    cases: Callable[[], list[tuple[str, tuple, dict]]]
    postprocess: Callable[[Any], Any] | None = None
    atol: float = 1e-5
    rtol: float = 1e-4
    no_grad: bool = False
    whole_module_blocked: bool = False
    extra: Callable[[Callable], None] | None = field(default=None)


# ---- formatting ----------------------------------------------------------------------------------

def _plain(v: Any) -> str:
    """A value as a learner reads it: ``0.25``, ``3``, ``True``, not ``np.float32(0.25)``."""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, tuple):
        return "(" + ", ".join(_plain(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(_plain(x) for x in v) + "]"
    return repr(v)


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _kind(x: Any) -> str:
    return type(x).__name__


def compare(name: str, got: Any, expected: Any, *, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Compare one learner output with the expected one; raise a one-line :class:`ExerciseFailed`.

    ``name`` is the subject of the message (``"negative_sampler, case 'x': output #1"``). Arrays and
    tensors are compared by shape, then values (``np.isclose(atol, rtol)``, booleans exactly), naming
    the first differing index; dicts by keys then values; lists item by item; other values by ``==``.

    Raises:
        ExerciseFailed: if the output's type, shape or content differs.
    """
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        e = _as_array(expected)
        if got is None:
            raise ExerciseFailed(f"{name} is None (is a `return` missing?); expected an array of shape {tuple(e.shape)}")
        if not isinstance(got, (torch.Tensor, np.ndarray, list, tuple, float, int, np.generic)):
            raise ExerciseFailed(f"{name} is a {_kind(got)}; expected an array/tensor of shape {tuple(e.shape)}")
        try:
            g = _as_array(got)
        except Exception:
            raise ExerciseFailed(f"{name} cannot be read as an array; expected shape {tuple(e.shape)}") from None
        if g.shape != e.shape:
            raise ExerciseFailed(f"{name} has shape {tuple(g.shape)}, expected {tuple(e.shape)}")
        if g.dtype == object:
            raise ExerciseFailed(f"{name} holds non-numbers; expected numbers of shape {tuple(e.shape)}")
        if e.dtype == bool or g.dtype == bool:
            bad = np.argwhere(g.astype(bool) != e.astype(bool))
        else:
            with np.errstate(invalid="ignore"):
                bad = np.argwhere(~np.isclose(g.astype(np.float64), e.astype(np.float64), atol=atol, rtol=rtol))
        if len(bad) and e.ndim == 0:
            raise ExerciseFailed(f"{name} is {_plain(g.item())}, expected {_plain(e.item())}")
        if len(bad):
            idx = tuple(int(i) for i in bad[0])
            raise ExerciseFailed(
                f"{name}: {len(bad)} of {e.size} values differ; first at index {_plain(idx)}: "
                f"yours {_plain(g[idx])}, expected {_plain(e[idx])}"
            )
        return
    if isinstance(expected, float):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float, np.floating, np.integer)):
            raise ExerciseFailed(f"{name} is a {_kind(got)}; expected a number")
        if not np.isclose(float(got), expected, atol=atol, rtol=rtol):
            raise ExerciseFailed(f"{name} is {_plain(float(got))}, expected {_plain(expected)}")
        return
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            raise ExerciseFailed(f"{name} is a {_kind(got)}; expected a dict")
        missing = [k for k in expected if k not in got]
        if missing:
            raise ExerciseFailed(f"{name} lacks the key {missing[0]!r} ({len(missing)} keys missing)")
        extra = [k for k in got if k not in expected]
        if extra:
            raise ExerciseFailed(f"{name} has the key {extra[0]!r}, which should not be there ({len(extra)} extra)")
        for k, v in expected.items():
            compare(f"{name}[{k!r}]", got[k], v, atol=atol, rtol=rtol)
        return
    if isinstance(expected, list):
        if not isinstance(got, (list, tuple)):
            raise ExerciseFailed(f"{name} is a {_kind(got)}; expected a list of {len(expected)} items")
        for i, (g, e) in enumerate(zip(got, expected)):
            if g != e:
                raise ExerciseFailed(f"{name}: item #{i + 1} is {_plain(g)}, expected {_plain(e)}")
        if len(got) != len(expected):
            raise ExerciseFailed(f"{name} has {len(got)} items, expected {len(expected)}")
        return
    if isinstance(expected, int) and isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, (np.generic,)):
        got = got.item()
    if got is None and expected is not None:
        raise ExerciseFailed(f"{name} is None (is a `return` missing?); expected {_plain(expected)}")
    if got != expected:
        raise ExerciseFailed(f"{name} is {_plain(got)}, expected {_plain(expected)}")


# ---- stored answers ------------------------------------------------------------------------------

def encode(x: Any) -> Any:
    """A reference output as JSON-ready data (arrays keep shape and dtype; tuples stay tuples)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return {"array": x.reshape(-1).tolist(), "shape": list(x.shape), "dtype": str(x.dtype)}
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, tuple):
        return {"tuple": [encode(v) for v in x]}
    if isinstance(x, dict):
        return {"dict": [[k, encode(v)] for k, v in x.items()]}
    if isinstance(x, list):
        return {"list": [encode(v) for v in x]}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"cannot store a {type(x).__name__}")


def decode(x: Any) -> Any:
    """The inverse of :func:`encode` (arrays come back as numpy arrays)."""
    if isinstance(x, dict):
        if "array" in x:
            return np.asarray(x["array"], dtype=x["dtype"]).reshape(x["shape"])
        if "tuple" in x:
            return tuple(decode(v) for v in x["tuple"])
        if "dict" in x:
            return {k: decode(v) for k, v in x["dict"]}
        if "list" in x:
            return [decode(v) for v in x["list"]]
    return x


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@lru_cache(maxsize=None)
def load_answers(part: str) -> dict[str, dict]:
    """The stored outputs of one part (``answers/<part>.json``), checked against ``answers/SHA256SUMS``.

    Returns:
        ``{exercise: {"labels": [...], "outputs": [...]}}`` with outputs decoded.

    Raises:
        RuntimeError: if the file is missing or its SHA-256 differs from the recorded one.
    """
    path = ANSWERS_DIR / f"{part}.json"
    sums = dict(reversed(line.split()) for line in (ANSWERS_DIR / "SHA256SUMS").read_text().splitlines() if line.strip())
    if not path.exists() or path.name not in sums:
        raise RuntimeError(f"the stored answers {path} are missing: reinstall the course")
    if _sha256(path) != sums[path.name]:
        raise RuntimeError(f"the stored answers {path} were changed (SHA-256 differs from answers/SHA256SUMS)")
    data = json.loads(path.read_text())
    return {name: {"labels": v["labels"], "outputs": [decode(o) for o in v["outputs"]]} for name, v in data.items()}


# ---- running a check -----------------------------------------------------------------------------

class _WholeModuleCalled(Exception):
    pass


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (LayerNorm weights around 1), so no check passes on zeros and ones; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            ln = name.endswith(("LayerNorm.weight", "layer_norm.weight"))
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if ln else 0.0))
    return module.eval()


def _block_forward(module: torch.nn.Module) -> None:
    def forward(*args, **kwargs):
        raise _WholeModuleCalled(type(module).__name__)

    module.forward = forward  # an instance attribute: the submodules keep their own forward


def _learner_frames(err: BaseException) -> list[str]:
    """The frames of the learner's code (not the course's, not an installed library's) in a traceback."""
    lines = []
    for fr in traceback.extract_tb(err.__traceback__):
        f = fr.filename
        if f.startswith(str(_PACKAGE_DIR)) or "site-packages" in f or "dist-packages" in f or f.startswith("<frozen"):
            continue
        lines.append(f"  in {fr.name}, line {fr.lineno}: {(fr.line or '').strip()}")
    return lines[-3:]


def _first_line(text: str) -> str:
    text = str(text).strip()
    return text.splitlines()[0] if text else ""


def run_cases(
    exercise: str,
    student_fn: Callable[..., Any],
    cases: list[tuple[str, tuple, dict]],
    expected: list[Any],
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    postprocess: Callable[[Any], Any] | None = None,
    no_grad: bool = False,
    whole_module_blocked: bool = False,
) -> None:
    """Run ``student_fn`` on each case and compare its output with the expected one.

    Args:
        exercise: the exercise's name, used in messages.
        student_fn: the learner's function.
        cases: ``(label, args, kwargs)`` triples, built from seeded generators by the caller.
        expected: one output per case (the stored reference outputs, already post-processed).
        postprocess: applied to the learner's output before comparing (for example to sort a list);
            a ``ValueError`` it raises becomes the message.
        no_grad: run under ``torch.no_grad()``.
        whole_module_blocked: a ``torch.nn.Module`` argument fails the check if called as a whole.

    Raises:
        ExerciseFailed: on the first case that differs, naming the case; outputs count from 1.
    """
    if not callable(student_fn):
        raise ExerciseFailed(f"{exercise}: expected a function, got a {_kind(student_fn)}")
    if str(getattr(student_fn, "__module__", "") or "").startswith("vlp_course"):
        raise ExerciseFailed(f"{exercise}: {getattr(student_fn, '__qualname__', student_fn)!r} is the course's own "
                             "function; pass the function you wrote")
    if len(cases) != len(expected):
        raise RuntimeError(f"{exercise}: {len(cases)} cases but {len(expected)} stored outputs")
    for (label, args, kwargs), want in zip(cases, expected):
        where = f"{exercise}, case '{label}'"
        if whole_module_blocked:
            for a in args:
                if isinstance(a, torch.nn.Module):
                    _block_forward(a)
        try:
            with torch.no_grad() if no_grad else torch.enable_grad():
                got = student_fn(*args, **kwargs)
        except NotImplementedError:
            raise ExerciseFailed(
                f"{exercise}: not implemented yet — replace `raise NotImplementedError()` with your code") from None
        except ExerciseFailed:
            raise
        except _WholeModuleCalled as err:
            raise ExerciseFailed(f"{where}: your function called the whole {err} module; compute its output "
                                 "from its parts, as the exercise asks") from None
        except Exception as err:  # the learner's code crashed: say where
            raise ExerciseFailed(f"{where}: your function raised {type(err).__name__}: {_first_line(err)}",
                                 _learner_frames(err)) from err
        if postprocess is not None:
            try:
                got = postprocess(got)
            except (ValueError, TypeError) as err:
                raise ExerciseFailed(f"{where}: {_first_line(err)}") from None
        if isinstance(want, tuple):
            if not isinstance(got, (tuple, list)) or len(got) != len(want):
                size = f"{len(got)} values" if isinstance(got, (tuple, list)) else f"a {_kind(got)}"
                raise ExerciseFailed(f"{where}: your function returned {size}; expected a tuple of {len(want)} values")
            for i, (g, e) in enumerate(zip(got, want)):
                compare(f"{where}: output #{i + 1}", g, e, atol=atol, rtol=rtol)
        else:
            compare(f"{where}: the output", got, want, atol=atol, rtol=rtol)


def run_exercise(part: str, exercise: str, exercises: dict[str, Exercise], student_fn: Callable[..., Any]) -> None:
    """Check ``student_fn`` on the cases of ``exercises[exercise]`` against ``answers/<part>.json``; print ✔.

    Raises:
        ExerciseFailed: on the first differing case.
        RuntimeError: if the stored answers are missing, altered, or do not match the cases.
    """
    ex = exercises[exercise]
    cases = ex.cases()
    stored = load_answers(part)[exercise]
    labels = [c[0] for c in cases]
    if stored["labels"] != labels:
        raise RuntimeError(f"{exercise}: the stored answers were computed for other cases; "
                           "run tools/exercise_answers.py")
    run_cases(exercise, student_fn, cases, stored["outputs"], atol=ex.atol, rtol=ex.rtol, postprocess=ex.postprocess,
              no_grad=ex.no_grad, whole_module_blocked=ex.whole_module_blocked)
    n = len(cases)
    if ex.extra is not None:
        ex.extra(student_fn)
        n += 1
    passed(exercise, n)


def passed(exercise: str, n_cases: int) -> None:
    """Print the success line of a check."""
    print(f"✔ {exercise}: all {n_cases} checks passed")
