# %% [markdown]
# # 12 · ViLBERT: two streams that talk through co-attention

# %% [markdown]
# **Why.** ViLBERT (Lu et al., NeurIPS 2019) keeps language and vision in two separate transformers —
# a BERT for the words, a narrower transformer for the image regions — and lets them exchange
# information only in *co-attentional* layers (Co-TRM): the regions' queries look at the words' keys
# and values, and the words' queries look at the regions'. This notebook builds the original
# architecture with the original checkpoint's parameter names (`vlp_course.models.vilbert`), pretrains
# a small one briefly on the course's synthetic scenes with ViLBERT's three objectives (masked words, masked
# regions with a KL loss to the detector's class distribution, image–caption alignment), loads a checkpoint pretrained for longer, looks at its co-attention maps,
# and fine-tunes it on VQA against a question-only baseline.

# %%
import inspect
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from vlp_course.models.scene_checkpoints import (
    Recipe, adapter, evaluate_pretraining, load_scene_checkpoint, pretrain, scene_tensors,
    vqa_against_question_only,
)
from vlp_course.models.vilbert import ViLBERTConfig, ViLBERTForPretraining, expected_state_dict_keys, layer_schedule

T0 = time.perf_counter()
CFG = dict(
    pretrain_steps=100, pretrain_lr=2e-3,  # the short from-scratch run (budgets in steps, not seconds)
    vqa_steps=300, vqa_batch=64, min_margin=0.08,  # the VQA fine-tune from the checkpoint; the asserted gain
    batch=64, seed=0,
)
recipe = Recipe(kind="vilbert")
print(recipe)

# %% [markdown]
# ## 1. The architecture, drawn from the config
#
# The original `bert_base_6layer_6conect.json`: a 12-layer BERT for the text (768 wide), a 6-layer
# visual stream (1024 wide, feed-forward 1024), 6 Co-TRMs (1024 wide, 8 heads). `v_biattention_id`
# and `t_biattention_id` say *before which layer* of each stream the k-th Co-TRM sits.
# We build the full-size model on PyTorch's `meta` device (shapes only, no memory) to check the
# parameter count and the state-dict keys of the released checkpoint.

# %%
full_cfg = ViLBERTConfig()
with torch.device("meta"):
    full = ViLBERTForPretraining(full_cfg)
n_params = sum(p.numel() for p in full.parameters())
keys = list(full.state_dict())
print(f"ViLBERT 6/6 pretraining model: {n_params / 1e6:.1f} M parameters, {len(keys)} state-dict keys")
assert len(keys) == 533 and set(keys) == set(expected_state_dict_keys(full_cfg))
print([k for k in keys if k.startswith("bert.encoder.c_layer.0.")][:14])


# %%
def draw_schedule(cfg, ax, title):
    """One lane per stream; a bridge for every Co-TRM, in the order the encoder runs them."""
    t = v = 0
    for step, (kind, i) in enumerate(layer_schedule(cfg)):
        if kind == "t":
            ax.add_patch(plt.Rectangle((step, 1.6), 0.8, 0.6, color="tab:blue"))
            ax.text(step + 0.4, 1.9, f"T{i}", ha="center", va="center", color="white", fontsize=7)
        elif kind == "v":
            ax.add_patch(plt.Rectangle((step, 0.2), 0.8, 0.6, color="tab:orange"))
            ax.text(step + 0.4, 0.5, f"V{i}", ha="center", va="center", color="white", fontsize=7)
        else:
            ax.add_patch(plt.Rectangle((step, 0.2), 0.8, 2.0, color="tab:green", alpha=0.7))
            ax.text(step + 0.4, 1.2, f"C{i}", ha="center", va="center", fontsize=7)
    ax.set_xlim(-0.5, len(layer_schedule(cfg)) + 0.5)
    ax.set_ylim(0, 2.4)
    ax.set_yticks([0.5, 1.9], ["vision", "text"])
    ax.set_xlabel("order of execution")
    ax.set_title(title)


fig, axes = plt.subplots(2, 1, figsize=(11, 4))
draw_schedule(full_cfg, axes[0], "bert_base_6layer_6conect: v ids [0..5], t ids [6..11]")
draw_schedule(ViLBERTConfig.eight_layer(), axes[1], "bert_base_8layer_8conect: v ids [0..7], t ids [4..11]")
plt.tight_layout()
plt.show()
sched = layer_schedule(full_cfg)
assert sched[:7] == [("t", i) for i in range(6)] + [("c", 0)]  # six BERT layers, then the first Co-TRM

# %% [markdown]
# The visual embedding enters the first Co-TRM directly: the text has been through six BERT layers
# (pretrained on text), the regions through none. After each Co-TRM, one ordinary layer per stream
# gives each modality its own self-attention again.
#
# ## 2. Data: scenes, captions and region features
#
# ViLBERT reads region features from a Faster R-CNN detector: per region a feature vector, a box and
# the detector's class distribution. As in notebooks 10 and 11, the features here are *oracles* (the
# one-hot shape, colour and size of each ground-truth object plus noise) and the "detector
# distribution" over the six shapes is a softmax of noisy one-hot scores. `prepare_regions` adds
# what ViLBERT's loaders add: the 5-d location `[x1/W, y1/H, x2/W, y2/H, area/(W·H)]` and the global
# image token (mean feature, location `[0, 0, 1, 1, 1]`) as region 0.

# %%
st = scene_tensors(recipe)
sm = adapter(st, recipe)
regions = sm.regions({"image": torch.arange(3)})
print("features", tuple(regions["features"].shape), "locations", tuple(regions["locations"].shape))
print("image 0: global token location", regions["locations"][0, 0].tolist(), "| region 1:", regions["locations"][0, 1].numpy().round(3))
print(f"{len(st.cap_ids)} captions, {len(st.q_ids)} questions, {len(st.vocab)} words, {len(st.answers)} answers")
assert regions["locations"][0, 0].tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]

# %% [markdown]
# ## 3. Pretraining with ViLBERT's three objectives
#
# Per batch: half of the captions are swapped for a caption of another image (`is_matched` = 0; the
# original calls this `is_next` = 1, and the converters flip the head at the checkpoint boundary).
# 15% of the words are masked BERT-style, 15% of the regions ViLBERT-style (90% zeroed, 10% kept;
# never the global token), and the masked-region loss is the KL divergence to the detector's
# distribution. As in ViLBERT's `--objective 1`, the masked losses of a swapped pair do not count
# (`masked_loss_on_mismatched=False`). The small model has 2 text layers, 2 visual layers and 2
# Co-TRMs, the first after one text layer (as the original puts the text layers first):

# %%
torch.manual_seed(CFG["seed"])
model = sm.pretraining_model()
print(layer_schedule(model.config), f"{sum(p.numel() for p in model.parameters()):,} parameters")
print(inspect.getsource(type(sm).pretrain_losses))

# %%
t = time.perf_counter()
hist = pretrain(model, sm, CFG["pretrain_steps"], batch=CFG["batch"], lr=CFG["pretrain_lr"], warmup=10, seed=CFG["seed"], device=device)
print(f"pretraining: {CFG['pretrain_steps']} steps in {time.perf_counter() - t:.1f} s")
hist.plot(["mlm", "region_kl", "itm"], window=10, title="ViLBERT pretraining from scratch")
plt.show()
first = {k: float(np.mean(v[:10])) for k, v in hist.train.items()}
last = {k: float(np.mean(v[-10:])) for k, v in hist.train.items()}
print({k: (round(first[k], 3), round(last[k], 3)) for k in first})
assert last["mlm"] < 0.8 * first["mlm"] and last["region_kl"] < 0.9 * first["region_kl"]

# %% [markdown]
# Masked words and masked regions are learned within a few dozen steps; the alignment task stays at
# chance in a run this short, since a word must first find *its* region.
#
# ## A checkpoint pretrained for longer
#
# The course ships the same model pretrained for thousands of steps with the same recipe
# (`data/vilbert_scenes.safetensors`, SHA-256 checked; `python -m vlp_course.models.scene_checkpoints
# --model vilbert` reproduces it). Its metadata holds the recipe, the vocabulary and the curves.

# %%
pre, sm_ckpt, meta = load_scene_checkpoint("vilbert")
assert sm_ckpt.st.vocab.itos == st.vocab.itos, "the checkpoint's vocabulary is the one built above"
curves = json.loads(meta["history"])
fig, axes = plt.subplots(1, 3, figsize=(10, 2.6))
for ax, k in zip(axes, ["mlm", "region_kl", "itm"]):
    ax.plot(curves["step"], curves[k]); ax.set_title(k + " (training)", fontsize=9); ax.set_xlabel("step")
axes[2].axhline(np.log(2), color="grey", ls=":")
plt.tight_layout(); plt.show()
held_out = evaluate_pretraining(pre.to(device), sm)
scratch = evaluate_pretraining(model, sm)
print("held-out captions | after the short run:", {k: round(v, 3) for k, v in scratch.items()})
print("                  | checkpoint:          ", {k: round(v, 3) for k, v in held_out.items()})
assert held_out["mlm"] < scratch["mlm"] and held_out["region_kl"] < scratch["region_kl"]

# %% [markdown]
# ## 4. Co-attention maps
#
# `output_attentions=True` returns, for every Co-TRM, the regions→words weights (B, H, N, T) and
# the words→regions weights (B, H, T, N). Below: the last Co-TRM of the pretrained checkpoint, averaged over
# heads, for a caption of a held-out image. Row 0 of the regions is the global image token.

# %%
i = st.n_train
row = int(torch.nonzero(st.cap_image == i)[0])
cap = st.ds.captions[i][0]
ids = st.cap_ids[row:row + 1]
r = sm.regions({"image": torch.tensor([i])})
with torch.no_grad():
    out = pre.to("cpu")(ids, r["features"], r["locations"], attention_mask=st.cap_mask[row:row + 1],
                        image_attention_mask=r["image_attention_mask"], output_attentions=True)
v2t, t2v = (a[0].mean(0) for a in out["co_attentions"][-1])  # (N, T), (T, N)
n_words = int(st.cap_mask[row].sum())
words = st.vocab.decode(ids[0, :n_words].tolist())
n_reg = int(r["image_attention_mask"][0].sum())
reg_names = ["global"] + [o.describe() for o in st.ds.scenes[i].objects][: n_reg - 1]
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
axes[0].imshow(st.ds.scenes[i].image)
axes[0].set_title(cap, fontsize=8)
axes[1].imshow(t2v[:n_words, :n_reg].numpy(), cmap="viridis")
axes[1].set_yticks(range(n_words), words, fontsize=7)
axes[1].set_xticks(range(n_reg), reg_names, rotation=60, fontsize=7)
axes[1].set_title("words → regions")
axes[2].imshow(v2t[:n_reg, :n_words].numpy(), cmap="viridis")
axes[2].set_xticks(range(n_words), words, rotation=60, fontsize=7)
axes[2].set_yticks(range(n_reg), reg_names, fontsize=7)
axes[2].set_title("regions → words")
plt.tight_layout()
plt.show()
assert torch.allclose(t2v[:n_words, :n_reg].sum(1), torch.ones(n_words), atol=1e-4)  # padded regions get no weight

# %% [markdown]
# ## 5. VQA: fine-tune and compare with a question-only model
#
# ViLBERT's VQA head `vil_prediction` (Linear, GELU, LayerNorm, Linear) reads the fused pooled vector
# (the ReLU-pooled [CLS] times the ReLU-pooled global token); the loss is binary cross-entropy with
# the soft scores, times the number of answers. The baseline is the same model, from the same
# checkpoint, fine-tuned and tested with the image zeroed (features, locations and the number of
# regions).

# %%
results, moved = vqa_against_question_only(pre, sm, CFG["vqa_steps"], name="ViLBERT", batch=CFG["vqa_batch"],
                                          seed=CFG["seed"], device=device)
print(f"{len(moved['loaded'])} tensors from the checkpoint; {len(moved['new'])} new (the task heads)")
plt.figure(figsize=(5, 2.4))
plt.barh(list(results), [100 * v for v in results.values()], color=["grey", "tab:orange", "lightgrey"])
plt.xlabel("VQA accuracy on held-out images (%)"); plt.xlim(0, 100)
plt.show()
base, full = results["question only (image zeroed)"], results["ViLBERT (with the image)"]
print(f"with the image {full:.1%}, question only {base:.1%}, majority answer {results['majority answer']:.1%}")
assert full > base + CFG["min_margin"], f"the model must use the image: {CFG['min_margin']:.0%} above the question-only model"
print(f"total time {time.perf_counter() - T0:.0f} s")

# %% [markdown]
# ## Exercises
#
# **Exercise 1 — one direction of the co-attention.** Given a Co-TRM's `BiAttention` module `bi`,
# compute what the regions read from the words: queries `bi.query1(visual)`, keys `bi.key2(text)`,
# values `bi.value2(text)`, split into `bi.num_heads` heads of `bi.head_size`, scaled dot products,
# padded words (`text_mask` 0) excluded, softmax over the words. Return the context (B, N, Db) with
# the heads concatenated again, and the weights (B, H, N, T).

# %%
import math


def coattention_regions_to_words(bi, visual, text, text_mask):
    ### BEGIN SOLUTION
    B, N, _ = visual.shape
    T = text.shape[1]
    H, d = bi.num_heads, bi.head_size
    q = bi.query1(visual).view(B, N, H, d).transpose(1, 2)  # (B, H, N, d)
    k = bi.key2(text).view(B, T, H, d).transpose(1, 2)  # (B, H, T, d)
    v = bi.value2(text).view(B, T, H, d).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # (B, H, N, T)
    scores = scores.masked_fill(text_mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min)
    weights = scores.softmax(-1)
    ctx = (weights @ v).transpose(1, 2).reshape(B, N, H * d)
    return ctx, weights
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.models2 import check_coattention

check_coattention(coattention_regions_to_words)

# %% [markdown]
# **Exercise 2 — the layer schedule.** Write the original interleaving rule: for the k-th Co-TRM, run
# the visual layers from where the last step stopped up to `v_ids[k] - 1`, then the text layers up
# to `t_ids[k] - 1`, then `("c", k)`; after the last Co-TRM, the remaining visual then text layers.
# Return a list of `("v", j)`, `("t", i)`, `("c", k)`.

# %%
def schedule(v_ids, t_ids, num_visual_layers, num_text_layers):
    ### BEGIN SOLUTION
    out, v0, t0 = [], 0, 0
    for k, (v1, t1) in enumerate(zip(v_ids, t_ids)):
        out += [("v", j) for j in range(v0, v1)] + [("t", i) for i in range(t0, t1)] + [("c", k)]
        v0, t0 = v1, t1
    return out + [("v", j) for j in range(v0, num_visual_layers)] + [("t", i) for i in range(t0, num_text_layers)]
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.models2 import check_layer_schedule

check_layer_schedule(schedule)

# %% [markdown]
# ## Open questions
#
# 1. The text stream starts from six BERT layers before any Co-TRM, the visual stream from none. Why might
#    the authors have put the co-attention late in the text stream and early in the visual one?
# 2. The masked-region loss divides by the number of masked regions. What happens in the original code
#    when a batch has none, and how does `region_kl_loss` avoid it?
# 3. NLVR2 encodes each image separately with the same sentence and concatenates the two fused vectors
#    (`ViLBERTForVLTasks.nlvr2`). What can this design not see that a single pass over both images could?
