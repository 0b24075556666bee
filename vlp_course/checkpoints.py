"""Save and load model weights as safetensors: no pickle, atomic writes, clear key reports.

``save_checkpoint(model, path, metadata)`` writes the model's ``state_dict`` (and optionally an
optimizer's state) into one ``.safetensors`` file. The file is first written next to its target
under a temporary name, flushed to disk, then moved over the target with ``os.replace``, so a crash
or an interrupt never leaves a half-written checkpoint. Safetensors stores only tensors and a
string-to-string header, so loading a checkpoint cannot run code (``torch.load`` of a pickle can).

``load_checkpoint(model, path, strict=True)`` loads it back (bit-exact) and reports missing and
unexpected keys by name; a shape mismatch is always an error naming the key and both shapes.

Tied weights (e.g. an MLM decoder sharing the word embeddings) are stored once and restored to
every name that shares them. A DistributedDataParallel/DataParallel wrapper is unwrapped first, so
keys never start with ``module.``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from vlp_course.files import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "load_optimizer_state", "read_metadata", "unwrap", "LoadResult"]

_OPT = "@optimizer/"  # reserved key prefix for optimizer tensors ('@' cannot start a module name)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (or ``torch.compile``), else itself."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            key = f"{_OPT}state/{pid}/{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write ``model``'s weights (and optionally ``optimizer``'s state) to ``path`` atomically.

    Args:
        model: the module (a DDP/DataParallel wrapper is unwrapped).
        path: the target file, conventionally ``*.safetensors``; its folder is created.
        metadata: JSON-serialisable facts to keep with the weights (config, step, metric, …).
        optimizer: also store its state (read back with :func:`load_optimizer_state`).

    Returns:
        The path written.

    Raises:
        ValueError: if ``metadata`` is not JSON-serialisable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        meta_json = json.dumps(metadata or {}, sort_keys=True)
    except TypeError as err:
        raise ValueError(f"metadata must be JSON-serialisable (str, numbers, lists, dicts): {err}") from None
    state = unwrap(model).state_dict()
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for key, t in state.items():
        ident = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and ident in seen:  # the very same tensor under another name (tied weights)
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        tensors[key] = t.detach().to("cpu").contiguous().clone()
    header = {"format": "pt", "vlp_course_metadata": meta_json, "vlp_course_aliases": json.dumps(aliases, sort_keys=True)}
    if optimizer is not None:
        opt_tensors, opt_rest = _flatten_optimizer(optimizer)
        tensors.update(opt_tensors)
        header["vlp_course_optimizer"] = json.dumps(opt_rest)
    data = st_save(tensors, metadata=header)
    atomic_write_bytes(path, data)  # temp file + fsync + os.replace: never a half-written checkpoint
    return path


def _header(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``metadata`` dict stored by :func:`save_checkpoint` (without reading the tensors)."""
    return json.loads(_header(Path(path)).get("vlp_course_metadata", "{}"))


@dataclass
class LoadResult:
    """What :func:`load_checkpoint` found: keys the model has but the file lacks, keys the file has
    but the model lacks, and the stored metadata."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    tensors = st_load(path.read_bytes())
    return tensors, _header(path)


def _fmt(keys: list[str], limit: int = 15) -> str:
    more = f" … and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> LoadResult:
    """Load weights saved by :func:`save_checkpoint` into ``model`` (bit-exact).

    Args:
        model: the target module (a DDP/DataParallel wrapper is unwrapped); tensors are copied onto
            its parameters' devices and dtypes.
        path: the ``.safetensors`` file.
        strict: raise when keys are missing or unexpected; with ``strict=False`` the matching keys are
            loaded and the others reported in the result.

    Returns:
        A :class:`LoadResult`.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: on a shape mismatch (always; naming the key and both shapes), and with ``strict``
            on missing or unexpected keys (listing them).
    """
    path = Path(path)
    tensors, header = _read(path)
    state = {k: v for k, v in tensors.items() if not k.startswith(_OPT)}
    for key, target in json.loads(header.get("vlp_course_aliases", "{}")).items():
        state[key] = state[target]
    module = unwrap(model)
    own = module.state_dict()
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if mismatched:
        raise ValueError(f"{path.name}: shapes differ for {len(mismatched)} keys: {_fmt(mismatched)}")
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    if strict and (missing or unexpected):
        msg = [f"{path.name} does not match the model"]
        if missing:
            msg.append(f"missing keys (in the model, not in the file) [{len(missing)}]: {_fmt(missing)}")
        if unexpected:
            msg.append(f"unexpected keys (in the file, not in the model) [{len(unexpected)}]: {_fmt(unexpected)}")
        msg.append("pass strict=False to load the keys that match")
        raise ValueError("; ".join(msg))
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return LoadResult(missing=missing, unexpected=unexpected,
                      metadata=json.loads(header.get("vlp_course_metadata", "{}")))


def load_optimizer_state(optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> None:
    """Restore an optimizer's state stored with ``save_checkpoint(..., optimizer=...)``.

    Raises:
        ValueError: if the file holds no optimizer state, or it does not fit the optimizer.
    """
    path = Path(path)
    tensors, header = _read(path)
    if "vlp_course_optimizer" not in header:
        raise ValueError(f"{path.name} holds no optimizer state (save it with optimizer=...)")
    rest = json.loads(header["vlp_course_optimizer"])
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(rest["scalars"].items()):
        if not key.startswith(_OPT):
            continue
        _, pid, name = key[len(_OPT):].split("/", 2)
        state.setdefault(int(pid), {})[name] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})
    except (ValueError, KeyError) as err:
        raise ValueError(f"{path.name}: the stored optimizer state does not fit this optimizer: {err}") from None
