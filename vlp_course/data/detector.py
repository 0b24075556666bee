"""A stand-in for the Faster R-CNN "bottom-up" detector: region features of the synthetic scenes.

ViLBERT, LXMERT, VisualBERT and VL-BERT do not see pixels: a Faster R-CNN trained on Visual Genome
(Anderson et al., 2018, "bottom-up attention") gives them, per image, N boxes, a 2048-d appearance
vector per box (the detector's pooled fc7 output) and the detector's class distribution per box
(1601 classes with background). Here a small CNN plays that role on the scenes:

* a backbone (four 3x3 convolutions with batch norm, two of stride 2) turns a (B, 3, S, S) image into a feature map
  (B, C, S/4, S/4);
* for every box, :func:`vlp_course.vision.features.roi_features` (torchvision's RoIAlign) pools a
  k x k grid of that map; a two-layer MLP turns it into the region's appearance vector (D = 128),
  like the detector's box head;
* two linear heads give the shape class (6 classes) and the colour attribute (7 values), as the
  Visual Genome detector predicts an object class and an attribute.

The boxes are the scenes' ground-truth boxes (a real detector proposes its own; the course's
scenes have no clutter, so proposals would be the same boxes). The whole-image feature is the
region feature of the box covering the whole image (what VL-BERT uses as its first visual token).

Contract of :func:`extract_regions` (checked by :meth:`RegionFeatures.validate`):
``features`` (N, D) float32; ``boxes`` (N, 4) normalized xyxy in [0, 1]; ``image_size`` (W, H);
``class_probs`` (N, C) rows summing to 1; ``attr_probs`` (N, A) rows summing to 1;
``image_feature`` (D,).

Training takes a few seconds on a CPU (:func:`train_detector`); :func:`load_or_train_detector`
keeps the trained weights in the course cache (safetensors, SHA-256 checked).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_course.boxes import normalize, validate_xyxy
from vlp_course.data.scenes import COLORS, SHAPES, Scene, SceneSet, make_scenes
from vlp_course.vision.features import grid_features, patchify, roi_features

__all__ = ["SceneDetector", "RegionFeatures", "train_detector", "detector_accuracy", "extract_regions",
           "load_or_train_detector", "load_detector", "extract_regions_batch", "images_to_tensor", "scene_grid_features", "scene_patch_features"]


def images_to_tensor(images) -> Tensor:
    """(N, S, S, 3) or (S, S, 3) uint8 array -> (N, 3, S, S) float32 in [0, 1]."""
    x = torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3) or (H, W, 3) uint8, got {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).float().div(255.0)  # (N, 3, H, W)


class SceneDetector(nn.Module):
    """Backbone + RoI box head + class and attribute heads (see the module docstring).

    Args:
        channels: C, the feature map's channels. dim: D, the region feature size.
        roi_size: k, RoIAlign's output grid (k x k cells, flattened into the box head).
    """

    def __init__(self, channels: int = 48, dim: int = 128, roi_size: int = 4,
                 num_classes: int = len(SHAPES), num_attrs: int = len(COLORS)):
        super().__init__()
        self.channels, self.dim, self.roi_size = channels, dim, roi_size
        def conv(cin, cout, stride=1):
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.backbone = nn.Sequential(  # (B, 3, S, S) -> (B, C, S/4, S/4)
            *conv(3, 16, 2),  # (B, 16, S/2, S/2)
            *conv(16, 32),
            *conv(32, channels, 2),  # (B, C, S/4, S/4)
            *conv(channels, channels),
        )
        self.box_head = nn.Sequential(nn.Linear(channels * roi_size * roi_size, dim), nn.ReLU(),
                                      nn.Linear(dim, dim), nn.ReLU())
        self.cls_head = nn.Linear(dim, num_classes)
        self.attr_head = nn.Linear(dim, num_attrs)

    def feature_map(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, C, S/4, S/4)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) floats in [0, 1], got {tuple(images.shape)}")
        return self.backbone(images)

    def region_features(self, fmap: Tensor, boxes: list[Tensor], image_size: tuple[int, int]) -> Tensor:
        """Boxes (list of B tensors (N_i, 4), normalized xyxy) -> (sum N_i, D) appearance vectors."""
        pooled = roi_features(fmap, boxes, box_format="normalized", image_size=image_size,
                              output_size=self.roi_size, pool=False)  # list of (N_i, C, k, k)
        x = torch.cat(pooled, 0).flatten(1)  # (sum N_i, C*k*k)
        return self.box_head(x)  # (sum N_i, D)

    def forward(self, images: Tensor, boxes: list[Tensor]) -> dict[str, Tensor]:
        """Images (B, 3, S, S), boxes: B tensors (N_i, 4) normalized xyxy.

        Returns ``{"features": (sum N_i, D), "class_logits": (sum N_i, C), "attr_logits": (sum N_i, A)}``.
        """
        size = (images.shape[-1], images.shape[-2])
        feats = self.region_features(self.feature_map(images), boxes, size)
        return {"features": feats, "class_logits": self.cls_head(feats), "attr_logits": self.attr_head(feats)}


def _norm_boxes(scene: Scene) -> Tensor:
    return normalize(torch.from_numpy(scene.boxes()), scene.width, scene.height)  # (N, 4) in [0, 1]


def _jitter(boxes: Tensor, g: torch.Generator, px: float, size: int) -> Tensor:
    noise = (torch.rand(boxes.shape, generator=g) * 2 - 1) * (px / size)
    b = (boxes + noise).clamp(0, 1)
    x1 = torch.minimum(b[:, 0], b[:, 2])
    x2 = torch.maximum(b[:, 0], b[:, 2])
    y1 = torch.minimum(b[:, 1], b[:, 3])
    y2 = torch.maximum(b[:, 1], b[:, 3])
    return torch.stack([x1, y1, x2, y2], 1)


def train_detector(scenes: SceneSet | None = None, *, steps: int = 300, batch_size: int = 32, lr: float = 2e-3,
                   seed: int = 0, device: torch.device | str = "cpu", progress: bool = False,
                   model: SceneDetector | None = None):
    """Train a :class:`SceneDetector` to classify the scenes' objects (shape) and their colour.

    Ground-truth boxes are jittered by up to 2 pixels, so the heads do not rely on exact boxes.
    Uses the course's :func:`vlp_course.training.train`.

    Returns:
        ``(model, history)``.
    """
    from vlp_course.training import TrainConfig, train

    scenes = scenes if scenes is not None else make_scenes(3000, seed=1000 + seed)
    images = scenes.tensors()  # (N, 3, S, S)
    boxes = [_norm_boxes(sc) for sc in scenes]
    cls = [torch.from_numpy(sc.labels()) for sc in scenes]
    col = [torch.from_numpy(sc.color_labels()) for sc in scenes]
    g = torch.Generator().manual_seed(seed)
    size = scenes.image_size

    def batch(step: int):
        idx = torch.randint(len(scenes), (batch_size,), generator=g).tolist()
        return {"images": images[idx], "boxes": [_jitter(boxes[i], g, 2.0, size) for i in idx],
                "cls": torch.cat([cls[i] for i in idx]), "col": torch.cat([col[i] for i in idx])}

    def step_fn(m, b):
        out = m(b["images"], b["boxes"])
        l_cls = F.cross_entropy(out["class_logits"], b["cls"])
        l_col = F.cross_entropy(out["attr_logits"], b["col"])
        return {"loss": l_cls + l_col, "class_loss": l_cls, "attr_loss": l_col}

    torch.manual_seed(seed)
    model = model or SceneDetector()
    hist = train(model, batch, step_fn, TrainConfig(steps=steps, lr=lr, warmup_steps=20, decay="cosine",
                                                     seed=seed, progress=progress), device=device)
    model.eval()
    return model, hist


@torch.no_grad()
def detector_accuracy(model: SceneDetector, scenes: SceneSet, batch_size: int = 256) -> dict[str, float]:
    """Object classification accuracy on ground-truth boxes: ``{"class_acc", "attr_acc"}`` in [0, 1]."""
    model.eval()
    dev = next(model.parameters()).device
    right_c = right_a = total = 0
    for start in range(0, len(scenes), batch_size):
        part = scenes[start:start + batch_size]
        imgs = images_to_tensor(np.stack([sc.image for sc in part])).to(dev)
        out = model(imgs, [_norm_boxes(sc).to(dev) for sc in part])
        cls = torch.cat([torch.from_numpy(sc.labels()) for sc in part]).to(dev)
        col = torch.cat([torch.from_numpy(sc.color_labels()) for sc in part]).to(dev)
        right_c += int((out["class_logits"].argmax(1) == cls).sum())
        right_a += int((out["attr_logits"].argmax(1) == col).sum())
        total += len(cls)
    return {"class_acc": right_c / total, "attr_acc": right_a / total}


@dataclass
class RegionFeatures:
    """What a bottom-up detector hands a vision-language model for one image.

    Attributes:
        features: (N, D) float32 appearance vectors.
        boxes: (N, 4) float32 normalized xyxy boxes in [0, 1].
        image_size: (W, H) in pixels (to get pixel boxes back: ``boxes * [W, H, W, H]``).
        class_probs: (N, C) float32, each row a distribution over :data:`SHAPES`.
        attr_probs: (N, A) float32, each row a distribution over :data:`COLORS`.
        image_feature: (D,) float32, the feature of the whole-image box.
    """

    features: Tensor
    boxes: Tensor
    image_size: tuple[int, int]
    class_probs: Tensor
    attr_probs: Tensor
    image_feature: Tensor
    class_names: tuple[str, ...] = SHAPES
    attr_names: tuple[str, ...] = COLORS

    @property
    def num_boxes(self) -> int:
        return int(self.features.shape[0])

    def pixel_boxes(self) -> Tensor:
        w, h = self.image_size
        return self.boxes * torch.tensor([w, h, w, h], dtype=self.boxes.dtype)

    def validate(self) -> "RegionFeatures":
        """Check the contract; raises ValueError naming the field, shape or range that is wrong."""
        n = self.features.shape[0] if self.features.ndim == 2 else -1
        if self.features.ndim != 2 or self.features.dtype != torch.float32:
            raise ValueError(f"features must be (N, D) float32, got {tuple(self.features.shape)} {self.features.dtype}")
        if tuple(self.boxes.shape) != (n, 4):
            raise ValueError(f"boxes must be (N, 4) = ({n}, 4), got {tuple(self.boxes.shape)}")
        validate_xyxy(self.boxes, normalized=True, name="region boxes")
        w, h = self.image_size
        if not (w > 0 and h > 0):
            raise ValueError(f"image_size must be positive (W, H), got {self.image_size}")
        for name, p, k in (("class_probs", self.class_probs, len(self.class_names)),
                           ("attr_probs", self.attr_probs, len(self.attr_names))):
            if tuple(p.shape) != (n, k):
                raise ValueError(f"{name} must be (N, {k}) = ({n}, {k}), got {tuple(p.shape)}")
            if n and (not torch.allclose(p.sum(1), torch.ones(n), atol=1e-4) or (p < 0).any()):
                raise ValueError(f"every row of {name} must be a probability distribution (>= 0, summing to 1)")
        if tuple(self.image_feature.shape) != (self.features.shape[1],):
            raise ValueError(f"image_feature must be (D,) = ({self.features.shape[1]},), got {tuple(self.image_feature.shape)}")
        return self


@torch.no_grad()
def extract_regions(model: SceneDetector, scene: Scene | np.ndarray, boxes=None, *, box_format: str = "pixel") -> RegionFeatures:
    """Region features of one image (a :class:`Scene`, or an (H, W, 3) uint8 array with ``boxes``).

    Args:
        boxes: (N, 4) xyxy boxes; defaults to the scene's ground-truth boxes.
        box_format: "pixel" or "normalized", for ``boxes``.

    Returns:
        a validated :class:`RegionFeatures`.

    Raises:
        ValueError: missing boxes for a raw image, boxes outside the image or [0, 1], x2 < x1.
    """
    model.eval()
    dev = next(model.parameters()).device
    if isinstance(scene, Scene):
        image = scene.image
        if boxes is None:
            boxes, box_format = scene.boxes(), "pixel"
    else:
        image = np.asarray(scene)
        if boxes is None:
            raise ValueError("boxes are required when extracting regions from a raw image")
    h, w = image.shape[:2]
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
    if box_format == "pixel":
        b = normalize(b, w, h)
    elif box_format == "normalized":
        b = validate_xyxy(b, normalized=True)
    else:
        raise ValueError(f"box_format must be 'pixel' or 'normalized', got {box_format!r}")
    img = images_to_tensor(image).to(dev)
    fmap = model.feature_map(img)
    whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    feats = model.region_features(fmap, [torch.cat([whole, b]).to(dev)], (w, h))  # (1 + N, D)
    cls = model.cls_head(feats[1:]).softmax(-1)
    att = model.attr_head(feats[1:]).softmax(-1)
    return RegionFeatures(feats[1:].float().cpu(), b.float(), (int(w), int(h)), cls.float().cpu(),
                          att.float().cpu(), feats[0].float().cpu()).validate()


@torch.no_grad()
def extract_regions_batch(model: SceneDetector, scenes, batch_size: int = 128) -> list[RegionFeatures]:
    """:func:`extract_regions` for many scenes (their ground-truth boxes), one forward pass per batch."""
    model.eval()
    dev = next(model.parameters()).device
    out: list[RegionFeatures] = []
    whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    scenes = list(scenes)
    for start in range(0, len(scenes), batch_size):
        part = scenes[start:start + batch_size]
        imgs = images_to_tensor(np.stack([sc.image for sc in part])).to(dev)
        boxes = [_norm_boxes(sc) for sc in part]
        w, h = part[0].width, part[0].height
        feats = model.region_features(model.feature_map(imgs), [torch.cat([whole, b]).to(dev) for b in boxes], (w, h))
        cls = model.cls_head(feats).softmax(-1).float().cpu()
        att = model.attr_head(feats).softmax(-1).float().cpu()
        feats = feats.float().cpu()
        k = 0
        for b in boxes:
            n = len(b)
            out.append(RegionFeatures(feats[k + 1:k + 1 + n], b.float(), (int(w), int(h)), cls[k + 1:k + 1 + n],
                                      att[k + 1:k + 1 + n], feats[k]).validate())
            k += n + 1
    return out


@torch.no_grad()
def scene_grid_features(model: SceneDetector, images) -> Tensor:
    """Grid (pixel) tokens of the detector's feature map: (B, (S/4)^2, C) (Pixel-BERT style)."""
    x = images if isinstance(images, Tensor) else images_to_tensor(images)
    return grid_features(model.feature_map(x.to(next(model.parameters()).device))).cpu()


def scene_patch_features(images, patch_size: int = 16) -> Tensor:
    """Patch tokens of the raw pixels: (B, (S/P)^2, 3 * P * P) (ViT / ViLT style)."""
    x = images if isinstance(images, Tensor) else images_to_tensor(images)
    return patchify(x, patch_size)


# ---------------------------------------------------------------------------------------------
# Cache of trained weights
# ---------------------------------------------------------------------------------------------

def load_or_train_detector(seed: int = 0, steps: int = 600, *, n_scenes: int = 3000, cache: bool = True,
                           device: torch.device | str = "cpu", progress: bool = False) -> SceneDetector:
    """The trained detector, from the course cache when its SHA-256 matches, else trained (seconds) and cached.

    Trained with :data:`CHECKPOINT_RECIPE` on ``n_scenes`` scenes. The cache entry is
    ``cache_dir()/detector-s{seed}-t{steps}-n{n_scenes}/`` holding ``detector.safetensors``,
    ``config.json`` and a ``manifest.json`` with their SHA-256 (written atomically, manifest last).
    """
    from vlp_course.checkpoints import load_safetensors, save_safetensors
    from vlp_course.files import atomic_write_text, cache_dir, check_manifest, write_manifest

    cfg = {"channels": 48, "dim": 128, "roi_size": 4, "seed": int(seed), "steps": int(steps),
           "n_scenes": int(n_scenes), "version": 2}
    folder = cache_dir() / f"detector-s{seed}-t{steps}-n{n_scenes}"
    if cache and check_manifest(folder) is not None:
        try:
            model = SceneDetector(cfg["channels"], cfg["dim"], cfg["roi_size"])
            model.load_state_dict(load_safetensors(folder / "detector.safetensors"))
            return model.to(device).eval()
        except (OSError, RuntimeError, ValueError):
            pass
    r = CHECKPOINT_RECIPE
    model, _ = train_detector(make_scenes(n_scenes, seed=r["train_seed"] + seed), steps=steps, batch_size=r["batch_size"],
                              lr=r["lr"], seed=seed, device=device, progress=progress)
    if cache:
        save_safetensors(model, folder / "detector.safetensors")
        atomic_write_text(folder / "config.json", json.dumps(cfg))
        write_manifest(folder, ["detector.safetensors", "config.json"], cfg)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# The shipped checkpoint: vlp_course/shipped/scene_detector.safetensors (reproduce: python -m vlp_course.data.detector)
# ---------------------------------------------------------------------------------------------

CHECKPOINT_NAME = "scene_detector.safetensors"
#: the recipe of the shipped checkpoint (``python -m vlp_course.data.detector`` reproduces it)
CHECKPOINT_RECIPE = {"train_scenes": 3000, "train_seed": 1000, "steps": 600, "batch_size": 16, "lr": 4e-3, "seed": 0}


def load_detector(device: torch.device | str = "cpu", *, progress: bool = False) -> SceneDetector:
    """The trained stand-in detector: the shipped ``vlp_course/shipped/scene_detector.safetensors``
    when present and its SHA-256 matches ``vlp_course/shipped/SHA256SUMS``; otherwise :func:`load_or_train_detector` (trains
    in seconds on a GPU, a minute or two on a CPU, then cached).

    Raises:
        ValueError: if the shipped file exists but its SHA-256 differs from ``vlp_course/shipped/SHA256SUMS``.
    """
    from vlp_course import files
    from vlp_course.checkpoints import load_safetensors

    path = files.shipped_dir() / CHECKPOINT_NAME
    if path.exists() and files.expected_sha256(CHECKPOINT_NAME) is not None:
        files.check_shipped(path, "python -m vlp_course.data.detector")
        model = SceneDetector()
        model.load_state_dict(load_safetensors(path))
        return model.to(device).eval()
    r = CHECKPOINT_RECIPE
    return load_or_train_detector(seed=r["seed"], steps=r["steps"], n_scenes=r["train_scenes"], device=device,
                                  progress=progress)


def _main(argv=None) -> int:
    import argparse

    from vlp_course import files
    from vlp_course.checkpoints import save_safetensors

    r = CHECKPOINT_RECIPE
    ap = argparse.ArgumentParser(description="Train the stand-in detector and write data/scene_detector.safetensors")
    ap.add_argument("--out", default=str(files.shipped_dir()), help="folder for the checkpoint and SHA256SUMS")
    ap.add_argument("--steps", type=int, default=r["steps"])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.manual_seed(r["seed"])
    scenes = make_scenes(r["train_scenes"], seed=r["train_seed"])
    model, hist = train_detector(scenes, steps=args.steps, batch_size=r["batch_size"], lr=r["lr"], seed=r["seed"],
                                 device=args.device, progress=True)
    model = model.cpu()
    acc = detector_accuracy(model, make_scenes(1000, seed=4242))
    print(f"held-out accuracy (1,000 scenes, seed 4242): shape {acc['class_acc']:.4f}, colour {acc['attr_acc']:.4f}")
    out = Path(args.out)
    meta = {"recipe": json.dumps({**r, "steps": args.steps}), "class_acc": f"{acc['class_acc']:.4f}",
            "attr_acc": f"{acc['attr_acc']:.4f}"}
    save_safetensors(model, out / CHECKPOINT_NAME, metadata=meta)
    digest = files.record_sha256(out / CHECKPOINT_NAME)
    print(f"wrote {out / CHECKPOINT_NAME} ({(out / CHECKPOINT_NAME).stat().st_size} bytes), sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
