"""ViLBERT (Lu et al., NeurIPS 2019): two streams joined by co-attentional transformer layers.

Read top-down: the config and its layer schedule, the visual embedding, the co-attention layer
(Co-TRM), the two-stream encoder, the poolers, the model, the pretraining heads and losses, the
downstream heads (VQA, NLVR2 pairs) and the region helpers (5-d location, global image token). The
checkpoint key maps are in :mod:`vlp_course.models.convert` (``vilbert_*``).

Faithful to ``vilbert/vilbert.py`` of facebookresearch/vilbert-multi-task (same design as the
NeurIPS-19 code in jiasenlu/vilbert_beta; paper section 3). Written in our own words
from those files, with the course's transformer blocks (:mod:`vlp_course.models.blocks`) for the
BERT-named parts.

* **Text stream**: BERT (``bert.embeddings.*``, ``bert.encoder.layer.N.*``). The 12-in-1 model's
  task token (``task_specific_tokens``) is inserted after [CLS] *before* the embeddings' LayerNorm
  and dropout, as in vilbert-multi-task ``BertEmbeddings.forward``.
* **Visual stream**: region feature (``v_feature_size``, 2048) -> ``image_embeddings`` plus the 5-d
  location ``[x1/W, y1/H, x2/W, y2/H, area/(W*H)]`` -> ``image_location_embeddings``, summed,
  LayerNorm, dropout; then BERT layers at width ``v_hidden_size`` (``bert.encoder.v_layer.N.*``).
  The first visual token is the *global image token* (mean feature, location ``[0, 0, 1, 1, 1]``),
  added by the data loader in the original; here by :func:`prepare_regions`. In pretraining it is
  computed from the features *after* region masking (``concept_cap_dataset.py``: ``random_region``
  then ``g_image_feat``); computed before, it would give the masked features away.
* **Co-TRM** (``bert.encoder.c_layer.N``): visual queries attend over text keys/values and text
  queries over visual keys/values, each followed by its residual + LayerNorm and its own
  feed-forward block. No self-attention inside; the ordinary layers around it provide that.
  Placement: :func:`layer_schedule` (the original's interleaving rule).
* **Poolers**: first token of each stream -> Linear -> **ReLU** (not tanh), to ``bi_hidden_size``;
  fused by element-wise product.
* **Pretraining heads** (``cls.*``): masked LM (decoder tied to the word embeddings), masked
  region prediction (KL divergence to the detector's class distribution), multimodal alignment.

Label polarity: the original alignment head's class 1 means "random caption" (``is_next`` of
``BertPreprocessBatch.random_cap`` in ``concept_cap_dataset.py``). This
module speaks ``is_matched`` (class 1 = the caption belongs to the image) everywhere; the two rows
of ``cls.bi_seq_relationship`` are swapped by :func:`vlp_course.models.convert.vilbert_from_original` /
:func:`~vlp_course.models.convert.vilbert_to_original`, i.e. at the checkpoint boundary. Load original
files only through those converters (or :func:`vlp_course.models.convert.load_original_checkpoint`).

Inputs follow the course's calling convention (docs/conventions.md): ``input_ids``, ``visual_feats``,
``boxes`` (ViLBERT's 5-d location), ``attention_mask``, ``visual_attention_mask``, ``token_type_ids``;
labels ``mlm_labels``, ``is_matched``, ``masked_regions``, ``region_targets``, ``soft_scores``; the
pretraining and task models return :class:`~vlp_course.models.blocks.VLOutput` (tasks ``mlm``,
``itm``, ``mrm``, ``vqa``).

Masks are keep masks (1 = real token/region). The original adds -10000 for padding; the blocks add
``finfo.min`` instead, which is the same after the softmax and safe in fp16.

Shapes: B batch, T text tokens, N visual tokens (global token + regions), D text width,
Dv visual width, Db co-attention width, F region-feature width, C detector classes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_course.boxes import validate_xyxy, vilbert_location
from vlp_course.models.blocks import (
    check_pair_labels,
    check_pair_rows,
    pair_logits,
    repeat_for_pairs,
    Intermediate,
    LMPredictionHead,
    Output,
    PredictionHeadTransform,
    TextEmbeddings,
    TransformerConfig,
    TransformerLayer,
    VLOutput,
    additive_attention_mask,
    check_config,
    check_keep_mask,
    check_labels,
    check_region_features,
    check_text_inputs,
    describe_shape,
    init_bert_weights,
)
from vlp_course.pretraining.losses import IGNORE_INDEX, itm_loss, mlm_loss, region_kl_loss, vqa_bce_loss
from vlp_course.pretraining.matching import drop_mismatched_labels

__all__ = [
    "ViLBERTConfig",
    "layer_schedule",
    "ImageEmbeddings",
    "BiAttention",
    "BiOutput",
    "ConnectionLayer",
    "ViLBERTEncoder",
    "ViLBERTModel",
    "ViLBERTForPreTraining",
    "ViLBERTForVLTasks",
    "prepare_regions",
    "global_image_token",
]


# --------------------------------------------------------------------------------------------------
# Config and the layer schedule
# --------------------------------------------------------------------------------------------------
@dataclass
class ViLBERTConfig(TransformerConfig):
    """ViLBERT's sizes: the text stream's BERT sizes (the fields of :class:`TransformerConfig`) plus
    the visual stream's (``v_*``) and the co-attention's (``bi_*``). Field names are those of
    ``config/bert_base_6layer_6conect.json``.

    Defaults are that file (the 6-layer visual stream / 6 co-attention layers pretraining model):
    text BERT-base (12 layers, 768, 12 heads, 3072), visual stream 6 layers at 1024 with 8 heads and
    FFN 1024, co-attention 1024 with 8 heads, ``v_biattention_id`` [0..5], ``t_biattention_id``
    [6..11], 1601 detector classes. :meth:`eight_layer` gives the 8layer_8conect variant.

    ``masked_loss_on_mismatched`` chooses between the two original recipes:

    * False (default): vilbert-multi-task ``train_concap.py --objective 1`` (the README's pretraining
      command): ``BertForMultiModalPreTraining.forward`` ignores the masked-word and masked-region
      targets of pairs whose caption is not the image's (``is_next`` = "not matched");
    * True: the NeurIPS-19 code (jiasenlu/vilbert_beta ``BertForMultiModalPreTraining``, and
      ``--objective 0``): the masked losses count on every pair, matched or not.

    ``bi_intermediate_size`` is in the json but unused by the original code (kept for round trips).

    The Co-TRM schedule must be one the original accepts: both lists of the same length,
    non-decreasing, and ``max(t_biattention_id) < num_hidden_layers`` (a Co-TRM after the last text
    layer does not exist in the original), ``max(v_biattention_id) <= v_num_hidden_layers``.

    Raises:
        ValueError: if a size is not positive, a width is not divisible by its head count, a dropout
            lies outside [0, 1), the two biattention lists differ in length, are not non-decreasing,
            or point past their stream's layer count (``max(t_biattention_id)`` must be below
            ``num_hidden_layers``), or the fusion method is unknown.
    """

    v_feature_size: int = 2048
    v_target_size: int = 1601
    v_hidden_size: int = 1024
    v_num_hidden_layers: int = 6
    v_num_attention_heads: int = 8
    v_intermediate_size: int = 1024
    v_hidden_act: str = "gelu"
    v_hidden_dropout_prob: float = 0.1
    v_attention_probs_dropout_prob: float = 0.1
    bi_hidden_size: int = 1024
    bi_num_attention_heads: int = 8
    bi_intermediate_size: int = 1024
    bi_attention_type: int = 1
    v_biattention_id: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5])
    t_biattention_id: list[int] = field(default_factory=lambda: [6, 7, 8, 9, 10, 11])
    fusion_method: str = "mul"
    fused_dropout_prob: float = 0.1
    img_weight: float = 1.0
    masked_loss_on_mismatched: bool = False
    task_specific_tokens: bool = False
    num_task_tokens: int = 20
    num_labels: int = 3129
    num_labels_gqa: int = 1533

    def __post_init__(self) -> None:
        super().__post_init__()  # the text stream's BERT sizes
        self.v_biattention_id = [int(i) for i in self.v_biattention_id]
        self.t_biattention_id = [int(i) for i in self.t_biattention_id]
        check_config(
            self,
            positive=("v_feature_size", "v_target_size", "v_hidden_size", "v_num_attention_heads",
                      "v_intermediate_size", "bi_hidden_size", "bi_num_attention_heads"),
            non_negative=("v_num_hidden_layers",),
            divisible=(("v_hidden_size", "v_num_attention_heads"), ("bi_hidden_size", "bi_num_attention_heads")),
            probabilities=("v_hidden_dropout_prob", "v_attention_probs_dropout_prob", "fused_dropout_prob"),
            activations=("v_hidden_act",),
        )
        v, t = self.v_biattention_id, self.t_biattention_id
        if len(v) != len(t):
            raise ValueError(f"v_biattention_id and t_biattention_id must have the same length, got {v} and {t}")
        for name, ids, n in (("v_biattention_id", v, self.v_num_hidden_layers), ("t_biattention_id", t, self.num_hidden_layers)):
            if any(b < a for a, b in zip(ids, ids[1:])):
                raise ValueError(f"{name} must be non-decreasing, got {ids}")
            if ids and (ids[0] < 0 or ids[-1] > n):
                raise ValueError(f"{name} entries must lie in [0, {n}] (the stream's layer count), got {ids}")
        if t and max(t) >= self.num_hidden_layers:
            raise ValueError(f"max(t_biattention_id) = {max(t)} must be < num_hidden_layers = {self.num_hidden_layers}: "
                             f"the original's config puts every Co-TRM before a text layer (got t_biattention_id = {t})")
        if self.fusion_method not in ("mul", "sum"):
            raise ValueError(f"fusion_method must be 'mul' or 'sum', got {self.fusion_method!r}")

    @classmethod
    def eight_layer(cls, **overrides: Any) -> "ViLBERTConfig":
        """``bert_base_8layer_8conect.json``: 8 visual layers, v ids [0..7], t ids [4..11]."""
        kw = dict(v_num_hidden_layers=8, v_biattention_id=list(range(8)), t_biattention_id=list(range(4, 12)))
        kw.update(overrides)
        return cls(**kw)

    def text_config(self) -> TransformerConfig:
        """The text stream's :class:`TransformerConfig` (BERT)."""
        return self.transformer_config()

    def visual_config(self) -> TransformerConfig:
        """The visual stream's :class:`TransformerConfig` (``BertImageLayer``: width ``v_hidden_size``)."""
        return TransformerConfig(
            hidden_size=self.v_hidden_size, num_attention_heads=self.v_num_attention_heads,
            num_hidden_layers=self.v_num_hidden_layers, intermediate_size=self.v_intermediate_size,
            vocab_size=1, max_position_embeddings=1, type_vocab_size=1,
            hidden_dropout_prob=self.v_hidden_dropout_prob,
            attention_probs_dropout_prob=self.v_attention_probs_dropout_prob, layer_norm_eps=self.layer_norm_eps,
            hidden_act=self.v_hidden_act, initializer_range=self.initializer_range,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def layer_schedule(config: ViLBERTConfig) -> list[tuple[str, int]]:
    """The order in which the encoder runs its layers: ``("t", i)`` text layer i, ``("v", j)``
    visual layer j, ``("c", k)`` co-attention layer k.

    The original's rule (``BertEncoder.forward``): for the k-th Co-TRM, run the visual layers from
    where the previous step stopped up to ``v_biattention_id[k] - 1``, the text layers up to
    ``t_biattention_id[k] - 1``, then Co-TRM k; after the last Co-TRM, the remaining layers of each
    stream. 6/6: text 0-5, C0, (V0, T6), C1, ..., (V4, T10), C5, (V5, T11).
    """
    out: list[tuple[str, int]] = []
    v_start = t_start = 0
    for k, (v_end, t_end) in enumerate(zip(config.v_biattention_id, config.t_biattention_id)):
        out += [("v", j) for j in range(v_start, v_end)]
        out += [("t", i) for i in range(t_start, t_end)]
        out.append(("c", k))
        v_start, t_start = v_end, t_end
    out += [("v", j) for j in range(v_start, config.v_num_hidden_layers)]
    out += [("t", i) for i in range(t_start, config.num_hidden_layers)]
    return out


# --------------------------------------------------------------------------------------------------
# Visual embedding
# --------------------------------------------------------------------------------------------------
class ImageEmbeddings(nn.Module):
    """``BertImageEmbeddings``: Linear(F -> Dv) on the feature + Linear(5 -> Dv) on the location,
    summed, LayerNorm, dropout. No position or type embedding on the visual side."""

    def __init__(self, config: ViLBERTConfig):
        super().__init__()
        self.config = config
        self.image_embeddings = nn.Linear(config.v_feature_size, config.v_hidden_size)
        self.image_location_embeddings = nn.Linear(5, config.v_hidden_size)
        self.LayerNorm = nn.LayerNorm(config.v_hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.v_hidden_dropout_prob)

    def forward(self, features: Tensor, locations: Tensor) -> Tensor:
        """features (B, N, F), locations (B, N, 5) -> (B, N, Dv). Inputs are checked by the model."""
        x = self.image_embeddings(features) + self.image_location_embeddings(locations)  # (B, N, Dv)
        return self.dropout(self.LayerNorm(x))


# --------------------------------------------------------------------------------------------------
# Co-attention (Co-TRM)
# --------------------------------------------------------------------------------------------------
class BiAttention(nn.Module):
    """``BertBiAttention``: the two cross-attentions of a Co-TRM.

    Each stream is projected once to queries, keys and values of width Db (``query1/key1/value1``
    from the visual stream, ``query2/key2/value2`` from the text stream). Visual queries (query1)
    attend over text keys/values (key2/value2) with the text padding mask; text queries (query2)
    attend over visual keys/values (key1/value1) with the visual padding mask.
    """

    def __init__(self, config: ViLBERTConfig):
        super().__init__()
        self.num_heads = config.bi_num_attention_heads
        self.head_size = config.bi_hidden_size // config.bi_num_attention_heads
        self.all_head_size = config.bi_hidden_size
        self.query1 = nn.Linear(config.v_hidden_size, config.bi_hidden_size)
        self.key1 = nn.Linear(config.v_hidden_size, config.bi_hidden_size)
        self.value1 = nn.Linear(config.v_hidden_size, config.bi_hidden_size)
        self.dropout1 = nn.Dropout(config.v_attention_probs_dropout_prob)
        self.query2 = nn.Linear(config.hidden_size, config.bi_hidden_size)
        self.key2 = nn.Linear(config.hidden_size, config.bi_hidden_size)
        self.value2 = nn.Linear(config.hidden_size, config.bi_hidden_size)
        self.dropout2 = nn.Dropout(config.attention_probs_dropout_prob)

    def _heads(self, x: Tensor) -> Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_size).transpose(1, 2)  # (B, H, L, Db/H)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, dropout: nn.Dropout) -> tuple[Tensor, Tensor]:
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)  # (B, H, Lq, Lk)
        if keep is not None:
            scores = scores + additive_attention_mask(keep, scores.dtype)  # (B, 1, 1, Lk)
        probs = scores.softmax(-1)  # (B, H, Lq, Lk)
        ctx = dropout(probs) @ v  # (B, H, Lq, Db/H)
        B, _, Lq, _ = ctx.shape
        return ctx.transpose(1, 2).reshape(B, Lq, self.all_head_size), probs  # (B, Lq, Db)

    def forward(self, visual: Tensor, visual_mask: Tensor | None, text: Tensor, text_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """visual (B, N, Dv), text (B, T, D), keep masks (B, N) / (B, T) ->
        ``(visual_ctx (B, N, Db), text_ctx (B, T, Db), v2t_probs (B, H, N, T), t2v_probs (B, H, T, N))``."""
        q1, k1, v1 = (self._heads(m(visual)) for m in (self.query1, self.key1, self.value1))  # (B, H, N, Db/H)
        q2, k2, v2 = (self._heads(m(text)) for m in (self.query2, self.key2, self.value2))  # (B, H, T, Db/H)
        visual_ctx, v2t = self._attend(q1, k2, v2, text_mask, self.dropout2)  # regions look at words
        text_ctx, t2v = self._attend(q2, k1, v1, visual_mask, self.dropout1)  # words look at regions
        return visual_ctx, text_ctx, v2t, t2v


class BiOutput(nn.Module):
    """``BertBiOutput``: each stream's attended context -> dense -> dropout -> + residual -> LayerNorm.

    ``dense1``/``LayerNorm1`` map into the visual width, ``dense2``/``LayerNorm2`` into the text
    width. ``q_dense1``/``q_dense2`` exist in every original checkpoint but the original forward never
    uses them; they are kept (and left unused) so checkpoints load strictly.
    """

    def __init__(self, config: ViLBERTConfig):
        super().__init__()
        self.dense1 = nn.Linear(config.bi_hidden_size, config.v_hidden_size)
        self.LayerNorm1 = nn.LayerNorm(config.v_hidden_size, eps=config.layer_norm_eps)
        self.dropout1 = nn.Dropout(config.v_hidden_dropout_prob)
        self.q_dense1 = nn.Linear(config.bi_hidden_size, config.v_hidden_size)  # unused, as in the original
        self.q_dropout1 = nn.Dropout(config.v_hidden_dropout_prob)
        self.dense2 = nn.Linear(config.bi_hidden_size, config.hidden_size)
        self.LayerNorm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout2 = nn.Dropout(config.hidden_dropout_prob)
        self.q_dense2 = nn.Linear(config.bi_hidden_size, config.hidden_size)  # unused, as in the original
        self.q_dropout2 = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, visual_ctx: Tensor, visual: Tensor, text_ctx: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N, Db), (B, N, Dv), (B, T, Db), (B, T, D) -> (B, N, Dv), (B, T, D)."""
        v = self.LayerNorm1(visual + self.dropout1(self.dense1(visual_ctx)))
        t = self.LayerNorm2(text + self.dropout2(self.dense2(text_ctx)))
        return v, t


class ConnectionLayer(nn.Module):
    """``BertConnectionLayer`` (Co-TRM): bi-attention, bi-output, then a feed-forward block per stream."""

    def __init__(self, config: ViLBERTConfig):
        super().__init__()
        self.biattention = BiAttention(config)
        self.biOutput = BiOutput(config)
        self.v_intermediate = Intermediate(config.v_hidden_size, config.v_intermediate_size, config.v_hidden_act)
        self.v_output = Output(config.v_intermediate_size, config.v_hidden_size, config.layer_norm_eps, config.v_hidden_dropout_prob)
        self.t_intermediate = Intermediate(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.t_output = Output(config.intermediate_size, config.hidden_size, config.layer_norm_eps, config.hidden_dropout_prob)

    def forward(self, visual: Tensor, visual_mask: Tensor | None, text: Tensor, text_mask: Tensor | None):
        """-> ``(visual (B, N, Dv), text (B, T, D), (v2t (B, H, N, T), t2v (B, H, T, N)))``."""
        visual_ctx, text_ctx, v2t, t2v = self.biattention(visual, visual_mask, text, text_mask)
        v, t = self.biOutput(visual_ctx, visual, text_ctx, text)
        v = self.v_output(self.v_intermediate(v), v)
        t = self.t_output(self.t_intermediate(t), t)
        return v, t, (v2t, t2v)


# --------------------------------------------------------------------------------------------------
# Encoder, poolers, model
# --------------------------------------------------------------------------------------------------
class ViLBERTEncoder(nn.Module):
    """``BertEncoder`` of ViLBERT: ``layer`` (text), ``v_layer`` (visual), ``c_layer`` (Co-TRM),
    run in the order of :func:`layer_schedule`."""

    def __init__(self, config: ViLBERTConfig):
        super().__init__()
        self.config = config
        tc, vc = config.text_config(), config.visual_config()
        self.layer = nn.ModuleList(TransformerLayer(tc) for _ in range(config.num_hidden_layers))
        self.v_layer = nn.ModuleList(TransformerLayer(vc) for _ in range(config.v_num_hidden_layers))
        self.c_layer = nn.ModuleList(ConnectionLayer(config) for _ in range(len(config.v_biattention_id)))
        self.schedule = layer_schedule(config)

    def forward(self, text: Tensor, visual: Tensor, text_mask: Tensor | None, visual_mask: Tensor | None,
                output_attentions: bool = False) -> dict[str, Any]:
        """text (B, T, D), visual (B, N, Dv), keep masks (B, T), (B, N) ->
        ``{"text": (B, T, D), "visual": (B, N, Dv), "co_attentions": [(v2t, t2v) per Co-TRM] or None}``."""
        co = [] if output_attentions else None
        for kind, i in self.schedule:
            if kind == "t":
                text, _ = self.layer[i](text, text_mask)
            elif kind == "v":
                visual, _ = self.v_layer[i](visual, visual_mask)
            else:
                visual, text, probs = self.c_layer[i](visual, visual_mask, text, text_mask)
                if co is not None:
                    co.append(probs)
        return {"text": text, "visual": visual, "co_attentions": co}


class ReLUPooler(nn.Module):
    """``BertTextPooler`` / ``BertImagePooler``: the first token -> Linear(width -> Db) -> ReLU."""

    def __init__(self, in_size: int, out_size: int):
        super().__init__()
        self.dense = nn.Linear(in_size, out_size)

    def forward(self, hidden: Tensor) -> Tensor:
        """(B, L, width) -> (B, Db)."""
        return F.relu(self.dense(hidden[:, 0]))


class ViLBERTModel(nn.Module):
    """``BertModel`` of ViLBERT (the ``bert.*`` part of a checkpoint): embeddings, encoder, poolers.

    Initialised BERT-style (normal std 0.02, LayerNorm 1/0) like the original ``init_bert_weights``.
    """

    def __init__(self, config: ViLBERTConfig):
        super().__init__()
        self.config = config
        self.embeddings = TextEmbeddings(config.text_config())
        if config.task_specific_tokens:
            self.embeddings.task_embeddings = nn.Embedding(config.num_task_tokens, config.hidden_size)
        self.v_embeddings = ImageEmbeddings(config)
        self.encoder = ViLBERTEncoder(config)
        self.t_pooler = ReLUPooler(config.hidden_size, config.bi_hidden_size)
        self.v_pooler = ReLUPooler(config.v_hidden_size, config.bi_hidden_size)

    def check_inputs(self, input_ids: Tensor, visual_feats: Tensor, boxes: Tensor, attention_mask: Tensor | None = None,
                     visual_attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                     task_ids: Tensor | None = None) -> tuple[int, int, int]:
        """The one boundary where ViLBERT's inputs are checked, before any matrix product. Returns (B, T, N).

        Raises:
            ValueError: float ids or T = 0 (:func:`~vlp_course.models.blocks.check_text_inputs`);
                features not (B, N, ``v_feature_size``), not of the weights' dtype or not finite;
                ``boxes`` not (B, N, 5) ``[x1/W, y1/H, x2/W, y2/H, area/(W*H)]`` in [0, 1] with x2 >= x1;
                ``visual_attention_mask`` not (B, N) or hiding the global image token (visual token 0,
                which the visual pooler reads); ``task_ids`` without ``task_specific_tokens``, not
                (B,) / (B, 1) integers or out of range.
        """
        cfg = self.config
        B, T = check_text_inputs(cfg, input_ids, token_type_ids, attention_mask)
        dtype = next(self.parameters()).dtype
        check_region_features(visual_feats, cfg.v_feature_size, B, field_name="v_feature_size", what="visual_feats", dtype=dtype)
        N = visual_feats.shape[1]
        if not isinstance(boxes, Tensor) or tuple(boxes.shape) != (B, N, 5):
            raise ValueError(f"boxes must be ViLBERT's 5-d locations of shape (B, N, 5) = ({B}, {N}, 5) "
                             f"([x1/W, y1/H, x2/W, y2/H, area/(W*H)]), got {describe_shape(boxes)}")
        validate_xyxy(boxes[..., :4], normalized=True, name="boxes[..., :4] (normalized x1, y1, x2, y2)")
        a = boxes[..., 4]
        if bool(((a < -1e-6) | (a > 1 + 1e-6)).any()):
            raise ValueError("boxes[..., 4] is the relative area (x2-x1)(y2-y1)/(W*H) and must lie in [0, 1]")
        check_keep_mask(visual_attention_mask, (B, N), "visual_attention_mask")
        if visual_attention_mask is not None and N and bool((visual_attention_mask[:, 0] == 0).any()):
            row = int(torch.nonzero(visual_attention_mask[:, 0] == 0)[0])
            raise ValueError(f"visual_attention_mask row {row} hides visual token 0, the global image token that the "
                             "visual pooler reads: put it first and mark it real (see prepare_regions)")
        if task_ids is not None:
            if not cfg.task_specific_tokens:
                raise ValueError("task_ids given but the config has task_specific_tokens=False")
            if task_ids.is_floating_point() or task_ids.numel() != B or tuple(task_ids.shape) not in ((B,), (B, 1)):
                raise ValueError(f"task_ids must be integer ids of shape (B,) or (B, 1) with B = {B}, "
                                 f"got {describe_shape(task_ids)} {task_ids.dtype}")
            if bool(((task_ids < 0) | (task_ids >= cfg.num_task_tokens)).any()):
                raise ValueError(f"task_ids must lie in [0, num_task_tokens = {cfg.num_task_tokens})")
        return B, T, N

    def embed_text(self, input_ids: Tensor, token_type_ids: Tensor | None = None, task_ids: Tensor | None = None) -> Tensor:
        """Word + position + token type; with ``task_ids`` the task embedding is inserted after [CLS];
        then LayerNorm and dropout over the whole sequence (B, T, D), or (B, T+1, D) with a task token.

        The order is that of vilbert-multi-task ``vilbert/vilbert.py`` ``BertEmbeddings.forward``: the raw
        task embedding joins the sum *before* the LayerNorm, so it is normalised like every other token
        (it gets no position or type embedding; positions stay 0..T-1 for the words).
        """
        emb = self.embeddings
        T = input_ids.shape[1]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(T, device=input_ids.device)[None, :]  # (1, T)
        x = emb.word_embeddings(input_ids) + emb.position_embeddings(positions) + emb.token_type_embeddings(token_type_ids)  # (B, T, D)
        if task_ids is not None:
            task = emb.task_embeddings(task_ids.reshape(-1, 1))  # (B, 1, D)
            x = torch.cat([x[:, :1], task, x[:, 1:]], dim=1)  # (B, T+1, D): [CLS], task, words
        return emb.dropout(emb.LayerNorm(x))

    def forward(
        self,
        input_ids: Tensor,
        visual_feats: Tensor,
        boxes: Tensor,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        task_ids: Tensor | None = None,
        output_attentions: bool = False,
    ) -> dict[str, Any]:
        """Encode text and regions.

        Args:
            input_ids: (B, T) word-piece ids ([CLS] first).
            visual_feats: (B, N, F) region features, the global image token first (see :func:`prepare_regions`).
            boxes: (B, N, 5) ``[x1/W, y1/H, x2/W, y2/H, area/(W*H)]`` in [0, 1] (the global token's is [0, 0, 1, 1, 1]).
            attention_mask: (B, T) keep mask. visual_attention_mask: (B, N) keep mask (1 = real region,
                incl. the global token). token_type_ids: (B, T), zeros when omitted.
            task_ids: (B,) or (B, 1) task-token ids (only with ``task_specific_tokens``): a task embedding
                is inserted after [CLS] before the LayerNorm (the text grows by one token, as in
                vilbert-multi-task).
            output_attentions: also return the co-attention weights.

        Returns:
            ``{"text": (B, T, D) (T+1 with a task token), "visual": (B, N, Dv), "pooled_text": (B, Db),
            "pooled_visual": (B, Db), "co_attentions": None or a list with one
            ``(v2t (B, H, N, T), t2v (B, H, T, N))`` per Co-TRM}``.

        Raises:
            ValueError: see :meth:`check_inputs`.
        """
        self.check_inputs(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids, task_ids)
        text = self.embed_text(input_ids, token_type_ids, task_ids)  # (B, T, D) or (B, T+1, D)
        if task_ids is not None and attention_mask is not None:  # the task token is always attended
            attention_mask = torch.cat([attention_mask[:, :1], torch.ones_like(attention_mask[:, :1]), attention_mask[:, 1:]], 1)
        visual = self.v_embeddings(visual_feats, boxes)  # (B, N, Dv)
        enc = self.encoder(text, visual, attention_mask, visual_attention_mask, output_attentions)
        return {
            "text": enc["text"],
            "visual": enc["visual"],
            "pooled_text": self.t_pooler(enc["text"]),
            "pooled_visual": self.v_pooler(enc["visual"]),
            "co_attentions": enc["co_attentions"],
        }


# --------------------------------------------------------------------------------------------------
# Pretraining heads
# --------------------------------------------------------------------------------------------------
class ImagePredictionHead(nn.Module):
    """``cls.imagePredictions``: transform at Dv, then Linear(Dv -> C detector classes)."""

    def __init__(self, config: ViLBERTConfig):
        super().__init__()
        self.transform = PredictionHeadTransform(config.v_hidden_size, config.v_hidden_act, config.layer_norm_eps)
        self.decoder = nn.Linear(config.v_hidden_size, config.v_target_size)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, Dv) -> (B, N, C)."""
        return self.decoder(self.transform(x))


class ViLBERTPreTrainingHeads(nn.Module):
    """``BertPreTrainingHeads`` (``cls.*``): MLM, alignment on the fused pooled vector, region prediction.

    ``bi_seq_relationship`` here gives class 1 = matched (``is_matched``); the original's class 1 is
    "random caption" (``concept_cap_dataset.py``, ``random_cap``) and its rows are swapped by the converters.
    """

    def __init__(self, config: ViLBERTConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = LMPredictionHead(word_embeddings, config.hidden_act, config.layer_norm_eps)
        self.bi_seq_relationship = nn.Linear(config.bi_hidden_size, 2)
        self.imagePredictions = ImagePredictionHead(config)


def fuse(pooled_text: Tensor, pooled_visual: Tensor, method: str = "mul") -> Tensor:
    """The fused pooled vector (B, Db): element-wise product ("mul", the paper) or sum."""
    return pooled_text * pooled_visual if method == "mul" else pooled_text + pooled_visual


class ViLBERTForPreTraining(nn.Module):
    """``BertForMultiModalPreTraining``: ``bert`` + ``cls``. 533 state-dict keys at the 6/6 size.

    Loss = MLM + ``img_weight`` x masked multi-modal modelling (``mrm``: KL to the detector's class
    distribution) + multimodal alignment (``itm``); paper section 3.2, vilbert-multi-task
    ``vilbert/vilbert.py`` ``BertForMultiModalPreTraining.forward``. Which pairs the masked losses
    count on is ``config.masked_loss_on_mismatched`` (see :class:`ViLBERTConfig` for the two recipes).
    """

    def __init__(self, config: ViLBERTConfig):
        super().__init__()
        self.config = config
        self.bert = ViLBERTModel(config)
        self.cls = ViLBERTPreTrainingHeads(config, self.bert.embeddings.word_embeddings)
        self.dropout = nn.Dropout(config.fused_dropout_prob)
        self.apply(lambda m: init_bert_weights(m, config.initializer_range))

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
        masked_regions: Tensor | None = None,
        region_targets: Tensor | None = None,
        output_attentions: bool = False,
    ) -> VLOutput:
        """Scores of the three heads, and the losses of the labels given.

        Args:
            input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids:
                see :meth:`ViLBERTModel.forward` (features with the global token first).
            mlm_labels: (B, T) original id at masked words, -100 elsewhere.
            is_matched: (B,) 1 = the caption belongs to the image, 0 = another image's caption, -100 ignore
                (the original's ``is_next`` has the opposite polarity; see :mod:`vlp_course.pretraining.matching`).
            masked_regions: (B, N) bool, True at the regions whose features were masked (never token 0,
                the global image token). region_targets: (B, N, C) the detector's class distribution of
                each visual token (row 0 is not read).
            output_attentions: return the co-attention weights in ``encoder``.

        Returns:
            :class:`~vlp_course.models.blocks.VLOutput` with ``logits`` ``"mlm"`` (B, T, V), ``"mrm"``
            (B, N, C), ``"itm"`` (B, 2) (class 1 = matched); ``losses`` for the labels given; ``encoder``
            the dict of :meth:`ViLBERTModel.forward` plus ``"pooled"`` (B, Db), the fused vector.
            Without ``masked_loss_on_mismatched`` the masked losses skip rows with ``is_matched`` != 1.
            A batch without a masked region gives an ``mrm`` loss of exactly 0 with finite gradients
            (the original divides by the zero count).

        Raises:
            ValueError: see :meth:`ViLBERTModel.check_inputs`; ``mlm_labels`` not (B, T) integers,
                ``is_matched`` not (B,), ``masked_regions`` not (B, N) bool or marking token 0,
                ``region_targets`` not (B, N, C), one of the two region labels without the other.
        """
        B, T, N = self.bert.check_inputs(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask,
                                         token_type_ids)
        C = self.config.v_target_size
        check_labels(mlm_labels, (B, T), "mlm_labels")
        check_labels(is_matched, (B,), "is_matched")
        if (masked_regions is None) != (region_targets is None):
            raise ValueError("the mrm loss needs both masked_regions (B, N) bool and region_targets (B, N, C)")
        if masked_regions is not None:
            if not isinstance(masked_regions, Tensor) or tuple(masked_regions.shape) != (B, N) or masked_regions.dtype != torch.bool:
                raise ValueError(f"masked_regions must be a bool tensor of shape (B, N) = ({B}, {N}), got "
                                 f"{describe_shape(masked_regions)} {getattr(masked_regions, 'dtype', '')}")
            if bool(masked_regions[:, 0].any()):
                raise ValueError("masked_regions[:, 0] is the global image token, which is never masked (it is computed "
                                 "from the masked regions)")
            if not isinstance(region_targets, Tensor) or tuple(region_targets.shape) != (B, N, C):
                raise ValueError(f"region_targets must have shape (B, N, C) = ({B}, {N}, {C}), got {describe_shape(region_targets)}")
        out = self.bert(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids,
                        output_attentions=output_attentions)
        out["pooled"] = self.dropout(fuse(out["pooled_text"], out["pooled_visual"], self.config.fusion_method))  # (B, Db)
        logits = {
            "mlm": self.cls.predictions(out["text"]),  # (B, T, V)
            "mrm": self.cls.imagePredictions(out["visual"]),  # (B, N, C)
            "itm": self.cls.bi_seq_relationship(out["pooled"]),  # (B, 2)
        }
        # --objective 1 (vilbert-multi-task): the masked targets of mismatched pairs are ignored
        drop = is_matched is not None and not self.config.masked_loss_on_mismatched
        losses: dict[str, Tensor] = {}
        if mlm_labels is not None:
            labels = drop_mismatched_labels(mlm_labels.long(), is_matched) if drop else mlm_labels.long()
            losses["mlm"] = mlm_loss(logits["mlm"], labels)
        if masked_regions is not None:
            masked = masked_regions & (is_matched == 1)[:, None] if drop else masked_regions  # (B, N)
            # the global token's scores are dropped, as in the original ([:, 1:])
            losses["mrm"] = self.config.img_weight * region_kl_loss(logits["mrm"][:, 1:], region_targets[:, 1:], masked[:, 1:])
        if is_matched is not None:
            losses["itm"] = itm_loss(logits["itm"], is_matched.long())
        return VLOutput(VLOutput.total(losses), losses, logits, out)


# --------------------------------------------------------------------------------------------------
# Downstream heads
# --------------------------------------------------------------------------------------------------
class SimpleClassifier(nn.Module):
    """``SimpleClassifier``: ``logit_fc`` = Linear(in -> hid), GELU, LayerNorm, Linear(hid -> out)
    (state-dict indices 0, 2, 3)."""

    def __init__(self, in_dim: int, hid_dim: int, out_dim: int, eps: float = 1e-12):
        super().__init__()
        self.logit_fc = nn.Sequential(nn.Linear(in_dim, hid_dim), nn.GELU(), nn.LayerNorm(hid_dim, eps=eps), nn.Linear(hid_dim, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.logit_fc(x)


class ViLBERTForVLTasks(nn.Module):
    """``VILBertForVLTasks``: ``bert``, ``cls`` and the task heads (560 keys with task tokens at 6/6).

    Heads: ``vil_prediction`` (VQA, ``num_labels``), ``vil_prediction_gqa``, ``vil_binary_prediction``
    (NLVR2, two images per pair), ``vil_logit`` (retrieval), ``vil_tri_prediction`` (SNLI-VE),
    ``vision_logit`` (referring expressions, per region), ``linguisic_logit`` (sic, per token).
    """

    def __init__(self, config: ViLBERTConfig):
        super().__init__()
        self.config = config
        c = config
        self.bert = ViLBERTModel(config)
        self.cls = ViLBERTPreTrainingHeads(config, self.bert.embeddings.word_embeddings)
        self.dropout = nn.Dropout(config.fused_dropout_prob)
        self.vil_prediction = SimpleClassifier(c.bi_hidden_size, 2 * c.bi_hidden_size, c.num_labels, c.layer_norm_eps)
        self.vil_prediction_gqa = SimpleClassifier(c.bi_hidden_size, 2 * c.bi_hidden_size, c.num_labels_gqa, c.layer_norm_eps)
        self.vil_binary_prediction = SimpleClassifier(2 * c.bi_hidden_size, 2 * c.bi_hidden_size, 2, c.layer_norm_eps)
        self.vil_logit = nn.Linear(c.bi_hidden_size, 1)
        self.vil_tri_prediction = nn.Linear(c.bi_hidden_size, 3)
        self.vision_logit = nn.Linear(c.v_hidden_size, 1)
        self.linguisic_logit = nn.Linear(c.hidden_size, 1)
        self.apply(lambda m: init_bert_weights(m, config.initializer_range))

    def encode(self, input_ids: Tensor, visual_feats: Tensor, boxes: Tensor, attention_mask: Tensor | None = None,
               visual_attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
               task_ids: Tensor | None = None, output_attentions: bool = False) -> dict[str, Any]:
        """:meth:`ViLBERTModel.forward` plus ``"pooled"`` (B, Db): the fused, dropped-out pooled vector."""
        out = self.bert(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids,
                        task_ids, output_attentions)
        out["pooled"] = self.dropout(fuse(out["pooled_text"], out["pooled_visual"], self.config.fusion_method))  # (B, Db)
        return out

    def forward(self, input_ids: Tensor, visual_feats: Tensor, boxes: Tensor, attention_mask: Tensor | None = None,
                visual_attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None, *,
                task_ids: Tensor | None = None, soft_scores: Tensor | None = None,
                output_attentions: bool = False) -> VLOutput:
        """VQA (``vil_prediction`` on the fused pooled vector), as vilbert-multi-task's VQA task.

        Args:
            input_ids … token_type_ids, task_ids: see :meth:`ViLBERTModel.forward`.
            soft_scores: (B, num_labels) VQA soft scores in [0, 1].

        Returns:
            :class:`~vlp_course.models.blocks.VLOutput`: ``logits["vqa"]`` (B, num_labels); with
            ``soft_scores`` ``losses["vqa"]`` = BCE-with-logits x num_labels (``task_utils.py``);
            ``encoder`` = :meth:`encode`'s dict.

        Raises:
            ValueError: see :meth:`ViLBERTModel.check_inputs`; ``soft_scores`` not (B, num_labels).
        """
        A = self.config.num_labels
        if soft_scores is not None and (not isinstance(soft_scores, Tensor) or soft_scores.ndim != 2 or soft_scores.shape[1] != A
                                        or not isinstance(input_ids, Tensor) or soft_scores.shape[0] != input_ids.shape[0]):
            raise ValueError(f"soft_scores must have shape (B, num_labels) with num_labels = {A} and input_ids' B, "
                             f"got {describe_shape(soft_scores)}")
        out = self.encode(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids,
                          task_ids, output_attentions)
        logits = {"vqa": self.vil_prediction(out["pooled"])}  # (B, A)
        losses = {"vqa": vqa_bce_loss(logits["vqa"], soft_scores)} if soft_scores is not None else {}
        return VLOutput(VLOutput.total(losses), losses, logits, out)

    def nlvr2(self, input_ids: Tensor, visual_feats: Tensor, boxes: Tensor, attention_mask: Tensor | None = None,
              visual_attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None, *,
              labels: Tensor | None = None, task_ids: Tensor | None = None) -> VLOutput:
        """NLVR2 with each image encoded separately with the pair's statement (vilbert-multi-task
        ``task_utils.py``, ``NLVR2``): the two fused pooled vectors concatenated into ``vil_binary_prediction``.

        Args:
            input_ids: (2P, T), pair p's statement in rows 2p and 2p+1 (:func:`repeat_for_pairs`).
            visual_feats, boxes: (2P, N, F), (2P, N, 5): left image in row 2p, right in 2p+1.
            attention_mask … task_ids: as in :meth:`ViLBERTModel.forward`, one row per image.
            labels: (P,) 0/1, 1 = the statement is true of the pair.

        Returns:
            :class:`~vlp_course.models.blocks.VLOutput`: ``logits["nlvr2"]`` (P, 2); with ``labels``
            ``losses["nlvr2"]``, cross-entropy (batch mean).

        Raises:
            ValueError: an odd row count, a pair whose two rows hold different statements, labels not
                (P,) 0/1, or the encoder's checks (:meth:`ViLBERTModel.check_inputs`).
        """
        P = check_pair_rows(input_ids)
        check_pair_labels(labels, P)
        out = self.encode(input_ids, visual_feats, boxes, attention_mask, visual_attention_mask, token_type_ids, task_ids)
        logits = pair_logits(self.vil_binary_prediction, out["pooled"], P)  # (P, 2)
        losses = {"nlvr2": F.cross_entropy(logits, labels)} if labels is not None else {}
        return VLOutput(VLOutput.total(losses), losses, {"nlvr2": logits}, out)


# --------------------------------------------------------------------------------------------------
# Region helpers: 5-d location and the global image token
# --------------------------------------------------------------------------------------------------
GLOBAL_LOCATION = (0.0, 0.0, 1.0, 1.0, 1.0)


def global_image_token(features: Tensor, region_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The global image token: the mean of the real regions' features, location ``[0, 0, 1, 1, 1]``.

    Args:
        features: (B, N, F). region_mask: (B, N) 1 = real region (padding is excluded from the mean).

    Returns:
        ``(feature (B, 1, F), location (B, 1, 5))``.
    """
    if region_mask is None:
        mean = features.mean(1, keepdim=True)
    else:
        m = region_mask.to(features.dtype)[..., None]  # (B, N, 1)
        mean = (features * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)  # (B, 1, F)
    loc = features.new_tensor(GLOBAL_LOCATION).expand(features.shape[0], 1, 5)
    return mean, loc


def prepare_regions(features: Tensor, boxes: Tensor, width: float, height: float,
                    region_mask: Tensor | None = None) -> dict[str, Tensor]:
    """What ViLBERT's loaders feed the model: the global token prepended to the regions.

    For pretraining, pass the features *after* region masking: the original loaders
    (``concept_cap_dataset.py``) mask first (``random_region``) and average afterwards
    (``g_image_feat``); the mean of the unmasked features would give every masked feature back.

    Args:
        features: (B, N, F) region features. boxes: (B, N, 4) pixel xyxy boxes inside the W x H image.
        region_mask: (B, N) 1 = real region.

    Returns:
        ``{"features": (B, N+1, F), "locations": (B, N+1, 5), "image_attention_mask": (B, N+1)}``.

    Raises:
        ValueError: boxes with x2 < x1 or y2 < y1, outside the image, or shapes that do not match.
    """
    if not isinstance(features, Tensor) or features.ndim != 3:
        raise ValueError(f"features must have shape (B, N, F), got {describe_shape(features)}")
    if not isinstance(boxes, Tensor) or tuple(boxes.shape) != (*features.shape[:2], 4):
        raise ValueError(f"boxes must have shape (B, N, 4) = {(*features.shape[:2], 4)}, got {describe_shape(boxes)}")
    loc = vilbert_location(boxes.to(features.dtype), width, height)  # (B, N, 5)
    gf, gl = global_image_token(features, region_mask)
    mask = torch.ones(features.shape[:2], dtype=torch.long, device=features.device) if region_mask is None else region_mask.long()
    return {
        "features": torch.cat([gf, features], 1),
        "locations": torch.cat([gl.to(loc.dtype), loc], 1),
        "image_attention_mask": torch.cat([torch.ones_like(mask[:, :1]), mask], 1),
    }


__all__ += ["ReLUPooler", "ViLBERTPreTrainingHeads", "SimpleClassifier", "pair_logits", "repeat_for_pairs", "fuse",
            "GLOBAL_LOCATION", "IGNORE_INDEX"]
