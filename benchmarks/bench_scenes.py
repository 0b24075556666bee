"""Speed of the synthetic-scene generator and of the annotations built on it (one core).

    python benchmarks/bench_scenes.py [--n 5000] [--image-size 64]

Prints scenes/s for the images with their boxes and attributes (the target is >= 2,000 scenes/s
on one core), then captions, hard negatives and VQA questions per second, and the time to build
(and to reload from the cache) the default dataset of notebook 08.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def run(quick: bool = False) -> list:
    """Rows for benchmarks/run_all.py: scenes/s and the annotation rates."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import Row

    res = measure(1000 if quick else 5000, 64, 1 if quick else 3, verbose=False)
    return [Row("scenes", k, "throughput", v, unit) for k, (v, unit) in res.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    measure(args.n, args.image_size, args.repeats, verbose=True)


def measure(n: int, image_size: int, repeats: int, verbose: bool = True) -> dict:
    class _A:
        pass

    args = _A()
    args.n, args.image_size, args.repeats = n, image_size, repeats
    out = {}
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    from vlp_course.data.captions import hard_negative, scene_captions
    from vlp_course.data.scenes import make_scenes
    from vlp_course.data.vqa import scene_questions

    make_scenes(50, image_size=args.image_size)  # warm the shape templates and textures
    best = 0.0
    for r in range(args.repeats):
        t = time.perf_counter()
        scenes = make_scenes(args.n, seed=r, image_size=args.image_size)
        best = max(best, args.n / (time.perf_counter() - t))
    out["scenes"] = (best, "scenes/s")
    if verbose:
        print(f"scenes:    {best:10.0f} scenes/s  ({args.n} scenes of {args.image_size}x{args.image_size}, best of {args.repeats})")

    rng = np.random.default_rng(0)
    sub = scenes[: min(1000, len(scenes))]
    t = time.perf_counter()
    caps = [scene_captions(sc, rng, 5) for sc in sub]
    dt = time.perf_counter() - t
    out["captions"] = (5 * len(sub) / dt, "captions/s")
    t = time.perf_counter()
    for sc, cs in zip(sub, caps):
        for c in cs:
            hard_negative(sc, c.claim, rng)
    out["hard negatives"] = (5 * len(sub) / (time.perf_counter() - t), "negatives/s")
    t = time.perf_counter()
    nq = sum(len(scene_questions(sc, rng, 6)) for sc in sub)
    out["VQA questions"] = (nq / (time.perf_counter() - t), "questions/s")
    if verbose:
        for k in ("captions", "hard negatives", "VQA questions"):
            print(f"{k + ':':<16} {out[k][0]:8.0f} {out[k][1]}")

    from vlp_course.data.dataset import load_vl_scenes

    old = os.environ.get("VLP_COURSE_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VLP_COURSE_CACHE"] = tmp
        try:
            t = time.perf_counter()
            load_vl_scenes(400, seed=0)
            t1 = time.perf_counter()
            load_vl_scenes(400, seed=0)
            t2 = time.perf_counter()
        finally:
            if old is None:
                os.environ.pop("VLP_COURSE_CACHE", None)
            else:
                os.environ["VLP_COURSE_CACHE"] = old
    out["dataset build (400 scenes)"] = (t1 - t, "s")
    out["dataset reload (400 scenes)"] = (t2 - t1, "s")
    if verbose:
        print(f"dataset:   notebook 08's 400 scenes built and written in {t1 - t:.2f} s, reloaded from the cache in {t2 - t1:.2f} s")
    return out


if __name__ == "__main__":
    main()
