"""Transformer building blocks shared by every model of the course, written out by hand.

Read top-down: the config and the checks every model runs on its config and inputs, padding
masks, text embeddings, multi-head attention (self- and cross-attention in one module), the
attention output, the feed-forward block, the post-LayerNorm layer, the encoder stack and the
pooler; BERT's prediction heads (the transform and the masked-LM head tied to the word
embeddings); then a small BERT-shaped text model that puts them together, BERT-style
initialisation and a loader for BERT weights.

Parameter names follow BERT's exactly (Devlin et al. 2019, and the ``modeling.py`` of
google-research/bert as ported by Hugging Face's ``modeling_bert.py``):
``embeddings.{word_embeddings,position_embeddings,token_type_embeddings,LayerNorm}``,
``encoder.layer.N.attention.self.{query,key,value}``, ``encoder.layer.N.attention.output.{dense,LayerNorm}``,
``encoder.layer.N.intermediate.dense``, ``encoder.layer.N.output.{dense,LayerNorm}``, ``pooler.dense``.
So a BERT checkpoint loads with at most a prefix map (see :func:`load_bert_weights`), and the four
vision-language models (ViLBERT, LXMERT, VisualBERT, VL-BERT), whose text streams are BERT, reuse it.

Shapes: B batch, T (query) tokens, S context (key/value) tokens, D hidden width, H heads, D/H head width.

Masks: every ``attention_mask`` argument is a *keep* mask, 1/True for a token that may be attended
to and 0/False for padding, of shape (B, S) or (B, T, S). It becomes additive inside the attention,
in the dtype of the scores, with ``torch.finfo(dtype).min`` (not -inf, and not BERT's -10000 which
is too small for some fp16 scores): finite in fp16 and bf16, and a row whose keys are all masked
gets uniform weights instead of NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "TransformerConfig",
    "check_config",
    "describe_shape",
    "check_ids",
    "check_keep_mask",
    "check_region_features",
    "check_text_inputs",
    "check_labels",
    "VLOutput",
    "TASKS",
    "additive_attention_mask",
    "TextEmbeddings",
    "MultiHeadAttention",
    "AttentionOutput",
    "Attention",
    "Intermediate",
    "Output",
    "TransformerLayer",
    "EncoderOutput",
    "Encoder",
    "Pooler",
    "PredictionHeadTransform",
    "LMPredictionHead",
    "BertPreTrainingHeads",
    "TextTransformer",
    "init_bert_weights",
    "load_bert_weights",
    "ACTIVATIONS",
    "repeat_for_pairs",
    "check_pair_rows",
    "check_pair_labels",
    "pair_logits",
]


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------
@dataclass
class TransformerConfig:
    """Sizes of a BERT-shaped transformer. Field names are BERT's ``config.json`` names.

    Defaults are BERT-base (Devlin et al. 2019, section 3: L=12, H=768, A=12). The course's CPU
    notebooks use far smaller values, and usually ``hidden_dropout_prob=0`` (dropout halves the
    speed of a tiny model on a CPU; see cpu-training-notes).

    Raises:
        ValueError: if a size is not positive, ``hidden_size`` is not divisible by
            ``num_attention_heads``, a dropout lies outside [0, 1) or ``hidden_act`` is unknown.
    """

    hidden_size: int = 768
    num_attention_heads: int = 12
    num_hidden_layers: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        check_config(
            self,
            positive=("hidden_size", "num_attention_heads", "intermediate_size", "vocab_size",
                      "max_position_embeddings", "type_vocab_size"),
            non_negative=("num_hidden_layers",),
            divisible=(("hidden_size", "num_attention_heads"),),
            probabilities=("hidden_dropout_prob", "attention_probs_dropout_prob"),
            activations=("hidden_act",),
        )

    def transformer_config(self) -> "TransformerConfig":
        """The plain BERT sizes of this config (a subclass's extra fields dropped), e.g. to build an
        :class:`Encoder` for one stream of a model whose config extends this one."""
        return TransformerConfig(**{f.name: getattr(self, f.name) for f in fields(TransformerConfig)})

    @classmethod
    def from_bert_config(cls, config: Any, **overrides: Any) -> "TransformerConfig":
        """Read the matching fields of a Hugging Face ``BertConfig`` (or any object/dict with them)."""
        get = config.get if isinstance(config, Mapping) else (lambda k, d=None: getattr(config, k, d))
        values = {f.name: get(f.name) for f in fields(cls) if get(f.name) is not None}
        values.update(overrides)
        return cls(**values)


ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),  # BERT's exact erf GELU
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # the tanh approximation (GPT-2)
    "relu": F.relu,
}


# --------------------------------------------------------------------------------------------------
# Checks on configs and inputs (every model runs them before any matrix product)
# --------------------------------------------------------------------------------------------------
def check_config(
    config: Any,
    *,
    positive: tuple[str, ...] = (),
    non_negative: tuple[str, ...] = (),
    divisible: tuple[tuple[str, str], ...] = (),
    probabilities: tuple[str, ...] = (),
    activations: tuple[str, ...] = (),
) -> None:
    """Check a config's fields by name; the models' ``__post_init__`` methods call it.

    Args:
        config: any object with the named attributes.
        positive: integer fields that must be > 0. non_negative: integer fields that must be >= 0.
        divisible: ``(width, heads)`` pairs: the width must be a multiple of the head count.
        probabilities: dropout fields, in [0, 1). activations: fields naming an entry of ``ACTIVATIONS``.

    Raises:
        ValueError: naming the first field that fails and its value.
    """
    for name in positive:
        if int(getattr(config, name)) <= 0:
            raise ValueError(f"{name} must be a positive integer, got {getattr(config, name)!r}")
    for name in non_negative:
        if int(getattr(config, name)) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)!r}")
    for width, heads in divisible:
        if getattr(config, width) % getattr(config, heads):
            raise ValueError(f"{width} ({getattr(config, width)}) must be divisible by {heads} ({getattr(config, heads)})")
    for name in probabilities:
        p = getattr(config, name)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name} must lie in [0, 1), got {p!r}")
    for name in activations:
        if getattr(config, name) not in ACTIVATIONS:
            raise ValueError(f"{name} must be one of {sorted(ACTIVATIONS)}, got {getattr(config, name)!r}")


def describe_shape(x: Any) -> object:
    """A tensor's shape as a tuple, or the type name of anything else (for error messages)."""
    return tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__


def check_ids(ids: Tensor | None, shape: tuple[int, ...], upper: int, what: str) -> None:
    """``ids`` (None, or integers of exactly ``shape``) must lie in [0, upper); raises ValueError naming ``what``."""
    if ids is None:
        return
    if not isinstance(ids, Tensor) or tuple(ids.shape) != tuple(shape):
        raise ValueError(f"{what} must have shape {tuple(shape)}, got {describe_shape(ids)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= upper):
        raise ValueError(f"{what} must lie in [0, {upper}), got [{int(ids.min())}, {int(ids.max())}]")


def check_keep_mask(mask: Tensor | None, shape: tuple[int, ...], what: str) -> None:
    """A keep mask (1 = real token, 0 = padding) must be None or have exactly ``shape``."""
    if mask is not None and (not isinstance(mask, Tensor) or tuple(mask.shape) != tuple(shape)):
        raise ValueError(f"{what} must have shape {tuple(shape)} (1 = real token, 0 = padding), got {describe_shape(mask)}")


def check_region_features(features: Tensor, width: int, batch: int, *, field_name: str, what: str = "visual_feats",
                          dtype: torch.dtype | None = None) -> None:
    """Region features must be (B, N, F) floats of the model's dtype, finite, with the configured F and the text's B.

    Args:
        features: the tensor to check. width: the configured F. batch: the text's B.
        field_name: the config field that sets F (named in the message, e.g. ``v_feature_size``).
        what: the argument's name in the model's signature.
        dtype: the model's parameter dtype; features of another dtype are refused (no silent cast).

    Raises:
        ValueError: naming both widths, both batch sizes, the expected dtype, or the first non-finite value.
    """
    if not isinstance(features, Tensor) or features.ndim != 3:
        raise ValueError(f"{what} must have shape (B, N, F) with F = {field_name} = {width}, got {describe_shape(features)}")
    if not features.is_floating_point():
        raise ValueError(f"{what} must be a floating-point tensor ({dtype or 'the model dtype'}), got {features.dtype}")
    if dtype is not None and features.dtype != dtype:
        raise ValueError(f"{what} has dtype {features.dtype} but the model's weights are {dtype}: cast the features "
                         f"(features.to({dtype})) or the model (model.to({features.dtype}))")
    if features.shape[-1] != width:
        raise ValueError(f"{what} have width {features.shape[-1]} but the model is configured for {field_name} = {width} "
                         f"(shape {tuple(features.shape)})")
    if features.shape[0] != batch:
        raise ValueError(f"batch mismatch: input_ids has {batch} rows but {what} has {features.shape[0]} "
                         f"(batch sizes differ; {what} shape {tuple(features.shape)})")
    if not bool(torch.isfinite(features).all()):
        bad = torch.nonzero(~torch.isfinite(features))[0].tolist()
        raise ValueError(f"{what} must be finite; {what}[{', '.join(map(str, bad))}] = {features[tuple(bad)].item()}")


def check_text_inputs(config: TransformerConfig, input_ids: Tensor, token_type_ids: Tensor | None = None,
                      attention_mask: Tensor | None = None) -> tuple[int, int]:
    """The text side's checks: integer ids (B, T) with T >= 1 in the vocabulary, T within the position
    table, every row with at least one real token, token types and keep mask of shape (B, T). Returns (B, T).

    Raises:
        ValueError: naming the argument, the expected shape, dtype or range and what was given.
    """
    if not isinstance(input_ids, Tensor) or input_ids.ndim != 2:
        raise ValueError(f"input_ids must have shape (B, T), got {describe_shape(input_ids)}")
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids must be integer token ids (torch.long), got {input_ids.dtype}")
    B, T = input_ids.shape
    if T == 0:
        raise ValueError(f"input_ids has no tokens (shape {tuple(input_ids.shape)}): the text needs at least [CLS]")
    if T > config.max_position_embeddings:
        raise ValueError(f"T = {T} text tokens exceed max_position_embeddings = {config.max_position_embeddings}")
    check_ids(input_ids, (B, T), config.vocab_size, "input_ids")
    check_ids(token_type_ids, (B, T), config.type_vocab_size, "token_type_ids")
    check_keep_mask(attention_mask, (B, T), "attention_mask")
    if attention_mask is not None and B and bool((attention_mask[:, 0] == 0).any()):
        row = int(torch.nonzero(attention_mask[:, 0] == 0)[0])
        raise ValueError(f"attention_mask row {row} hides its first token: every text starts with a real [CLS] "
                         "(padding goes at the end)")
    return B, T


def check_labels(labels: Tensor | None, shape: tuple[int, ...], what: str) -> None:
    """Integer labels (None, or exactly ``shape``; -100 = no target) for a task's loss.

    Raises:
        ValueError: naming ``what``, the expected shape and dtype.
    """
    if labels is None:
        return
    if not isinstance(labels, Tensor) or tuple(labels.shape) != tuple(shape):
        raise ValueError(f"{what} must have shape {tuple(shape)}, got {describe_shape(labels)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{what} must be integer labels (torch.long, -100 = no target), got {labels.dtype}")


# --------------------------------------------------------------------------------------------------
# One output for every model and task
# --------------------------------------------------------------------------------------------------
#: The task names: the keys of :attr:`VLOutput.losses` and :attr:`VLOutput.logits`, the same in all four models.
TASKS = {
    "mlm_text": "VL-BERT's masked language modelling on text-only sentences (its auxiliary corpus)",
    "mlm": "masked language modelling over the text tokens (BERT; every model)",
    "itm": "image-text matching on the pooled vector, class 1 = matched (every model but VL-BERT)",
    "mrm": "ViLBERT's masked multi-modal modelling: KL to the detector's class distribution of masked regions",
    "mrc": "VL-BERT's masked RoI classification with linguistic clues: soft cross-entropy on masked regions",
    "obj": "LXMERT's detected-label classification, object classes",
    "attr": "LXMERT's detected-label classification, attribute classes",
    "feat": "LXMERT's RoI-feature regression",
    "qa": "LXMERT's image question answering during pretraining",
    "vqa": "visual question answering (fine-tuned answer head)",
    "nlvr2": "visual reasoning (NLVR2): is the statement true of the pair of images, class 1 = true",
}


@dataclass
class VLOutput:
    """What every vision-language model of the course returns, for pretraining and for tasks alike.

    Attributes:
        loss: the sum of ``losses`` (a scalar), or None when no labels were given.
        losses: one scalar per task that had labels, keyed by :data:`TASKS` (``"mlm"``, ``"itm"``, …).
        logits: per task, the scores its loss reads: ``"mlm"`` (B, T, vocab) (or (M, vocab) at the
            M labelled positions), ``"itm"`` (B, 2), ``"vqa"`` (B, A), … (see each model).
        encoder: the encoder's own output (hidden states, pooled vectors, attentions), model-specific.
    """

    loss: Tensor | None
    losses: dict[str, Tensor]
    logits: dict[str, Tensor]
    encoder: Any = None

    def __post_init__(self) -> None:
        unknown = set(self.losses) - set(TASKS) | set(self.logits) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown task names {sorted(unknown)}; the tasks are {sorted(TASKS)}")

    @staticmethod
    def total(losses: dict[str, Tensor]) -> Tensor | None:
        """The sum of the task losses, or None if there are none."""
        return sum(losses.values()) if losses else None  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------------
def additive_attention_mask(mask: Tensor, dtype: torch.dtype, num_queries: int | None = None) -> Tensor:
    """Turn a keep mask into the additive mask that is added to the attention scores.

    Args:
        mask: (B, S) or (B, T, S) keep mask: 1/True = attend, 0/False = padding (bool, int or float).
        dtype: the dtype of the scores; a masked key gets ``torch.finfo(dtype).min``, a kept key 0.
        num_queries: T, checked against a (B, T, S) mask when given.

    Returns:
        (B, 1, 1, S) or (B, 1, T, S) additive mask that broadcasts over heads (and queries).

    Raises:
        ValueError: if the mask is not 2-D or 3-D, or its T differs from ``num_queries``.
    """
    if mask.ndim == 2:
        keep = mask[:, None, None, :]  # (B, 1, 1, S)
    elif mask.ndim == 3:
        if num_queries is not None and mask.shape[1] != num_queries:
            raise ValueError(f"a (B, T, S) attention mask needs T = {num_queries}, got shape {tuple(mask.shape)}")
        keep = mask[:, None, :, :]  # (B, 1, T, S)
    else:
        raise ValueError(f"attention_mask must have shape (B, S) or (B, T, S), got {tuple(mask.shape)}")
    keep = keep.bool() if keep.dtype == torch.bool else keep != 0
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(keep, zero, torch.finfo(dtype).min)


def _check_hidden(x: Tensor, width: int, name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != width:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape (B, T, {width}), got {shape}")


def _check_mask(mask: Tensor | None, batch: int, num_queries: int, num_keys: int) -> None:
    if mask is None:
        return
    ok = isinstance(mask, Tensor) and (
        (mask.ndim == 2 and tuple(mask.shape) == (batch, num_keys))
        or (mask.ndim == 3 and tuple(mask.shape) == (batch, num_queries, num_keys))
    )
    if not ok:
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(
            f"attention_mask must have shape (B, S) = ({batch}, {num_keys}) or (B, T, S) = "
            f"({batch}, {num_queries}, {num_keys}), got {shape}"
        )


# --------------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------------
class TextEmbeddings(nn.Module):
    """BERT's input embeddings: word + learned absolute position + token type, then LayerNorm and dropout.

    Source: BERT paper section 3.2 (Figure 2); ``BertEmbeddings`` in google-research/bert
    ``modeling.py`` (``embedding_postprocessor``). Positions are always 0..T-1 unless given.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> Tensor:
        """Embed token ids.

        Args:
            input_ids: (B, T) integer ids in [0, vocab_size).
            token_type_ids: (B, T) segment ids in [0, type_vocab_size); zeros when omitted
                (transformers issue 13001; docs/pitfalls.md, "Text without token types").
            position_ids: (B, T) or (T,) position ids; 0..T-1 when omitted.

        Returns:
            (B, T, D) embeddings.

        Raises:
            ValueError: if ``input_ids`` is not (B, T), T exceeds ``max_position_embeddings``, an id is
                out of range, or ``token_type_ids``/``position_ids`` do not match (B, T).
        """
        if not isinstance(input_ids, Tensor) or input_ids.ndim != 2:
            shape = tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids).__name__
            raise ValueError(f"input_ids must have shape (B, T), got {shape}")
        B, T = input_ids.shape
        cfg = self.config
        if T > cfg.max_position_embeddings:
            raise ValueError(f"sequence length T = {T} exceeds max_position_embeddings = {cfg.max_position_embeddings}")
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= cfg.vocab_size):
            raise ValueError(f"input_ids must lie in [0, {cfg.vocab_size}), got [{int(input_ids.min())}, {int(input_ids.max())}]")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        elif tuple(token_type_ids.shape) != (B, T):
            raise ValueError(f"token_type_ids must have shape (B, T) = ({B}, {T}), got {tuple(token_type_ids.shape)}")
        elif token_type_ids.numel() and (token_type_ids.min() < 0 or token_type_ids.max() >= cfg.type_vocab_size):
            raise ValueError(f"token_type_ids must lie in [0, {cfg.type_vocab_size})")
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device)[None, :]  # (1, T)
        elif tuple(position_ids.shape) not in ((B, T), (T,), (1, T)):
            raise ValueError(f"position_ids must have shape (B, T) = ({B}, {T}) or (T,), got {tuple(position_ids.shape)}")
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))  # (B, T, D)


# --------------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------------
class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with H heads: self-attention, or cross-attention over a context.

    ``softmax(Q K^T / sqrt(D/H) + mask) V`` per head (Vaswani et al. 2017, section 3.2.2; BERT's
    ``BertSelfAttention``). Queries come from ``hidden_states``; keys and values from ``context``
    when it is given (cross-attention, as in ViLBERT's co-attention and LXMERT's cross layers),
    else from ``hidden_states`` (self-attention).

    Without attention weights requested it calls ``torch.nn.functional.scaled_dot_product_attention``
    (fused kernels); with ``output_attentions=True`` it computes the same thing explicitly and
    returns the weights. Both paths give the same output (tested).

    Args:
        hidden_size: width of the queries' input, D_q.
        num_attention_heads: H.
        context_size: width of the context (keys/values input), D_c; defaults to ``hidden_size``.
        all_head_size: width of Q, K and V (H x head width); defaults to ``hidden_size``
            (ViLBERT's co-attention projects both streams to 1024).
        dropout: dropout on the attention weights (``attention_probs_dropout_prob``).
    """

    def __init__(self, hidden_size: int, num_attention_heads: int, *, context_size: int | None = None,
                 all_head_size: int | None = None, dropout: float = 0.0):
        super().__init__()
        all_head_size = all_head_size or hidden_size
        if all_head_size % num_attention_heads:
            raise ValueError(f"all_head_size ({all_head_size}) must be divisible by num_attention_heads ({num_attention_heads})")
        self.hidden_size = hidden_size
        self.context_size = context_size or hidden_size
        self.num_attention_heads = num_attention_heads
        self.head_size = all_head_size // num_attention_heads
        self.all_head_size = all_head_size
        self.query = nn.Linear(hidden_size, all_head_size)
        self.key = nn.Linear(self.context_size, all_head_size)
        self.value = nn.Linear(self.context_size, all_head_size)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: Tensor) -> Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_attention_heads, self.head_size).transpose(1, 2)  # (B, H, L, D/H)

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        context: Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``hidden_states`` to ``context`` (or to itself).

        Args:
            hidden_states: (B, T, D_q) queries' input.
            attention_mask: keep mask over the keys, (B, S) or (B, T, S); 1 = attend, 0 = padding.
            context: (B, S, D_c) keys' and values' input; ``None`` means self-attention (S = T).
            output_attentions: also return the attention weights (explicit path).

        Returns:
            ``(out, weights)``: out (B, T, H*D/H) before the output projection; weights
            (B, H, T, S) or ``None``.

        Raises:
            ValueError: on a hidden or context width other than the configured ones, a batch
                mismatch between queries and context, or a mask that is not (B, S) / (B, T, S).
        """
        _check_hidden(hidden_states, self.hidden_size, "hidden_states")
        if context is None:
            context = hidden_states
        else:
            _check_hidden(context, self.context_size, "context")
            if context.shape[0] != hidden_states.shape[0]:
                raise ValueError(
                    f"context batch size {context.shape[0]} differs from hidden_states batch size {hidden_states.shape[0]} "
                    f"(hidden_states {tuple(hidden_states.shape)}, context {tuple(context.shape)})"
                )
        B, T, _ = hidden_states.shape
        S = context.shape[1]
        _check_mask(attention_mask, B, T, S)

        q = self._heads(self.query(hidden_states))  # (B, H, T, D/H)
        k = self._heads(self.key(context))  # (B, H, S, D/H)
        v = self._heads(self.value(context))  # (B, H, S, D/H)
        bias = None if attention_mask is None else additive_attention_mask(attention_mask, q.dtype, T)  # (B, 1, 1|T, S)

        if output_attentions:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)  # (B, H, T, S)
            if bias is not None:
                scores = scores + bias
            weights = scores.softmax(dim=-1)  # (B, H, T, S)
            ctx = self.dropout(weights) @ v  # (B, H, T, D/H)
        else:
            weights = None
            p = self.dropout.p if self.training else 0.0
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)  # (B, H, T, D/H)
        out = ctx.transpose(1, 2).reshape(B, T, self.all_head_size)  # (B, T, H*D/H)
        return out, weights


class AttentionOutput(nn.Module):
    """Project the attended values back, dropout, add the residual, LayerNorm (BERT's ``BertSelfOutput``)."""

    def __init__(self, all_head_size: int, hidden_size: int, layer_norm_eps: float = 1e-12, dropout: float = 0.0):
        super().__init__()
        self.dense = nn.Linear(all_head_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, attended: Tensor, residual: Tensor) -> Tensor:
        """attended (B, T, A), residual (B, T, D) -> (B, T, D) = LayerNorm(residual + dropout(dense(attended)))."""
        return self.LayerNorm(residual + self.dropout(self.dense(attended)))


class Attention(nn.Module):
    """Multi-head attention plus its output block: BERT's ``BertAttention`` (``self`` + ``output``).

    Used for self-attention and, with ``context_size`` and a ``context`` argument, for cross-attention.
    """

    def __init__(self, config: TransformerConfig, context_size: int | None = None):
        super().__init__()
        self.self = MultiHeadAttention(
            config.hidden_size, config.num_attention_heads, context_size=context_size,
            dropout=config.attention_probs_dropout_prob,
        )
        self.output = AttentionOutput(config.hidden_size, config.hidden_size, config.layer_norm_eps, config.hidden_dropout_prob)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None, context: Tensor | None = None,
                output_attentions: bool = False) -> tuple[Tensor, Tensor | None]:
        """(B, T, D) -> ((B, T, D), weights (B, H, T, S) or None); see :meth:`MultiHeadAttention.forward`."""
        attended, weights = self.self(hidden_states, attention_mask, context, output_attentions)
        return self.output(attended, hidden_states), weights


# --------------------------------------------------------------------------------------------------
# Feed-forward
# --------------------------------------------------------------------------------------------------
class Intermediate(nn.Module):
    """The first half of the feed-forward block: Linear(D -> intermediate) then the activation."""

    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str = "gelu"):
        super().__init__()
        if hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {sorted(ACTIVATIONS)}, got {hidden_act!r}")
        self.dense = nn.Linear(hidden_size, intermediate_size)
        self.act = ACTIVATIONS[hidden_act]

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, T, intermediate)."""
        return self.act(self.dense(x))


class Output(nn.Module):
    """The second half: Linear(intermediate -> D), dropout, residual, LayerNorm (BERT's ``BertOutput``)."""

    def __init__(self, intermediate_size: int, hidden_size: int, layer_norm_eps: float = 1e-12, dropout: float = 0.0):
        super().__init__()
        self.dense = nn.Linear(intermediate_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        """x (B, T, intermediate), residual (B, T, D) -> (B, T, D)."""
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


# --------------------------------------------------------------------------------------------------
# Layer, encoder, pooler
# --------------------------------------------------------------------------------------------------
class TransformerLayer(nn.Module):
    """One post-LayerNorm transformer layer (BERT's ``BertLayer``): self-attention, then feed-forward.

    ``x = LN(x + Attn(x)); x = LN(x + FFN(x))`` (Vaswani et al. 2017 section 3.1; BERT section 3).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.output = Output(config.intermediate_size, config.hidden_size, config.layer_norm_eps, config.hidden_dropout_prob)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None,
                output_attentions: bool = False) -> tuple[Tensor, Tensor | None]:
        """(B, T, D), keep mask (B, T) or (B, T, T) -> ((B, T, D), weights (B, H, T, T) or None)."""
        x, weights = self.attention(hidden_states, attention_mask, output_attentions=output_attentions)
        return self.output(self.intermediate(x), x), weights


@dataclass
class EncoderOutput:
    """What :class:`Encoder` returns.

    Attributes:
        last_hidden_state: (B, T, D).
        hidden_states: the encoder's input followed by every layer's output, L+1 tensors (B, T, D),
            when requested (same convention as Hugging Face's ``output_hidden_states``).
        attentions: one (B, H, T, T) tensor per layer when requested (mmf issue 1036;
            docs/pitfalls.md, "Attention maps: one square tensor per layer").
    """

    last_hidden_state: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


class Encoder(nn.Module):
    """A stack of ``num_hidden_layers`` :class:`TransformerLayer` s, stored as ``layer.0``, ``layer.1``, …"""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None, *,
                output_hidden_states: bool = False, output_attentions: bool = False) -> EncoderOutput:
        """Run every layer.

        Args:
            hidden_states: (B, T, D) embedded inputs.
            attention_mask: keep mask (B, T) or (B, T, T); ``None`` attends everywhere.
            output_hidden_states, output_attentions: also return every layer's states / weights.

        Raises:
            ValueError: on a width other than ``hidden_size`` or a mask that does not match (B, T).
        """
        _check_hidden(hidden_states, self.config.hidden_size, "hidden_states")
        B, T, _ = hidden_states.shape
        _check_mask(attention_mask, B, T, T)
        states = [hidden_states] if output_hidden_states else None
        attns = [] if output_attentions else None
        for layer in self.layer:
            hidden_states, w = layer(hidden_states, attention_mask, output_attentions)
            if states is not None:
                states.append(hidden_states)
            if attns is not None:
                attns.append(w)
        return EncoderOutput(
            last_hidden_state=hidden_states,
            hidden_states=tuple(states) if states is not None else None,
            attentions=tuple(attns) if attns is not None else None,
        )


class Pooler(nn.Module):
    """BERT's pooler: the first token's state through Linear(D, D) and tanh (BERT section 3, [CLS])."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: Tensor) -> Tensor:
        """(B, T, D) -> (B, D)."""
        return torch.tanh(self.dense(hidden_states[:, 0]))


# --------------------------------------------------------------------------------------------------
# BERT's prediction heads
# --------------------------------------------------------------------------------------------------
class PredictionHeadTransform(nn.Module):
    """dense(D, D) -> activation -> LayerNorm: BERT's ``BertPredictionHeadTransform``.

    Every pretraining head of the four models starts with it (masked LM; ViLBERT's
    ``imagePredictions``; LXMERT's object head; VL-BERT's ``final_mlp``). VL-BERT's region head
    ``mvrc_head`` omits the LayerNorm (``layer_norm=False``: no ``LayerNorm`` key).
    Keys: ``dense.{weight,bias}``, ``LayerNorm.{weight,bias}``.
    """

    def __init__(self, hidden_size: int, hidden_act: str = "gelu", layer_norm_eps: float = 1e-12,
                 layer_norm: bool = True):
        super().__init__()
        if hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {sorted(ACTIVATIONS)}, got {hidden_act!r}")
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.act = ACTIVATIONS[hidden_act]
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps) if layer_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(..., D) -> (..., D)."""
        return self.LayerNorm(self.act(self.dense(x)))


class LMPredictionHead(nn.Module):
    """The masked-LM head: transform, then scores over the vocabulary with the word-embedding matrix
    as decoder weight (tied: one tensor) plus a separate bias (BERT section 3.1, ``BertLMPredictionHead``).

    The sizes come from the tied table: D and the vocabulary size are ``word_embeddings.weight.shape``.
    Keys: ``transform.{dense,LayerNorm}.*``, ``decoder.weight`` (the word embeddings), ``bias``.
    """

    def __init__(self, word_embeddings: nn.Embedding, hidden_act: str = "gelu", layer_norm_eps: float = 1e-12):
        super().__init__()
        vocab_size, hidden_size = word_embeddings.weight.shape
        self.transform = PredictionHeadTransform(hidden_size, hidden_act, layer_norm_eps)
        self.decoder = nn.Linear(hidden_size, vocab_size, bias=False)
        self.decoder.weight = word_embeddings.weight  # tied
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, x: Tensor) -> Tensor:
        """(B, L, D) -> (B, L, vocab_size) scores."""
        # one fused matrix product with the bias (addmm), not a product and then a (B, L, vocab) addition
        return F.linear(self.transform(x), self.decoder.weight, self.bias)

    def at_labels(self, x: Tensor, labels: Tensor, ignore_index: int = -100) -> tuple[Tensor, Tensor]:
        """Scores at the labelled positions only, as original BERT computes its masked-LM output
        (google-research/bert ``run_pretraining.py``, ``get_masked_lm_output`` gathers the
        ``masked_lm_positions`` before the transform and the decoder).

        The loss over these scores equals the loss over ``forward(x)`` with the same labels, and so do
        the gradients; the vocabulary-sized matrix product runs on M rows instead of B·L (about 15 %
        of the text, none of the regions).

        Args:
            x: (B, L, D) hidden states. labels: (B, L) target ids, ``ignore_index`` where no target.

        Returns:
            ``(scores, targets)``: (M, vocab_size) and (M,), the M labelled positions in row-major order.

        Raises:
            ValueError: if ``x`` is not (B, L, D), or ``labels`` is not an integer (B, L) tensor.
        """
        if not isinstance(x, Tensor) or x.ndim != 3:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"hidden states must have shape (B, L, D), got {got}")
        if not isinstance(labels, Tensor) or tuple(labels.shape) != tuple(x.shape[:2]):
            got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"labels must have shape (B, L) = {tuple(x.shape[:2])} (the hidden states' first two sizes), got {got}")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integer token ids ({ignore_index} = no target), got {labels.dtype}")
        keep = labels != ignore_index  # (B, L)
        return self.forward(x[keep]), labels[keep]  # (M, vocab), (M,)


# --------------------------------------------------------------------------------------------------
# A BERT-shaped text model, initialisation and weight loading
# --------------------------------------------------------------------------------------------------
class BertPreTrainingHeads(nn.Module):
    """``predictions`` (masked LM, an :class:`LMPredictionHead`) and ``seq_relationship`` Linear(D, 2)
    on the pooled vector; class 1 of ``seq_relationship`` = matched (``is_matched``). VisualBERT and
    LXMERT use it as it is (their ``cls.*`` keys are BERT's).

    A container for the checkpoints' ``cls.*`` keys: the models call the two heads themselves, since
    the masked LM runs either on every position (``predictions(sequence)``, (B, L, vocab)) or on the
    labelled ones only (``predictions.at_labels``)."""

    def __init__(self, config: TransformerConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = LMPredictionHead(word_embeddings, config.hidden_act, config.layer_norm_eps)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


class TextTransformer(nn.Module):
    """Embeddings + encoder (+ pooler): a BERT-shaped text encoder built from the blocks above.

    Its state-dict keys equal those of Hugging Face's ``BertModel`` (without ``embeddings.position_ids``),
    so BERT weights load directly (:func:`load_bert_weights`). Initialised BERT-style.
    """

    def __init__(self, config: TransformerConfig, add_pooler: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = TextEmbeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config.hidden_size) if add_pooler else None
        self.apply(lambda m: init_bert_weights(m, config.initializer_range))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                *, output_hidden_states: bool = False, output_attentions: bool = False) -> dict[str, Any]:
        """input_ids (B, T), keep mask (B, T), token_type_ids (B, T) or None (zeros) ->
        ``{"last_hidden_state": (B, T, D), "pooler_output": (B, D) or None, "hidden_states", "attentions"}``.

        Raises:
            ValueError: see :meth:`TextEmbeddings.forward` and :meth:`Encoder.forward`.
        """
        x = self.embeddings(input_ids, token_type_ids)
        enc = self.encoder(x, attention_mask, output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        return {
            "last_hidden_state": enc.last_hidden_state,
            "pooler_output": self.pooler(enc.last_hidden_state) if self.pooler is not None else None,
            "hidden_states": enc.hidden_states,
            "attentions": enc.attentions,
        }


def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation for one module (use with ``model.apply``).

    Linear and embedding weights ~ N(0, std²) (``initializer_range`` 0.02), biases 0, LayerNorm
    weight 1 and bias 0 (google-research/bert ``create_initializer``; HF ``_init_weights``). A
    measurable choice on a CPU budget: PyTorch's default N(0, 1) embeddings train much slower.
    """
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# Buffers that Hugging Face checkpoints carry but that are not weights.
_NON_WEIGHT_SUFFIXES = ("position_ids", "token_type_ids")


def load_bert_weights(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    prefix_map: Mapping[str, str] | None = None,
    strict: bool = True,
) -> tuple[list[str], list[str]]:
    """Copy BERT weights into a module built from these blocks.

    Args:
        module: the target (e.g. a :class:`TextTransformer`, or a model whose text stream uses BERT names).
        state_dict: the source weights, e.g. ``transformers.BertModel(...).state_dict()``.
        prefix_map: ``{source_prefix: target_prefix}``, applied to the first matching prefix of each
            key, e.g. ``{"bert.": ""}`` for a ``BertForPreTraining`` checkpoint or
            ``{"": "bert."}`` to load a plain ``BertModel`` into ViLBERT's ``bert.*`` text stream.
            Keys matching no source prefix are dropped (when a map is given).
        strict: raise if a target parameter receives nothing.

    Returns:
        ``(missing, unexpected)``: target keys not filled, and mapped source keys the target lacks.

    Raises:
        ValueError: on a shape mismatch (naming the key and both shapes), or, with ``strict``, on
            missing or unexpected keys (listing them).
    """
    mapped: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith(_NON_WEIGHT_SUFFIXES):
            continue
        if prefix_map is None:
            mapped[key] = value
            continue
        for src, dst in prefix_map.items():
            if key.startswith(src):
                mapped[dst + key[len(src):]] = value
                break
    own = module.state_dict()
    for key, value in mapped.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise ValueError(f"{key}: checkpoint shape {tuple(value.shape)} but the model expects {tuple(own[key].shape)}")
    missing = sorted(k for k in own if k not in mapped)
    unexpected = sorted(k for k in mapped if k not in own)
    if strict and (missing or unexpected):
        raise ValueError(f"BERT weights do not fit: missing keys {missing[:20]}{' …' if len(missing) > 20 else ''}, "
                         f"unexpected keys {unexpected[:20]}{' …' if len(unexpected) > 20 else ''}")
    module.load_state_dict({k: v for k, v in mapped.items() if k in own}, strict=False)
    return missing, unexpected


# --------------------------------------------------------------------------------------------------
# NLVR2 pairs for the two-pass models (ViLBERT, LXMERT): one encoded row per image
# --------------------------------------------------------------------------------------------------
def repeat_for_pairs(input_ids: Tensor, features: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """An NLVR2 batch (P statements, two images each) -> one row per image, statement repeated:
    rows ``s0, s0, s1, s1, ...`` against images ``img0_left, img0_right, img1_left, ...``, as
    LXMERT's ``src/tasks/nlvr2_model.py`` (``sum(zip(sent, sent), ())``) and vilbert-multi-task's
    ``task_utils.py`` (``repeat`` for ``NLVR2``) lay them out.

    Args:
        input_ids: (P, T). features: (P, 2, N, F). boxes: (P, 2, N, k) (k = 4 for LXMERT's xyxy,
            5 for ViLBERT's location).

    Returns:
        ``(input_ids (2P, T), features (2P, N, F), boxes (2P, N, k))``.

    Raises:
        ValueError: if ``features`` or ``boxes`` is not (P, 2, N, ·) with ``input_ids``' P.
    """
    if not isinstance(input_ids, Tensor) or input_ids.ndim != 2:
        raise ValueError(f"input_ids must be (P, T), one statement per pair, got {describe_shape(input_ids)}")
    P = input_ids.shape[0]
    for name, x in (("features", features), ("boxes", boxes)):
        if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[:2]) != (P, 2):
            raise ValueError(f"{name} must be (P, 2, N, ·) with P = {P} pairs (left and right image), got {describe_shape(x)}")
    if features.shape[2] != boxes.shape[2]:
        raise ValueError(f"features and boxes must have the same N regions, got {describe_shape(features)} and {describe_shape(boxes)}")
    ids = input_ids.repeat_interleave(2, dim=0)  # (2P, T): s0, s0, s1, s1, ...
    return ids, features.flatten(0, 1), boxes.flatten(0, 1)  # (2P, N, F), (2P, N, k)


def check_pair_labels(labels: Tensor | None, num_pairs: int) -> None:
    """NLVR2 labels: None, or (P,) integers 0/1 (1 = the statement is true of the pair).

    Raises:
        ValueError: naming the expected shape (P,) and values.
    """
    check_labels(labels, (num_pairs,), "NLVR2 labels")
    if labels is not None and not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError(f"NLVR2 labels must be 0 (false) or 1 (true), got values {sorted(set(labels.tolist()))[:5]}")


def check_pair_rows(input_ids: Tensor) -> int:
    """Check the two-pass NLVR2 layout: an even number of rows, rows 2p and 2p+1 the same statement
    (:func:`repeat_for_pairs`). Returns P.

    Raises:
        ValueError: on an odd row count, or a pair whose two rows
            carry different statements (e.g. statements tiled ``s0, s1, s0, s1`` instead of repeated:
            every pair would then mix two statements, and nothing else would fail).
    """
    if not isinstance(input_ids, Tensor) or input_ids.ndim != 2 or input_ids.shape[0] % 2 or input_ids.shape[0] == 0:
        raise ValueError(f"NLVR2 needs 2 x num_pairs rows, one per image (see repeat_for_pairs): input_ids must be "
                         f"(2P, T), got {describe_shape(input_ids)}")
    P = input_ids.shape[0] // 2
    differ = (input_ids[0::2] != input_ids[1::2]).any(-1).nonzero().flatten()  # (·,) pairs whose rows differ
    if len(differ):
        raise ValueError(f"rows 2p and 2p+1 must hold pair p's one statement (s0, s0, s1, s1, ...); pairs "
                         f"{differ[:5].tolist()} have two different statements")
    return P


def pair_logits(head: nn.Module, pooled: Tensor, num_pairs: int) -> Tensor:
    """The two-pass NLVR2 classifier: rows 2p and 2p+1 are pair p's two images; their pooled vectors
    are concatenated, (2P, D) -> (P, 2D), and ``head`` classifies the pair.

    Raises:
        ValueError: unless ``pooled`` has exactly 2 x ``num_pairs`` rows. (vilbert-multi-task silently
            returned the pretraining alignment logits when the row count was odd.)
    """
    if not isinstance(pooled, Tensor) or pooled.ndim != 2 or pooled.shape[0] != 2 * int(num_pairs) or num_pairs < 1:
        raise ValueError(f"the NLVR2 pair head needs 2 x num_pairs = {2 * int(num_pairs)} encoded rows (two images per "
                         f"pair, each encoded with the pair's statement), got pooled of shape {describe_shape(pooled)}")
    return head(pooled.reshape(int(num_pairs), 2 * pooled.shape[1]))  # (P, 2D) -> (P, 2)
