"""One training loop for every notebook that trains.

``train(model, batches, step_fn, config)`` runs ``config.steps`` optimisation steps. ``step_fn(model,
batch)`` returns a dict of scalar tensors with at least ``"loss"``; every entry is recorded in the
:class:`History`, which the notebooks plot. Features: seeding, the device from the setup cell, a tqdm
progress bar, gradient clipping, linear warm-up, optional evaluation every ``eval_every`` steps with
best-weights tracking, and a clean stop on Ctrl-C / Jupyter's interrupt that keeps the best weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from vlp_course.course import seed_everything

__all__ = ["TrainConfig", "History", "train", "move_to"]


@dataclass
class TrainConfig:
    """Settings of :func:`train`. Budgets are in steps, not seconds, so results do not depend on machine load.

    Attributes:
        steps: number of optimisation steps.
        lr: peak learning rate. weight_decay: AdamW/SGD weight decay.
        optimizer: ``"adamw"`` or ``"sgd"`` (momentum ``momentum``).
        warmup_steps: linear warm-up from 0 to ``lr``; constant afterwards unless ``decay`` is "linear" or "cosine".
        grad_clip: max global gradient norm (``None`` disables clipping).
        eval_every: run ``eval_fn`` every this many steps (0: only at the end, if given).
        maximize: whether a larger value of ``eval_metric`` is better.
        seed: seeds Python, NumPy and PyTorch before training.
        progress: show a tqdm progress bar.
    """

    steps: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    momentum: float = 0.9
    warmup_steps: int = 0
    decay: str = "none"
    grad_clip: float | None = 1.0
    eval_every: int = 0
    eval_metric: str | None = None
    maximize: bool = True
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if int(self.steps) < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.decay not in ("none", "linear", "cosine"):
            raise ValueError(f"decay must be 'none', 'linear' or 'cosine', got {self.decay!r}")


@dataclass
class History:
    """What happened during training: per-step training scalars and per-evaluation metrics."""

    train: dict[str, list[float]] = field(default_factory=dict)
    steps: list[int] = field(default_factory=list)
    evals: dict[str, list[float]] = field(default_factory=dict)
    eval_steps: list[int] = field(default_factory=list)
    best_step: int | None = None
    best_value: float | None = None
    interrupted: bool = False

    def log(self, step: int, values: dict[str, float]) -> None:
        self.steps.append(step)
        for k, v in values.items():
            self.train.setdefault(k, []).append(v)

    def smoothed(self, key: str = "loss", window: int = 20) -> list[float]:
        """A running mean of a training scalar over ``window`` steps (for plots and claims)."""
        vals = self.train[key]
        out, acc = [], 0.0
        for i, v in enumerate(vals):
            acc += v
            if i >= window:
                acc -= vals[i - window]
            out.append(acc / min(i + 1, window))
        return out

    def plot(self, keys: Iterable[str] | None = None, ax=None, window: int = 20, title: str | None = None):
        """Plot smoothed training curves (and evaluation metrics on a second axis if any)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        for k in keys or self.train.keys():
            ax.plot(self.steps, self.smoothed(k, window), label=k)
        ax.set_xlabel("step")
        ax.set_ylabel("training value (running mean)")
        if self.evals:
            ax2 = ax.twinx()
            for k, v in self.evals.items():
                ax2.plot(self.eval_steps, v, "o--", label=f"eval {k}")
            ax2.set_ylabel("evaluation")
            ax2.legend(loc="center right")
        ax.legend(loc="upper right")
        if title:
            ax.set_title(title)
        return ax


def move_to(batch: Any, device: torch.device | str) -> Any:
    """Move every tensor inside a (nested) dict/list/tuple batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.decay == "none":
        return 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    return 1.0 - t if cfg.decay == "linear" else 0.5 * (1 + math.cos(math.pi * t))


def _batches_forever(batches) -> Iterator[Any]:
    if callable(batches):
        step = 0
        while True:
            yield batches(step)
            step += 1
    while True:
        empty = True
        for b in batches:
            empty = False
            yield b
        if empty:
            raise ValueError("the batch iterable is empty")


def train(
    model: nn.Module,
    batches: Iterable[Any] | Callable[[int], Any],
    step_fn: Callable[[nn.Module, Any], dict[str, torch.Tensor]],
    config: TrainConfig | None = None,
    *,
    device: torch.device | str | None = None,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    parameters: Iterable[nn.Parameter] | None = None,
) -> History:
    """Train ``model`` for ``config.steps`` steps and return the :class:`History`.

    Args:
        model: the module; it is moved to ``device`` and left in eval mode at the end.
        batches: an iterable of batches (re-iterated when exhausted, e.g. a DataLoader) or a
            function ``step -> batch``.
        step_fn: ``step_fn(model, batch) -> {"loss": tensor, ...}``; the batch arrives on ``device``.
        config: a :class:`TrainConfig`.
        device: where to train; defaults to the model's device.
        eval_fn: ``eval_fn(model) -> {metric: value}``, run in ``torch.no_grad`` and eval mode.
        parameters: what to optimise (default: every parameter with ``requires_grad``).

    Raises:
        ValueError: if ``step_fn`` does not return a dict with a scalar ``"loss"``.
    """
    cfg = config or TrainConfig()
    seed_everything(cfg.seed)
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    model.to(device)
    params = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
    hist = History()
    best_state: dict[str, torch.Tensor] | None = None
    metric = cfg.eval_metric

    def evaluate(step: int) -> None:
        nonlocal best_state, metric
        model.eval()
        with torch.no_grad():
            res = {k: float(v) for k, v in eval_fn(model).items()}
        model.train()
        hist.eval_steps.append(step)
        for k, v in res.items():
            hist.evals.setdefault(k, []).append(v)
        metric = metric or next(iter(res))
        val = res[metric]
        better = hist.best_value is None or (val > hist.best_value if cfg.maximize else val < hist.best_value)
        if better:
            hist.best_value, hist.best_step = val, step
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, disable=not cfg.progress, leave=False, desc="train")
    model.train()
    it = _batches_forever(batches)
    try:
        for step in range(cfg.steps):
            batch = move_to(next(it), device)
            out = step_fn(model, batch)
            if not isinstance(out, dict) or "loss" not in out:
                raise ValueError("step_fn must return a dict with a 'loss' entry")
            loss = out["loss"]
            if loss.ndim != 0:
                raise ValueError(f"the loss must be a scalar, got shape {tuple(loss.shape)}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            hist.log(step, {k: float(v.detach()) for k, v in out.items()})
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{hist.train['loss'][-1]:.3f}")
            if eval_fn is not None and cfg.eval_every and (step + 1) % cfg.eval_every == 0:
                evaluate(step + 1)
        if eval_fn is not None and (not cfg.eval_every or cfg.steps % cfg.eval_every):
            evaluate(cfg.steps)
    except KeyboardInterrupt:
        hist.interrupted = True
        print(f"interrupted at step {len(hist.steps)}; keeping the best weights seen so far")
    finally:
        bar.close()
    if best_state is not None and hist.interrupted:
        model.load_state_dict(best_state)
    model.eval()
    return hist
