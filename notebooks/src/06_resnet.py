# %% [markdown]
# # 6 · ResNet and the degradation problem
#
# AlexNet had 8 weight layers, VGG 19, GoogLeNet 22. Stacking more layers should never hurt, at
# least on the training set: a deeper network could copy a shallower one and set its extra layers to
# the identity. Yet He, Zhang, Ren and Sun (*Deep residual learning for image recognition*, CVPR
# 2016, Section 1 and Fig. 1) found that a 56-layer plain network had a *higher training error* than
# a 20-layer one on CIFAR-10. This is not overfitting (the training error itself is worse): the
# optimiser fails to find the solution that exists. They called it the **degradation problem**.
#
# Their fix: let each block learn a *residual* F(x) and output F(x) + x. Copying the input then only
# needs F = 0, which is easy to reach. In this notebook we reproduce the problem on the digits, write
# the residual block by hand, and use torchvision's ResNet-18 as an image feature extractor.

# %%
import warnings

import matplotlib.pyplot as plt
import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from vlp_course.vision.blocks import PlainBlock, ResidualBlock
from vlp_course.vision.classify import accuracy, count_parameters, fit_classifier
from vlp_course.vision.digits import load_digits
from vlp_course.vision.nets import DepthNet, resnet18

CFG = dict(
    image_size=8,                # the digits at their native 8 x 8 resolution, to afford deep nets
    blocks_per_stage=(1, 4),     # 2 stages -> 6 and 18 weight layers
    steps=300,                   # the same budget for every network (batch 64)
    batch_size=64,
    optimizer="sgd",             # as in the paper: SGD with momentum 0.9
    lr=0.05,
    seed=0,
)

# %% [markdown]
# ## The residual block, by hand
#
# The basic block of ResNet-18/34 (Section 3.3, Fig. 2 of the paper) is
#
# y = ReLU( BN(conv3x3( ReLU(BN(conv3x3(x))) )) + shortcut(x) ).
#
# When the block keeps the shape, the shortcut is the identity. When it halves the resolution
# (stride 2) and doubles the channels, x no longer has F(x)'s shape, and the shortcut becomes a
# **projection** W_s x: a 1 x 1 convolution with stride 2 followed by batch normalisation (option B
# of the paper). The code is `ResidualBlock` in `vlp_course/vision/blocks.py`.

# %%
x = torch.randn(2, 16, 8, 8)
same = ResidualBlock(16, 16)
down = ResidualBlock(16, 32, stride=2)
print("identity shortcut:  ", tuple(x.shape), "->", tuple(same(x).shape), "shortcut:", same.shortcut)
print("projection shortcut:", tuple(x.shape), "->", tuple(down(x).shape), "shortcut:", down.shortcut)
assert same(x).shape == x.shape and down(x).shape == (2, 32, 4, 4)

# The projection's cost: a 1 x 1 conv (16 * 32 weights, no bias) and a batch norm (2 * 32)
extra = count_parameters(down) - count_parameters(PlainBlock(16, 32, stride=2))
print(f"the projection shortcut adds {extra} parameters; the identity adds none")
assert extra == 16 * 32 + 2 * 32 and count_parameters(same) == count_parameters(PlainBlock(16, 16))

# %% [markdown]
# Our block should be exactly torchvision's `BasicBlock`: same parameters and, with the same
# weights, the same output.

# %%
for c_in, c_out, stride in [(64, 64, 1), (64, 128, 2)]:
    ours = ResidualBlock(c_in, c_out, stride)
    downsample = None if (stride == 1 and c_in == c_out) else nn.Sequential(
        nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
    ref = tv_resnet.BasicBlock(c_in, c_out, stride, downsample=downsample)
    ref.load_state_dict(dict(zip(ref.state_dict().keys(), ours.state_dict().values())))
    ours.eval(), ref.eval()
    xx = torch.randn(1, c_in, 8, 8)
    diff = (ours(xx) - ref(xx)).abs().max().item()
    print(f"{c_in}->{c_out}, stride {stride}: {count_parameters(ours):,} parameters "
          f"(torchvision {count_parameters(ref):,}), max output difference {diff:.1e}")
    assert count_parameters(ours) == count_parameters(ref) and diff < 1e-5

# %% [markdown]
# ## The degradation problem on the digits
#
# `DepthNet` (in `vlp_course/vision/nets.py`) follows the paper's CIFAR-10 networks (Section 4.2):
# a 3 x 3 stem, two stages of blocks (16 channels at 8 x 8, then 32 at 4 x 4), global average
# pooling and a linear classifier. The plain and the residual versions have the same layers; the
# residual one adds the shortcuts (and one projection between the stages). Every network gets the
# same data, the same optimiser and the same number of steps. We compare **training** losses.

# %%
digits = load_digits(CFG["image_size"], seed=CFG["seed"])
results = {}
for bps in CFG["blocks_per_stage"]:
    for residual in (False, True):
        torch.manual_seed(CFG["seed"])
        net = DepthNet(bps, residual=residual)
        hist = fit_classifier(
            net, digits.X_train, digits.y_train, steps=CFG["steps"], batch_size=CFG["batch_size"],
            lr=CFG["lr"], optimizer=CFG["optimizer"], seed=CFG["seed"], progress=True,
        )
        name = f"{'residual' if residual else 'plain'}-{net.depth}"
        final = sum(hist.train["loss"][-50:]) / 50  # mean training loss of the last 50 steps
        results[name] = dict(hist=hist, final=final, test=accuracy(net, digits.X_test, digits.y_test),
                             params=count_parameters(net), depth=net.depth, residual=residual)
        print(f"{name:>12}: {results[name]['params']:>7,} parameters, final training loss {final:.3f}, "
              f"test accuracy {results[name]['test']:.1%}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
for name, r in results.items():
    ax = axes[int(r["residual"])]
    ax.plot(r["hist"].steps, r["hist"].smoothed("loss", 25), label=name, lw=2 if r["depth"] > 10 else 1)
for ax, title in zip(axes, ("plain networks", "residual networks")):
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend()
axes[0].set_ylabel("training loss (running mean)")
plt.show()

# %%
shallow, deep = (2 * b * 2 + 2 for b in CFG["blocks_per_stage"])
plain_s, plain_d = results[f"plain-{shallow}"]["final"], results[f"plain-{deep}"]["final"]
res_s, res_d = results[f"residual-{shallow}"]["final"], results[f"residual-{deep}"]["final"]
print(f"plain:    {shallow} layers {plain_s:.3f} -> {deep} layers {plain_d:.3f}")
print(f"residual: {shallow} layers {res_s:.3f} -> {deep} layers {res_d:.3f}")
assert plain_d > 2 * plain_s, "the deep plain network should train worse than the shallow one (degradation)"
assert plain_d > 2 * res_d, "the deep residual network should train better than the deep plain one"

# %% [markdown]
# The deep plain network has *more* capacity than the shallow one and still ends with a higher
# training loss; with shortcuts, the same depth trains at least as well as the shallow network.
#
# Why? Batch normalisation keeps the *forward* signal well scaled, so the gradients do not simply
# vanish (He et al. checked this, Section 4.1). But they are badly balanced: measured at
# initialisation, the gradient that reaches the first layer of the deep plain network is much
# larger than the one at its last layer, and this grows with depth (a known effect of stacking
# batch-normalised layers; see Balduzzi et al. 2017, *The shattered gradients problem*). The
# shortcuts keep a direct, nearly linear path from the loss to every layer.

# %%
def gradient_balance(net, n=128):
    """|grad| at the first layer / |grad| at the classifier, at initialisation."""
    net.train()
    net.zero_grad()
    nn.functional.cross_entropy(net(digits.X_train[:n]), digits.y_train[:n]).backward()
    return net.stem[0].weight.grad.norm().item() / net.head.weight.grad.norm().item()


balance = {}
for bps in CFG["blocks_per_stage"]:
    for residual in (False, True):
        torch.manual_seed(CFG["seed"])
        net = DepthNet(bps, residual=residual)
        balance[(net.depth, residual)] = gradient_balance(net)
        print(f"{'residual' if residual else 'plain':>8}-{net.depth}: first-layer / last-layer gradient norm "
              f"{balance[(net.depth, residual)]:.2f}")
assert balance[(deep, False)] > 2 * balance[(shallow, False)]
assert balance[(deep, False)] > 2 * balance[(deep, True)]

# %% [markdown]
# ## ResNet-18 as an image feature extractor
#
# ResNet-18 stacks the same basic blocks (2 per stage, 64/128/256/512 channels) after a 7 x 7
# stride-2 stem and a max pool. Our hand-built version has exactly torchvision's parameter count.

# %%
import torchvision

ours, tv = resnet18(), torchvision.models.resnet18(weights=None)
print(f"hand-built ResNet-18: {count_parameters(ours):,} parameters; torchvision: {count_parameters(tv):,}")
assert count_parameters(ours) == count_parameters(tv) == 11_689_512
for stage in ("layer1", "layer2", "layer3", "layer4"):
    assert count_parameters(getattr(ours, stage)) == count_parameters(getattr(tv, stage))

# %% [markdown]
# Vision-language models of the grid-feature kind (Pixel-BERT, for instance) take the last feature
# map of such a network, one 512-d vector per cell. `load_torchvision_backbone` loads the ImageNet
# weights when they can be had; this notebook runs offline, so it refuses with a clear message,
# unless we ask for random weights explicitly — then it warns and says so in `model.pretrained`.

# %%
from skimage.data import chelsea

from vlp_course.vision.features import grid_features
from vlp_course.vision.pretrained import CNNBackbone, WeightsUnavailable, image_to_tensor, load_torchvision_backbone

try:
    backbone_model = load_torchvision_backbone("resnet18")
except WeightsUnavailable as err:
    print("WeightsUnavailable:", str(err)[:160], "...")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backbone_model = load_torchvision_backbone("resnet18", on_missing="random")
    print("warning:", str(caught[0].message)[:120])
backbone = CNNBackbone(backbone_model)
print("pretrained weights:", backbone.pretrained)
assert backbone.pretrained == (backbone_model.weights_name is not None)  # never random weights called pretrained

cat = image_to_tensor(chelsea(), 224)  # (1, 3, 224, 224)
with torch.no_grad():
    fmap = backbone(cat)
tokens = grid_features(fmap)
print("image", tuple(cat.shape), "-> feature map", tuple(fmap.shape), "-> grid tokens", tuple(tokens.shape))
assert fmap.shape == (1, 512, 7, 7) and tokens.shape == (1, 49, 512)

fig, axes = plt.subplots(1, 2, figsize=(7, 3))
axes[0].imshow(chelsea())
axes[0].set_title("input (skimage's chelsea)", fontsize=9)
axes[1].imshow(fmap[0].norm(dim=0), cmap="viridis")
axes[1].set_title(f"7 x 7 feature map (norm per cell)\npretrained={backbone.pretrained}", fontsize=9)
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Exercises
#
# **Exercise 1 — the residual block's forward pass.** Given a `ResidualBlock` (attributes `conv1`,
# `bn1`, `conv2`, `bn2`, `relu`, `shortcut`), compute its output from its parts.

# %%
def my_residual_forward(block, x):
    ### BEGIN SOLUTION
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.bn2(block.conv2(out))
    return block.relu(out + block.shortcut(x))
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.vision import check_residual_forward

check_residual_forward(my_residual_forward)

# %% [markdown]
# **Exercise 2 — the price of a shortcut.** Write `shortcut_params(c_in, c_out, stride)`: the number
# of parameters of a basic block's shortcut (identity, or a 1 x 1 convolution without bias followed
# by batch normalisation, whose learned parameters are a scale and a shift per channel).

# %%
def my_shortcut_params(c_in, c_out, stride):
    ### BEGIN SOLUTION
    if stride == 1 and c_in == c_out:
        return 0
    return c_in * c_out + 2 * c_out
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.vision import check_shortcut_params

check_shortcut_params(my_shortcut_params)

# %% [markdown]
# ## Open questions
# Answer each in the cell that asks it; an instructor grades them by hand.

# %% [markdown] tags=["manual", "points=2"]
# **Question 1.** The paper's option A pads the shortcut with zero channels instead of projecting
# it. What does it cost, and what does the extra half of the channels then learn?
#
# ### BEGIN SOLUTION
# *Rubric.* Option A (He et al. 2016, section 3.3) is parameter-free: the identity is subsampled and
# padded with zero channels. Cost: the padded channels have no shortcut, so they get no residual
# learning and learn only from the residual branch, like a plain layer; the paper found A slightly
# worse than the projection (option B) for this reason.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=2"]
# **Question 2.** Remove the batch normalisation from both networks. Does the plain network degrade
# earlier or later in depth? What about the residual one?
#
# ### BEGIN SOLUTION
# *Rubric.* The answer reports the measured losses at each depth. Without batch normalisation a
# plain network is harder to optimise, so it is expected to degrade at a smaller depth or fail to
# train; the residual network suffers less because the identity path carries the signal and
# gradient, though it may still need care at depth.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 3.** A vision-language model fed with the 7 x 7 grid above sees 49 "visual words". What
# is lost compared with region (RoI) features of detected objects, and what is gained?
#
# ### BEGIN SOLUTION
# *Rubric.* Lost: object boundaries and labels; an object is split over cells or shares one with
# others, and cells do not match words. Gained: no detector (nothing missed, no fixed class list,
# trainable end to end, cheaper), background and context are covered, and the grid position gives
# coarse geometry.
# ### END SOLUTION
