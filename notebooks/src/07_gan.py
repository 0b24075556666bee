# %% [markdown]
# # 7 · Generative adversarial networks (2014)
#
# The networks of the previous notebooks map an image to a representation. A generative model goes
# the other way: it maps a random vector z to an image, and so must capture what images of a kind
# look like. Goodfellow et al. (*Generative adversarial nets*, NeurIPS 2014) train such a
# **generator** G against a **discriminator** D that tries to tell real images from generated ones:
#
# min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]   (Eq. 1 of the paper).
#
# D is a classifier (real = 1, generated = 0); G improves by fooling it. In this notebook we write
# both losses, train a small GAN on the 8 x 8 digits, watch its samples during training, and measure
# what makes GANs hard: unstable training and **mode collapse** (a generator that covers only some
# of the data).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits as sk_digits
from sklearn.linear_model import LogisticRegression

from vlp_course.vision.gan import GAN, discriminator_loss, generator_loss, train_gan

CFG = dict(
    steps=2000,          # alternating D/G updates (batch 64); a few seconds on a laptop CPU
    batch_size=64,
    lr=2e-4,
    z_dim=16,            # noise dimension
    hidden=128,          # width of both MLPs
    snapshot_every=400,  # sample grid every this many steps
    n_eval=1000,         # generated samples used for the measurements
    seed=0,
)

# %% [markdown]
# ## The data
#
# All 1,797 digits, 8 x 8, scaled to [-1, 1] to match the generator's tanh output.

# %%
data = sk_digits()
real = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # (1797, 1, 8, 8) in [-1, 1]
print(tuple(real.shape), float(real.min()), float(real.max()))
assert real.min() >= -1 and real.max() <= 1

# %% [markdown]
# ## The two losses
#
# D outputs a logit l; D(x) = sigmoid(l). Its loss is the binary cross-entropy with target 1 on real
# images and 0 on generated ones: -log D(x) - log(1 - D(G(z))). For G, the paper notes (Section 3)
# that minimising log(1 - D(G(z))) *saturates*: early in training D rejects the samples confidently,
# D(G(z)) ≈ 0, and the gradient vanishes. Maximising log D(G(z)) instead — the non-saturating loss
# -log D(G(z)) — has the same fixed point and a strong gradient exactly then. Let us measure both
# gradients with respect to the logit of a sample that D rejects with D(G(z)) = 0.001.

# %%
logit = torch.tensor([np.log(0.001 / 0.999)], requires_grad=True)
saturating = torch.log(1 - torch.sigmoid(logit)).mean()  # G minimises this in Eq. 1
(g_sat,) = torch.autograd.grad(saturating, logit)
(g_ns,) = torch.autograd.grad(generator_loss(logit), logit)
print(f"D(G(z)) = {torch.sigmoid(logit).item():.3f}: gradient of log(1 - D) {g_sat.item():+.4f}, "
      f"of -log D {g_ns.item():+.4f}")
assert abs(g_ns.item()) > 100 * abs(g_sat.item())

zero = torch.zeros(4)  # D undecided: D = 1/2 everywhere
print(f"at D = 1/2: D's loss {discriminator_loss(zero, zero):.4f} (= 2 log 2), G's loss {generator_loss(zero):.4f} (= log 2)")
assert abs(discriminator_loss(zero, zero).item() - 2 * np.log(2)) < 1e-6

# %% [markdown]
# ## Training
#
# Both networks are small MLPs (`vlp_course/vision/gan.py`): G maps z (16 numbers) to 64 pixels, D
# maps 64 pixels to one logit. Each step follows Algorithm 1 of the paper with k = 1: one update of D
# on a real and a generated batch, then one update of G. The course's training loop owns one
# optimiser, which updates G; D's optimiser is stepped inside the step function. We keep the samples
# from 16 fixed noise vectors every few hundred steps.

# %%
torch.manual_seed(CFG["seed"])
gan = GAN(z_dim=CFG["z_dim"], hidden=CFG["hidden"])
trace = train_gan(gan, real, steps=CFG["steps"], batch_size=CFG["batch_size"], lr_g=CFG["lr"], lr_d=CFG["lr"],
                  seed=CFG["seed"], snapshot_every=CFG["snapshot_every"], progress=True)
hist = trace.history

snaps = sorted(trace.snapshots)
fig, axes = plt.subplots(len(snaps), 16, figsize=(9, 0.65 * len(snaps) + 0.4))
for r, step in enumerate(snaps):
    for c in range(16):
        ax = axes[r, c]
        ax.imshow(trace.snapshots[step][c, 0], cmap="gray_r", vmin=-1, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
    axes[r, 0].set_ylabel(f"{step}", rotation=0, labelpad=14, fontsize=8)
plt.suptitle("samples from the same 16 noise vectors, by training step", fontsize=9)
plt.show()

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
hist.plot(["loss", "d_loss"], ax=axes[0], window=50, title="losses (G: loss, D: d_loss)")
axes[1].plot(hist.steps, hist.smoothed("d_real", 50), label="D correct on real")
axes[1].plot(hist.steps, hist.smoothed("d_fake", 50), label="D correct on generated")
axes[1].axhline(0.5, color="gray", ls=":")
axes[1].set_xlabel("step"), axes[1].set_ylim(0, 1.05), axes[1].legend(fontsize=8)
axes[1].set_title("discriminator accuracy (running mean)")
plt.tight_layout()
plt.show()

d_acc = (np.array(hist.train["d_real"]) + np.array(hist.train["d_fake"])) / 2
windows = d_acc[-1000:].reshape(10, 100).mean(1)  # D's accuracy in the last ten windows of 100 steps
print(f"D's accuracy, first 100 steps {d_acc[:100].mean():.2f}; last 1,000 steps, by 100: {np.round(windows, 2)}")
print(f"at the game's equilibrium it would be 0.50; measured over the last 1,000 steps: {d_acc[-1000:].mean():.2f}")
assert d_acc[-1000:].mean() > 0.6, "D still separates real from generated: the game has not reached its equilibrium"

# %% [markdown]
# The two losses do not go down together as in supervised training: each network's progress is the
# other's loss. The theory of the paper (Section 4) says that with unlimited capacity the game ends
# with D = 1/2 everywhere; in practice D stays ahead and the balance moves back and forth between
# the two networks, and neither curve says "done": a GAN has no training loss that measures sample
# quality. So we measure the samples themselves.
#
# ## Measuring the samples: quality and diversity
#
# Three numbers:
# * **closeness**: the mean distance from a sample to its nearest real digit. Generated digits should
#   sit near the data, far closer than random noise does.
# * **confidence**: a simple digit classifier (logistic regression on the 64 pixels, fit on the real
#   digits) reads the samples; its mean top probability is printed (beware: a linear classifier can
#   also be confident on images unlike any digit, which is why closeness is the number we assert).
# * **coverage**: the share of the 10 digits among the classifier's readings. A generator that has
#   collapsed onto a few modes makes some digits often and others never; the entropy of the reading
#   histogram (at most log 10 ≈ 2.30) measures how evenly the digits are covered.

# %%
clf = LogisticRegression(max_iter=2000).fit(real.flatten(1).numpy(), data.target)
samples = gan.sample(CFG["n_eval"], seed=123).flatten(1).numpy()  # (n_eval, 64)
rng = np.random.default_rng(0)
noise = rng.uniform(-1, 1, size=samples.shape)


def read(x):
    p = clf.predict_proba(x)
    share = np.bincount(p.argmax(1), minlength=10) / len(x)
    entropy = -(share[share > 0] * np.log(share[share > 0])).sum()
    return p.max(1).mean(), share, entropy


def nearest_real(x):
    d = torch.cdist(torch.as_tensor(x, dtype=torch.float32), real.flatten(1))  # (n, 1797)
    return d.min(1).values.mean().item()


held_in = real.flatten(1)
d_self = torch.cdist(held_in, held_in) + torch.eye(len(held_in)) * 1e9  # leave each digit out
near_real, near_gen, near_noise = d_self.min(1).values.mean().item(), nearest_real(samples), nearest_real(noise)
print(f"distance to the nearest real digit: real (others) {near_real:.2f}, generated {near_gen:.2f}, noise {near_noise:.2f}")
conf_real, share_real, ent_real = read(real.flatten(1).numpy())
conf_gen, share_gen, ent_gen = read(samples)
conf_noise, _, _ = read(noise)
print(f"classifier confidence: real {conf_real:.2f}, generated {conf_gen:.2f}, uniform noise {conf_noise:.2f}")
print(f"entropy of the digit readings: real {ent_real:.2f}, generated {ent_gen:.2f} (max {np.log(10):.2f})")
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.bar(np.arange(10) - 0.2, share_real, width=0.4, label="real")
ax.bar(np.arange(10) + 0.2, share_gen, width=0.4, label="generated")
ax.set_xticks(range(10)), ax.set_xlabel("digit read by the classifier"), ax.set_ylabel("share")
ax.legend()
plt.show()
rare = [d for d in range(10) if share_gen[d] < 0.02]
print(f"digits the generator (almost) never makes (< 2% of the samples): {rare}")
assert near_gen < 0.6 * near_noise, "generated samples should lie much closer to real digits than noise does"
assert ent_gen < ent_real - 0.1, "the generator covers the ten digits less evenly than the data"

# %% [markdown]
# Compare the two histograms: where the generated bars are much taller or shorter than the real
# ones, the generator over- or under-produces a mode, and the digits listed above are modes it has
# dropped: a partial **mode collapse**. Nothing in G's loss punishes it: G is rewarded for fooling D
# with *some* convincing digits, not for producing all of them. A fully collapsed generator would put one tall
# bar on a single digit (entropy near 0) whatever its sample quality: quality and diversity are
# different things, and a GAN's loss measures neither. Diversity can also be read directly: the mean
# distance between pairs of samples, compared with that between pairs of real digits.

# %%
def mean_pair_distance(x):
    x = torch.as_tensor(x[:500], dtype=torch.float32)
    return torch.cdist(x, x).sum().item() / (len(x) * (len(x) - 1))


div_real, div_gen = mean_pair_distance(real.flatten(1).numpy()), mean_pair_distance(samples)
collapsed = np.repeat(samples[:1], 500, axis=0) + 0.01 * rng.standard_normal((500, 64))  # a collapsed "generator"
div_collapsed = mean_pair_distance(collapsed)
print(f"mean pairwise distance: real {div_real:.2f}, generated {div_gen:.2f}, one mode repeated {div_collapsed:.2f}")
assert div_gen > 0.3 * div_real and div_collapsed < 0.1 * div_real

# %% [markdown]
# ## Beyond 2014, and a pointer: capsules
#
# DCGAN (Radford et al. 2016) replaced the MLPs with convolutions and batch normalisation and made
# GAN training far more reliable; the Wasserstein GAN (Arjovsky et al. 2017) changed the loss to
# fight collapse. In the same years, **capsule networks** (Sabour, Frosst and Hinton, *Dynamic routing
# between capsules*, NeurIPS 2017) questioned the pooling of CNNs from the other side: a capsule
# outputs a *vector* whose length says whether an entity is present and whose direction encodes its
# pose, and "routing by agreement" replaces max pooling. They are not used by the vision-language
# models of this course, which read CNN or transformer features.

# %% [markdown]
# ## Exercises
#
# **Exercise 1 — the discriminator's loss.** From the logits of a real batch and of a generated
# batch (shape (B,)), return D's loss -mean log D(x) - mean log(1 - D(G(z))), a scalar tensor. Make it
# numerically stable for large logits (hint: `F.logsigmoid`, or `F.binary_cross_entropy_with_logits`).

# %%
def my_discriminator_loss(real_logits, fake_logits):
    ### BEGIN SOLUTION
    return -F.logsigmoid(real_logits).mean() - F.logsigmoid(-fake_logits).mean()
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.vision import check_discriminator_loss

check_discriminator_loss(my_discriminator_loss)

# %% [markdown]
# **Exercise 2 — the non-saturating generator loss.** From the logits D gives generated images,
# return -mean log D(G(z)).

# %%
def my_generator_loss(fake_logits):
    ### BEGIN SOLUTION
    return -F.logsigmoid(fake_logits).mean()
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.vision import check_generator_loss

check_generator_loss(my_generator_loss)

# %% [markdown]
# ## Open questions
# Answer each in the cell that asks it; an instructor grades them by hand.

# %% [markdown] tags=["manual", "points=2"]
# **Question 1.** Train with D's learning rate ten times G's, then ten times smaller. What happens
# to D's accuracy trace and to the coverage histogram?
#
# ### BEGIN SOLUTION
# *Rubric.* The answer shows both traces and histograms. With D much faster, D's accuracy goes
# towards 100 %, G's signal weakens or oscillates and samples may collapse onto a few digits (a
# narrower histogram); with D much slower, D's accuracy stays near 50 % without guiding G, and
# samples stay poor or uneven. What was measured, tied to the balance between the players, is what
# counts.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 2.** Why can the generator's loss go *up* while its samples get better?
#
# ### BEGIN SOLUTION
# *Rubric.* G's loss is measured against the current D, which keeps improving; a rising loss can
# mean D got better, not that G got worse. In a two-player game the losses are not a progress
# measure; a fixed yardstick (the classifier's coverage, a look at samples) is.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 3.** The classifier we used to measure coverage was trained on the same digits. What
# would an unreliable classifier do to these measurements? (FID and Inception Score use an ImageNet
# network for the same purpose.)
#
# ### BEGIN SOLUTION
# *Rubric.* An unreliable classifier can label blurry or broken samples confidently, or split
# ambiguous ones wrongly, so coverage can look better or worse than it is; its errors may line up
# with G's artefacts. The measurement is only as good as the network: FID and Inception Score
# inherit ImageNet features, which may not suit digits.
# ### END SOLUTION
