"""VisualBERT's recipe on the scenes: how the model is sized, fed and pretrained.

VisualBERT (Li et al. 2019, section 3.3; uclanlp/visualbert ``pytorch_pretrained_bert/modeling.py``)
has no box input: the region's box is appended to its feature, so ``visual_embedding_dim`` is F + 4.
It pretrains with two tasks only: masked language modelling on the caption (``"mlm"``) and
sentence-image prediction (``"itm"``). VQA reads the ``[MASK]`` of ``[CLS] question ? [MASK] [SEP]``
(the scenes' questions end so for this model, :func:`~vlp_course.recipes.base.scene_tensors`).

Shapes: B batch, T text tokens, N regions, F feature width, A answers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vlp_course.models.blocks import VLOutput
from vlp_course.models.visualbert import (VisualBertConfig, VisualBertForNLVR2, VisualBertForPreTraining,
                                         VisualBertForQuestionAnswering, pair_regions)
from vlp_course.recipes.base import SceneAdapter
from vlp_course.text.vocab import MASK

__all__ = ["VisualBertAdapter"]


class VisualBertAdapter(SceneAdapter):
    """Feeds :mod:`vlp_course.models.visualbert` from the scenes."""

    kind = "visualbert"

    def config(self, num_answers: int | None = None) -> VisualBertConfig:
        """The recipe's sizes, region features of width F + 4, and the scenes vocabulary's [MASK] id."""
        return VisualBertConfig(**self.sizes(), num_hidden_layers=self.recipe.layers,
                                visual_embedding_dim=self.st.feature_width + 4, num_answers=num_answers or 2,
                                mask_token_id=self.st.ids[MASK])

    def pretraining_model(self) -> VisualBertForPreTraining:
        return VisualBertForPreTraining(self.config())

    def qa_model(self) -> VisualBertForQuestionAnswering:
        return VisualBertForQuestionAnswering(self.config(len(self.st.answers)))

    def regions(self, batch: dict, zero_image: bool = False) -> tuple[Tensor, Tensor]:
        """(B, N, F + 4) features with the box (x1, y1, x2, y2) / image size appended, and the (B, N) region mask."""
        feats, boxes, region_mask = self.images(batch, zero_image)
        return torch.cat([feats, boxes / self.st.image_size], -1), region_mask  # (B, N, F + 4)

    def pretrain_step(self, model: VisualBertForPreTraining, batch: dict,
                      generator: torch.Generator | None = None) -> VLOutput:
        """One pretraining step's forward: ``losses["mlm"]``, ``losses["itm"]`` and their sum ``loss``."""
        # 1. pair: batch["input_ids"] is the caption of batch["image"] (is_matched 1) or of another image (0)
        # 2. mask words: BERT's 15%, of those 80% [MASK] / 10% random / 10% kept
        input_ids, mlm_labels = self.mask_words(batch, generator)
        # 3. lay out regions: feature ++ normalised box, after the text in one sequence
        visual_feats, visual_attention_mask = self.regions(batch)
        # 4. mask regions: none; VisualBERT has no region objective
        # 5. model -> losses: MLM on the caption, ITM on [CLS]
        return model(input_ids, visual_feats, attention_mask=batch["attention_mask"],
                     visual_attention_mask=visual_attention_mask, mlm_labels=mlm_labels, is_matched=batch["is_matched"])

    def vqa_step(self, model: VisualBertForQuestionAnswering, batch: dict, zero_image: bool = False) -> VLOutput:
        """``logits["vqa"]`` (B, A) read at each question's [MASK], and ``losses["vqa"]`` (KL) with ``soft_scores``."""
        visual_feats, visual_attention_mask = self.regions(batch, zero_image)
        return model(batch["input_ids"], visual_feats, attention_mask=batch["attention_mask"],
                     visual_attention_mask=visual_attention_mask, soft_scores=batch.get("soft_scores"))

    def nlvr2_model(self, vocab_size: int) -> VisualBertForNLVR2:
        return VisualBertForNLVR2(self.nlvr2_config(vocab_size))

    def nlvr2_step(self, model: VisualBertForNLVR2, batch: dict, zero_image: bool = False) -> VLOutput:
        """One pass: the left image's regions (type 0) then the right's (type 1) after the statement."""
        left = self.regions({"image": batch["left"]}, zero_image)  # (P, N, F + 4), (P, N)
        right = self.regions({"image": batch["right"]}, zero_image)
        visual_feats, visual_attention_mask, visual_types = pair_regions(
            torch.stack([left[0], right[0]], 1), torch.stack([left[1], right[1]], 1))  # (P, 2N, F + 4), (P, 2N) x 2
        return model(batch["input_ids"], visual_feats, batch["attention_mask"], visual_attention_mask,
                     visual_token_type_ids=visual_types, labels=batch.get("labels"))
