"""Train and evaluate an image classifier with the course's one training loop.

Every vision notebook fits its classifiers with :func:`fit_classifier`, a thin layer over
:func:`vlp_course.training.train` (random mini-batches, cross-entropy, accuracy), and measures them
with :func:`accuracy`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_course.training import History, TrainConfig, train

__all__ = ["fit_classifier", "accuracy", "predict", "count_parameters", "minibatches", "random_shift"]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def random_shift(max_shift: int = 2):
    """Data augmentation: shift each batch of images (B, C, H, W) by a random whole number of pixels.

    Returns a function ``images -> images`` drawing (dy, dx) uniformly in [-max_shift, max_shift]
    (one shift per batch; pixels leaving one side re-enter on the other, which is harmless on the
    digits' blank border). AlexNet's augmentation (Krizhevsky et al. 2012, Sec. 4.1) used random crops.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")

    def shift(images: Tensor) -> Tensor:
        dy, dx = torch.randint(-max_shift, max_shift + 1, (2,)).tolist()
        return torch.roll(images, shifts=(dy, dx), dims=(2, 3))

    return shift


def _check_xy(X: Tensor, y: Tensor) -> None:
    if not isinstance(X, Tensor) or X.ndim != 4:
        raise ValueError(f"X must be a (N, C, H, W) tensor, got {getattr(X, 'shape', type(X).__name__)}")
    if not isinstance(y, Tensor) or y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"y must be a (N,) tensor of class indices with N = {len(X)}, got {getattr(y, 'shape', type(y).__name__)}")


def minibatches(X: Tensor, y: Tensor, batch_size: int, seed: int = 0):
    """A function ``step -> (images, labels)`` drawing seeded random mini-batches (with reshuffled epochs)."""
    _check_xy(X, y)
    if not 0 < batch_size:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    g = torch.Generator().manual_seed(seed)
    n = len(X)
    state = {"perm": torch.randperm(n, generator=g), "pos": 0}

    def batch(step: int):
        if state["pos"] + batch_size > n:
            state["perm"], state["pos"] = torch.randperm(n, generator=g), 0
        idx = state["perm"][state["pos"]: state["pos"] + batch_size]
        state["pos"] += batch_size
        return X[idx], y[idx]

    return batch


@torch.no_grad()
def predict(model: nn.Module, X: Tensor, batch_size: int = 512) -> Tensor:
    """Class scores (N, K) of ``model`` on images (N, C, H, W), computed in eval mode in chunks."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = torch.cat([model(X[i: i + batch_size].to(dev)).cpu() for i in range(0, len(X), batch_size)])
    model.train(was_training)
    return out


def accuracy(model: nn.Module, X: Tensor, y: Tensor) -> float:
    """Share of the N images (N, C, H, W) whose arg-max class equals the label y (N,); in [0, 1]."""
    _check_xy(X, y)
    return float((predict(model, X).argmax(-1) == y).float().mean())


def fit_classifier(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    *,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adamw",
    weight_decay: float = 0.0,
    seed: int = 0,
    X_test: Tensor | None = None,
    y_test: Tensor | None = None,
    eval_every: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
    grad_clip: float | None = 1.0,
    decay: str = "none",
    augment=None,
) -> History:
    """Train ``model`` (images (B, C, H, W) -> logits (B, K)) with cross-entropy for ``steps`` steps.

    Built on :func:`vlp_course.training.train`; the History records ``loss`` and ``acc`` (the
    mini-batch accuracy) per step, and the test accuracy ``test_acc`` if a test set is given.
    ``augment`` (e.g. :func:`random_shift`) transforms each training batch of images.

    Raises:
        ValueError: if X is not (N, C, H, W) or y not (N,).
    """
    _check_xy(X, y)
    torch.manual_seed(seed)

    def step_fn(m: nn.Module, batch):
        xb, yb = batch
        if augment is not None:
            xb = augment(xb)
        logits = m(xb)  # (B, K)
        loss = F.cross_entropy(logits, yb)
        return {"loss": loss, "acc": (logits.argmax(-1) == yb).float().mean()}

    eval_fn = None
    if X_test is not None and y_test is not None:
        eval_fn = lambda m: {"test_acc": accuracy(m, X_test, y_test)}  # noqa: E731
    cfg = TrainConfig(
        steps=steps, lr=lr, optimizer=optimizer, weight_decay=weight_decay, seed=seed,
        eval_every=eval_every, progress=progress, grad_clip=grad_clip, decay=decay,
    )
    return train(model, minibatches(X, y, batch_size, seed), step_fn, cfg, device=device, eval_fn=eval_fn)
