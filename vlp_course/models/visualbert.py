"""VisualBERT (Li et al. 2019, "VisualBERT: A Simple and Performant Baseline for Vision and Language").

One stream: BERT over the concatenation ``[CLS] text [SEP] v_1 … v_N``, where each region feature is
projected to the hidden width. Read top-down: config, the joint embedding, the model (its input
checks, embeddings -> the shared :class:`~vlp_course.models.blocks.Encoder` -> pooler), pretraining
(masked language modelling and sentence-image matching), the VQA head on the [MASK] token.

Sources: the paper (sections 3.1–3.3, 4.1) and uclanlp/visualbert ``pytorch_pretrained_bert/modeling.py``
(``BertEmbeddingsWithVisualEmbedding``, ``BertVisualModel``, ``TrainVisualBERTObjective``).
Parameter names are those of Hugging Face's ``VisualBertFor*`` classes, so converting a checkpoint
is a key map (:mod:`vlp_course.models.convert`; the original uclanlp names go through the rename
table there).

The two task models take the course's shared argument names (``docs/conventions.md``) and return
:class:`~vlp_course.models.blocks.VLOutput`: ``losses``/``logits`` keyed ``"mlm"`` and ``"itm"``
(pretraining) or ``"vqa"`` (question answering), ``encoder`` the :class:`VisualBertOutput`.

Where transformers differs from the original, this file follows the original and says so:

* **visual token type**: omitted ``visual_token_type_ids`` default to **0** (the original passes
  ``None`` -> zeros for COCO, VQA and VCR); transformers defaults to 1
  (``VisualBertConfig.visual_token_type_default`` keeps both possible; tested in
  ``test_visual_token_type_default_is_original_zero_not_hf_one``).
* **pad row**: transformers builds ``word_embeddings`` with ``padding_idx = pad_token_id = 1`` (a
  RoBERTa id on a BERT vocabulary, so ``[unused0]`` gets no gradient); the original has no padding
  row. Only gradients differ, not outputs.
* ``VisualBertForQuestionAnswering`` here works without an ``attention_mask`` (HF raises
  ``AttributeError``), and checks that the token it reads the answer from is ``[MASK]`` (the
  original and HF read index ``attention_mask.sum - 2`` whatever it holds).

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
    Pooler,
    TextEmbeddings,
    TransformerConfig,
    VLOutput,
    check_config,
    check_ids,
    check_keep_mask,
    check_labels,
    check_pair_labels,
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
    "VisualBertForQuestionAnswering",
    "VisualBertForNLVR2",
    "pair_regions",
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
            fc6), 1024 for NLVR2, 512 for VCR (the paper, section 4; HF's default is 512).
        visual_token_type_default: the token type of regions when ``visual_token_type_ids`` is
            omitted: 0 as in the original (HF: 1).
        special_visual_initialize: copy the text token-type and position tables into the visual ones
            at initialisation (original and HF default).
        num_answers: A, the VQA answer vocabulary (3129 for VQA v2).
        mask_token_id: the id of ``[MASK]``, where :class:`VisualBertForQuestionAnswering` reads the
            answer: 103 in bert-base-uncased's vocabulary (a course recipe sets its own).
        mlm_on_mismatched: whether masked tokens of a mismatched pair count in the MLM loss
            (lxmert issue 51 asks the question for LXMERT). The original masks both captions
            whatever the pair is, so True.

    Raises:
        ValueError: on the fields' ranges (and see :class:`TransformerConfig`).
    """

    visual_embedding_dim: int = 2048
    visual_token_type_default: int = 0
    special_visual_initialize: bool = True
    num_answers: int = 3129
    mask_token_id: int = 103
    mlm_on_mismatched: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self, positive=("visual_embedding_dim", "num_answers"), non_negative=("mask_token_id",))
        if not 0 <= int(self.visual_token_type_default) < self.type_vocab_size:
            raise ValueError(f"visual_token_type_default must lie in [0, {self.type_vocab_size}), got {self.visual_token_type_default!r}")

    @classmethod
    def from_hf(cls, hf_config: Any, **overrides: Any) -> "VisualBertConfig":
        """Read a Hugging Face ``VisualBertConfig`` (``num_labels`` becomes ``num_answers``).

        The visual token type default stays the original 0 unless overridden; HF's config has no
        ``[MASK]`` id, so ``mask_token_id`` stays bert-base-uncased's 103 unless overridden.
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
            input_ids: (B, T). token_type_ids: (B, T), zeros when omitted (transformers issue 13001).
            position_ids: (B, T) or (1, T); 0..T-1 when omitted.
            visual_feats: (B, V, F) region features, or None for text only (transformers issue 12827).
            visual_token_type_ids: (B, V); ``config.visual_token_type_default`` (0) when omitted.

        Returns:
            (B, T+V, D) (or (B, T, D) without regions).

        Raises:
            ValueError: nothing here; the inputs are checked in :meth:`VisualBertModel.check_inputs`.
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
    """What :class:`VisualBertModel` returns (the ``encoder`` of the task models' :class:`VLOutput`).

    Attributes:
        last_hidden_state: (B, T+V, D); text first, then regions.
        pooler_output: (B, D), tanh(Linear) of the [CLS] state.
        hidden_states: the embeddings and every layer's output, L+1 tensors (B, T+V, D), when requested.
        attentions: one (B, heads, T+V, T+V) tensor per layer, when requested (mmf issue 1036).
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

    def check_inputs(
        self,
        input_ids: Tensor,
        visual_feats: Tensor | None = None,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        visual_token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> tuple[int, int, int]:
        """VisualBERT's one input boundary; every model of this file runs it before any matrix product.

        Returns:
            ``(B, T, V)``, V = 0 without regions.

        Raises:
            ValueError: ``input_ids`` not integer (B, T) ids in the vocabulary, T = 0 (no [CLS]: the
                pooler would read a region) or beyond the position table; an ``attention_mask`` row
                that hides its first token; ``position_ids`` not (B, T) or (1, T); region features
                not (B, V, F) of the model's dtype with F = ``visual_embedding_dim`` (naming both
                widths, transformers issue 18228), another batch size, or a NaN/inf; a mask or
                token-type tensor of the wrong shape or range; region masks or types without features.
        """
        cfg = self.config
        B, T = check_text_inputs(cfg, input_ids, token_type_ids, attention_mask)
        if position_ids is not None and tuple(position_ids.shape) not in ((B, T), (1, T)):
            raise ValueError(f"position_ids must have shape (B, T) = ({B}, {T}) or (1, T), got {describe_shape(position_ids)}")
        check_ids(position_ids, tuple(position_ids.shape) if position_ids is not None else (), cfg.max_position_embeddings,
                  "position_ids")
        if visual_feats is None:
            if visual_attention_mask is not None or visual_token_type_ids is not None:
                raise ValueError("visual_attention_mask / visual_token_type_ids were given without visual_feats")
            return B, T, 0
        check_region_features(visual_feats, cfg.visual_embedding_dim, B, field_name="visual_embedding_dim",
                              dtype=self.embeddings.visual_projection.weight.dtype)
        V = visual_feats.shape[1]
        check_keep_mask(visual_attention_mask, (B, V), "visual_attention_mask")
        check_ids(visual_token_type_ids, (B, V), cfg.type_vocab_size, "visual_token_type_ids")
        return B, T, V

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
            input_ids: (B, T) token ids, [CLS] first.
            visual_feats: (B, V, F) region features in the model's dtype, or None for text only
                (transformers issue 12827).
            attention_mask: (B, T) keep mask (1 real, 0 padding, the first token real); all ones when omitted.
            visual_attention_mask: (B, V) keep mask over regions; all ones when omitted.
            token_type_ids: (B, T), zeros when omitted (transformers issue 13001). visual_token_type_ids:
                (B, V), ``config.visual_token_type_default`` (0, the original) when omitted.
            position_ids: (B, T) or (1, T) text positions, 0..T-1 when omitted.
            output_hidden_states, output_attentions: also return every layer's states / attention weights.

        Returns:
            :class:`VisualBertOutput`.

        Raises:
            ValueError: see :meth:`check_inputs`.
        """
        B, T, V = self.check_inputs(input_ids, visual_feats, attention_mask, visual_attention_mask, token_type_ids,
                                    visual_token_type_ids, position_ids)
        if V == 0 or (attention_mask is None and visual_attention_mask is None):
            mask = attention_mask  # text only, or attend everywhere (None)
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
class VisualBertForPreTraining(nn.Module):
    """VisualBERT with its two pretraining heads (``visual_bert.*``, ``cls.*``).

    Task-agnostic pretraining on COCO captions (paper 3.3): masked language modelling on the
    caption tokens (``"mlm"``) and sentence-image prediction (``"itm"``), ``[CLS] caption_a [SEP]
    caption_b [SEP]`` + regions, label ``is_matched`` = 1 when caption_b describes the image. (The
    original stores it as ``is_random_next`` but means ``is_correct``; HF's docstring states the
    opposite polarity, transformers issue 7266.) No region objective.
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

    def check_labels(self, mlm_labels: Tensor | None, is_matched: Tensor | None, mlm_scores: str,
                     B: int, T: int, V: int) -> None:
        """The pretraining labels, checked before the encoder runs.

        Raises:
            ValueError: ``mlm_scores`` not "all"/"masked", or "masked" without ``mlm_labels``;
                ``is_matched`` not integer (B,) in {0, 1, -100}; ``mlm_labels`` not integer (B, T) or
                (B, T+V) in [0, vocab) or -100, or with a target on a region position.
        """
        if mlm_scores not in ("all", "masked"):
            raise ValueError(f"mlm_scores must be 'all' or 'masked', got {mlm_scores!r}")
        if mlm_scores == "masked" and mlm_labels is None:
            raise ValueError("mlm_scores='masked' scores the labelled positions: it needs mlm_labels")
        check_labels(is_matched, (B,), "is_matched")
        if is_matched is not None and bool(((is_matched != 0) & (is_matched != 1) & (is_matched != IGNORE_INDEX)).any()):
            raise ValueError(f"is_matched must hold 1 (matched), 0 (mismatched) or {IGNORE_INDEX}, got {is_matched.tolist()}")
        if mlm_labels is None:
            return
        if not isinstance(mlm_labels, Tensor) or tuple(mlm_labels.shape) not in ((B, T), (B, T + V)):
            raise ValueError(f"mlm_labels must have shape (B, T) = ({B}, {T}) or (B, T+V) = ({B}, {T + V}), "
                             f"got {describe_shape(mlm_labels)}")
        check_labels(mlm_labels, tuple(mlm_labels.shape), "mlm_labels")
        target = mlm_labels != IGNORE_INDEX
        if bool(((mlm_labels[target] < 0) | (mlm_labels[target] >= self.config.vocab_size)).any()):
            raise ValueError(f"mlm_labels must lie in [0, {self.config.vocab_size}) or be {IGNORE_INDEX}")
        if mlm_labels.shape[1] > T and bool(target[:, T:].any()):
            raise ValueError("mlm_labels in the (B, T+V) layout must be -100 over the regions: regions are never MLM targets")

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
    ) -> VLOutput:
        """Scores of both heads, and their losses when labels are given.

        Args:
            input_ids … visual_token_type_ids: as in :meth:`VisualBertModel.forward`.
            mlm_labels: (B, T) original id at masked text positions, -100 elsewhere; or (B, T+V) with
                -100 over the regions (HF's layout). With ``config.mlm_on_mismatched`` False, rows
                with ``is_matched`` 0 are ignored.
            is_matched: (B,) 1 = matched pair, 0 = mismatched, -100 = no matching loss for the row.
            mlm_scores: ``"all"``: ``logits["mlm"]`` is (B, T+V, vocab), every position including the
                regions, as the uclanlp original and transformers compute it; ``"masked"``: (M, vocab)
                for the M labelled positions only (row-major order), as original BERT does
                (:meth:`~vlp_course.models.blocks.LMPredictionHead.at_labels`). Same loss and
                gradients; for training, where the other rows are never used.

        Returns:
            :class:`VLOutput`: ``logits["mlm"]`` (see ``mlm_scores``), ``logits["itm"]`` (B, 2) with
            class 1 = matched; ``losses["mlm"]`` (cross-entropy over the labelled tokens) and
            ``losses["itm"]`` for the labels given; ``loss`` their sum; ``encoder`` the
            :class:`VisualBertOutput`.

        Raises:
            ValueError: see :meth:`VisualBertModel.check_inputs` and :meth:`check_labels`.
        """
        B, T, V = self.visual_bert.check_inputs(input_ids, visual_feats, attention_mask, visual_attention_mask,
                                                token_type_ids, visual_token_type_ids)
        self.check_labels(mlm_labels, is_matched, mlm_scores, B, T, V)

        out = self.visual_bert(input_ids, visual_feats, attention_mask, visual_attention_mask, token_type_ids,
                               visual_token_type_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions)
        seq = out.last_hidden_state  # (B, T+V, D)
        logits = {"itm": self.cls.seq_relationship(out.pooler_output)}  # (B, 2)
        if mlm_scores == "all":
            logits["mlm"] = self.cls.predictions(seq)  # (B, T+V, vocab)
        losses: dict[str, Tensor] = {}
        if mlm_labels is not None:
            labels = mlm_labels.long()
            if labels.shape[1] == T and V:  # pad the region positions with "no target"
                labels = torch.cat([labels, labels.new_full((B, V), IGNORE_INDEX)], dim=1)  # (B, T+V)
            if not self.config.mlm_on_mismatched and is_matched is not None:
                labels = drop_mismatched_labels(labels, is_matched.long())
            if mlm_scores == "masked":
                logits["mlm"], labels = self.cls.predictions.at_labels(seq, labels)  # (M, vocab), (M,)
            losses["mlm"] = mlm_loss(logits["mlm"], labels)
        if is_matched is not None:
            losses["itm"] = itm_loss(logits["itm"], is_matched.long())
        return VLOutput(VLOutput.total(losses), losses, logits, encoder=out)


# --------------------------------------------------------------------------------------------------
# VQA: a linear classifier on the [MASK] token of "[CLS] question ? [MASK] [SEP]"
# --------------------------------------------------------------------------------------------------
def check_soft_scores(soft_scores: Tensor, shape: tuple[int, int], what: str = "soft_scores") -> None:
    """VQA soft scores must be a float (B, A) tensor in [0, 1].

    Raises:
        ValueError: naming the expected shape, dtype or range.
    """
    if not isinstance(soft_scores, Tensor) or tuple(soft_scores.shape) != tuple(shape):
        raise ValueError(f"{what} must have shape (B, A) = {tuple(shape)}, got {describe_shape(soft_scores)}")
    if not soft_scores.is_floating_point():
        raise ValueError(f"{what} must be floating-point soft scores in [0, 1], got {soft_scores.dtype}")
    if bool(((soft_scores < 0) | (soft_scores > 1)).any()):
        raise ValueError(f"{what}: soft scores must lie in [0, 1]")


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
    check_soft_scores(soft_scores, tuple(logits.shape), "vqa_kl_loss: soft_scores")
    return F.kl_div(logits.float().log_softmax(-1), soft_scores.float(), reduction="batchmean")


class VisualBertForQuestionAnswering(nn.Module):
    """VisualBERT for VQA (``visual_bert.*`` + ``cls.{weight,bias}``, HF ``VisualBertForQuestionAnswering``).

    The text is ``[CLS] question ? [MASK] [SEP]`` (padding after); the answer is read from the
    hidden state of the [MASK] token, at index ``attention_mask.sum(1) - 2`` (the original's
    ``input_mask.sum - 2``, uclanlp ``TrainVisualBERTObjective``), through dropout and Linear(D, A).
    Loss: :func:`vqa_kl_loss`, ``"vqa"`` in the output.
    """

    def __init__(self, config: VisualBertConfig):
        super().__init__()
        if config.mask_token_id >= config.vocab_size:
            raise ValueError(f"mask_token_id = {config.mask_token_id} is not in the vocabulary (vocab_size = "
                             f"{config.vocab_size}): set it to the id of [MASK], where the answer is read")
        self.config = config
        self.visual_bert = VisualBertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.cls = nn.Linear(config.hidden_size, config.num_answers)
        init_bert_weights(self.cls, config.initializer_range)

    def answer_positions(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """(B,) index of each row's [MASK]: the number of real text tokens minus 2 ([MASK] then [SEP]).

        The original reads that index whatever it holds; a question without ``? [MASK]``, or a mask
        with a hole, would give a wrong answer silently. Here both raise.

        Args:
            input_ids: (B, T) token ids. attention_mask: (B, T), 1s then 0s; None = every token real.

        Raises:
            ValueError: if ``attention_mask`` holds values other than 0 and 1, or a 1 after a 0 (a
                hole: the count would miss the [MASK]); if a row has fewer than 2 real tokens; if the
                token at a row's answer position is not ``config.mask_token_id``.
        """
        B, T = input_ids.shape
        if attention_mask is None:
            n = torch.full((B,), T, dtype=torch.long, device=input_ids.device)
        else:
            if bool(((attention_mask != 0) & (attention_mask != 1)).any()):
                raise ValueError("attention_mask must hold 1 (real token) and 0 (padding) only")
            keep = attention_mask != 0  # (B, T)
            holes = keep[:, 1:] & ~keep[:, :-1]  # (B, T-1): a real token after padding
            if bool(holes.any()):
                row = int(torch.nonzero(holes)[0, 0])
                raise ValueError(f"attention_mask row {row} is {attention_mask[row].long().tolist()}: it must be 1s followed "
                                 "by 0s, since the answer is read at attention_mask.sum - 2")
            n = keep.long().sum(1)  # (B,)
        if bool((n < 2).any()):
            raise ValueError("each question needs at least 2 real tokens: '... [MASK] [SEP]'")
        positions = n - 2  # (B,)
        found = input_ids[torch.arange(B, device=input_ids.device), positions]  # (B,)
        wrong = found != self.config.mask_token_id
        if bool(wrong.any()):
            row = int(torch.nonzero(wrong)[0])
            raise ValueError(f"row {row}: the token at the answer position attention_mask.sum - 2 = {int(positions[row])} "
                             f"is id {int(found[row])}, not [MASK] (mask_token_id = {self.config.mask_token_id}); "
                             "the question must end with '? [MASK] [SEP]' before its padding")
        return positions

    def forward(
        self,
        input_ids: Tensor,
        visual_feats: Tensor | None = None,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        visual_token_type_ids: Tensor | None = None,
        *,
        soft_scores: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> VLOutput:
        """Answer scores from the [MASK] token.

        Args:
            input_ids … visual_token_type_ids: as in :meth:`VisualBertModel.forward`; the text must
                end with ``[MASK] [SEP]`` before its padding.
            soft_scores: (B, A) VQA soft scores in [0, 1]; gives ``losses["vqa"]``.

        Returns:
            :class:`VLOutput`: ``logits["vqa"]`` (B, A) raw answer scores (HF returns
            log-probabilities when labels are given), ``losses["vqa"]`` (:func:`vqa_kl_loss`) with
            ``soft_scores``, ``encoder`` the :class:`VisualBertOutput`.

        Raises:
            ValueError: see :meth:`VisualBertModel.check_inputs` and :meth:`answer_positions`;
                ``soft_scores`` not float (B, A) in [0, 1].
        """
        B, _, _ = self.visual_bert.check_inputs(input_ids, visual_feats, attention_mask, visual_attention_mask,
                                                token_type_ids, visual_token_type_ids)
        positions = self.answer_positions(input_ids, attention_mask)  # (B,)
        if soft_scores is not None:
            check_soft_scores(soft_scores, (B, self.config.num_answers))

        out = self.visual_bert(input_ids, visual_feats, attention_mask, visual_attention_mask, token_type_ids,
                               visual_token_type_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions)
        h = out.last_hidden_state[torch.arange(B, device=input_ids.device), positions]  # (B, D)
        logits = {"vqa": self.cls(self.dropout(h))}  # (B, A)
        losses = {"vqa": vqa_kl_loss(logits["vqa"], soft_scores)} if soft_scores is not None else {}
        return VLOutput(VLOutput.total(losses), losses, logits, encoder=out)


# --------------------------------------------------------------------------------------------------
# NLVR2: both images in one pass
# --------------------------------------------------------------------------------------------------
def pair_regions(features: Tensor, region_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Lay out both images of each pair as one region sequence, as uclanlp's ``nlvr_dataset.py`` does:
    the left image's regions, then the right's, with visual token types 0 and 1.

    The type of a slot is the image it came from, not its position among the real regions: each
    image keeps its own N slots (padding included), so an image with fewer boxes than the other
    never lends a region to it.

    Args:
        features: (P, 2, N, F) per pair, the left and right image's region features.
        region_mask: (P, 2, N), 1 = a real region of that image, 0 = padding.

    Returns:
        ``(visual_feats (P, 2N, F), visual_attention_mask (P, 2N), visual_token_type_ids (P, 2N))``.

    Raises:
        ValueError: if ``features`` is not (P, 2, N, F), ``region_mask`` not (P, 2, N) 0/1, or an image
            has no real region.
    """
    if not isinstance(features, Tensor) or features.ndim != 4 or features.shape[1] != 2:
        raise ValueError(f"features must be (P, 2, N, F): per pair the left and right image's regions, got {describe_shape(features)}")
    P, _, N, _ = features.shape
    if not isinstance(region_mask, Tensor) or tuple(region_mask.shape) != (P, 2, N):
        raise ValueError(f"region_mask must be (P, 2, N) = ({P}, 2, {N}), got {describe_shape(region_mask)}")
    if bool(((region_mask != 0) & (region_mask != 1)).any()):
        raise ValueError("region_mask must hold 1 (real region) and 0 (padding) only")
    empty = (region_mask.sum(-1) == 0).nonzero()
    if len(empty):
        p, side = empty[0].tolist()
        raise ValueError(f"pair {p}'s {'left' if side == 0 else 'right'} image has no real region")
    types = torch.arange(2, device=features.device).view(1, 2, 1).expand(P, 2, N)  # (P, 2, N): 0 left, 1 right
    return features.flatten(1, 2), region_mask.flatten(1, 2), types.flatten(1, 2)  # (P, 2N, F), (P, 2N), (P, 2N)


class VisualBertForNLVR2(nn.Module):
    """VisualBERT for NLVR2 in one pass (Li et al. 2019, section 4.3; uclanlp ``modeling.py``,
    ``training_head_type == "nlvr"``): ``[CLS] statement [SEP]`` followed by both images' regions,
    told apart by their visual token types (:func:`pair_regions`); the pooled [CLS] -> dropout ->
    ``cls`` = Linear(D, 2); cross-entropy. Keys ``visual_bert.*`` and ``cls.{weight,bias}``, as HF's
    ``VisualBertForVisualReasoning``. (MMF's port runs two passes and concatenates; this follows the original.)
    """

    def __init__(self, config: VisualBertConfig):
        super().__init__()
        self.config = config
        self.visual_bert = VisualBertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.cls = nn.Linear(config.hidden_size, 2)
        init_bert_weights(self.cls, config.initializer_range)

    def forward(
        self,
        input_ids: Tensor,
        visual_feats: Tensor,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        visual_token_type_ids: Tensor | None = None,
        *,
        labels: Tensor | None = None,
        output_attentions: bool = False,
    ) -> VLOutput:
        """Is each pair's statement true of its two images?

        Args:
            input_ids: (P, T), one row per pair. visual_feats: (P, 2N, F + 4), both images' regions
                (:func:`pair_regions`). visual_token_type_ids: (P, 2N), 0 for the left image's slots and
                1 for the right's: required, since without it both images would share type 0 and the
                model could not tell them apart. The rest as in :meth:`VisualBertModel.forward`.
            labels: (P,) 0/1, 1 = the statement is true of the pair.

        Returns:
            :class:`VLOutput`: ``logits["nlvr2"]`` (P, 2); with ``labels`` ``losses["nlvr2"]``
            (cross-entropy, batch mean); ``encoder`` the :class:`VisualBertOutput`.

        Raises:
            ValueError: no ``visual_token_type_ids``, or one without both types 0 and 1 in a row; labels
                not (P,) 0/1; the checks of :meth:`VisualBertModel.check_inputs`; all before any compute.
        """
        if visual_token_type_ids is None:
            raise ValueError("NLVR2 in one pass needs visual_token_type_ids (P, 2N): 0 for the left image's regions, "
                             "1 for the right's (pair_regions builds them); without them both images share type 0")
        P, _, _ = self.visual_bert.check_inputs(input_ids, visual_feats, attention_mask, visual_attention_mask,
                                                token_type_ids, visual_token_type_ids)
        one_image = ~((visual_token_type_ids == 0).any(1) & (visual_token_type_ids == 1).any(1))  # (P,)
        if bool(one_image.any()):
            raise ValueError(f"each row needs regions of both images (visual token types 0 and 1); rows "
                             f"{one_image.nonzero().flatten()[:5].tolist()} have one type only")
        check_pair_labels(labels, P)
        out = self.visual_bert(input_ids, visual_feats, attention_mask, visual_attention_mask, token_type_ids,
                               visual_token_type_ids, output_attentions=output_attentions)
        logits = {"nlvr2": self.cls(self.dropout(out.pooler_output))}  # (P, 2)
        losses = {"nlvr2": F.cross_entropy(logits["nlvr2"], labels)} if labels is not None else {}
        return VLOutput(VLOutput.total(losses), losses, logits, encoder=out)
