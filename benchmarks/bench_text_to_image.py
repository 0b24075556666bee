"""Text-to-image on the scenes, on 2 CPU cores: what trains in a notebook's minute, what the shipped models draw.

Measures, with budgets in steps and several seeds, each part of notebook 18:

1. **The eyes** (:func:`vlp_course.data.scene_reader.captions_seen_true`): objects found by colour,
   named by the stand-in detector, the caption checked. On the *real* held-out images this gives the
   ceiling of the measure (own caption) and its control (another image's caption).
2. **The image tokens** (:class:`vlp_course.vision.image_tokens.PatchTokenizer`): the eyes on the
   k-means *reconstructions* of the held-out images, the ceiling of any generator of those tokens,
   for 8 x 8 and 4 x 4 patches with 256 and 1,024 codes.
3. **MaskGIT from scratch** (:class:`vlp_course.models.text_to_image.MaskGIT`, the recipe of
   :mod:`vlp_course.recipes.text_to_image`) after ``--steps`` steps: the share of drawn held-out
   captions the eyes find true, against the control.
4. **The caption GAN from scratch** (:func:`vlp_course.recipes.text_to_image.train_gan_baseline`) after
   ``--gan-steps`` steps, the same measure.
5. **The shipped generator and GAN** (``--shipped``), drawn with 3 sampling seeds.

Usage::

    python benchmarks/bench_text_to_image.py --steps 300 --gan-steps 300 --seeds 0 1 2 --shipped   # the recorded run

Results: ``benchmarks/results/text_to_image.md`` (with date and machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from vlp_course.data.detector import load_detector
from vlp_course.data.scene_reader import captions_seen_true, captions_true, colours_seen, read_scene
from vlp_course.models.text_to_image import MaskGIT
from vlp_course.recipes.text_to_image import (GANRecipe, TextToImageRecipe, draw, draw_with_gan, load_caption_gan,
                                              load_text_to_image, text_to_image_data, train_gan_baseline,
                                              train_generator)
from vlp_course.vision.image_tokens import PatchTokenizer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="*", default=[300], help="MaskGIT budgets from scratch")
    ap.add_argument("--gan-steps", type=int, nargs="*", default=[300], help="GAN budgets from scratch")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tokenizer-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tokenizers", nargs="*", default=["8x256", "8x1024", "4x256", "4x1024"],
                    help="patch side x codes of each k-means tokenizer to measure")
    ap.add_argument("--positions", nargs="+", default=["grid", "sequence"],
                    help="image-token positions of the from-scratch runs: grid (ours), sequence (MaskGIT's)")
    ap.add_argument("--shipped", action="store_true", help="also judge the shipped generator and GAN")
    ap.add_argument("--guidance", type=float, nargs="+", default=[0.0, 2.0], help="guidance scales for the shipped generator")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval", type=int, default=200, help="held-out images whose captions are drawn")
    ap.add_argument("--captions", choices=["mixed", "first"], default="mixed",
                    help="mixed: caption i mod 5 of image i (notebook 18's choice: every kind of caption); first: the "
                         "first caption of each image (a list of every object, the hardest)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "text_to_image.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    recipe = TextToImageRecipe()
    data = text_to_image_data(recipe)
    det = load_detector()
    test = data.held_out(args.eval)
    caps = [data.captions[i][i % 5 if args.captions == "mixed" else 0] for i in test]
    lines = [f"# Text-to-image on the scenes ({date.today()}, {platform.processor() or platform.machine()}, "
             f"torch {torch.__version__}, {args.threads} thread(s))", "",
             f"Every row judges {len(test)} held-out captions ({'caption i mod 5 of held-out image i' if args.captions == 'mixed' else 'the first caption of each held-out image'}): 'own' is the share "
             "whose image, as the course's eyes read it, makes the caption true; 'control' the same images judged "
             "with the next image's caption.", ""]

    def emit(row: str) -> None:
        lines.append(row)
        print(row, flush=True)

    t = time.perf_counter()
    own, other = captions_seen_true(data.images[test], caps, det)
    emit(f"The eyes on the real held-out images ({recipe.background} background, as the generator learns them): own {own:.1%}, "
         f"control {other:.1%} ({time.perf_counter() - t:.1f} s).")

    emit("\n## Image tokens: the eyes on k-means reconstructions (the ceiling of a generator of those tokens)\n")
    emit("| patch | tokens per image | codes | seed | own | control | seconds |")
    emit("|---|---:|---:|---:|---:|---:|---:|")
    for P, K in (tuple(int(v) for v in spec.split("x")) for spec in args.tokenizers):
        for seed in args.tokenizer_seeds:
            t = time.perf_counter()
            tok = PatchTokenizer.fit(data.images[:data.n_train], codes=K, patch=P, seed=seed)
            own, other = captions_seen_true(tok.decode(tok.encode(data.images[test])), caps, det)
            emit(f"| {P} x {P} | {tok.num_tokens} | {K} | {seed} | {own:.1%} | {other:.1%} | {time.perf_counter() - t:.0f} |")

    if args.steps:
        emit(f"\n## MaskGIT from scratch (hidden {recipe.hidden}, {recipe.layers} layers, batch {recipe.batch}, "
             f"4 x 4 patches, {recipe.codes} codes)\n")
        emit("| positions | steps | seed | seconds | s/step | loss (last 50) | own | control |")
        emit("|---|---:|---:|---:|---:|---:|---:|---:|")
        for positions, steps, seed in ((p, s, d) for p in args.positions for s in args.steps for d in args.seeds):
            r = TextToImageRecipe(seed=seed, image_positions=positions)
            torch.manual_seed(seed)
            model = MaskGIT(r.config(len(data.vocab), data.tokenizer.num_tokens))
            t = time.perf_counter()
            hist = train_generator(model, data, steps, recipe=r)
            secs = time.perf_counter() - t
            own, other = captions_seen_true(draw(model, data, caps, seed=seed), caps, det)
            emit(f"| {positions} | {steps} | {seed} | {secs:.0f} | {secs / steps:.2f} | {np.mean(hist.train['loss'][-50:]):.3f} | "
                 f"{own:.1%} | {other:.1%} |")

    if args.gan_steps:
        g = GANRecipe()
        emit(f"\n## The caption GAN from scratch (width {g.width}, batch {g.batch})\n")
        emit("| steps | seed | seconds | s/step | D loss / G loss (last 50) | own | control |")
        emit("|---:|---:|---:|---:|---|---:|---:|")
        for steps in args.gan_steps:
            for seed in args.seeds:
                t = time.perf_counter()
                gan, hist = train_gan_baseline(data, steps, recipe=GANRecipe(seed=seed))
                secs = time.perf_counter() - t
                own, other = captions_seen_true(draw_with_gan(gan, data, caps, seed=seed), caps, det)
                emit(f"| {steps} | {seed} | {secs:.0f} | {secs / steps:.2f} | {np.mean(hist.train['d_loss'][-50:]):.2f} / "
                     f"{np.mean(hist.train['loss'][-50:]):.2f} | {own:.1%} | {other:.1%} |")

    if args.shipped:
        model, sdata, meta = load_text_to_image()
        gan, gmeta = load_caption_gan()
        emit(f"\n## The shipped models (generator: {TextToImageRecipe(**json.loads(meta['text_to_image_recipe'])).steps} "
             f"steps, {meta['train_seconds']} s; GAN: {GANRecipe(**json.loads(gmeta['gan_recipe'])).steps} steps, {gmeta['train_seconds']} s), 3 sampling seeds\n")
        emit("| model | sampling seed | own | control | colours right | control | seconds to draw |")
        emit("|---|---:|---:|---:|---:|---:|---:|")

        def judge(name, seed, images, secs):
            read = [read_scene(im, det) for im in images]
            own, other = captions_true(read, caps)
            col, col_other = colours_seen(read, caps)
            emit(f"| {name} | {seed} | {own:.1%} | {other:.1%} | {col:.1%} | {col_other:.1%} | {secs:.1f} |")

        for w in args.guidance:
            for seed in (0, 1, 2):
                t = time.perf_counter()
                images = draw(model, sdata, caps, seed=seed, guidance_scale=w)
                judge(f"MaskGIT, 8 steps, guidance {w:g}", seed, images, time.perf_counter() - t)
        for seed in (0, 1, 2):
            t = time.perf_counter()
            images = draw_with_gan(gan, sdata, caps, seed=seed)
            judge("GAN", seed, images, time.perf_counter() - t)
        judge("the real images", "-", sdata.images[test], 0.0)

    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
