"""Synthetic scenes: small RGB images of coloured shapes with boxes, attributes and a scene graph.

Every vision-language notebook of the course uses these scenes instead of COCO: they are generated
in seconds, deterministically, and every fact about them (which object is where, what colour, how
many) is known exactly, so captions, questions and statements about them can be checked.

A scene holds 1 to ``max_objects`` objects. Each object has

* a **shape** (:data:`SHAPES`), a **colour** (:data:`COLORS`) and a **size** (:data:`SIZES`);
* a **position**: its tight bounding box in pixels, ``(x1, y1, x2, y2)`` with ``x2``/``y2``
  exclusive (the box of a 13-pixel object at x = 5 is ``(5, ., 18, .)``), i.e. the same xyxy
  convention as :mod:`vlp_course.boxes`.

Objects may overlap a little (intersection at most ``max_overlap`` of the smaller box). The
background is flat dark grey or a dark texture. The scene graph (:func:`relations`) lists the
spatial relations "left of", "right of", "above", "below" and "next to" between objects.

Main entry points::

    scenes = make_scenes(1000, seed=0)          # a SceneSet: .images (N, H, W, 3) uint8, .scenes
    scene = scenes[3]                            # a Scene: .image, .objects, .boxes(), .labels()
    relations(scene)                             # [(i, "left of", j), ...]
    render_scene([SceneObject("circle", "red", "large", 10, 20)], image_size=64)

Randomness: scene ``i`` of ``make_scenes(n, seed)`` depends only on ``(seed, i)``, so the first 100
scenes of a 10,000-scene set are the 100 scenes of ``make_scenes(100, seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np

__all__ = [
    "SHAPES", "COLORS", "COLOR_RGB", "SIZES", "RELATIONS", "SceneObject", "Scene", "SceneSet",
    "make_scene", "make_scenes", "render_scene", "relations", "relation_holds", "object_size_px",
]

#: Shape classes, in label order (the detector's class index is the position in this tuple).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "star")
#: Colour names, in label order (the detector's attribute index).
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "white")
#: The RGB value each colour is drawn with (each object jitters it by a few levels).
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 175, 60), "blue": (55, 95, 235), "yellow": (235, 215, 45),
    "purple": (150, 60, 205), "orange": (245, 135, 25), "white": (235, 235, 235),
}
#: Object sizes; the side of an object is this fraction of the image side.
SIZES: tuple[str, ...] = ("small", "large")
SIZE_FRACTION: dict[str, float] = {"small": 0.19, "large": 0.30}
#: Spatial relations of the scene graph. "next to" is symmetric; the others come in converse pairs.
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below", "next to")

MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 256


def object_size_px(size: str, image_size: int) -> int:
    """Side in pixels of an object of ``size`` ("small"/"large") in an image of ``image_size`` pixels."""
    if size not in SIZE_FRACTION:
        raise ValueError(f"unknown size {size!r}; expected one of {SIZES}")
    return max(5, int(round(SIZE_FRACTION[size] * image_size)))


# ---------------------------------------------------------------------------------------------
# Shape templates: one boolean mask per (shape, side), computed once and cached.
# ---------------------------------------------------------------------------------------------

def _polygon_mask(side: int, pts: np.ndarray) -> np.ndarray:
    """Pixels of a (side, side) grid whose centre lies inside the polygon ``pts`` (even-odd rule).

    ``pts`` is (K, 2) in [-1, 1] coordinates (x, y), y downwards.
    """
    c = (np.arange(side) + 0.5) / side * 2 - 1
    u, v = np.meshgrid(c, c)
    inside = np.zeros((side, side), dtype=bool)
    # stretch the polygon to span [-1, 1] in both axes, plus a little, so that the shape touches
    # every side of its box (the box stays tight)
    lo, hi = pts.min(0), pts.max(0)
    pts = ((pts - lo) / (hi - lo) * 2 - 1) * (1 + 1.5 / side)
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for a, b, c2, d in zip(x0, y0, x1, y1):  # one edge at a time: does a ray to +x cross it?
        if b == d:
            continue
        crosses = ((b > v) != (d > v)) & (u < a + (v - b) * (c2 - a) / (d - b))
        inside ^= crosses
    return inside


@lru_cache(maxsize=None)
def _template(shape: str, side: int) -> np.ndarray:
    """Boolean (side, side) mask of ``shape`` filling its square tightly (every row/col touched)."""
    c = (np.arange(side) + 0.5) / side * 2 - 1  # pixel centres in (-1, 1)
    u, v = np.meshgrid(c, c)  # u: x (columns), v: y (rows)
    if shape == "circle":
        m = u**2 + v**2 <= 1.0
    elif shape == "square":
        m = np.ones((side, side), dtype=bool)
    elif shape == "triangle":
        m = _polygon_mask(side, np.array([[0.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]))
    elif shape == "diamond":
        m = np.abs(u) + np.abs(v) <= 1.0 + 1.0 / side
    elif shape == "cross":
        t = 0.36
        m = (np.abs(u) <= t) | (np.abs(v) <= t)
    elif shape == "star":
        ang = -np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
        m = _polygon_mask(side, pts)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    m = np.ascontiguousarray(m)
    m.setflags(write=False)
    return m


@lru_cache(maxsize=8)
def _texture_bank(image_size: int, n: int = 16) -> np.ndarray:
    """(n, S, S, 3) uint8 dark textures (smooth blobs plus grain), fixed for every seed."""
    rng = np.random.default_rng(12345)
    s = image_size
    out = np.empty((n, s, s, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:s, 0:s] / s
    for k in range(n):
        base = rng.uniform(18, 40, size=3)
        f = np.zeros((s, s))
        for _ in range(3):  # a few low-frequency waves
            fx, fy, ph = rng.uniform(1, 4), rng.uniform(1, 4), rng.uniform(0, 2 * np.pi)
            f += np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
        tint = rng.uniform(0.5, 1.0, size=3)
        img = base + 9 * f[..., None] * tint + rng.normal(0, 4, size=(s, s, 3))
        out[k] = np.clip(img, 0, 80).astype(np.uint8)
    out.setflags(write=False)
    return out


# ---------------------------------------------------------------------------------------------
# Objects and scenes
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SceneObject:
    """One object: ``shape``, ``color``, ``size`` names and the top-left pixel ``(x, y)`` of its box.

    ``side`` (pixels) is filled in by :func:`render_scene` from the size and the image size.
    """

    shape: str
    color: str
    size: str
    x: int
    y: int
    side: int = 0

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Pixel xyxy box ``(x1, y1, x2, y2)``; x2, y2 exclusive, so ``x2 - x1`` is the width."""
        return (self.x, self.y, self.x + self.side, self.y + self.side)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.side / 2, self.y + self.side / 2)

    def describe(self) -> str:
        return f"{self.size} {self.color} {self.shape}"

    def to_dict(self) -> dict:
        return {"shape": self.shape, "color": self.color, "size": self.size, "box": list(self.box)}


@dataclass
class Scene:
    """An image and the objects drawn in it.

    Attributes:
        image: (H, W, 3) uint8 RGB, H = W = ``image_size``.
        objects: the objects in drawing order (a later object may cover a corner of an earlier one).
        scene_id: the index in its :class:`SceneSet` (also the image id of the exported files).
    """

    image: np.ndarray
    objects: list[SceneObject]
    scene_id: int = 0

    @property
    def image_size(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    def boxes(self) -> np.ndarray:
        """(N, 4) float32 pixel xyxy boxes."""
        return np.array([o.box for o in self.objects], dtype=np.float32).reshape(-1, 4)

    def labels(self) -> np.ndarray:
        """(N,) int64 shape class indices into :data:`SHAPES`."""
        return np.array([SHAPES.index(o.shape) for o in self.objects], dtype=np.int64)

    def color_labels(self) -> np.ndarray:
        """(N,) int64 colour indices into :data:`COLORS`."""
        return np.array([COLORS.index(o.color) for o in self.objects], dtype=np.int64)

    def size_labels(self) -> np.ndarray:
        """(N,) int64 size indices into :data:`SIZES`."""
        return np.array([SIZES.index(o.size) for o in self.objects], dtype=np.int64)

    def graph(self) -> list[tuple[int, str, int]]:
        """The scene graph: see :func:`relations`."""
        return relations(self)

    def to_dict(self) -> dict:
        return {
            "scene_id": self.scene_id, "width": self.width, "height": self.height,
            "objects": [o.to_dict() for o in self.objects],
            "relations": [[i, r, j] for i, r, j in relations(self)],
        }


class SceneSet(Sequence[Scene]):
    """A list of scenes sharing one image array.

    Attributes:
        images: (N, S, S, 3) uint8 RGB images.
        objects: per scene, its list of :class:`SceneObject`.
        seed, image_size: how they were generated.
    """

    def __init__(self, images: np.ndarray, objects: list[list[SceneObject]], seed: int = 0):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be a (N, S, S, 3) uint8 array, got {images.shape} {images.dtype}")
        if len(objects) != len(images):
            raise ValueError(f"{len(images)} images but {len(objects)} object lists")
        self.images = images
        self.objects = objects
        self.seed = int(seed)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            idx = range(len(self))[i]
            return [self[j] for j in idx]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"scene index {i} out of range for {len(self)} scenes")
        return Scene(self.images[i], self.objects[i], scene_id=i)

    def __iter__(self) -> Iterator[Scene]:
        for i in range(len(self)):
            yield self[i]

    def tensors(self):
        """Images as a float tensor (N, 3, S, S) in [0, 1] (what the CNNs of the course take)."""
        import torch

        return torch.from_numpy(self.images).permute(0, 3, 1, 2).float().div_(255.0)


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------

def _check_image_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ValueError(f"image_size must be an integer number of pixels, got {image_size!r}")
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ValueError(
            f"image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels, got {image_size}: "
            "a smaller image is too small for its objects"
        )
    return int(image_size)


def _background(image_size: int, background: str, rng: np.random.Generator | None) -> np.ndarray:
    if background == "plain":
        return np.full((image_size, image_size, 3), 28, dtype=np.uint8)
    if background == "textured":
        bank = _texture_bank(image_size)
        k = int(rng.integers(len(bank))) if rng is not None else 0
        img = bank[k]
        if rng is not None and rng.random() < 0.5:
            img = img[:, ::-1]
        return np.array(img, copy=True)
    raise ValueError(f"background must be 'plain' or 'textured', got {background!r}")


def _draw(image: np.ndarray, obj: SceneObject, rgb) -> None:
    m = _template(obj.shape, obj.side)
    patch = image[obj.y:obj.y + obj.side, obj.x:obj.x + obj.side]
    patch[m] = rgb


def render_scene(
    objects: Sequence[SceneObject], image_size: int = 64, *, background: str = "plain",
    seed: int | None = None, scene_id: int = 0,
) -> Scene:
    """Draw explicitly given objects (for tests, figures and hand-made examples).

    Args:
        objects: :class:`SceneObject` with shape/colour/size names and top-left pixel ``(x, y)``;
            ``side`` is set from the size.
        image_size: S, the image is S x S pixels.
        background: "plain" (flat dark grey) or "textured".
        seed: picks the texture (ignored for "plain").

    Raises:
        ValueError: no objects, an unknown shape/colour/size, or an object outside the image.
    """
    s = _check_image_size(image_size)
    objects = list(objects)
    if not objects:
        raise ValueError("a scene needs at least 1 object, got 0")
    placed = []
    for k, o in enumerate(objects):
        if o.shape not in SHAPES:
            raise ValueError(f"object {k}: unknown shape {o.shape!r}; expected one of {SHAPES}")
        if o.color not in COLORS:
            raise ValueError(f"object {k}: unknown colour {o.color!r}; expected one of {COLORS}")
        side = object_size_px(o.size, s)
        if not (0 <= o.x and 0 <= o.y and o.x + side <= s and o.y + side <= s):
            raise ValueError(
                f"object {k} ({o.describe()}) at ({o.x}, {o.y}) with side {side} px does not fit in the "
                f"{s}x{s} image: its box (x1, y1, x2, y2) must lie inside [0, {s}] x [0, {s}]"
            )
        placed.append(SceneObject(o.shape, o.color, o.size, int(o.x), int(o.y), side))
    rng = np.random.default_rng(seed) if seed is not None else None
    img = _background(s, background, rng)
    for o in placed:
        _draw(img, o, COLOR_RGB[o.color])
    return Scene(img, placed, scene_id)


def _overlap_ok(box, boxes: list, max_overlap: float) -> bool:
    x1, y1, x2, y2 = box
    a = (x2 - x1) * (y2 - y1)
    for bx1, by1, bx2, by2 in boxes:
        iw = min(x2, bx2) - max(x1, bx1)
        ih = min(y2, by2) - max(y1, by1)
        if iw > 0 and ih > 0:
            if iw * ih > max_overlap * min(a, (bx2 - bx1) * (by2 - by1)):
                return False
    return True


def _check_counts(image_size: int, min_objects: int, max_objects: int) -> None:
    if isinstance(min_objects, bool) or not isinstance(min_objects, (int, np.integer)) or min_objects < 1:
        raise ValueError(f"min_objects must be an integer >= 1 (a scene has at least one object), got {min_objects!r}")
    if isinstance(max_objects, bool) or not isinstance(max_objects, (int, np.integer)) or max_objects < min_objects:
        raise ValueError(f"max_objects must be an integer >= min_objects ({min_objects}), got {max_objects!r}")
    side = object_size_px("large", image_size)
    if max_objects * side * side > 0.6 * image_size * image_size:
        most = int(0.6 * image_size * image_size // (side * side))
        raise ValueError(
            f"a {image_size}x{image_size} image is too small for {max_objects} objects "
            f"(large objects are {side} px wide); use at most {most} objects or a larger image_size"
        )


_N_TRIES = 30  # candidate positions per object


def _random_scene(rng: np.random.Generator, s: int, min_objects: int, max_objects: int,
                  background: str, max_overlap: float, scene_id: int, out: np.ndarray | None = None) -> Scene:
    # One call to the generator per scene (numpy's per-call overhead dominates otherwise):
    # [count, texture, flip, then per object: shape, colour, size, 3 jitters, 2 x _N_TRIES positions]
    per_obj = 6 + 2 * _N_TRIES
    u = rng.random(3 + per_obj * max_objects).tolist()
    n = min_objects + int(u[0] * (max_objects - min_objects + 1))
    if background == "textured":
        bank = _texture_bank(s)
        tex = bank[int(u[1] * len(bank))]
        img = out if out is not None else np.empty((s, s, 3), dtype=np.uint8)
        img[...] = tex[:, ::-1] if u[2] < 0.5 else tex
    else:
        img = out if out is not None else np.empty((s, s, 3), dtype=np.uint8)
        img[...] = 28
    objs: list[SceneObject] = []
    boxes: list[tuple[int, int, int, int]] = []
    for k in range(n):
        v = u[3 + k * per_obj: 3 + (k + 1) * per_obj]
        size = SIZES[int(v[2] * len(SIZES))]
        side = object_size_px(size, s)
        span = s - side + 1
        for t in range(_N_TRIES):
            x, y = int(v[6 + 2 * t] * span), int(v[7 + 2 * t] * span)
            box = (x, y, x + side, y + side)
            if _overlap_ok(box, boxes, max_overlap):
                break
        else:  # no room left: the scene keeps the objects already placed
            continue
        o = SceneObject(SHAPES[int(v[0] * len(SHAPES))], COLORS[int(v[1] * len(COLORS))], size, x, y, side)
        base = COLOR_RGB[o.color]
        rgb = tuple(min(255, max(0, base[c] + int(v[3 + c] * 25) - 12)) for c in range(3))
        _draw(img, o, rgb)
        objs.append(o)
        boxes.append(box)
    return Scene(img, objs, scene_id)


def make_scene(seed: int = 0, index: int = 0, *, image_size: int = 64, min_objects: int = 1,
               max_objects: int = 4, background: str = "textured", max_overlap: float = 0.15) -> Scene:
    """One random scene: scene ``index`` of ``make_scenes(..., seed=seed)`` with the same settings."""
    s = _check_image_size(image_size)
    _check_counts(s, min_objects, max_objects)
    rng = np.random.default_rng([int(seed), int(index)])
    return _random_scene(rng, s, min_objects, max_objects, background, max_overlap, int(index))


def make_scenes(n: int, seed: int = 0, *, image_size: int = 64, min_objects: int = 1, max_objects: int = 4,
                background: str = "textured", max_overlap: float = 0.15) -> SceneSet:
    """Generate ``n`` random scenes, deterministically from ``seed``.

    Args:
        n: number of scenes.
        seed: scene i depends only on (seed, i).
        image_size: S; images are S x S RGB (32 to 256; default 64).
        min_objects, max_objects: the number of objects is uniform in [min, max] (a scene with no
            room left for an object keeps the ones already placed, so rarely fewer).
        background: "textured" (default) or "plain".
        max_overlap: largest allowed intersection between two boxes, as a fraction of the smaller box.

    Returns:
        a :class:`SceneSet` (images (n, S, S, 3) uint8, per-scene objects).

    Raises:
        ValueError: n < 1, min_objects < 1 (a scene needs at least one object), an image too small for
            ``max_objects`` objects, an unknown background.

    Speed: about 5,000 scenes/s on one core at S = 64 (``benchmarks/bench_scenes.py``).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive number of scenes, got {n!r}")
    s = _check_image_size(image_size)
    _check_counts(s, min_objects, max_objects)
    if background not in ("plain", "textured"):
        raise ValueError(f"background must be 'plain' or 'textured', got {background!r}")
    if not 0.0 <= max_overlap < 1.0:
        raise ValueError(f"max_overlap must be in [0, 1), got {max_overlap}")
    images = np.empty((int(n), s, s, 3), dtype=np.uint8)
    objects = []
    for i in range(int(n)):
        rng = np.random.default_rng([int(seed), i])
        sc = _random_scene(rng, s, min_objects, max_objects, background, max_overlap, i, out=images[i])
        objects.append(sc.objects)
    return SceneSet(images, objects, seed)


# ---------------------------------------------------------------------------------------------
# Scene graph
# ---------------------------------------------------------------------------------------------

def relation_holds(a: SceneObject, rel: str, b: SceneObject, image_size: int) -> bool:
    """Whether ``a`` stands in relation ``rel`` to ``b``.

    Definitions (pixels, tolerance t = 2 px so that touching boxes still count):
        "left of": a's box ends before b's starts, ``a.x2 <= b.x1 + t``; "right of" is the converse.
        "above": ``a.y2 <= b.y1 + t``; "below" is the converse (y grows downwards).
        "next to": the gap between the two boxes (largest of the horizontal and vertical gaps) is at
            most 0.12 * S (overlapping boxes count); symmetric.

    Raises:
        ValueError: on an unknown relation.
    """
    t = 2
    ax1, ay1, ax2, ay2 = a.box
    bx1, by1, bx2, by2 = b.box
    if rel == "left of":
        return ax2 <= bx1 + t
    if rel == "right of":
        return bx2 <= ax1 + t
    if rel == "above":
        return ay2 <= by1 + t
    if rel == "below":
        return by2 <= ay1 + t
    if rel == "next to":
        gap = max(bx1 - ax2, ax1 - bx2, by1 - ay2, ay1 - by2)
        return gap <= 0.12 * image_size
    raise ValueError(f"unknown relation {rel!r}; expected one of {RELATIONS}")


def relations(scene: Scene) -> list[tuple[int, str, int]]:
    """The scene graph: every ``(i, relation, j)`` with i != j for which :func:`relation_holds` is true."""
    out = []
    objs = scene.objects
    for i, a in enumerate(objs):
        for j, b in enumerate(objs):
            if i != j:
                for r in RELATIONS:
                    if relation_holds(a, r, b, scene.image_size):
                        out.append((i, r, j))
    return out
