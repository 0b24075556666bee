"""Small course checkpoints: each of the four models pretrained on the scenes dataset, and the
recipe that reproduces them.

A notebook's CPU budget (about a minute) is too short for a from-scratch model to learn to use the
image; the course therefore ships, per model, a small checkpoint pretrained longer with that model's
own pretraining tasks (``data/<model>_scenes.safetensors``, SHA-256 in ``data/SHA256SUMS``), and the
notebooks fine-tune it briefly for VQA. Reproduce one with::

    python -m vlp_course.models.scene_checkpoints --model visualbert      # or lxmert, vilbert, vlbert

What each model sees (one adapter per model below):

* every model: the oracle region features of :mod:`vlp_course.data.vl_tensors` (one-hot shape,
  colour, size + noise) and pixel boxes of 64 x 64 scenes;
* **VisualBERT** has no box input, so the normalised box is appended to the feature (F + 4);
  VQA reads the ``[MASK]`` of ``[CLS] question ? [MASK] [SEP]``;
* **LXMERT** gets normalised (x1, y1, x2, y2) boxes; pretraining adds LXMERT's object (detected
  label), attribute (colour) and feature-regression losses with its 80/10/10 region masking;
  VQA reads the pooled [CLS];
* **ViLBERT** gets the global image token and the 5-d locations; pretraining adds the masked
  region KL loss (90% zeroed / 10% kept); VQA reads the fused pooled vector;
* **VL-BERT** gets the whole image as region 0 (its feature: the mean of the regions'); pretraining
  adds masked RoI classification (soft detector scores, features masked) and no matching task (as
  in the paper); VQA reads the ``[MASK]`` of ``[CLS] question ? [SEP] [MASK] [SEP]`` (answer slot in
  segment B).

Shapes: B batch, T text tokens, N regions, F feature width, A answers.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from vlp_course.data.vl_tensors import FEATURE_WIDTH, SceneTensors, build_scene_tensors
from vlp_course.pretraining.regions import ZERO, mask_regions

__all__ = ["KINDS", "Recipe", "SceneModel", "adapter", "load_scene_checkpoint", "pretrain", "scene_tensors",
           "train_vqa", "transfer_pretrained", "evaluate_pretraining", "vqa_accuracy", "vqa_against_question_only"]

KINDS = ("visualbert", "lxmert", "vilbert", "vlbert")


@dataclass(frozen=True)
class Recipe:
    """Data, model size and training settings of one course checkpoint.

    ``init`` is the standard deviation of the weight initialisation: BERT's 0.02 is calibrated for
    width 768; at width 64 it makes every attention layer's contribution to the residual stream
    ~0.0004·D = 3% of the token's own vector, and cross-modal signals need thousands of steps to
    appear. 0.02·sqrt(768 / D) keeps BERT-base's ratio (0.07 at D = 64).
    """

    kind: str = "visualbert"
    n_images: int = 2000
    n_test: int = 300
    seed: int = 0
    feature_noise: float = 0.3
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    ffn: int = 256
    init: float = 0.07
    batch: int = 128
    lr: float = 1e-3
    warmup: int = 100
    steps: int = 2000

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")


def scene_tensors(recipe: Recipe, vocab_tokens=None) -> SceneTensors:
    """The :class:`SceneTensors` a recipe trains on (VisualBERT and VL-BERT: questions end in [MASK])."""
    return build_scene_tensors(recipe.n_images, recipe.seed, n_test=recipe.n_test, feature_noise=recipe.feature_noise,
                               vqa_mask_token={"visualbert": True, "vlbert": "segment"}.get(recipe.kind, False),
                               vocab_tokens=vocab_tokens)


# --------------------------------------------------------------------------------------------------
# One adapter per model: config, inputs, pretraining losses, VQA
# --------------------------------------------------------------------------------------------------
class SceneModel:
    """How one model is built and fed from :class:`SceneTensors`.

    Subclasses implement ``config``, ``pretraining_model``, ``qa_model``, ``pretrain_losses`` and
    ``vqa``; every method takes batches shaped like :meth:`SceneTensors.pretrain_batch` /
    :meth:`SceneTensors.vqa_batch`.
    """

    kind = ""

    def __init__(self, st: SceneTensors, recipe: Recipe):
        self.st, self.recipe = st, recipe

    def _sizes(self) -> dict[str, Any]:
        r = self.recipe
        return dict(vocab_size=len(self.st.vocab), hidden_size=r.hidden, num_attention_heads=r.heads,
                    intermediate_size=r.ffn, max_position_embeddings=64, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0, initializer_range=r.init)

    def take(self, name: str, batch: dict) -> Tensor:
        """Rows ``batch["image"]`` of the per-image tensor ``self.st.<name>``, on the batch's device."""
        img = batch["image"]
        return getattr(self.st, name)[img.cpu()].to(img.device)

    def images(self, batch: dict, zero_image: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(B, N, F) features, (B, N, 4) pixel boxes, (B, N) region mask.

        ``zero_image`` removes everything the image tells: features and boxes become 0 and every
        region slot counts as real (else the number of regions would answer "how many" questions).
        """
        f, boxes, rmask = self.take("feats", batch), self.take("boxes", batch), self.take("region_mask", batch)
        if zero_image:
            return torch.zeros_like(f), torch.zeros_like(boxes), torch.ones_like(rmask)
        return f, boxes, rmask

    def config(self, num_answers: int | None = None):
        raise NotImplementedError

    def pretraining_model(self) -> nn.Module:
        raise NotImplementedError

    def qa_model(self) -> nn.Module:
        raise NotImplementedError

    def pretrain_losses(self, model: nn.Module, batch: dict, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        raise NotImplementedError

    def vqa(self, model: nn.Module, batch: dict, zero_image: bool = False) -> dict[str, Tensor]:
        """``{"logits": (B, A)}`` plus ``"loss"`` when the batch has ``soft_scores``."""
        raise NotImplementedError


class VisualBertScenes(SceneModel):
    kind = "visualbert"

    def config(self, num_answers=None):
        from vlp_course.models.visualbert import VisualBertConfig

        return VisualBertConfig(**self._sizes(), num_hidden_layers=self.recipe.layers, visual_embedding_dim=FEATURE_WIDTH + 4,
                                num_answers=num_answers or 2)

    def pretraining_model(self):
        from vlp_course.models.visualbert import VisualBertForPreTraining

        return VisualBertForPreTraining(self.config())

    def qa_model(self):
        from vlp_course.models.visualbert import VisualBertForQuestionAnswering

        return VisualBertForQuestionAnswering(self.config(len(self.st.answers)))

    def visual(self, batch, zero_image=False):
        f, boxes, rmask = self.images(batch, zero_image)
        return torch.cat([f, boxes / self.st.image_size], -1), rmask  # (B, N, F + 4): no box input in VisualBERT

    def pretrain_losses(self, model, batch, generator=None):
        v, rmask = self.visual(batch)
        out = model(batch["input_ids"], v, batch["attention_mask"], rmask, mlm_labels=batch["mlm_labels"],
                    is_matched=batch["is_matched"])
        return {"loss": out.loss, "mlm": out.mlm_loss, "itm": out.matching_loss,
                "itm_acc": (out.seq_relationship_logits.argmax(-1) == batch["is_matched"]).float().mean()}

    def vqa(self, model, batch, zero_image=False):
        v, rmask = self.visual(batch, zero_image)
        out = model(batch["input_ids"], v, batch["attention_mask"], rmask, soft_scores=batch.get("soft_scores"))
        return {"logits": out.logits, **({"loss": out.loss} if out.loss is not None else {})}


class LxmertScenes(SceneModel):
    kind = "lxmert"

    def config(self, num_answers=None):
        from vlp_course.data.scenes import COLORS, SHAPES
        from vlp_course.models.lxmert import LxmertConfig

        L = self.recipe.layers
        return LxmertConfig(**self._sizes(), l_layers=L, r_layers=max(1, L // 2), x_layers=max(1, L // 2),
                            visual_feat_dim=FEATURE_WIDTH, num_object_labels=len(SHAPES), num_attr_labels=len(COLORS),
                            num_qa_labels=num_answers or 2, task_qa=False)

    def pretraining_model(self):
        from vlp_course.models.lxmert import LxmertForPreTraining

        return LxmertForPreTraining(self.config())

    def qa_model(self):
        from vlp_course.models.lxmert import LxmertForQuestionAnswering

        return LxmertForQuestionAnswering(self.config(len(self.st.answers)))

    def pretrain_losses(self, model, batch, generator=None):
        f, boxes, rmask = self.images(batch)
        reg = mask_regions(f, scheme="lxmert", region_mask=rmask, generator=generator)  # 15%: 80% zero, 10% swap, 10% keep
        # as in the original, the object and attribute losses cover every box, weighted by the detector's
        # confidence (1 for the oracle); the feature regression covers the masked boxes
        conf = rmask.float()
        out = model(batch["input_ids"], reg.features, boxes / self.st.image_size, batch["attention_mask"], rmask,
                    mlm_labels=batch["mlm_labels"], is_matched=batch["is_matched"],
                    obj_labels=self.take("det_labels", batch).clamp(min=0), obj_confidence=conf,
                    attr_labels=self.take("color_labels", batch).clamp(min=0), attr_confidence=conf,
                    feat_targets=f, feat_mask=reg.selected.float())
        res = {"loss": out.loss}
        for k, v in (out.losses or {}).items():
            res[k] = v
        return res

    def vqa(self, model, batch, zero_image=False):
        f, boxes, rmask = self.images(batch, zero_image)
        out = model(batch["input_ids"], f, boxes / self.st.image_size, batch["attention_mask"], rmask,
                    soft_scores=batch.get("soft_scores"))
        return {"logits": out.logits, **({"loss": out.loss} if out.loss is not None else {})}


class ViLBERTScenes(SceneModel):
    kind = "vilbert"

    def config(self, num_answers=None):
        from vlp_course.models.vilbert import ViLBERTConfig

        r, L = self.recipe, self.recipe.layers
        return ViLBERTConfig(**self._sizes(), num_hidden_layers=L, v_feature_size=FEATURE_WIDTH, v_hidden_size=r.hidden,
                             v_num_hidden_layers=L, v_num_attention_heads=r.heads, v_intermediate_size=r.ffn,
                             bi_hidden_size=r.hidden, bi_num_attention_heads=r.heads, bi_intermediate_size=r.ffn,
                             v_biattention_id=list(range(L)), t_biattention_id=list(range(1, L + 1)),  # text layer first, as in the original
                             v_target_size=len(_shapes()), num_labels=num_answers or 2,
                             v_hidden_dropout_prob=0.0, v_attention_probs_dropout_prob=0.0, fused_dropout_prob=0.0)

    def pretraining_model(self):
        from vlp_course.models.vilbert import ViLBERTForPretraining

        return ViLBERTForPretraining(self.config())

    def qa_model(self):
        from vlp_course.models.vilbert import ViLBERTForVLTasks

        return ViLBERTForVLTasks(self.config(len(self.st.answers)))

    def regions(self, batch, zero_image=False):
        from vlp_course.models.vilbert import prepare_regions

        f, boxes, rmask = self.images(batch, zero_image)
        S = self.st.image_size
        return prepare_regions(f, boxes, S, S, rmask)  # global token first: (B, N+1, F), (B, N+1, 5), (B, N+1)

    def pretrain_losses(self, model, batch, generator=None):
        r = self.regions(batch)
        probs = self.take("det_probs", batch)
        probs = torch.cat([torch.zeros_like(probs[:, :1]), probs], 1)  # (B, N+1, C); row 0 = global token, never a target
        reg = mask_regions(r["features"], scheme="vilbert", region_mask=r["image_attention_mask"], num_global=1,
                           generator=generator)  # 15%: 90% zeroed, 10% kept
        out = model(batch["input_ids"], reg.features, r["locations"], attention_mask=batch["attention_mask"],
                    image_attention_mask=r["image_attention_mask"], masked_lm_labels=batch["mlm_labels"],
                    region_targets=probs, region_labels=reg.selected.long(), is_matched=batch["is_matched"])
        return {"loss": out["loss"], "mlm": out["mlm_loss"], "region_kl": out["region_loss"], "itm": out["matching_loss"],
                "itm_acc": (out["matching_logits"].argmax(-1) == batch["is_matched"]).float().mean()}

    def vqa(self, model, batch, zero_image=False):
        r = self.regions(batch, zero_image)
        return model.vqa(batch["input_ids"], r["features"], r["locations"], soft_scores=batch.get("soft_scores"),
                         attention_mask=batch["attention_mask"], image_attention_mask=r["image_attention_mask"])


class VLBERTScenes(SceneModel):
    kind = "vlbert"

    def config(self, num_answers=None):
        from vlp_course.models.vlbert import VLBERTConfig

        r = self.recipe
        return VLBERTConfig(**self._sizes(), num_hidden_layers=r.layers, visual_feature_size=FEATURE_WIDTH,
                            geometry_dim=8, visual_region_classes=len(_shapes()), obj_downsample_dropout=0.0)

    def pretraining_model(self):
        from vlp_course.models.vlbert import VLBERTForPretraining

        return VLBERTForPretraining(self.config())

    def qa_model(self):
        from vlp_course.models.vlbert import VLBERTForVQA

        return VLBERTForVQA(self.config(), len(self.st.answers))

    def regions(self, batch, zero_image=False):
        from vlp_course.models.vlbert import whole_image_boxes

        f, boxes, rmask = self.images(batch, zero_image)
        S = self.st.image_size
        whole = (f * rmask[..., None]).sum(1, keepdim=True) / rmask.sum(1).clamp(min=1)[:, None, None]  # (B, 1, F)
        feats = torch.cat([whole, f], 1)  # region 0 = the whole image: (B, N+1, F)
        boxes = torch.cat([whole_image_boxes(len(f), S, S).to(f.device), boxes], 1)  # (B, N+1, 4)
        rmask = torch.cat([torch.ones_like(rmask[:, :1]), rmask], 1)  # (B, N+1)
        return feats, boxes, rmask

    def pretrain_losses(self, model, batch, generator=None):
        feats, boxes, rmask = self.regions(batch)
        S = self.st.image_size
        probs = self.take("det_probs", batch)
        probs = torch.cat([torch.zeros_like(probs[:, :1]), probs], 1)  # (B, N+1, C)
        reg = mask_regions(feats, scheme="vlbert", region_mask=rmask, num_global=1, generator=generator)
        # as the original's precomputed mode, the whole-image feature is the mean of the *unmasked*
        # regions, so it cannot show a masked one
        hidden = reg.actions == ZERO  # 90% of the selected regions are hidden, 10% kept (but still predicted)
        keep = (rmask[:, 1:].bool() & ~hidden[:, 1:]).float()[..., None]  # (B, N, 1)
        feats = feats.clone()
        feats[:, 0] = (feats[:, 1:] * keep).sum(1) / keep.sum(1).clamp(min=1)
        out = model(batch["input_ids"], feats, boxes, (S, S), text_mask=batch["attention_mask"], region_mask=rmask,
                    masked_regions=hidden, region_masking="features", masked_lm_labels=batch["mlm_labels"],
                    region_targets=probs, region_selected=reg.selected)
        return {"loss": out["loss"], "mlm": out["mlm_loss"], "mrc": out["mrc_loss"]}

    def vqa(self, model, batch, zero_image=False):
        feats, boxes, rmask = self.regions(batch, zero_image)
        S = self.st.image_size
        mask = batch["attention_mask"]
        pos = mask.sum(1) - 2  # the [MASK] of [CLS] question ? [SEP] [MASK] [SEP]
        segments = (torch.arange(mask.shape[1], device=mask.device)[None] >= pos[:, None]).long() * mask  # answer slot: B
        return model.vqa(batch["input_ids"], feats, boxes, (S, S), pos, soft_scores=batch.get("soft_scores"),
                         token_type_ids=segments, text_mask=mask, region_mask=rmask)


def _shapes():
    from vlp_course.data.scenes import SHAPES

    return SHAPES


_ADAPTERS = {"visualbert": VisualBertScenes, "lxmert": LxmertScenes, "vilbert": ViLBERTScenes, "vlbert": VLBERTScenes}


def adapter(st: SceneTensors, recipe: Recipe) -> SceneModel:
    """The :class:`SceneModel` of ``recipe.kind``."""
    return _ADAPTERS[recipe.kind](st, recipe)


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
def transfer_pretrained(qa_model: nn.Module, pretrained: nn.Module) -> dict[str, list[str]]:
    """Copy the pretrained encoder into a VQA model (same parameter names); the new answer head keeps
    its initialisation. Returns ``{"loaded": [...], "new": [...], "dropped": [...]}`` key lists.

    Raises:
        ValueError: if a shared key has a different shape in the two models.
    """
    own, src = qa_model.state_dict(), pretrained.state_dict()
    bad = [k for k in own if k in src and own[k].shape != src[k].shape]
    if bad:
        raise ValueError(f"shapes differ between the pretrained and the VQA model for {bad[:5]}")
    qa_model.load_state_dict({k: src[k] for k in own if k in src}, strict=False)
    return {"loaded": [k for k in own if k in src], "new": [k for k in own if k not in src],
            "dropped": [k for k in src if k not in own]}


def pretrain(model: nn.Module, sm: SceneModel, steps: int, *, batch: int | None = None, lr: float | None = None,
             warmup: int | None = None, seed: int = 0, progress: bool = False, device=None):
    """Pretrain ``model`` with its own tasks on the training images; returns the training History."""
    from vlp_course.training import TrainConfig, train

    r = sm.recipe
    B = batch or r.batch
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed + 17)  # region masking draws on the model's device
    return train(model, lambda s: sm.st.pretrain_batch(s, B, seed=seed),
                 lambda m, b: sm.pretrain_losses(m, b, gen),
                 TrainConfig(steps=steps, lr=lr or r.lr, warmup_steps=r.warmup if warmup is None else warmup, seed=seed,
                             progress=progress), device=device)


def train_vqa(model: nn.Module, sm: SceneModel, steps: int, *, zero_image: bool = False, batch: int = 64,
              lr: float = 1e-3, warmup: int = 20, seed: int = 0, progress: bool = False, device=None):
    """Fine-tune for VQA (soft-score loss of the model's original code) on the training questions."""
    from vlp_course.training import TrainConfig, train

    def step(m, b):
        return {"loss": sm.vqa(m, b, zero_image)["loss"]}

    return train(model, lambda s: {k: v for k, v in sm.st.vqa_batch(s, batch, seed=seed).items() if k != "rows"}, step,
                 TrainConfig(steps=steps, lr=lr, warmup_steps=warmup, seed=seed, progress=progress), device=device)


@torch.no_grad()
def evaluate_pretraining(model: nn.Module, sm: SceneModel, *, split: str = "test", batches: int = 8, batch: int = 128,
                         seed: int = 123) -> dict[str, float]:
    """Each pretraining loss (and matching accuracy) averaged over ``batches`` held-out batches."""
    model.eval()
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    sums: dict[str, float] = {}
    for s in range(batches):
        b = {k: v.to(dev) for k, v in sm.st.pretrain_batch(s, batch, seed=seed, split=split).items()}
        out = sm.pretrain_losses(model, b, gen)
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v) / batches
    return sums


def vqa_accuracy(model: nn.Module, sm: SceneModel, *, zero_image: bool = False, split: str = "test") -> float:
    """Official VQA accuracy on the held-out images' questions."""
    model.eval()
    dev = next(model.parameters()).device
    return sm.st.vqa_accuracy(lambda b: sm.vqa(model, {k: v.to(dev) for k, v in b.items()}, zero_image)["logits"].cpu(),
                              split=split)


def vqa_against_question_only(pretrained: nn.Module, sm: SceneModel, steps: int, *, name: str, batch: int = 64,
                              seed: int = 0, device=None) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Fine-tune two VQA models from the same checkpoint for the same budget, one with the image
    zeroed (the question-only baseline) and one with it, and measure both on the held-out images.

    Returns:
        ``({"question only (image zeroed)": acc, f"{name} (with the image)": acc, "majority answer": acc},
        the last :func:`transfer_pretrained` report)``; accuracies are official VQA accuracy in [0, 1].
    """
    results: dict[str, float] = {}
    for label, zero_image in (("question only (image zeroed)", True), (f"{name} (with the image)", False)):
        torch.manual_seed(seed)
        qa = sm.qa_model()
        moved = transfer_pretrained(qa, pretrained)
        t = time.perf_counter()
        train_vqa(qa, sm, steps, zero_image=zero_image, batch=batch, seed=seed, device=device)
        results[label] = vqa_accuracy(qa, sm, zero_image=zero_image)
        print(f"{label}: VQA accuracy {results[label]:.1%} ({steps} steps, {time.perf_counter() - t:.1f} s)")
    results["majority answer"] = sm.st.majority_accuracy()
    return results, moved


# --------------------------------------------------------------------------------------------------
# The shipped checkpoints
# --------------------------------------------------------------------------------------------------
def checkpoint_name(kind: str) -> str:
    return f"{kind}_scenes.safetensors"


def load_scene_checkpoint(kind: str, path: str | Path | None = None):
    """Load a course checkpoint: returns ``(model, adapter, metadata)``.

    The file (default ``data/<kind>_scenes.safetensors``) must match its SHA-256 in
    ``data/SHA256SUMS``; its metadata holds the :class:`Recipe` and the vocabulary, so the data are
    rebuilt exactly as in training. When the course is installed without its ``data/`` folder, the
    checkpoint is pretrained once with the default recipe (on CUDA when available) and cached.

    Raises:
        ValueError: unknown kind, a SHA-256 mismatch, or a checkpoint whose keys do not fit the model.
        FileNotFoundError: if the file is missing (reproduce it with the command in the module docstring).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    from vlp_course.data.cache import atomic_write_bytes, cache_dir, sha256_file
    from vlp_course.data.detector import _data_dir, _expected_sha256

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    p = Path(path) if path is not None else _data_dir() / checkpoint_name(kind)
    if not p.exists() and path is None:
        # installed without the repository's data/ folder (e.g. pip on Colab): train it once, cache it
        cached = cache_dir() / "checkpoints" / checkpoint_name(kind)
        if not cached.exists():
            warnings.warn(f"{p} is not here: pretraining the {kind} checkpoint now (minutes on a CPU, "
                          f"seconds on a GPU); it is cached in {cached}", stacklevel=2)
            device = "cuda" if torch.cuda.is_available() else None
            atomic_write_bytes(cached, train_scene_checkpoint(Recipe(kind=kind), device=device, progress=True))
        p, path = cached, cached
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing; reproduce it with: python -m vlp_course.models.scene_checkpoints --model {kind}")
    if path is None:
        expected, got = _expected_sha256(p.name), sha256_file(p)
        if expected != got:
            raise ValueError(f"{p}: SHA-256 {got} differs from data/SHA256SUMS ({expected})")
    with safe_open(str(p), "pt") as fh:
        meta = dict(fh.metadata() or {})
    recipe = Recipe(**json.loads(meta["recipe"]))
    st = scene_tensors(recipe, vocab_tokens=json.loads(meta["vocab"]))
    sm = adapter(st, recipe)
    model = sm.pretraining_model()
    missing, unexpected = model.load_state_dict(load_file(str(p)), strict=False)
    if missing or unexpected:
        raise ValueError(f"{p} does not fit {type(model).__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval(), sm, meta


def _curves(train: dict[str, list[float]], window: int) -> dict[str, list[float]]:
    n = len(next(iter(train.values())))
    starts = list(range(0, n - window + 1, window))
    out = {"step": [s + window for s in starts]}
    for k, v in train.items():
        out[k] = [round(sum(v[s:s + window]) / window, 4) for s in starts]
    return out


def train_scene_checkpoint(recipe: Recipe, *, device=None, progress: bool = True) -> bytes:
    """Pretrain ``recipe``'s model from scratch; returns the safetensors file (bytes) with its metadata."""
    from safetensors.torch import save

    st = scene_tensors(recipe)
    sm = adapter(st, recipe)
    torch.manual_seed(recipe.seed)
    model = sm.pretraining_model()
    t = time.perf_counter()
    hist = pretrain(model, sm, recipe.steps, seed=recipe.seed, progress=progress, device=device)
    secs = time.perf_counter() - t
    last = {k: float(sum(v[-100:]) / len(v[-100:])) for k, v in hist.train.items()}
    print(f"{recipe.kind}: {recipe.steps} steps in {secs:.0f} s; last 100 steps: " + ", ".join(f"{k} {v:.3f}" for k, v in last.items()))
    # tied weights (the MLM decoder and the word embeddings) are stored once per name
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    meta = {"recipe": json.dumps(asdict(recipe)), "vocab": json.dumps(st.vocab.itos),
            "final_losses": json.dumps({k: round(v, 4) for k, v in last.items()}), "train_seconds": f"{secs:.0f}",
            # the training curves, averaged over windows of 50 steps: {"step": [...], "mlm": [...], ...}
            "history": json.dumps(_curves(hist.train, 50))}
    return save(state, metadata=meta)


def _main(argv=None) -> int:
    from vlp_course.data.cache import atomic_write_bytes, atomic_write_text, sha256_file
    from vlp_course.data.detector import _data_dir

    ap = argparse.ArgumentParser(description="Pretrain a course model on the scenes and write data/<model>_scenes.safetensors")
    ap.add_argument("--model", choices=KINDS, required=True)
    ap.add_argument("--steps", type=int, default=Recipe.steps)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=str(_data_dir()))
    args = ap.parse_args(argv)
    data = train_scene_checkpoint(Recipe(kind=args.model, steps=args.steps), device=args.device)
    out = Path(args.out)
    name = checkpoint_name(args.model)
    atomic_write_bytes(out / name, data)
    digest = sha256_file(out / name)
    sums = out / "SHA256SUMS"
    lines = [ln for ln in (sums.read_text().splitlines() if sums.exists() else []) if not ln.endswith(name)]
    atomic_write_text(sums, "\n".join(sorted(lines + [f"{digest}  {name}"])) + "\n")
    print(f"wrote {out / name} ({(out / name).stat().st_size:,} bytes), sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
