"""The scenes dataset as the tensors a vision-language model eats: region features, boxes, captions,
questions and their soft scores, plus the pretraining and VQA batch samplers of the model notebooks.

::

    from vlp_course.data.vl_tensors import build_scene_tensors
    st = build_scene_tensors(2000, seed=0)
    st.feats, st.boxes, st.region_mask     # (I, N, F), (I, N, 4) pixel xyxy, (I, N)
    b = st.pretrain_batch(step=0, batch_size=64)   # captions, half swapped (is_matched); unmasked
    b = st.vqa_batch(step=0, batch_size=64)        # questions and (B, A) soft scores

**Region features.** The notebooks use *oracle* region features: per ground-truth object, the
one-hot shape, colour and size plus Gaussian noise (a near-perfect detector; training the course's
CNN detector stand-in from an empty cache costs minutes). The "detector" class distribution over
shapes is the softmax of noisy one-hot scores, its top label the detected label (as the
bottom-up Faster R-CNN's class scores are for LXMERT and ViLBERT).

Shapes: I images, N regions per image (padded), F feature width, C captions, Q questions,
T text tokens, A answers, B batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from vlp_course.data.dataset import VLScenes, load_vl_scenes
from vlp_course.data.scenes import COLORS, SHAPES, SIZES
from vlp_course.data.vqa import AnswerVocab, vqa_accuracy
from vlp_course.pretraining.losses import IGNORE_INDEX
from vlp_course.pretraining.matching import sample_matching
from vlp_course.text.vocab import CLS, MASK, PAD, SEP, UNK, Vocabulary, tokenize

__all__ = ["FEATURE_WIDTH", "SceneTensors", "build_scene_tensors", "oracle_regions"]

#: F: one-hot shape (6) + colour (7) + size (3).
FEATURE_WIDTH = len(SHAPES) + len(COLORS) + len(SIZES)
SPECIALS = (PAD, UNK, CLS, SEP, MASK)


def oracle_regions(scenes: Sequence, noise: float, generator: torch.Generator, max_regions: int | None = None):
    """Oracle region inputs of a list of scenes.

    Returns:
        dict with ``feats`` (I, N, F) float, ``boxes`` (I, N, 4) pixel (x1, y1, x2, y2), padding
        rows (0, 0, 1, 1), ``region_mask`` (I, N) long, ``shape_labels`` / ``color_labels`` /
        ``size_labels`` (I, N) long with -100 on padding, ``det_probs`` (I, N, |SHAPES|) and
        ``det_labels`` (I, N) (the detector's distribution and top label; -100 on padding).

    Raises:
        ValueError: if ``noise`` < 0 or a scene has no object.
    """
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    n_max = max_regions or max(len(sc.objects) for sc in scenes)
    I = len(scenes)
    out = {
        "feats": torch.zeros(I, n_max, FEATURE_WIDTH),
        "boxes": torch.tensor([0.0, 0.0, 1.0, 1.0]).repeat(I, n_max, 1),
        "region_mask": torch.zeros(I, n_max, dtype=torch.long),
        "det_probs": torch.zeros(I, n_max, len(SHAPES)),
    }
    for k in ("shape_labels", "color_labels", "size_labels", "det_labels"):
        out[k] = torch.full((I, n_max), IGNORE_INDEX, dtype=torch.long)
    for i, sc in enumerate(scenes):
        n = min(len(sc.objects), n_max)
        if n == 0:
            raise ValueError(f"scene {i} has no object")
        sh, co, si = (torch.as_tensor(a[:n], dtype=torch.long) for a in (sc.labels(), sc.color_labels(), sc.size_labels()))
        one_hot = torch.cat([torch.eye(len(SHAPES))[sh], torch.eye(len(COLORS))[co], torch.eye(len(SIZES))[si]], 1)  # (n, F)
        out["feats"][i, :n] = one_hot + noise * torch.randn(n, FEATURE_WIDTH, generator=generator)
        out["boxes"][i, :n] = torch.as_tensor(sc.boxes()[:n], dtype=torch.float32)
        out["region_mask"][i, :n] = 1
        out["shape_labels"][i, :n], out["color_labels"][i, :n], out["size_labels"][i, :n] = sh, co, si
        scores = 4.0 * torch.eye(len(SHAPES))[sh] + torch.randn(n, len(SHAPES), generator=generator)
        out["det_probs"][i, :n] = scores.softmax(-1)
        out["det_labels"][i, :n] = out["det_probs"][i, :n].argmax(-1)
    return out


def _pad(rows: list[list[int]], length: int, pad_id: int) -> tuple[Tensor, Tensor]:
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    for r, toks in enumerate(rows):
        ids[r, : len(toks)] = torch.tensor(toks[:length], dtype=torch.long)
    return ids, (ids != pad_id).long()


@dataclass
class SceneTensors:
    """Scenes, captions and questions as padded tensors (see the module docstring).

    Images ``0 .. n_train - 1`` are for training, the rest are held out (captions and questions of
    held-out images are never sampled by the training batches).
    """

    ds: VLScenes
    vocab: Vocabulary
    answers: AnswerVocab
    n_train: int
    feats: Tensor
    boxes: Tensor
    region_mask: Tensor
    shape_labels: Tensor
    color_labels: Tensor
    size_labels: Tensor
    det_probs: Tensor
    det_labels: Tensor
    cap_ids: Tensor
    cap_mask: Tensor
    cap_image: Tensor
    q_ids: Tensor
    q_mask: Tensor
    q_image: Tensor
    q_target: Tensor
    vqa_mask_token: bool | str = False
    ids: dict = field(default_factory=dict)

    @property
    def image_size(self) -> int:
        return int(self.ds.scenes.image_size)

    def normalized_boxes(self, images: Tensor | None = None) -> Tensor:
        """(I, N, 4) or (B, N, 4) boxes divided by the image width and height: (x1, y1, x2, y2) in [0, 1]."""
        b = self.boxes if images is None else self.boxes[images]
        return b / self.image_size

    def rows(self, kind: str, split: str) -> Tensor:
        """Indices of the captions (``kind="captions"``) or questions of the ``"train"`` or ``"test"`` images."""
        img = {"captions": self.cap_image, "questions": self.q_image}[kind]
        keep = img < self.n_train if split == "train" else img >= self.n_train
        return torch.nonzero(keep).squeeze(1)

    def pretrain_batch(self, step: int, batch_size: int, *, seed: int = 0, split: str = "train",
                       p_negative: float = 0.5) -> dict[str, Tensor]:
        """A pretraining batch of image-caption pairs, the same for the same (step, seed); nothing masked.

        Samples captions and swaps each for another image's caption with probability ``p_negative``
        (``is_matched`` = 0). Masking words and regions is the recipe's job (:mod:`vlp_course.pretraining`).

        Returns:
            ``input_ids`` (B, T) the caption shown with the image, ``attention_mask`` (B, T),
            ``image`` (B,) image indices into ``feats``, ``is_matched`` (B,) 1 when the caption is the image's own.
        """
        gen = torch.Generator().manual_seed(1_000_003 * seed + step)
        pool = self.rows("captions", split)
        rows = pool[torch.randint(len(pool), (batch_size,), generator=gen)]
        img = self.cap_image[rows]
        m = sample_matching(batch_size, image_ids=img, generator=gen, p_negative=p_negative)
        ids, mask = self.cap_ids[rows[m.caption_index]], self.cap_mask[rows[m.caption_index]]
        return {"input_ids": ids, "attention_mask": mask, "image": img, "is_matched": m.is_matched}

    def vqa_batch(self, step: int, batch_size: int, *, seed: int = 0) -> dict[str, Tensor]:
        """A VQA training batch: ``input_ids``/``attention_mask`` (B, T), ``image`` (B,), ``soft_scores`` (B, A)."""
        gen = torch.Generator().manual_seed(2_000_003 * seed + step + 7)
        pool = self.rows("questions", "train")
        rows = pool[torch.randint(len(pool), (batch_size,), generator=gen)]
        return {"input_ids": self.q_ids[rows], "attention_mask": self.q_mask[rows], "image": self.q_image[rows],
                "soft_scores": self.q_target[rows], "rows": rows}

    @torch.no_grad()
    def score_vqa(self, logits_fn: Callable[[dict], Tensor], *, split: str = "test", batch_size: int = 512) -> float:
        """Official VQA accuracy (mean of min(#matching annotators / 3, 1)) of the argmax answer.

        ``logits_fn(batch)`` gets batches shaped like :meth:`vqa_batch`'s and returns (B, A) logits.
        """
        rows = self.rows("questions", split)
        accs = []
        for s in range(0, len(rows), batch_size):
            r = rows[s:s + batch_size]
            b = {"input_ids": self.q_ids[r], "attention_mask": self.q_mask[r], "image": self.q_image[r],
                 "soft_scores": self.q_target[r], "rows": r}
            pred = logits_fn(b).argmax(-1).tolist()
            accs += [vqa_accuracy(self.answers.decode(p), self.ds.questions[q].answers) for p, q in zip(pred, r.tolist())]
        return float(np.mean(accs))

    def majority_accuracy(self, split: str = "test") -> float:
        """VQA accuracy of always answering the most frequent training answer."""
        train = [self.ds.questions[r].multiple_choice_answer for r in self.rows("questions", "train").tolist()]
        top = max(set(train), key=train.count)
        return float(np.mean([vqa_accuracy(top, self.ds.questions[r].answers)
                              for r in self.rows("questions", split).tolist()]))


def build_scene_tensors(n_images: int = 2000, seed: int = 0, *, n_test: int = 300, feature_noise: float = 0.3,
                        max_regions: int | None = None, vqa_mask_token: bool | str = False, min_answer_count: int = 3,
                        vocab_tokens: Sequence[str] | None = None) -> SceneTensors:
    """Build :class:`SceneTensors` from ``load_vl_scenes(n_images, seed)`` (cached on disk).

    Args:
        n_test: images held out at the end of the dataset.
        feature_noise: standard deviation of the Gaussian noise on the oracle features.
        vqa_mask_token: questions as ``[CLS] question ? [MASK] [SEP]`` (VisualBERT) instead of
            ``[CLS] question ? [SEP]``; ``"segment"``: ``[CLS] question ? [SEP] [MASK] [SEP]``
            (VL-BERT, the answer slot in segment B). The [MASK] is always at ``attention_mask.sum() - 2``.
        vocab_tokens: the token list of a saved vocabulary (e.g. a checkpoint's), instead of building one.

    Raises:
        ValueError: if ``n_test`` is not in [1, n_images - 1].
    """
    if not 1 <= n_test < n_images:
        raise ValueError(f"n_test must be in [1, {n_images - 1}], got {n_test}")
    ds = load_vl_scenes(n_images, seed=seed)
    regions = oracle_regions(ds.scenes, feature_noise, torch.Generator().manual_seed(seed), max_regions)
    captions = [(i, c) for i, caps in sorted(ds.captions.items()) for c in caps]
    if vocab_tokens is None:
        vocab = Vocabulary.build([tokenize(c) for _, c in captions] + [tokenize(q.question) + ["?"] for q in ds.questions],
                                 specials=SPECIALS)
    else:
        vocab = Vocabulary(list(vocab_tokens)[len(SPECIALS):], specials=SPECIALS)
    ids = {t: vocab.id_of(t) for t in SPECIALS}
    cap_rows = [[ids[CLS]] + vocab.encode(tokenize(c)) + [ids[SEP]] for _, c in captions]
    cap_ids, cap_mask = _pad(cap_rows, max(map(len, cap_rows)), ids[PAD])
    tail = {False: [ids[SEP]], True: [ids[MASK], ids[SEP]], "segment": [ids[SEP], ids[MASK], ids[SEP]]}[vqa_mask_token]
    q_rows = [[ids[CLS]] + vocab.encode(tokenize(q.question) + ["?"]) + tail for q in ds.questions]
    q_ids, q_mask = _pad(q_rows, max(map(len, q_rows)), ids[PAD])
    n_train = n_images - n_test
    answers = AnswerVocab.from_questions([q for q in ds.questions if q.image_id < n_train], min_count=min_answer_count)
    q_target = torch.from_numpy(np.stack([answers.targets(q.answers) for q in ds.questions]))
    return SceneTensors(
        ds=ds, vocab=vocab, answers=answers, n_train=n_train, **regions,
        cap_ids=cap_ids, cap_mask=cap_mask, cap_image=torch.tensor([i for i, _ in captions]),
        q_ids=q_ids, q_mask=q_mask, q_image=torch.tensor([q.image_id for q in ds.questions]), q_target=q_target,
        vqa_mask_token=vqa_mask_token, ids=ids,
    )
