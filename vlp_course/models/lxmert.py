"""LXMERT (Tan & Bansal 2019, "LXMERT: Learning Cross-Modality Encoder Representations from Transformers").

Two single-modality encoders, then a cross-modality encoder. Read top-down: config; text
embeddings and the object encoder (region feature and box, each Linear + LayerNorm, averaged);
the cross-attention layer whose one set of weights serves both directions; the cross-modality
layer; the encoder (9 language layers, 5 object-relationship layers, 5 cross-modality layers);
the model and pooler; the pretraining heads and their five tasks; the VQA head.

Sources: the paper (section 2, 3.1) and airsplay/lxmert ``src/lxrt/modeling.py``
(``VisualFeatEncoder``, ``BertCrossattLayer``, ``LXRTXLayer``, ``LXRTEncoder``, ``LXRTPretraining``),
``src/pretrain/lxmert_pretrain.py``, ``src/tasks/vqa_model.py``. Parameter
names are HF's ``Lxmert*`` names (= airsplay's with ``lxmert.`` for ``bert.``), so
:mod:`vlp_course.models.convert` maps checkpoints by prefix.

Where transformers differs from the original, this file follows the original:

* **boxes** are normalised **(x1, y1, x2, y2)** = pixel corners / (W, H, W, H) (airsplay
  ``lxmert_data.py``/``vqa_data.py``; author in airsplay/lxmert#26); HF's config docstring says
  "(x, y, width, height)". They are validated (``vlp_course.boxes.validate_xyxy``).
* **VQA fine-tuning loss**: ``BCEWithLogits(mean) x A`` on soft scores (airsplay ``vqa.py``);
  HF's ``LxmertForQuestionAnswering`` uses softmax cross-entropy on one class index
  (``test_vqa_loss_is_original_bce_not_hf_cross_entropy``).
* the visual-loss normaliser is ``1 / 0.15`` (airsplay) where HF rounds it to 6.67.

Shapes: B batch, T tokens, N boxes, D hidden width, F region-feature width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_course.boxes import validate_xyxy
from vlp_course.models.blocks import (
    BertPreTrainingHeads,
    Attention,
    AttentionOutput,
    Intermediate,
    MultiHeadAttention,
    Output,
    Pooler,
    TextEmbeddings,
    TransformerConfig,
    PredictionHeadTransform,
    TransformerLayer,
    VLOutput,
    check_config,
    check_keep_mask,
    check_pair_labels,
    check_pair_rows,
    check_region_features,
    check_labels,
    check_text_inputs,
    describe_shape,
    init_bert_weights,
    pair_logits,
)
from vlp_course.pretraining.losses import (
    LXMERT_VISUAL_LOSS_NORMALIZER,
    itm_loss,
    lxmert_feature_loss,
    lxmert_label_loss,
    mlm_loss,
    qa_ce_loss,
    vqa_bce_loss,
)
from vlp_course.pretraining.matching import IGNORE_INDEX, drop_mismatched_labels

__all__ = [
    "LxmertConfig",
    "LxmertEmbeddings",
    "VisualFeatEncoder",
    "CrossAttentionLayer",
    "LxmertXLayer",
    "LxmertEncoder",
    "LxmertModel",
    "LxmertOutput",
    "VisualObjHead",
    "AnswerHead",
    "LxmertForPreTraining",
    "LxmertForQuestionAnswering",
    "LxmertForNLVR2",
]


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------
@dataclass
class LxmertConfig(TransformerConfig):
    """BERT sizes (shared by all three encoders) plus LXMERT's fields (HF ``LxmertConfig`` names).

    Attributes:
        l_layers, r_layers, x_layers: language, object-relationship and cross-modality layers (9/5/5).
        visual_feat_dim: F, region-feature width (2048). visual_pos_dim: 4 (normalised xyxy boxes).
        num_object_labels, num_attr_labels: detector vocabularies (1600, 400).
        num_qa_labels: answers of the pretraining QA task (9500) or of a VQA head (3129).
        task_mask_lm, task_matched, task_obj_predict, task_qa: which pretraining tasks run.
        visual_obj_loss, visual_attr_loss, visual_feat_loss: which visual sub-losses run.
        visual_loss_normalizer: factor on each visual loss (1/0.15; HF 6.67).
        label_weighting: "confidence" (original: obj/attr CE on every box weighted by the detector's
            confidence) or "mask" (only masked boxes).
        mlm_on_mismatched: whether masked tokens of mismatched pairs count; True as in the
            original (airsplay/lxmert#51).
        num_hidden_layers: unused (kept for BERT config compatibility; set to ``l_layers``).

    Raises:
        ValueError: on bad sizes, ``visual_pos_dim`` other than 4, an unknown ``label_weighting``.
    """

    l_layers: int = 9
    r_layers: int = 5
    x_layers: int = 5
    visual_feat_dim: int = 2048
    visual_pos_dim: int = 4
    num_object_labels: int = 1600
    num_attr_labels: int = 400
    num_qa_labels: int = 9500
    task_mask_lm: bool = True
    task_matched: bool = True
    task_obj_predict: bool = True
    task_qa: bool = True
    visual_obj_loss: bool = True
    visual_attr_loss: bool = True
    visual_feat_loss: bool = True
    visual_loss_normalizer: float = LXMERT_VISUAL_LOSS_NORMALIZER
    label_weighting: str = "confidence"
    mlm_on_mismatched: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self, non_negative=("l_layers", "r_layers", "x_layers"),
                     positive=("visual_feat_dim", "num_object_labels", "num_attr_labels", "num_qa_labels"))
        if self.visual_pos_dim != 4:
            raise ValueError(f"visual_pos_dim must be 4 (normalised x1, y1, x2, y2), got {self.visual_pos_dim!r}")
        if self.label_weighting not in ("confidence", "mask"):
            raise ValueError(f"label_weighting must be 'confidence' or 'mask', got {self.label_weighting!r}")

    @classmethod
    def from_hf(cls, hf_config: Any, **overrides: Any) -> "LxmertConfig":
        """Read a Hugging Face ``LxmertConfig`` (keeps the original 1/0.15 normaliser unless overridden)."""
        names = ("l_layers", "r_layers", "x_layers", "visual_feat_dim", "visual_pos_dim", "num_object_labels",
                 "num_attr_labels", "num_qa_labels", "task_mask_lm", "task_matched", "task_obj_predict", "task_qa",
                 "visual_obj_loss", "visual_attr_loss", "visual_feat_loss")
        extra = {n: getattr(hf_config, n) for n in names}
        extra["num_hidden_layers"] = hf_config.l_layers
        extra.update(overrides)
        return cls.from_bert_config({k: getattr(hf_config, k, None) for k in
                                     ("hidden_size", "num_attention_heads", "intermediate_size", "vocab_size",
                                      "max_position_embeddings", "type_vocab_size", "hidden_dropout_prob",
                                      "attention_probs_dropout_prob", "hidden_act", "initializer_range")},
                                    **extra)


# --------------------------------------------------------------------------------------------------
# Input embeddings
# --------------------------------------------------------------------------------------------------
class LxmertEmbeddings(TextEmbeddings):
    """BERT's text embeddings with ``padding_idx=0`` on all three tables, as in the original.

    (airsplay's ``BertEmbeddings`` sets it on word, position *and* token-type tables, so position 0
    and segment 0 receive no gradient; a quirk kept for faithfulness. Outputs are unaffected.)
    """

    def __init__(self, config: LxmertConfig):
        super().__init__(config)
        D = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, D, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, D, padding_idx=0)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, D, padding_idx=0)


class VisualFeatEncoder(nn.Module):
    """The object encoder: ``(LN(visn_fc(f)) + LN(box_fc(b))) / 2``, then dropout.

    f (B, N, F) region features, b (B, N, 4) normalised boxes; two independent Linear + LayerNorm
    branches averaged (paper 2.1 "Object-Level Image Embeddings"; airsplay ``VisualFeatEncoder``).
    """

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.visn_fc = nn.Linear(config.visual_feat_dim, config.hidden_size)
        self.visn_layer_norm = nn.LayerNorm(config.hidden_size, eps=1e-12)
        self.box_fc = nn.Linear(config.visual_pos_dim, config.hidden_size)
        self.box_layer_norm = nn.LayerNorm(config.hidden_size, eps=1e-12)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, visual_feats: Tensor, boxes: Tensor) -> Tensor:
        """(B, N, F), (B, N, 4) -> (B, N, D)."""
        x = self.visn_layer_norm(self.visn_fc(visual_feats))  # (B, N, D)
        y = self.box_layer_norm(self.box_fc(boxes))  # (B, N, D)
        return self.dropout((x + y) / 2)


# --------------------------------------------------------------------------------------------------
# Cross-modality layer
# --------------------------------------------------------------------------------------------------
class CrossAttentionLayer(nn.Module):
    """Attention from one stream to the other, plus its output block (airsplay ``BertCrossattLayer``).

    Keys ``att.{query,key,value}``, ``output.{dense,LayerNorm}``: queries from the query stream,
    keys/values from the context stream, then ``LN(query_stream + dense(attended))``.
    """

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.att = MultiHeadAttention(config.hidden_size, config.num_attention_heads,
                                      dropout=config.attention_probs_dropout_prob)
        self.output = AttentionOutput(config.hidden_size, config.hidden_size, config.layer_norm_eps,
                                      config.hidden_dropout_prob)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None = None,
                output_attentions: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D) attends to context (B, S, D) with keep mask (B, S) -> ((B, T, D), (B, H, T, S) or None)."""
        attended, weights = self.att(x, context_mask, context, output_attentions)
        return self.output(attended, x), weights


class LxmertXLayer(nn.Module):
    """One cross-modality layer (paper Figure 1 right; airsplay ``LXRTXLayer``).

    1. cross-attention in both directions with the **same** ``visual_attention`` weights:
       language queries over vision, vision queries over language (both from the layer's inputs);
    2. self-attention per stream (``lang_self_att``, ``visn_self_att``);
    3. feed-forward per stream (``lang_inter``/``lang_output``, ``visn_inter``/``visn_output``).
    """

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.visual_attention = CrossAttentionLayer(config)
        self.lang_self_att = Attention(config)
        self.visn_self_att = Attention(config)
        self.lang_inter = Intermediate(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.lang_output = Output(config.intermediate_size, config.hidden_size, config.layer_norm_eps, config.hidden_dropout_prob)
        self.visn_inter = Intermediate(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.visn_output = Output(config.intermediate_size, config.hidden_size, config.layer_norm_eps, config.hidden_dropout_prob)

    def forward(self, lang: Tensor, lang_mask: Tensor | None, visn: Tensor, visn_mask: Tensor | None,
                output_attentions: bool = False) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """lang (B, T, D), keep mask (B, T); visn (B, N, D), keep mask (B, N) ->
        (lang (B, T, D), visn (B, N, D), lang->vision weights (B, H, T, N), vision->lang weights (B, H, N, T))."""
        lang_x, w_lv = self.visual_attention(lang, visn, visn_mask, output_attentions)  # (B, T, D)
        visn_x, w_vl = self.visual_attention(visn, lang, lang_mask, output_attentions)  # (B, N, D)
        lang_x, _ = self.lang_self_att(lang_x, lang_mask)
        visn_x, _ = self.visn_self_att(visn_x, visn_mask)
        lang_out = self.lang_output(self.lang_inter(lang_x), lang_x)
        visn_out = self.visn_output(self.visn_inter(visn_x), visn_x)
        return lang_out, visn_out, w_lv, w_vl


# --------------------------------------------------------------------------------------------------
# Encoder and model
# --------------------------------------------------------------------------------------------------
class LxmertEncoder(nn.Module):
    """Object encoder ``visn_fc``; language layers ``layer.N`` (named so BERT weights load);
    object-relationship layers ``r_layers.N``; cross-modality layers ``x_layers.N``."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.visn_fc = VisualFeatEncoder(config)
        self.layer = nn.ModuleList(TransformerLayer(config) for _ in range(config.l_layers))
        self.x_layers = nn.ModuleList(LxmertXLayer(config) for _ in range(config.x_layers))
        self.r_layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.r_layers))


@dataclass
class LxmertOutput:
    """What :class:`LxmertModel` returns.

    Attributes:
        language_output: (B, T, D), vision_output: (B, N, D) after the last cross-modality layer.
        pooled_output: (B, D), tanh(Linear) of the language [CLS].
        language_hidden_states: text embeddings, then each language layer's and each
            cross-modality layer's language output (1 + l + x tensors) — HF omits the first.
        vision_hidden_states: object-encoder output, then each relationship layer's and each
            cross-modality layer's vision output (1 + r + x) — HF omits the first.
        language_attentions: (B, H, T, T) per language layer; vision_attentions: (B, H, N, N) per
            relationship layer; cross_attentions: (B, H, T, N) language->vision per cross layer
            (HF's ``cross_encoder_attentions``); cross_attentions_vision: (B, H, N, T) vision->language.
    """

    language_output: Tensor
    vision_output: Tensor
    pooled_output: Tensor
    language_hidden_states: tuple[Tensor, ...] | None = None
    vision_hidden_states: tuple[Tensor, ...] | None = None
    language_attentions: tuple[Tensor, ...] | None = None
    vision_attentions: tuple[Tensor, ...] | None = None
    cross_attentions: tuple[Tensor, ...] | None = None
    cross_attentions_vision: tuple[Tensor, ...] | None = None


def _init_lxmert(module: nn.Module, config: LxmertConfig) -> None:
    """BERT init (normal 0.02) everywhere; embedding padding rows stay random as in airsplay."""
    module.apply(lambda m: init_bert_weights(m, config.initializer_range))
    for m in module.modules():
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            nn.init.normal_(m.weight, mean=0.0, std=config.initializer_range)


class LxmertModel(nn.Module):
    """LXMERT's encoder: ``embeddings``, ``encoder`` and ``pooler`` (HF ``LxmertModel`` keys)."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.config = config
        self.embeddings = LxmertEmbeddings(config)
        self.encoder = LxmertEncoder(config)
        self.pooler = Pooler(config.hidden_size)
        _init_lxmert(self, config)

    def check_inputs(self, input_ids: Tensor, visual_feats: Tensor, boxes: Tensor, attention_mask: Tensor | None,
                     visual_attention_mask: Tensor | None, token_type_ids: Tensor | None) -> None:
        """All input checks of :meth:`forward` (before any matrix product); raises ValueError."""
        cfg = self.config
        B, _ = check_text_inputs(cfg, input_ids, token_type_ids, attention_mask)
        if visual_feats is None or boxes is None:
            raise ValueError("LXMERT needs both visual_feats (B, N, F) and boxes (B, N, 4)")
        check_region_features(visual_feats, cfg.visual_feat_dim, B, field_name="visual_feat_dim",
                              dtype=next(self.parameters()).dtype)
        N = visual_feats.shape[1]
        if not isinstance(boxes, Tensor) or tuple(boxes.shape) != (B, N, 4):
            raise ValueError(f"boxes must have shape (B, N, 4) = ({B}, {N}, 4), normalised (x1, y1, x2, y2); got {describe_shape(boxes)}")
        if not boxes.is_floating_point():
            raise ValueError(f"boxes must be floating-point normalised (x1, y1, x2, y2), got {boxes.dtype}")
        validate_xyxy(boxes, normalized=True, name="boxes")
        check_keep_mask(visual_attention_mask, (B, N), "visual_attention_mask")

    def forward(
        self,
        input_ids: Tensor,
        visual_feats: Tensor,
        boxes: Tensor,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> LxmertOutput:
        """Encode a sentence and N boxes.

        Args:
            input_ids: (B, T). visual_feats: (B, N, F). boxes: (B, N, 4) normalised (x1, y1, x2, y2) in [0, 1].
            attention_mask: (B, T) keep mask; all ones when omitted. visual_attention_mask: (B, N);
                no mask when omitted (the original uses none: all 36 boxes real).
            token_type_ids: (B, T), zeros when omitted (transformers#13001).
            output_hidden_states, output_attentions: see :class:`LxmertOutput`.

        Returns:
            :class:`LxmertOutput`.

        Raises:
            ValueError: float, empty (T = 0) or out-of-vocabulary ``input_ids``; a text whose first
                token is padding; features that are not floats of the model's dtype, not finite, or of
                another width than ``visual_feat_dim`` (naming both, transformers#18228); batch sizes
                differing between text, features and boxes; boxes not (B, N, 4) floats, outside
                [0, 1] or with x2 < x1 / y2 < y1 (airsplay/lxmert#26); masks of the wrong shape.
        """
        self.check_inputs(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids)
        return self.encode(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids,
                           output_hidden_states=output_hidden_states, output_attentions=output_attentions)

    def encode(self, input_ids: Tensor, visual_feats: Tensor, boxes: Tensor, attention_mask: Tensor | None = None,
               visual_attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None, *,
               output_hidden_states: bool = False, output_attentions: bool = False) -> LxmertOutput:
        """:meth:`forward` without the input checks (for the task models, which check once, first)."""
        enc = self.encoder
        lang = self.embeddings(input_ids, token_type_ids)  # (B, T, D)
        visn = enc.visn_fc(visual_feats, boxes.to(visual_feats.dtype))  # (B, N, D)
        l_states, v_states = [lang], [visn]
        l_attn, v_attn, x_attn, xv_attn = [], [], [], []
        for layer in enc.layer:  # language encoder
            lang, w = layer(lang, attention_mask, output_attentions)
            l_states.append(lang)
            l_attn.append(w)
        for layer in enc.r_layers:  # object-relationship encoder
            visn, w = layer(visn, visual_attention_mask, output_attentions)
            v_states.append(visn)
            v_attn.append(w)
        for layer in enc.x_layers:  # cross-modality encoder
            lang, visn, w_lv, w_vl = layer(lang, attention_mask, visn, visual_attention_mask, output_attentions)
            l_states.append(lang)
            v_states.append(visn)
            x_attn.append(w_lv)
            xv_attn.append(w_vl)
        hs = output_hidden_states
        at = output_attentions
        return LxmertOutput(
            language_output=lang,
            vision_output=visn,
            pooled_output=self.pooler(lang),
            language_hidden_states=tuple(l_states) if hs else None,
            vision_hidden_states=tuple(v_states) if hs else None,
            language_attentions=tuple(l_attn) if at else None,
            vision_attentions=tuple(v_attn) if at else None,
            cross_attentions=tuple(x_attn) if at else None,
            cross_attentions_vision=tuple(xv_attn) if at else None,
        )


# --------------------------------------------------------------------------------------------------
# Pretraining heads and tasks
# --------------------------------------------------------------------------------------------------
class VisualObjHead(nn.Module):
    """Shared transform, then ``decoder_dict`` {obj: D->1600, attr: D->400, feat: D->F} on each box."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.transform = PredictionHeadTransform(config.hidden_size, config.hidden_act, 1e-12)
        sizes = {"obj": (config.visual_obj_loss, config.num_object_labels),
                 "attr": (config.visual_attr_loss, config.num_attr_labels),
                 "feat": (config.visual_feat_loss, config.visual_feat_dim)}
        self.decoder_dict = nn.ModuleDict({k: nn.Linear(config.hidden_size, n) for k, (on, n) in sizes.items() if on})

    def forward(self, visn: Tensor) -> dict[str, Tensor]:
        """(B, N, D) -> {"obj": (B, N, 1600), "attr": (B, N, 400), "feat": (B, N, F)} (the enabled ones)."""
        h = self.transform(visn)
        return {k: dec(h) for k, dec in self.decoder_dict.items()}


class AnswerHead(nn.Module):
    """``logit_fc`` = Linear(D, 2D) -> GELU -> LayerNorm -> Linear(2D, A) on the pooled vector
    (airsplay ``VQAModel.logit_fc`` and the pretraining ``answer_head``)."""

    def __init__(self, config: LxmertConfig, num_answers: int):
        super().__init__()
        D = config.hidden_size
        self.logit_fc = nn.Sequential(nn.Linear(D, 2 * D), nn.GELU(), nn.LayerNorm(2 * D, eps=1e-12), nn.Linear(2 * D, num_answers))

    def forward(self, pooled: Tensor) -> Tensor:
        """(B, D) -> (B, A)."""
        return self.logit_fc(pooled)


class LxmertForPreTraining(nn.Module):
    """LXMERT with its pretraining heads (paper section 3.1; airsplay ``LXRTPretraining``):

    * ``cls.predictions`` — masked cross-modality language modelling (``"mlm"``);
    * ``cls.seq_relationship`` — cross-modality matching (``"itm"``, class 1 = matched);
    * ``obj_predict_head`` — masked object prediction: RoI-feature regression (``"feat"``) and
      detected-label classification, object and attribute classes (``"obj"``, ``"attr"``);
    * ``answer_head`` — image question answering (``"qa"``), on the sentences that are questions.
    """

    tied_weights = {"cls.predictions.decoder.weight": "lxmert.embeddings.word_embeddings.weight"}

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.config = config
        self.lxmert = LxmertModel(config)
        self.cls = BertPreTrainingHeads(config, self.lxmert.embeddings.word_embeddings)
        self.obj_predict_head = VisualObjHead(config) if config.task_obj_predict else None
        self.answer_head = AnswerHead(config, config.num_qa_labels) if config.task_qa else None
        for part in (self.cls.predictions.transform, self.cls.seq_relationship, self.obj_predict_head, self.answer_head):
            if part is not None:
                part.apply(lambda m: init_bert_weights(m, config.initializer_range))
        with torch.no_grad():
            self.cls.predictions.bias.zero_()

    def check_inputs(self, input_ids: Tensor, visual_feats: Tensor, boxes: Tensor, attention_mask: Tensor | None,
                     visual_attention_mask: Tensor | None, token_type_ids: Tensor | None, *,
                     mlm_labels: Tensor | None = None, is_matched: Tensor | None = None,
                     obj_labels: Tensor | None = None, obj_confidence: Tensor | None = None,
                     attr_labels: Tensor | None = None, attr_confidence: Tensor | None = None,
                     feat_targets: Tensor | None = None, masked_regions: Tensor | None = None,
                     qa_labels: Tensor | None = None, mlm_scores: str = "all") -> None:
        """Every check of :meth:`forward`, inputs and labels, before any matrix product; raises ValueError."""
        cfg = self.config
        if mlm_scores not in ("all", "masked"):
            raise ValueError(f"mlm_scores must be 'all' or 'masked', got {mlm_scores!r}")
        if mlm_scores == "masked" and (mlm_labels is None or not cfg.task_mask_lm):
            raise ValueError("mlm_scores='masked' scores the labelled positions: it needs mlm_labels and "
                             "config.task_mask_lm = True")
        self.lxmert.check_inputs(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids)
        B, T = input_ids.shape
        N, F = visual_feats.shape[1], visual_feats.shape[2]
        if mlm_labels is not None and (not isinstance(mlm_labels, Tensor) or tuple(mlm_labels.shape) != (B, T)):
            raise ValueError(f"mlm_labels must have shape (B, T) = ({B}, {T}), got {describe_shape(mlm_labels)}")
        check_labels(mlm_labels, (B, T), "mlm_labels")
        check_labels(is_matched, (B,), "is_matched")
        check_labels(obj_labels, (B, N), "obj_labels")
        check_labels(attr_labels, (B, N), "attr_labels")
        check_labels(qa_labels, (B,), "qa_labels")
        for name, conf in (("obj_confidence", obj_confidence), ("attr_confidence", attr_confidence)):
            if conf is not None and (not isinstance(conf, Tensor) or tuple(conf.shape) != (B, N)
                                     or not conf.is_floating_point()):
                raise ValueError(f"{name} must be a float (B, N) = ({B}, {N}) tensor in [0, 1], "
                                 f"got {describe_shape(conf)}")
        if masked_regions is not None and (not isinstance(masked_regions, Tensor) or tuple(masked_regions.shape) != (B, N)
                                           or masked_regions.dtype != torch.bool):
            got = f"{describe_shape(masked_regions)} {getattr(masked_regions, 'dtype', '')}".strip()
            raise ValueError(f"masked_regions must be a bool (B, N) = ({B}, {N}) tensor, True = masked region; got {got}")
        if feat_targets is not None:
            if not isinstance(feat_targets, Tensor) or tuple(feat_targets.shape) != (B, N, F):
                raise ValueError(f"feat_targets must have the shape of the features (B, N, F) = ({B}, {N}, {F}), "
                                 f"got {describe_shape(feat_targets)}")
            if masked_regions is None:
                raise ValueError("feat_targets need masked_regions (B, N) bool, True = masked region")
        masked_only = cfg.label_weighting == "mask"
        for key, labels, conf in (("obj", obj_labels, obj_confidence), ("attr", attr_labels, attr_confidence)):
            if labels is None:
                continue
            if conf is None and not masked_only:
                raise ValueError(f"{key}_labels need {key}_confidence (B, N) with label_weighting='confidence'")
            if masked_only and masked_regions is None:
                raise ValueError(f"{key}_labels with label_weighting='mask' need masked_regions (B, N) bool")

    def forward(
        self,
        input_ids: Tensor,
        visual_feats: Tensor,
        boxes: Tensor,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        mlm_labels: Tensor | None = None,
        is_matched: Tensor | None = None,
        obj_labels: Tensor | None = None,
        obj_confidence: Tensor | None = None,
        attr_labels: Tensor | None = None,
        attr_confidence: Tensor | None = None,
        feat_targets: Tensor | None = None,
        masked_regions: Tensor | None = None,
        qa_labels: Tensor | None = None,
        mlm_scores: str = "all",
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> VLOutput:
        """Run the encoder and every enabled head; each task's loss when its labels are given.

        Args:
            input_ids … token_type_ids: as in :meth:`LxmertModel.forward` (``visual_feats`` are the
                *masked* features when pretraining).
            mlm_labels: (B, T) original ids at masked tokens, -100 elsewhere. Counted on mismatched
                pairs too unless ``config.mlm_on_mismatched`` is False (the original counts them,
                airsplay/lxmert#51).
            is_matched: (B,) long, 1 = the sentence belongs to the image.
            obj_labels, attr_labels: (B, N) long detector labels (-100 none); obj_confidence,
                attr_confidence: (B, N) float detector confidences in [0, 1], the weights with
                ``label_weighting="confidence"`` (the original); with "mask", ``masked_regions`` weights.
            feat_targets: (B, N, F) the *unmasked* features; masked_regions: (B, N) bool, True = a
                region chosen by the masking (zeroed, swapped or kept), the regression's targets.
            qa_labels: (B,) long answer index or -100 (a sentence that is not a question, or a
                question without an answer in the table). Ignored on mismatched pairs, as the
                original's ``convert_example_to_features`` sets -1 there (``lxmert_pretrain.py``).
            mlm_scores: ``"all"``: ``logits["mlm"]`` is (B, T, vocab), as airsplay and transformers
                compute it; ``"masked"``: (M, vocab) at the M labelled tokens only, as original BERT
                does (:meth:`~vlp_course.models.blocks.LMPredictionHead.at_labels`). Same loss and gradients.

        Returns:
            :class:`~vlp_course.models.blocks.VLOutput`: ``logits`` ``"mlm"`` (B, T, vocab) or (M, vocab),
            ``"itm"`` (B, 2), ``"obj"`` (B, N, num_object_labels), ``"attr"`` (B, N, num_attr_labels),
            ``"feat"`` (B, N, F), ``"qa"`` (B, num_qa_labels) (the enabled heads); ``losses`` the same
            keys for the tasks with labels; ``encoder`` the :class:`LxmertOutput`.

        Raises:
            ValueError: see :meth:`LxmertModel.forward` and :meth:`check_inputs`: labels of the wrong
                shape or dtype; a visual task's labels without their confidence or ``masked_regions``;
                ``masked_regions`` not bool; ``mlm_scores`` not "all"/"masked", or "masked" without
                ``mlm_labels`` or with ``config.task_mask_lm`` off.
        """
        cfg = self.config
        self.check_inputs(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids,
                          mlm_labels=mlm_labels, is_matched=is_matched, obj_labels=obj_labels,
                          obj_confidence=obj_confidence, attr_labels=attr_labels, attr_confidence=attr_confidence,
                          feat_targets=feat_targets, masked_regions=masked_regions, qa_labels=qa_labels,
                          mlm_scores=mlm_scores)
        out = self.lxmert.encode(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids,
                                 output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits: dict[str, Tensor] = {"itm": self.cls.seq_relationship(out.pooled_output)}  # (B, 2)
        if mlm_scores == "all":
            logits["mlm"] = self.cls.predictions(out.language_output)  # (B, T, vocab)
        if self.obj_predict_head is not None:
            logits.update(self.obj_predict_head(out.vision_output))  # obj (B, N, C_obj), attr (B, N, C_attr), feat (B, N, F)
        if self.answer_head is not None:
            logits["qa"] = self.answer_head(out.pooled_output)  # (B, num_qa_labels)

        losses: dict[str, Tensor] = {}
        if mlm_labels is not None and cfg.task_mask_lm:
            labels = mlm_labels.long()
            if not cfg.mlm_on_mismatched and is_matched is not None:
                labels = drop_mismatched_labels(labels, is_matched.long())
            if mlm_scores == "masked":
                logits["mlm"], labels = self.cls.predictions.at_labels(out.language_output, labels)  # (M, vocab), (M,)
            losses["mlm"] = mlm_loss(logits["mlm"], labels)
        if is_matched is not None and cfg.task_matched:
            losses["itm"] = itm_loss(logits["itm"], is_matched.long())
        norm = cfg.visual_loss_normalizer
        masked_only = cfg.label_weighting == "mask"
        for key, labels, conf in (("obj", obj_labels, obj_confidence), ("attr", attr_labels, attr_confidence)):
            if labels is None or key not in logits:
                continue
            weight = torch.ones_like(labels, dtype=torch.float) if conf is None else conf
            losses[key] = lxmert_label_loss(logits[key], labels.long(), weight, masked_regions, masked_only=masked_only,
                                            normalizer=norm)
        if feat_targets is not None and "feat" in logits:
            losses["feat"] = lxmert_feature_loss(logits["feat"], feat_targets, masked_regions, normalizer=norm)
        if qa_labels is not None and "qa" in logits:
            labels = qa_labels.long()
            if is_matched is not None:  # a question shown with another image has no answer (lxmert_pretrain.py)
                labels = torch.where(is_matched.long() == 1, labels, torch.full_like(labels, IGNORE_INDEX))
            losses["qa"] = qa_ce_loss(logits["qa"], labels)
        return VLOutput(VLOutput.total(losses), losses, logits, out)


# --------------------------------------------------------------------------------------------------
# VQA
# --------------------------------------------------------------------------------------------------
class LxmertForQuestionAnswering(nn.Module):
    """LXMERT for VQA: ``lxmert.*`` + ``answer_head.logit_fc`` on the pooled output (HF
    ``LxmertForQuestionAnswering`` keys; airsplay ``src/tasks/vqa_model.py`` ``VQAModel``).
    ``config.num_qa_labels`` answers.

    Loss: the original's ``BCEWithLogits(mean) x A`` on soft scores (:func:`vqa_bce_loss`,
    airsplay ``src/tasks/vqa.py``), not HF's cross-entropy on one class index.
    """

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.config = config
        self.lxmert = LxmertModel(config)
        self.answer_head = AnswerHead(config, config.num_qa_labels)
        self.answer_head.apply(lambda m: init_bert_weights(m, config.initializer_range))

    def forward(self, input_ids: Tensor, visual_feats: Tensor, boxes: Tensor, attention_mask: Tensor | None = None,
                visual_attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None, *,
                soft_scores: Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> VLOutput:
        """Answer scores from the pooled [CLS].

        Args:
            input_ids … token_type_ids: as in :meth:`LxmertModel.forward`.
            soft_scores: (B, A) float in [0, 1], the VQA soft scores; they give ``losses["vqa"]``.

        Returns:
            :class:`~vlp_course.models.blocks.VLOutput` with ``logits["vqa"]`` (B, A), ``losses["vqa"]``
            when ``soft_scores`` are given, ``encoder`` the :class:`LxmertOutput`.

        Raises:
            ValueError: see :meth:`LxmertModel.forward`; ``soft_scores`` not (B, A) float in [0, 1].
        """
        self.lxmert.check_inputs(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids)
        B, A = input_ids.shape[0], self.config.num_qa_labels
        if soft_scores is not None and (not isinstance(soft_scores, Tensor) or tuple(soft_scores.shape) != (B, A)
                                        or not soft_scores.is_floating_point()):
            raise ValueError(f"soft_scores must be a float (B, A) = ({B}, {A}) tensor in [0, 1], "
                             f"got {describe_shape(soft_scores)}")
        out = self.lxmert.encode(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids,
                                 output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits = self.answer_head(out.pooled_output)  # (B, A)
        losses = {"vqa": vqa_bce_loss(logits, soft_scores)} if soft_scores is not None else {}
        return VLOutput(VLOutput.total(losses), losses, {"vqa": logits}, out)


class LxmertForNLVR2(nn.Module):
    """LXMERT for NLVR2 (Tan and Bansal 2019, section 5; airsplay ``src/tasks/nlvr2_model.py``
    ``NLVR2Model``): each of a pair's two images is encoded with the pair's statement (rows
    ``s0, s0, s1, s1, ...``, :func:`~vlp_course.models.blocks.repeat_for_pairs`); the two pooled
    vectors are concatenated, (2P, D) -> (P, 2D), and ``logit_fc`` = Linear(2D, 2D) -> GELU ->
    LayerNorm -> Linear(2D, 2) classifies the pair. Cross-entropy on the 0/1 label (``nlvr2.py``).
    """

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.config = config
        self.lxmert = LxmertModel(config)
        D = config.hidden_size
        self.logit_fc = nn.Sequential(nn.Linear(2 * D, 2 * D), nn.GELU(), nn.LayerNorm(2 * D, eps=1e-12), nn.Linear(2 * D, 2))
        self.logit_fc.apply(lambda m: init_bert_weights(m, config.initializer_range))

    def forward(self, input_ids: Tensor, visual_feats: Tensor, boxes: Tensor, attention_mask: Tensor | None = None,
                visual_attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None, *,
                labels: Tensor | None = None, output_attentions: bool = False) -> VLOutput:
        """Is each pair's statement true of its two images?

        Args:
            input_ids: (2P, T), pair p's statement in rows 2p and 2p+1.
            visual_feats, boxes: (2P, N, F), (2P, N, 4): pair p's left image in row 2p, right in 2p+1.
            attention_mask … token_type_ids: as in :meth:`LxmertModel.forward`, one row per image.
            labels: (P,) 0/1, 1 = the statement is true of the pair.

        Returns:
            :class:`~vlp_course.models.blocks.VLOutput` with ``logits["nlvr2"]`` (P, 2), and
            ``losses["nlvr2"]`` (cross-entropy, batch mean) when ``labels`` are given.

        Raises:
            ValueError: an odd row count, a pair whose two rows hold different statements, labels not
                (P,) 0/1, or the checks of :meth:`LxmertModel.forward`; all before any compute.
        """
        P = check_pair_rows(input_ids)
        check_pair_labels(labels, P)
        self.lxmert.check_inputs(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids)
        out = self.lxmert.encode(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids,
                                 output_attentions=output_attentions)
        logits = pair_logits(self.logit_fc, out.pooled_output, P)  # (2P, D) -> (P, 2D) -> (P, 2)
        losses = {"nlvr2": F.cross_entropy(logits, labels)} if labels is not None else {}
        return VLOutput(VLOutput.total(losses), losses, {"nlvr2": logits}, out)
