# %% [markdown]
# # 8 · The three key problems of vision-language pretraining
#
# Every model of the next notebooks (ViLBERT, LXMERT, VisualBERT, VL-BERT) answers three questions
# in its own way:
#
# 1. **Modality representation** — what does the text model see of an image? Boxes around objects
#    (RoI features from a detector), the cells of a CNN feature map (grid or "pixel" features), or
#    square patches of pixels?
# 2. **Modality fusion** — where do words and image tokens meet? In one sequence with one
#    transformer (single stream), in two transformers that exchange information (dual stream), or
#    in several (multi stream)?
# 3. **Alignment** — how does the model learn which words go with which regions ("the red circle"
#    with the box around the red circle) when the data only pairs whole images with whole captions?
#
# We look at each on the course's **synthetic scenes**: small images of coloured shapes whose every
# fact is known, with captions, hard negatives, VQA questions and NLVR2-style statements. They are
# the data of all the following notebooks, so we also get to know them here.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

from vlp_course.data import COLORS, SHAPES, load_vl_scenes, make_scenes, relations, soft_scores, vqa_accuracy
from vlp_course.data.detector import (
    detector_accuracy, extract_regions, extract_regions_batch, load_detector, scene_grid_features, scene_patch_features,
)

CFG = dict(
    n_scenes=400,        # scenes of the dataset built (and cached) here
    n_heldout=200,       # fresh scenes to measure the detector on
    patch_size=16,       # ViT/ViLT-style patches of the 64 x 64 images
    seed=0,
)
t_start = time.perf_counter()

# %% [markdown]
# ## The scenes
#
# `load_vl_scenes` builds the dataset once (a few seconds) and keeps it in a cache folder with a
# checksum per file. Each scene lists its objects (shape, colour, size, box in pixels) and a scene
# graph of spatial relations; each comes with five captions from a small grammar, and a **hard
# negative** per caption: the same sentence with exactly one thing changed (a colour, a shape, a
# size, a count or a relation) so that it is false.

# %%
ds = load_vl_scenes(CFG["n_scenes"], seed=CFG["seed"])
scenes = ds.scenes
print(f"{len(scenes)} scenes of {scenes.image_size}x{scenes.image_size} px, {len(ds.questions)} VQA questions, "
      f"{len(ds.nlvr2)} NLVR2 statements")

fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
for ax, i in zip(axes, range(4)):
    sc = scenes[i]
    ax.imshow(sc.image)
    for o in sc.objects:
        x1, y1, x2, y2 = o.box
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec="w", lw=1))
    ax.set_title(f"{ds.captions[i][1]}\nnot: {ds.negatives[i][1]}", fontsize=7)
    ax.axis("off")
plt.tight_layout()
plt.show()
sc = scenes[0]
print("objects:", [o.describe() for o in sc.objects])
print("scene graph:", [(sc.objects[i].shape, r, sc.objects[j].shape) for i, r, j in relations(sc)])
for c, n in zip(ds.captions[0], ds.negatives[0]):
    print(f"  true: {c:<60} false: {n}")

# %% [markdown]
# ## Problem 1 — modality representation: regions, grid, patches
#
# The 2019–2020 models take **region (RoI) features** from an object detector, Faster R-CNN trained
# on Visual Genome: per image about 36 boxes, a 2048-d vector per box, and the detector's guess of
# each box's class. The course ships a small stand-in detector for the scenes
# (`vlp_course.data.detector`): a four-layer CNN whose feature map is pooled in each box with
# RoIAlign, then classified (shape) with an attribute (colour). Because a VL model trusts those
# labels, we first measure how good they are, on scenes the detector never saw.

# %%
detector = load_detector()
heldout = make_scenes(CFG["n_heldout"], seed=4242)
acc = detector_accuracy(detector, heldout)
print(f"held-out objects: shape accuracy {acc['class_acc']:.3f}, colour accuracy {acc['attr_acc']:.3f} "
      f"(chance {1 / len(SHAPES):.2f} and {1 / len(COLORS):.2f})")
assert acc["class_acc"] > 0.9 and acc["attr_acc"] > 0.9, acc

# %% [markdown]
# Now the three representations of one image, drawn on it. RoI: one token per box (plus one for the
# whole image). Grid: one token per cell of the detector's 16 x 16 feature map (a cell covers 4 x 4
# pixels). Patches: the raw pixels cut into 16 x 16 squares, each flattened (what ViT and ViLT
# embed with a single linear layer).

# %%
sc = scenes[3]
regions = extract_regions(detector, sc)
grid = scene_grid_features(detector, sc.image[None])
patches = scene_patch_features(sc.image[None], CFG["patch_size"])
S = sc.image_size
tokens = {"RoI (boxes + whole image)": (regions.num_boxes + 1, regions.features.shape[1]),
          "grid (feature-map cells)": tuple(grid.shape[1:]),
          f"patches ({CFG['patch_size']} x {CFG['patch_size']} px)": tuple(patches.shape[1:])}
for name, (n, d) in tokens.items():
    print(f"{name:<28} {n:>4} tokens of width {d}")
assert tokens["RoI (boxes + whole image)"][0] == len(sc.objects) + 1
assert grid.shape[1] == (S // 4) ** 2 and patches.shape[1] == (S // CFG["patch_size"]) ** 2

fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), gridspec_kw=dict(width_ratios=[1, 1, 1, 1.3]))
for ax, title in zip(axes[:3], ["RoI: one token per box", "grid: one token per cell", "patches: one token per square"]):
    ax.imshow(sc.image)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])
for (x1, y1, x2, y2), p in zip(regions.pixel_boxes().tolist(), regions.class_probs):
    axes[0].add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec="w", lw=1.5))
    axes[0].text(x1, y1 - 1, SHAPES[int(p.argmax())], color="w", fontsize=7)
for k in range(0, S + 1, 4):
    axes[1].axhline(k - 0.5, color="w", lw=0.3)
    axes[1].axvline(k - 0.5, color="w", lw=0.3)
for k in range(0, S + 1, CFG["patch_size"]):
    axes[2].axhline(k - 0.5, color="w", lw=1)
    axes[2].axvline(k - 0.5, color="w", lw=1)
im = axes[3].imshow(regions.class_probs.numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
axes[3].set_xticks(range(len(SHAPES)), SHAPES, rotation=45, fontsize=7)
axes[3].set_yticks(range(regions.num_boxes), [o.describe() for o in sc.objects], fontsize=7)
axes[3].set_title("detector: class probabilities per box", fontsize=9)
plt.colorbar(im, ax=axes[3])
plt.tight_layout()
plt.show()

# %% [markdown]
# A region token already "knows" what it is (the detector's class and attribute distributions are
# part of what a VL model gets — ViLBERT and VL-BERT even train to predict them back for masked
# regions). A grid or patch token knows only a few pixels; the transformer must assemble objects
# itself, which needs more data but no detector, and sees everything, including what the detector's
# 1,600 classes do not name. Regions are few (cheap attention), grid cells are many.

# %% [markdown]
# ## Problem 2 — modality fusion: single, dual and multi stream
#
# Take one caption and the regions of its scene. A **single-stream** model (VisualBERT, VL-BERT)
# puts them in one sequence, `[CLS] words [SEP] regions`, and one transformer lets every token attend
# to every other one: the attention mask is full, apart from padding. A **dual-stream** model
# (ViLBERT, LXMERT) keeps a text transformer and an image transformer; they meet in
# **co-attention** (cross-attention) layers where words query regions and regions query words —
# within a layer, a block of the full matrix is used, never both modalities at once. A
# **multi-stream** model (e.g. MMFT-BERT for VQA) gives each input its own encoder (question,
# image, a caption or other text) and fuses their outputs with another transformer on top.

# %%
i = 5
words = ["[CLS]"] + ds.captions[i][3].split() + ["[SEP]"]
regs = ["[IMG]"] + [f"<{o.color} {o.shape}>" for o in scenes[i].objects]
T, V = len(words), len(regs)
print("single stream:", " ".join(words + regs))
print(f"  {T} text tokens + {V} visual tokens = one sequence of {T + V}")
print("dual stream:   text:", " ".join(words), "| image:", " ".join(regs))

L = T + V + 3  # room for padding, as in a batch
pad = torch.cat([torch.ones(T), torch.zeros(3), torch.ones(V)])  # (T + 3 + V,) 1 = real token
full = pad[:, None] * pad[None, :]  # (L, L)
self_text = torch.zeros(L, L)
self_text[:T, :T] = 1
self_img = torch.zeros(L, L)
self_img[T + 3:, T + 3:] = 1
co_attn = torch.zeros(L, L)
co_attn[:T, T + 3:] = 1  # words query regions
co_attn[T + 3:, :T] = 1  # regions query words
masks = {"single stream: one transformer": full,
         "dual stream: self-attention layers": self_text + self_img,
         "dual stream: co-attention layer": co_attn}
fig, axes = plt.subplots(1, 3, figsize=(13, 4.3))
labels = words + ["[PAD]"] * 3 + regs
for ax, (name, m) in zip(axes, masks.items()):
    ax.imshow(m, cmap="Greys", vmin=0, vmax=1)
    ax.set_title(name, fontsize=9)
    ax.set_xticks(range(L), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(L), labels, fontsize=6)
    ax.set_xlabel("key (attended to)", fontsize=8)
axes[0].set_ylabel("query", fontsize=8)
plt.tight_layout()
plt.show()
assert full.sum() == (T + V) ** 2  # every real token sees every real token
assert (self_text + self_img).sum() + co_attn.sum() == (T + V) ** 2  # the dual-stream blocks tile the same matrix

# %% [markdown]
# The two dual-stream masks together cover exactly the single-stream one: the difference is not
# *what* can interact but *how often and with which weights* — a dual-stream model has separate
# parameters per modality (ViLBERT's image stream is 1024 wide, its text stream 768) and lets the
# modalities talk only in the co-attention layers, after some layers of each alone.

# %% [markdown]
# ## Problem 3 — alignment: which words go with which regions
#
# The data pair an image with a caption, nothing finer. Yet "the red circle left of the blue
# square" is only understood if "red circle" is bound to one region and "blue square" to another.
# Pretraining tasks push a model to discover this binding: masked words must be predicted from the
# regions, masked regions from the words, and matching captions told from hard negatives. On the
# scenes we know the right binding, so we can check one simple aligner: score each phrase against
# each region with the detector's probabilities, `P(shape) * P(colour)`.

# %%
def phrase_region_scores(desc, regions):
    """(R,) score of one phrase (a partial description) against each region."""
    s = torch.ones(regions.num_boxes)
    if desc.shape is not None:
        s = s * regions.class_probs[:, SHAPES.index(desc.shape)]
    if desc.color is not None:
        s = s * regions.attr_probs[:, COLORS.index(desc.color)]
    return s


from vlp_course.data.captions import Desc, count_matching

right = total = 0
chance = 0.0
for sc, regions in zip(heldout, extract_regions_batch(detector, heldout)):
    for k, o in enumerate(sc.objects):
        desc = Desc(color=o.color, shape=o.shape)
        if count_matching(sc, desc) != 1:
            continue  # the phrase must name one object
        right += int(phrase_region_scores(desc, regions).argmax()) == k
        total += 1
        chance += 1 / len(sc.objects)
align_acc, chance = right / total, chance / total
print(f"phrase -> region alignment with detector labels: {align_acc:.3f} on {total} phrases (chance {chance:.2f})")
assert align_acc > max(0.85, chance + 0.3)

# %%
sc = heldout[7]
regions = extract_regions(detector, sc)
phrases = [f"{o.color} {o.shape}" for o in sc.objects]
M = torch.stack([phrase_region_scores(Desc(color=o.color, shape=o.shape), regions) for o in sc.objects])
fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.4))
a0.imshow(sc.image)
for k, (x1, y1, x2, y2) in enumerate(sc.boxes().tolist()):
    a0.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec="w"))
    a0.text(x1, y1 - 1, f"r{k}", color="w", fontsize=8)
a0.axis("off")
a1.imshow(M.numpy(), cmap="magma", vmin=0, vmax=1)
a1.set_xticks(range(regions.num_boxes), [f"r{k}" for k in range(regions.num_boxes)])
a1.set_yticks(range(len(phrases)), phrases)
a1.set_title("phrase x region score", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# On a real photo the binding is the same idea with open-ended words. Here the boxes are drawn by
# hand (a detector would propose them): the caption's phrases "tabby cat", "green eyes" and "pink
# nose" each go with one or two regions.

# %%
from skimage.data import chelsea

photo = chelsea()  # (300, 451, 3)
boxes = {"tabby cat": [(20, 0, 400, 300)], "green eyes": [(135, 80, 205, 150), (300, 105, 348, 165)],
         "pink nose": [(228, 218, 292, 268)]}
colors = {"tabby cat": "w", "green eyes": "lime", "pink nose": "magenta"}
fig, ax = plt.subplots(figsize=(6.5, 4.3))
ax.imshow(photo)
for phrase, bl in boxes.items():
    for x1, y1, x2, y2 in bl:
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colors[phrase], lw=2))
    ax.text(bl[0][0] + 3, bl[0][1] + 14, phrase, color=colors[phrase], fontsize=10, weight="bold")
ax.set_title('"a tabby cat with green eyes and a pink nose"', fontsize=10)
ax.axis("off")
plt.show()
from vlp_course.boxes import normalize

h, w = photo.shape[:2]
nb = normalize(torch.tensor([b for bl in boxes.values() for b in bl], dtype=torch.float32), w, h)
print("the same boxes, normalized by (W, H) = (451, 300):\n", nb.numpy().round(3))
assert float(nb.max()) <= 1 and float(nb.min()) >= 0

# %% [markdown]
# ## The other annotations: VQA and NLVR2
#
# Each scene also has VQA questions of the three VQA v2 answer types (yes/no, number, other), each
# with **ten** answers from simulated annotators who sometimes disagree, and the pairs of scenes
# have NLVR2-style statements with a True/False label. The files are written in the real datasets'
# formats, so the same loaders read VQA v2 and NLVR2 on Colab.

# %%
for q in ds.questions[:6]:
    print(f"{q.answer_type:>7} | {q.question:<55} {q.answers}")
e = ds.nlvr2[1]
print(f"\nNLVR2: '{e.sentence}' -> {e.label} (left scene {e.left_id}, right scene {e.right_id})")

# %% [markdown]
# VQA scores an answer against the ten human answers: leave one annotator out, count how many of
# the other nine gave the answer, score `min(1, matches / 3)`, and average over the ten choices of
# who is left out. Training targets use the same numbers as **soft scores** per answer.
#
# ### Exercise 1 — soft scores
# Write `my_soft_scores(answers)` returning `{answer: score}` for every distinct answer among the
# ten: an answer given `k` times scores 0.3, 0.6, 0.9 for k = 1, 2, 3 and 1.0 for k >= 4.

# %%
def my_soft_scores(answers):
    ### BEGIN SOLUTION
    counts = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    return {a: min(1.0, 0.3 * k) if k < 4 else 1.0 for a, k in counts.items()}
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.scenes import check_soft_scores

check_soft_scores(my_soft_scores)
### BEGIN HIDDEN TESTS
assert abs(my_soft_scores(["x"] * 3 + ["y"] * 7)["x"] - 0.9) < 1e-9
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 2 — VQA accuracy
# Write `my_vqa_accuracy(prediction, answers)`: the average over the ten annotators `i` of
# `min(1, (number of the other nine answers equal to prediction) / 3)`. (The answers here are already
# normalised; the official code also cleans punctuation, number words and articles when the ten
# answers disagree — `vlp_course.data.vqa.vqa_accuracy` does all of it.)

# %%
def my_vqa_accuracy(prediction, answers):
    ### BEGIN SOLUTION
    accs = []
    for i in range(len(answers)):
        others = answers[:i] + answers[i + 1:]
        accs.append(min(1.0, sum(a == prediction for a in others) / 3))
    return sum(accs) / len(accs)
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.scenes import check_vqa_accuracy

check_vqa_accuracy(my_vqa_accuracy)

# %% [markdown]
# ### Exercise 3 — the single-stream padding mask
# In a batch, captions and region lists have different lengths and are padded to `max_text` and
# `max_regions`. Write `my_single_stream_mask(text_lengths, region_counts, max_text, max_regions)`
# returning a (B, max_text + max_regions) tensor with 1.0 on real tokens and 0.0 on padding, text part
# first.

# %%
def my_single_stream_mask(text_lengths, region_counts, max_text, max_regions):
    ### BEGIN SOLUTION
    rows = []
    for t, v in zip(text_lengths, region_counts):
        rows.append([1.0] * t + [0.0] * (max_text - t) + [1.0] * v + [0.0] * (max_regions - v))
    return torch.tensor(rows)
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.scenes import check_single_stream_mask

check_single_stream_mask(my_single_stream_mask)

# %% [markdown]
# The package's versions give the same numbers on the real VQA v2 edge cases (see
# `tests/test_vqa_eval.py`): for instance "yes." scores 0 against ten "yes", but 1 against nine
# "yes" and one "no", because the official code normalises only when annotators disagree.

# %%
print(vqa_accuracy("yes.", ["yes"] * 10), vqa_accuracy("yes.", ["yes"] * 9 + ["no"]))
print(soft_scores(["two", "2", "2", "3", "2", "2", "3", "2", "2", "4"]))
elapsed = time.perf_counter() - t_start
print(f"notebook body ran in {elapsed:.1f} s")

# %% [markdown]
# ## Open questions
# Answer each in the cell that asks it; an instructor grades them by hand.

# %% [markdown] tags=["manual", "points=2"]
# **Question 1.** A region token comes with the detector's class distribution. What does a VL model
# lose if the detector misses an object that the caption mentions? What does a patch model lose
# instead?
#
# ### BEGIN SOLUTION
# *Rubric.* With regions: a missed object has no token, so the mentioned word cannot be grounded and
# the model can only guess from context; the detector's class list also limits what exists. With
# patches every pixel is there, but there are no object boundaries or labels: the model must learn
# objectness and grouping itself, and an object may be split over patches or be smaller than one.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=2"]
# **Question 2.** The two dual-stream masks tile the single-stream mask. Why might a dual-stream
# model still behave differently after the same amount of training? Think of parameters per modality
# and of where the first cross-modal interaction happens.
#
# ### BEGIN SOLUTION
# *Rubric.* The attention pattern matches, but the dual-stream model has separate weights per
# modality (more parameters, each stream specialised) and the first cross-modal exchange happens
# only at the co-/cross-attention layers, possibly after several single-modality layers; the single-
# stream model mixes from layer 1 with shared weights. Different parameters and depth of fusion give
# different training.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 3.** Our aligner used the detector's labels. Which pretraining task of the next
# notebooks would let a model learn the phrase-region binding without any labels on the regions?
#
# ### BEGIN SOLUTION
# *Rubric.* Masked language modelling with the image (a masked colour or object word can only be
# recovered by finding its region) and image-text matching; both learn the binding from image-
# caption pairs alone, with no label on any region.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 4.** Why must a hard negative differ in exactly one thing and be *false*? What would a
# model learn from negatives that are random captions of other images?
#
# ### BEGIN SOLUTION
# *Rubric.* Differing in one thing, the only way to reject it is to check that detail against the
# image, which forces fine grounding; if it were true, the label would be wrong. Random captions of
# other images differ in many words, so a model can reject them by coarse cues (an absent object or
# colour) without binding attributes to objects.
# ### END SOLUTION
