"""Notebook set-up shared by every notebook of the course.

Every notebook's setup cell calls :func:`setup_notebook`. It seeds the random number generators,
picks the device (CUDA, else Apple MPS, else CPU), prints the versions a bug report needs, and warns
a Colab user who forgot to switch the runtime to a GPU.

Environment variables
---------------------
``VLP_COURSE_OFFLINE=1``
    The course's own offline flag: loaders never try a model or data hub, they use what the
    installed packages (with ``vlp_course/shipped/``) ship (CI sets it, together with ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import os
import platform
import random
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import torch

OFFLINE_ENV = "VLP_COURSE_OFFLINE"


def is_offline() -> bool:
    """True when the course must not reach any hub (``VLP_COURSE_OFFLINE`` or ``HF_HUB_OFFLINE`` set to 1/true)."""
    for name in (OFFLINE_ENV, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    return False


def in_colab() -> bool:
    """True inside a Google Colab kernel."""
    return "google.colab" in sys.modules


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (CPU and every GPU).

    Raises:
        ValueError: if ``seed`` is negative or not an integer.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))


def pick_device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, else MPS, else CPU.

    Args:
        prefer: force a device ("cpu", "cuda", "mps"); ``None`` picks automatically.

    Raises:
        ValueError: if ``prefer`` names an unknown or unavailable device.
    """
    if prefer is not None:
        if prefer not in {"cpu", "cuda", "mps"}:
            raise ValueError(f"prefer must be 'cpu', 'cuda' or 'mps', got {prefer!r}")
        if prefer == "cuda" and not torch.cuda.is_available():
            raise ValueError("prefer='cuda' but no CUDA device is available")
        if prefer == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError("prefer='mps' but no MPS device is available")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class NotebookEnv:
    """What :func:`setup_notebook` found: the device, the seed and whether we run offline or on Colab."""

    device: torch.device
    seed: int
    offline: bool
    colab: bool


def versions() -> dict[str, str]:
    """Versions of Python and the main libraries, as strings (read from package metadata, no imports)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for dist in ("torchvision", "transformers", "scikit-learn", "matplotlib", "vlp-course"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def setup_notebook(seed: int = 0, device: str | None = None, quiet: bool = False) -> NotebookEnv:
    """Seed everything, pick the device, print versions; warn a Colab user on a CPU runtime.

    Args:
        seed: the seed for Python, NumPy and PyTorch.
        device: force a device (see :func:`pick_device`); ``None`` picks CUDA, else MPS, else CPU.
        quiet: print nothing.

    Returns:
        A :class:`NotebookEnv` with the chosen ``device``.
    """
    seed_everything(seed)
    dev = pick_device(device)
    env = NotebookEnv(device=dev, seed=int(seed), offline=is_offline(), colab=in_colab())
    try:
        import matplotlib

        matplotlib.rcParams.update({"figure.dpi": 90, "figure.figsize": (6.0, 3.6), "axes.grid": False})
    except Exception:  # pragma: no cover
        pass
    if not quiet:
        v = versions()
        print(" | ".join(f"{k} {v[k]}" for k in v))
        print(f"device: {dev}  seed: {seed}  offline: {env.offline}")
    if env.colab and dev.type == "cpu":
        warnings.warn(
            "This Colab runtime has no GPU. The notebook still runs (it is sized for a laptop CPU), "
            "but for the larger settings choose Runtime > Change runtime type > GPU.",
            stacklevel=2,
        )
    return env
