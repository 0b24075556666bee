"""One training loop for every notebook that trains.

``train(model, batches, step_fn, config)`` runs ``config.steps`` optimisation steps. ``step_fn(model,
batch)`` returns a dict of scalar tensors with at least ``"loss"``; every entry is recorded in the
:class:`History`, which the notebooks plot. Features: seeding, the device from the setup cell, a tqdm
progress bar, gradient clipping, linear warm-up, optional evaluation every ``eval_every`` steps with
best-weights tracking, and a clean stop on Ctrl-C / Jupyter's interrupt that keeps the best weights.

Also:

* **Mixed precision on CUDA only**: ``config.precision`` ``"auto"`` (bf16 where the GPU supports it,
  else fp16), ``"bf16"``, ``"fp16"`` (with a gradient scaler) or ``"fp32"``; on a CPU or MPS device
  training stays in fp32 whatever the setting.
* **Checkpoints**: with ``config.checkpoint_path`` the best weights (or, without evaluation, the last
  ones) are saved as safetensors, atomically (:mod:`vlp_course.checkpoints`), also on an interrupt.
  The folder is checked for writing before the first step, so a long run cannot fail at its end.
* **Divergence stops the run**: a loss or a gradient norm that is not finite (NaN or inf) raises
  ``FloatingPointError`` naming the step, before the optimizer touches the weights; the model keeps
  the last weights that gave a finite loss (restored if the update before had already made them
  non-finite), never NaN weights. Under fp16 the gradient scaler's own skipping of overflowing
  steps is left alone (only the loss is checked there).
* **Several processes** (``torchrun --nproc_per_node N script.py``): when ``torch.distributed`` is
  initialised, the model is wrapped in ``DistributedDataParallel``; give each rank different data
  (:func:`distributed_loader` builds a ``DataLoader`` with a ``DistributedSampler``, whose epoch
  :func:`train` advances); only rank 0 shows progress and saves; the logged values are averaged
  over ranks. ``step_fn`` receives the wrapped model: call it (``model(...)``) so DDP averages the
  gradients; attribute access is passed through to the inner module, and a step that never calls
  the wrapper has its gradients averaged explicitly instead.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from vlp_course.course import seed_everything

__all__ = ["TrainConfig", "History", "train", "move_to", "distributed_loader", "rank_and_world", "is_main_process"]


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
        precision: ``"auto"``, ``"bf16"``, ``"fp16"`` or ``"fp32"``; mixed precision (``torch.autocast``,
            plus a GradScaler for fp16) is used only on CUDA devices.
        checkpoint_path: save the best (or final) weights there as safetensors; ``None``: no file.
        save_optimizer: also store the optimizer state in the checkpoint.
        restore_best: at the normal end of training, load the best evaluated weights (an interrupt
            always restores them).
        find_unused_parameters: passed to DistributedDataParallel (for models with heads a step may skip).
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
    precision: str = "auto"
    checkpoint_path: str | None = None
    save_optimizer: bool = False
    restore_best: bool = False
    find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        def number(name: str, *, integer: bool = False) -> float:
            value = getattr(self, name)
            kinds = (int,) if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
            return value

        if number("steps", integer=True) < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if not number("lr") > 0:
            raise ValueError(f"lr must be finite and > 0, got {self.lr}")
        if number("weight_decay") < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= number("momentum") < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if number("warmup_steps", integer=True) < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if number("eval_every", integer=True) < 0:
            raise ValueError(f"eval_every must be >= 0 (0: evaluate only at the end), got {self.eval_every}")
        number("seed", integer=True)
        if self.eval_metric is not None and not isinstance(self.eval_metric, str):
            raise ValueError(f"eval_metric must be a key of eval_fn's result (a string) or None, got {self.eval_metric!r}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.decay not in ("none", "linear", "cosine"):
            raise ValueError(f"decay must be 'none', 'linear' or 'cosine', got {self.decay!r}")
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16', 'fp16' or 'fp32', got {self.precision!r}")
        if self.grad_clip is not None and not number("grad_clip") > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")


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
    precision: str = "fp32"
    world_size: int = 1
    checkpoint: str | None = None

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


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless ``torch.distributed`` is initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the one that prints and saves."""
    return rank_and_world()[0] == 0


def distributed_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = True,
    collate_fn: Callable | None = None,
    num_workers: int = 0,
) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` that gives each rank its own shard (``DistributedSampler``) when
    ``torch.distributed`` is initialised, and is an ordinary seeded loader otherwise.

    ``batch_size`` is per process. :func:`train` calls the sampler's ``set_epoch`` at every pass, so
    each epoch is shuffled differently and identically on all ranks.

    Raises:
        ValueError: if ``batch_size`` < 1.
    """
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rank, world = rank_and_world()
    if world > 1:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                      collate_fn=collate_fn, num_workers=num_workers)


def _batches_forever(batches) -> Iterator[Any]:
    if callable(batches):
        step = 0
        while True:
            yield batches(step)
            step += 1
    sampler = getattr(batches, "sampler", None)
    epoch = 0
    while True:
        if hasattr(sampler, "set_epoch"):  # DistributedSampler: a new shuffle each pass, equal on all ranks
            sampler.set_epoch(epoch)
        empty = True
        for b in batches:
            empty = False
            yield b
        if empty:
            raise ValueError("the batch iterable is empty")
        epoch += 1


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: only on CUDA, None means fp32."""
    if device.type != "cuda" or cfg.precision == "fp32":
        return None
    if cfg.precision == "fp16":
        return torch.float16
    if cfg.precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


class _DDP(nn.parallel.DistributedDataParallel):
    """DistributedDataParallel that passes unknown attributes through to the wrapped module, so a
    ``step_fn`` written for a plain model (``model.config``, ``model.heads``) runs unchanged."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def _check_writable_folder(path) -> None:
    """Create ``path``'s folder and write (then delete) a small file there, so a checkpoint that cannot
    be written fails before the first step, not after the last one."""
    import tempfile
    from pathlib import Path

    target = Path(path)
    if target.is_dir():
        raise ValueError(f"checkpoint_path {target} is a folder; give a file name such as {target / 'model.safetensors'}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ValueError(f"checkpoint_path's folder {target.parent} is not writable ({err.strerror or err}); "
                         "choose another checkpoint_path") from None


class _LastGood:
    """A copy of the trained parameters taken before each update, to put back when the update made
    them non-finite (one extra copy of the trainable weights, on their device)."""

    def __init__(self, params: list[nn.Parameter]):
        self.params = params
        self.copy = [p.detach().clone() for p in params]
        self.step: int | None = None  # the step whose loss these weights gave

    @torch.no_grad()
    def take(self, step: int) -> None:
        for c, p in zip(self.copy, self.params):
            c.copy_(p)
        self.step = step

    @torch.no_grad()
    def restore_if_needed(self) -> bool:
        """Put the copy back if any parameter is non-finite; returns whether it did."""
        if all(bool(torch.isfinite(p).all()) for p in self.params):
            return False
        for p, c in zip(self.params, self.copy):
            p.copy_(c)
        return True


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
            function ``step -> batch``. Under ``torchrun`` each rank must get its own data
            (:func:`distributed_loader`, or a function that uses :func:`rank_and_world`).
        step_fn: ``step_fn(model, batch) -> {"loss": tensor, ...}``; the batch arrives on ``device``;
            it runs under ``torch.autocast`` when mixed precision is on.
        config: a :class:`TrainConfig`.
        device: where to train; defaults to the model's device.
        eval_fn: ``eval_fn(model) -> {metric: value}``, run in ``torch.no_grad`` and eval mode on the
            unwrapped model (on every rank; rank 0's result decides what is saved).
        parameters: what to optimise (default: every parameter with ``requires_grad``).

    Returns:
        The :class:`History` (per-step values averaged over ranks under DDP).

    Raises:
        ValueError: before the first step, if ``checkpoint_path``'s folder cannot be written or
            ``eval_metric`` is given without ``eval_fn``; at the first evaluation, if ``eval_metric``
            is not a key of ``eval_fn``'s result (the message lists the keys); if ``step_fn`` does not
            return a dict with a scalar ``"loss"``.
        FloatingPointError: naming the step, when the loss or the gradient norm is not finite; the
            model keeps the last weights that gave a finite loss (``err.history`` holds the
            :class:`History` up to there).
    """
    import torch.distributed as dist

    from vlp_course.checkpoints import save_checkpoint

    cfg = config or TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(cfg).__name__}")
    if cfg.eval_metric is not None and eval_fn is None:
        raise ValueError(f"eval_metric={cfg.eval_metric!r} needs an eval_fn that returns it")
    seed_everything(cfg.seed)
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    model.to(device)
    rank, world = rank_and_world()
    main = rank == 0
    if cfg.checkpoint_path is not None and main:
        _check_writable_folder(cfg.checkpoint_path)
    params = list({id(p): p for p in (parameters if parameters is not None else model.parameters())
                   if p.requires_grad}.values())
    if cfg.optimizer == "adamw":
        # fused: one kernel updates every parameter (CPU and CUDA). The default on CPU loops over the
        # tensors in Python, which took a fifth of a small course model's step (16 ms of 79 for ViLBERT).
        fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
    amp_dtype = _amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    hist = History(precision={None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype], world_size=world)

    runner: nn.Module = model
    called = [False]  # did step_fn go through the DDP wrapper's forward this step?
    if world > 1:
        ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
        runner = _DDP(model, device_ids=ids, find_unused_parameters=cfg.find_unused_parameters)

        def _mark(*_):
            called[0] = True

        runner.register_forward_pre_hook(_mark)

    best_state: dict[str, torch.Tensor] | None = None
    metric = cfg.eval_metric

    def save(step: int, reason: str) -> None:
        if cfg.checkpoint_path is None or not main:
            return
        meta = {"step": step, "reason": reason, "metric": metric, "best_value": hist.best_value,
                "best_step": hist.best_step, "world_size": world}
        save_checkpoint(model, cfg.checkpoint_path, meta, optimizer=opt if cfg.save_optimizer else None)
        hist.checkpoint = str(cfg.checkpoint_path)

    def evaluate(step: int) -> None:
        nonlocal best_state, metric
        model.eval()
        with torch.no_grad():
            res = {k: float(v) for k, v in eval_fn(model).items()}
        model.train()
        if not res:
            raise ValueError("eval_fn returned an empty dict; it must return {metric name: value}")
        if metric is not None and metric not in res:
            raise ValueError(f"eval_metric {metric!r} is not among eval_fn's results {sorted(res)}; "
                             "set TrainConfig.eval_metric to one of them")
        hist.eval_steps.append(step)
        for k, v in res.items():
            hist.evals.setdefault(k, []).append(v)
        metric = metric or next(iter(res))
        val = res[metric]
        better = hist.best_value is None or (val > hist.best_value if cfg.maximize else val < hist.best_value)
        if better:
            hist.best_value, hist.best_step = val, step
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            save(step, "best")

    from tqdm.auto import tqdm

    # TQDM_DISABLE=1 (set by `make` under CI) silences the bar even when progress=True: fewer kernel messages.
    no_bar = os.environ.get("TQDM_DISABLE", "").strip().lower() in {"1", "true", "yes"}
    bar = tqdm(total=cfg.steps, disable=no_bar or not (cfg.progress and main), leave=False, desc="train")
    model.train()
    it = _batches_forever(batches)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype is not None else contextlib.nullcontext
    last_good = _LastGood(params)

    def all_ranks(flag: bool) -> bool:
        """True if ``flag`` is true on any rank (so every rank stops together, none waits forever)."""
        if world == 1:
            return flag
        t = torch.tensor(float(flag), device=device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def diverged(step: int, what: str, value: float) -> FloatingPointError:
        restored = last_good.restore_if_needed()
        kept = (f"the weights of step {last_good.step} (the last with a finite loss) were put back, since the update "
                "after it made them non-finite" if restored else
                "the model keeps the weights this step started from, untouched by it")
        good = (f"; the last finite loss was at step {last_good.step}"
                if what == "loss" and last_good.step is not None and not restored else "")
        err = FloatingPointError(
            f"step {step}: the {what} is {value} (not finite), so training stopped before the update; {kept}{good}. "
            f"Try a smaller lr (now {cfg.lr}), grad_clip (now {cfg.grad_clip}), or check the batch for NaN/inf inputs")
        err.history = hist
        return err

    try:
        for step in range(cfg.steps):
            batch = move_to(next(it), device)
            called[0] = False
            with autocast():
                out = step_fn(runner, batch)
            if not isinstance(out, dict) or "loss" not in out:
                raise ValueError("step_fn must return a dict with a 'loss' entry")
            loss = out["loss"]
            if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                raise ValueError(f"the loss must be a scalar tensor, got {tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__}")
            if all_ranks(not bool(torch.isfinite(loss.detach()))):
                raise diverged(step, "loss", float(loss.detach()))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if world > 1 and not called[0]:  # the wrapper was bypassed: average the gradients ourselves
                for p in params:
                    if p.grad is not None:
                        dist.all_reduce(p.grad)
                        p.grad /= world
            if not scaler.is_enabled():  # fp16's scaler skips overflowing steps itself
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip is not None else math.inf)
                if not bool(torch.isfinite(norm)):  # the same averaged gradients on every rank
                    opt.zero_grad(set_to_none=True)
                    raise diverged(step, "gradient norm", float(norm))
            elif cfg.grad_clip is not None:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            last_good.take(step)
            scaler.step(opt)
            scaler.update()
            sched.step()
            values = torch.stack([torch.as_tensor(v.detach() if isinstance(v, torch.Tensor) else v, dtype=torch.float32,
                                                  device=device).reshape(()) for v in out.values()])
            if world > 1:
                dist.all_reduce(values)
                values /= world
            hist.log(step, dict(zip(out.keys(), values.tolist())))
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{hist.train['loss'][-1]:.3f}")
            if eval_fn is not None and cfg.eval_every and (step + 1) % cfg.eval_every == 0:
                evaluate(step + 1)
        if eval_fn is not None and (not cfg.eval_every or cfg.steps % cfg.eval_every):
            evaluate(cfg.steps)
    except KeyboardInterrupt:
        hist.interrupted = True
        if main:
            print(f"interrupted at step {len(hist.steps)}; keeping the best weights seen so far")
    finally:
        bar.close()
    if best_state is not None and (hist.interrupted or cfg.restore_best):
        model.load_state_dict(best_state)
    if best_state is None:  # otherwise the best weights were saved when they were evaluated
        save(len(hist.steps), "interrupted" if hist.interrupted else "final")
    model.eval()
    return hist
