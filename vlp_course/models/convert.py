"""Checkpoint converters for VisualBERT and LXMERT: key maps, safetensors files and clear load reports.

The course's models use the parameter names of the Hugging Face ports, which themselves mirror the
original checkpoints, so every conversion is a map of key names (vl-models.md 2.3, 3.3, 7.1):

* **LXMERT** (airsplay/lxmert): the original keys are the HF keys with ``bert.`` instead of
  ``lxmert.``; ``model_LXRT.pth`` was saved from a ``DataParallel`` model, so its keys also start
  with ``module.``. (Verified there: 473 keys, same names and shapes after the two renames.)
* **VisualBERT** (uclanlp/visualbert, AllenNLP ``.th`` files): ``bert.bert.*`` -> ``visual_bert.*``,
  ``bert.cls.*`` / ``bert.classifier.*`` -> ``cls.*``, and three embedding names
  (``token_type_embeddings_visual``, ``position_embeddings_visual``, ``projection``); VCR files carry
  ``detector.*`` keys, which are dropped. HF checkpoints add a ``position_ids`` buffer and a copy of
  ``cls.predictions.bias`` as ``cls.predictions.decoder.bias``; both are dropped (the copy after a
  check that it equals the bias).

Main entry points::

    report = load_checkpoint(model, state_dict_or_path)      # format detected; raises on a bad fit
    print(report)                                            # missing / unexpected / dropped keys
    save_safetensors(model, "vb.safetensors")                # tied weights stored once
    original = lxmert_to_original(model.state_dict())        # back to airsplay's names

Nothing here downloads anything; the functions take state dicts (e.g. ``torch.load(path)`` of an
original file, or ``transformers`` models' ``state_dict()``) or safetensors paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

__all__ = [
    "LoadReport",
    "VISUALBERT_ORIGINAL_RENAMES",
    "visualbert_from_original",
    "visualbert_to_original",
    "visualbert_to_hf",
    "lxmert_from_original",
    "lxmert_to_original",
    "strip_prefix",
    "detect_source",
    "convert_state_dict",
    "load_checkpoint",
    "save_safetensors",
    "load_safetensors",
    "read_checkpoint",
    "load_renamed_state_dict",
]


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did.

    Attributes:
        source: the detected or given checkpoint format ("hf", "original", "ours").
        missing: parameters of the model that received nothing (keep their initial values).
        unexpected: checkpoint keys (after renaming) that the model does not have.
        dropped: checkpoint keys removed on purpose, with the reason (buffers, duplicates, detector).
        loaded: how many tensors were copied.
    """

    source: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    loaded: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is missing and nothing unexpected."""
        return not self.missing and not self.unexpected

    def __str__(self) -> str:
        def block(title: str, keys: list[str]) -> list[str]:
            if not keys:
                return [f"  {title}: none"]
            shown = [f"    {k}" for k in keys[:30]] + ([f"    … and {len(keys) - 30} more"] if len(keys) > 30 else [])
            return [f"  {title} ({len(keys)}):"] + shown

        lines = [f"checkpoint ({self.source} format): {self.loaded} tensors loaded"]
        lines += block("missing in the checkpoint (left as initialised)", self.missing)
        lines += block("unexpected (in the checkpoint, not in the model)", self.unexpected)
        lines += block("dropped on purpose", [f"{k}  [{why}]" for k, why in self.dropped.items()])
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Key maps
# --------------------------------------------------------------------------------------------------
def strip_prefix(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Remove ``prefix`` from every key that starts with it (e.g. ``"module."`` of DataParallel)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def _replace_prefix(key: str, old: str, new: str) -> str:
    return new + key[len(old):] if key.startswith(old) else key


#: uclanlp (original) -> HF names: (old, new, where) with where = "prefix" or "infix" (applied in order).
VISUALBERT_ORIGINAL_RENAMES: tuple[tuple[str, str, str], ...] = (
    ("bert.bert.", "visual_bert.", "prefix"),
    ("bert.cls.", "cls.", "prefix"),
    ("bert.classifier.", "cls.", "prefix"),
    (".token_type_embeddings_visual.", ".visual_token_type_embeddings.", "infix"),
    (".position_embeddings_visual.", ".visual_position_embeddings.", "infix"),
    (".embeddings.projection.", ".embeddings.visual_projection.", "infix"),
)


def visualbert_from_original(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """uclanlp/visualbert keys -> the course's (= HF) keys.

    Returns:
        ``(renamed, dropped)``: the renamed state dict, and ``{original key: reason}`` for keys
        left out (``detector.*`` of the VCR files).
    """
    out: dict[str, Tensor] = {}
    dropped: dict[str, str] = {}
    for key, value in strip_prefix(state_dict, "module.").items():
        if key.startswith("detector."):
            dropped[key] = "VCR's detector, not part of VisualBERT"
            continue
        new = key
        for old, rep, where in VISUALBERT_ORIGINAL_RENAMES:
            new = _replace_prefix(new, old, rep) if where == "prefix" else new.replace(old, rep)
        out[new] = value
    return out, dropped


def visualbert_to_original(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The course's (= HF) VisualBERT keys -> uclanlp's (``bert.bert.*``, ``bert.cls.*``, ``bert.classifier.*``).

    HF-only entries (``position_ids``, ``cls.predictions.decoder.bias``) are left out; a single
    ``cls.{weight,bias}`` (a task head) becomes ``bert.classifier.*``.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith("position_ids") or key == "cls.predictions.decoder.bias":
            continue
        new = key
        for old, rep, where in reversed(VISUALBERT_ORIGINAL_RENAMES[3:]):
            new = new.replace(rep, old)
        if new.startswith("visual_bert."):
            new = "bert.bert." + new[len("visual_bert."):]
        elif new.startswith(("cls.predictions.", "cls.seq_relationship.")):
            new = "bert." + new
        elif new.startswith("cls."):
            new = "bert.classifier." + new[len("cls."):]
        out[new] = value
    return out


def visualbert_to_hf(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The course's VisualBERT keys -> a state dict that HF ``VisualBert*.load_state_dict`` accepts
    (adds the ``cls.predictions.decoder.bias`` copy when there is an MLM head)."""
    out = dict(state_dict)
    if "cls.predictions.bias" in out:
        out["cls.predictions.decoder.bias"] = out["cls.predictions.bias"]
    return out


def lxmert_from_original(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """airsplay/lxmert keys (``module.`` optional, ``bert.*``) -> the course's (= HF) keys (``lxmert.*``)."""
    return {_replace_prefix(k, "bert.", "lxmert."): v for k, v in strip_prefix(state_dict, "module.").items()}


def lxmert_to_original(state_dict: Mapping[str, Tensor], data_parallel: bool = False) -> dict[str, Tensor]:
    """The course's LXMERT keys -> airsplay's (``lxmert.`` -> ``bert.``; ``module.`` added with ``data_parallel``)."""
    pre = "module." if data_parallel else ""
    return {pre + _replace_prefix(k, "lxmert.", "bert."): v for k, v in state_dict.items()}


# --------------------------------------------------------------------------------------------------
# Detecting the format, converting, loading
# --------------------------------------------------------------------------------------------------
def _family(model: nn.Module) -> tuple[str, str]:
    """("visualbert" | "lxmert", base prefix) of one of the course's models."""
    from vlp_course.models import lxmert, visualbert

    if isinstance(model, (visualbert.VisualBertModel, visualbert.VisualBertForPreTraining,
                          visualbert.VisualBertForQuestionAnswering)):
        return "visualbert", "visual_bert."
    if isinstance(model, (lxmert.LxmertModel, lxmert.LxmertForPreTraining, lxmert.LxmertForQuestionAnswering)):
        return "lxmert", "lxmert."
    raise ValueError(f"load_checkpoint supports the course's VisualBERT and LXMERT models, got {type(model).__name__}")


def detect_source(state_dict: Mapping[str, Tensor], family: str) -> str:
    """Guess a checkpoint's format: "original" or "hf" (the course's own names are HF's).

    Raises:
        ValueError: on an unknown family.
    """
    keys = [k[len("module."):] if k.startswith("module.") else k for k in state_dict]
    if family == "visualbert":
        orig = any(k.startswith(("bert.bert.", "bert.cls.", "bert.classifier.", "detector.")) or "_visual." in k
                   or ".embeddings.projection." in k for k in keys)
        return "original" if orig else "hf"
    if family == "lxmert":
        return "original" if any(k.startswith("bert.") for k in keys) else "hf"
    raise ValueError(f"family must be 'visualbert' or 'lxmert', got {family!r}")


def convert_state_dict(state_dict: Mapping[str, Tensor], family: str, source: str = "auto") -> tuple[dict[str, Tensor], dict[str, str], str]:
    """Rename a checkpoint's keys to the course's names and drop what is not a weight.

    Args:
        state_dict: the checkpoint. family: "visualbert" or "lxmert".
        source: "original", "hf" or "auto" (:func:`detect_source`).

    Returns:
        ``(state_dict, dropped, source)``.

    Raises:
        ValueError: on an unknown family/source, or an HF ``cls.predictions.decoder.bias`` that
            differs from ``cls.predictions.bias`` (they are one tensor in HF; a difference means a
            broken file).
    """
    if source == "auto":
        source = detect_source(state_dict, family)
    if source not in ("original", "hf", "ours"):
        raise ValueError(f"source must be 'original', 'hf', 'ours' or 'auto', got {source!r}")
    dropped: dict[str, str] = {}
    if family == "visualbert":
        if source == "original":
            sd, dropped = visualbert_from_original(state_dict)
        else:
            sd = strip_prefix(state_dict, "module.")
    elif family == "lxmert":
        sd = lxmert_from_original(state_dict) if source == "original" else strip_prefix(state_dict, "module.")
    else:
        raise ValueError(f"family must be 'visualbert' or 'lxmert', got {family!r}")
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key.endswith(("position_ids", "embeddings.token_type_ids")):
            dropped[key] = "buffer, not a weight"
        elif key == "cls.predictions.decoder.bias":
            bias = sd.get("cls.predictions.bias")
            if bias is not None and not torch.equal(bias, value):
                raise ValueError("cls.predictions.decoder.bias differs from cls.predictions.bias; "
                                 "in HF they are one tied tensor, so the checkpoint is inconsistent")
            if bias is None:
                out["cls.predictions.bias"] = value
            dropped[key] = "HF's copy of cls.predictions.bias"
        else:
            out[key] = value
    return out, dropped, source


def _align_base_prefix(sd: dict[str, Tensor], own: Mapping[str, Tensor], base: str) -> dict[str, Tensor]:
    """Load a base-model checkpoint (``embeddings.*``) into a model with heads, or the reverse."""
    has_base_in_model = any(k.startswith(base) for k in own)
    has_base_in_ckpt = any(k.startswith(base) for k in sd)
    if has_base_in_model and not has_base_in_ckpt:
        heads = tuple(k.split(".")[0] + "." for k in own if not k.startswith(base))
        return {(k if k.startswith(heads) else base + k): v for k, v in sd.items()}
    if not has_base_in_model and has_base_in_ckpt:
        return {(k[len(base):] if k.startswith(base) else k): v for k, v in sd.items()}
    return sd


def load_checkpoint(model: nn.Module, checkpoint: Mapping[str, Tensor] | str | Path, source: str = "auto",
                    strict: bool = True) -> LoadReport:
    """Copy a VisualBERT or LXMERT checkpoint (original, HF or the course's names) into ``model``.

    A checkpoint of the base model loads into a model with heads (heads reported missing) and the
    reverse (heads reported unexpected); a tied weight (the MLM decoder = the word embeddings)
    counts as present when its source is.

    Args:
        model: one of the course's ``VisualBert*`` / ``Lxmert*`` modules.
        checkpoint: a state dict, or the path of a ``.safetensors`` file or a ``torch.save`` file.
        source: "auto", "original", "hf" or "ours".
        strict: raise when anything is missing or unexpected (the report lists them).

    Returns:
        :class:`LoadReport`.

    Raises:
        ValueError: on a shape mismatch (naming the key and both shapes), or, with ``strict``, on
            missing or unexpected keys (the message is the report).
    """
    family, base = _family(model)
    sd, dropped, source = convert_state_dict(read_checkpoint(checkpoint), family, source)
    own = model.state_dict()
    sd = _align_base_prefix(sd, own, base)
    tied: Mapping[str, str] = getattr(model, "tied_weights", {})
    bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in sd.items()
           if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError("shape mismatch between the checkpoint and the model (is the config right?):\n  " + "\n  ".join(bad))
    missing = sorted(k for k in own if k not in sd and not (k in tied and tied[k] in sd))
    unexpected = sorted(k for k in sd if k not in own)
    report = LoadReport(source=source, missing=missing, unexpected=unexpected, dropped=dropped,
                        loaded=sum(k in own for k in sd))
    if strict and not report.ok:
        raise ValueError(f"the checkpoint does not fit {type(model).__name__}:\n{report}")
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return report


# --------------------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------------------
def save_safetensors(model_or_state: nn.Module | Mapping[str, Tensor], path: str | Path,
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Save weights as safetensors; a tensor shared by several keys (tied weights) is stored once.

    The names of left-out duplicates go into the metadata (``tied``), and :func:`load_checkpoint`
    restores them through the model's tie. Returns the path.
    """
    from safetensors.torch import save_file

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else dict(model_or_state)
    seen: dict[tuple[int, int, tuple], str] = {}
    out: dict[str, Tensor] = {}
    tied: list[str] = []
    for key, value in state.items():
        ident = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
        if ident in seen:
            tied.append(f"{key}={seen[ident]}")
            continue
        seen[ident] = key
        out[key] = value.detach().cpu().contiguous()
    meta = {"format": "pt", **(dict(metadata) if metadata else {})}
    if tied:
        meta["tied"] = ",".join(tied)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path), metadata=meta)
    return path


def load_safetensors(path: str | Path) -> dict[str, Tensor]:
    """Read a safetensors file into a state dict (CPU); tied duplicates listed in its metadata are restored.

    Raises:
        FileNotFoundError: if the file does not exist.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no safetensors file at {path}")
    sd = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    for pair in filter(None, meta.get("tied", "").split(",")):
        key, src = pair.split("=")
        if src in sd:
            sd[key] = sd[src]
    return sd


# --------------------------------------------------------------------------------------------------
# Shared by the ViLBERT and VL-BERT converters
# --------------------------------------------------------------------------------------------------
def read_checkpoint(path_or_state: Mapping[str, Tensor] | str | Path) -> dict[str, Tensor]:
    """A state dict as given, or read from a ``.safetensors`` file (:func:`load_safetensors`) or a
    ``torch.save`` file (any other suffix, loaded with ``weights_only=True`` onto the CPU)."""
    if isinstance(path_or_state, Mapping):
        return dict(path_or_state)
    path = Path(path_or_state)
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def load_renamed_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], *, strict: bool = True,
                            name: str = "checkpoint") -> tuple[list[str], list[str]]:
    """Copy a state dict whose keys already are the model's names into ``model``.

    Returns:
        ``(missing, unexpected)``: model keys the state dict lacks, and state-dict keys the model lacks.

    Raises:
        ValueError: on a shape mismatch (naming the key and both shapes), or, with ``strict``, on
            missing or unexpected keys (the first ten of each, after ``name``).
    """
    own = model.state_dict()
    for k, v in state_dict.items():
        if k in own and tuple(own[k].shape) != tuple(v.shape):
            raise ValueError(f"{k}: checkpoint shape {tuple(v.shape)} but the model expects {tuple(own[k].shape)}")
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if strict and (missing or unexpected):
        raise ValueError(f"{name} does not fit: missing {missing[:10]}, unexpected {unexpected[:10]}")
    model.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)
    return missing, unexpected
