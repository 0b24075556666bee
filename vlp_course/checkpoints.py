"""Every file of weights the course reads or writes: safetensors (no pickle, atomic writes, clear key
reports) and, read-only, the ``torch.save`` files the original repositories released.

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

For state dicts that are not one of our models (an original checkpoint renamed by
:mod:`vlp_course.models.convert`): ``save_safetensors(state, path)``, ``load_safetensors(path)`` and
``read_checkpoint(path_or_state)`` (a ``.safetensors`` file, or an original ``torch.save`` file read
with ``weights_only=True``).

A file that is not what its name says is refused with a ``ValueError`` naming the file and what it
appears to be: empty, truncated (the safetensors header gives the expected size), or a ``torch.save``
pickle/zip archive named ``.safetensors``. The layout checked is the safetensors format: an 8-byte
little-endian header length, a JSON header whose ``data_offsets`` place every tensor, then the data
(huggingface/safetensors, README "Format").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from vlp_course.files import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "load_optimizer_state", "read_metadata", "unwrap", "LoadResult",
           "save_safetensors", "load_safetensors", "read_checkpoint", "check_safetensors_file", "read_header_metadata"]

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


def _store_once(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """CPU copies of ``state``'s tensors, each shared tensor once: ``(tensors, {alias: stored key})``."""
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
    return tensors, aliases


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
    tensors, aliases = _store_once(unwrap(model).state_dict())
    header = {"format": "pt", "vlp_course_metadata": meta_json, "vlp_course_aliases": json.dumps(aliases, sort_keys=True)}
    if optimizer is not None:
        opt_tensors, opt_rest = _flatten_optimizer(optimizer)
        tensors.update(opt_tensors)
        header["vlp_course_optimizer"] = json.dumps(opt_rest)
    data = st_save(tensors, metadata=header)
    atomic_write_bytes(path, data)  # temp file + fsync + os.replace: never a half-written checkpoint
    return path


# --------------------------------------------------------------------------------------------------
# Reading a file: what is it?
# --------------------------------------------------------------------------------------------------
_MAX_HEADER = 100_000_000  # the safetensors library refuses larger headers too


def _looks_like_torch_save(head: bytes) -> str | None:
    """What a ``torch.save`` file starts with: a zip archive (PyTorch >= 1.6) or a pickle stream
    (protocol 2+ starts with the PROTO opcode ``0x80``), else None."""
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (what torch.save writes)"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a pickle (what torch.save wrote before PyTorch 1.6)"
    return None


def check_safetensors_file(path: str | os.PathLike) -> dict[str, Any]:
    """Check that ``path`` is a whole safetensors file and return its parsed JSON header.

    Checked without reading the tensors: the file exists and is not empty, is not a ``torch.save``
    archive/pickle, its 8-byte header length and JSON header fit in the file, and the file has
    exactly the bytes the header's ``data_offsets`` account for.

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        ValueError: naming the file and what it appears to be (empty; truncated, with the expected
            and the actual size; a ``torch.save`` file; not safetensors at all).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path} is empty (0 bytes): an interrupted download or copy? Fetch or write it again")
    with path.open("rb") as fh:
        head = fh.read(8)
        kind = _looks_like_torch_save(head)
        if kind is not None:
            raise ValueError(f"{path} is not a safetensors file but {kind}: use torch.load(path, weights_only=True), "
                             "or convert it (vlp_course.checkpoints.read_checkpoint reads it, save_safetensors writes it)")
        if size < 8:
            raise ValueError(f"{path} is truncated: a safetensors file starts with an 8-byte header length, "
                             f"the file has {size} bytes")
        n = int.from_bytes(head, "little")
        if n > _MAX_HEADER:
            raise ValueError(f"{path} is not a safetensors file: its first 8 bytes give a header of {n} bytes "
                             f"(at most {_MAX_HEADER})")
        if 8 + n > size:
            raise ValueError(f"{path} is truncated: the header says it has at least {8 + n} bytes, the file has {size}")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError(f"{path} is not a safetensors file: the {n}-byte header after the length is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file: its header is JSON but not an object")
    ends = [info["data_offsets"][1] for key, info in header.items()
            if key != "__metadata__" and isinstance(info, dict) and len(info.get("data_offsets", ())) == 2]
    expected = 8 + n + max(ends, default=0)
    if expected > size:
        raise ValueError(f"{path} is truncated: the header says {expected} bytes, the file has {size}")
    if expected < size:
        raise ValueError(f"{path} is corrupted: the header accounts for {expected} bytes, the file has {size}")
    return header


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, string metadata) of a checked safetensors file; any remaining fault names the file."""
    header = check_safetensors_file(path)
    try:
        tensors = st_load(path.read_bytes())
    except SafetensorError as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from None
    return tensors, header.get("__metadata__") or {}


def read_header_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string-to-string metadata in a safetensors file's header (as written by
    :func:`save_safetensors`), without reading the tensors.

    Raises:
        FileNotFoundError, ValueError: as :func:`check_safetensors_file`.
    """
    return dict(check_safetensors_file(path).get("__metadata__") or {})


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``metadata`` dict stored by :func:`save_checkpoint` (without reading the tensors).

    Raises:
        FileNotFoundError, ValueError: as :func:`check_safetensors_file`.
    """
    meta = check_safetensors_file(path).get("__metadata__") or {}
    return json.loads(meta.get("vlp_course_metadata", "{}"))


@dataclass
class LoadResult:
    """What :func:`load_checkpoint` found: keys the model has but the file lacks, keys the file has
    but the model lacks, and the stored metadata."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)




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
        ValueError: if the file is not a whole safetensors file (:func:`check_safetensors_file`), on a
            shape mismatch (always; naming the key and both shapes), and with ``strict`` on missing or
            unexpected keys (listing them).
    """
    path = Path(path)
    tensors, header = _read_safetensors(path)
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
        ValueError: if the file is not a whole safetensors file, holds no optimizer state, or the
            state does not fit the optimizer.
    """
    path = Path(path)
    tensors, header = _read_safetensors(path)
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


# --------------------------------------------------------------------------------------------------
# Plain state dicts (original checkpoints after renaming, or before)
# --------------------------------------------------------------------------------------------------
def save_safetensors(model_or_state: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike,
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Write a state dict (or a module's) as safetensors, atomically; a tensor shared by several keys
    (tied weights) is stored once and restored under every name by :func:`load_safetensors`.

    Args:
        model_or_state: a module (a DDP/DataParallel wrapper is unwrapped) or a ``{key: tensor}`` dict.
        path: the target file; its folder is created.
        metadata: extra string-to-string header entries.

    Returns:
        The path written.

    Raises:
        ValueError: if a metadata key or value is not a string.
    """
    state = unwrap(model_or_state).state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    meta = dict(metadata or {})
    bad = [k for k, v in meta.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ValueError(f"safetensors metadata holds strings only; not strings: {bad}")
    tensors, aliases = _store_once(state)
    header = {"format": "pt", **meta}
    if aliases:
        header["vlp_course_aliases"] = json.dumps(aliases, sort_keys=True)
    path = Path(path)
    atomic_write_bytes(path, st_save(tensors, metadata=header))
    return path


def load_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file into a CPU state dict; tied duplicates recorded by
    :func:`save_safetensors` / :func:`save_checkpoint` are restored under every name.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is empty, truncated, a ``torch.save`` file or otherwise not safetensors
            (:func:`check_safetensors_file`; the message names the file).
    """
    tensors, header = _read_safetensors(Path(path))
    for key, target in json.loads(header.get("vlp_course_aliases", "{}")).items():
        tensors[key] = tensors[target]
    return tensors


def read_checkpoint(path_or_state: Mapping[str, torch.Tensor] | str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's dict: as given, read from a ``.safetensors`` file (:func:`load_safetensors`), or
    read from a ``torch.save`` file (any other suffix: the originals' ``.bin``, ``.pth``, ``.th``,
    ``.model``), with ``torch.load(..., map_location="cpu", weights_only=True)``, so no code runs.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file: a bad ``.safetensors`` file (:func:`check_safetensors_file`), an
            empty file, a safetensors file under another suffix, or a file ``torch.load`` cannot read
            (truncated, or holding more than tensors and plain containers).
    """
    if isinstance(path_or_state, Mapping):
        return dict(path_or_state)
    path = Path(path_or_state)
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with path.open("rb") as fh:
        head = fh.read(8)
    if not head:
        raise ValueError(f"{path} is empty (0 bytes): an interrupted download or copy? Fetch or write it again")
    if _looks_like_torch_save(head) is None:
        try:
            check_safetensors_file(path)
        except ValueError:
            pass
        else:
            raise ValueError(f"{path} is a safetensors file under another suffix: rename it to .safetensors "
                             "or read it with load_safetensors")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, … depending on the fault
        what = _looks_like_torch_save(head) or "not a zip archive or pickle"
        raise ValueError(f"{path} ({what}, {path.stat().st_size} bytes) could not be read by "
                         f"torch.load(weights_only=True): {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                         " -- truncated, or it holds more than tensors and plain containers") from None
