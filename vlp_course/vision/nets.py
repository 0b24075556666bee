"""Whole networks built from :mod:`vlp_course.vision.blocks`, sized for the digits on a CPU.

* :class:`DepthNet` — a plain or residual network of a chosen depth (He et al. 2016, Sec. 4.1, the
  CIFAR-10 experiments: a 3 x 3 stem, then stages of basic blocks, global average pooling, a linear
  classifier). The plain and residual versions have the same layers and parameters except the
  projection shortcuts.
* :func:`resnet18` — ResNet-18 built from :class:`~vlp_course.vision.blocks.ResidualBlock`, with the
  layout of torchvision's ``resnet18`` (same parameter count).
* :class:`SmallCNN` — a small convolutional classifier with a chosen activation (for the ReLU versus
  tanh experiment of Krizhevsky et al. 2012, Sec. 3.1, Fig. 1), :class:`MiniVGG`, :class:`MiniGoogLeNet`.
"""

from __future__ import annotations

from torch import Tensor, nn

from vlp_course.vision.blocks import InceptionModule, ResidualBlock, VGGBlock, check_image_batch

__all__ = ["DepthNet", "ResNet18", "resnet18", "SmallCNN", "MiniVGG", "MiniGoogLeNet"]


class DepthNet(nn.Module):
    """A plain or residual convolutional network with ``2 * blocks_per_stage * len(widths) + 2`` weight layers.

    Stem: 3 x 3 conv to ``widths[0]`` channels, BN, ReLU. Stage i: ``blocks_per_stage`` basic blocks of
    ``widths[i]`` channels, the first of stages i > 0 with stride 2. Head: global average pool, linear.

    Input (B, in_channels, H, W); output logits (B, num_classes).

    Raises:
        ValueError: on an input without ``in_channels`` channels.
    """

    def __init__(self, blocks_per_stage: int, residual: bool, widths: tuple[int, ...] = (16, 32),
                 in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.in_channels = in_channels
        self.depth = 2 * blocks_per_stage * len(widths) + 2
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks_per_stage):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(ResidualBlock(c, w, stride, residual=residual))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, self.in_channels)
        h = self.blocks(self.stem(x))  # (B, C, H', W')
        return self.head(h.mean(dim=(2, 3)))  # global average pool (B, C) -> (B, num_classes)


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016, Table 1) from hand-written :class:`ResidualBlock` s.

    7 x 7/2 stem conv, BN, ReLU, 3 x 3/2 max pool; four stages of two basic blocks with 64, 128, 256,
    512 channels (stride 2 at the start of stages 2-4, projection shortcuts there); global average
    pool; linear layer. Input (B, 3, H, W); :meth:`feature_map` gives (B, 512, H/32, W/32).
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)  # (B, 64, H/2, W/2)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)  # (B, 64, H/4, W/4)
        self.layer1 = nn.Sequential(ResidualBlock(64, 64), ResidualBlock(64, 64))  # (B, 64, H/4, W/4)
        self.layer2 = nn.Sequential(ResidualBlock(64, 128, 2), ResidualBlock(128, 128))  # (B, 128, H/8, W/8)
        self.layer3 = nn.Sequential(ResidualBlock(128, 256, 2), ResidualBlock(256, 256))  # (B, 256, H/16, W/16)
        self.layer4 = nn.Sequential(ResidualBlock(256, 512, 2), ResidualBlock(512, 512))  # (B, 512, H/32, W/32)
        self.fc = nn.Linear(512, num_classes)

    def feature_map(self, x: Tensor) -> Tensor:
        check_image_batch(x, 3, "images")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.feature_map(x).mean(dim=(2, 3)))  # (B, 512) -> (B, num_classes)


def resnet18(num_classes: int = 1000) -> ResNet18:
    """A hand-built ResNet-18 with torchvision's layout (11,689,512 parameters for 1000 classes)."""
    return ResNet18(num_classes)


_ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh}


class SmallCNN(nn.Module):
    """A small CNN: ``n_conv`` 3 x 3 conv + activation layers (pooling after every second), then a linear head.

    Input (B, in_channels, H, W); output (B, num_classes). ``dropout`` is applied before the head.
    """

    def __init__(self, activation: str = "relu", width: int = 16, n_conv: int = 4, in_channels: int = 1,
                 num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        if activation not in _ACTS:
            raise ValueError(f"activation must be one of {sorted(_ACTS)}, got {activation!r}")
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        c = in_channels
        for i in range(n_conv):
            layers += [nn.Conv2d(c, width, 3, padding=1), _ACTS[activation]()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            c = width
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(width * 4, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, self.in_channels)
        h = self.pool(self.features(x)).flatten(1)  # (B, width, 2, 2) -> (B, 4 * width)
        return self.head(self.dropout(h))


class MiniVGG(nn.Module):
    """Two :class:`VGGBlock` s (16 and 32 channels) and a classifier: VGG's idea at digit scale.

    Input (B, 1, 32, 32) -> (B, 32, 8, 8) -> logits (B, num_classes).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        self.features = nn.Sequential(VGGBlock(in_channels, 16), VGGBlock(16, 32))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(32, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x).mean(dim=(2, 3))  # (B, 32, H/4, W/4) -> (B, 32)
        return self.classifier(h)


class MiniGoogLeNet(nn.Module):
    """A 3 x 3 stem, a max pool and two :class:`InceptionModule` s: GoogLeNet's idea at digit scale.

    Input (B, 1, 32, 32) -> (B, 16, 16, 16) -> (B, 32, 16, 16) -> (B, 48, 8, 8) -> logits (B, num_classes).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.inc1 = InceptionModule(16, 8, 8, 12, 4, 6, 6)  # 8 + 12 + 6 + 6 = 32 channels
        self.pool = nn.MaxPool2d(2)
        self.inc2 = InceptionModule(32, 12, 12, 20, 4, 8, 8)  # 12 + 20 + 8 + 8 = 48 channels
        self.head = nn.Linear(48, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inc2(self.pool(self.inc1(self.stem(x))))  # (B, 48, H/4, W/4)
        return self.head(h.mean(dim=(2, 3)))  # (B, 48) -> (B, num_classes)
