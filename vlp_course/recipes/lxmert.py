"""LXMERT's recipe on the scenes: how the model is sized, fed and pretrained.

LXMERT (Tan & Bansal 2019, section 3.1; airsplay/lxmert ``src/pretrain/lxmert_pretrain.py``,
``src/pretrain/lxmert_data.py``, ``src/lxrt/modeling.py`` ``LXRTPretraining``) pretrains with five
tasks at once:

1. masked cross-modality language modelling (``"mlm"``; also on mismatched pairs, airsplay/lxmert#51);
2. RoI-feature regression of the masked objects (``"feat"``, smooth-L1);
3. detected-label classification, object and attribute (``"obj"``, ``"attr"``), on every object,
   weighted by the detector's confidence;
4. cross-modality matching (``"itm"``, 1 = the sentence belongs to the image);
5. image question answering (``"qa"``): the original's pretraining sentences include the VQA, GQA
   and VG-QA *questions* of its images; a question shown with its own image is labelled with one
   of its answers, drawn in proportion to the answer's score, and gets a softmax cross-entropy over
   the answer table (``convert_example_to_features`` in ``lxmert_pretrain.py``; the loss in
   ``LXRTPretraining.forward``). A caption, a question without a known answer, or a question
   paired with another image gets no QA label (-1 there, -100 here).

Here a fixed share of every pretraining batch (:attr:`LxmertAdapter.question_fraction`, our choice)
shows a question of a *training* image instead of a caption; like every sentence it is then
masked, possibly swapped for another image's (``is_matched``), and matched.

Boxes are normalised (x1, y1, x2, y2) = pixel corners / image size (airsplay ``lxmert_data.py``).
The object and attribute labels are the detector's top shape and top colour, weighted by the
detector's confidence in them (its top probability; 0 for padding), as the original's
``objects_id`` / ``objects_conf`` and ``attrs_id`` / ``attrs_conf`` from the bottom-up detector.
VQA reads the pooled [CLS].
"""

from __future__ import annotations

import torch
from torch import Tensor

from vlp_course.data.scenes import COLORS, SHAPES
from vlp_course.models.blocks import VLOutput
from vlp_course.models.lxmert import LxmertConfig, LxmertForNLVR2, LxmertForPreTraining, LxmertForQuestionAnswering
from vlp_course.pretraining.losses import IGNORE_INDEX
from vlp_course.pretraining.regions import mask_regions
from vlp_course.recipes.base import SceneAdapter
from vlp_course.text.vocab import PAD

__all__ = ["LxmertAdapter"]


def _pad_to(x: Tensor, length: int, value: int) -> Tensor:
    """(B, T) -> (B, length), padded at the end with ``value``."""
    return torch.nn.functional.pad(x, (0, length - x.shape[1]), value=value)


class LxmertAdapter(SceneAdapter):
    """Feeds :mod:`vlp_course.models.lxmert` from the scenes, with all five pretraining tasks."""

    kind = "lxmert"
    #: the share of each pretraining batch whose sentence is a question (the first rows of the batch)
    question_fraction = 1 / 3

    def __init__(self, st, recipe):
        super().__init__(st, recipe)
        # the questions of each image: (I, Q) question rows, padded with -1, and (I,) counts
        counts = torch.bincount(st.q_image, minlength=len(st.ds))
        table = torch.full((len(st.ds), max(int(counts.max()), 1)), -1, dtype=torch.long)
        order = torch.argsort(st.q_image, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(len(order)) - starts[st.q_image[order]]
        table[st.q_image[order], slot] = order
        self.question_table, self.question_count = table, counts

    def config(self, num_answers: int | None = None) -> LxmertConfig:
        L = self.recipe.layers
        return LxmertConfig(**self.sizes(), l_layers=L, r_layers=max(1, L // 2), x_layers=max(1, L // 2),
                            visual_feat_dim=self.st.feature_width, num_object_labels=len(SHAPES), num_attr_labels=len(COLORS),
                            num_qa_labels=num_answers or len(self.st.answers), task_qa=True)

    def pretraining_model(self) -> LxmertForPreTraining:
        return LxmertForPreTraining(self.config())

    def qa_model(self) -> LxmertForQuestionAnswering:
        return LxmertForQuestionAnswering(self.config(len(self.st.answers)))

    def boxes(self, batch: dict, zero_image: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(B, N, F) features, (B, N, 4) normalised (x1, y1, x2, y2) boxes in [0, 1], (B, N) region mask."""
        feats, boxes, region_mask = self.images(batch, zero_image)
        return feats, boxes / self.st.image_size, region_mask

    def ask_questions(self, batch: dict, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Replace the sentence of the batch's first ``round(B * question_fraction)`` rows by a question.

        A matched row (``is_matched`` 1) shows a question of its own image and is labelled with one of
        the question's answers, drawn in proportion to its soft score (``lxmert_pretrain.py``
        ``convert_example_to_features``); a mismatched row shows a question of another image of the
        same split and gets no label. The other rows keep their caption, without a label.

        Returns:
            ``(input_ids, attention_mask, qa_labels)``: (B, T') with T' = max(caption, question length),
            and (B,) long answer indices or -100.
        """
        st, img = self.st, batch["image"]
        dev, B = img.device, img.shape[0]
        k = round(B * self.question_fraction)
        T = max(batch["input_ids"].shape[1], st.q_ids.shape[1])
        input_ids = _pad_to(batch["input_ids"], T, st.ids[PAD]).clone()  # (B, T')
        attention_mask = _pad_to(batch["attention_mask"], T, 0).clone()  # (B, T')
        qa_labels = torch.full((B,), IGNORE_INDEX, dtype=torch.long, device=dev)
        if k == 0:
            return input_ids, attention_mask, qa_labels
        own = img[:k]
        matched = batch["is_matched"][:k] == 1
        # another image of the same split (training or held-out): a shift in [1, n) within the split
        lo = torch.where(own < st.n_train, 0, st.n_train)
        n = torch.where(own < st.n_train, st.n_train, len(st.ds) - st.n_train)
        shift = 1 + (torch.rand(k, generator=generator, device=dev) * (n - 1)).long()
        shown = torch.where(matched, own, lo + (own - lo + shift) % n).cpu()  # the image whose question is asked
        pick = (torch.rand(k, generator=generator, device=dev).cpu() * self.question_count[shown]).long()
        q = self.question_table[shown, pick]  # (k,) question rows
        input_ids[:k] = _pad_to(st.q_ids[q], T, st.ids[PAD]).to(dev)
        attention_mask[:k] = _pad_to(st.q_mask[q], T, 0).to(dev)
        scores = st.q_target[q].to(dev).float()  # (k, A) soft scores
        has_answer = scores.sum(-1) > 0
        drawn = torch.multinomial(torch.where(has_answer[:, None], scores, torch.ones_like(scores)), 1,
                                  generator=generator).squeeze(1)  # (k,)
        qa_labels[:k] = torch.where(matched & has_answer, drawn, torch.full_like(drawn, IGNORE_INDEX))
        return input_ids, attention_mask, qa_labels

    def pretrain_step(self, model: LxmertForPreTraining, batch: dict,
                      generator: torch.Generator | None = None) -> VLOutput:
        # 1. pair: batch["input_ids"] is a caption of batch["image"] (is_matched 1) or of another image (0);
        #    the first rows show a question instead, with its answer as the QA label when matched
        input_ids, attention_mask, qa_labels = self.ask_questions(batch, generator)
        # 2. mask words: BERT's 15%, of those 80% [MASK] / 10% random / 10% kept, on every sentence
        input_ids, mlm_labels = self.mask_words({"input_ids": input_ids, "attention_mask": attention_mask}, generator)
        # 3. lay out regions: features and normalised (x1, y1, x2, y2) boxes, a stream of their own
        feats, boxes, region_mask = self.boxes(batch)
        # 4. mask regions: 15% of the real objects, of those 80% zeroed / 10% another object's feature / 10% kept
        masking = mask_regions(feats, scheme="lxmert", region_mask=region_mask, generator=generator)
        # 5. model -> losses: the five tasks; the detector's object (shape) and attribute (colour) labels on
        #    every object, weighted by its confidence in them; the feature regression on the masked ones
        real = region_mask.float()  # (B, N) padding gets weight 0
        obj_confidence = self.take("det_probs", batch).max(-1).values * real  # (B, N)
        attr_confidence = self.take("attr_probs", batch).max(-1).values * real  # (B, N)
        return model(input_ids, masking.features, boxes, attention_mask, region_mask,
                     mlm_labels=mlm_labels, is_matched=batch["is_matched"],
                     obj_labels=self.take("det_labels", batch).clamp(min=0), obj_confidence=obj_confidence,
                     attr_labels=self.take("attr_labels", batch).clamp(min=0), attr_confidence=attr_confidence,
                     feat_targets=feats, masked_regions=masking.selected, qa_labels=qa_labels)

    def vqa_step(self, model: LxmertForQuestionAnswering, batch: dict, zero_image: bool = False) -> VLOutput:
        feats, boxes, region_mask = self.boxes(batch, zero_image)
        return model(batch["input_ids"], feats, boxes, batch["attention_mask"], region_mask,
                     soft_scores=batch.get("soft_scores"))

    def nlvr2_model(self, vocab_size: int) -> LxmertForNLVR2:
        return LxmertForNLVR2(self.nlvr2_config(vocab_size))

    def nlvr2_step(self, model: LxmertForNLVR2, batch: dict, zero_image: bool = False) -> VLOutput:
        """Two passes, one per image, the statement repeated (``nlvr2_model.py``)."""
        rows = self.pair_rows(batch)
        feats, boxes, region_mask = self.boxes(rows, zero_image)  # (2P, N, F), (2P, N, 4), (2P, N)
        return model(rows["input_ids"], feats, boxes, rows["attention_mask"], region_mask, labels=batch.get("labels"))
