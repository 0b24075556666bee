# %% [markdown]
# # 5 · Deeper nets: AlexNet, VGG and GoogLeNet
#
# Fourteen years after LeNet-5, **AlexNet** (Krizhevsky, Sutskever and Hinton, NeurIPS 2012) won
# ImageNet with the same recipe — convolutions, pooling, fully connected layers — made larger and
# trained on GPUs, with three ideas that stayed: ReLU activations, dropout and data augmentation.
# **VGG** (Simonyan and Zisserman, ICLR 2015) showed that depth built from tiny 3 x 3 convolutions
# works better than large kernels. **GoogLeNet** (Szegedy et al., CVPR 2015) made networks wider
# *and* cheaper with the Inception module and its 1 x 1 reductions.
#
# These networks (and ResNet, next notebook) are the image encoders of the first vision-language
# models. Here we measure their size and cost, and rebuild each idea by hand at a scale a laptop can
# train.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision
from torch import nn

from vlp_course.vision.blocks import InceptionModule, VGGBlock, receptive_field
from vlp_course.vision.classify import accuracy, count_parameters, fit_classifier
from vlp_course.vision.digits import load_digits
from vlp_course.vision.nets import MiniGoogLeNet, MiniVGG, SmallCNN
from vlp_course.vision.pretrained import count_flops, layer_table

CFG = dict(
    image_size=16,           # digits upsampled to 16 x 16 for the small trained nets
    act_steps=300,           # ReLU versus tanh: steps per run (SGD, batch 64)
    act_lr=0.02,
    act_target_error=0.10,   # Krizhevsky et al. used 25% on CIFAR-10; the digits are easier
    mini_steps=200,          # steps for the small VGG and GoogLeNet
    seed=0,
)

# %% [markdown]
# ## The canonical architectures, measured
#
# `torchvision.models` has all three. We build them with `weights=None` on PyTorch's *meta* device
# (shapes only, no memory), count their parameters and the multiply-accumulate operations (MACs)
# of one 224 x 224 image with `torch.utils.flop_counter.FlopCounterMode`.

# %%
with torch.device("meta"):
    nets = {
        "AlexNet": torchvision.models.alexnet(),
        "VGG-16": torchvision.models.vgg16(),
        "GoogLeNet": torchvision.models.googlenet(aux_logits=False, init_weights=False),
        "ResNet-18": torchvision.models.resnet18(),
    }
stats = {name: (count_parameters(m), count_flops(m)) for name, m in nets.items()}
print(f"{'network':<10} {'parameters':>12} {'GMACs @224':>11}")
for name, (p, macs) in stats.items():
    print(f"{name:<10} {p:>12,} {macs / 1e9:>11.2f}")
assert stats["AlexNet"][0] == 61_100_840 and stats["VGG-16"][0] == 138_357_544
assert stats["VGG-16"][0] > 20 * stats["GoogLeNet"][0]  # GoogLeNet: ~12x fewer than AlexNet, far fewer than VGG
assert stats["VGG-16"][1] > 8 * stats["GoogLeNet"][1]

# %% [markdown]
# Where do AlexNet's parameters live? The layer table (forward hooks on the meta model) gives each
# layer's output shape and parameters.

# %%
rows = layer_table(nets["AlexNet"])
for r in rows:
    print(f"{r['layer']:<14} {r['type']:<18} {str(r['output']):<16} {r['params']:>12,}")
fc = sum(r["params"] for r in rows if r["type"] == "Linear")
print(f"fully connected layers: {fc:,} of {stats['AlexNet'][0]:,} parameters ({fc / stats['AlexNet'][0]:.0%})")
assert fc / stats["AlexNet"][0] > 0.9
n_conv = sum(1 for r in rows if r["type"] == "Conv2d")
assert rows[0]["output"] == (64, 55, 55) and n_conv == 5

# %% [markdown]
# The convolutions hold 4% of AlexNet's parameters but most of its computation; the fully connected
# layers the reverse. GoogLeNet and ResNet drop the big fully connected layers for a global average
# pool, which is one reason they are so much smaller.
#
# ## ReLU trains faster than tanh
#
# Krizhevsky et al. (Section 3.1, Fig. 1) report that a 4-layer CNN with ReLUs reached 25% training
# error on CIFAR-10 six times faster than the same network with tanh units. tanh saturates: for large
# inputs its gradient is nearly 0, while ReLU's is 1 for every positive input. We repeat the
# experiment on the digits (8 x 8, to keep it fast) with a 4-layer CNN (`SmallCNN`): the two networks
# start from the same weights (He initialisation, the usual one for ReLU networks), see the same
# batches, and are trained with plain SGD. Speed is measured two ways: the steps until the running
# training error drops below 10% (the digits are easier than CIFAR-10), and the mean training loss
# over the whole run (the area under the loss curve).
#
# Expect a much smaller gap than the paper's factor of six: the network is tiny, the inputs are
# standardised and the run is short, so tanh's units rarely saturate. The first-step count can even
# favour tanh; the area under the loss curve, which weighs the whole run, favours ReLU. Try
# `digits8.X_train * 4` (inputs on a larger scale, as AlexNet's raw pixel values were) to see tanh
# saturate and the gap widen.

# %%
digits8 = load_digits(8, seed=CFG["seed"])
act_runs = {}
for act in ("relu", "tanh"):
    torch.manual_seed(CFG["seed"])
    net = SmallCNN(act, width=16, n_conv=4)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    h = fit_classifier(net, digits8.X_train, digits8.y_train, steps=CFG["act_steps"], lr=CFG["act_lr"],
                       optimizer="sgd", seed=CFG["seed"], progress=True)
    err = 1 - np.array(h.smoothed("acc", 20))
    hit = np.flatnonzero(err < CFG["act_target_error"])
    act_runs[act] = dict(err=err, steps=int(hit[0]) if len(hit) else CFG["act_steps"],
                         area=float(np.mean(h.train["loss"])))
    print(f"{act}: training error below {CFG['act_target_error']:.0%} after {act_runs[act]['steps']} steps; "
          f"mean training loss {act_runs[act]['area']:.3f}")

fig, ax = plt.subplots()
for act, r in act_runs.items():
    ax.plot(r["err"], label=act)
ax.axhline(CFG["act_target_error"], ls=":", color="gray")
ax.set_xlabel("step"), ax.set_ylabel("training error (running mean)"), ax.legend()
plt.show()
ratio = act_runs["relu"]["area"] / act_runs["tanh"]["area"]
print(f"steps to {CFG['act_target_error']:.0%} error: ReLU {act_runs['relu']['steps']}, tanh {act_runs['tanh']['steps']}; "
      f"ReLU's mean training loss is {ratio:.0%} of tanh's")
assert act_runs["relu"]["area"] < act_runs["tanh"]["area"], "ReLU's loss should fall faster over the run"

# %% [markdown]
# ## Dropout
#
# AlexNet's fully connected layers overfit; dropout (Section 4.2) sets each unit to 0 with
# probability p during training, so no unit can rely on a particular other one. PyTorch's "inverted"
# dropout scales the kept units by 1/(1 - p) during training, so that at test time, when nothing is
# dropped, the expected activation is unchanged. Measured:

# %%
drop = nn.Dropout(p=0.5)
x = torch.ones(100_000)
torch.manual_seed(CFG["seed"])
y = drop.train()(x)
print(f"training: {(y == 0).float().mean():.3f} of the units dropped, the others scaled to {y.max():.1f}, mean {y.mean():.3f}")
print(f"evaluation: identity? {torch.equal(drop.eval()(x), x)}")
assert abs((y == 0).float().mean() - 0.5) < 0.01 and y.max() == 2.0 and abs(y.mean() - 1) < 0.02
assert torch.equal(drop.eval()(x), x)

# %% [markdown]
# ## The VGG block: small kernels, stacked
#
# VGG uses only 3 x 3 convolutions. Two stacked 3 x 3 layers see a 5 x 5 window of the input (three
# see 7 x 7), with fewer parameters and one more non-linearity (Section 2.3 of the paper). The
# receptive field of a stack of layers with kernels k_l and strides s_l is
# 1 + sum_l (k_l - 1) x (product of the strides below l). We check it by backpropagating from one
# output unit: the input pixels that receive a gradient are its receptive field.

# %%
def measured_receptive_field(layers, size=21):
    net = nn.Sequential(*layers)
    for m in net:
        nn.init.constant_(m.weight, 1.0)
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    out = net(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    return int((x.grad[0, 0].abs().sum(1) > 0).sum())


two_3x3 = [nn.Conv2d(1, 1, 3, bias=False), nn.Conv2d(1, 1, 3, bias=False)]
three_3x3 = two_3x3 + [nn.Conv2d(1, 1, 3, bias=False)]
one_5x5 = [nn.Conv2d(1, 1, 5, bias=False)]
for name, layers, formula in [("two 3x3", two_3x3, receptive_field([3, 3])), ("one 5x5", one_5x5, receptive_field([5])),
                              ("three 3x3", three_3x3, receptive_field([3, 3, 3]))]:
    m = measured_receptive_field(layers)
    print(f"{name}: receptive field {m} x {m} (formula {formula})")
    assert m == formula
assert receptive_field([3, 3]) == receptive_field([5]) == 5

C = 64
p_two3 = count_parameters(nn.Sequential(nn.Conv2d(C, C, 3), nn.Conv2d(C, C, 3)))
p_one5 = count_parameters(nn.Conv2d(C, C, 5))
print(f"{C} -> {C} channels: two 3x3 layers {p_two3:,} parameters, one 5x5 layer {p_one5:,} ({p_two3 / p_one5:.0%})")
assert p_two3 < 0.75 * p_one5  # 18 C^2 versus 25 C^2 weights

# %%
blk = VGGBlock(3, 64)
print(blk)
print("VGG block on a 3 x 32 x 32 input ->", tuple(blk(torch.randn(1, 3, 32, 32)).shape))
assert count_parameters(blk) == count_parameters(nets["VGG-16"].features[:4])  # VGG-16's first block

# %% [markdown]
# ## The Inception module and its 1 x 1 reductions
#
# An Inception module runs a 1 x 1, a 3 x 3 and a 5 x 5 convolution and a 3 x 3 max pool side by side
# on the same input and concatenates the results along the channels: the next layer chooses which
# scale to use. Done naively this is expensive, and the pooled branch keeps all input channels, so
# the width grows at every module. GoogLeNet puts 1 x 1 convolutions before the 3 x 3 and 5 x 5 ones
# (and after the pool) to shrink the channels first (Section 4, Fig. 2). With the sizes of module
# "3a" (Table 1 of the paper: 192 channels in, 64 / 96→128 / 16→32 / pool→32 out):

# %%
reduced = InceptionModule(192, 64, 96, 128, 16, 32, 32)
naive = InceptionModule(192, 64, 0, 128, 0, 32, 0, reduce=False)
x = torch.randn(1, 192, 28, 28)
print(f"naive:   {count_parameters(naive):>8,} parameters, output {tuple(naive(x).shape[1:])}")
print(f"reduced: {count_parameters(reduced):>8,} parameters, output {tuple(reduced(x).shape[1:])}")
macs_naive, macs_reduced = count_flops(naive, (1, 192, 28, 28)), count_flops(reduced, (1, 192, 28, 28))
print(f"MACs at 28 x 28: naive {macs_naive / 1e6:.0f} M, reduced {macs_reduced / 1e6:.0f} M "
      f"({macs_naive / macs_reduced:.1f}x fewer)")
assert reduced(x).shape[1] == 256 and naive(x).shape[1] == 64 + 128 + 32 + 192
assert count_parameters(naive) > 2 * count_parameters(reduced) and macs_naive > 2 * macs_reduced

# %% [markdown]
# ## Small versions, trained
#
# `MiniVGG` (two VGG blocks) and `MiniGoogLeNet` (a stem and two Inception modules) on the digits at
# 16 x 16, with the same budget.

# %%
digits = load_digits(CFG["image_size"], seed=CFG["seed"])
mini = {}
for name, cls in [("MiniVGG", MiniVGG), ("MiniGoogLeNet", MiniGoogLeNet)]:
    torch.manual_seed(CFG["seed"])
    net = cls()
    fit_classifier(net, digits.X_train, digits.y_train, steps=CFG["mini_steps"], lr=3e-3, seed=CFG["seed"], progress=True)
    mini[name] = (count_parameters(net), accuracy(net, digits.X_test, digits.y_test))
    print(f"{name}: {mini[name][0]:,} parameters, test accuracy {mini[name][1]:.1%}")
    assert mini[name][1] > 0.9

# %% [markdown]
# ## Feature maps of a real photo
#
# What does an image look like inside AlexNet? scikit-image ships a few photos (offline). We pass the
# cat through AlexNet's convolutional part and show some maps after the first and the last
# convolution. This notebook runs offline, where ImageNet weights cannot be loaded, so we ask for
# random weights explicitly (`on_missing="random"`): the title says which. Even random 11 x 11
# filters respond to edges and colour contrasts; trained ones (run this online) respond to oriented
# edges, colour blobs, then textures and object parts.

# %%
import warnings

from skimage.data import chelsea

from vlp_course.vision.pretrained import image_to_tensor, load_torchvision_backbone

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the fallback warning; the flag below says it
    torch.manual_seed(CFG["seed"])
    alex = load_torchvision_backbone("alexnet", on_missing="random")
img = image_to_tensor(chelsea(), 224)  # (1, 3, 224, 224)
with torch.no_grad():
    conv1 = alex.features[:2](img)  # conv + ReLU
    last = alex.features(img)  # after the last pool
print(f"pretrained: {alex.pretrained}; input {tuple(img.shape)} -> conv1 {tuple(conv1.shape)} -> last {tuple(last.shape)}")
assert conv1.shape == (1, 64, 55, 55) and last.shape == (1, 256, 6, 6)

fig, axes = plt.subplots(2, 6, figsize=(9, 3.3))
axes[0, 0].imshow(chelsea())
axes[0, 0].set_title("input", fontsize=8)
for j in range(5):
    axes[0, j + 1].imshow(conv1[0, j], cmap="magma")
    axes[0, j + 1].set_title(f"conv1 map {j}", fontsize=8)
    axes[1, j + 1].imshow(last[0, j], cmap="magma")
    axes[1, j + 1].set_title(f"last map {j}", fontsize=8)
axes[1, 0].imshow(last[0].norm(dim=0), cmap="viridis")
axes[1, 0].set_title("last: norm", fontsize=8)
for ax in axes.flat:
    ax.axis("off")
plt.suptitle(f"AlexNet feature maps (pretrained={alex.pretrained}): 55 x 55, then 6 x 6", fontsize=9)
plt.show()

# %% [markdown]
# ### Feature-map explorer
#
# Pick one of AlexNet's five convolutions (each followed by its ReLU) and a channel. Left: the
# photo; middle: that channel's map, with its colour bar (0 = the ReLU silenced it); right: the map
# stretched back over the photo (which was squashed to 224 x 224 on the way in), to see *where* the
# channel responds. Deeper maps are coarser (55,
# 27, then 13 pixels a side), and each of their pixels sees a larger patch of the photo (its
# receptive field, computed below in exercise 1). All five maps are computed once here; moving a
# slider only draws. With random weights (offline) expect edge- and colour-contrast responses, not
# objects.

# %%
from vlp_course.viz import explore

relu_maps = {}
with torch.no_grad():
    x, n_conv = img, 0
    for layer in alex.features:
        x = layer(x)
        if isinstance(layer, nn.ReLU):
            n_conv += 1
            relu_maps[n_conv] = x[0]  # (C, H, W) after conv n_conv and its ReLU
assert [tuple(m.shape) for m in relu_maps.values()] == [(64, 55, 55), (192, 27, 27), (384, 13, 13), (256, 13, 13), (256, 13, 13)]


def show_feature_map(conv: int = 1, channel: int = 0):
    fmap = relu_maps[conv][channel]  # (H, W)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    axes[0].imshow(chelsea()); axes[0].set_title("input", fontsize=9)
    photo_h, photo_w = chelsea().shape[:2]  # the photo was squashed to 224 x 224: draw the map at its proportions
    im = axes[1].imshow(fmap, cmap="magma", vmin=0, aspect=(photo_h / photo_w) * fmap.shape[1] / fmap.shape[0])
    axes[1].set_title(f"conv{conv}, channel {channel}: {fmap.shape[0]} x {fmap.shape[1]}", fontsize=9)
    fig.colorbar(im, ax=axes[1], label="activation (after ReLU)", shrink=0.85)
    up = torch.nn.functional.interpolate(fmap[None, None], size=(photo_h, photo_w), mode="bilinear")[0, 0]
    axes[2].imshow(chelsea()); axes[2].imshow(up, cmap="magma", alpha=0.6, vmin=0)
    axes[2].set_title("the map over the photo", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"AlexNet (pretrained={alex.pretrained}); {int((fmap > 0).float().mean() * 100)}% of this map is above 0", fontsize=9)
    return fig


explore(show_feature_map, conv=(1, 1, 5), channel=(0, 0, 63));

# %% [markdown]
# ## Exercises
#
# **Exercise 1 — receptive field.** Write `receptive_field(kernels, strides)` for a stack of layers
# (convolutions or poolings) given their kernel sizes and strides, from the input up.

# %%
def my_receptive_field(kernels, strides):
    ### BEGIN SOLUTION
    r, jump = 1, 1
    for k, s in zip(kernels, strides):
        r += (k - 1) * jump
        jump *= s
    return r
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.vision import check_receptive_field

check_receptive_field(my_receptive_field)

# %% [markdown]
# **Exercise 2 — what a reduction saves.** Write `reduced_conv_params(c_in, c_reduce, c_out, k)`:
# the parameters (with biases) of a 1 x 1 convolution from `c_in` to `c_reduce` channels followed
# by a k x k convolution to `c_out` channels.

# %%
def my_reduced_conv_params(c_in, c_reduce, c_out, k):
    ### BEGIN SOLUTION
    return c_reduce * (c_in + 1) + c_out * (c_reduce * k * k + 1)
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.vision import check_reduced_conv_params

check_reduced_conv_params(my_reduced_conv_params)

# %% [markdown]
# ## Open questions
# Answer each in the cell that asks it; an instructor grades them by hand.

# %% [markdown] tags=["manual", "points=2"]
# **Question 1.** AlexNet's first layer uses 11 x 11 filters with stride 4. What receptive field and
# what parameter count would a VGG-style stack of 3 x 3 layers need to match it?
#
# ### BEGIN SOLUTION
# *Rubric.* Stride-1 3 x 3 layers reach 2n + 1 pixels after n layers, so 5 layers cover 11 x 11
# (matching stride 4 needs strided layers or pooling). With C channels in and out, 5 layers cost 45
# C^2 weights against 121 C^2 for one 11 x 11 layer, with 4 more non-linearities. For AlexNet's
# actual first layer (3 -> 96, 34,848 weights) a 96-wide stack costs more (about 334 k), because its
# inner layers read 96 channels, not 3.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 2.** A 1 x 1 convolution is a fully connected layer applied at every pixel. Why does
# that make it a good place to reduce the number of channels?
#
# ### BEGIN SOLUTION
# *Rubric.* A 1 x 1 convolution mixes channels at each pixel with only C_in x C_out weights and no
# spatial extent, so placed before a 3 x 3 or 5 x 5 convolution it cuts that layer's input channels
# and its cost, keeping a learned mix of the channels (GoogLeNet's reduction layers, Szegedy et al.
# 2015, section 4).
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 3.** For a vision-language model, which of these networks' outputs would you use as
# image features: the last feature map, or the vector before the classifier? What does each keep?
#
# ### BEGIN SOLUTION
# *Rubric.* The last feature map is a grid of local descriptors: it keeps where things are, so words
# can attend to places. The vector before the classifier is one global summary, compact but without
# layout and shaped by the training classes. VL models want the first (a grid or region features).
# ### END SOLUTION
