"""Feasibility of text-to-image on the scenes, on 2 CPU cores: what trains in a notebook's minute, what needs a checkpoint.

Before a text-to-image notebook is built, this script measures each part of the plan, with budgets in
steps and 3 seeds:

1. **The eyes.** Generated images are judged by the course's own detector: objects are found by
   their colour (each pixel's nearest colour of the scenes' palette, connected components from
   scikit-image), the stand-in detector (``vlp_course.data.detector``) names each box's shape and
   colour, and the caption is checked on the objects found (``caption_is_true``). Run on the *real*
   held-out images, this gives the ceiling of the measure (own caption) and its control (a random
   other image's caption).
2. **The image tokens.** k-means over P x P pixel patches (scikit-learn's ``MiniBatchKMeans``), so
   a 64 x 64 image is (64 / P)^2 discrete tokens; the eyes on the *reconstructed* real images give
   the ceiling of any generator that writes those tokens (measured for 8 x 8 and 4 x 4 patches,
   256 and 1024 codes; the generator uses 4 x 4 and 1024, the only setting near the real images).
3. **The generator.** A bidirectional transformer on the course's blocks (``TextEmbeddings`` over
   one table of caption words and image codes, ``Encoder``) trained as MaskGIT (Chang et al. 2022,
   section 3.2): a random share ``cos(pi/2 * u)`` of the image tokens is replaced by [MASK] and
   predicted, the caption always visible; images are drawn by iterative decoding (section 3.2,
   8 steps, the cosine schedule, the most confident predictions kept). Measured: the share of
   generated images the eyes find true of their caption, against a random caption (the control).

Usage::

    python benchmarks/bench_text_to_image.py --steps 300 --seeds 0 1 2       # what the recorded table ran
    python benchmarks/bench_text_to_image.py --tokenizers-only               # the eyes and the tokens only

Results: ``benchmarks/results/text_to_image.md`` (with date and machine).
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlp_course.data.captions import caption_is_true
from vlp_course.data.detector import extract_regions, load_detector
from vlp_course.data.scenes import COLOR_RGB, COLORS, SHAPES, SIZE_FRACTION, Scene, SceneObject
from vlp_course.models.blocks import Encoder, TextEmbeddings, TransformerConfig
from vlp_course.recipes.base import Recipe, scene_tensors
from vlp_course.text.vocab import MASK, tokenize

PATCH = 8
PALETTE = np.array([COLOR_RGB[c] for c in COLORS], dtype=np.float32)  # (7, 3)


# --------------------------------------------------------------------------------------------------
# 1. The eyes: find objects by colour, name their shapes with the detector, check the caption
# --------------------------------------------------------------------------------------------------
def find_objects(image: np.ndarray, detector, *, max_distance: float = 70.0, min_area: int = 25) -> list[SceneObject]:
    """The objects of an (S, S, 3) uint8 image: connected regions of one palette colour, each named by the detector."""
    from skimage.measure import label, regionprops

    S = image.shape[0]
    px = image.reshape(-1, 3).astype(np.float32)
    dist = np.linalg.norm(px[:, None, :] - PALETTE[None], axis=-1)  # (S*S, 7)
    colour = dist.argmin(1).reshape(S, S)
    is_object = (dist.min(1) < max_distance).reshape(S, S)
    found = []
    for k in range(len(COLORS)):
        for region in regionprops(label(is_object & (colour == k), connectivity=2)):
            if region.area >= min_area:
                y1, x1, y2, x2 = region.bbox
                found.append((x1, y1, x2, y2))
    if not found:
        return []
    reg = extract_regions(detector, image, np.array(found, dtype=np.float32))
    objects = []
    threshold = S * (SIZE_FRACTION["small"] + SIZE_FRACTION["large"]) / 2
    for (x1, y1, x2, y2), cls, att in zip(found, reg.class_probs, reg.attr_probs):
        side = max(x2 - x1, y2 - y1)
        objects.append(SceneObject(SHAPES[int(cls.argmax())], COLORS[int(att.argmax())],
                                   "small" if side < threshold else "large", int(x1), int(y1), int(side)))
    return objects


def seen_true(images: np.ndarray, captions: list[str], detector) -> tuple[float, float]:
    """Share of images whose found objects make their caption true, and (control) a caption shifted by one."""
    scenes = [Scene(img, find_objects(img, detector)) for img in images]
    own = np.mean([caption_is_true(s, c) is True for s, c in zip(scenes, captions)])
    shifted = captions[1:] + captions[:1]
    other = np.mean([caption_is_true(s, c) is True for s, c in zip(scenes, shifted)])
    return float(own), float(other)


# --------------------------------------------------------------------------------------------------
# 2. Image tokens: k-means over patches
# --------------------------------------------------------------------------------------------------
def patches(images: np.ndarray, P: int = PATCH) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, (S/P)^2, P*P*3) float32 in [0, 1], row by row."""
    N, S = images.shape[:2]
    g = S // P
    x = images.reshape(N, g, P, g, P, 3).transpose(0, 1, 3, 2, 4, 5)  # (N, g, g, P, P, 3)
    return x.reshape(N, g * g, P * P * 3).astype(np.float32) / 255.0


def unpatch(p: np.ndarray, S: int, P: int = PATCH) -> np.ndarray:
    N = p.shape[0]
    g = S // P
    x = p.reshape(N, g, g, P, P, 3).transpose(0, 1, 3, 2, 4, 5).reshape(N, S, S, 3)
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def fit_codebook(images: np.ndarray, codes: int, seed: int = 0, P: int = PATCH):
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(n_clusters=codes, random_state=seed, batch_size=4096, n_init=3, max_iter=50)
    km.fit(patches(images, P).reshape(-1, P * P * 3))
    return km


def tokenizer_ceilings(images, test, captions, detector, n_train, settings, seeds=(0,)):
    """The eyes on k-means reconstructions of the held-out images, for each (patch size, codes)."""
    rows = []
    for P, K in settings:
        for seed in seeds:
            t = time.perf_counter()
            km = fit_codebook(images[:n_train], K, seed, P)
            flat = patches(images[test], P).reshape(-1, P * P * 3)
            recon = unpatch(km.cluster_centers_[km.predict(flat)].reshape(len(test), -1, P * P * 3), images.shape[1], P)
            own, other = seen_true(recon, captions, detector)
            rows.append(f"| {P} x {P} | {(images.shape[1] // P) ** 2} | {K} | {seed} | {own:.1%} | {other:.1%} | "
                        f"{time.perf_counter() - t:.0f} |")
            print(rows[-1], flush=True)
    return rows


# --------------------------------------------------------------------------------------------------
# 3. The generator: MaskGIT on the course's blocks
# --------------------------------------------------------------------------------------------------
class MaskedImageModel(nn.Module):
    """[caption words] [image codes]: one embedding table (words, then codes), a bidirectional encoder,
    and a head over the codes read at the image positions."""

    def __init__(self, n_words: int, n_codes: int, n_image: int, text_len: int, hidden: int = 128, layers: int = 4,
                 heads: int = 4):
        super().__init__()
        self.n_words, self.n_codes, self.n_image, self.text_len = n_words, n_codes, n_image, text_len
        self.config = TransformerConfig(vocab_size=n_words + n_codes, hidden_size=hidden, num_attention_heads=heads,
                                        num_hidden_layers=layers, intermediate_size=4 * hidden,
                                        max_position_embeddings=text_len + n_image, hidden_dropout_prob=0.0,
                                        attention_probs_dropout_prob=0.0, initializer_range=0.02 * math.sqrt(768 / hidden))
        self.embeddings = TextEmbeddings(self.config)
        self.encoder = Encoder(self.config)
        self.head = nn.Linear(hidden, n_codes)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=self.config.initializer_range)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, text_ids, text_mask, image_ids):
        """text_ids (B, T), text_mask (B, T), image_ids (B, G) in [0, n_words + n_codes) -> (B, G, n_codes)."""
        B, T = text_ids.shape
        ids = torch.cat([text_ids, image_ids], 1)  # (B, T + G)
        types = torch.cat([torch.zeros_like(text_ids), torch.ones_like(image_ids)], 1)
        keep = torch.cat([text_mask.bool(), torch.ones_like(image_ids, dtype=torch.bool)], 1)  # (B, T + G)
        h = self.encoder(self.embeddings(ids, types), keep).last_hidden_state  # (B, T + G, D)
        return self.head(h[:, T:])  # (B, G, n_codes)


def train_generator(model, text_ids, text_mask, codes, steps, *, batch=64, lr=1e-3, seed=0, mask_id=4):
    """MaskGIT training: mask ceil(cos(pi/2 u) G) random image tokens per example, cross-entropy on them."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    G = codes.shape[1]
    losses = []
    for step in range(steps):
        rows = torch.randint(len(codes), (batch,), generator=g)
        target = codes[rows]  # (B, G)
        ratio = torch.cos(math.pi / 2 * torch.rand(batch, generator=g))  # (B,)
        n_mask = torch.ceil(ratio * G).clamp(1, G)  # (B,)
        rank = torch.rand(batch, G, generator=g).argsort(1).argsort(1)
        masked = rank < n_mask[:, None]  # (B, G)
        inp = torch.where(masked, torch.full_like(target, mask_id), target + model.n_words)
        for pg in opt.param_groups:
            pg["lr"] = lr * min(1.0, (step + 1) / 100)
        logits = model(text_ids[rows], text_mask[rows], inp)
        loss = F.cross_entropy(logits[masked], target[masked])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def maskgit_decode(model, text_ids, text_mask, *, iterations=8, temperature=1.0, seed=0, mask_id=4):
    """Iterative decoding: all masked, then at step t keep G(1 - cos(pi/2 t/T)) tokens, the most confident."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    B, G = text_ids.shape[0], model.n_image
    codes = torch.full((B, G), -1, dtype=torch.long)
    for t in range(1, iterations + 1):
        unknown = codes < 0
        inp = torch.where(unknown, torch.full_like(codes, mask_id), codes + model.n_words)
        probs = (model(text_ids, text_mask, inp) / temperature).softmax(-1)  # (B, G, K)
        sample = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=g).reshape(B, G)
        conf = probs.gather(-1, sample[..., None]).squeeze(-1)
        conf = torch.where(unknown, conf, torch.full_like(conf, float("inf")))  # known tokens stay
        n_known = G if t == iterations else int(G * (1 - math.cos(math.pi / 2 * t / iterations)))
        keep = conf.argsort(1, descending=True).argsort(1) < max(n_known, 1)
        codes = torch.where(keep & unknown, sample, codes)
    return codes


# --------------------------------------------------------------------------------------------------
# 4. The baseline: a conditional GAN on the caption (notebook 7's GAN, made convolutional and conditional)
# --------------------------------------------------------------------------------------------------
class CaptionGAN(nn.Module):
    """DCGAN-style generator and discriminator (Radford et al. 2016) conditioned on the caption's bag of words
    (a learned projection, as in Reed et al. 2016, "Generative adversarial text to image synthesis")."""

    def __init__(self, n_words: int, z_dim: int = 64, cond: int = 64, width: int = 64):
        super().__init__()
        self.z_dim = z_dim
        self.g_text = nn.Linear(n_words, cond)
        self.d_text = nn.Linear(n_words, cond)
        w = width
        self.g_fc = nn.Linear(z_dim + cond, 4 * 4 * 4 * w)
        up = lambda i, o: [nn.ConvTranspose2d(i, o, 4, 2, 1), nn.BatchNorm2d(o), nn.ReLU()]  # noqa: E731
        self.g_net = nn.Sequential(*up(4 * w, 2 * w), *up(2 * w, w), *up(w, w // 2),
                                   nn.ConvTranspose2d(w // 2, 3, 4, 2, 1), nn.Tanh())  # 4 -> 64
        down = lambda i, o: [nn.Conv2d(i, o, 4, 2, 1), nn.LeakyReLU(0.2)]  # noqa: E731
        self.d_net = nn.Sequential(*down(3, w // 2), *down(w // 2, w), *down(w, 2 * w), *down(2 * w, 4 * w))  # 64 -> 4
        self.d_fc = nn.Linear(4 * 4 * 4 * w + cond, 1)
        self.width = w

    def generate(self, bow, z):
        h = self.g_fc(torch.cat([z, self.g_text(bow)], 1)).view(-1, 4 * self.width, 4, 4)  # (B, 4w, 4, 4)
        return self.g_net(h)  # (B, 3, 64, 64) in [-1, 1]

    def discriminate(self, x, bow):
        return self.d_fc(torch.cat([self.d_net(x).flatten(1), self.d_text(bow)], 1)).squeeze(1)  # (B,)


def train_caption_gan(gan, images, bows, steps, *, batch=64, seed=0):
    """Alternating updates (D then G, non-saturating loss); D also sees real images with a wrong caption as fakes
    (the matching-aware discriminator of Reed et al. 2016), so the caption matters to it."""
    from vlp_course.vision.gan import discriminator_loss, generator_loss

    g = torch.Generator().manual_seed(seed)
    g_params = [p for n, p in gan.named_parameters() if n.startswith("g_")]
    d_params = [p for n, p in gan.named_parameters() if n.startswith("d_")]
    g_opt = torch.optim.Adam(g_params, lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(d_params, lr=2e-4, betas=(0.5, 0.999))
    real_all = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1  # (N, 3, 64, 64) in [-1, 1]
    losses = []
    for _ in range(steps):
        rows = torch.randint(len(bows), (batch,), generator=g)
        real, bow = real_all[rows], bows[rows]
        wrong = bows[torch.randint(len(bows), (batch,), generator=g)]
        z = torch.randn(batch, gan.z_dim, generator=g)
        fake = gan.generate(bow, z)
        d_loss = discriminator_loss(gan.discriminate(real, bow), gan.discriminate(fake.detach(), bow)) + \
            F.binary_cross_entropy_with_logits(gan.discriminate(real, wrong), torch.zeros(batch))
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        g_loss = generator_loss(gan.discriminate(fake, bow))
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        losses.append((float(d_loss.detach()), float(g_loss.detach())))
    return losses


@torch.no_grad()
def caption_gan_images(gan, bows, seed=0) -> np.ndarray:
    gan.eval()
    z = torch.randn(len(bows), gan.z_dim, generator=torch.Generator().manual_seed(seed))
    x = gan.generate(bows, z)
    return ((x.permute(0, 2, 3, 1) + 1) * 127.5).clamp(0, 255).round().byte().numpy()


# --------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--codes", type=int, default=1024)
    ap.add_argument("--patch", type=int, default=4, help="pixels per side of an image token's patch")
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval", type=int, default=200, help="held-out captions to draw")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "text_to_image.md"))
    ap.add_argument("--tokenizers-only", action="store_true", help="only the k-means ceilings")
    ap.add_argument("--gan-only", action="store_true", help="only the conditional GAN baseline (after the eyes)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    st = scene_tensors(Recipe(kind="visualbert"))
    ds, n_train = st.ds, st.n_train
    images = ds.scenes.images  # (I, 64, 64, 3)
    det = load_detector()
    test = list(range(n_train, n_train + args.eval))
    test_caps = [ds.captions[i][0] for i in test]
    lines = [f"# Text-to-image feasibility ({date.today()}, {platform.processor() or platform.machine()}, "
             f"torch {torch.__version__}, 1 thread)", ""]

    t = time.perf_counter()
    own, other = seen_true(images[test], test_caps, det)
    lines.append(f"eyes on the real held-out images: own caption true {own:.1%}, another's {other:.1%} "
                 f"({time.perf_counter() - t:.1f} s for {len(test)} images)")

    if args.gan_only:
        bow = lambda caps: torch.stack([torch.bincount(torch.tensor(st.vocab.encode(tokenize(c))),  # noqa: E731
                                                       minlength=len(st.vocab)).float().clamp(max=1) for c in caps])
        train_pairs = [(i, c) for i in range(n_train) for c in ds.captions[i]]
        tr_img = images[[i for i, _ in train_pairs]]
        tr_bow, te_bow = bow([c for _, c in train_pairs]), bow(test_caps)
        lines += ["", "Conditional GAN on the caption's bag of words (the baseline):", "",
                  "| steps | seed | seconds | D loss / G loss (last 50) | true of own caption | true of a random caption |",
                  "|---:|---:|---:|---|---:|---:|"]
        for steps in args.steps:
            for seed in args.seeds:
                torch.manual_seed(seed)
                gan = CaptionGAN(len(st.vocab))
                t = time.perf_counter()
                losses = np.array(train_caption_gan(gan, tr_img, tr_bow, steps, seed=seed))
                secs = time.perf_counter() - t
                gen = caption_gan_images(gan, te_bow, seed)
                own_g, other_g = seen_true(gen, test_caps, det)
                d, g_ = losses[-50:].mean(0)
                lines.append(f"| {steps} | {seed} | {secs:.0f} | {d:.2f} / {g_:.2f} | {own_g:.1%} | {other_g:.1%} |")
                print(lines[-1], flush=True)
                np.save(f"/tmp/t2i_gan_{steps}_{seed}.npy", gen[:16])
        Path(args.out).write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out}")
        return 0
    lines += ["", "The eyes on k-means reconstructions of the held-out images (the ceiling of a generator of those tokens):", "",
              "| patch | tokens per image | codes | seed | own caption true | another's | seconds |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    lines += tokenizer_ceilings(images, test, test_caps, det, n_train,
                                [(8, 256), (8, 1024), (4, 256), (4, 1024)], seeds=args.seeds)
    if args.tokenizers_only:
        Path(args.out).write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out}")
        return 0
    t = time.perf_counter()
    P = args.patch
    km = fit_codebook(images[:n_train], args.codes, 0, P)
    lines.append(f"\nthe generator's tokens: {P} x {P} patches, {args.codes} codes (fitted in {time.perf_counter() - t:.1f} s)")
    print("\n".join(lines), flush=True)

    codes = torch.from_numpy(km.predict(patches(images[:n_train], P).reshape(-1, P * P * 3))
                             .reshape(n_train, -1)).long()  # (I_train, (S/P)^2)
    T = max(len(tokenize(c)) for i in range(len(images)) for c in ds.captions[i]) + 2
    cls, sep, pad, mask_id = st.ids["[CLS]"], st.ids["[SEP]"], st.ids["[PAD]"], st.ids[MASK]

    def encode(caps):
        ids = torch.full((len(caps), T), pad, dtype=torch.long)
        for r, c in enumerate(caps):
            row = [cls] + st.vocab.encode(tokenize(c)) + [sep]
            ids[r, :len(row)] = torch.tensor(row)
        return ids, (ids != pad).long()

    train_caps = [(i, c) for i in range(n_train) for c in ds.captions[i]]
    tr_ids, tr_mask = encode([c for _, c in train_caps])
    tr_codes = codes[torch.tensor([i for i, _ in train_caps])]
    te_ids, te_mask = encode(test_caps)
    lines += ["", "| steps | seed | seconds | loss (last 50) | true of own caption | true of a random caption |",
              "|---:|---:|---:|---:|---:|---:|"]
    for steps in args.steps:
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = MaskedImageModel(len(st.vocab), args.codes, codes.shape[1], T, hidden=args.hidden, layers=args.layers)
            t = time.perf_counter()
            losses = train_generator(model, tr_ids, tr_mask, tr_codes, steps, batch=args.batch, seed=seed, mask_id=mask_id)
            secs = time.perf_counter() - t
            drawn = maskgit_decode(model, te_ids, te_mask, seed=seed, mask_id=mask_id)
            gen = unpatch(km.cluster_centers_[drawn.numpy()], images.shape[1], P)
            own_g, other_g = seen_true(gen, test_caps, det)
            row = (f"| {steps} | {seed} | {secs:.0f} | {np.mean(losses[-50:]):.3f} | {own_g:.1%} | {other_g:.1%} |")
            lines.append(row)
            print(row, flush=True)
            np.save(f"/tmp/t2i_{steps}_{seed}.npy", gen[:16])
    lines += ["", f"generator: hidden {args.hidden}, {args.layers} layers, batch {args.batch}, {args.threads} thread(s), "
              f"{sum(p.numel() for p in model.parameters()):,} parameters"]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
