"""torchvision's ImageNet networks as backbones, honest about their weights, plus counting tools.

:func:`load_torchvision_backbone` returns a torchvision model with its ImageNet weights, or — when
the course runs offline and the weights are not in torch's cache — either stops with a clear
message (the default) or, if asked, warns and returns random weights with ``model.pretrained =
False``. It never hands out random weights under the name "pretrained".

:class:`CNNBackbone` turns such a model into a feature-map extractor (B, 3, H, W) -> (B, C, H/s, W/s),
the input of :func:`vlp_course.vision.features.roi_features` and ``grid_features``.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor, nn

from vlp_course.course import is_offline

__all__ = ["WeightsUnavailable", "load_torchvision_backbone", "CNNBackbone", "count_flops", "layer_table",
           "IMAGENET_MEAN", "IMAGENET_STD", "image_to_tensor"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailable(RuntimeError):
    """Pretrained weights were requested but cannot be loaded (offline and not cached)."""


def _cached_checkpoint(weights) -> str | None:
    filename = os.path.basename(weights.url)
    path = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
    return path if os.path.exists(path) else None


def load_torchvision_backbone(name: str, pretrained: bool = True, *, on_missing: str = "error") -> nn.Module:
    """A torchvision classification model by name (``"resnet18"``, ``"vgg16"``, ``"alexnet"``, ...).

    Args:
        name: a name known to ``torchvision.models.get_model``.
        pretrained: load the default ImageNet weights (``weights="DEFAULT"``).
        on_missing: what to do when pretrained weights are requested but cannot be had (offline,
            per :func:`vlp_course.course.is_offline`, and not in torch's cache; or the download
            fails): ``"error"`` raises :class:`WeightsUnavailable`; ``"random"`` warns and returns
            randomly initialised weights.

    Returns:
        The model in eval mode, with the attributes ``pretrained`` (True only if ImageNet weights
        were loaded) and ``weights_name``.

    Raises:
        ValueError: on an unknown model name or ``on_missing`` value.
        WeightsUnavailable: see ``on_missing``.
    """
    from torchvision import models

    if on_missing not in ("error", "random"):
        raise ValueError(f"on_missing must be 'error' or 'random', got {on_missing!r}")
    if name not in models.list_models(module=models):
        raise ValueError(f"unknown torchvision classification model {name!r}; e.g. 'resnet18', 'vgg16', 'alexnet'")
    model = models.get_model(name, weights=None)
    model.pretrained, model.weights_name = False, None
    if not pretrained:
        return model.eval()
    weights = models.get_model_weights(name).DEFAULT
    reason = None
    cached = _cached_checkpoint(weights)
    if is_offline() and cached is None:
        reason = (f"the course runs offline (VLP_COURSE_OFFLINE / HF_HUB_OFFLINE) and {weights} is not in "
                  f"torch's cache ({torch.hub.get_dir()}/checkpoints)")
    else:
        try:
            model.load_state_dict(weights.get_state_dict(progress=False, check_hash=False))
        except Exception as err:  # no network, broken file
            reason = f"loading {weights} failed: {type(err).__name__}: {err}"
    if reason is not None:
        if on_missing == "error":
            raise WeightsUnavailable(
                f"pretrained weights for {name!r} are unavailable: {reason}. Run online once to cache them, "
                "or pass on_missing='random' to continue with random weights (model.pretrained will be False)."
            )
        warnings.warn(f"{name}: {reason}; using RANDOM weights (model.pretrained = False)", stacklevel=2)
        return model.eval()
    model.pretrained, model.weights_name = True, str(weights)
    return model.eval()


class CNNBackbone(nn.Module):
    """The convolutional part of a torchvision classifier: images (B, 3, H, W) -> feature map (B, C, h, w).

    Supported: ResNets (everything up to ``layer4``, or up to ``until`` = "layer3" etc.; stride 32
    for layer4), VGG and AlexNet (their ``features``; stride 32). ``out_channels`` and ``stride`` say
    what comes out. ``pretrained`` copies the wrapped model's flag.

    Raises:
        ValueError: on an unsupported model or an input that is not (B, 3, H, W).
    """

    def __init__(self, model: nn.Module, until: str = "layer4"):
        super().__init__()
        self.pretrained = bool(getattr(model, "pretrained", False))
        if hasattr(model, "layer4"):
            names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
            if until not in names[4:]:
                raise ValueError(f"until must be one of {names[4:]}, got {until!r}")
            keep = names[: names.index(until) + 1]
            self.body = nn.Sequential(*[getattr(model, n) for n in keep])
            stage = getattr(model, until)[-1]
            self.out_channels = (stage.conv3 if hasattr(stage, "conv3") else stage.conv2).out_channels
            self.stride = 2 ** (names.index(until) - 2)
        elif hasattr(model, "features") and isinstance(model.features, nn.Sequential):
            self.body = model.features
            self.out_channels = [m for m in model.features if isinstance(m, nn.Conv2d)][-1].out_channels
            self.stride = 32
        else:
            raise ValueError(f"CNNBackbone supports torchvision ResNets, VGGs and AlexNet, not {type(model).__name__}")

    def forward(self, images: Tensor) -> Tensor:
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a (B, 3, H, W) tensor, got {tuple(getattr(images, 'shape', ()))}")
        return self.body(images)  # (B, out_channels, ~H/stride, ~W/stride)


def image_to_tensor(image, size: int | None = 224) -> Tensor:
    """An (H, W, 3) uint8 image (e.g. ``skimage.data.chelsea()``) -> (1, 3, size, size) float tensor
    normalised with the ImageNet mean and std (resized with bilinear interpolation unless size is None).

    Raises:
        ValueError: if the image is not (H, W, 3).
    """
    import numpy as np
    import torch.nn.functional as F

    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image must be an (H, W, 3) RGB array, got shape {arr.shape}")
    x = torch.tensor(arr, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0) / 255.0  # (1, 3, H, W)
    if size is not None:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def count_flops(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> int:
    """Multiply-accumulate operations (MACs) of one forward pass, counted by
    ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no memory, no time).

    FlopCounterMode counts 2 FLOPs per multiply-add of convolutions and matrix products (pooling,
    activations and normalisation are not counted); the MACs returned are half of that. Papers quote
    MACs as "FLOPs" (e.g. ResNet-18: 1.8 G).
    """
    from torch.utils.flop_counter import FlopCounterMode

    import copy

    meta = copy.deepcopy(model).to("meta")
    x = torch.empty(input_shape, device="meta")
    with FlopCounterMode(display=False) as counter:
        meta(x)
    return counter.get_total_flops() // 2


def layer_table(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224), types=(nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)) -> list[dict]:
    """One row per layer of the given types, in forward order: name, type, output shape, parameters.

    Computed with forward hooks on the meta device.
    """
    import copy

    meta = copy.deepcopy(model).to("meta")
    rows, hooks = [], []
    for name, mod in meta.named_modules():
        if isinstance(mod, types):
            def hook(m, inp, out, name=name):
                rows.append({"layer": name, "type": type(m).__name__, "output": tuple(out.shape[1:]),
                             "params": sum(p.numel() for p in m.parameters(recurse=False))})
            hooks.append(mod.register_forward_hook(hook))
    try:
        meta(torch.empty(input_shape, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return rows
