"""The scenes dataset as the tensors a vision-language model eats: region features, boxes, captions,
questions and their soft scores, plus the pretraining and VQA batch samplers of the model notebooks.

::

    from vlp_course.data.vl_tensors import build_scene_tensors
    st = build_scene_tensors(2000, seed=0)
    st.feats, st.boxes, st.region_mask     # (I, N, F), (I, N, 4) pixel xyxy, (I, N)
    b = st.pretrain_batch(step=0, batch_size=64)   # captions, half swapped (is_matched); unmasked
    b = st.vqa_batch(step=0, batch_size=64)        # questions and (B, A) soft scores

**Region features.** As the 2019 models read them: every scene image goes through the course's
stand-in detector (:mod:`vlp_course.data.detector`, the shipped ``scene_detector.safetensors``); per
object box it gives a D = 128 appearance vector (RoIAlign on its feature map, then the box head), its
class distribution over the shapes and its attribute distribution over the colours (the targets
of the masked-region objectives, as the bottom-up Faster R-CNN's scores are for LXMERT, ViLBERT and
VL-BERT), and the feature of the whole-image box. They are extracted once per dataset and detector
and cached with their SHA-256 (:func:`detector_regions`). ``features="oracle"`` gives instead the
*oracle* features kept as a named comparison: per object the one-hot shape, colour and size plus
Gaussian noise, and a softmax of noisy one-hot class scores (:func:`oracle_regions`).

Shapes: I images, N regions per image (padded), F feature width, C captions, Q questions,
T text tokens, A answers, B batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from vlp_course.data.dataset import VLScenes, load_vl_scenes
from vlp_course.data.nlvr2 import NLVR2Example, make_nlvr2
from vlp_course.data.scenes import COLORS, SHAPES, SIZES
from vlp_course.data.vqa import AnswerVocab, vqa_accuracy
from vlp_course.pretraining.losses import IGNORE_INDEX
from vlp_course.pretraining.matching import sample_matching
from vlp_course.text.vocab import CLS, MASK, PAD, SEP, UNK, Vocabulary, tokenize

__all__ = ["FEATURE_WIDTH", "FEATURES", "SceneTensors", "build_scene_tensors", "detector_regions", "oracle_regions",
           "PairTensors", "build_pair_tensors"]

#: F of the oracle features: one-hot shape (6) + colour (7) + size (2). (The detector's is its ``dim``, 128.)
FEATURE_WIDTH = len(SHAPES) + len(COLORS) + len(SIZES)
#: Where region features come from: the stand-in detector (the default) or the oracle comparison.
FEATURES = ("detector", "oracle")
SPECIALS = (PAD, UNK, CLS, SEP, MASK)


def _empty_regions(I: int, n_max: int, F: int) -> dict[str, Tensor]:
    """The region tensors of :func:`oracle_regions` / :func:`detector_regions`, all padding: zero
    features and distributions, boxes (0, 0, 1, 1), region mask 0, labels -100 (``image_feats`` not included)."""
    out = {
        "feats": torch.zeros(I, n_max, F),
        "boxes": torch.tensor([0.0, 0.0, 1.0, 1.0]).repeat(I, n_max, 1),
        "region_mask": torch.zeros(I, n_max, dtype=torch.long),
        "det_probs": torch.zeros(I, n_max, len(SHAPES)),
        "attr_probs": torch.zeros(I, n_max, len(COLORS)),
    }
    for k in ("shape_labels", "color_labels", "size_labels", "det_labels", "attr_labels"):
        out[k] = torch.full((I, n_max), IGNORE_INDEX, dtype=torch.long)
    return out


def _set_ground_truth(out: dict[str, Tensor], i: int, scene, n: int) -> None:
    """Row ``i``: the first ``n`` objects of ``scene`` are real, with their pixel boxes and true shape, colour, size."""
    out["boxes"][i, :n] = torch.as_tensor(scene.boxes()[:n], dtype=torch.float32)
    out["region_mask"][i, :n] = 1
    for k, a in (("shape_labels", scene.labels()), ("color_labels", scene.color_labels()), ("size_labels", scene.size_labels())):
        out[k][i, :n] = torch.as_tensor(a[:n], dtype=torch.long)


def oracle_regions(scenes: Sequence, noise: float, generator: torch.Generator, max_regions: int | None = None):
    """Oracle region inputs of a list of scenes.

    Returns:
        dict with ``feats`` (I, N, F) float, ``boxes`` (I, N, 4) pixel (x1, y1, x2, y2), padding
        rows (0, 0, 1, 1), ``region_mask`` (I, N) long, ``shape_labels`` / ``color_labels`` /
        ``size_labels`` (I, N) long with -100 on padding, ``det_probs`` (I, N, |SHAPES|) and
        ``det_labels`` (I, N) (the detector's distribution and top label; -100 on padding),
        ``attr_probs`` (I, N, |COLORS|) and ``attr_labels`` (I, N) (the same for the colour), and
        ``image_feats`` (I, F) the whole image's feature (here the mean of its regions').

    Raises:
        ValueError: if ``noise`` < 0 or a scene has no object.
    """
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    n_max = max_regions or max(len(sc.objects) for sc in scenes)
    I = len(scenes)
    out = {**_empty_regions(I, n_max, FEATURE_WIDTH), "image_feats": torch.zeros(I, FEATURE_WIDTH)}
    for i, sc in enumerate(scenes):
        n = min(len(sc.objects), n_max)
        if n == 0:
            raise ValueError(f"scene {i} has no object")
        _set_ground_truth(out, i, sc, n)
        sh, co, si = out["shape_labels"][i, :n], out["color_labels"][i, :n], out["size_labels"][i, :n]
        one_hot = torch.cat([torch.eye(len(SHAPES))[sh], torch.eye(len(COLORS))[co], torch.eye(len(SIZES))[si]], 1)  # (n, F)
        out["feats"][i, :n] = one_hot + noise * torch.randn(n, FEATURE_WIDTH, generator=generator)
        scores = 4.0 * torch.eye(len(SHAPES))[sh] + torch.randn(n, len(SHAPES), generator=generator)
        out["det_probs"][i, :n] = scores.softmax(-1)
        out["det_labels"][i, :n] = out["det_probs"][i, :n].argmax(-1)
        out["attr_probs"][i, :n] = (4.0 * torch.eye(len(COLORS))[co]
                                    + torch.randn(n, len(COLORS), generator=generator)).softmax(-1)
        out["attr_labels"][i, :n] = out["attr_probs"][i, :n].argmax(-1)
        out["image_feats"][i] = out["feats"][i, :n].mean(0)
    return out


def _detector_digest(detector) -> str:
    """SHA-256 of the detector's weights (the cache key of the features it extracts)."""
    h = hashlib.sha256()
    for k, v in sorted(detector.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def _extract(detector, images: np.ndarray, boxes: list[Tensor], batch_size: int = 256) -> dict[str, list[Tensor]]:
    """Run the detector on (I, S, S, 3) uint8 images with per-image (N_i, 4) normalised boxes; per image
    the whole-image box first: lists of ``features`` (1 + N_i, D), ``class_probs``, ``attr_probs``."""
    from vlp_course.data.detector import images_to_tensor

    detector.eval()
    dev = next(detector.parameters()).device
    whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    out: dict[str, list[Tensor]] = {"features": [], "class_probs": [], "attr_probs": []}
    S = images.shape[1]
    for start in range(0, len(images), batch_size):
        part = [torch.cat([whole, b]).to(dev) for b in boxes[start:start + batch_size]]
        feats = detector.region_features(detector.feature_map(images_to_tensor(images[start:start + batch_size]).to(dev)),
                                         part, (S, S))  # (sum(1 + N_i), D)
        cls, att = detector.cls_head(feats).softmax(-1), detector.attr_head(feats).softmax(-1)
        sizes = [len(b) for b in part]
        for name, t in (("features", feats), ("class_probs", cls), ("attr_probs", att)):
            out[name] += [x.float().cpu() for x in t.split(sizes)]
    return out


def detector_regions(scenes, detector=None, max_regions: int | None = None, *, cache: bool = True) -> dict[str, Tensor]:
    """Region inputs of a list of scenes as the stand-in detector sees them (the module docstring).

    The boxes are the scenes' object boxes (the scenes have no clutter, so a detector's proposals
    would be these boxes); for each the detector gives its appearance vector, its class distribution
    over :data:`SHAPES` and its attribute distribution over :data:`COLORS`.

    Args:
        scenes: a :class:`~vlp_course.data.scenes.SceneSet` (or a list of scenes).
        detector: a :class:`~vlp_course.data.detector.SceneDetector`; default the shipped one
            (:func:`~vlp_course.data.detector.load_detector`).
        cache: keep the result in ``cache_dir()/scene-regions-<key>/`` (safetensors and a manifest with
            its SHA-256; the key hashes the scenes' images and boxes and the detector's weights).

    Returns:
        the dict of :func:`oracle_regions`, with ``feats`` (I, N, D) the detector's appearance vectors,
        ``det_probs`` / ``det_labels`` its shape distribution and top shape, ``attr_probs`` /
        ``attr_labels`` its colour distribution and top colour, ``image_feats`` (I, D) the feature of the
        whole-image box; ``shape_labels`` / ``color_labels`` / ``size_labels`` stay the ground truth.

    Raises:
        ValueError: if a scene has no object.
    """
    from vlp_course.boxes import normalize
    from vlp_course.checkpoints import load_safetensors, save_safetensors
    from vlp_course.data.detector import load_detector
    from vlp_course.files import cache_dir, check_manifest, write_manifest

    scenes = list(scenes)
    for i, sc in enumerate(scenes):
        if len(sc.objects) == 0:
            raise ValueError(f"scene {i} has no object")
    detector = detector if detector is not None else load_detector()
    n_max = max_regions or max(len(sc.objects) for sc in scenes)
    images = np.stack([sc.image for sc in scenes])  # (I, S, S, 3) uint8
    pixel_boxes = [torch.as_tensor(sc.boxes()[:n_max], dtype=torch.float32) for sc in scenes]
    h = hashlib.sha256(images.tobytes())
    for b in pixel_boxes:
        h.update(b.numpy().tobytes())
    h.update(_detector_digest(detector).encode())
    h.update(f"n_max={n_max};v1".encode())
    folder = cache_dir() / f"scene-regions-{h.hexdigest()[:16]}"
    if cache and check_manifest(folder) is not None:
        try:
            return load_safetensors(folder / "regions.safetensors")
        except (OSError, ValueError):
            pass
    I, S = len(scenes), images.shape[1]
    ext = _extract(detector, images, [normalize(b, S, S) for b in pixel_boxes])
    D = ext["features"][0].shape[1]
    out = {**_empty_regions(I, n_max, D),
           "image_feats": torch.stack([f[0] for f in ext["features"]])}  # (I, D) the whole-image box
    for i, sc in enumerate(scenes):
        n = len(pixel_boxes[i])
        _set_ground_truth(out, i, sc, n)
        out["feats"][i, :n] = ext["features"][i][1:]
        out["det_probs"][i, :n] = ext["class_probs"][i][1:]
        out["attr_probs"][i, :n] = ext["attr_probs"][i][1:]
        out["det_labels"][i, :n] = out["det_probs"][i, :n].argmax(-1)
        out["attr_labels"][i, :n] = out["attr_probs"][i, :n].argmax(-1)
    if cache:
        save_safetensors(out, folder / "regions.safetensors")
        write_manifest(folder, ["regions.safetensors"], {"images": I, "regions": n_max, "dim": D})
    return out


def _trim(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop the padding columns that no row of the batch uses: (B, T) -> (B, T') with T' the longest row."""
    length = max(int(mask.sum(1).max()), 1) if len(mask) else mask.shape[1]
    return ids[:, :length], mask[:, :length]


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
    attr_probs: Tensor | None = None
    attr_labels: Tensor | None = None
    image_feats: Tensor | None = None
    features: str = "detector"
    detector: object = None
    scene_of: Tensor | None = None
    _pixel_cache: dict = field(default_factory=dict, repr=False)

    #: the per-image tensors that describe what an image shows (moved together by :meth:`with_wrong_scenes`)
    VISUAL = ("feats", "boxes", "region_mask", "shape_labels", "color_labels", "size_labels", "det_probs",
              "det_labels", "attr_probs", "attr_labels", "image_feats")

    def with_wrong_scenes(self, seed: int = 0) -> "SceneTensors":
        """The control of the pretraining gain: the same captions and questions, but every training image's
        visual tensors (regions, boxes, detector outputs, pixels) replaced by those of another training
        image, a fixed derangement drawn with ``seed``. Text and image are then consistently unrelated:
        whatever pretraining on these pairs teaches, it cannot be how words bind to regions.
        Held-out images are left as they are.

        Raises:
            ValueError: if there are fewer than two training images.
        """
        n = self.n_train
        if n < 2:
            raise ValueError(f"a derangement needs at least 2 training images, got {n}")
        g = torch.Generator().manual_seed(seed)
        shift = torch.randint(1, n, (1,), generator=g).item()
        order = torch.randperm(n, generator=g)
        perm = torch.arange(len(self.feats))
        perm[order] = order[(torch.arange(n) + shift) % n]  # image order[k] shows image order[k + shift]: never itself
        moved = {k: getattr(self, k)[perm] for k in self.VISUAL if getattr(self, k) is not None}
        base = self.scene_of if self.scene_of is not None else torch.arange(len(self.feats))
        return replace(self, **moved, scene_of=base[perm], _pixel_cache={})

    @property
    def feature_width(self) -> int:
        """F, the width of a region feature (the detector's D = 128, or :data:`FEATURE_WIDTH` = 15 for the oracle)."""
        return int(self.feats.shape[-1])

    @torch.no_grad()
    def features_with_hidden_pixels(self, images: Tensor, hidden: Tensor, zero_pixels: Callable) -> tuple[Tensor, Tensor]:
        """Region features re-extracted after the hidden objects' pixels were zeroed (VL-BERT's end-to-end
        masking, ``mask_raw_pixels``), cached per (image, hidden set): each pair is extracted once.

        Args:
            images: (B,) image indices. hidden: (B, N) bool, the objects to hide (padding never).
            zero_pixels: ``zero_pixels(images (B, 3, S, S), boxes (B, N, 4) pixel xyxy, selected (B, N))``
                -> the images with the selected boxes' pixels zeroed
                (:func:`vlp_course.models.vlbert.zero_box_pixels`).

        Returns:
            ``(feats, image_feats)``: (B, N, D) region features and (B, D) whole-image features; rows with
            nothing hidden are the cached features themselves.

        Raises:
            ValueError: with the oracle features (they have no pixels to mask), or on a wrong shape.
        """
        from vlp_course.boxes import normalize
        from vlp_course.data.detector import images_to_tensor, load_detector

        if self.features != "detector":
            raise ValueError("pixel-level masking needs detector features (build_scene_tensors(features='detector'))")
        B, N = len(images), self.feats.shape[1]
        if tuple(hidden.shape) != (B, N):
            raise ValueError(f"hidden must be (B, N) = ({B}, {N}) bool, got {tuple(hidden.shape)}")
        img, hid = images.cpu(), hidden.cpu().bool() & self.region_mask[images.cpu()].bool()
        feats, whole = self.feats[img].clone(), self.image_feats[img].clone()  # (B, N, D), (B, D)
        bits = (hid.long() << torch.arange(N)).sum(1)  # (B,) the hidden set as a bit mask
        keys = [(int(i), int(k)) for i, k in zip(img, bits)]
        todo = sorted({key for key in keys if key[1] and key not in self._pixel_cache})
        if todo:
            if self.detector is None:
                self.detector = load_detector()
            det = self.detector
            S = self.image_size
            ii = torch.tensor([i for i, _ in todo])
            sel = ((torch.tensor([k for _, k in todo])[:, None] >> torch.arange(N)) & 1).bool()  # (K, N)
            src = ii if self.scene_of is None else self.scene_of[ii]  # the scene whose pixels image i shows
            pix = images_to_tensor(self.ds.scenes.images[src.numpy()])  # (K, 3, S, S)
            pix = zero_pixels(pix, self.boxes[ii], sel)  # the hidden objects' pixels -> 0
            boxes = [torch.cat([torch.tensor([[0.0, 0.0, 1.0, 1.0]]), normalize(self.boxes[i][self.region_mask[i].bool()], S, S)])
                     for i in ii.tolist()]
            dev = next(det.parameters()).device
            det.eval()
            out = det.region_features(det.feature_map(pix.to(dev)), [b.to(dev) for b in boxes], (S, S)).float().cpu()
            k = 0
            for key, b in zip(todo, boxes):
                self._pixel_cache[key] = out[k:k + len(b)]  # (1 + n, D): the whole image, then the objects
                k += len(b)
        for r, key in enumerate(keys):
            if key[1]:
                f = self._pixel_cache[key]
                whole[r] = f[0]
                feats[r, : len(f) - 1] = f[1:]
        return feats.to(images.device), whole.to(images.device)

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
            ``input_ids`` (B, T) the caption shown with the image (T: the batch's longest caption), ``attention_mask`` (B, T),
            ``image`` (B,) image indices into ``feats``, ``is_matched`` (B,) 1 when the caption is the image's own.
        """
        gen = torch.Generator().manual_seed(1_000_003 * seed + step)
        pool = self.rows("captions", split)
        rows = pool[torch.randint(len(pool), (batch_size,), generator=gen)]
        img = self.cap_image[rows]
        m = sample_matching(batch_size, image_ids=img, generator=gen, p_negative=p_negative)
        ids, mask = _trim(self.cap_ids[rows[m.caption_index]], self.cap_mask[rows[m.caption_index]])
        return {"input_ids": ids, "attention_mask": mask, "image": img, "is_matched": m.is_matched}

    def vqa_batch(self, step: int, batch_size: int, *, seed: int = 0, questions: Tensor | None = None) -> dict[str, Tensor]:
        """A VQA training batch: ``input_ids``/``attention_mask`` (B, T), ``image`` (B,), ``soft_scores`` (B, A).

        ``questions``: the question rows to draw from (default every training question), e.g. the
        few labelled ones of :meth:`labelled_questions`.
        """
        gen = torch.Generator().manual_seed(2_000_003 * seed + step + 7)
        pool = self.rows("questions", "train") if questions is None else questions
        rows = pool[torch.randint(len(pool), (batch_size,), generator=gen)]
        ids, mask = _trim(self.q_ids[rows], self.q_mask[rows])
        return {"input_ids": ids, "attention_mask": mask, "image": self.q_image[rows],
                "soft_scores": self.q_target[rows], "rows": rows}

    def labelled_questions(self, n: int, seed: int = 0) -> Tensor:
        """(n,) rows of ``n`` training questions drawn at random with ``seed``: the low-label regime.

        Raises:
            ValueError: if ``n`` is not in [1, number of training questions].
        """
        pool = self.rows("questions", "train")
        if not 1 <= n <= len(pool):
            raise ValueError(f"n must be in [1, {len(pool)}] (the training questions), got {n}")
        return pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]].sort().values

    @torch.no_grad()
    def vqa_predictions(self, logits_fn: Callable[[dict], Tensor], *, split: str = "test",
                        batch_size: int = 512) -> list[dict]:
        """The argmax answer to every question of ``split``'s images, with its official VQA accuracy.

        ``logits_fn(batch)`` gets batches shaped like :meth:`vqa_batch`'s and returns (B, A) logits.

        Returns:
            one dict per question: ``row``, ``image``, ``question``, ``answer_type`` ("yes/no", "number"
            or "other"), ``predicted``, ``answers`` (the ten annotators') and ``accuracy`` in [0, 1]
            (the official metric, :func:`vlp_course.data.vqa.vqa_accuracy`: min(#matching annotators / 3, 1)
            averaged over the ten ways of leaving one annotator out).
        """
        rows = self.rows("questions", split)
        out = []
        for s in range(0, len(rows), batch_size):
            r = rows[s:s + batch_size]
            ids, mask = _trim(self.q_ids[r], self.q_mask[r])
            b = {"input_ids": ids, "attention_mask": mask, "image": self.q_image[r],
                 "soft_scores": self.q_target[r], "rows": r}
            for p, q in zip(logits_fn(b).argmax(-1).tolist(), r.tolist()):
                vq, answer = self.ds.questions[q], self.answers.decode(p)
                out.append({"row": q, "image": int(vq.image_id), "question": vq.question, "answer_type": vq.answer_type,
                            "predicted": answer, "answers": list(vq.answers), "accuracy": vqa_accuracy(answer, vq.answers)})
        return out

    def score_vqa(self, logits_fn: Callable[[dict], Tensor], *, split: str = "test", batch_size: int = 512) -> float:
        """Official VQA accuracy (:func:`vlp_course.data.vqa.vqa_accuracy`) of the argmax answer
        (:meth:`vqa_predictions` averaged)."""
        return float(np.mean([p["accuracy"] for p in self.vqa_predictions(logits_fn, split=split, batch_size=batch_size)]))

    def majority_accuracy(self, split: str = "test") -> float:
        """VQA accuracy of always answering the most frequent training answer."""
        train = [self.ds.questions[r].multiple_choice_answer for r in self.rows("questions", "train").tolist()]
        top = max(set(train), key=train.count)
        return float(np.mean([vqa_accuracy(top, self.ds.questions[r].answers)
                              for r in self.rows("questions", split).tolist()]))


def build_scene_tensors(n_images: int = 2000, seed: int = 0, *, n_test: int = 300, features: str = "detector",
                        feature_noise: float = 0.3, max_regions: int | None = None, vqa_mask_token: bool | str = False,
                        min_answer_count: int = 3, vocab_tokens: Sequence[str] | None = None) -> SceneTensors:
    """Build :class:`SceneTensors` from ``load_vl_scenes(n_images, seed)`` (cached on disk).

    Args:
        n_test: images held out at the end of the dataset.
        features: ``"detector"`` (the stand-in detector's region features, cached; the default) or
            ``"oracle"`` (one-hot attributes plus noise, the comparison).
        feature_noise: standard deviation of the Gaussian noise on the oracle features.
        vqa_mask_token: questions as ``[CLS] question ? [MASK] [SEP]`` (VisualBERT) instead of
            ``[CLS] question ? [SEP]``; ``"segment"``: ``[CLS] question ? [SEP] [MASK] [SEP]``
            (VL-BERT, the answer slot in segment B). The [MASK] is always at ``attention_mask.sum() - 2``.
        vocab_tokens: the token list of a saved vocabulary (e.g. a checkpoint's), instead of building one.

    Raises:
        ValueError: if ``n_test`` is not in [1, n_images - 1] or ``features`` is not one of :data:`FEATURES`.
    """
    if not 1 <= n_test < n_images:
        raise ValueError(f"n_test must be in [1, {n_images - 1}], got {n_test}")
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    ds = load_vl_scenes(n_images, seed=seed)
    if features == "detector":
        regions = detector_regions(ds.scenes, max_regions=max_regions)
    else:
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
        vqa_mask_token=vqa_mask_token, ids=ids, features=features,
    )


# --------------------------------------------------------------------------------------------------
# NLVR2-style pairs of the scenes
# --------------------------------------------------------------------------------------------------
@dataclass
class PairTensors:
    """Visual-reasoning pairs over the images of a :class:`SceneTensors`: a statement about two images
    and whether it holds (:mod:`vlp_course.data.nlvr2`).

    Training pairs join two training images, held-out pairs two held-out images, so no held-out image
    is ever seen in training. The statements use words the captions and questions never do ("twice",
    "neither", "than" ...): ``vocab`` is the scenes' vocabulary with those words appended at the end,
    so every id of the scenes' vocabulary (and of a checkpoint trained on it) keeps its meaning and a
    model only needs new embedding rows for ``new_words``. Words met only in held-out statements map to [UNK].

    Shapes: P pairs, T statement tokens (``[CLS] statement [SEP]``).
    """

    vocab: Vocabulary
    new_words: list[str]
    examples: list[NLVR2Example]
    input_ids: Tensor  # (P, T)
    attention_mask: Tensor  # (P, T)
    left: Tensor  # (P,) image index of the left image
    right: Tensor  # (P,) image index of the right image
    labels: Tensor  # (P,) 1 = the statement holds
    n_train: int  # pairs 0 .. n_train - 1 are training pairs, the rest held out

    def rows(self, split: str) -> Tensor:
        """Indices of the ``"train"`` or ``"test"`` pairs.

        Raises:
            ValueError: for another split.
        """
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        P = len(self.labels)
        return torch.arange(self.n_train) if split == "train" else torch.arange(self.n_train, P)

    def take(self, rows: Tensor) -> dict[str, Tensor]:
        """The pairs ``rows`` as a batch: ``input_ids``/``attention_mask`` (B, T), ``left``, ``right``, ``labels`` (B,)."""
        ids, mask = _trim(self.input_ids[rows], self.attention_mask[rows])
        return {"input_ids": ids, "attention_mask": mask, "left": self.left[rows], "right": self.right[rows],
                "labels": self.labels[rows]}

    def batch(self, step: int, batch_size: int, *, seed: int = 0, rows: Tensor | None = None) -> dict[str, Tensor]:
        """A training batch of pairs drawn with replacement, the same for the same (step, seed); ``rows``: the
        pairs to draw from (default all training pairs)."""
        gen = torch.Generator().manual_seed(3_000_017 * seed + step + 11)
        pool = self.rows("train") if rows is None else rows
        return self.take(pool[torch.randint(len(pool), (batch_size,), generator=gen)])

    def majority_accuracy(self, split: str = "test") -> float:
        """Accuracy of always answering the training pairs' more frequent label."""
        top = int(self.labels[self.rows("train")].float().mean() >= 0.5)
        return float((self.labels[self.rows(split)] == top).float().mean())


def build_pair_tensors(st: SceneTensors, n_train_pairs: int = 2000, n_test_pairs: int = 600, seed: int = 0) -> PairTensors:
    """Pairs for visual reasoning over ``st``'s images (:func:`vlp_course.data.nlvr2.make_nlvr2`: balanced
    True/False, statements from templates whose truth comes from the scenes' objects).

    Raises:
        ValueError: if either count is below 1, or a split has fewer than 2 images.
    """
    if n_train_pairs < 1 or n_test_pairs < 1:
        raise ValueError(f"n_train_pairs and n_test_pairs must be >= 1, got {n_train_pairs}, {n_test_pairs}")
    scenes = st.ds.scenes
    if st.n_train < 2 or len(scenes) - st.n_train < 2:
        raise ValueError(f"pairs need at least 2 training and 2 held-out images, got {st.n_train} and {len(scenes) - st.n_train}")
    rng = np.random.default_rng(seed)
    train = make_nlvr2([scenes[i] for i in range(st.n_train)], n_train_pairs, rng, split="train")
    test = make_nlvr2([scenes[i] for i in range(st.n_train, len(scenes))], n_test_pairs, rng, split="test")
    seen = sorted({w for e in train for w in tokenize(e.sentence)} - set(st.vocab.itos))
    specials = list(st.vocab.specials)
    vocab = Vocabulary(st.vocab.itos[len(specials):] + seen, specials=specials)
    rows = [[st.ids[CLS]] + vocab.encode(tokenize(e.sentence)) + [st.ids[SEP]] for e in train + test]
    ids, mask = _pad(rows, max(map(len, rows)), st.ids[PAD])
    examples = train + test
    return PairTensors(vocab=vocab, new_words=seen, examples=examples, input_ids=ids, attention_mask=mask,
                       left=torch.tensor([e.left_id for e in examples]), right=torch.tensor([e.right_id for e in examples]),
                       labels=torch.tensor([int(e.label) for e in examples]), n_train=len(train))
