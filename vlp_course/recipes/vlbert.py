"""VL-BERT's recipe on the scenes: how the model is sized, fed and pretrained.

VL-BERT (Su et al., ICLR 2020, section 3; jackroos/VL-BERT) reads one sequence
``[CLS] caption [SEP] [IMG]_0 ... [IMG]_n [END]`` where region 0 is the whole image (box
``[0, 0, W-1, H-1]``). In the end-to-end mode (``MASK_RAW_PIXELS``, the one used here with the
detector features) region 0's feature is the detector's pooling of the whole-image box; in
precomputed-feature mode (used with the oracle features, which have no pixels) it is the mean of the
regions' features (``pretrain/data/datasets/conceptual_captions.py``, ``add_image_as_a_box``).

Pretraining, as ``pretrain/modules/resnet_vlbert_for_pretraining_multitask.py`` with the released
configs (``WITH_REL_LOSS: false``):

* **pair**: every image with one of its *own* captions. VL-BERT has no sentence-image matching task
  (the dataset then never swaps captions), so the sampler's swapped captions are replaced by a caption
  of the row's image.
* **mask words** (``mlm``): whole-word masking as ``random_word_wwm``: each *word* is selected with
  probability 0.15 and gets *one* 80/10/10 decision for all its pieces ([MASK] / random / kept);
  every piece of a selected word is a target. The scene vocabulary is word-level (one token per
  word), so here a word is one token.
* **mask regions** (``mrc``): each real region but region 0 is selected with probability 0.15
  (``random_mask_region``); 90% of those are hidden (appearance -> ``object_mask_visual_embedding``,
  [IMG] token -> ``object_mask_word_embedding``), 10% kept; the target is the detector's class-score
  vector of every selected region. How a region is hidden follows the original's two modes:
  with the detector features, **in the pixels** (end-to-end, ``mask_raw_pixels``): the hidden
  objects' pixels are zeroed and every feature, the whole image's included, is re-extracted by the
  detector from the modified image (:meth:`~vlp_course.data.vl_tensors.SceneTensors.features_with_hidden_pixels`,
  cached per image and hidden set); with the oracle features, in the features (precomputed mode:
  appearance -> ``object_mask_visual_embedding``, the whole image's mean recomputed without them).
  Either way the whole-image token cannot show a hidden region.
* **text-only corpus** (``mlm_text``): the original adds, in the same step, MLM on sentences from
  BooksCorpus and English Wikipedia (``pretrain/data/datasets/general_corpus.py``: 64 word pieces of
  running text, no [CLS]/[SEP], no image; the words get ``aux_text_visual_embedding``). The course
  has no such corpus offline, so it uses **real English news text that ships with gensim** (the Lee
  corpus, :func:`vlp_course.text.corpora.lee_sentences`), **tokenised with the scene vocabulary**:
  the scenes' 90-odd words ("the", "is", "of", "in", "on", "one", "two", "red", "left", ...) keep
  their ids and every other word becomes ``[UNK]`` (about three words in four). ``[UNK]`` is never
  selected for masking, so the ``mlm_text`` loss is the prediction of the scene words that occur in
  real English sentences, from English context. Rows are ``text_only_length`` tokens of running
  text (a sentence and the ones after it, as ``general_corpus.py`` fills ``min_seq_len``), half as
  many rows as captions per step (the original: as many, 64 tokens) to keep the CPU step short.

**One deviation, named**: the original starts both visual LayerNorms at weight 0 (``cfgs/*/*.yaml``:
``visual_scale_text_init`` and ``visual_scale_object_init`` 0.0), so that the model starts as the BERT
it is initialised from and the image fades in over ten epochs of Conceptual Captions. In a budget of a
few thousand CPU steps the image hardly fades in, so the course's recipe starts the regions' LayerNorm
at 1 (:attr:`~vlp_course.recipes.base.Recipe.visual_scale_object_init`) and keeps the words' at 0
(``benchmarks/bench_learning.py --vlbert`` measures both and more; the model's own default stays 0).

VQA reads the ``[MASK]`` of ``[CLS] question ? [SEP] [MASK] [SEP]`` (answer slot in segment B;
``vqa/modules/resnet_vlbert_for_vqa.py``).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from vlp_course.data.scenes import SHAPES
from vlp_course.models.blocks import VLOutput
from vlp_course.models.vlbert import (VLBERTConfig, VLBERTForNLVR2, VLBERTForPreTraining, VLBERTForQuestionAnswering, whole_image_boxes,
                                      zero_box_pixels)
from vlp_course.pretraining.regions import ZERO, mask_regions
from vlp_course.pretraining.text_masking import IGNORE_INDEX, apply_mask_decisions
from vlp_course.recipes.base import SceneAdapter
from vlp_course.text.vocab import MASK, PAD, UNK, tokenize

__all__ = ["VLBERTAdapter", "mask_whole_words", "text_only_corpus"]


def mask_whole_words(input_ids: Tensor, word_ids: Tensor, vocab_size: int, mask_token_id: int, *,
                     special_token_ids=(), mlm_probability: float = 0.15,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """VL-BERT's whole-word masking (``random_word_wwm`` in ``conceptual_captions.py`` and
    ``general_corpus.py``): each word is selected with probability ``mlm_probability``; a selected
    word gets **one** draw: < 0.8 all its pieces -> [MASK], < 0.9 each piece -> a random token,
    else kept; every piece of a selected word is labelled with its original id.

    (:func:`vlp_course.pretraining.text_masking.mask_tokens` with ``whole_word_ids`` selects words
    too, but makes the 80/10/10 choice per piece, as BERT's ``create_pretraining_data.py``.)

    Args:
        input_ids: (B, T) int64. word_ids: (B, T) int64 index of each token's word in its row
            (pieces of one word share it), -1 for positions that are no word (specials, padding).
        vocab_size: V; random tokens are drawn from [0, V) without ``special_token_ids``.
        mask_token_id: the id of [MASK]. special_token_ids: ids never drawn as random tokens.

    Returns:
        ``(masked_ids, labels)`` (B, T); labels hold the original id at selected pieces, -100 elsewhere.

    Raises:
        ValueError: if ``word_ids`` is not (B, T) integers or ``mlm_probability`` is outside [0, 1].
    """
    if not isinstance(word_ids, Tensor) or word_ids.shape != input_ids.shape or word_ids.is_floating_point():
        raise ValueError(f"word_ids must be (B, T) = {tuple(input_ids.shape)} integers, got "
                         f"{tuple(word_ids.shape) if isinstance(word_ids, Tensor) else type(word_ids).__name__}")
    if not 0.0 <= float(mlm_probability) <= 1.0:
        raise ValueError(f"mlm_probability must be in [0, 1], got {mlm_probability}")
    B, T = input_ids.shape
    dev = input_ids.device
    n_words = max(int(word_ids.max()) + 1, 1) if word_ids.numel() else 1
    # one selection draw and one 80/10/10 draw per word, spread to its pieces
    u_select = torch.rand(B, n_words, generator=generator, device=dev)  # (B, words)
    u_action = torch.rand(B, n_words, generator=generator, device=dev)  # (B, words)
    w = word_ids.clamp_min(0)
    selected = (torch.gather(u_select, 1, w) < mlm_probability) & (word_ids >= 0)  # (B, T)
    uniform = torch.gather(u_action, 1, w)  # (B, T) the word's draw at each of its pieces
    specials = torch.as_tensor(sorted({int(i) for i in special_token_ids}), dtype=torch.long, device=dev)
    candidates = torch.arange(int(vocab_size), device=dev)
    candidates = candidates[~torch.isin(candidates, specials)]
    random_ids = candidates[torch.randint(len(candidates), (B, T), generator=generator, device=dev)]  # per piece
    masked = apply_mask_decisions(input_ids, selected, uniform, random_ids, mask_token_id)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return masked, labels


def text_only_corpus(vocab, length: int = 16) -> Tensor:
    """The auxiliary text-only rows: (S, length) ids of the Lee corpus's English sentences in ``vocab``.

    Row i is sentence i followed by the next sentences until ``length`` tokens (as
    ``general_corpus.py`` fills its ``min_seq_len``), lower-cased words without punctuation
    (:func:`vlp_course.text.tokenize`), unknown words -> ``[UNK]``; no [CLS]/[SEP], as the original's rows.
    """
    from vlp_course.text.corpora import lee_sentences

    sents = [vocab.encode(tokenize(s)) for s in lee_sentences()]
    sents = [s for s in sents if s]
    rows = []
    for i in range(len(sents)):
        row, j = [], i
        while len(row) < length:
            row += sents[j % len(sents)]
            j += 1
        rows.append(row[:length])
    return torch.tensor(rows, dtype=torch.long)  # (S, length)


class VLBERTAdapter(SceneAdapter):
    """Feeds :mod:`vlp_course.models.vlbert` from the scenes (see the module docstring)."""

    kind = "vlbert"
    #: tokens per text-only row, and text-only rows per caption row
    text_only_length = 16
    text_only_share = 0.5

    def __init__(self, st, recipe):
        super().__init__(st, recipe)
        self._text_only: Tensor | None = None
        first = torch.searchsorted(st.cap_image, torch.arange(len(st.feats)))  # captions are sorted by image
        self._caption_start, self._caption_count = first, torch.bincount(st.cap_image, minlength=len(st.feats))

    @property
    def pixel_masking(self) -> bool:
        """Hide regions in the pixels (detector features, end-to-end mode) rather than in the features."""
        return self.st.features == "detector"

    @property
    def text_only(self) -> Tensor:
        """(S, ``text_only_length``) the text-only corpus in the scene vocabulary (built once)."""
        if self._text_only is None:
            self._text_only = text_only_corpus(self.st.vocab, self.text_only_length)
        return self._text_only

    def config(self, num_answers: int | None = None) -> VLBERTConfig:
        # the regions' visual LayerNorm starts at 1, not at the original's 0 (see Recipe); the words' stays at 0
        return VLBERTConfig(**self.sizes(), num_hidden_layers=self.recipe.layers, visual_feature_size=self.st.feature_width,
                            geometry_dim=8, visual_region_classes=len(SHAPES), obj_downsample_dropout=0.0,
                            visual_scale_object_init=self.recipe.visual_scale_object_init)

    def pretraining_model(self) -> VLBERTForPreTraining:
        return VLBERTForPreTraining(self.config())

    def qa_model(self) -> VLBERTForQuestionAnswering:
        return VLBERTForQuestionAnswering(self.config(), len(self.st.answers))

    # ---- the pieces of a step ----------------------------------------------------------------------
    def own_captions(self, batch: dict, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(B, T) ids and mask: the batch's caption where it is the image's own, else one of the image's own
        captions drawn at random (VL-BERT pretrains on matched pairs only)."""
        img = batch["image"].cpu()
        u = torch.rand(len(img), generator=generator, device=batch["image"].device).cpu()
        row = self._caption_start[img] + (u * self._caption_count[img]).long().clamp(max=self._caption_count[img] - 1)
        keep = batch["is_matched"].bool()
        T = self.st.cap_ids.shape[1]
        given = torch.nn.functional.pad(batch["input_ids"], (0, T - batch["input_ids"].shape[1]), value=self.st.ids[PAD])
        given_mask = torch.nn.functional.pad(batch["attention_mask"], (0, T - batch["input_ids"].shape[1]), value=0)
        ids = torch.where(keep[:, None], given, self.st.cap_ids[row].to(keep.device))  # (B, T_max)
        mask = torch.where(keep[:, None], given_mask, self.st.cap_mask[row].to(keep.device))
        length = max(int(mask.sum(1).max()), 1)
        return ids[:, :length], mask[:, :length]  # (B, T') the longest of the captions shown

    def mask_words(self, batch: dict, generator: torch.Generator | None = None,
                   mlm_probability: float = 0.15) -> tuple[Tensor, Tensor]:
        """Whole-word masking of ``batch["input_ids"]`` (:func:`mask_whole_words`); the scene vocabulary
        is word-level, so every real token that is not special (nor ``[UNK]``) is its own word."""
        ids = batch["input_ids"]
        specials = torch.tensor(self.st.vocab.special_ids(), device=ids.device)
        is_word = batch["attention_mask"].bool() & ~torch.isin(ids, specials)  # (B, T)
        word_ids = torch.where(is_word, is_word.long().cumsum(1) - 1, torch.full_like(ids, -1))
        return mask_whole_words(ids, word_ids, len(self.st.vocab), self.st.ids[MASK],
                                special_token_ids=self.st.vocab.special_ids(), mlm_probability=mlm_probability,
                                generator=generator)

    def regions(self, batch: dict, zero_image: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(B, N+1, F) features, (B, N+1, 4) pixel boxes, (B, N+1) region mask with region 0 = the whole
        image: box ``[0, 0, W-1, H-1]``, feature the detector's whole-image box (end-to-end mode) or, with
        the oracle features, the mean of the real regions' features (precomputed mode)."""
        f, boxes, rmask = self.images(batch, zero_image)
        S = self.st.image_size
        if self.pixel_masking and not zero_image:
            whole = self.take("image_feats", batch)[:, None]  # (B, 1, F)
        else:
            whole = (f * rmask[..., None]).sum(1, keepdim=True) / rmask.sum(1).clamp(min=1)[:, None, None]  # (B, 1, F)
        feats = torch.cat([whole, f], 1)  # (B, N+1, F)
        boxes = torch.cat([whole_image_boxes(len(f), S, S).to(f.device), boxes], 1)  # (B, N+1, 4)
        rmask = torch.cat([torch.ones_like(rmask[:, :1]), rmask], 1)  # (B, N+1)
        return feats, boxes, rmask

    def text_only_batch(self, batch_size: int, generator: torch.Generator | None = None,
                        device=None) -> tuple[Tensor, Tensor, Tensor]:
        """(B', L) text-only rows drawn at random, whole-word masked: ``(input_ids, attention_mask, mlm_labels)``.
        ``[UNK]`` is never selected (its word is unknown to the scene vocabulary)."""
        corpus = self.text_only
        pick = torch.randint(len(corpus), (batch_size,), generator=generator, device=device).cpu()
        ids = corpus[pick].to(device)  # (B', L)
        mask = torch.ones_like(ids)
        no_word = torch.isin(ids, torch.tensor(self.st.vocab.special_ids() + [self.st.ids[UNK]], device=ids.device))
        word_ids = torch.where(no_word, torch.full_like(ids, -1), torch.arange(ids.shape[1], device=ids.device).expand_as(ids))
        masked, labels = mask_whole_words(ids, word_ids, len(self.st.vocab), self.st.ids[MASK],
                                          special_token_ids=self.st.vocab.special_ids(), generator=generator)
        return masked, mask, labels

    # ---- the step ----------------------------------------------------------------------------------
    def pretrain_step(self, model: VLBERTForPreTraining, batch: dict,
                      generator: torch.Generator | None = None) -> VLOutput:
        # 1. pair: every image with one of its own captions (no matching task, so no swapped captions)
        input_ids, attention_mask = self.own_captions(batch, generator)
        # 2. mask words: whole words, 15%, one 80/10/10 decision per word
        input_ids, mlm_labels = self.mask_words({"input_ids": input_ids, "attention_mask": attention_mask}, generator)
        # 3. lay out regions: region 0 = the whole image (box [0, 0, W-1, H-1], mean feature), then the regions
        visual_feats, boxes, visual_attention_mask = self.regions(batch)
        # 4. mask regions: 15% of the real regions (never region 0); 90% of those hidden, 10% kept
        reg = mask_regions(visual_feats, scheme="vlbert", region_mask=visual_attention_mask, num_global=1,
                           generator=generator)
        hidden = reg.actions == ZERO  # (B, N+1)
        if self.pixel_masking:  # end-to-end: zero the hidden objects' pixels, re-extract every feature (cached)
            feats, whole = self.st.features_with_hidden_pixels(batch["image"], hidden[:, 1:], zero_box_pixels)
            visual_feats = torch.cat([whole[:, None], feats], 1)  # (B, N+1, F)
        else:  # precomputed: the model swaps in its mask vector; the whole image's mean leaves the hidden out
            keep = (visual_attention_mask[:, 1:].bool() & ~hidden[:, 1:]).to(visual_feats.dtype)[..., None]  # (B, N, 1)
            visual_feats = visual_feats.clone()
            visual_feats[:, 0] = (visual_feats[:, 1:] * keep).sum(1) / keep.sum(1).clamp(min=1)  # whole image w/o hidden
        region_targets = torch.cat([torch.zeros_like(self.take("det_probs", batch)[:, :1]),
                                    self.take("det_probs", batch)], 1)  # (B, N+1, C), none for region 0
        #    and the text-only sentences, masked the same way
        n_text = max(1, int(round(self.text_only_share * len(input_ids))))
        text_ids, text_mask, text_labels = self.text_only_batch(n_text, generator, device=input_ids.device)
        # 5. model -> losses: mlm on the captions, mrc on the selected regions, mlm_text on the text-only rows
        S = self.st.image_size
        return model(input_ids, visual_feats, boxes, (S, S), attention_mask=attention_mask,
                     visual_attention_mask=visual_attention_mask, mlm_labels=mlm_labels, masked_regions=reg.selected,
                     hidden_regions=hidden, region_targets=region_targets,
                     region_masking="pixels" if self.pixel_masking else "features",
                     text_only_ids=text_ids, text_only_attention_mask=text_mask, text_only_mlm_labels=text_labels)

    def vqa_step(self, model: VLBERTForQuestionAnswering, batch: dict, zero_image: bool = False) -> VLOutput:
        visual_feats, boxes, visual_attention_mask = self.regions(batch, zero_image)
        S = self.st.image_size
        mask = batch["attention_mask"]
        pos = mask.sum(1) - 2  # the [MASK] of [CLS] question ? [SEP] [MASK] [SEP]
        segments = (torch.arange(mask.shape[1], device=mask.device)[None] >= pos[:, None]).long() * mask  # answer: B
        return model(batch["input_ids"], visual_feats, boxes, (S, S), pos, attention_mask=mask,
                     visual_attention_mask=visual_attention_mask, token_type_ids=segments,
                     soft_scores=batch.get("soft_scores"))

    def nlvr2_config(self, vocab_size: int) -> VLBERTConfig:
        """With the pooler the downstream configs have (:class:`~vlp_course.models.vlbert.VLBERTForNLVR2`)."""
        return replace(super().nlvr2_config(vocab_size), with_pooler=True)

    def nlvr2_model(self, vocab_size: int) -> VLBERTForNLVR2:
        return VLBERTForNLVR2(self.nlvr2_config(vocab_size))

    def nlvr2_step(self, model: VLBERTForNLVR2, batch: dict, zero_image: bool = False) -> VLOutput:
        """Our adaptation (UNITER's paired setting): two passes, one per image, the statement repeated."""
        rows = self.pair_rows(batch)
        visual_feats, boxes, visual_attention_mask = self.regions(rows, zero_image)  # (2P, N+1, ·)
        S = self.st.image_size
        return model(rows["input_ids"], visual_feats, boxes, (S, S), attention_mask=rows["attention_mask"],
                     visual_attention_mask=visual_attention_mask, labels=batch.get("labels"))
