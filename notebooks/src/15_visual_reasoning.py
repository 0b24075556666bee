# %% [markdown]
# # 15 · Visual reasoning: is the statement true of these two images?
#
# NLVR2 (Suhr et al., 2019) shows a model **two** photographs and one sentence, such as "the left
# image contains twice the number of dogs as the right image", and asks: true or false? It tests
# what VQA often lets a model skip: comparing and counting across images, and reading the sentence
# as a whole. Its builders also closed the shortcut that sank many VQA models: every sentence was
# written for a set of image pairs and is **true of some and false of others** (section 3 of the
# paper), so the sentence alone predicts the label poorly. On the course's pairs the balance is exact.
#
# This notebook builds the same task on the course's scenes, shows how each of the four models of
# Part 4 reads a *pair* of images (they do it in two different ways), checks that each pair's answer
# depends only on its own two images, fine-tunes a pretrained model live, and reads the four models'
# full results from the course's benchmark.

# %%
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from vlp_course.data.nlvr2 import load_nlvr2, write_nlvr2
from vlp_course.data.vl_tensors import build_pair_tensors
from vlp_course.models.blocks import pair_logits, repeat_for_pairs
from vlp_course.models.visualbert import pair_regions
from vlp_course.recipes import run
from vlp_course.recipes.shipped import comparison_results, load_scene_checkpoint

T0 = time.perf_counter()

# %% [markdown]
# All sizes in one place; budgets are in steps. The live fine-tune uses VisualBERT, the fastest of
# the four on this task (notebook 16 measures the speeds).

# %%
CFG = dict(
    train_pairs=10_000, test_pairs=600, pair_seed=0,
    steps=600, batch=64, lr=1e-3, seed=0,  # the live fine-tune (seeds 0-2: see the asserts below)
    min_accuracy=0.66,  # asserted: with the images, on the held-out pairs
)

# %% [markdown]
# ## The pairs
#
# `build_pair_tensors` draws pairs of scenes and templated statements whose truth is computed from
# the scenes' objects: counts ("the left image shows exactly three objects"), comparisons ("the
# right image contains more circles than the left image", "twice as many"), and quantifiers over both
# images ("both images contain a red object", "neither image …", "exactly one of the two images …").
# As in NLVR2, each sentence comes **twice**: once with a pair it is true of, once with a pair it is
# false of. Training pairs join training images, held-out pairs held-out images.

# %%
pre, sm, meta = load_scene_checkpoint("visualbert")
st = sm.st
pairs = build_pair_tensors(st, n_train_pairs=CFG["train_pairs"], n_test_pairs=CFG["test_pairs"], seed=CFG["pair_seed"])
test = pairs.rows("test")
print(f"{len(pairs.rows('train'))} training pairs, {len(test)} held-out pairs; "
      f"{pairs.labels.float().mean():.0%} true; new words: {', '.join(pairs.new_words)}")
examples = pairs.examples
for e in examples[:4]:
    print(f"  {e.identifier:14s} {str(e.label):5s}  {e.sentence}")

# %% [markdown]
# Four held-out pairs with their statements: the first two share a sentence, as do the last two. Look
# at how the same sentence is true of one pair and false of the other: only the images decide.

# %%
scene = {s.scene_id: s for s in st.ds.scenes}
show = [int(test[0]), int(test[1]), int(test[2]), int(test[3])]
fig, axes = plt.subplots(2, 4, figsize=(11, 6))
for col, p in enumerate(show):
    e = examples[p]
    for row, sid in enumerate((e.left_id, e.right_id)):
        ax = axes[row, col]
        ax.imshow(scene[sid].image)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(("left" if row == 0 else "right") + f" image (scene {sid})", fontsize=8)
    axes[1, col].set_xlabel(f"{e.sentence}\n→ {e.label}", fontsize=8, wrap=True)
fig.suptitle("held-out pairs: each statement is shown with the two images it is about")
plt.tight_layout()
plt.show()

# %% [markdown]
# The files are NLVR2's own format, JSON lines with `"label": "True"` strings and identifiers
# `split-sentence-pair-0` from which the image names follow; writing and reading back gives the same
# examples.

# %%
with tempfile.TemporaryDirectory() as tmp:
    path = write_nlvr2(examples[-6:], Path(tmp) / "test.json")
    print(path.read_text().splitlines()[0])
    assert load_nlvr2(path) == examples[-6:]

# %% [markdown]
# ## The statement-only baseline is 50%, by construction
#
# A model that never looks at the images gives every copy of a sentence the same answer. Each held-out
# sentence is as often false as true (a sentence drawn twice comes with two true and two false pairs),
# so such a model is right on exactly half of them: 50% on the held-out pairs, whatever it learned. We check the
# argument twice: the pairing itself, and a real text classifier (bag of words, logistic regression,
# scikit-learn) trained on the training statements.

# %%
sentences = [e.sentence for e in examples]
by_sentence: dict[str, list[int]] = {}
for p in test.tolist():
    by_sentence.setdefault(sentences[p], []).append(int(pairs.labels[p]))
assert all(2 * sum(v) == len(v) for v in by_sentence.values()), "every held-out sentence: as often false as true"

train = pairs.rows("train").tolist()
bow = CountVectorizer(ngram_range=(1, 2)).fit([sentences[p] for p in train])
text_only = LogisticRegression(max_iter=1000).fit(bow.transform([sentences[p] for p in train]), pairs.labels[train].numpy())
text_acc = {split: float((text_only.predict(bow.transform([sentences[p] for p in rows])) == pairs.labels[rows].numpy()).mean())
            for split, rows in (("train", train), ("held-out", test.tolist()))}
print(f"bag-of-words statement-only classifier: {text_acc['train']:.1%} on the training pairs, "
      f"{text_acc['held-out']:.1%} on the held-out pairs")
assert text_acc["held-out"] == 0.5 and abs(text_acc["train"] - 0.5) < 0.01

# %% [markdown]
# ## Two ways to read a pair
#
# **Two passes** (LXMERT; ViLBERT in its multi-task follow-up, Lu et al. 2020, "12-in-1", whose
# `vilbert_multi_task` code added NLVR2: the 2019 ViLBERT paper did not evaluate it; and our adaptation
# for VL-BERT). The model encodes the statement
# with the left image, then with the right image, as two ordinary rows of a batch. Rows come in the
# order `s0, s0, s1, s1, …` against images `left0, right0, left1, right1, …`; LXMERT's
# `src/tasks/nlvr2_model.py` builds exactly this (`sum(zip(sent, sent), ())`), vilbert-multi-task's
# `task_utils.py` repeats each statement twice. The two pooled vectors of a pair are then put side by
# side, (2P, D) → (P, 2D), and a classifier decides: LXMERT and ViLBERT use a small MLP
# (Linear(2D, 2D), GELU, LayerNorm, Linear(2D, 2)).
#
# We write the layout and the pair classifier here, and compare them with the package's.

# %%
def two_pass_rows(input_ids, left, right):
    """(P, T) statements, (P,) left and right image ids -> (2P, T) rows and (2P,) image ids."""
    rows = input_ids.repeat_interleave(2, dim=0)  # (2P, T): s0, s0, s1, s1, ...
    images = torch.stack([left, right], dim=1).flatten()  # (P, 2) -> (2P,): l0, r0, l1, r1, ...
    return rows, images


def pair_classifier(head, pooled):
    """(2P, D) pooled vectors, rows 2p and 2p+1 of pair p -> (P, 2) logits."""
    P, D = pooled.shape[0] // 2, pooled.shape[1]
    return head(pooled.reshape(P, 2 * D))  # (2P, D) -> (P, 2D): [left | right] per pair -> (P, 2)


b = pairs.take(test[:5])
rows, images = two_pass_rows(b["input_ids"], b["left"], b["right"])
assert torch.equal(rows, sm.pair_rows(b)["input_ids"]) and torch.equal(images, sm.pair_rows(b)["image"])
feats = torch.randn(5, 2, 4, 8)
ref_ids, ref_feats, _ = repeat_for_pairs(b["input_ids"], feats, torch.zeros(5, 2, 4, 4))
assert torch.equal(ref_ids, rows) and torch.equal(ref_feats[1], feats[0, 1])  # row 1 = pair 0's right image
head = torch.nn.Linear(16, 2)
pooled = torch.randn(10, 8)
assert torch.equal(pair_classifier(head, pooled), pair_logits(head, pooled, 5))
print("rows of pair 0:", rows[:2].tolist(), "images:", images[:4].tolist())

# %% [markdown]
# **One pass** (VisualBERT). The original (uclanlp/visualbert, `nlvr_dataset.py` and `modeling.py`)
# puts the statement and *both* images' regions in one sequence: `[CLS] statement [SEP]`, the left
# image's regions, the right image's regions. Nothing in a region's features says which image it came
# from, so each region gets a **visual token type**: 0 for the left image, 1 for the right. The pooled
# [CLS] goes to a Linear(D, 2). Each image keeps its own N slots, padding included, so a region is
# never counted in the wrong image.

# %%
def one_pass_regions(features, region_mask):
    """(P, 2, N, F) features, (P, 2, N) mask -> (P, 2N, F) features, (P, 2N) mask, (P, 2N) visual token types."""
    P, _, N, F = features.shape
    types = torch.tensor([0, 1]).repeat_interleave(N).expand(P, 2 * N)  # (P, 2N): N zeros then N ones
    return features.reshape(P, 2 * N, F), region_mask.reshape(P, 2 * N), types


left_r, right_r = sm.regions({"image": b["left"]}), sm.regions({"image": b["right"]})
both_f, both_m = torch.stack([left_r[0], right_r[0]], 1), torch.stack([left_r[1], right_r[1]], 1)  # (P, 2, N, F), (P, 2, N)
mine, ref = one_pass_regions(both_f, both_m), pair_regions(both_f, both_m)
assert all(torch.equal(x, y) for x, y in zip(mine, ref))
print(f"one pass: {both_f.shape[2]} slots per image -> {mine[0].shape[1]} region tokens; types of pair 0:", mine[2][0].tolist())

# %% [markdown]
# **VL-BERT had no NLVR2 head**: its repository fine-tunes VQA, VCR and RefCOCO+ only. The course's
# `VLBERTForNLVR2` is **our adaptation**, after the "pair" setting UNITER published for single-stream
# models (Chen et al., 2020; ChenRocks/UNITER `model/nlvr2.py`, `UniterForNlvr2Paired`): two passes,
# the two pooled vectors concatenated, one Linear(2D, 2).
#
# | model | passes per pair | how the two images are told apart | classifier |
# |---|---|---|---|
# | VisualBERT | 1 | visual token type 0 / 1 | pooled [CLS] → Linear(D, 2) |
# | LXMERT | 2 | separate rows | [pooled left ; pooled right] → MLP |
# | ViLBERT (12-in-1) | 2 | separate rows | [pooled left ; pooled right] → MLP |
# | VL-BERT (ours, after UNITER) | 2 | separate rows | [pooled left ; pooled right] → Linear(2D, 2) |

# %% [markdown]
# ## Fine-tune VisualBERT live
#
# From the shipped checkpoint (notebook 10), the encoder copied into a fresh NLVR2 model; the new
# words' embedding rows (`twice`, `neither`, …) start fresh, every other row keeps its pretrained
# meaning. Cross-entropy on true/false, AdamW.

# %%
t = time.perf_counter()
model, accuracy, seconds = run.finetune_nlvr2_from(pre, sm, pairs, CFG["steps"], batch=CFG["batch"], lr=CFG["lr"],
                                                   seed=CFG["seed"])
blind = run.evaluate_nlvr2(model, sm, pairs, zero_image=True)
print(f"VisualBERT from the checkpoint: {accuracy:.1%} on the held-out pairs after {CFG['steps']} steps "
      f"({seconds:.0f} s); the same model with both images removed: {blind:.1%}")
assert blind == 0.5, "an image-blind model is right on exactly one copy of each sentence"
assert accuracy >= CFG["min_accuracy"]  # seeds 0-2 measured: see CFG

# %% [markdown]
# ### Each pair's answer depends only on its own two images
#
# Two checks on the fine-tuned model: shuffling the pairs of a batch shuffles the answers the same
# way, and replacing one pair's right image changes that pair's logits and no other's. A layout bug
# (statements tiled `s0, s1, s0, s1` instead of repeated, or one image's regions leaking into its
# neighbour's) breaks one of them.

# %%
with torch.no_grad():
    b = {k: v for k, v in pairs.take(test[:16]).items() if k != "labels"}
    base = sm.nlvr2_step(model, b).logits["nlvr2"]
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    shuffled = sm.nlvr2_step(model, {k: v[perm] for k, v in b.items()}).logits["nlvr2"]
    other = dict(b, right=b["right"].clone())
    other["right"][3] = b["right"][7] if b["right"][7] != b["right"][3] else b["right"][8]
    changed = sm.nlvr2_step(model, other).logits["nlvr2"]
moved = (changed - base).abs().amax(-1)
assert torch.allclose(shuffled, base[perm], atol=1e-5)
assert moved[3] > 1e-4 and torch.all(moved[torch.arange(16) != 3] < 1e-5)
print("largest change of each pair's logits after replacing pair 3's right image:", [f"{v:.1e}" for v in moved.tolist()])

# %% [markdown]
# A batch that does not come in twos is refused before any compute: here a two-pass model (LXMERT's
# NLVR2 model, fresh) gets three rows, then the right number of rows with the statements tiled
# `s0, s1` instead of repeated.

# %%
_, lx, _ = load_scene_checkpoint("lxmert")
lx_model = lx.nlvr2_model(len(pairs.vocab))
assert sentences[int(test[0])] == sentences[int(test[1])] != sentences[int(test[2])]
rows = lx.pair_rows(pairs.take(test[[0, 2]]))  # 4 rows: s0, s0, s1, s1 (held-out pairs 0 and 1 share a sentence, 0 and 2 do not)
feats, boxes, region_mask = lx.boxes(rows)
tiled = rows["input_ids"][[0, 2, 1, 3]]  # s0, s1, s0, s1
for what, ids, keep in (("three rows", rows["input_ids"][:3], slice(0, 3)), ("tiled statements", tiled, slice(0, 4))):
    try:
        lx_model(ids, feats[keep], boxes[keep], rows["attention_mask"][keep], region_mask[keep])
        raise AssertionError(f"{what}: accepted")
    except ValueError as err:
        print(f"{what} -> ValueError: {err}")

# %% [markdown]
# ### Where it fails
#
# Accuracy per kind of statement on the held-out pairs, against the same 50% line for every kind (the
# text alone decides nothing in any kind). What to see: which kinds of reasoning the model has learned
# and which it still guesses; the counts under the bars say how many held-out pairs each bar rests on.

# %%
pred = run.nlvr2_predictions(model, sm, pairs)
kind_of = {}
for p in test.tolist():
    s = sentences[p]
    kind_of[p] = ("twice as many" if "twice" in s else "more than" if " more " in s else "both" if s.startswith("both")
                  else "exactly one of" if s.startswith("exactly one") else "neither" if s.startswith("neither")
                  else "in total" if s.endswith("in total") else "count one image")
right = (pred == pairs.labels[test]).numpy()
per_kind = {k: (float(np.mean([r for r, p in zip(right, test.tolist()) if kind_of[p] == k])),
                sum(kind_of[p] == k for p in test.tolist())) for k in sorted(set(kind_of.values()))}
fig, ax = plt.subplots(figsize=(8, 3.2))
ax.bar(list(per_kind), [100 * a for a, _ in per_kind.values()], color="tab:blue")
ax.axhline(50, color="grey", ls="--", label="statement only (50%)")
for i, (a, n) in enumerate(per_kind.values()):
    ax.text(i, 100 * a + 1, f"n={n}", ha="center", fontsize=8)
ax.set_ylabel("held-out accuracy (%)")
ax.set_ylim(0, 105)
ax.set_title("VisualBERT on visual reasoning, per kind of statement")
ax.legend(loc="lower right")
plt.xticks(rotation=20)
plt.tight_layout()
plt.show()
print({k: f"{a:.0%}" for k, (a, _) in per_kind.items()})

# %% [markdown]
# ## All four models, from the benchmark
#
# Fine-tuning the four models three times each takes minutes, not a notebook's minute, so
# `benchmarks/bench_compare.py` does it (the same 10,000 training pairs, the same steps, batch and
# learning rate for every model, seeds 0, 1, 2, from the checkpoint and from scratch) and the package
# ships its table with the date and machine.

# %%
cmp = comparison_results()
vals = cmp["values"]
print("bench_compare.py, measured", cmp["measured"])
print("fine-tuning steps per run:", sorted({v for (k, m, c), v in cmp["steps"].items() if m == "nlvr2_accuracy"}))
names = {"visualbert": "VisualBERT", "lxmert": "LXMERT", "vilbert": "ViLBERT", "vlbert": "VL-BERT"}
print(f"{'model':11s} {'from the checkpoint':>22s} {'from scratch':>16s} {'over 50%':>9s}")
for k, name in names.items():
    (m, s, n), (m0, s0, _) = vals[k, "nlvr2_accuracy", "pretrained"], vals[k, "nlvr2_accuracy", "scratch"]
    print(f"{name:11s} {m:15.1%} ± {s:4.1%} {m0:9.1%} ± {s0:4.1%} {100 * (m - 0.5):+8.1f}")

# %% [markdown]
# What to take from the table, checked below on the three seeds of every cell:
#
# * **Nothing learns this task from scratch in this budget.** Every from-scratch model stays near the
#   50% a statement-only model gets.
# * **The three checkpoints pretrained with image-text matching carry over.** VisualBERT, LXMERT and
#   ViLBERT were all pretrained to judge whether a caption fits an image from their pooled vectors
#   (ViLBERT from the product of its two streams' pooled vectors); visual reasoning asks the same kind
#   of question of a statement.
# * **VL-BERT does not, in our adaptation.** It stays at the statement-only level from its checkpoint
#   too. Its pretraining has no matching task (its authors dropped it), so its pooler starts fresh and its
#   [CLS] was never trained to judge a sentence against an image; that is our hypothesis for the gap,
#   not something this table isolates: VL-BERT's checkpoint also transfers least to VQA (notebook 16),
#   and its NLVR2 head is our adaptation, which its authors never ran. UNITER's one-pass "triplet"
#   setting is not built here.
#
# "Nothing learns from scratch" holds for this budget (600 steps on 10,000 pairs), not in general.

# %%
matched = [k for k in names if k != "vlbert"]  # the three pretrained with image-text matching
for k in names:
    assert vals[k, "nlvr2_accuracy", "pretrained"][2] == 3 and vals[k, "nlvr2_accuracy", "scratch"][2] == 3, "three seeds"
    assert abs(vals[k, "nlvr2_accuracy", "scratch"][0] - 0.5) < 0.06, "from scratch: near the statement-only 50%"
for k in matched:
    assert vals[k, "nlvr2_accuracy", "pretrained"][0] - 0.5 >= 0.2, f"{names[k]}: 20 points or more above statement only"
assert vals["vlbert", "nlvr2_accuracy", "pretrained"][0] - 0.5 < 0.1, "VL-BERT: near chance in our adaptation"
print(f"notebook time: {time.perf_counter() - T0:.0f} s")

# %% [markdown]
# ## Exercises
#
# **Exercise 1 — the pair classifier of the two-pass models.** `pooled` is (2P, D): rows 2p and 2p+1
# are pair p's left and right image, each encoded with the pair's statement. Put each pair's two
# vectors side by side (left first) and apply a linear layer with `weight` (2, 2D) and `bias` (2,).
# Return the (P, 2) logits.

# %%
def my_pair_classifier(pooled, weight, bias):
    ### BEGIN SOLUTION
    P, D = pooled.shape[0] // 2, pooled.shape[1]
    return pooled.reshape(P, 2 * D) @ weight.T + bias
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.nlvr2 import check_pair_classifier

check_pair_classifier(my_pair_classifier)

# %% [markdown]
# **Exercise 2 — VisualBERT's one pass.** `features` (P, 2, N, F) and `region_mask` (P, 2, N) hold
# each pair's left and right image. Return the one-pass layout: features (P, 2N, F) with the left
# image's N slots first, the mask (P, 2N) in the same order, and the visual token types (P, 2N),
# int64: 0 on the left image's slots, 1 on the right's, padding slots included.

# %%
def my_one_pass_regions(features, region_mask):
    ### BEGIN SOLUTION
    P, _, N, F = features.shape
    types = torch.cat([torch.zeros(N, dtype=torch.long), torch.ones(N, dtype=torch.long)]).expand(P, 2 * N)
    return features.reshape(P, 2 * N, F), region_mask.reshape(P, 2 * N), types
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.nlvr2 import check_one_pass_regions

check_one_pass_regions(my_one_pass_regions)

# %% [markdown]
# **Exercise 3 — how far can the text alone go?** Given the examples' `sentences` and `labels` (0/1),
# return the highest accuracy a classifier that sees only the sentence can reach on them: it must give
# every copy of a sentence the same answer, so for each distinct sentence it gets the larger of its
# true and false counts right.

# %%
def my_statement_only_ceiling(sentences, labels):
    ### BEGIN SOLUTION
    counts: dict = {}
    for s, y in zip(sentences, labels):
        c = counts.setdefault(s, [0, 0])
        c[int(y)] += 1
    return sum(max(c) for c in counts.values()) / len(labels)
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.nlvr2 import check_statement_only_ceiling

check_statement_only_ceiling(my_statement_only_ceiling)

# %% [markdown]
# ## Open questions
# Answer each in the cell that asks it; an instructor grades them by hand.

# %% [markdown] tags=["manual", "points=1"]
# **Question 1.** Suppose the pairs were made by drawing a label first, then any statement with that
# label. Statements like "the left image has twice as many stars as the right image" would then be
# false far more often than true. What would a statement-only model have learned from that, and why does pairing each
# sentence with a true and a false pair remove it?
#
# ### BEGIN SOLUTION
# *Rubric.* It would learn the kind's prior ("twice as many" → false), scoring well above 50% without
# looking at the images, so a model's gain over it would understate how much it used the images and a
# text-only score would look like reasoning. With each sentence once true and once false, any function
# of the sentence is right on exactly one copy: the prior carries no information and the baseline is 50%.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 2.** VisualBERT reads both images in one pass; LXMERT and ViLBERT in two. Name one thing
# the one-pass model can do that the two-pass ones cannot, and one cost of it.
#
# ### BEGIN SOLUTION
# *Rubric.* In one pass, words and regions of both images attend to each other in every layer, so a
# comparison ("more circles in the left image") can be computed inside the encoder; the two-pass
# models compare only at the end, through two pooled vectors. The cost: the sequence is longer (2N
# regions) and attention grows with its square, and the model must learn from the visual token types
# which region belongs to which image.
# ### END SOLUTION
