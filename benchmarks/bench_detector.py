"""Speed of the stand-in detector's region-feature extraction (images/s).

    python benchmarks/bench_detector.py [--n 512] [--device cpu]

The shipped detector (``vlp_course.data.detector.load_detector``, vlp_course/shipped/scene_detector.safetensors)
runs on 64 x 64 synthetic scenes (``vlp_course.data.make_scenes``) with their ground-truth boxes
plus the whole-image box: backbone, RoIAlign, box head, class and attribute heads. Two ways:
``extract_regions`` one image per call (what a notebook does for a single picture) and
``extract_regions_batch`` (128 images per forward pass, how the datasets are built). Each figure is
the median of a few passes over the same scenes, after one warm-up pass.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import Row  # noqa: E402


def measure(n: int = 512, repeats: int = 3, device: str = "cpu", batch_size: int = 128) -> list[Row]:
    """Rows: images/s of single-image and batched extraction on ``n`` scenes.

    Raises:
        ValueError: if ``n`` or ``repeats`` is not positive.
    """
    from vlp_course.data.detector import extract_regions, extract_regions_batch, load_detector
    from vlp_course.data.scenes import make_scenes

    if n < 1 or repeats < 1:
        raise ValueError(f"n and repeats must be positive, got n={n}, repeats={repeats}")
    model = load_detector(device)
    scenes = list(make_scenes(n, seed=7))
    boxes = sum(len(sc.boxes()) for sc in scenes)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def single() -> None:
        for sc in scenes:
            extract_regions(model, sc)

    def batched() -> None:
        extract_regions_batch(model, scenes, batch_size=batch_size)

    rows = []
    for name, fn in (("extract_regions (one image per call)", single),
                     (f"extract_regions_batch ({batch_size} per pass)", batched)):
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        extra = {"images": n, "regions_per_image": round(boxes / n, 2), "image_size": 64, "repeats": repeats,
                 "threads": torch.get_num_threads()}
        rows.append(Row("detector", name, "throughput", n / med, "images/s", device, extra))
    return rows


def run(quick: bool = False, devices: list[str] | None = None) -> list[Row]:
    """Rows for benchmarks/run_all.py."""
    devices = devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rows = []
    for device in devices:
        rows += measure(128 if quick else 512, 2 if quick else 3, device)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=512, help="number of scenes (default 512)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = ap.parse_args(argv)
    if args.n < 1 or args.repeats < 1:
        ap.error(f"--n and --repeats must be positive, got {args.n} and {args.repeats}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available here")
    for r in measure(args.n, args.repeats, args.device):
        print(f"{r.case:<44} {r.value:10.1f} {r.unit}  ({r.extra['regions_per_image']} regions per image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
