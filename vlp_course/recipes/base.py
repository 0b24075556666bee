"""What every model's recipe shares: the :class:`Recipe` (data, size, training settings of one shipped
checkpoint) and :class:`SceneAdapter`, the base of the four adapters that feed a model from the scenes.

An adapter turns the *unmasked* batches of :class:`~vlp_course.data.vl_tensors.SceneTensors` into
one model's inputs. Each model's adapter has one ``pretrain_step`` that reads in order:

    pair (matched or swapped caption) -> mask words -> lay out regions -> mask regions -> model -> losses

and one ``vqa_step`` (question -> regions -> model -> answer scores). Both return the model's
:class:`~vlp_course.models.blocks.VLOutput`.

Shapes: B batch, T text tokens, N regions, F feature width, A answers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from vlp_course.data.vl_tensors import FEATURES, SceneTensors, build_scene_tensors
from vlp_course.models.blocks import VLOutput
from vlp_course.pretraining.text_masking import mask_tokens
from vlp_course.text.vocab import MASK

__all__ = ["KINDS", "PAIRINGS", "Recipe", "SceneAdapter", "scene_tensors"]

#: The four models, by the name their recipe module carries.
KINDS = ("visualbert", "lxmert", "vilbert", "vlbert")
#: How pretraining pairs text and image: as annotated, or (the control) each caption with a wrong scene.
PAIRINGS = ("aligned", "wrong_scenes")


@dataclass(frozen=True)
class Recipe:
    """Data, model size and training settings of one course checkpoint.

    ``init`` is the standard deviation of the weight initialisation: BERT's 0.02 is calibrated for
    width 768; at width 64 it makes every attention layer's contribution to the residual stream
    ~0.0004·D = 3% of the token's own vector, and cross-modal signals need thousands of steps to
    appear. 0.02·sqrt(768 / D) keeps BERT-base's ratio (0.07 at D = 64).

    ``features`` is where the region features come from (``"detector"``, the stand-in detector, or
    ``"oracle"``, the comparison); ``pairing`` is ``"aligned"`` or, for the control of the
    pretraining gain, ``"wrong_scenes"`` (every caption and question shown with another scene).

    ``visual_scale_object_init`` (VL-BERT only) is the initial weight of its regions' visual LayerNorm.
    The original starts it, and the words' one, at 0 (``cfgs/*/*.yaml``: ``visual_scale_object_init:
    0.0``), so that its BERT starts exactly as BERT and the image fades in over 10 epochs of
    Conceptual Captions. In a budget of a few thousand steps the image barely fades in: from scratch,
    600 VQA steps reach 55% with 0 and 66% with 1 (means of three seeds, ``bench_learning.py --vlbert``).
    The course's recipe starts the regions' LayerNorm at 1 and keeps the words' at 0 (starting both at
    1, which adds the whole image to every word, reached 59%).

    Raises:
        ValueError: if ``kind`` is not one of :data:`KINDS` or ``pairing`` not one of :data:`PAIRINGS`.
    """

    kind: str = "visualbert"
    n_images: int = 2000
    n_test: int = 300
    seed: int = 0
    features: str = "detector"
    pairing: str = "aligned"
    feature_noise: float = 0.3
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    ffn: int = 256
    init: float = 0.07
    dropout: float = 0.0
    batch: int = 128
    lr: float = 1e-3
    warmup: int = 100
    steps: int = 2000
    visual_scale_object_init: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")
        if self.pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {PAIRINGS}, got {self.pairing!r}")


#: The scenes built last per data recipe and question template (at most one each for the three
#: templates): a notebook's own scenes and those its checkpoint is loaded with are the same, built once.
_BUILT: dict[tuple, SceneTensors] = {}


def scene_tensors(recipe: Recipe, vocab_tokens=None) -> SceneTensors:
    """The :class:`SceneTensors` a recipe trains on (VisualBERT and VL-BERT: questions end in [MASK]);
    with ``pairing="wrong_scenes"`` the control's (:meth:`SceneTensors.with_wrong_scenes`).

    Built once per data recipe (images, seed, held-out images, features, noise) and question template,
    then shared: treat the result as read-only. ``vocab_tokens`` (a checkpoint's vocabulary) reuses the
    built scenes only if their vocabulary is exactly that list, else builds anew with it.
    """
    template = {"visualbert": True, "vlbert": "segment"}.get(recipe.kind, False)
    key = (recipe.n_images, recipe.seed, recipe.n_test, recipe.features, recipe.feature_noise, template)
    st = _BUILT.get(key)
    if st is None or (vocab_tokens is not None and list(vocab_tokens) != st.vocab.itos):
        st = build_scene_tensors(recipe.n_images, recipe.seed, n_test=recipe.n_test, features=recipe.features,
                                 feature_noise=recipe.feature_noise, vqa_mask_token=template, vocab_tokens=vocab_tokens)
        for old in [k for k in _BUILT if k[-1] == template]:
            del _BUILT[old]
        _BUILT[key] = st
    return st.with_wrong_scenes(recipe.seed) if recipe.pairing == "wrong_scenes" else st


class SceneAdapter:
    """How one model is built and fed from :class:`SceneTensors` (one subclass per model).

    Subclasses set ``kind`` and implement ``config``, ``pretraining_model``, ``qa_model``,
    ``pretrain_step`` and ``vqa_step``. Batches are those of :meth:`SceneTensors.pretrain_batch` /
    :meth:`SceneTensors.vqa_batch` (unmasked; ``image`` indexes the per-image tensors).
    """

    kind = ""

    def __init__(self, st: SceneTensors, recipe: Recipe):
        self.st, self.recipe = st, recipe

    # ---- shared pieces ------------------------------------------------------------------------
    def sizes(self) -> dict[str, Any]:
        """The transformer sizes every model's config shares (``recipe.dropout``: 0 for short CPU runs,
        the originals use 0.1)."""
        r = self.recipe
        return dict(vocab_size=len(self.st.vocab), hidden_size=r.hidden, num_attention_heads=r.heads,
                    intermediate_size=r.ffn, max_position_embeddings=64, hidden_dropout_prob=r.dropout,
                    attention_probs_dropout_prob=r.dropout, initializer_range=r.init)

    def take(self, name: str, batch: dict) -> Tensor:
        """Rows ``batch["image"]`` of the per-image tensor ``self.st.<name>``, on the batch's device."""
        img = batch["image"]
        return getattr(self.st, name)[img.cpu()].to(img.device)

    def images(self, batch: dict, zero_image: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(B, N, F) features, (B, N, 4) pixel boxes, (B, N) region mask of the batch's images.

        ``zero_image`` removes everything the image tells: features and boxes become 0 and every
        region slot counts as real (else the number of regions would answer "how many" questions).
        """
        f, boxes, rmask = self.take("feats", batch), self.take("boxes", batch), self.take("region_mask", batch)
        if zero_image:
            return torch.zeros_like(f), torch.zeros_like(boxes), torch.ones_like(rmask)
        return f, boxes, rmask

    def mask_words(self, batch: dict, generator: torch.Generator | None = None,
                   mlm_probability: float = 0.15) -> tuple[Tensor, Tensor]:
        """BERT's word masking of the batch's captions: 15% of the real, non-special tokens chosen;
        of those 80% -> [MASK], 10% -> a random word, 10% kept.

        Returns:
            ``(input_ids, mlm_labels)``, both (B, T); labels hold the original id where chosen, -100 elsewhere.
        """
        return mask_tokens(batch["input_ids"], len(self.st.vocab), self.st.ids[MASK],
                           special_token_ids=self.st.vocab.special_ids(), attention_mask=batch["attention_mask"],
                           mlm_probability=mlm_probability, generator=generator)

    # ---- per model ----------------------------------------------------------------------------
    def config(self, num_answers: int | None = None):
        raise NotImplementedError

    def pretraining_model(self) -> nn.Module:
        raise NotImplementedError

    def qa_model(self) -> nn.Module:
        raise NotImplementedError

    def pretrain_step(self, model: nn.Module, batch: dict, generator: torch.Generator | None = None) -> VLOutput:
        raise NotImplementedError

    def vqa_step(self, model: nn.Module, batch: dict, zero_image: bool = False) -> VLOutput:
        """``logits["vqa"]`` (B, A), plus ``losses["vqa"]`` when the batch has ``soft_scores``."""
        raise NotImplementedError

    # ---- visual reasoning (NLVR2 pairs, :class:`~vlp_course.data.vl_tensors.PairTensors`) -------------
    def nlvr2_config(self, vocab_size: int):
        """The model's config with the pairs' vocabulary size (the scenes' plus the statements' new words)."""
        return replace(self.config(), vocab_size=int(vocab_size))

    def nlvr2_model(self, vocab_size: int) -> nn.Module:
        raise NotImplementedError

    def nlvr2_step(self, model: nn.Module, batch: dict, zero_image: bool = False) -> VLOutput:
        """``logits["nlvr2"]`` (P, 2), plus ``losses["nlvr2"]`` when the batch has ``labels``, for a batch of
        :meth:`PairTensors.batch <vlp_course.data.vl_tensors.PairTensors.batch>`; ``zero_image`` removes both
        images as :meth:`images` does (the statement-only baseline)."""
        raise NotImplementedError

    @staticmethod
    def pair_rows(batch: dict) -> dict:
        """A pair batch as one row per image for the two-pass models: statements repeated ``s0, s0, s1, s1``,
        images ``left0, right0, left1, right1`` (:func:`~vlp_course.models.blocks.repeat_for_pairs`'s order)."""
        return {"input_ids": batch["input_ids"].repeat_interleave(2, 0),  # (2P, T)
                "attention_mask": batch["attention_mask"].repeat_interleave(2, 0),  # (2P, T)
                "image": torch.stack([batch["left"], batch["right"]], 1).flatten()}  # (2P,)
