"""The course's eyes: read the objects of an image back into a :class:`~vlp_course.data.scenes.Scene`.

A generated image has no scene behind it, so "is this caption true of the image?" needs a reader:

1. **Find** the objects: each pixel takes the nearest colour of the scenes' palette
   (:data:`~vlp_course.data.scenes.COLOR_RGB`) if it is within ``max_distance`` of it (the dark
   background is not), and each connected region of one colour (scikit-image's ``label``, 8-connected)
   of at least ``min_area`` pixels is an object, with its bounding box.
2. **Name** them: the stand-in detector (:mod:`vlp_course.data.detector`) classifies each box's
   shape and colour, as it does for the captioning and VQA models; the size is read from the box
   side (small if nearer the small objects' side than the large ones').
3. **Check** the caption on the scene read: :func:`~vlp_course.data.captions.caption_is_true`.

On real held-out scenes the reader makes the image's own caption true 95% of the time and another
image's caption 2% (``benchmarks/results/text_to_image.md``): a yardstick for generated images.
Objects that touch and share a colour merge into one region, the main source of its 5% misses.
"""

from __future__ import annotations

import numpy as np

from vlp_course.data.captions import caption_is_true
from vlp_course.data.detector import SceneDetector, extract_regions
from vlp_course.data.scenes import COLOR_RGB, COLORS, SHAPES, SIZE_FRACTION, Scene, SceneObject
from vlp_course.text.vocab import tokenize

__all__ = ["read_scene", "captions_true", "captions_seen_true", "colours_seen", "PALETTE"]

#: (7, 3) float32 RGB of the scenes' colours, in :data:`COLORS` order.
PALETTE = np.array([COLOR_RGB[c] for c in COLORS], dtype=np.float32)


def _check_image(image) -> np.ndarray:
    x = np.asarray(image)
    if x.ndim != 3 or x.shape[2] != 3 or x.shape[0] != x.shape[1]:
        raise ValueError(f"an image must be (S, S, 3) RGB, got shape {x.shape}")
    if x.dtype != np.uint8:
        raise ValueError(f"an image must be uint8 (0-255), got {x.dtype}")
    return x


def read_scene(image, detector: SceneDetector, *, max_distance: float = 70.0, min_area: int = 25) -> Scene:
    """The scene an (S, S, 3) uint8 image shows, as the reader sees it (possibly with no objects).

    Args:
        max_distance: RGB distance within which a pixel counts as a palette colour.
        min_area: the smallest region (pixels) read as an object (a small object of a 64-pixel scene
            covers about 60-140 pixels).

    Raises:
        ValueError: an image that is not (S, S, 3) uint8.
    """
    from skimage.measure import label, regionprops

    img = _check_image(image)
    S = img.shape[0]
    px = img.reshape(-1, 3).astype(np.float32)  # (S*S, 3)
    dist = np.linalg.norm(px[:, None, :] - PALETTE[None], axis=-1)  # (S*S, 7)
    colour = dist.argmin(1).reshape(S, S)
    is_object = (dist.min(1) < max_distance).reshape(S, S)
    boxes = []
    for k in range(len(COLORS)):
        for region in regionprops(label(is_object & (colour == k), connectivity=2)):
            if region.area >= min_area:
                y1, x1, y2, x2 = region.bbox
                boxes.append((x1, y1, x2, y2))
    if not boxes:
        return Scene(img, [])
    reg = extract_regions(detector, img, np.array(boxes, dtype=np.float32))
    threshold = S * (SIZE_FRACTION["small"] + SIZE_FRACTION["large"]) / 2
    objects = []
    for (x1, y1, x2, y2), cls, att in zip(boxes, reg.class_probs, reg.attr_probs):
        side = max(x2 - x1, y2 - y1)
        objects.append(SceneObject(SHAPES[int(cls.argmax())], COLORS[int(att.argmax())],
                                   "small" if side < threshold else "large", int(x1), int(y1), int(side)))
    return Scene(img, objects)


def captions_true(scenes, captions, *, control_shift: int = 1) -> tuple[float, float]:
    """The share of scenes that make their caption true, and the same with each scene given the caption
    ``control_shift`` rows further on (the control: a caption written for another image).

    Raises:
        ValueError: ``len(captions) != N``, fewer than 2 scenes, or a shift that is a multiple of N.
    """
    scenes, captions = list(scenes), list(captions)
    if len(captions) != len(scenes):
        raise ValueError(f"need N scenes and N captions, got {len(scenes)} scenes and {len(captions)} captions")
    if len(scenes) < 2 or control_shift % len(scenes) == 0:
        raise ValueError("the control needs at least 2 images and a shift that is not a multiple of N")
    shifted = captions[control_shift:] + captions[:control_shift]
    own = np.mean([caption_is_true(s, c) is True for s, c in zip(scenes, captions)])
    other = np.mean([caption_is_true(s, c) is True for s, c in zip(scenes, shifted)])
    return float(own), float(other)


def captions_seen_true(images, captions, detector: SceneDetector, *, control_shift: int = 1) -> tuple[float, float]:
    """The share of images whose scene, as read, makes their caption true; and the same with each image given the
    caption ``control_shift`` rows further on (the control: a caption written for another image).

    Args:
        images: (N, S, S, 3) uint8. captions: N strings, one per image.

    Raises:
        ValueError: ``len(captions) != N``, fewer than 2 images, or bad images.
    """
    imgs = np.asarray(images)
    captions = list(captions)
    if imgs.ndim != 4 or len(captions) != len(imgs):
        raise ValueError(f"need (N, S, S, 3) images and N captions, got {imgs.shape} and {len(captions)} captions")
    if len(imgs) < 2 or control_shift % len(imgs) == 0:
        raise ValueError("the control needs at least 2 images and a shift that is not a multiple of N")
    return captions_true([read_scene(im, detector) for im in imgs], captions, control_shift=control_shift)


def colours_seen(scenes, captions, *, control_shift: int = 1) -> tuple[float, float]:
    """A weaker check than the whole caption: the share of captions naming a colour whose every named colour is
    among the colours of the scene read; and the same with each scene given the caption ``control_shift`` rows on.
    Captions that name no colour are left out of both shares.

    Args:
        scenes: N :class:`Scene` (for drawings, :func:`read_scene` of each). captions: N strings.

    Raises:
        ValueError: ``len(captions) != N``, or no caption names a colour.
    """
    scenes, captions = list(scenes), list(captions)
    if len(scenes) != len(captions) or len(scenes) < 2:
        raise ValueError(f"need N >= 2 scenes and N captions, got {len(scenes)} and {len(captions)}")
    shifted = captions[control_shift:] + captions[:control_shift]

    def share(caps):
        hits = [named <= {o.color for o in s.objects} for s, c in zip(scenes, caps)
                if (named := {w for w in tokenize(c) if w in COLORS})]
        if not hits:
            raise ValueError("no caption names a colour")
        return float(np.mean(hits))

    return share(captions), share(shifted)
