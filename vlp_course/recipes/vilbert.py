"""ViLBERT's recipe on the scenes: how the two-stream model is sized, fed and pretrained.

ViLBERT (Lu et al. 2019, section 3.2; facebookresearch/vilbert-multi-task ``vilbert/vilbert.py`` and
``vilbert/datasets/concept_cap_dataset.py``) reads the regions in a stream of their own: each
region's feature and its 5-d location ``[x1/W, y1/H, x2/W, y2/H, area/(W*H)]``, after a *global
image token* (the mean feature, location ``[0, 0, 1, 1, 1]``) that the data loader prepends.

Pretraining has three tasks: masked words (``mlm``), masked multi-modal modelling (``mrm``: 15% of
the regions, of those 90% zeroed and 10% kept, predict the detector's class distribution, KL) and
multimodal alignment (``itm``). Two details decide what the model can learn:

* **The global token is computed after region masking.** The original loader masks first
  (``random_region``) and averages afterwards (``g_image_feat``). Averaged before masking, the
  global feature would hold the hidden ones: N x global - (sum of the visible regions) would give
  back exactly the feature of the masked region.
* **Which pairs count in the masked losses.** Two original recipes exist, chosen by
  ``ViLBERTConfig.masked_loss_on_mismatched``: the NeurIPS-19 code (jiasenlu/vilbert_beta,
  ``BertForMultiModalPreTraining``) counts masked words and regions on every pair; the 12-in-1 code's
  ``train_concap.py --objective 1`` (the README's pretraining command) ignores them on mismatched
  pairs. This recipe uses the 12-in-1 one (``masked_loss_on_mismatched=False``, the config's default).

Co-TRM schedule: L text layers, L visual layers and L Co-TRMs with
``v_biattention_id = t_biattention_id = [0, ..., L-1]``: a Co-TRM, then one layer of each stream,
L times (the original's config needs ``max(t_biattention_id) < num_hidden_layers``).

VQA reads ``vil_prediction`` on the fused pooled vector.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vlp_course.data.scenes import SHAPES
from vlp_course.models.blocks import VLOutput
from vlp_course.models.vilbert import ViLBERTConfig, ViLBERTForPreTraining, ViLBERTForVLTasks, prepare_regions
from vlp_course.pretraining.regions import mask_regions
from vlp_course.recipes.base import SceneAdapter

__all__ = ["ViLBERTAdapter"]


class ViLBERTAdapter(SceneAdapter):
    """Feeds :mod:`vlp_course.models.vilbert` from the scenes (detector classes: the scene shapes)."""

    kind = "vilbert"

    def config(self, num_answers: int | None = None) -> ViLBERTConfig:
        r, L = self.recipe, self.recipe.layers
        return ViLBERTConfig(**self.sizes(), num_hidden_layers=L, v_feature_size=self.st.feature_width, v_hidden_size=r.hidden,
                             v_num_hidden_layers=L, v_num_attention_heads=r.heads, v_intermediate_size=r.ffn,
                             bi_hidden_size=r.hidden, bi_num_attention_heads=r.heads, bi_intermediate_size=r.ffn,
                             # a Co-TRM before each layer pair: C0, (V0, T0), C1, (V1, T1), ...
                             v_biattention_id=list(range(L)), t_biattention_id=list(range(L)),
                             v_target_size=len(SHAPES), num_labels=num_answers or 2, masked_loss_on_mismatched=False,
                             v_hidden_dropout_prob=0.0, v_attention_probs_dropout_prob=0.0, fused_dropout_prob=0.0)

    def pretraining_model(self) -> ViLBERTForPreTraining:
        return ViLBERTForPreTraining(self.config())

    def qa_model(self) -> ViLBERTForVLTasks:
        return ViLBERTForVLTasks(self.config(len(self.st.answers)))

    def regions(self, feats: Tensor, boxes: Tensor, region_mask: Tensor) -> dict[str, Tensor]:
        """The global token (mean of ``feats``, the features as given) prepended to the regions:
        ``{"features": (B, N+1, F), "locations": (B, N+1, 5), "image_attention_mask": (B, N+1)}``."""
        S = self.st.image_size
        return prepare_regions(feats, boxes, S, S, region_mask)

    def pretrain_step(self, model: ViLBERTForPreTraining, batch: dict,
                      generator: torch.Generator | None = None) -> VLOutput:
        # 1. pair: batch["input_ids"] is the caption of batch["image"] (is_matched 1) or of another image (0)
        # 2. mask words: BERT's 15%, of those 80% [MASK] / 10% random / 10% kept
        input_ids, mlm_labels = self.mask_words(batch, generator)
        # 3. lay out regions: the N regions' features (B, N, F) and pixel boxes (B, N, 4)
        feats, boxes, region_mask = self.images(batch)
        # 4. mask regions: 15% of the real regions, of those 90% zeroed / 10% kept (random_region) ...
        masking = mask_regions(feats, scheme="vilbert", region_mask=region_mask, generator=generator)
        # ... THEN the global token, the mean of the masked features (g_image_feat), and 5-d locations
        regions = self.regions(masking.features, boxes, region_mask)  # (B, N+1, F), (B, N+1, 5), (B, N+1)
        no_global = torch.zeros_like(masking.selected[:, :1])
        masked_regions = torch.cat([no_global, masking.selected], 1)  # (B, N+1) bool; the global token never
        probs = self.take("det_probs", batch)  # (B, N, C) the detector's class distribution
        region_targets = torch.cat([torch.zeros_like(probs[:, :1]), probs], 1)  # (B, N+1, C); row 0 not read
        # 5. model -> losses: mlm + mrm (KL) + itm; masked losses only on matched pairs (--objective 1)
        return model(input_ids, regions["features"], regions["locations"], attention_mask=batch["attention_mask"],
                     visual_attention_mask=regions["image_attention_mask"], mlm_labels=mlm_labels,
                     is_matched=batch["is_matched"], masked_regions=masked_regions, region_targets=region_targets)

    def vqa_step(self, model: ViLBERTForVLTasks, batch: dict, zero_image: bool = False) -> VLOutput:
        regions = self.regions(*self.images(batch, zero_image))
        return model(batch["input_ids"], regions["features"], regions["locations"], attention_mask=batch["attention_mask"],
                     visual_attention_mask=regions["image_attention_mask"], soft_scores=batch.get("soft_scores"))

    def nlvr2_model(self, vocab_size: int) -> ViLBERTForVLTasks:
        return ViLBERTForVLTasks(self.nlvr2_config(vocab_size))

    def nlvr2_step(self, model: ViLBERTForVLTasks, batch: dict, zero_image: bool = False) -> VLOutput:
        """Two passes, one per image, the statement repeated (``task_utils.py``); ``vil_binary_prediction``."""
        rows = self.pair_rows(batch)
        regions = self.regions(*self.images(rows, zero_image))  # (2P, N+1, ·)
        return model.nlvr2(rows["input_ids"], regions["features"], regions["locations"], rows["attention_mask"],
                           regions["image_attention_mask"], labels=batch.get("labels"))
