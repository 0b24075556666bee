"""VL-BERT (Su et al., ICLR 2020): one BERT over words and regions, with a visual feature embedding.

Read top-down: the config, the geometry embedding of a box, the image feature extractor's
``obj_downsample``, the box contract, the sequence layout (packing text, regions and [END]), the
encoder ``vlbert`` with its MLM and masked-RoI-classification heads, the pretraining model, the VQA
model and pixel masking before the detector. The checkpoint key maps are in
:mod:`vlp_course.models.convert` (``vlbert_*``, ``load_bert_into_vlbert``).

Faithful to jackroos/VL-BERT (``common/visual_linguistic_bert.py``, ``common/fast_rcnn.py``,
``common/utils/bbox.py``, ``pretrain/modules/resnet_vlbert_for_pretraining_multitask.py``,
``pretrain/data/datasets/conceptual_captions.py``, ``vqa/modules/resnet_vlbert_for_vqa.py``) and the
paper's section 3; written in our own words.

Input sequence (paper section 3.1, Figure 1; ``VisualLinguisticBert.embedding``)::

    [CLS] w1 ... [SEP] (text B [SEP])  [IMG]_0 [IMG]_1 ... [IMG]_n  [END]
    segment: 0 (A) / 1 (B)              2 2 ... 2                    2
    position: 0 .. T-1                  T T ... T                    T+1

Region 0 is always the whole image, box ``[0, 0, W-1, H-1]`` in pixels. Every token's input = token
embedding + visual feature embedding + segment + position, then LayerNorm and dropout:

* token embedding: the word embedding for words; one learned ``object_linguistic_embeddings``
  vector (the [IMG] token) for every region, or ``object_mask_word_embedding`` for a masked region;
  ``end_embedding`` for [END] (which has no visual part);
* visual feature embedding: geometry (sin/cos of the box) concatenated with the appearance
  feature -> Dropout -> Linear -> ReLU (``image_feature_extractor.obj_downsample``), then
  ``visual_ln_object`` for regions; words get the *whole image's* visual embedding through
  ``visual_ln_text``. Both LayerNorm weights start at 0, so the untrained model is exactly BERT
  and ignores the image until training fades it in.

Pretraining (paper section 3.2): MLM with visual clues (``mlm``), masked RoI classification with
linguistic clues (``mrc``, soft cross-entropy to the detector's class scores), and MLM on text-only
sentences (``mlm_text``; the original's BooksCorpus + English Wikipedia rows, which get the learned
``aux_text_visual_embedding`` instead of an image). A masked RoI is hidden *before the detector* in
the end-to-end mode (its pixels are zeroed, so neither its feature nor the whole-image feature shows
it; :func:`mask_regions_in_pixels`), or its appearance feature is replaced by the trainable
``object_mask_visual_embedding`` (precomputed-feature mode). No image-text matching: the released
configs set ``WITH_REL_LOSS: false`` (the paper's Table 4 found it hurt downstream results).

Arguments follow ``docs/conventions.md``: ``input_ids``, ``visual_feats``, ``boxes`` (pixel xyxy with
``image_size``), ``attention_mask``, ``visual_attention_mask``, ``token_type_ids``, ``mlm_labels``,
``masked_regions``, ``region_targets``, ``soft_scores``; both models return
:class:`~vlp_course.models.blocks.VLOutput`.

Shapes: B batch, T text tokens, N regions (whole image first), L = packed length, D hidden width,
F appearance width, G geometry width (8 x ``geometry_dim``), C detector classes, A answers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_course.boxes import validate_xyxy
from vlp_course.models.blocks import (
    Encoder,
    LMPredictionHead,
    Pooler,
    PredictionHeadTransform,
    TransformerConfig,
    VLOutput,
    check_config,
    check_labels,
    check_pair_labels,
    check_pair_rows,
    check_region_features,
    check_text_inputs,
    describe_shape,
    init_bert_weights,
    pair_logits,
)
from vlp_course.pretraining.losses import mlm_loss, soft_cross_entropy, vqa_bce_loss

__all__ = [
    "VLBERTConfig",
    "geometry_embedding",
    "ImageFeatureExtractor",
    "whole_image_boxes",
    "check_pixel_boxes",
    "SequenceLayout",
    "sequence_layout",
    "VisualLinguisticBert",
    "VLBERTForPreTraining",
    "VLBERTForQuestionAnswering",
    "VLBERTForNLVR2",
    "zero_box_pixels",
    "mask_regions_in_pixels",
]


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------
@dataclass
class VLBERTConfig(TransformerConfig):
    """VL-BERT's sizes: BERT's (the fields of :class:`TransformerConfig`, with three segment types)
    plus the visual ones; defaults are ``cfgs/pretrain/base_prec_4x16G_fp32.yaml`` (VL-BERT-base,
    precomputed features).

    ``visual_feature_size`` F is the appearance width (2048 for the ResNet-101 C5 head);
    ``geometry_dim`` the number of sin/cos frequencies per box coordinate (256, so the geometry
    embedding has 4 x 2 x 256 = 2048 values); ``visual_region_classes`` the detector's classes (1601
    with background). ``visual_scale_*_init`` are the initial weights of the two visual LayerNorms (0).

    Raises:
        ValueError: on non-positive sizes, a hidden size not divisible by the heads, a dropout outside
            [0, 1), fewer than 3 segment types, or an unknown activation.
    """

    type_vocab_size: int = 3  # segments A, B and C (the image)
    visual_feature_size: int = 2048
    geometry_dim: int = 256
    visual_region_classes: int = 1601
    visual_scale_text_init: float = 0.0
    visual_scale_object_init: float = 0.0
    obj_downsample_dropout: float = 0.1
    with_pooler: bool = False
    with_mlm_head: bool = True
    with_mvrc_head: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self, positive=("visual_feature_size", "geometry_dim", "visual_region_classes"),
                     probabilities=("obj_downsample_dropout",))
        if self.type_vocab_size < 3:
            raise ValueError(f"VL-BERT needs type_vocab_size >= 3 (segments A, B and C = image), got {self.type_vocab_size}")

    @property
    def geometry_size(self) -> int:
        """G = 4 coordinates x (sin, cos) x ``geometry_dim``."""
        return 8 * self.geometry_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _image_sizes(image_size: Any, batch: int, device, dtype) -> Tensor:
    """(W, H) or (B, 2) -> (B, 2) tensor of positive sizes."""
    if image_size is None:
        raise ValueError("image_size (W, H) in pixels is required with pixel boxes")
    s = torch.as_tensor(image_size, dtype=dtype, device=device)
    if s.ndim == 1 and s.shape[0] == 2:
        s = s.expand(batch, 2)
    if s.ndim != 2 or tuple(s.shape) != (batch, 2):
        raise ValueError(f"image_size must be (W, H) or a (B, 2) = ({batch}, 2) tensor of (W, H), got {tuple(s.shape)}")
    if not bool((s > 0).all()):
        raise ValueError("image width and height must be positive")
    return s


# --------------------------------------------------------------------------------------------------
# Geometry embedding and the visual feature embedding
# --------------------------------------------------------------------------------------------------
def geometry_embedding(boxes: Tensor, image_size: Any, dim: int = 256) -> Tensor:
    """VL-BERT's sin/cos embedding of box geometry (``common/utils/bbox.py`` ``coordinate_embeddings``).

    The pixel box (x1, y1, x2, y2) becomes (x_c, y_c, w, h), each divided by the image's W (x_c, w)
    or H (y_c, h) and multiplied by 100. Each of the four values p is encoded with ``dim``
    frequencies: ``sin(p / 1000^(i/dim))`` for i = 0..dim-1, then ``cos`` of the same. The output
    is ``[sin(x_c) (dim), cos(x_c) (dim), sin(y_c), cos(y_c), sin(w), cos(w), sin(h), cos(h)]``.

    Args:
        boxes: (B, N, 4) pixel xyxy boxes inside the image. image_size: (W, H) or (B, 2).
        dim: frequencies per coordinate (256 in VL-BERT).

    Returns:
        (B, N, 8 * dim).

    Raises:
        ValueError: boxes not (B, N, 4), a negative coordinate, x2 < x1 or y2 < y1, outside the
            image, or bad sizes.
    """
    if not isinstance(boxes, Tensor) or boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (B, N, 4) (pixel x1, y1, x2, y2), got {describe_shape(boxes)}")
    b = boxes.float() if not boxes.is_floating_point() else boxes
    B, N, _ = b.shape
    size = _image_sizes(image_size, B, b.device, b.dtype)  # (B, 2)
    validate_xyxy(b, normalized=False, name="boxes (pixel x1, y1, x2, y2)")
    if b.numel() and bool((b < 0).any()):
        raise ValueError(f"boxes (pixel x1, y1, x2, y2) must be >= 0, got a coordinate {float(b.min()):.3g}")
    wh = size[:, None, :]  # (B, 1, 2)
    if bool((b[..., 0::2] > wh[..., :1] + 1e-4).any() or (b[..., 1::2] > wh[..., 1:] + 1e-4).any()):
        raise ValueError("boxes (pixel x1, y1, x2, y2) must lie inside the image [0, W] x [0, H]")
    x1, y1, x2, y2 = b.unbind(-1)  # (B, N) each
    W, H = size[:, 0:1], size[:, 1:2]  # (B, 1)
    pos = torch.stack([(x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H], -1) * 100  # (B, N, 4)
    freq = 1000.0 ** (torch.arange(dim, dtype=b.dtype, device=b.device) / dim)  # (dim,)
    angle = pos[..., None] / freq  # (B, N, 4, dim)
    return torch.cat([angle.sin(), angle.cos()], -1).reshape(B, N, 8 * dim)  # (B, N, 4 * 2dim)


class ImageFeatureExtractor(nn.Module):
    """The part of VL-BERT's ``FastRCNN`` that exists with precomputed features: ``obj_downsample``
    = Dropout, Linear(G + F -> D), ReLU on ``[geometry embedding, appearance]`` (geometry first)."""

    def __init__(self, config: VLBERTConfig):
        super().__init__()
        self.config = config
        self.obj_downsample = nn.Sequential(
            nn.Dropout(config.obj_downsample_dropout),
            nn.Linear(config.geometry_size + config.visual_feature_size, config.hidden_size),
            nn.ReLU(),
        )

    def forward(self, features: Tensor, boxes: Tensor, image_size: Any) -> Tensor:
        """features (B, N, F), pixel boxes (B, N, 4), (W, H) -> visual embeddings (B, N, D)."""
        geo = geometry_embedding(boxes, image_size, self.config.geometry_dim).to(features.dtype)  # (B, N, G)
        return self.obj_downsample(torch.cat([geo, features], -1))  # (B, N, D)


# --------------------------------------------------------------------------------------------------
# The box contract: pixel xyxy, box 0 the whole image
# --------------------------------------------------------------------------------------------------
def whole_image_boxes(batch: int, width: float, height: float, dtype=torch.float32) -> Tensor:
    """(B, 1, 4) the box of the whole image, ``[0, 0, W - 1, H - 1]`` (VL-BERT's region 0: the datasets'
    ``add_image_as_a_box``, e.g. ``pretrain/data/datasets/conceptual_captions.py`` and
    ``vqa/data/datasets/vqa.py``, which also clamp every box to ``[0, W - 1] x [0, H - 1]``)."""
    return torch.tensor([0.0, 0.0, float(width) - 1.0, float(height) - 1.0], dtype=dtype).expand(batch, 1, 4).clone()


def check_pixel_boxes(boxes: Tensor, image_size: Any, visual_attention_mask: Tensor | None = None) -> Tensor:
    """VL-BERT's box contract; returns the (B, 2) image sizes.

    Boxes are pixel (x1, y1, x2, y2) with ``0 <= x1 <= x2 <= W`` and the same for y (the original
    clamps to W - 1; one pixel more is tolerated), and box 0 is the whole image ``[0, 0, W-1, H-1]``
    (within 1 pixel). Boxes that were already normalised to [0, 1] and then given with (W, H) would
    place every region in a 1 x 1 pixel corner: refused as "normalised twice".

    Args:
        boxes: (B, N, 4). image_size: (W, H) or (B, 2). visual_attention_mask: (B, N), 1 = real
            region (padding boxes are not checked against the corner rule).

    Raises:
        ValueError: naming the rule broken: shape, a negative coordinate, boxes normalised twice,
            box 0 not the whole image, x2 < x1 / y2 < y1, or a box outside the image.
    """
    if not isinstance(boxes, Tensor) or boxes.ndim != 3 or boxes.shape[-1] != 4 or boxes.shape[1] < 1:
        raise ValueError(f"boxes must have shape (B, N, 4) with N >= 1 (pixel x1, y1, x2, y2; box 0 = whole image), "
                         f"got {describe_shape(boxes)}")
    b = boxes.float()
    B = b.shape[0]
    size = _image_sizes(image_size, B, b.device, b.dtype)  # (B, 2)
    if not bool(torch.isfinite(b).all()):
        raise ValueError("boxes must be finite pixel coordinates")
    if bool((b < 0).any()):
        row, reg = torch.nonzero((b < 0).any(-1))[0].tolist()
        raise ValueError(f"boxes must be pixel coordinates >= 0; boxes[{row}, {reg}] = {b[row, reg].tolist()}")
    real = torch.ones(b.shape[:2], dtype=torch.bool, device=b.device) if visual_attention_mask is None \
        else visual_attention_mask.bool()
    W, H = size[:, 0], size[:, 1]  # (B,)
    corner = ((b[..., 2] <= 1.0) & (b[..., 3] <= 1.0)) | ~real  # (B, N) inside the 1 x 1 corner (or padding)
    twice = corner.all(1) & (W > 2) & (H > 2)  # (B,)
    if bool(twice.any()):
        row = int(torch.nonzero(twice)[0])
        raise ValueError(f"boxes of row {row} all lie in [0, 1] but image_size is ({float(W[row]):g}, {float(H[row]):g}): "
                         "boxes normalised twice? VL-BERT takes pixel boxes (x1, y1, x2, y2) together with (W, H)")
    whole = torch.stack([torch.zeros_like(W), torch.zeros_like(H), W - 1, H - 1], -1)  # (B, 4)
    off = (b[:, 0] - whole).abs().amax(-1)  # (B,)
    if bool((off > 1.0 + 1e-4).any()):
        row = int(torch.nonzero(off > 1.0 + 1e-4)[0])
        raise ValueError(f"box 0 must be the whole image [0, 0, W-1, H-1] = {whole[row].tolist()} (within 1 pixel), "
                         f"got {b[row, 0].tolist()} in row {row} (use whole_image_boxes)")
    validate_xyxy(b, normalized=False, name="boxes (pixel x1, y1, x2, y2)")
    if bool((b[..., 0::2] > W[:, None, None] + 1e-4).any() or (b[..., 1::2] > H[:, None, None] + 1e-4).any()):
        raise ValueError("boxes (pixel x1, y1, x2, y2) must lie inside the image [0, W] x [0, H]")
    return size


# --------------------------------------------------------------------------------------------------
# Sequence layout
# --------------------------------------------------------------------------------------------------
@dataclass
class SequenceLayout:
    """Where each token of the packed sequence comes from (``VisualLinguisticBert.embedding``).

    Attributes:
        is_text, is_object, is_end: (B, L) bool.
        token_type_ids: (B, L): text segments, 2 for every [IMG] and [END].
        position_ids: (B, L): text 0..T'-1, every [IMG] T', [END] T'+1 (T' = real text length); 0 on
            the padding after [END] (the original used the slot index there; it is masked either way).
        attention_mask: (B, L) 1 up to and including [END], 0 after (padding of shorter rows).
        text_end, object_end: (B, 1) index of the first [IMG] and of [END].
    """

    is_text: Tensor
    is_object: Tensor
    is_end: Tensor
    token_type_ids: Tensor
    position_ids: Tensor
    attention_mask: Tensor
    text_end: Tensor
    object_end: Tensor


def sequence_layout(text_mask: Tensor, text_token_type_ids: Tensor, object_mask: Tensor) -> SequenceLayout:
    """Pack each row "seamlessly": its real words, then its real regions, then [END]; the padding
    inside the text and the regions is squeezed out and the rows padded at the end.

    Args:
        text_mask: (B, T) 1 = real word piece. text_token_type_ids: (B, T). object_mask: (B, N) 1 = real region.

    Returns:
        a :class:`SequenceLayout` with L = max over rows of (words + regions) + 1.
    """
    tm, om = text_mask.bool(), object_mask.bool()
    B = tm.shape[0]
    text_end = tm.sum(1, keepdim=True)  # (B, 1)
    object_end = text_end + om.sum(1, keepdim=True)  # (B, 1)
    L = int(object_end.max()) + 1 if B else 1
    grid = torch.arange(L, device=tm.device)[None, :].expand(B, L)  # (B, L)
    is_text = grid < text_end
    is_object = (grid >= text_end) & (grid < object_end)
    is_end = grid == object_end
    types = torch.zeros(B, L, dtype=torch.long, device=tm.device)
    types[is_text] = text_token_type_ids.long()[tm]
    types[is_object | is_end] = 2
    pos = grid.clone()
    pos = torch.where(is_object, text_end.expand(B, L), pos)
    pos = torch.where(is_end, (text_end + 1).expand(B, L), pos)
    pos = torch.where(grid > object_end, torch.zeros_like(pos), pos)  # padding after [END]: 0 (masked anyway)
    mask = (grid <= object_end).long()
    return SequenceLayout(is_text, is_object, is_end, types, pos, mask, text_end, object_end)


# --------------------------------------------------------------------------------------------------
# The encoder model ``vlbert`` and its heads
# --------------------------------------------------------------------------------------------------
class MLMHead(nn.Module):
    """``mlm_head``: its ``predictions`` are BERT's masked-LM head (transform, decoder tied to the word
    embeddings, bias)."""

    def __init__(self, config: VLBERTConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = LMPredictionHead(word_embeddings, config.hidden_act, config.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, T, vocab)."""
        return self.predictions(x)


class MVRCHead(nn.Module):
    """``mvrc_head``: dense + GELU (no LayerNorm), then ``region_cls_pred`` Linear(D -> C)."""

    def __init__(self, config: VLBERTConfig):
        super().__init__()
        self.transform = PredictionHeadTransform(config.hidden_size, config.hidden_act, config.layer_norm_eps, layer_norm=False)
        self.region_cls_pred = nn.Linear(config.hidden_size, config.visual_region_classes)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, D) -> (B, N, C)."""
        return self.region_cls_pred(self.transform(x))


class VisualLinguisticBert(nn.Module):
    """``vlbert``: embeddings, visual LayerNorms, BERT encoder, optional pooler, MLM and MVRC heads.

    Parameter names follow ``VisualLinguisticBertForPretraining``: ``word_embeddings``,
    ``end_embedding``, ``position_embeddings``, ``token_type_embeddings``, ``embedding_LayerNorm``,
    ``visual_ln_text``, ``visual_ln_object``, ``encoder.layer.N.*``, ``pooler.dense``,
    ``mlm_head.predictions.*``, ``mvrc_head.*``.
    """

    def __init__(self, config: VLBERTConfig):
        super().__init__()
        self.config = config
        D = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, D)
        self.end_embedding = nn.Embedding(1, D)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, D)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, D)
        self.embedding_LayerNorm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.embedding_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.visual_ln_text = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.visual_ln_object = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.encoder = Encoder(config.transformer_config())
        if config.with_pooler:
            self.pooler = Pooler(D)
        if config.with_mlm_head:
            self.mlm_head = MLMHead(config, self.word_embeddings)
        if config.with_mvrc_head:
            self.mvrc_head = MVRCHead(config)

    def embed(self, input_ids: Tensor, token_type_ids: Tensor, text_mask: Tensor, text_visual: Tensor,
              object_visual: Tensor, object_linguistic: Tensor, object_mask: Tensor) -> tuple[Tensor, SequenceLayout]:
        """Build the packed input embeddings.

        Args:
            input_ids, token_type_ids, text_mask: (B, T).
            text_visual: (B, T, D) the visual embedding every word receives (the whole image's).
            object_visual: (B, N, D) regions' visual embeddings (before ``visual_ln_object``).
            object_linguistic: (B, N, D) [IMG] (or mask-word) token embeddings. object_mask: (B, N).

        Returns:
            ``(embeddings (B, L, D), layout)``.
        """
        text = self.word_embeddings(input_ids) + self.visual_ln_text(text_visual)  # (B, T, D)
        objects = object_linguistic + self.visual_ln_object(object_visual)  # (B, N, D)
        lay = sequence_layout(text_mask, token_type_ids, object_mask)
        if lay.position_ids.numel() and int(lay.position_ids.max()) >= self.config.max_position_embeddings:
            raise ValueError(f"text of {int(lay.text_end.max())} tokens needs position ids up to {int(lay.position_ids.max())} "
                             f"(regions share one id, [END] the next), but max_position_embeddings = {self.config.max_position_embeddings}")
        B, L = lay.is_text.shape
        x = text.new_zeros(B, L, text.shape[-1])  # (B, L, D)
        x[lay.is_text] = text[text_mask.bool()]
        x[lay.is_object] = objects[object_mask.bool()]
        x[lay.is_end] = self.end_embedding.weight[0].to(x.dtype)
        x = x + self.position_embeddings(lay.position_ids) + self.token_type_embeddings(lay.token_type_ids)
        return self.embedding_dropout(self.embedding_LayerNorm(x)), lay

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, text_mask: Tensor, text_visual: Tensor,
                object_visual: Tensor, object_linguistic: Tensor, object_mask: Tensor,
                output_attentions: bool = False, output_hidden_states: bool = False) -> dict[str, Any]:
        """Encode; returns ``{"sequence": (B, L, D), "text": (B, T, D), "objects": (B, N, D),
        "pooled": (B, D) or None, "layout", "attentions", "hidden_states"}`` (text/objects scattered
        back to their input positions, zeros at padding)."""
        x, lay = self.embed(input_ids, token_type_ids, text_mask, text_visual, object_visual, object_linguistic, object_mask)
        enc = self.encoder(x, lay.attention_mask, output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        h = enc.last_hidden_state  # (B, L, D)
        text = h.new_zeros(*input_ids.shape, h.shape[-1])
        text[text_mask.bool()] = h[lay.is_text]
        objects = h.new_zeros(*object_mask.shape, h.shape[-1])
        objects[object_mask.bool()] = h[lay.is_object]
        return {
            "sequence": h, "text": text, "objects": objects, "layout": lay,
            "pooled": self.pooler(h) if self.config.with_pooler else None,
            "attentions": enc.attentions, "hidden_states": enc.hidden_states,
        }



# --------------------------------------------------------------------------------------------------
# The pretraining model
# --------------------------------------------------------------------------------------------------
class VLBERTForPreTraining(nn.Module):
    """``ResNetVLBERTForPretrainingMultitask`` with precomputed features: ``image_feature_extractor``,
    ``object_linguistic_embeddings``, ``object_mask_word_embedding``, ``object_mask_visual_embedding``,
    ``aux_text_visual_embedding`` and ``vlbert``. (The end-to-end variant adds the detector's
    backbone, which here is the separate stand-in detector: :func:`mask_regions_in_pixels`.)

    Initialised BERT-style, then the visual LayerNorm weights set to ``visual_scale_*_init`` (0) and
    ``object_mask_visual_embedding`` to zeros, as the original does.
    """

    def __init__(self, config: VLBERTConfig):
        super().__init__()
        self.config = config
        D = config.hidden_size
        self.image_feature_extractor = ImageFeatureExtractor(config)
        self.object_linguistic_embeddings = nn.Embedding(1, D)
        self.object_mask_word_embedding = nn.Embedding(1, D)
        self.object_mask_visual_embedding = nn.Embedding(1, config.visual_feature_size)
        self.aux_text_visual_embedding = nn.Embedding(1, D)
        self.vlbert = VisualLinguisticBert(config)
        self.apply(lambda m: init_bert_weights(m, config.initializer_range))
        with torch.no_grad():
            self.vlbert.visual_ln_text.weight.fill_(config.visual_scale_text_init)
            self.vlbert.visual_ln_object.weight.fill_(config.visual_scale_object_init)
            self.object_mask_visual_embedding.weight.zero_()

    # ---- the one input boundary ------------------------------------------------------------------
    def check_inputs(self, input_ids: Tensor, visual_feats: Tensor, boxes: Tensor, image_size: Any,
                     attention_mask: Tensor | None = None, visual_attention_mask: Tensor | None = None,
                     token_type_ids: Tensor | None = None) -> tuple[int, int, int]:
        """Every check on the image-text inputs, before any compute; returns (B, T, N).

        Raises:
            ValueError: float or out-of-vocabulary ``input_ids``, T = 0, a row starting with padding,
                text segments other than 0/1 (2 is the image's), ``visual_feats`` not (B, N, F) of the
                model's dtype with F = ``visual_feature_size`` or not finite, and the box contract of
                :func:`check_pixel_boxes` (negative, normalised twice, box 0 not the whole image).
        """
        B, T = check_text_inputs(self.config, input_ids, token_type_ids, attention_mask)
        if token_type_ids is not None and token_type_ids.numel() and int(token_type_ids.max()) > 1:
            raise ValueError("text token_type_ids must be 0 (segment A) or 1 (segment B); 2 is the image's segment")
        dtype = next(self.parameters()).dtype
        check_region_features(visual_feats, self.config.visual_feature_size, B, field_name="visual_feature_size",
                              what="visual_feats", dtype=dtype)
        N = visual_feats.shape[1]
        if N < 1:
            raise ValueError("visual_feats need at least region 0, the whole image")
        if not isinstance(boxes, Tensor) or tuple(boxes.shape) != (B, N, 4):
            raise ValueError(f"boxes must have shape (B, N, 4) = ({B}, {N}, 4) (pixel x1, y1, x2, y2; box 0 = whole image), "
                             f"got {describe_shape(boxes)}")
        if visual_attention_mask is not None:
            if not isinstance(visual_attention_mask, Tensor) or tuple(visual_attention_mask.shape) != (B, N):
                raise ValueError(f"visual_attention_mask must have shape (B, N) = ({B}, {N}), got {describe_shape(visual_attention_mask)}")
            if bool((visual_attention_mask[:, 0] == 0).any()):
                raise ValueError("visual_attention_mask hides region 0, the whole image, which every row needs")
        check_pixel_boxes(boxes, image_size, visual_attention_mask)
        return B, T, N

    def _check_region_labels(self, B: int, N: int, masked_regions: Tensor | None, hidden_regions: Tensor | None,
                             region_targets: Tensor | None) -> None:
        for name, t in (("masked_regions", masked_regions), ("hidden_regions", hidden_regions)):
            if t is None:
                continue
            if not isinstance(t, Tensor) or tuple(t.shape) != (B, N):
                raise ValueError(f"{name} must have shape (B, N) = ({B}, {N}) (bool), got {describe_shape(t)}")
            if bool(t[:, 0].bool().any()):
                raise ValueError(f"{name}: region 0 is the whole image and is never masked")
        if region_targets is not None:
            C = self.config.visual_region_classes
            if not isinstance(region_targets, Tensor) or tuple(region_targets.shape) != (B, N, C):
                raise ValueError(f"region_targets must have shape (B, N, C) = ({B}, {N}, {C}), got {describe_shape(region_targets)}")
            if masked_regions is None:
                raise ValueError("region_targets need masked_regions (B, N): the regions whose class is predicted")

    # ---- encoding ---------------------------------------------------------------------------------
    def encode(self, input_ids: Tensor, visual_feats: Tensor, boxes: Tensor, image_size: Any,
               attention_mask: Tensor | None = None, visual_attention_mask: Tensor | None = None,
               token_type_ids: Tensor | None = None, hidden_regions: Tensor | None = None,
               region_masking: str = "features", output_attentions: bool = False) -> dict[str, Any]:
        """Encode checked image-text inputs (see :meth:`forward`); returns the encoder's dict
        (``"text"`` (B, T, D), ``"objects"`` (B, N, D), ``"sequence"`` (B, L, D), ``"layout"``, ``"attentions"``)."""
        B, T = input_ids.shape
        N, D = visual_feats.shape[1], self.config.hidden_size
        dev = input_ids.device
        token_type_ids = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        obj_mask = torch.ones(B, N, dtype=torch.long, device=dev) if visual_attention_mask is None else visual_attention_mask
        hidden = torch.zeros(B, N, dtype=torch.bool, device=dev) if hidden_regions is None else hidden_regions.bool()
        if region_masking == "features":  # precomputed mode: the hidden appearance becomes the learned mask vector
            mask_vec = self.object_mask_visual_embedding.weight[0].to(visual_feats.dtype)
            visual_feats = torch.where(hidden[..., None], mask_vec, visual_feats)  # (B, N, F)
        obj_visual = self.image_feature_extractor(visual_feats, boxes, image_size)  # (B, N, D)
        text_visual = obj_visual[:, :1].expand(B, T, D)  # every word gets the whole image's visual embedding
        ling = torch.where(hidden[..., None], self.object_mask_word_embedding.weight[0],
                           self.object_linguistic_embeddings.weight[0])  # (B, N, D) [IMG] or the mask word
        return self.vlbert(input_ids, token_type_ids, attention_mask, text_visual, obj_visual, ling, obj_mask,
                           output_attentions)

    def encode_text_only(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                         output_attentions: bool = False) -> dict[str, Any]:
        """Encode text-only sentences (the original's general corpus): no regions, the words' visual
        embedding is the learned ``aux_text_visual_embedding``, segment 0; the sequence is the words then [END]."""
        B, T = input_ids.shape
        D = self.config.hidden_size
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        w = self.aux_text_visual_embedding.weight[0]
        none = w.new_zeros(B, 0, D)
        return self.vlbert(input_ids, torch.zeros_like(input_ids), attention_mask, w.expand(B, T, D), none, none,
                           torch.zeros(B, 0, dtype=torch.long, device=input_ids.device), output_attentions)

    def forward(
        self,
        input_ids: Tensor,
        visual_feats: Tensor,
        boxes: Tensor,
        image_size: Any,
        *,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        mlm_labels: Tensor | None = None,
        masked_regions: Tensor | None = None,
        hidden_regions: Tensor | None = None,
        region_targets: Tensor | None = None,
        region_masking: str = "features",
        text_only_ids: Tensor | None = None,
        text_only_attention_mask: Tensor | None = None,
        text_only_mlm_labels: Tensor | None = None,
        output_attentions: bool = False,
    ) -> VLOutput:
        """Scores, and VL-BERT's pretraining losses for the labels given.

        Args:
            input_ids: (B, T) ``[CLS] text [SEP]`` word pieces. attention_mask: (B, T) 1 = real token.
            token_type_ids: (B, T) 0/1 (zeros if omitted).
            visual_feats: (B, N, F) appearance features, region 0 = the whole image, the model's dtype.
            boxes: (B, N, 4) pixel xyxy boxes, box 0 = ``[0, 0, W-1, H-1]`` (:func:`check_pixel_boxes`).
            image_size: (W, H) or (B, 2). visual_attention_mask: (B, N) 1 = real region.
            mlm_labels: (B, T) original id at masked words, -100 elsewhere -> ``losses["mlm"]``.
            masked_regions: (B, N) bool, the regions whose class is predicted (``random_mask_region``'s
                15%: the hidden ones plus the 10% kept). hidden_regions: (B, N) bool, the ones hidden
                from the model (``mvrc_ops == 1``; defaults to ``masked_regions``): their [IMG] token
                becomes ``object_mask_word_embedding``; with ``region_masking="features"`` their
                appearance becomes ``object_mask_visual_embedding``; with ``"pixels"`` the caller has
                already zeroed their pixels before the detector (:func:`mask_regions_in_pixels`).
            region_targets: (B, N, C) the detector's class scores -> ``losses["mrc"]`` on ``masked_regions``.
            text_only_ids: (B', T') text-only sentences (no image), text_only_attention_mask: (B', T'),
                text_only_mlm_labels: (B', T') -> ``losses["mlm_text"]`` (the original's auxiliary corpus).

        Returns:
            :class:`VLOutput` with ``logits["mlm"]`` (B, T, V), ``logits["mrc"]`` (B, N, C),
            ``logits["mlm_text"]`` (B', T', V) with text-only rows, the losses for the labels given
            (a batch without masked regions gives an MRC loss of 0 with finite gradients) and
            ``encoder`` = the image-text rows' encoder dict (plus ``"text_only"`` with text-only rows).

        Raises:
            ValueError: the checks of :meth:`check_inputs` (for the text-only rows: those of
                :func:`~vlp_course.models.blocks.check_text_inputs`), labels of the wrong shape or
                dtype, region 0 masked, region targets without ``masked_regions``, an unknown
                ``region_masking``.
        """
        if region_masking not in ("features", "pixels"):
            raise ValueError(f"region_masking must be 'features' or 'pixels', got {region_masking!r}")
        B, T, N = self.check_inputs(input_ids, visual_feats, boxes, image_size, attention_mask, visual_attention_mask,
                                    token_type_ids)
        check_labels(mlm_labels, (B, T), "mlm_labels")
        hidden_regions = masked_regions if hidden_regions is None else hidden_regions
        self._check_region_labels(B, N, masked_regions, hidden_regions, region_targets)
        if text_only_ids is not None:
            Bt, Tt = check_text_inputs(self.config, text_only_ids, None, text_only_attention_mask)
            check_labels(text_only_mlm_labels, (Bt, Tt), "text_only_mlm_labels")
        elif text_only_mlm_labels is not None:
            raise ValueError("text_only_mlm_labels need text_only_ids")

        enc = self.encode(input_ids, visual_feats, boxes, image_size, attention_mask, visual_attention_mask,
                          token_type_ids, hidden_regions, region_masking, output_attentions)
        logits: dict[str, Tensor] = {}
        losses: dict[str, Tensor] = {}
        if self.config.with_mlm_head:
            logits["mlm"] = self.vlbert.mlm_head(enc["text"])  # (B, T, V)
        if self.config.with_mvrc_head:
            logits["mrc"] = self.vlbert.mvrc_head(enc["objects"])  # (B, N, C)
        if mlm_labels is not None:
            losses["mlm"] = mlm_loss(logits["mlm"], mlm_labels)
        if region_targets is not None:
            # soft targets on the masked regions only; rows of zeros are no targets (``soft_cross_entropy``)
            target = torch.where(masked_regions.bool()[..., None], region_targets, torch.zeros_like(region_targets))
            losses["mrc"] = soft_cross_entropy(logits["mrc"], target)
        if text_only_ids is not None:
            enc["text_only"] = self.encode_text_only(text_only_ids, text_only_attention_mask, output_attentions)
            if self.config.with_mlm_head:
                logits["mlm_text"] = self.vlbert.mlm_head(enc["text_only"]["text"])  # (B', T', V)
            if text_only_mlm_labels is not None:
                losses["mlm_text"] = mlm_loss(logits["mlm_text"], text_only_mlm_labels)
        return VLOutput(loss=VLOutput.total(losses), losses=losses, logits=logits, encoder=enc)


# --------------------------------------------------------------------------------------------------
# Visual question answering
# --------------------------------------------------------------------------------------------------
class VLBERTForQuestionAnswering(VLBERTForPreTraining):
    """VL-BERT for VQA (``vqa/modules/resnet_vlbert_for_vqa.py``): the text is
    ``[CLS] question [SEP] [MASK] [SEP]`` (answer segment 1); the hidden state at the [MASK] goes through
    ``final_mlp`` = BERT transform (dense, GELU, LayerNorm), Dropout(0.1), Linear(D -> answers);
    loss: binary cross-entropy with soft scores x number of answers.

    It keeps the pretraining model's parameters (so pretrained weights load by name) and adds ``final_mlp``.
    Its transform ``final_mlp.0`` starts as the pretrained MLM head's transform, as the original's VQA
    config maps it (``cfgs/vqa/base_4x16G_fp32.yaml``, ``PARTIAL_PRETRAIN_PREFIX_CHANGES``:
    ``vlbert.mlm_head.predictions.transform->final_mlp.0``): :attr:`pretrained_prefix_changes`, which
    :func:`vlp_course.recipes.run.transfer_pretrained` applies.
    """

    #: (pretrained prefix, prefix here): parameters that start from a pretrained one of another name
    pretrained_prefix_changes = (("vlbert.mlm_head.predictions.transform.", "final_mlp.0."),)

    def __init__(self, config: VLBERTConfig, num_answers: int):
        super().__init__(config)
        if int(num_answers) <= 0:
            raise ValueError(f"num_answers must be positive, got {num_answers}")
        self.final_mlp = nn.Sequential(
            PredictionHeadTransform(config.hidden_size, config.hidden_act, config.layer_norm_eps),
            nn.Dropout(0.1),
            nn.Linear(config.hidden_size, int(num_answers)),
        )
        self.final_mlp.apply(lambda m: init_bert_weights(m, config.initializer_range))

    def forward(  # type: ignore[override]
        self,
        input_ids: Tensor,
        visual_feats: Tensor,
        boxes: Tensor,
        image_size: Any,
        answer_positions: Tensor,
        *,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        soft_scores: Tensor | None = None,
        output_attentions: bool = False,
    ) -> VLOutput:
        """Answer scores from the hidden state at ``answer_positions`` (B,) (the [MASK] of each row).

        Args: as :meth:`VLBERTForPreTraining.forward`, plus ``answer_positions`` (B,) int64 indices of
            the answer [MASK] and ``soft_scores`` (B, A) in [0, 1].

        Returns:
            :class:`VLOutput` with ``logits["vqa"]`` (B, A) (+ ``losses["vqa"]`` with ``soft_scores``).

        Raises:
            ValueError: positions not (B,) integers, outside [0, T) or on padding (attention_mask 0);
                plus :meth:`check_inputs`'s errors.
        """
        B, T, _ = self.check_inputs(input_ids, visual_feats, boxes, image_size, attention_mask, visual_attention_mask,
                                    token_type_ids)
        pos = answer_positions
        if not isinstance(pos, Tensor) or tuple(pos.shape) != (B,) or pos.is_floating_point() or pos.dtype == torch.bool:
            raise ValueError(f"answer_positions must be (B,) = ({B},) integer indices of the answer [MASK], got "
                             f"{describe_shape(pos)}{'' if not isinstance(pos, Tensor) else ' ' + str(pos.dtype)}")
        if bool(((pos < 0) | (pos >= T)).any()):
            raise ValueError(f"answer_positions must lie inside the text [0, {T}), got {pos.tolist()}")
        rows = torch.arange(B, device=input_ids.device)
        if attention_mask is not None and bool((attention_mask[rows, pos] == 0).any()):
            row = int(torch.nonzero(attention_mask[rows, pos] == 0)[0])
            raise ValueError(f"answer_positions[{row}] = {int(pos[row])} points at padding (attention_mask 0): "
                             "it must point at the answer [MASK] of the text")
        enc = self.encode(input_ids, visual_feats, boxes, image_size, attention_mask, visual_attention_mask,
                          token_type_ids, output_attentions=output_attentions)
        logits = self.final_mlp(enc["text"][rows, pos])  # (B, D) -> (B, A)
        losses = {} if soft_scores is None else {"vqa": vqa_bce_loss(logits, soft_scores)}
        return VLOutput(loss=VLOutput.total(losses), losses=losses, logits={"vqa": logits}, encoder=enc)


class VLBERTForNLVR2(VLBERTForPreTraining):
    """VL-BERT for NLVR2: **our adaptation**. VL-BERT has no NLVR2 head (its repository fine-tunes VQA,
    VCR and RefCOCO+ only). This follows the "pair" setting that UNITER published for single-stream
    models (Chen et al. 2020, its NLVR2 experiments; ChenRocks/UNITER ``model/nlvr2.py``,
    ``UniterForNlvr2Paired``): each image is encoded with the pair's statement in its own pass (rows
    ``s0, s0, s1, s1, ...``), the two pooled [CLS] vectors are concatenated, (2P, D) -> (P, 2D), and
    ``nlvr2_output`` = Linear(2D, 2) classifies the pair; cross-entropy. (UNITER's other setting,
    "triplet", runs one pass with a new image segment; not built here.)

    It needs ``config.with_pooler`` (True in VL-BERT's downstream configs; pretraining trains none, so
    the pooler starts fresh).
    """

    def __init__(self, config: VLBERTConfig):
        if not config.with_pooler:
            raise ValueError("VLBERTForNLVR2 reads the pooled [CLS]: build it with VLBERTConfig(with_pooler=True), "
                             "as VL-BERT's downstream configs do")
        super().__init__(config)
        self.nlvr2_output = nn.Linear(2 * config.hidden_size, 2)
        init_bert_weights(self.nlvr2_output, config.initializer_range)

    def forward(  # type: ignore[override]
        self,
        input_ids: Tensor,
        visual_feats: Tensor,
        boxes: Tensor,
        image_size: Any,
        *,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool = False,
    ) -> VLOutput:
        """Is each pair's statement true of its two images?

        Args:
            input_ids: (2P, T), pair p's statement in rows 2p and 2p+1
                (:func:`~vlp_course.models.blocks.repeat_for_pairs`).
            visual_feats, boxes: (2P, N, F), (2P, N, 4) pixel xyxy, box 0 the whole image: pair p's left
                image in row 2p, right in 2p+1. image_size, attention_mask … token_type_ids: as
                :meth:`VLBERTForPreTraining.forward`.
            labels: (P,) 0/1, 1 = the statement is true of the pair.

        Returns:
            :class:`VLOutput` with ``logits["nlvr2"]`` (P, 2) (+ ``losses["nlvr2"]``, cross-entropy, with ``labels``).

        Raises:
            ValueError: an odd row count, a pair whose two rows hold different statements, labels not
                (P,) 0/1, or :meth:`check_inputs`'s errors; all before any compute.
        """
        P = check_pair_rows(input_ids)
        check_pair_labels(labels, P)
        self.check_inputs(input_ids, visual_feats, boxes, image_size, attention_mask, visual_attention_mask, token_type_ids)
        enc = self.encode(input_ids, visual_feats, boxes, image_size, attention_mask, visual_attention_mask,
                          token_type_ids, output_attentions=output_attentions)
        logits = pair_logits(self.nlvr2_output, enc["pooled"], P)  # (2P, D) -> (P, 2D) -> (P, 2)
        losses = {} if labels is None else {"nlvr2": F.cross_entropy(logits, labels)}
        return VLOutput(loss=VLOutput.total(losses), losses=losses, logits={"nlvr2": logits}, encoder=enc)


# --------------------------------------------------------------------------------------------------
# Masking before the detector (end-to-end mode)
# --------------------------------------------------------------------------------------------------
def zero_box_pixels(images: Tensor, boxes: Tensor, selected: Tensor) -> Tensor:
    """Zero the pixels of the selected boxes as VL-BERT's dataset does (``conceptual_captions.py``:
    ``image[:, int(y1):int(y2) + 1, int(x1):int(x2) + 1] = 0``): columns ``int(x1) .. int(x2)`` and
    rows ``int(y1) .. int(y2)``, both ends included (boxes are clamped to [0, W-1] x [0, H-1] first).

    Args:
        images: (B, C, H, W). boxes: (B, N, 4) pixel xyxy, >= 0. selected: (B, N) bool.

    Returns:
        (B, C, H, W) a masked copy.

    Raises:
        ValueError: on other shapes or negative coordinates.
    """
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {describe_shape(images)}")
    B, _, H, W = images.shape
    if not isinstance(boxes, Tensor) or boxes.ndim != 3 or boxes.shape[0] != B or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (B, N, 4) with B = {B}, got {describe_shape(boxes)}")
    if not isinstance(selected, Tensor) or tuple(selected.shape) != tuple(boxes.shape[:2]):
        raise ValueError(f"selected must have shape (B, N) = {tuple(boxes.shape[:2])}, got {describe_shape(selected)}")
    if bool((boxes < 0).any()):
        raise ValueError("boxes must be pixel coordinates >= 0")
    b = boxes.float()
    x1, x2 = b[..., 0].clamp(max=W - 1).long(), b[..., 2].clamp(max=W - 1).long()  # int() of a non-negative value
    y1, y2 = b[..., 1].clamp(max=H - 1).long(), b[..., 3].clamp(max=H - 1).long()  # (B, N) each
    xs = torch.arange(W, device=images.device)[None, None, None, :]  # (1, 1, 1, W)
    ys = torch.arange(H, device=images.device)[None, None, :, None]  # (1, 1, H, 1)
    inside = ((xs >= x1[..., None, None]) & (xs <= x2[..., None, None])
              & (ys >= y1[..., None, None]) & (ys <= y2[..., None, None]))  # (B, N, H, W)
    hide = (inside & selected.bool()[..., None, None]).any(1)  # (B, H, W)
    return images.masked_fill(hide[:, None], 0.0)  # (B, C, H, W)


def mask_regions_in_pixels(images: Tensor, boxes: Tensor, masked_regions: Tensor,
                           detector: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """End-to-end masking: zero the masked RoIs' pixels (:func:`zero_box_pixels`), *then* run the
    detector on every box.

    Neither the masked region's feature nor the whole-image feature (box 0, re-pooled from the
    modified image) can then show the hidden object (VL-BERT ``mask_raw_pixels``).

    Args:
        images: (B, 3, H, W). boxes: (B, N, 4) pixel xyxy (box 0 = whole image).
        masked_regions: (B, N) bool, the hidden regions (region 0 must be False).
        detector: ``detector(images, boxes) -> (B, N, F)`` features.

    Returns:
        (B, N, F) features of the masked images.

    Raises:
        ValueError: region 0 masked, plus :func:`zero_box_pixels`'s errors.
    """
    if bool(masked_regions[:, 0].any()):
        raise ValueError("region 0 is the whole image and is never masked")
    return detector(zero_box_pixels(images, boxes, masked_regions.bool()), boxes)


__all__ += ["MVRCHead", "MLMHead"]
