"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), Sec. II-B), in its common modern form.

Layers (input 1 x 32 x 32):

=====  ==========================  ==============
layer  operation                   output
=====  ==========================  ==============
C1     6 convolutions 5 x 5        6 x 28 x 28
S2     2 x 2 subsampling           6 x 14 x 14
C3     16 convolutions 5 x 5       16 x 10 x 10
S4     2 x 2 subsampling           16 x 5 x 5
C5     120 convolutions 5 x 5      120 x 1 x 1
F6     fully connected             84
out    fully connected             10
=====  ==========================  ==============

Where the modern version differs from the paper: S2/S4 were *trainable* subsamplings (the sum of
each 2 x 2 window times a learned coefficient plus a learned bias, then a sigmoid) — here a plain
average pool; C3 connected each of its 16 maps to only a subset of S2's 6 maps (Table I: 60
connections instead of 96, to break symmetry and save parameters) — here every map sees all 6; the
squashing function was a scaled tanh, 1.7159 tanh(2a/3); and the output layer was 10 Euclidean RBF
units with fixed hand-designed targets (7 x 12 bitmaps) — here a linear layer trained with
cross-entropy.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["LeNet5", "conv_output_size", "conv_params", "LENET5_PARAMS"]

# C1 6*(5*5*1+1) + C3 16*(5*5*6+1) + C5 120*(5*5*16+1) + F6 84*(120+1) + out 10*(84+1)
LENET5_PARAMS = 156 + 2_416 + 48_120 + 10_164 + 850  # = 61,706


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Side of a convolution's or pooling's output: floor((n + 2p - d(k - 1) - 1) / s) + 1.

    Raises:
        ValueError: if the kernel does not fit the padded input or a size is not positive.
    """
    if min(size, kernel, stride, dilation) <= 0 or padding < 0:
        raise ValueError(f"sizes must be positive (got size={size}, kernel={kernel}, stride={stride}, padding={padding})")
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span:
        raise ValueError(f"a kernel spanning {span} pixels does not fit an input of {size} + 2*{padding} pixels")
    return (size + 2 * padding - span) // stride + 1


def conv_params(c_in: int, c_out: int, kernel: int, bias: bool = True, groups: int = 1) -> int:
    """Parameters of a k x k Conv2d: c_out * (c_in / groups * k * k + 1 if bias else 0)."""
    if c_in % groups or c_out % groups:
        raise ValueError(f"c_in={c_in} and c_out={c_out} must be multiples of groups={groups}")
    return c_out * (c_in // groups * kernel * kernel) + (c_out if bias else 0)


class LeNet5(nn.Module):
    """LeNet-5, modern form (see the module docstring for the differences from the paper).

    Args:
        num_classes: size of the output layer (10 digits).
        in_channels: image channels (1 for grey digits).
        activation: ``"tanh"`` (the paper's family) or ``"relu"``.

    Input (B, in_channels, 32, 32); output logits (B, num_classes). :meth:`features` returns the
    matrix representation (S4's (B, 16, 5, 5) maps) and :meth:`embed` the vectors F6 reads.

    Raises:
        ValueError: on an input that is not (B, in_channels, 32, 32).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, activation: str = "tanh"):
        super().__init__()
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}")
        act = nn.Tanh if activation == "tanh" else nn.ReLU
        self.in_channels = in_channels
        self.c1 = nn.Conv2d(in_channels, 6, kernel_size=5)  # (B, 6, 28, 28)
        self.s2 = nn.AvgPool2d(2)  # (B, 6, 14, 14)
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)  # (B, 16, 10, 10)
        self.s4 = nn.AvgPool2d(2)  # (B, 16, 5, 5)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)  # (B, 120, 1, 1)
        self.f6 = nn.Linear(120, 84)
        self.out = nn.Linear(84, num_classes)
        self.act = act()

    def _check(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, 32, 32):
            raise ValueError(f"LeNet5 expects images of shape (B, {self.in_channels}, 32, 32), got {tuple(getattr(x, 'shape', ()))}")

    def feature_maps(self, x: Tensor) -> dict[str, Tensor]:
        """Every intermediate map: {"C1": (B,6,28,28), "S2": (B,6,14,14), "C3": (B,16,10,10), "S4": (B,16,5,5)}."""
        self._check(x)
        c1 = self.act(self.c1(x))
        s2 = self.s2(c1)
        c3 = self.act(self.c3(s2))
        s4 = self.s4(c3)
        return {"C1": c1, "S2": s2, "C3": c3, "S4": s4}

    def features(self, x: Tensor) -> Tensor:
        """The image's matrix representation: S4's maps, (B, 16, 5, 5)."""
        return self.feature_maps(x)["S4"]

    def embed(self, x: Tensor) -> Tensor:
        """The image's vector representation, the input of the fully connected F6: (B, 120)."""
        return self.act(self.c5(self.features(x))).flatten(1)  # (B, 120, 1, 1) -> (B, 120)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.f6(self.embed(x)))  # (B, 84)
        return self.out(h)  # (B, num_classes)
