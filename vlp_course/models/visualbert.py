"""VisualBERT (Li et al. 2019, "VisualBERT: A Simple and Performant Baseline for Vision and Language").

One stream: BERT over the concatenation ``[CLS] text [SEP] v_1 … v_N``, where each region feature is
projected to the hidden width. Read top-down: config, the joint embedding, the model (embeddings ->
the shared :class:`~vlp_course.models.blocks.Encoder` -> pooler), the BERT pretraining heads (masked
language modelling and sentence-image matching), the VQA head on the [MASK] token.

Sources: the paper (sections 3.1–3.3) and uclanlp/visualbert ``pytorch_pretrained_bert/modeling.py``
(``BertEmbeddingsWithVisualEmbedding``, ``BertVisualModel``, ``TrainVisualBERTObjective``); see
vl-models.md section 3. Parameter names are those of Hugging Face's ``VisualBertFor*`` classes, so
converting a checkpoint is a key map (:mod:`vlp_course.models.convert`; the original uclanlp names
go through the rename table there).

Where transformers differs from the original, this file follows the original and says so:

* **visual token type**: omitted ``visual_token_type_ids`` default to **0** (the original passes
  ``None`` -> zeros for COCO, VQA and VCR); transformers defaults to 1
  (``VisualBertConfig.visual_token_type_default`` keeps both possible; tested in
  ``test_visual_token_type_default_is_original_zero_not_hf_one``).
* **pad row**: transformers builds ``word_embeddings`` with ``padding_idx = pad_token_id = 1`` (a
  RoBERTa id on a BERT vocabulary, so ``[unused0]`` gets no gradient); the original has no padding
  row. Only gradients differ, not outputs.
* ``VisualBertForQuestionAnswering`` here works without an ``attention_mask`` (HF raises
  ``AttributeError``).

Shapes: B batch, T text tokens, V regions, D hidden width, F region-feature width, A answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_course.models.blocks import (
    BertPreTrainingHeads,
    Encoder,
    LMPredictionHead,
    Pooler,
    TextEmbeddings,
    TransformerConfig,
    check_config,
    check_ids,
    check_keep_mask,
    check_region_features,
    check_text_inputs,
    describe_shape,
    init_bert_weights,
)
from vlp_course.pretraining.losses import IGNORE_INDEX, itm_loss, mlm_loss
from vlp_course.pretraining.matching import drop_mismatched_labels

__all__ = [
    "VisualBertConfig",
    "VisualBertEmbeddings",
    "VisualBertModel",
    "VisualBertOutput",
    "VisualBertForPreTraining",
    "VisualBertPreTrainingOutput",
    "VisualBertForQuestionAnswering",
    "VisualBertQAOutput",
    "vqa_kl_loss",
]


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------
@dataclass
class VisualBertConfig(TransformerConfig):
    """BERT sizes (see :class:`TransformerConfig`) plus VisualBERT's visual fields.

    Attributes:
        visual_embedding_dim: F, the width of the region features: 2048 for COCO/VQA (Detectron
            fc6), 1024 for NLVR2, 512 for VCR (vl-models.md 3.1). HF's default is 512.
        visual_token_type_default: the token type of regions when ``visual_token_type_ids`` is
            omitted: 0 as in the original (HF: 1).
        special_visual_initialize: copy the text token-type and position tables into the visual ones
            at initialisation (original and HF default).
        num_answers: A, the VQA answer vocabulary (3129 for VQA v2).
        mlm_on_mismatched: whether masked tokens of a mismatched pair count in the MLM loss
            (pitfall P4). The original masks both captions whatever the pair is, so True.

    Raises:
        ValueError: on the fields' ranges (and see :class:`TransformerConfig`).
    """

    visual_embedding_dim: int = 2048
    visual_token_type_default: int = 0
    special_visual_initialize: bool = True
    num_answers: int = 3129
    mlm_on_mismatched: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self, positive=("visual_embedding_dim", "num_answers"))
        if not 0 <= int(self.visual_token_type_default) < self.type_vocab_size:
            raise ValueError(f"visual_token_type_default must lie in [0, {self.type_vocab_size}), got {self.visual_token_type_default!r}")

    @classmethod
    def from_hf(cls, hf_config: Any, **overrides: Any) -> "VisualBertConfig":
        """Read a Hugging Face ``VisualBertConfig`` (``num_labels`` becomes ``num_answers``).

        The visual token type default stays the original 0 unless overridden.
        """
        extra = {"visual_embedding_dim": hf_config.visual_embedding_dim}
        if getattr(hf_config, "num_labels", None):
            extra["num_answers"] = hf_config.num_labels
        extra.update(overrides)
        return cls.from_bert_config(hf_config, **extra)


# --------------------------------------------------------------------------------------------------
# Embeddings: text and regions, one LayerNorm over the joint sequence
# --------------------------------------------------------------------------------------------------
class VisualBertEmbeddings(TextEmbeddings):
    """Text embeddings (BERT's tables) plus the visual ones, normalised together.

    text token t:   ``word[id] + position[t] + token_type[type]``
    region v:       ``visual_projection(f_v) + visual_position[0] + visual_token_type[type_v]``

    Every region uses visual position id 0 (the original's default path; the optional
    ``image_text_alignment`` path for Flickr30K entities is not implemented). The two parts are
    concatenated along the sequence, then **one** LayerNorm and dropout run over all T+V vectors
    (uclanlp ``BertEmbeddingsWithVisualEmbedding.forward``).
    """

    def __init__(self, config: VisualBertConfig):
        super().__init__(config)  # word_embeddings, position_embeddings, token_type_embeddings, LayerNorm, dropout
        self.visual_token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.visual_position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.visual_projection = nn.Linear(config.visual_embedding_dim, config.hidden_size)

    @torch.no_grad()
    def special_visual_initialize(self) -> None:
        """Copy the text token-type and position tables into the visual ones (``special_visual_initialize``)."""
        self.visual_token_type_embeddings.weight.copy_(self.token_type_embeddings.weight)
        self.visual_position_embeddings.weight.copy_(self.position_embeddings.weight)

    def forward(  # type: ignore[override]
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        visual_feats: Tensor | None = None,
        visual_token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Embed text (and regions).

        Args:
            input_ids: (B, T). token_type_ids: (B, T), zeros when omitted (P6).
            position_ids: (B, T) or (1, T); 0..T-1 when omitted.
            visual_feats: (B, V, F) region features, or None for text only (P7).
            visual_token_type_ids: (B, V); ``config.visual_token_type_default`` (0) when omitted.

        Returns:
            (B, T+V, D) (or (B, T, D) without regions).

        Raises:
            ValueError: on shapes or id ranges (checked in :meth:`VisualBertModel.forward`).
        """
        cfg = self.config
        B, T = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device)[None, :]  # (1, T)
        x = (self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
             + self.token_type_embeddings(token_type_ids))  # (B, T, D)
        if visual_feats is not None:
            V = visual_feats.shape[1]
            if visual_token_type_ids is None:
                visual_token_type_ids = torch.full((B, V), cfg.visual_token_type_default, dtype=torch.long,
                                                   device=input_ids.device)
            visual_position_ids = torch.zeros(B, V, dtype=torch.long, device=input_ids.device)  # (B, V): all 0
            v = (self.visual_projection(visual_feats) + self.visual_position_embeddings(visual_position_ids)
                 + self.visual_token_type_embeddings(visual_token_type_ids))  # (B, V, D)
            x = torch.cat([x, v], dim=1)  # (B, T+V, D)
        return self.dropout(self.LayerNorm(x))


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------
@dataclass
class VisualBertOutput:
    """What :class:`VisualBertModel` returns.

    Attributes:
        last_hidden_state: (B, T+V, D); text first, then regions.
        pooler_output: (B, D), tanh(Linear) of the [CLS] state.
        hidden_states: the embeddings and every layer's output, L+1 tensors (B, T+V, D), when requested.
        attentions: one (B, heads, T+V, T+V) tensor per layer, when requested (P12).
        text_length: T, where the regions start.
    """

    last_hidden_state: Tensor
    pooler_output: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    text_length: int = 0


class VisualBertModel(nn.Module):
    """VisualBERT's encoder: :class:`VisualBertEmbeddings` -> BERT :class:`Encoder` -> :class:`Pooler`.

    Keys: ``embeddings.*``, ``encoder.layer.N.*``, ``pooler.dense.*`` (HF ``VisualBertModel``).
    Initialised BERT-style (normal 0.02), then the visual tables copied from the text ones.
    """

    def __init__(self, config: VisualBertConfig):
        super().__init__()
        self.config = config
        self.embeddings = VisualBertEmbeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config.hidden_size)
        self.apply(lambda m: init_bert_weights(m, config.initializer_range))
        if config.special_visual_initialize:
            self.embeddings.special_visual_initialize()

    def forward(
        self,
        input_ids: Tensor,
        visual_feats: Tensor | None = None,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        visual_token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        *,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> VisualBertOutput:
        """Encode ``[CLS] text [SEP]`` followed by the regions.

        Args:
            input_ids: (B, T) token ids.
            visual_feats: (B, V, F) region features, or None for text only (pitfall P7).
            attention_mask: (B, T) keep mask (1 real, 0 padding); all ones when omitted.
            visual_attention_mask: (B, V) keep mask over regions; all ones when omitted.
            token_type_ids: (B, T), zeros when omitted (P6). visual_token_type_ids: (B, V),
                ``config.visual_token_type_default`` (0, the original) when omitted.
            position_ids: (B, T) text positions, 0..T-1 when omitted.
            output_hidden_states, output_attentions: also return every layer's states / attention weights.

        Returns:
            :class:`VisualBertOutput`.

        Raises:
            ValueError: if ``input_ids`` is not (B, T) or T exceeds the position table; if the
                features' width is not ``visual_embedding_dim`` (naming both, P8) or their batch size
                differs from the text's; if a mask or id tensor has the wrong shape or range.
        """
        cfg = self.config
        B, T = check_text_inputs(cfg, input_ids, token_type_ids, attention_mask)
        if position_ids is not None and tuple(position_ids.shape) not in ((B, T), (1, T)):
            raise ValueError(f"position_ids must have shape (B, T) = ({B}, {T}) or (1, T), got {describe_shape(position_ids)}")
        if visual_feats is None:
            if visual_attention_mask is not None or visual_token_type_ids is not None:
                raise ValueError("visual_attention_mask / visual_token_type_ids were given without visual_feats")
            mask = attention_mask
        else:
            check_region_features(visual_feats, cfg.visual_embedding_dim, B, field_name="visual_embedding_dim")
            V = visual_feats.shape[1]
            check_keep_mask(visual_attention_mask, (B, V), "visual_attention_mask")
            check_ids(visual_token_type_ids, (B, V), cfg.type_vocab_size, "visual_token_type_ids")
            if attention_mask is None and visual_attention_mask is None:
                mask = None  # attend everywhere
            else:
                t_mask = attention_mask if attention_mask is not None else input_ids.new_ones(B, T)
                v_mask = visual_attention_mask if visual_attention_mask is not None else input_ids.new_ones(B, V)
                mask = torch.cat([t_mask != 0, v_mask != 0], dim=1)  # (B, T+V) bool

        x = self.embeddings(input_ids, token_type_ids, position_ids, visual_feats, visual_token_type_ids)  # (B, T+V, D)
        enc = self.encoder(x, mask, output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        return VisualBertOutput(
            last_hidden_state=enc.last_hidden_state,
            pooler_output=self.pooler(enc.last_hidden_state),
            hidden_states=enc.hidden_states,
            attentions=enc.attentions,
            text_length=T,
        )


# --------------------------------------------------------------------------------------------------
# Pretraining: masked LM + sentence-image matching
# --------------------------------------------------------------------------------------------------
@dataclass
class VisualBertPreTrainingOutput:
    """Logits and losses of :class:`VisualBertForPreTraining`.

    Attributes:
        prediction_logits: (B, T+V, vocab) MLM scores (the region rows are never targets); with
            ``mlm_scores="masked"``, (M, vocab) at the M labelled positions.
        seq_relationship_logits: (B, 2) matching logits; class 1 = the caption belongs to the image.
        loss: sum of the losses computed (None without labels); mlm_loss, matching_loss: the parts.
        model: the encoder's :class:`VisualBertOutput`.
    """

    prediction_logits: Tensor
    seq_relationship_logits: Tensor
    model: VisualBertOutput
    loss: Tensor | None = None
    mlm_loss: Tensor | None = None
    matching_loss: Tensor | None = None


class VisualBertForPreTraining(nn.Module):
    """VisualBERT with its two pretraining heads (``visual_bert.*``, ``cls.*``).

    Task-agnostic pretraining on COCO captions (paper 3.3): masked language modelling on the
    caption tokens and sentence-image prediction, ``[CLS] caption_a [SEP] caption_b [SEP]`` +
    regions, label ``is_matched`` = 1 when caption_b describes the image. (The original stores it
    as ``is_random_next`` but means ``is_correct``; HF's docstring states the opposite polarity.)
    """

    tied_weights = {"cls.predictions.decoder.weight": "visual_bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: VisualBertConfig):
        super().__init__()
        self.config = config
        self.visual_bert = VisualBertModel(config)
        self.cls = BertPreTrainingHeads(config, self.visual_bert.embeddings.word_embeddings)
        for part in (self.cls.predictions.transform, self.cls.seq_relationship):  # not the tied decoder
            part.apply(lambda m: init_bert_weights(m, config.initializer_range))
        with torch.no_grad():
            self.cls.predictions.bias.zero_()

    def forward(
        self,
        input_ids: Tensor,
        visual_feats: Tensor | None = None,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        visual_token_type_ids: Tensor | None = None,
        *,
        mlm_labels: Tensor | None = None,
        is_matched: Tensor | None = None,
        mlm_scores: str = "all",
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> VisualBertPreTrainingOutput:
        """Scores of both heads, and their losses when labels are given.

        Args:
            input_ids … visual_token_type_ids: as in :meth:`VisualBertModel.forward`.
            mlm_labels: (B, T) original id at masked text positions, -100 elsewhere; or (B, T+V) with
                -100 over the regions (HF's layout). With ``config.mlm_on_mismatched`` False, rows
                with ``is_matched`` 0 are ignored (P4).
            is_matched: (B,) 1 = matched pair, 0 = mismatched, -100 = no matching loss for the row.
            mlm_scores: ``"all"``: ``prediction_logits`` is (B, T+V, vocab), every position, as
                the uclanlp original and transformers compute it; ``"masked"``: (M, vocab) for the M
                labelled positions only (row-major order), as original BERT does
                (:meth:`~vlp_course.models.blocks.LMPredictionHead.at_labels`). Same loss and
                gradients; for training, where the other rows are never used.

        Returns:
            :class:`VisualBertPreTrainingOutput`; ``loss`` = MLM + matching (the ones given).

        Raises:
            ValueError: see :meth:`VisualBertModel.forward`; ``mlm_labels`` not (B, T) or (B, T+V), or
                with a target on a region position;
                ``is_matched`` not (B,); ``mlm_scores`` not "all"/"masked", or "masked" without ``mlm_labels``.
        """
        if mlm_scores not in ("all", "masked"):
            raise ValueError(f"mlm_scores must be 'all' or 'masked', got {mlm_scores!r}")
        if mlm_scores == "masked" and mlm_labels is None:
            raise ValueError("mlm_scores='masked' scores the labelled positions: it needs mlm_labels")
        out = self.visual_bert(input_ids, visual_feats, attention_mask, visual_attention_mask, token_type_ids,
                               visual_token_type_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions)
        seq = out.last_hidden_state  # (B, T+V, D)
        match_logits = self.cls.seq_relationship(out.pooler_output)  # (B, 2)
        scores = self.cls.predictions(seq) if mlm_scores == "all" else None  # (B, T+V, vocab)
        B, L = seq.shape[:2]
        T = out.text_length
        losses: dict[str, Tensor] = {}
        if is_matched is not None:
            if not isinstance(is_matched, Tensor) or tuple(is_matched.shape) != (B,):
                raise ValueError(f"is_matched must have shape (B,) = ({B},), got {describe_shape(is_matched)}")
            losses["matching_loss"] = itm_loss(match_logits, is_matched.long())
        if mlm_labels is not None:
            if not isinstance(mlm_labels, Tensor) or tuple(mlm_labels.shape) not in ((B, T), (B, L)):
                raise ValueError(f"mlm_labels must have shape (B, T) = ({B}, {T}) or (B, T+V) = ({B}, {L}), got {describe_shape(mlm_labels)}")
            labels = mlm_labels.long()
            if labels.shape[1] == L and L > T and bool((labels[:, T:] != IGNORE_INDEX).any()):
                raise ValueError("mlm_labels in the (B, T+V) layout must be -100 over the regions: regions are never MLM targets")
            if labels.shape[1] == T and L > T:  # pad the region positions with "no target"
                labels = torch.cat([labels, labels.new_full((B, L - T), IGNORE_INDEX)], dim=1)  # (B, T+V)
            if not self.config.mlm_on_mismatched and is_matched is not None:
                labels = drop_mismatched_labels(labels, is_matched.long())
            if mlm_scores == "masked":
                scores, labels = self.cls.predictions.at_labels(seq, labels)  # (M, vocab), (M,)
            losses["mlm_loss"] = mlm_loss(scores, labels)
        total = sum(losses.values()) if losses else None
        return VisualBertPreTrainingOutput(scores, match_logits, out, total, losses.get("mlm_loss"), losses.get("matching_loss"))


# --------------------------------------------------------------------------------------------------
# VQA: a linear classifier on the [MASK] token of "[CLS] question ? [MASK] [SEP]"
# --------------------------------------------------------------------------------------------------
def vqa_kl_loss(logits: Tensor, soft_scores: Tensor) -> Tensor:
    """VisualBERT's VQA loss: ``KLDivLoss(batchmean)(log_softmax(logits), soft_scores)``.

    The soft scores (0/0.3/0.6/0.9/1 per answer) are *not* renormalised to sum 1, as in the original
    (uclanlp ``TrainVisualBERTObjective``, ``training_head_type == "vqa"``); KL's ``t log t`` term
    makes the value differ from a cross-entropy by a constant only.

    Args:
        logits: (B, A). soft_scores: (B, A) in [0, 1].

    Raises:
        ValueError: on a shape mismatch or scores outside [0, 1].
    """
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise ValueError(f"vqa_kl_loss: logits must have shape (B, A), got {describe_shape(logits)}")
    if not isinstance(soft_scores, Tensor) or soft_scores.shape != logits.shape:
        raise ValueError(f"vqa_kl_loss: soft_scores must have the logits' shape {tuple(logits.shape)}, got {describe_shape(soft_scores)}")
    if bool(((soft_scores < 0) | (soft_scores > 1)).any()):
        raise ValueError("vqa_kl_loss: soft scores must lie in [0, 1]")
    return F.kl_div(logits.float().log_softmax(-1), soft_scores.float(), reduction="batchmean")


@dataclass
class VisualBertQAOutput:
    """logits (B, A) raw answer scores; answer_positions (B,) the [MASK] index used; loss or None; model."""

    logits: Tensor
    answer_positions: Tensor
    model: VisualBertOutput
    loss: Tensor | None = None


class VisualBertForQuestionAnswering(nn.Module):
    """VisualBERT for VQA (``visual_bert.*`` + ``cls.{weight,bias}``, HF ``VisualBertForQuestionAnswering``).

    The text is ``[CLS] question ? [MASK] [SEP]`` (padding after); the answer is read from the
    hidden state of the [MASK] token, at index ``attention_mask.sum(1) - 2`` (the original's
    ``input_mask.sum - 2``), through dropout and Linear(D, A). Loss: :func:`vqa_kl_loss`.
    """

    def __init__(self, config: VisualBertConfig):
        super().__init__()
        self.config = config
        self.visual_bert = VisualBertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.cls = nn.Linear(config.hidden_size, config.num_answers)
        init_bert_weights(self.cls, config.initializer_range)

    @staticmethod
    def answer_positions(attention_mask: Tensor | None, batch: int, length: int, device=None) -> Tensor:
        """(B,) index of the [MASK]: the number of real text tokens minus 2 ([MASK] then [SEP]).

        Raises:
            ValueError: if a row has fewer than 2 real tokens.
        """
        if attention_mask is None:
            n = torch.full((batch,), length, dtype=torch.long, device=device)
        else:
            n = attention_mask.long().sum(1)  # (B,)
        if bool((n < 2).any()):
            raise ValueError("each question needs at least 2 real tokens: '... [MASK] [SEP]'")
        return n - 2

    def forward(
        self,
        input_ids: Tensor,
        visual_feats: Tensor | None = None,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        visual_token_type_ids: Tensor | None = None,
        *,
        answer_positions: Tensor | None = None,
        soft_scores: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> VisualBertQAOutput:
        """Answer scores from the [MASK] token.

        Args:
            input_ids … visual_token_type_ids: as in :meth:`VisualBertModel.forward`; the text must
                end with ``[MASK] [SEP]`` before its padding.
            answer_positions: (B,) index of the [MASK]; default :meth:`answer_positions`.
            soft_scores: (B, A) VQA soft scores; gives ``loss``.

        Returns:
            :class:`VisualBertQAOutput` with raw logits (HF returns log-probabilities when labels are given).

        Raises:
            ValueError: see :meth:`VisualBertModel.forward`; a position outside the text.
        """
        out = self.visual_bert(input_ids, visual_feats, attention_mask, visual_attention_mask, token_type_ids,
                               visual_token_type_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions)
        B, T = input_ids.shape
        if answer_positions is None:
            answer_positions = self.answer_positions(attention_mask, B, T, input_ids.device)
        elif tuple(answer_positions.shape) != (B,) or bool(((answer_positions < 0) | (answer_positions >= T)).any()):
            raise ValueError(f"answer_positions must have shape (B,) = ({B},) with values in [0, {T})")
        rows = torch.arange(B, device=input_ids.device)
        h = out.last_hidden_state[rows, answer_positions]  # (B, D)
        logits = self.cls(self.dropout(h))  # (B, A)
        loss = vqa_kl_loss(logits, soft_scores) if soft_scores is not None else None
        return VisualBertQAOutput(logits, answer_positions, out, loss)
