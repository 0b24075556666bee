"""Key maps between the course's four models and their original checkpoints, and one loader for all.

The course's models keep the parameter names of the original checkpoints (VisualBERT and LXMERT:
those of the Hugging Face ports, which mirror the originals), so every conversion is a map of key
names, plus one flip of a head's rows for ViLBERT:

* **LXMERT** (airsplay/lxmert, ``src/lxrt/modeling.py``): the original keys are the HF keys with
  ``bert.`` instead of ``lxmert.``; ``model_LXRT.pth`` was saved from a ``DataParallel`` model, so its
  keys also start with ``module.``.
* **VisualBERT** (uclanlp/visualbert, AllenNLP ``.th`` files; the renames of transformers'
  ``convert_visual_bert_original_pytorch_checkpoint_to_pytorch.py``): ``bert.bert.*`` ->
  ``visual_bert.*``, ``bert.cls.*`` / ``bert.classifier.*`` -> ``cls.*``, and three embedding names
  (``token_type_embeddings_visual``, ``position_embeddings_visual``, ``projection``); VCR files carry
  ``detector.*`` keys, which are dropped. HF checkpoints add a ``position_ids`` buffer and a copy of
  ``cls.predictions.bias`` as ``cls.predictions.decoder.bias``; both are dropped (the copy after a
  check that it equals the bias).
* **ViLBERT** (facebookresearch/vilbert-multi-task ``vilbert/vilbert.py``, jiasenlu/vilbert_beta; MMF
  ``mmf/models/vilbert.py``): the same names; ``module.`` (DataParallel) and MMF's ``model.`` are
  stripped. The alignment head ``cls.bi_seq_relationship`` has its two rows swapped: the original's
  class 1 means "random caption" (``is_next`` in ``BertForMultiModalPreTraining.forward``), the
  course's class 1 means matched (``is_matched``), as transformers issue 7266 discusses for LXMERT's
  and BERT's opposite conventions.
* **VL-BERT** (jackroos/VL-BERT ``common/visual_linguistic_bert.py``,
  ``pretrain/modules/resnet_vlbert_for_pretraining_multitask.py``): the same names under
  ``module.``; files are ``torch.save({'state_dict': ..., 'optimizer': ...})``
  (``common/callbacks/epoch_end_callbacks/checkpoint.py``); the end-to-end detector's keys are
  dropped for the precomputed-feature model.

Main entry points::

    report = load_original_checkpoint(model, state_dict_or_path)   # any of the four; format detected
    print(report)                                                  # missing / unexpected / dropped keys
    save_original_checkpoint(model, "vilbert.safetensors")         # the original names (and polarity)
    original = lxmert_to_original(model.state_dict())              # back to airsplay's names

File reading and writing lives in :mod:`vlp_course.checkpoints`; nothing here downloads anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import Tensor, nn

from vlp_course.checkpoints import read_checkpoint, save_safetensors

if TYPE_CHECKING:  # the model modules are imported inside the functions that need their configs
    from vlp_course.models.vilbert import ViLBERTConfig
    from vlp_course.models.vlbert import VLBERTConfig

__all__ = [
    "LoadReport",
    "FAMILIES",
    "VISUALBERT_ORIGINAL_RENAMES",
    "visualbert_from_original",
    "visualbert_to_original",
    "visualbert_to_hf",
    "lxmert_from_original",
    "lxmert_to_original",
    "VILBERT_ALIGNMENT_HEAD",
    "vilbert_original_keys",
    "vilbert_from_original",
    "vilbert_to_original",
    "VLBERT_E2E_PREFIXES",
    "vlbert_original_keys",
    "vlbert_from_original",
    "vlbert_to_original",
    "load_bert_into_vlbert",
    "strip_prefix",
    "family_of",
    "detect_source",
    "convert_state_dict",
    "load_original_checkpoint",
    "save_original_checkpoint",
]

#: model family -> the base model's key prefix inside its pretraining / task models
FAMILIES = {"visualbert": "visual_bert.", "lxmert": "lxmert.", "vilbert": "bert.", "vlbert": "vlbert."}


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    """What :func:`load_original_checkpoint` did.

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
# ViLBERT
# --------------------------------------------------------------------------------------------------
def _bert_layer_keys(prefix: str) -> list[str]:
    keys = []
    for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                 "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"):
        keys += [f"{prefix}.{part}.weight", f"{prefix}.{part}.bias"]
    return keys


def _wb(prefix: str) -> list[str]:
    return [f"{prefix}.weight", f"{prefix}.bias"]


def vilbert_original_keys(config: ViLBERTConfig | None = None, *, tasks: bool = False) -> list[str]:
    """The original ViLBERT checkpoint's key list, written out from vilbert-multi-task's
    ``vilbert/vilbert.py`` module tree (no model is built).

    ``tasks=False``: ``BertForMultiModalPreTraining`` (533 keys at 6/6); ``tasks=True``:
    ``VILBertForVLTasks`` (560 keys at 6/6 with ``task_specific_tokens``; the task heads include the
    original's spelling ``linguisic_logit``).
    """
    from vlp_course.models.vilbert import ViLBERTConfig

    c = config or ViLBERTConfig()
    keys = [f"bert.embeddings.{n}.weight" for n in ("word_embeddings", "position_embeddings", "token_type_embeddings")]
    if c.task_specific_tokens:
        keys.append("bert.embeddings.task_embeddings.weight")
    keys += _wb("bert.embeddings.LayerNorm")
    keys += _wb("bert.v_embeddings.image_embeddings") + _wb("bert.v_embeddings.image_location_embeddings")
    keys += _wb("bert.v_embeddings.LayerNorm")
    for i in range(c.num_hidden_layers):
        keys += _bert_layer_keys(f"bert.encoder.layer.{i}")
    for i in range(c.v_num_hidden_layers):
        keys += _bert_layer_keys(f"bert.encoder.v_layer.{i}")
    for k in range(len(c.v_biattention_id)):
        p = f"bert.encoder.c_layer.{k}"
        for n in ("query1", "key1", "value1", "query2", "key2", "value2"):
            keys += _wb(f"{p}.biattention.{n}")
        for n in ("dense1", "LayerNorm1", "q_dense1", "dense2", "LayerNorm2", "q_dense2"):
            keys += _wb(f"{p}.biOutput.{n}")
        keys += _wb(f"{p}.v_intermediate.dense") + _wb(f"{p}.v_output.dense") + _wb(f"{p}.v_output.LayerNorm")
        keys += _wb(f"{p}.t_intermediate.dense") + _wb(f"{p}.t_output.dense") + _wb(f"{p}.t_output.LayerNorm")
    keys += _wb("bert.t_pooler.dense") + _wb("bert.v_pooler.dense")
    keys += ["cls.predictions.bias"] + _wb("cls.predictions.transform.dense") + _wb("cls.predictions.transform.LayerNorm")
    keys += ["cls.predictions.decoder.weight"]
    keys += _wb("cls.bi_seq_relationship")
    keys += _wb("cls.imagePredictions.transform.dense") + _wb("cls.imagePredictions.transform.LayerNorm")
    keys += _wb("cls.imagePredictions.decoder")
    if tasks:
        for head in ("vil_prediction", "vil_prediction_gqa", "vil_binary_prediction"):
            for i in (0, 2, 3):
                keys += _wb(f"{head}.logit_fc.{i}")
        for head in ("vil_logit", "vil_tri_prediction", "vision_logit", "linguisic_logit"):
            keys += _wb(head)
    return keys


#: the alignment head whose two rows are swapped between the original's polarity and the course's
VILBERT_ALIGNMENT_HEAD = ("cls.bi_seq_relationship.weight", "cls.bi_seq_relationship.bias")


def vilbert_from_original(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """An original ViLBERT state dict (vilbert-multi-task, vilbert_beta, MMF) -> the course's.

    Strips ``module.`` and MMF's ``model.``; swaps the two rows of ``cls.bi_seq_relationship`` so
    that class 1 means "matched" (the original's class 1 is "random caption"). Key names are
    otherwise the same.

    Raises:
        ValueError: on a training checkpoint (``{'model_state_dict': ...}``) not unwrapped first.
    """
    sd = strip_prefix(strip_prefix(state_dict, "module."), "model.")  # DataParallel, then MMF
    if "checkpoint" in sd or "model_state_dict" in sd:
        raise ValueError("this looks like a training checkpoint; pass its 'model_state_dict' entry")
    for k in VILBERT_ALIGNMENT_HEAD:
        if k in sd:
            sd[k] = sd[k].flip(0).clone()
    return sd


def vilbert_to_original(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The course's ViLBERT state dict -> the original naming and polarity (class 1 = random caption).

    Tensors are cloned and made contiguous, so tied weights (word embeddings / MLM decoder) become
    separate tensors, as in the original files.
    """
    sd = {k: v.detach().contiguous().clone() for k, v in state_dict.items()}
    for k in VILBERT_ALIGNMENT_HEAD:
        if k in sd:
            sd[k] = sd[k].flip(0).contiguous()
    return sd


# --------------------------------------------------------------------------------------------------
# VL-BERT
# --------------------------------------------------------------------------------------------------
def vlbert_original_keys(config: VLBERTConfig | None = None) -> list[str]:
    """The original VL-BERT checkpoint's keys (precomputed-feature model, pretraining; without
    ``module.``), written out from jackroos/VL-BERT's ``common/visual_linguistic_bert.py`` and
    ``pretrain/modules/resnet_vlbert_for_pretraining_multitask.py`` (no model is built)."""
    from vlp_course.models.vlbert import VLBERTConfig

    c = config or VLBERTConfig()
    keys = ["image_feature_extractor.obj_downsample.1.weight", "image_feature_extractor.obj_downsample.1.bias",
            "object_linguistic_embeddings.weight", "object_mask_word_embedding.weight",
            "object_mask_visual_embedding.weight", "aux_text_visual_embedding.weight"]
    v = "vlbert"
    keys += [f"{v}.word_embeddings.weight", f"{v}.end_embedding.weight", f"{v}.position_embeddings.weight",
             f"{v}.token_type_embeddings.weight"]
    keys += _wb(f"{v}.embedding_LayerNorm") + _wb(f"{v}.visual_ln_text") + _wb(f"{v}.visual_ln_object")
    for i in range(c.num_hidden_layers):
        keys += _bert_layer_keys(f"{v}.encoder.layer.{i}")
    if c.with_pooler:
        keys += _wb(f"{v}.pooler.dense")
    if c.with_mlm_head:
        keys += [f"{v}.mlm_head.predictions.bias"] + _wb(f"{v}.mlm_head.predictions.transform.dense")
        keys += _wb(f"{v}.mlm_head.predictions.transform.LayerNorm") + [f"{v}.mlm_head.predictions.decoder.weight"]
    if c.with_mvrc_head:
        keys += _wb(f"{v}.mvrc_head.transform.dense") + _wb(f"{v}.mvrc_head.region_cls_pred")
    return keys


#: Prefixes of VL-BERT's end-to-end detector (backbone and C5 head, registered twice) that the
#: precomputed-feature model lacks.
VLBERT_E2E_PREFIXES = ("image_feature_extractor.backbone.", "image_feature_extractor.roi_head_feature_extractor.",
                       "image_feature_extractor.head.")


def vlbert_from_original(state_dict: Mapping[str, Any], *, drop_e2e: bool = True) -> dict[str, Tensor]:
    """An original VL-BERT checkpoint (``{'state_dict': ...}`` or the dict itself) -> the course's keys.

    Strips DataParallel's ``module.``; drops the end-to-end detector's keys (``drop_e2e``). The
    remaining names are the original ones (``vlbert.*`` and the top-level embeddings).
    """
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    sd = strip_prefix(state_dict, "module.")
    return {k: v for k, v in sd.items() if not (drop_e2e and k.startswith(VLBERT_E2E_PREFIXES))}


def vlbert_to_original(state_dict: Mapping[str, Tensor], *, module_prefix: bool = True) -> dict[str, Tensor]:
    """The course's VL-BERT state dict -> the original file's (with ``module.`` by default); tensors
    cloned (the tied MLM decoder becomes its own tensor, as in the original files)."""
    pre = "module." if module_prefix else ""
    return {pre + k: v.detach().contiguous().clone() for k, v in state_dict.items()}


def load_bert_into_vlbert(model: nn.Module, bert_state: Mapping[str, Tensor]) -> None:
    """Initialise VL-BERT's text side from a BERT state dict (HF ``BertModel`` / ``BertForPreTraining`` names).

    As the original (``common/visual_linguistic_bert.py``, ``load_language_pretrained_model``):
    BERT's two segment rows go into rows 0-1 of the 3-row table (row 2, the image's segment, keeps
    its random init); embeddings' LayerNorm -> ``embedding_LayerNorm``; the encoder copies by name;
    ``cls.predictions.*`` -> ``mlm_head.predictions.*`` when present.

    Args:
        model: a VL-BERT pretraining/VQA model (with a ``vlbert`` encoder).

    Raises:
        ValueError: if ``model`` has no ``vlbert`` encoder, or a copied tensor's shape differs (naming the key).
    """
    v = getattr(model, "vlbert", None)
    if not isinstance(v, nn.Module):
        raise ValueError(f"load_bert_into_vlbert needs a VL-BERT model with a .vlbert encoder, got {type(model).__name__}")
    sd = strip_prefix(bert_state, "bert.")
    own = v.state_dict()
    mapped = {}
    for k, t in sd.items():
        if k.startswith("embeddings.LayerNorm."):
            mapped["embedding_LayerNorm." + k.split(".")[-1]] = t
        elif k in ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight"):
            mapped[k[len("embeddings."):]] = t
        elif k.startswith("encoder."):
            mapped[k] = t
        elif k.startswith("cls.predictions.") and hasattr(v, "mlm_head"):
            mapped["mlm_head.predictions." + k[len("cls.predictions."):]] = t
    for k, t in mapped.items():
        if k in own and tuple(own[k].shape) != tuple(t.shape):
            raise ValueError(f"{k}: BERT shape {tuple(t.shape)} but VL-BERT expects {tuple(own[k].shape)}")
    with torch.no_grad():
        for k, t in mapped.items():
            if k in own:
                own[k].copy_(t)
        tt = sd.get("embeddings.token_type_embeddings.weight")
        if tt is not None:
            v.token_type_embeddings.weight[: tt.shape[0]].copy_(tt)


# --------------------------------------------------------------------------------------------------
# Detecting the format, converting, loading
# --------------------------------------------------------------------------------------------------
def family_of(model: nn.Module) -> str:
    """"visualbert", "lxmert", "vilbert" or "vlbert": the course's model module ``model``'s class
    (or a class it derives from) is defined in.

    Raises:
        ValueError: if ``model`` is not one of the course's four models.
    """
    for cls in type(model).__mro__:
        module = cls.__module__
        if module.startswith("vlp_course.models.") and module.rsplit(".", 1)[-1] in FAMILIES:
            return module.rsplit(".", 1)[-1]
    raise ValueError("load_original_checkpoint supports the course's VisualBERT, LXMERT, ViLBERT and VL-BERT models "
                     f"(vlp_course.models.visualbert/lxmert/vilbert/vlbert), got {type(model).__name__}")


def detect_source(state_dict: Mapping[str, Tensor], family: str) -> str:
    """Guess a checkpoint's format: "original" or "hf" (the course's own names are HF's).

    ViLBERT and VL-BERT are not in transformers, and their original names are the course's, so for
    them the guess is always "original" (for ViLBERT this matters: the alignment head is flipped; pass
    ``source="ours"`` for a state dict of the course's own model).

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
    if family in ("vilbert", "vlbert"):
        return "original"
    raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")


def convert_state_dict(state_dict: Mapping[str, Any], family: str, source: str = "auto") -> tuple[dict[str, Tensor], dict[str, str], str]:
    """Rename a checkpoint's keys to the course's names and drop what is not a weight.

    Args:
        state_dict: the checkpoint; a training checkpoint ``{'state_dict': ...}`` (VL-BERT) or
            ``{'model_state_dict': ...}`` (ViLBERT ``.tar``) is unwrapped first.
        family: "visualbert", "lxmert", "vilbert" or "vlbert".
        source: "original", "hf" (VisualBERT and LXMERT only), "ours" or "auto" (:func:`detect_source`).

    Returns:
        ``(state_dict, dropped, source)``.

    Raises:
        ValueError: on an unknown family/source, or an HF ``cls.predictions.decoder.bias`` that
            differs from ``cls.predictions.bias`` (they are one tensor in HF; a difference means a
            broken file).
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    for wrapper in ("state_dict", "model_state_dict"):
        if isinstance(state_dict.get(wrapper), Mapping):
            state_dict = state_dict[wrapper]
            break
    if source == "auto":
        source = detect_source(state_dict, family)
    allowed = ("original", "hf", "ours") if family in ("visualbert", "lxmert") else ("original", "ours")
    if source not in allowed:
        raise ValueError(f"source for {family} must be one of {allowed} or 'auto', got {source!r}")
    dropped: dict[str, str] = {}
    if source != "original":
        sd = strip_prefix(state_dict, "module.")
    elif family == "visualbert":
        sd, dropped = visualbert_from_original(state_dict)
    elif family == "lxmert":
        sd = lxmert_from_original(state_dict)
    elif family == "vilbert":
        sd = vilbert_from_original(state_dict)
    else:
        sd = strip_prefix(state_dict, "module.")
        for k in [k for k in sd if k.startswith(VLBERT_E2E_PREFIXES)]:
            dropped[k] = "VL-BERT's end-to-end detector, not part of the precomputed-feature model"
        sd = vlbert_from_original(sd)
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


def load_original_checkpoint(model: nn.Module, checkpoint: Mapping[str, Any] | str | Path, source: str = "auto",
                             strict: bool = True) -> LoadReport:
    """Copy a checkpoint of any of the four models (original, HF or the course's names) into ``model``.

    A checkpoint of the base model loads into a model with heads (heads reported missing) and the
    reverse (heads reported unexpected), as the originals' loaders do (e.g. vilbert-multi-task
    ``vilbert/utils.py`` ``from_pretrained`` reports the task heads missing when it loads
    ``pretrained_model.bin`` into ``VILBertForVLTasks``); a tied weight (the MLM decoder = the word
    embeddings) counts as present when its source is.

    Args:
        model: one of the course's VisualBERT, LXMERT, ViLBERT or VL-BERT modules.
        checkpoint: a state dict, or the path of a ``.safetensors`` file or a ``torch.save`` file
            (read by :func:`vlp_course.checkpoints.read_checkpoint`).
        source: "auto", "original", "hf" or "ours" (:func:`convert_state_dict`).
        strict: raise when anything is missing or unexpected (the report lists them).

    Returns:
        :class:`LoadReport`.

    Raises:
        FileNotFoundError: if a path is given and there is no file.
        ValueError: on a bad file (naming it), on a shape mismatch (naming the key and both shapes),
            or, with ``strict``, on missing or unexpected keys (the message is the report).
    """
    family = family_of(model)
    sd, dropped, source = convert_state_dict(read_checkpoint(checkpoint), family, source)
    own = model.state_dict()
    sd = _align_base_prefix(sd, own, FAMILIES[family])
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


def save_original_checkpoint(model: nn.Module, path: str | Path, *, module_prefix: bool | None = None) -> Path:
    """Write ``model``'s weights with the original checkpoint's names (and, for ViLBERT, polarity)
    as a ``.safetensors`` file (:func:`vlp_course.checkpoints.save_safetensors`).

    Args:
        model: one of the course's four models.
        path: the target file.
        module_prefix: start every key with ``module.`` (DataParallel). ``None``: as the released
            files do for VL-BERT (yes); for LXMERT, VisualBERT and ViLBERT no.

    Returns:
        The path written.

    Raises:
        ValueError: if ``model`` is not one of the four models, or ``module_prefix`` is given for VisualBERT.
    """
    family = family_of(model)
    state = model.state_dict()
    if family == "visualbert":
        if module_prefix:
            raise ValueError("uclanlp's VisualBERT files have no 'module.' prefix; leave module_prefix unset")
        original = visualbert_to_original(state)
    elif family == "lxmert":
        original = lxmert_to_original(state, data_parallel=bool(module_prefix))
    elif family == "vilbert":
        original = vilbert_to_original(state)
        if module_prefix:
            original = {"module." + k: v for k, v in original.items()}
    else:
        original = vlbert_to_original(state, module_prefix=True if module_prefix is None else module_prefix)
    return save_safetensors(original, path)
