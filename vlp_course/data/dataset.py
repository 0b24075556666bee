"""The course's vision-language dataset: scenes + captions + hard negatives + VQA + NLVR2, cached.

::

    from vlp_course.data import load_vl_scenes
    ds = load_vl_scenes(2000, seed=0)        # built once (a few seconds), then read from the cache
    ds.scenes.images                           # (N, 64, 64, 3) uint8
    ds.captions[i], ds.negatives[i]            # 5 true captions of scene i, a hard negative for each
    ds.questions                               # list[VQAQuestion] (10 answers each)
    ds.nlvr2                                   # list[NLVR2Example], balanced True/False

On disk (``ds.write(folder)`` or the cache entry) the annotations are in the real datasets'
formats: ``captions.json`` (COCO captions), ``instances.json`` (COCO instances: boxes as xywh),
``*_questions.json`` / ``*_annotations.json`` (VQA v2), ``nlvr2.jsonl`` (NLVR2), plus
``images.npy`` (all images, instead of one PNG per image) and ``negatives.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlp_course.files import atomic_write_bytes, atomic_write_text, cache_dir, check_manifest, write_manifest
from vlp_course.data.captions import hard_negative, scene_captions
from vlp_course.data.coco import load_coco_captions, load_coco_instances, write_coco_captions, write_coco_instances
from vlp_course.data.nlvr2 import NLVR2Example, load_nlvr2, make_nlvr2, write_nlvr2
from vlp_course.data.scenes import COLORS, SHAPES, SIZES, SceneObject, SceneSet, make_scenes
from vlp_course.data.vqa import VQAQuestion, load_vqa, scene_questions, write_vqa

__all__ = ["VLScenes", "build_vl_scenes", "load_vl_scenes", "read_vl_scenes"]

FORMAT_VERSION = 1


@dataclass
class VLScenes:
    """Scenes and every annotation the course uses (see the module docstring)."""

    scenes: SceneSet
    captions: dict[int, list[str]]
    negatives: dict[int, list[str]]
    questions: list[VQAQuestion]
    nlvr2: list[NLVR2Example]
    split: str = "train"

    def __len__(self) -> int:
        return len(self.scenes)

    def caption_pairs(self) -> list[tuple[int, str, int]]:
        """Image-text matching pairs ``(image_id, text, is_matched)``: every caption (1) and its hard negative (0)."""
        out = []
        for i, caps in self.captions.items():
            for c, n in zip(caps, self.negatives[i]):
                out.append((i, c, 1))
                if n:
                    out.append((i, n, 0))
        return out

    def write(self, folder) -> list[str]:
        """Write every file into ``folder`` (atomically, file by file); returns the file names."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        sc = self.scenes
        s = sc.image_size
        sizes = {i: (s, s) for i in range(len(sc))}
        split = f"{self.split}2014"
        buf = io.BytesIO()
        np.save(buf, sc.images)
        atomic_write_bytes(folder / "images.npy", buf.getvalue())
        objects = [[[o.shape, o.color, o.size, o.x, o.y, o.side] for o in objs] for objs in sc.objects]
        atomic_write_text(folder / "objects.json", json.dumps({"seed": sc.seed, "objects": objects}))
        write_coco_captions(folder / "captions.json", self.captions, sizes, split=split)
        write_coco_instances(folder / "instances.json", {i: sc[i].boxes() for i in sizes},
                             {i: sc[i].labels() for i in sizes}, SHAPES, sizes, split=split)
        atomic_write_text(folder / "negatives.json", json.dumps({str(i): v for i, v in self.negatives.items()}))
        qf, af = write_vqa(self.questions, folder, split=split)
        write_nlvr2(self.nlvr2, folder / "nlvr2.jsonl")
        return ["images.npy", "objects.json", "captions.json", "instances.json", "negatives.json", qf.name, af.name, "nlvr2.jsonl"]


def build_vl_scenes(n_images: int = 2000, seed: int = 0, *, image_size: int = 64, max_objects: int = 4,
                    background: str = "textured", captions_per_image: int = 5, questions_per_image: int = 6,
                    nlvr2_examples: int | None = None, split: str = "train") -> VLScenes:
    """Generate the dataset in memory (no cache). ``nlvr2_examples`` defaults to ``n_images``.

    Raises:
        ValueError: from :func:`~vlp_course.data.scenes.make_scenes` on bad sizes or counts.
    """
    scenes = make_scenes(n_images, seed, image_size=image_size, max_objects=max_objects, background=background)
    rng = np.random.default_rng([int(seed), 7])
    captions, negatives, questions = {}, {}, []
    for sc in scenes:
        caps = scene_captions(sc, rng, captions_per_image)
        captions[sc.scene_id] = [c.text for c in caps]
        negs = [hard_negative(sc, c.claim, rng) for c in caps]
        negatives[sc.scene_id] = [n.text if n is not None else "" for n in negs]
        questions += scene_questions(sc, rng, questions_per_image)
    nl = make_nlvr2(scenes, nlvr2_examples or n_images, rng, split=split) if n_images >= 2 else []
    return VLScenes(scenes, captions, negatives, questions, nl, split)


def read_vl_scenes(folder, split: str = "train") -> VLScenes:
    """Read a folder written by :meth:`VLScenes.write` with the format loaders.

    Raises:
        ValueError: a missing or malformed file (the loaders' messages).
    """
    folder = Path(folder)
    images = np.load(folder / "images.npy")
    meta = json.loads((folder / "objects.json").read_text())
    objects = [[SceneObject(*o) for o in objs] for objs in meta["objects"]]
    scenes = SceneSet(images, objects, meta.get("seed", 0))
    caps, _ = load_coco_captions(folder / "captions.json")
    load_coco_instances(folder / "instances.json")  # checked: boxes inside the images
    negs = {int(k): v for k, v in json.loads((folder / "negatives.json").read_text()).items()}
    qf = next(folder.glob("*_questions.json"))
    af = next(folder.glob("*_annotations.json"))
    qs = list(load_vqa(qf, af).values())
    nl = load_nlvr2(folder / "nlvr2.jsonl")
    return VLScenes(scenes, caps, negs, qs, nl, split)


def load_vl_scenes(n_images: int = 2000, seed: int = 0, *, cache: bool = True, **kwargs) -> VLScenes:
    """:func:`build_vl_scenes`, cached under ``cache_dir()/scenes-<key>`` with SHA-256 checks.

    The key hashes every argument and the format version; a cache entry whose files do not match
    their manifest is rebuilt. Writes are atomic, and the manifest is written last, so an
    interrupted build is simply redone.
    """
    if not cache:
        return build_vl_scenes(n_images, seed, **kwargs)
    args = {"n_images": int(n_images), "seed": int(seed), "format": FORMAT_VERSION, **kwargs}
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir() / f"scenes-{key}"
    if check_manifest(folder) is not None:
        try:
            return read_vl_scenes(folder, kwargs.get("split", "train"))
        except (ValueError, OSError, KeyError, StopIteration):
            pass  # unreadable: rebuild below
    ds = build_vl_scenes(n_images, seed, **kwargs)
    files = ds.write(folder)
    write_manifest(folder, files, args)
    return ds
