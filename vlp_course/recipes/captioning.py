"""Captioning on the scenes: the captioner, how it is fed and fine-tuned, and its shipped checkpoint.

The captioner (:class:`~vlp_course.models.captioning.VisualBertForCaptioning`) starts from the
course's pretrained **VisualBERT** checkpoint. Why VisualBERT: Unified VLP generates with a single
stream, where one attention mask can decide what each word sees; of the two single-stream models
of the course, VisualBERT's checkpoint transfers best (notebook 16: VQA 79.8% against VL-BERT's
62.4% from the checkpoints), and its masked-LM head was trained on these very captions.

Fine-tuning is Unified VLP's captioning stage (Zhou et al. 2020, section 3.2; LuoweiZhou/VLP
``vlp/run_img2txt_dist.py``): masked LM on the caption only, under the seq2seq mask, with 15% of a
caption's tokens (at most 3, at least 1, the final [SEP] among the candidates) chosen and
80/10/10-replaced (:func:`~vlp_course.pretraining.text_masking.mask_caption_tokens`). The training
captions are those of the recipe's training images; generation runs on the held-out ones.

Reproduce the shipped file: ``python -m vlp_course.recipes.captioning`` (see :func:`_main`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from vlp_course import files
from vlp_course.checkpoints import load_safetensors, read_header_metadata, save_safetensors
from vlp_course.models.blocks import VLOutput
from vlp_course.models.captioning import Decoded, VisualBertForCaptioning, beam_search, greedy_decode
from vlp_course.pretraining.text_masking import mask_caption_tokens
from vlp_course.recipes.shipped import _curves, load_scene_checkpoint
from vlp_course.recipes.visualbert import VisualBertAdapter
from vlp_course.text.vocab import CLS, MASK, PAD, SEP, UNK
from vlp_course.training import History, TrainConfig, train

__all__ = ["CaptionRecipe", "captioner_from_pretrained", "caption_step", "finetune_captioner", "special_ids",
           "generate_captions", "caption_text", "load_captioner", "train_captioner_checkpoint", "CAPTIONER_FILE",
           "most_frequent_caption", "nearest_image_captions"]

CAPTIONER_FILE = "captioner_scenes.safetensors"


@dataclass(frozen=True)
class CaptionRecipe:
    """The fine-tuning of the shipped captioner (batch 128, AdamW 1e-3 with 100 warm-up steps, as the
    course's pretraining; Unified VLP's ``max_pred`` 3 and ``mask_prob`` 0.15)."""

    steps: int = 3000
    batch: int = 128
    lr: float = 1e-3
    warmup: int = 100
    mlm_probability: float = 0.15
    max_predictions: int = 3
    seed: int = 0


def special_ids(adapter: VisualBertAdapter) -> dict[str, int]:
    """The ids :func:`~vlp_course.models.captioning.greedy_decode` needs: cls, sep, mask, pad, unk."""
    ids = adapter.st.ids
    return {"cls": ids[CLS], "sep": ids[SEP], "mask": ids[MASK], "pad": ids[PAD], "unk": ids[UNK]}


def captioner_from_pretrained(kind: str = "visualbert") -> tuple[VisualBertForCaptioning, VisualBertAdapter]:
    """A captioner holding the shipped VisualBERT checkpoint's weights (not its matching head), and its adapter.

    Raises:
        ValueError: for a kind other than ``"visualbert"`` (the captioner is built on its encoder).
    """
    if kind != "visualbert":
        raise ValueError(f"the captioner starts from the 'visualbert' checkpoint, got {kind!r}")
    pre, ad, _ = load_scene_checkpoint("visualbert")
    return VisualBertForCaptioning.from_pretraining(pre), ad


def caption_step(model: VisualBertForCaptioning, adapter: VisualBertAdapter, batch: dict, *,
                 recipe: CaptionRecipe = CaptionRecipe(), generator: torch.Generator | None = None,
                 mode: str = "seq2seq") -> VLOutput:
    """One fine-tuning forward: mask a few caption tokens, predict them under ``mode``'s mask.

    ``batch`` as :meth:`~vlp_course.data.vl_tensors.SceneTensors.pretrain_batch` makes it (only matched pairs
    are used: ``p_negative=0``): ``input_ids``, ``attention_mask`` (B, T), ``image`` (B,).
    """
    st = adapter.st
    input_ids, labels = mask_caption_tokens(
        batch["input_ids"], batch["attention_mask"], len(st.vocab), st.ids[MASK],
        special_token_ids=st.vocab.special_ids(), mlm_probability=recipe.mlm_probability,
        max_predictions=recipe.max_predictions, generator=generator)
    visual_feats, visual_attention_mask = adapter.regions(batch)  # (B, N, F + 4), (B, N)
    return model(input_ids, visual_feats, batch["attention_mask"], visual_attention_mask, mode=mode, mlm_labels=labels)


def finetune_captioner(model: VisualBertForCaptioning, adapter: VisualBertAdapter, steps: int, *,
                       recipe: CaptionRecipe = CaptionRecipe(), progress: bool = False, device=None) -> History:
    """Fine-tune ``model`` for ``steps`` steps of caption-only masked LM on the training images' captions."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(recipe.seed + 23)

    def step(m, b):
        out = caption_step(m, adapter, b, recipe=recipe, generator=gen)
        return {"loss": out.loss}

    def batches(s):
        b = adapter.st.pretrain_batch(s, recipe.batch, seed=recipe.seed, p_negative=0.0)
        return {k: b[k] for k in ("input_ids", "attention_mask", "image")}

    return train(model, batches, step, TrainConfig(steps=steps, lr=recipe.lr, warmup_steps=recipe.warmup,
                                                   seed=recipe.seed, progress=progress), device=device)


def _image_indices(images) -> Tensor:
    """Image indices as a flat int64 tensor; floats and booleans are refused (1700.9 is not an image)."""
    t = torch.as_tensor(images)
    if t.dtype == torch.bool or t.dtype.is_floating_point or t.dtype.is_complex:
        raise ValueError(f"image indices must be integers, got {t.dtype}")
    return t.long().reshape(-1)


def caption_text(adapter: VisualBertAdapter, ids: Tensor) -> str:
    """The words of one decoded row ``[CLS] w_1 … [SEP] [PAD] …`` as a caption string."""
    stop = {adapter.st.ids[SEP], adapter.st.ids[PAD]}
    words = []
    for i in ids.tolist()[1:]:
        if i in stop:
            break
        words.append(adapter.st.vocab.itos[i])
    return " ".join(words)


@torch.no_grad()
def generate_captions(model: VisualBertForCaptioning, adapter: VisualBertAdapter, images, *, beam_size: int = 5,
                      max_length: int = 20, batch_size: int = 256) -> list[str]:
    """A caption for each image index in ``images`` (beam search, or greedy for ``beam_size=1``).

    Raises:
        ValueError: an image index outside the scenes, or the decoders' errors.
    """
    img = _image_indices(images)
    n = adapter.st.feats.shape[0]
    if img.numel() and (int(img.min()) < 0 or int(img.max()) >= n):
        raise ValueError(f"image indices must lie in [0, {n}), got {int(img.min())} .. {int(img.max())}")
    dev = next(model.parameters()).device
    ids = special_ids(adapter)
    out: list[str] = []
    for s in range(0, img.numel(), batch_size):
        b = {"image": img[s:s + batch_size].to(dev)}
        feats, vmask = adapter.regions(b)  # (b, N, F + 4), (b, N)
        if beam_size == 1:
            dec: Decoded = greedy_decode(model, feats, vmask, special_ids=ids, max_length=max_length)
        else:
            dec = beam_search(model, feats, vmask, special_ids=ids, beam_size=beam_size, max_length=max_length)
        out += [caption_text(adapter, row) for row in dec.ids.cpu()]
    return out


def most_frequent_caption(adapter: VisualBertAdapter) -> str:
    """The caption string written most often for the training images (the first, in image order, on a tie):
    the baseline that ignores the image."""
    st = adapter.st
    counts = Counter(c for i in range(st.n_train) for c in st.ds.captions[i])
    return counts.most_common(1)[0][0]


def nearest_image_captions(adapter: VisualBertAdapter, images) -> list[str]:
    """For each image, the first caption of the training image nearest to it: the baseline that copies.

    Each image is described by the mean of its real regions' features (the detector's, as the
    captioner sees them), compared by cosine similarity (scikit-learn's ``NearestNeighbors``).

    Raises:
        ValueError: an image index outside the scenes.
    """
    from sklearn.neighbors import NearestNeighbors

    st = adapter.st
    img = _image_indices(images)
    if img.numel() and (int(img.min()) < 0 or int(img.max()) >= st.feats.shape[0]):
        raise ValueError(f"image indices must lie in [0, {st.feats.shape[0]}), got {int(img.min())} .. {int(img.max())}")
    m = st.region_mask.float()[..., None]  # (I, N, 1)
    mean = (st.feats * m).sum(1) / m.sum(1).clamp_min(1)  # (I, F) mean region feature of each image
    nn_index = NearestNeighbors(n_neighbors=1, metric="cosine").fit(mean[: st.n_train].numpy())
    _, nearest = nn_index.kneighbors(mean[img].numpy())  # (n, 1) a training image index
    return [st.ds.captions[int(j)][0] for j in nearest[:, 0]]


def train_captioner_checkpoint(path: str | Path, recipe: CaptionRecipe = CaptionRecipe(), *, device=None,
                               progress: bool = True) -> Path:
    """Fine-tune the captioner from the shipped VisualBERT checkpoint and write it (safetensors, with
    the recipe, the base checkpoint's recipe and vocabulary, the final loss and the loss curve)."""
    model, ad = captioner_from_pretrained()
    torch.manual_seed(recipe.seed)
    t = time.perf_counter()
    hist = finetune_captioner(model, ad, recipe.steps, recipe=recipe, progress=progress, device=device)
    secs = time.perf_counter() - t
    last = float(sum(hist.train["loss"][-100:]) / len(hist.train["loss"][-100:]))
    print(f"captioner: {recipe.steps} steps in {secs:.0f} s; caption MLM loss over the last 100 steps {last:.3f}")
    meta = {"caption_recipe": json.dumps(asdict(recipe)), "recipe": json.dumps(asdict(ad.recipe)),
            "vocab": json.dumps(ad.st.vocab.itos), "final_losses": json.dumps({"mlm": round(last, 4)}),
            "train_seconds": f"{secs:.0f}", "history": json.dumps(_curves(hist.train, 50))}
    return save_safetensors(model.cpu(), path, metadata=meta)


def _rebuild() -> str:
    return "python -m vlp_course.recipes.captioning"


def load_captioner(path: str | Path | None = None) -> tuple[VisualBertForCaptioning, VisualBertAdapter, dict]:
    """The shipped captioner (default ``vlp_course/shipped/captioner_scenes.safetensors``, checked
    against ``SHA256SUMS``): ``(model, adapter, metadata)``.

    Raises:
        FileNotFoundError: the file is missing (the message gives the command that reproduces it).
        ValueError: a SHA-256 mismatch, or a file whose keys do not fit the captioner.
    """
    p = Path(path) if path is not None else files.shipped_dir() / CAPTIONER_FILE
    if path is None:
        files.check_shipped(p, _rebuild())
    elif not p.exists():
        raise FileNotFoundError(f"{p} is missing; reproduce it with: {_rebuild()}")
    meta = read_header_metadata(p)
    _, ad, base_meta = load_scene_checkpoint("visualbert")
    if json.loads(meta["vocab"]) != ad.st.vocab.itos:
        raise ValueError(f"{p} was trained with another vocabulary than the shipped VisualBERT checkpoint; rebuild it: {_rebuild()}")
    model = VisualBertForCaptioning(ad.config())
    missing, unexpected = model.load_state_dict(load_safetensors(p), strict=False)
    if missing or unexpected:
        raise ValueError(f"{p} does not fit VisualBertForCaptioning: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval(), ad, meta


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=f"Fine-tune the scenes captioner and write vlp_course/shipped/{CAPTIONER_FILE}")
    ap.add_argument("--steps", type=int, default=CaptionRecipe.steps)
    ap.add_argument("--seed", type=int, default=CaptionRecipe.seed)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=str(files.shipped_dir()))
    args = ap.parse_args(argv)
    target = Path(args.out) / CAPTIONER_FILE
    train_captioner_checkpoint(target, CaptionRecipe(steps=args.steps, seed=args.seed), device=args.device)
    digest = files.record_sha256(target)
    print(f"wrote {target} ({target.stat().st_size:,} bytes), sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
