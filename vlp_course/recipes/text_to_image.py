"""Text-to-image on the scenes: image tokens, the MaskGIT generator, its training, and the shipped checkpoint.

The data are the course's scenes and captions (the same split as every model notebook: the
training images' five captions each for training, the held-out images' captions to draw), each
scene's objects redrawn on the flat background (``TextToImageRecipe.background = "plain"``: the dark
textures of half the scenes are noise no caption mentions). Images
become 16 x 16 grids of k-means codes over 4 x 4 patches (1,024 codes,
:class:`~vlp_course.vision.image_tokens.PatchTokenizer`); the generator
(:class:`~vlp_course.models.text_to_image.MaskGIT`) learns to fill in masked codes given the
caption, and draws by MaskGIT's iterative decoding. Drawn images are judged by the course's eyes
(:func:`~vlp_course.data.scene_reader.captions_seen_true`): the share whose objects, as read, make
their caption true, against a caption written for another image (the control). 10% of the training
captions are replaced by the empty caption, so that drawing can use Muse's classifier-free guidance.

The shipped generator (3,000 steps, 35 minutes on one core) draws the colours a caption names (83% of
100 held-out captions, control 8%) but not the shapes: the whole caption is true of 20% of its drawings
(control 9%), short of the 70% the course aimed at (notebook 18; ``benchmarks/bench_text_to_image.py``).

Reproduce the shipped file: ``python -m vlp_course.recipes.text_to_image`` (see :func:`_main`).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vlp_course import files
from vlp_course.checkpoints import load_safetensors, read_header_metadata, save_safetensors
from vlp_course.models.text_to_image import MaskGIT, TextToImageConfig, generate, mask_image_tokens
from vlp_course.data.scenes import render_scene
from vlp_course.recipes.base import Recipe, scene_tensors
from vlp_course.recipes.shipped import _curves
from vlp_course.text.vocab import CLS, PAD, SEP, tokenize
from vlp_course.training import History, TrainConfig, train
from vlp_course.vision.gan import CaptionGAN, train_caption_gan
from vlp_course.vision.image_tokens import PatchTokenizer

__all__ = ["TextToImageRecipe", "TextToImageData", "text_to_image_data", "encode_captions", "train_generator",
           "draw", "load_text_to_image", "train_text_to_image_checkpoint", "TEXT_TO_IMAGE_FILE",
           "GANRecipe", "bag_of_words", "train_gan_baseline", "draw_with_gan", "load_caption_gan",
           "train_caption_gan_checkpoint", "CAPTION_GAN_FILE"]

TEXT_TO_IMAGE_FILE = "text_to_image_scenes.safetensors"
CAPTION_GAN_FILE = "caption_gan_scenes.safetensors"


@dataclass(frozen=True)
class TextToImageRecipe:
    """The shipped generator's settings: 4 x 4 patches, 1,024 codes; hidden 96, 3 layers, 4 heads; batch 32,
    AdamW 1e-3 with 100 warm-up steps and gradient clipping at 1 (the course's defaults); the objects on the flat
    background; 10% of captions dropped (for guidance); row and column embeddings for the image tokens.

    Raises:
        ValueError: an unknown ``background`` or a ``caption_dropout`` outside [0, 1).
    """

    codes: int = 1024
    patch: int = 4
    hidden: int = 96
    layers: int = 3
    heads: int = 4
    max_text_length: int = 32
    steps: int = 3000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 100
    seed: int = 0
    background: str = "plain"
    caption_dropout: float = 0.1
    image_positions: str = "grid"

    def __post_init__(self) -> None:
        if self.background not in ("scenes", "plain"):
            raise ValueError(f"background must be 'scenes' (as the scenes are drawn) or 'plain', got {self.background!r}")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError(f"caption_dropout must lie in [0, 1), got {self.caption_dropout}")

    def config(self, num_words: int, num_image_tokens: int) -> TextToImageConfig:
        """The generator's :class:`TextToImageConfig` for a vocabulary of ``num_words`` and G image tokens."""
        return TextToImageConfig(hidden_size=self.hidden, num_attention_heads=self.heads, num_hidden_layers=self.layers,
                                 intermediate_size=4 * self.hidden, num_words=num_words, num_codes=self.codes,
                                 num_image_tokens=num_image_tokens, max_text_length=self.max_text_length,
                                 image_positions=self.image_positions,
                                 initializer_range=0.02 * (768 / self.hidden) ** 0.5)


@dataclass
class TextToImageData:
    """The scenes as the generator sees them.

    Attributes:
        vocab: the course's scene vocabulary (the models' and the captioner's).
        tokenizer: the image tokenizer. images: (I, S, S, 3) uint8, all scenes as the generator learns them (the
            objects on the flat background with the default recipe). n_train: training images.
        codes: (I, G) int64 image tokens of every scene.
        pair_image: (P,) the image of each training caption; input_ids, attention_mask: (P, T).
        captions: list of I lists of captions (every image's five).
    """

    vocab: object
    tokenizer: PatchTokenizer
    images: np.ndarray
    n_train: int
    codes: Tensor
    pair_image: Tensor
    input_ids: Tensor
    attention_mask: Tensor
    captions: list

    def held_out(self, n: int | None = None) -> list[int]:
        """The first ``n`` held-out image indices (all of them by default)."""
        stop = len(self.images) if n is None else min(len(self.images), self.n_train + n)
        return list(range(self.n_train, stop))


def _known_words(vocab, caption: str, row: int) -> list[str]:
    """The caption's words; a ValueError naming the words the scenes' vocabulary lacks (the generator knows no other)."""
    words = tokenize(caption)
    unknown = [w for w in words if w not in vocab.stoi]
    if unknown:
        raise ValueError(f"caption {row} ({caption!r}) has words the scenes' vocabulary lacks: {unknown}")
    return words


def encode_captions(vocab, captions, max_text_length: int = 32) -> tuple[Tensor, Tensor]:
    """``[CLS] words [SEP] [PAD] …`` ids and the keep mask for each caption: (N, T), (N, T), T = ``max_text_length``.

    Raises:
        ValueError: a caption with a word outside the scenes' vocabulary (the generator knows no other),
            or longer than T - 2 words.
    """
    ids = torch.full((len(captions), max_text_length), vocab.stoi[PAD], dtype=torch.long)
    for r, c in enumerate(captions):
        words = _known_words(vocab, c, r)
        if len(words) > max_text_length - 2:
            raise ValueError(f"caption {r} has {len(words)} words; at most {max_text_length - 2} fit")
        row = [vocab.stoi[CLS]] + [vocab.stoi[w] for w in words] + [vocab.stoi[SEP]]
        ids[r, :len(row)] = torch.tensor(row)
    return ids, (ids != vocab.stoi[PAD]).long()


def text_to_image_data(recipe: TextToImageRecipe = TextToImageRecipe(), tokenizer: PatchTokenizer | None = None) -> TextToImageData:
    """Tokenize the course's scenes (fitting the k-means codebook on the training images unless ``tokenizer`` is
    given) and encode the training captions."""
    st = scene_tensors(Recipe(kind="visualbert"))
    images, n_train = st.ds.scenes.images, st.n_train
    if recipe.background == "plain":  # the same objects on the flat background
        images = np.stack([render_scene(objs, images.shape[1], background="plain").image for objs in st.ds.scenes.objects])
    if tokenizer is None:
        tokenizer = PatchTokenizer.fit(images[:n_train], codes=recipe.codes, patch=recipe.patch, seed=recipe.seed)
    codes = tokenizer.encode(images)  # (I, G)
    pairs = [(i, c) for i in range(n_train) for c in st.ds.captions[i]]
    ids, mask = encode_captions(st.vocab, [c for _, c in pairs], recipe.max_text_length)
    return TextToImageData(st.vocab, tokenizer, images, n_train, codes, torch.tensor([i for i, _ in pairs]),
                           ids, mask, st.ds.captions)


def train_generator(model: MaskGIT, data: TextToImageData, steps: int, *, recipe: TextToImageRecipe = TextToImageRecipe(),
                    progress: bool = False, device=None) -> History:
    """``steps`` MaskGIT steps: random training captions, their image's codes masked by
    :func:`~vlp_course.models.text_to_image.mask_image_tokens`, cross-entropy on the masked ones."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    g_rows = torch.Generator().manual_seed(recipe.seed + 31)
    g_mask = torch.Generator(device=dev).manual_seed(recipe.seed + 37)
    K = model.config.num_codes
    empty_ids, empty_keep = encode_captions(data.vocab, [""], data.input_ids.shape[1])  # (1, T): [CLS] [SEP]

    def batches(step):
        rows = torch.randint(len(data.pair_image), (recipe.batch,), generator=g_rows)
        return {"input_ids": data.input_ids[rows], "attention_mask": data.attention_mask[rows],
                "codes": data.codes[data.pair_image[rows]]}

    def step_fn(m, b):
        tokens, labels = mask_image_tokens(b["codes"], K, generator=g_mask)
        ids, keep = b["input_ids"], b["attention_mask"]
        if recipe.caption_dropout > 0:  # Muse's classifier-free guidance needs some captionless examples
            drop = torch.rand(len(ids), generator=g_mask, device=ids.device) < recipe.caption_dropout
            ids = torch.where(drop[:, None], empty_ids.to(ids.device), ids)
            keep = torch.where(drop[:, None], empty_keep.to(keep.device), keep)
        _, loss = m(ids, keep, tokens, labels)
        return {"loss": loss}

    return train(model, batches, step_fn, TrainConfig(steps=steps, lr=recipe.lr, warmup_steps=recipe.warmup,
                                                      seed=recipe.seed, progress=progress), device=device)


@torch.no_grad()
def draw(model: MaskGIT, data: TextToImageData, captions, *, iterations: int = 8, choice_temperature: float = 4.5,
         guidance_scale: float = 0.0, temperature: float = 1.0, seed: int = 0, batch_size: int = 200) -> np.ndarray:
    """One image per caption: (N, S, S, 3) uint8, drawn by :func:`~vlp_course.models.text_to_image.generate`.

    Raises:
        ValueError: a caption with words outside the scenes' vocabulary (see :func:`encode_captions`).
    """
    captions = [captions] if isinstance(captions, str) else list(captions)
    ids, mask = encode_captions(data.vocab, captions, model.config.max_text_length)
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    empty = encode_captions(data.vocab, [""], model.config.max_text_length) if guidance_scale else None
    out = [generate(model, ids[s:s + batch_size].to(dev), mask[s:s + batch_size].to(dev), iterations=iterations,
                    choice_temperature=choice_temperature, generator=gen, guidance_scale=guidance_scale,
                    empty_caption=empty, temperature=temperature).cpu()
           for s in range(0, len(captions), batch_size)]
    return data.tokenizer.decode(torch.cat(out)) if out else np.zeros((0, data.tokenizer.image_size,
                                                                       data.tokenizer.image_size, 3), np.uint8)


def train_text_to_image_checkpoint(path: str | Path, recipe: TextToImageRecipe = TextToImageRecipe(), *, device=None,
                                   progress: bool = True) -> Path:
    """Fit the tokenizer, train the generator from scratch and write both to ``path`` (safetensors: the
    generator's weights and ``tokenizer.codebook``; metadata: the recipe, the vocabulary, the final loss, the
    seconds and the loss curve)."""
    torch.manual_seed(recipe.seed)
    t = time.perf_counter()
    data = text_to_image_data(recipe)
    model = MaskGIT(recipe.config(len(data.vocab), data.tokenizer.num_tokens))
    hist = train_generator(model, data, recipe.steps, recipe=recipe, progress=progress, device=device)
    secs = time.perf_counter() - t
    last = float(np.mean(hist.train["loss"][-100:]))
    print(f"text-to-image: {recipe.steps} steps in {secs:.0f} s; loss over the last 100 steps {last:.3f}")
    meta = {"text_to_image_recipe": json.dumps(asdict(recipe)), "vocab": json.dumps(data.vocab.itos),
            "final_losses": json.dumps({"loss": round(last, 4)}), "train_seconds": f"{secs:.0f}",
            "history": json.dumps(_curves(hist.train, 50))}
    state = dict(model.cpu().state_dict())
    state["tokenizer_codebook"] = data.tokenizer.codebook.clone()  # (K, P*P*3)
    return save_safetensors(state, path, metadata=meta)


def _rebuild() -> str:
    return "python -m vlp_course.recipes.text_to_image"


def load_text_to_image(path: str | Path | None = None) -> tuple[MaskGIT, TextToImageData, dict]:
    """The shipped generator (default ``vlp_course/shipped/text_to_image_scenes.safetensors``, checked against
    ``SHA256SUMS``), the scenes tokenized with its codebook, and its metadata.

    Raises:
        FileNotFoundError: the file is missing (the message gives the command that reproduces it).
        ValueError: a SHA-256 mismatch, another vocabulary, or keys that do not fit the generator.
    """
    p = Path(path) if path is not None else files.shipped_dir() / TEXT_TO_IMAGE_FILE
    if path is None:
        files.check_shipped(p, _rebuild())
    elif not p.exists():
        raise FileNotFoundError(f"{p} is missing; reproduce it with: {_rebuild()}")
    meta = read_header_metadata(p)
    recipe = TextToImageRecipe(**json.loads(meta["text_to_image_recipe"]))
    state = load_safetensors(p)
    codebook = state.pop("tokenizer_codebook")
    st = scene_tensors(Recipe(kind="visualbert"))
    if json.loads(meta["vocab"]) != st.vocab.itos:
        raise ValueError(f"{p} was trained with another vocabulary than the course's scenes; rebuild it: {_rebuild()}")
    data = text_to_image_data(recipe, PatchTokenizer(codebook, recipe.patch, st.ds.scenes.images.shape[1]))
    model = MaskGIT(recipe.config(len(data.vocab), data.tokenizer.num_tokens))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{p} does not fit MaskGIT: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval(), data, meta


# --------------------------------------------------------------------------------------------------
# The baseline: a caption-conditioned GAN (notebook 7's GAN, convolutional and conditioned)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GANRecipe:
    """The shipped GAN baseline: DCGAN width 24 (192 channels at 4 x 4), z 64, caption code 64; batch 64, Adam 2e-4
    (Radford et al. 2016)."""

    width: int = 24
    z_dim: int = 64
    cond: int = 64
    steps: int = 3000
    batch: int = 64
    lr: float = 2e-4
    seed: int = 0


def bag_of_words(vocab, captions) -> Tensor:
    """(N, W) float: 1 where a word of the vocabulary occurs in the caption (specials never do).

    Raises:
        ValueError: a word outside the scenes' vocabulary.
    """
    out = torch.zeros(len(captions), len(vocab))
    for r, c in enumerate(captions):
        out[r, [vocab.stoi[w] for w in _known_words(vocab, c, r)]] = 1.0
    return out


def _images_to_unit(images: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1  # (N, 3, S, S) in [-1, 1]


def train_gan_baseline(data: TextToImageData, steps: int, *, recipe: GANRecipe = GANRecipe(), progress: bool = False):
    """A :class:`~vlp_course.vision.gan.CaptionGAN` trained ``steps`` steps on the training captions: ``(gan, history)``."""
    torch.manual_seed(recipe.seed)
    gan = CaptionGAN(len(data.vocab), recipe.z_dim, recipe.cond, recipe.width, data.images.shape[1])
    pairs = [(i, c) for i in range(data.n_train) for c in data.captions[i]]
    hist = train_caption_gan(gan, _images_to_unit(data.images[:data.n_train]), bag_of_words(data.vocab, [c for _, c in pairs]),
                             torch.tensor([i for i, _ in pairs]), steps=steps, batch_size=recipe.batch, lr=recipe.lr,
                             seed=recipe.seed, progress=progress)
    return gan, hist


@torch.no_grad()
def draw_with_gan(gan: CaptionGAN, data: TextToImageData, captions, *, seed: int = 0) -> np.ndarray:
    """One image per caption from the GAN: (N, S, S, 3) uint8."""
    captions = [captions] if isinstance(captions, str) else list(captions)
    x = gan.sample(bag_of_words(data.vocab, captions).to(next(gan.parameters()).device), seed=seed)
    return ((x.permute(0, 2, 3, 1).cpu() + 1) * 127.5).clamp(0, 255).round().byte().numpy()


def train_caption_gan_checkpoint(path: str | Path, recipe: GANRecipe = GANRecipe(), *, progress: bool = True) -> Path:
    """Train the GAN baseline and write its generator (safetensors; metadata: recipe, vocabulary, losses, seconds)."""
    t = time.perf_counter()
    data = text_to_image_data(TextToImageRecipe(), tokenizer=PatchTokenizer(torch.zeros(2, 48), 4, 64))
    gan, hist = train_gan_baseline(data, recipe.steps, recipe=recipe, progress=progress)
    secs = time.perf_counter() - t
    last = {k: round(float(np.mean(v[-100:])), 4) for k, v in hist.train.items()}
    print(f"caption GAN: {recipe.steps} steps in {secs:.0f} s; last 100 steps {last}")
    meta = {"gan_recipe": json.dumps(asdict(recipe)), "vocab": json.dumps(data.vocab.itos),
            "final_losses": json.dumps(last), "train_seconds": f"{secs:.0f}", "history": json.dumps(_curves(hist.train, 50))}
    return save_safetensors({f"G.{k}": v for k, v in gan.G.cpu().state_dict().items()}, path, metadata=meta)


def load_caption_gan(path: str | Path | None = None) -> tuple[CaptionGAN, dict]:
    """The shipped GAN baseline (its generator; the discriminator is not shipped) and its metadata.

    Raises:
        FileNotFoundError: the file is missing (the message gives the command that reproduces it).
        ValueError: a SHA-256 mismatch or another vocabulary.
    """
    p = Path(path) if path is not None else files.shipped_dir() / CAPTION_GAN_FILE
    if path is None:
        files.check_shipped(p, _rebuild() + " --gan")
    elif not p.exists():
        raise FileNotFoundError(f"{p} is missing; reproduce it with: {_rebuild()} --gan")
    meta = read_header_metadata(p)
    recipe = GANRecipe(**json.loads(meta["gan_recipe"]))
    vocab = json.loads(meta["vocab"])
    if vocab != scene_tensors(Recipe(kind="visualbert")).vocab.itos:
        raise ValueError(f"{p} was trained with another vocabulary than the course's scenes; rebuild it: {_rebuild()} --gan")
    gan = CaptionGAN(len(vocab), recipe.z_dim, recipe.cond, recipe.width, 64)
    missing, unexpected = gan.load_state_dict(load_safetensors(p), strict=False)
    if unexpected or any(k.startswith("G.") for k in missing):
        raise ValueError(f"{p} does not fit the caption GAN's generator: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return gan.eval(), meta


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=f"Train the scenes text-to-image generator and write vlp_course/shipped/{TEXT_TO_IMAGE_FILE}")
    ap.add_argument("--steps", type=int, default=TextToImageRecipe.steps)
    ap.add_argument("--seed", type=int, default=TextToImageRecipe.seed)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=str(files.shipped_dir()))
    ap.add_argument("--gan", action="store_true", help=f"train the GAN baseline instead ({CAPTION_GAN_FILE})")
    args = ap.parse_args(argv)
    if args.gan:
        target = Path(args.out) / CAPTION_GAN_FILE
        train_caption_gan_checkpoint(target, GANRecipe(steps=args.steps if args.steps != TextToImageRecipe.steps
                                                       else GANRecipe.steps, seed=args.seed))
    else:
        target = Path(args.out) / TEXT_TO_IMAGE_FILE
        train_text_to_image_checkpoint(target, TextToImageRecipe(steps=args.steps, seed=args.seed), device=args.device)
    if Path(args.out).resolve() == files.shipped_dir().resolve():
        print(f"sha256 {files.record_sha256(target)}")
    print(f"wrote {target} ({target.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
