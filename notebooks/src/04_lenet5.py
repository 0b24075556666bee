# %% [markdown]
# # 4 · LeNet-5: an image as a matrix, then as a vector
#
# Part 2 of the course is about how a network represents an image. A vision-language model needs
# image features it can put next to word embeddings, and every feature extractor in this part is a
# descendant of one network: **LeNet-5** (LeCun, Bottou, Bengio and Haffner, *Gradient-based
# learning applied to document recognition*, Proc. IEEE 1998, Section II-B).
#
# LeNet-5 shows the two representations we will meet again and again:
# * the **matrix representation**: stacks of feature maps, one 2-D map per learned filter, which
#   keep the image's layout (where things are);
# * the **vector representation**: the maps flattened into one vector that fully connected layers
#   read, which keeps *what* is there but no longer says where.
#
# In this notebook we build LeNet-5, count its parameters by hand, train it on real handwritten
# digits, and look at both representations.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from vlp_course.vision.classify import accuracy, count_parameters, fit_classifier, predict, random_shift
from vlp_course.vision.digits import load_digits
from vlp_course.vision.lenet import LENET5_PARAMS, LeNet5, conv_output_size

CFG = dict(
    image_size=32,      # LeNet-5's input field, 32 x 32
    steps=600,          # optimisation steps (batch 64); ~6 s on a laptop CPU
    max_shift=1,        # data augmentation: random shifts of up to 1 pixel
    batch_size=64,
    lr=2e-3,
    activation="tanh",  # the paper used a scaled tanh
    seed=0,
)

# %% [markdown]
# ## The data: scikit-learn's handwritten digits
#
# MNIST is not shipped with any installed package, but scikit-learn ships 1,797 real handwritten
# digits (8 x 8 pixels, grey levels 0-16, written by 43 people). We upsample them to LeNet's 32 x 32
# input and split them 80 / 20, stratified by digit, with a fixed seed.

# %%
digits = load_digits(CFG["image_size"], seed=CFG["seed"])
print("train", tuple(digits.X_train.shape), "test", tuple(digits.X_test.shape))
assert digits.X_train.shape[1:] == (1, 32, 32) and len(digits.X_test) == 360

fig, axes = plt.subplots(2, 10, figsize=(9, 2.2))
for i, ax in enumerate(axes.flat):
    idx = int((digits.y_train == i % 10).nonzero()[i // 10])
    ax.imshow(digits.to_pixels(digits.X_train[idx, 0]), cmap="gray_r")
    ax.set_title(int(digits.y_train[idx]), fontsize=8)
    ax.axis("off")
plt.suptitle("training digits, upsampled from 8 x 8 to 32 x 32", fontsize=9)
plt.show()

# %% [markdown]
# ## The architecture
#
# | layer | what it does | output |
# |---|---|---|
# | C1 | 6 convolutions 5 x 5 | 6 @ 28 x 28 |
# | S2 | 2 x 2 subsampling | 6 @ 14 x 14 |
# | C3 | 16 convolutions 5 x 5 | 16 @ 10 x 10 |
# | S4 | 2 x 2 subsampling | 16 @ 5 x 5 |
# | C5 | 120 convolutions 5 x 5 (a 1 x 1 output: effectively fully connected) | 120 |
# | F6 | fully connected | 84 |
# | output | one unit per digit | 10 |
#
# The code is in `vlp_course/vision/lenet.py`. A convolution with a k x k kernel, stride s and
# padding p turns an n x n map into a map of side floor((n + 2p - k) / s) + 1. Let us check the
# table against the shapes the model really produces.

# %%
torch.manual_seed(CFG["seed"])
model = LeNet5(activation=CFG["activation"])
maps = model.feature_maps(digits.X_train[:1])
for name, t in maps.items():
    print(f"{name}: {tuple(t.shape[1:])}")
print("C5/vector:", tuple(model.embed(digits.X_train[:1]).shape[1:]), " output:", tuple(model(digits.X_train[:1]).shape[1:]))

side = 32
for k, s in [(5, 1), (2, 2), (5, 1), (2, 2), (5, 1)]:  # C1, S2, C3, S4, C5
    side = conv_output_size(side, k, s)
    print(f"kernel {k}, stride {s} -> side {side}")
assert side == 1 and tuple(maps["C3"].shape[1:]) == (16, 10, 10) and tuple(maps["S4"].shape[1:]) == (16, 5, 5)

# %% [markdown]
# ### Counting the parameters by hand
#
# A convolution from c_in to c_out maps with a k x k kernel has c_out x (c_in x k x k + 1)
# parameters (one kernel per input map, plus a bias, for every output map). A fully connected layer
# from n to m units has m x (n + 1).

# %%
by_hand = {
    "C1": 6 * (1 * 5 * 5 + 1),
    "C3": 16 * (6 * 5 * 5 + 1),
    "C5": 120 * (16 * 5 * 5 + 1),
    "F6": 84 * (120 + 1),
    "output": 10 * (84 + 1),
}
measured = {"C1": model.c1, "C3": model.c3, "C5": model.c5, "F6": model.f6, "output": model.out}
for name, n in by_hand.items():
    print(f"{name:>6}: {n:>6,} by hand, {count_parameters(measured[name]):>6,} in PyTorch")
    assert n == count_parameters(measured[name])
total = sum(by_hand.values())
print(f"total: {total:,}")
assert total == count_parameters(model) == LENET5_PARAMS == 61_706
print(f"C5 holds {by_hand['C5'] / total:.0%} of the parameters: the step from maps to a vector is the expensive one")
assert by_hand["C5"] / total > 0.75

# %% [markdown]
# ### Where this modern LeNet-5 differs from the 1998 paper
#
# * **Subsampling was trainable.** S2 and S4 added up each 2 x 2 window, multiplied the sum by a
#   learned coefficient, added a learned bias and applied a sigmoid (2 parameters per map). We use a
#   plain average pool (no parameters); later networks use max pooling.
# * **C3 was not fully connected to S2.** Table I of the paper connects each of C3's 16 maps to only
#   3, 4 or 6 of S2's 6 maps (60 connections instead of 96), to save computation and to force the
#   maps to learn different things. The paper gives C3 1,516 parameters; computed below.
# * **The squashing function** was a scaled tanh, 1.7159 tanh(2a/3).
# * **The output layer** was 10 Euclidean radial basis function units, each comparing F6's 84
#   values with a fixed, hand-drawn 7 x 12 bitmap of its character; we use a linear layer trained
#   with cross-entropy, as everyone does now.

# %%
c3_connections = 6 * 3 + 9 * 4 + 1 * 6  # Table I: six maps see 3 inputs, nine see 4, one sees all 6
c3_paper = c3_connections * 5 * 5 + 16  # one 5 x 5 kernel per connection, one bias per map
s2_paper, s4_paper = 6 * 2, 16 * 2  # a coefficient and a bias per map
print(f"C3 connections: {c3_connections} (full: 96); parameters: paper {c3_paper:,}, ours {by_hand['C3']:,}")
assert c3_connections == 60 and c3_paper == 1_516
paper_total = total - by_hand["C3"] + c3_paper + s2_paper + s4_paper - by_hand["output"]
print(f"without the output layer, the 1998 network has {paper_total:,} trainable parameters; "
      f"its RBF output layer has none (fixed bitmaps)")

# %% [markdown]
# ## Training
#
# We train with the course's training loop (`fit_classifier` wraps `vlp_course.training.train`):
# AdamW, mini-batches of 64, cross-entropy, a cosine learning-rate decay, a fixed number of steps.
# With only 1,437 training digits the network soon knows them by heart; shifting each batch by a
# random pixel (LeCun et al. enlarged their training set with distorted digits too, Section III)
# makes it learn shapes rather than positions.

# %%
torch.manual_seed(CFG["seed"])
model = LeNet5(activation=CFG["activation"])
acc_before = accuracy(model, digits.X_test, digits.y_test)
hist = fit_classifier(
    model, digits.X_train, digits.y_train, steps=CFG["steps"], batch_size=CFG["batch_size"],
    lr=CFG["lr"], seed=CFG["seed"], decay="cosine", augment=random_shift(CFG["max_shift"]), progress=True,
)
acc = accuracy(model, digits.X_test, digits.y_test)
train_acc = accuracy(model, digits.X_train, digits.y_train)
print(f"test accuracy: {acc:.1%} (before training {acc_before:.1%}); training accuracy {train_acc:.1%}")
hist.plot(["loss"], title="LeNet-5 on the digits")
plt.show()
assert acc >= 0.97, f"LeNet-5 should reach 97% test accuracy, got {acc:.1%}"

# %%
pred = predict(model, digits.X_test).argmax(-1)
wrong = (pred != digits.y_test).nonzero().flatten()
print(f"{len(wrong)} of {len(pred)} test digits misread")
if len(wrong):
    fig, axes = plt.subplots(1, min(8, len(wrong)), figsize=(8, 1.6), squeeze=False)
    for ax, i in zip(axes[0], wrong[:8]):
        ax.imshow(digits.to_pixels(digits.X_test[i, 0]), cmap="gray_r")
        ax.set_title(f"{int(digits.y_test[i])}→{int(pred[i])}", fontsize=8)
        ax.axis("off")
    plt.suptitle("misread test digits (true → predicted)", fontsize=9)
    plt.show()

# %% [markdown]
# ## The matrix representation: feature maps
#
# After training, each of C1's 6 filters responds to a different local pattern (strokes of a
# given orientation, edges); C3 combines them into 16 maps of larger patterns. The maps keep the
# image's geometry: a stroke at the top of the digit lights up the top of the map.

# %%
x = digits.X_test[:1]
with torch.no_grad():
    maps = model.feature_maps(x)
fig, axes = plt.subplots(3, 8, figsize=(9, 3.6))
for ax in axes.flat:
    ax.axis("off")
axes[0, 0].imshow(digits.to_pixels(x[0, 0]), cmap="gray_r")
axes[0, 0].set_title(f"input ({int(digits.y_test[0])})", fontsize=8)
for j in range(6):
    axes[0, j + 1].imshow(maps["C1"][0, j], cmap="RdBu_r")
    axes[0, j + 1].set_title(f"C1 map {j}", fontsize=8)
for j in range(16):
    ax = axes[1 + j // 8, j % 8]
    ax.imshow(maps["C3"][0, j], cmap="RdBu_r")
    ax.set_title(f"C3 map {j}", fontsize=8)
plt.suptitle("feature maps of one test digit: 6 @ 28 x 28, then 16 @ 10 x 10", fontsize=9)
plt.tight_layout()
plt.show()
print("matrix representation (S4):", tuple(maps["S4"].shape[1:]), "=", maps["S4"][0].numel(), "numbers")

# %% [markdown]
# ## The vector representation
#
# C5 reads all of S4's 16 x 5 x 5 = 400 values and returns 120 numbers: the vector the fully
# connected layers see. Is that a better representation of a digit than its raw pixels? We project
# both onto their two main directions (PCA) and measure how well the digits separate there with the
# silhouette score (from -1 to 1; higher means points sit closer to their own digit than to others).

# %%
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

with torch.no_grad():
    vectors = model.embed(digits.X_test).numpy()  # (360, 120)
pixels = digits.X_test.flatten(1).numpy()  # (360, 1024)
labels = digits.y_test.numpy()
proj_vec = PCA(2, random_state=0).fit_transform(vectors)
proj_pix = PCA(2, random_state=0).fit_transform(pixels)
sil_vec, sil_pix = silhouette_score(proj_vec, labels), silhouette_score(proj_pix, labels)

fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, proj, title, sil in [(axes[0], proj_pix, "raw pixels (1,024 values)", sil_pix),
                             (axes[1], proj_vec, "LeNet-5 vector (120 values)", sil_vec)]:
    sc = ax.scatter(proj[:, 0], proj[:, 1], c=labels, cmap="tab10", s=9)
    for d in range(10):
        cx, cy = np.median(proj[labels == d], axis=0)
        ax.text(cx, cy, str(d), fontsize=12, weight="bold")
    ax.set_title(f"{title}\nsilhouette {sil:.2f}", fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_xlabel("principal component 1", fontsize=8), ax.set_ylabel("principal component 2", fontsize=8)
plt.suptitle("2-D PCA of the test digits, coloured by digit", fontsize=9)
plt.show()
print(f"silhouette in 2-D: pixels {sil_pix:.2f}, LeNet vectors {sil_vec:.2f}")
assert sil_vec > sil_pix + 0.1, "the learned vectors should separate the digits better than raw pixels"

# %% [markdown]
# ## Exercises
#
# **Exercise 1 — the output-size formula.** Write `conv_output_size(size, kernel, stride, padding)`:
# the side of the output of a convolution (or a pooling) applied to a `size` x `size` map.

# %%
def my_conv_output_size(size, kernel, stride=1, padding=0):
    ### BEGIN SOLUTION
    return (size + 2 * padding - kernel) // stride + 1
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.vision import check_conv_output_size

check_conv_output_size(my_conv_output_size)
### BEGIN HIDDEN TESTS
assert my_conv_output_size(32, 5) == 28 and my_conv_output_size(10, 2, 2) == 5
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2 — a convolution's parameters.** Write `conv_params(c_in, c_out, kernel)`: the number
# of parameters of `torch.nn.Conv2d(c_in, c_out, kernel)` (with its bias).

# %%
def my_conv_params(c_in, c_out, kernel):
    ### BEGIN SOLUTION
    return c_out * (c_in * kernel * kernel + 1)
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.vision import check_conv_params

check_conv_params(my_conv_params)

# %% [markdown]
# ## Open questions
# Answer each in the cell that asks it; an instructor grades them by hand.

# %% [markdown] tags=["manual", "points=2"]
# **Question 1.** C5 is called a convolution but behaves as a fully connected layer here. What would
# change if the input were 36 x 36 instead of 32 x 32? Which representation would C5 then produce?
#
# ### BEGIN SOLUTION
# *Rubric.* With 36 x 36 input, C1 gives 32, S2 16, C3 12, S4 6, so the 5 x 5 C5 gives a 2 x 2 grid
# of 120-d vectors: a real convolution again, one vector per (overlapping) image area. F6, a
# Linear(120, 84), would no longer fit without pooling or flattening to 480 (the package's LeNet5
# refuses anything but 32 x 32).
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=2"]
# **Question 2.** Pooling makes the representation tolerant to small shifts. Shift a test digit by
# one or two pixels and compare its 120-d vectors: how much do they change? What would a vision-
# language model lose if it only had this vector and not the maps?
#
# ### BEGIN SOLUTION
# *Rubric.* The answer reports the measured change of the 120-d vector (e.g. its relative distance
# or cosine) for 1- and 2-pixel shifts: it changes little but is not identical, since pooling gives
# only approximate invariance. With only this vector a VL model loses where things are: layout,
# left/right, which part of the image a word refers to.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 3.** The paper's C3 connection table broke the symmetry between maps. Why is that less
# necessary with random initialisation and full connections?
#
# ### BEGIN SOLUTION
# *Rubric.* LeCun et al. 1998 (section II-B) limited C3's connections to keep their number down and
# to make the maps differ. With random initialisation each map already starts from different
# weights, so gradients differ and the maps diverge anyway; identical maps only arise from identical
# starting weights, and full connections are cheap today.
# ### END SOLUTION
