# %% [markdown]
# # 12 · ViLBERT: two streams that talk through co-attention

# %% [markdown]
# **Why.** ViLBERT (Lu et al., NeurIPS 2019) keeps language and vision in two separate transformers —
# a BERT for the words, a narrower transformer for the image regions — and lets them exchange
# information only in *co-attentional* layers (Co-TRM): the regions' queries look at the words' keys
# and values, and the words' queries look at the regions'. This notebook builds the original
# architecture with the original checkpoint's parameter names (`vlp_course.models.vilbert`), pretrains
# a small one briefly on the course's synthetic scenes with ViLBERT's three objectives (masked words, masked
# multi-modal modelling — a KL loss to the detector's class distribution at the masked regions —
# and image–caption alignment), loads a checkpoint pretrained for longer, looks at its co-attention
# maps, and fine-tunes it on VQA against a question-only baseline.

# %%
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from vlp_course.models.convert import vilbert_original_keys
from vlp_course.models.vilbert import ViLBERTConfig, ViLBERTForPreTraining, global_image_token, layer_schedule, prepare_regions
from vlp_course.pretraining.regions import mask_regions
from vlp_course.recipes import run
from vlp_course.recipes.base import Recipe, scene_tensors
from vlp_course.recipes.shipped import adapter, load_scene_checkpoint

T0 = time.perf_counter()
CFG = dict(
    pretrain_steps=100, pretrain_lr=2e-3,  # the short from-scratch run (budgets in steps, not seconds)
    vqa_steps=300, vqa_batch=64, min_margin=0.25, min_accuracy=0.8,  # the VQA fine-tune from the checkpoint; the asserted gain (seeds 0-2: 81.7-84.4%, +28.6 to +31.0 points)
    labels=500, low_label_steps=100, low_label_batch=64,  # does pretraining help? (the reduced, live version)
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
    full = ViLBERTForPreTraining(full_cfg)
n_params = sum(p.numel() for p in full.parameters())
keys = list(full.state_dict())
print(f"ViLBERT 6/6 pretraining model: {n_params / 1e6:.1f} M parameters, {len(keys)} state-dict keys")
assert len(keys) == 533 and set(keys) == set(vilbert_original_keys(full_cfg))
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
# the detector's class distribution. As in notebooks 10 and 11, the course's stand-in detector
# (notebook 8) gives them: per object box a 128-d RoIAlign appearance vector and a distribution over
# the six shapes (the target of masked multi-modal modelling), extracted once and cached. `prepare_regions` adds
# what ViLBERT's loaders add: the 5-d location `[x1/W, y1/H, x2/W, y2/H, area/(W·H)]` and the global
# image token (mean feature, location `[0, 0, 1, 1, 1]`) as region 0.

# %%
st = scene_tensors(recipe)
sm = adapter(st, recipe)
S = st.image_size
feats, boxes, region_mask = sm.images({"image": torch.arange(3)})  # (3, N, F), (3, N, 4) pixels, (3, N)
regions = prepare_regions(feats, boxes, S, S, region_mask)
print("features", tuple(regions["features"].shape), "locations", tuple(regions["locations"].shape))
print("image 0: global token location", regions["locations"][0, 0].tolist(), "| region 1:", regions["locations"][0, 1].numpy().round(3))
print(f"{len(st.cap_ids)} captions, {len(st.q_ids)} questions, {len(st.vocab)} words, {len(st.answers)} answers")
assert regions["locations"][0, 0].tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]

# %% [markdown]
# ## 3. Pretraining with ViLBERT's three objectives
#
# Per batch: half of the captions are swapped for a caption of another image (`is_matched` = 0; the
# original calls this `is_next` = 1, and the converters flip the head at the checkpoint boundary).
# 15% of the words are masked BERT-style, 15% of the regions ViLBERT-style (90% zeroed, 10% kept),
# and the masked multi-modal loss (`mrm`) is the KL divergence from the detector's distribution at
# the masked regions.
#
# **Order matters: mask the regions first, then build the global token.** The original loader
# (`vilbert/datasets/concept_cap_dataset.py` of vilbert-multi-task) calls `random_region` and only
# then averages the features into the global token (`g_image_feat`). The other way round, the
# global token would be the mean of the *unmasked* features, and N × global − (sum of the visible
# regions) would hand back every hidden feature exactly.
#
# **Two original recipes.** The NeurIPS-19 code (jiasenlu/vilbert_beta, `BertForMultiModalPreTraining`)
# counts the masked-word and masked-region losses on every pair; the 12-in-1 code
# (vilbert-multi-task `train_concap.py --objective 1`, the command of its README) ignores them on
# swapped pairs, whose caption does not describe the image. **This notebook, and the shipped
# checkpoint, run the 12-in-1 recipe** (`masked_loss_on_mismatched=False`).
#
# The small model has 2 text layers, 2 visual layers and 2 Co-TRMs, with `v_biattention_id =
# t_biattention_id = [0, 1]`: a Co-TRM, then one layer of each stream, twice. (The original's config
# requires `max(t_biattention_id) < num_hidden_layers`, so with as many Co-TRMs as text layers the
# first Co-TRM comes before the first text layer.)

# %%
torch.manual_seed(CFG["seed"])
model = sm.pretraining_model()
print(layer_schedule(model.config), f"{sum(p.numel() for p in model.parameters()):,} parameters")
assert layer_schedule(model.config) == [("c", 0), ("v", 0), ("t", 0), ("c", 1), ("v", 1), ("t", 1)]


# %% [markdown]
# One pretraining step, in the order every model's recipe follows (pair, mask words, lay out regions,
# mask regions, model, losses). A batch of `st.pretrain_batch` holds the captions as shown
# (`input_ids`, `attention_mask`), each caption's image (`image`) and `is_matched`. The model returns a
# `VLOutput`: `losses["mlm"]`, `losses["mrm"]`, `losses["itm"]` and their sum `loss`.

# %%
def pretrain_step(model, batch, generator):
    # 1. pair: batch["input_ids"] is a caption of batch["image"] (is_matched 1) or of another image (0)
    # 2. mask words: 15% of the real words; of those 80% [MASK], 10% a random word, 10% kept
    input_ids, mlm_labels = sm.mask_words(batch, generator)
    # 3. lay out regions: the N regions' features (B, N, F), pixel boxes (B, N, 4) and keep mask (B, N)
    feats, boxes, region_mask = sm.images(batch)
    # 4. mask regions: 15% of the real regions; of those 90% zeroed, 10% kept (random_region) ...
    masking = mask_regions(feats, scheme="vilbert", region_mask=region_mask, generator=generator)
    #    ... then the global token from the MASKED features, and the 5-d locations
    regions = prepare_regions(masking.features, boxes, S, S, region_mask)  # (B, N+1, F), (B, N+1, 5)
    masked_regions = torch.cat([torch.zeros_like(masking.selected[:, :1]), masking.selected], 1)  # (B, N+1)
    probs = sm.take("det_probs", batch)  # (B, N, C): the detector's class distribution
    region_targets = torch.cat([torch.zeros_like(probs[:, :1]), probs], 1)  # (B, N+1, C); row 0 is not read
    # 5. model -> losses: MLM + KL at the masked regions (both on matched pairs only) + alignment
    return model(input_ids, regions["features"], regions["locations"], attention_mask=batch["attention_mask"],
                 visual_attention_mask=regions["image_attention_mask"], mlm_labels=mlm_labels,
                 is_matched=batch["is_matched"], masked_regions=masked_regions, region_targets=region_targets)


# %% [markdown]
# The course package holds the same step (`ViLBERTAdapter.pretrain_step` in
# `vlp_course/recipes/vilbert.py`), which the training loop below calls. On one batch, with the same
# random generator for the word and region masking, the two give the same losses:

# %%
batch = st.pretrain_batch(0, 64, seed=CFG["seed"])
with torch.no_grad():
    ours = pretrain_step(model, batch, torch.Generator().manual_seed(0))
    package = sm.pretrain_step(model, batch, torch.Generator().manual_seed(0))
print({k: round(float(v), 4) for k, v in ours.losses.items()}, "| loss", round(float(ours.loss), 4))
for k in ("mlm", "mrm", "itm"):
    assert torch.allclose(ours.losses[k], package.losses[k], atol=1e-6), (k, ours.losses[k], package.losses[k])
# before training the matching head is at chance
assert abs(float(ours.losses["itm"]) - np.log(2)) < 0.1

# %% [markdown]
# What can the model still read about a masked region? On the same batch, take the rows whose masked
# regions were all zeroed, and compute N × global − (sum of the visible regions), once with the
# global token built after masking (the recipe) and once before (the wrong order):

# %%
feats, boxes, region_mask = sm.images(batch)
masking = mask_regions(feats, scheme="vilbert", region_mask=region_mask, generator=torch.Generator().manual_seed(0))
real = region_mask.bool()
n_real = real.sum(1, keepdim=True).float()  # (B, 1)
zeroed = masking.selected & (masking.features.abs().sum(-1) == 0)  # (B, N)
rows = zeroed.any(1) & ~(masking.selected & ~zeroed).any(1)
visible_sum = (masking.features * (real & ~masking.selected)[..., None]).sum(1)  # (B, F)
hidden = (feats * zeroed[..., None]).sum(1)  # the features the masking hid
after, _ = global_image_token(masking.features, region_mask)  # the recipe
before, _ = global_image_token(feats, region_mask)  # the wrong order
err_after = (n_real * after[:, 0] - visible_sum - hidden)[rows].abs().max()
err_before = (n_real * before[:, 0] - visible_sum - hidden)[rows].abs().max()
print(f"{int(rows.sum())} rows; largest error recovering the hidden features: global token after masking "
      f"{float(err_after):.2f}, before masking {float(err_before):.1e}")
assert err_before < 1e-4 and err_after > 0.5  # before: recovered exactly; after: nothing to recover

# %%
t = time.perf_counter()
hist = run.pretrain(model, sm, CFG["pretrain_steps"], batch=CFG["batch"], lr=CFG["pretrain_lr"], warmup=10, seed=CFG["seed"], device=device)
print(f"pretraining: {CFG['pretrain_steps']} steps in {time.perf_counter() - t:.1f} s")
hist.plot(["mlm", "mrm", "itm"], window=10, title="ViLBERT pretraining from scratch")
plt.show()
first = {k: float(np.mean(v[:10])) for k, v in hist.train.items()}
last = {k: float(np.mean(v[-10:])) for k, v in hist.train.items()}
print({k: (round(first[k], 3), round(last[k], 3)) for k in first})
# the mrm loss of a model that knows only how often each class occurs: predict the class frequencies
train_regions = st.region_mask[: st.n_train].bool()
p_det = st.det_probs[: st.n_train][train_regions]  # (R, C)
prior_kl = float((p_det * (p_det.clamp_min(1e-12).log() - p_det.mean(0).log())).sum(-1).mean())
print(f"mrm of the class-frequency prediction: {prior_kl:.3f}")
assert last["mlm"] < 0.8 * first["mlm"] and last["mrm"] < 0.95 * first["mrm"] and last["mrm"] < prior_kl + 0.03

# %% [markdown]
# Masked words are learned within a few dozen steps. The masked-region loss only falls to that of a
# model that predicts the class frequencies: a zeroed region's shape is no longer in the global token,
# so it must be read from the caption and the box, which takes longer. The alignment task stays at
# chance in a run this short, since a word must first find *its* region.
#
# ## A checkpoint pretrained for longer
#
# The course ships the same model pretrained for thousands of steps with the same recipe
# (`vlp_course/shipped/vilbert_scenes.safetensors`, SHA-256 checked; `python -m vlp_course.recipes.shipped
# --model vilbert` reproduces it). Its metadata holds the recipe, the vocabulary and the curves.

# %%
pre, sm_ckpt, meta = load_scene_checkpoint("vilbert")
assert sm_ckpt.st.vocab.itos == st.vocab.itos, "the checkpoint's vocabulary is the one built above"
curves = json.loads(meta["history"])
fig, axes = plt.subplots(1, 3, figsize=(10, 2.6))
for ax, k in zip(axes, ["mlm", "mrm", "itm"]):
    ax.plot(curves["step"], curves[k], label="loss"); ax.set_title(k + " (training)", fontsize=9); ax.set_xlabel("step")
    ax.set_ylabel("loss (mean of 50 steps)", fontsize=8)
axes[2].axhline(np.log(2), color="grey", ls=":", label="chance, ln 2"); axes[2].legend(fontsize=7)
plt.tight_layout(); plt.show()
held_out = run.evaluate_pretraining(pre.to(device), sm)
scratch = run.evaluate_pretraining(model, sm)
print("held-out captions | after the short run:", {k: round(v, 3) for k, v in scratch.items()})
print("                  | checkpoint:          ", {k: round(v, 3) for k, v in held_out.items()})
assert held_out["mlm"] < scratch["mlm"] and held_out["mrm"] < scratch["mrm"]

# %% [markdown]
# ## 4. Co-attention maps
#
# `output_attentions=True` returns, for every Co-TRM, the regions→words weights (B, H, N, T) and
# the words→regions weights (B, H, T, N). Below: the last Co-TRM of the pretrained checkpoint, averaged over
# heads, for a caption of a held-out image. Region 0 is the global image token.
#
# **How to read it.** Each row of a map is one softmax: top right, a word's attention over the
# regions (a row sums to 1 over the N regions, so a word that ignored the image would give each
# 1/N); bottom, a region's attention over the words. Each map has its own colour bar.
#
# **What to look for.** In this checkpoint most words spread their attention nearly evenly over the
# regions; the rows that stand out are function words ("a", "dark", `[CLS]`) leaning on one region,
# not colour or shape words on their own object. In the other direction the regions, the global
# token most of all, attend to the shape nouns ("cross", "triangle") — but not to *their own* noun
# (the printed lines below measure it). The model has learned which words carry the image's content,
# not yet which region each word names; attention weights show what is mixed in, not a grounding.

# %%
i = st.n_train
row = int(torch.nonzero(st.cap_image == i)[0])
cap = st.ds.captions[i][0]
ids = st.cap_ids[row:row + 1]
r = sm.regions(*sm.images({"image": torch.tensor([i])}))
with torch.no_grad():
    out = pre.to("cpu")(ids, r["features"], r["locations"], attention_mask=st.cap_mask[row:row + 1],
                        visual_attention_mask=r["image_attention_mask"], output_attentions=True)
v2t, t2v = (a[0].mean(0) for a in out.encoder["co_attentions"][-1])  # (N, T), (T, N)
n_words = int(st.cap_mask[row].sum())
words = st.vocab.decode(ids[0, :n_words].tolist())
n_reg = int(r["image_attention_mask"][0].sum())
reg_names = ["global"] + [o.describe() for o in st.ds.scenes[i].objects][: n_reg - 1]
reg_names = [f"{k}: {name}" for k, name in enumerate(reg_names)]
fig = plt.figure(figsize=(11, 8.5))
grid = fig.add_gridspec(2, 2, width_ratios=[1, 1.3], height_ratios=[1.5, 1])
a_img, a_t2v, a_v2t = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
a_img.imshow(st.ds.scenes[i].image)
for k, (x1, y1, x2, y2) in enumerate(st.ds.scenes[i].boxes()[: n_reg - 1]):
    a_img.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.5, color="white"))
    a_img.text(x1 + 1, y1 + 4, str(k + 1), color="white", fontsize=9, fontweight="bold")
a_img.set_title(cap, fontsize=8, wrap=True); a_img.axis("off")
im = a_t2v.imshow(t2v[:n_words, :n_reg].numpy(), cmap="viridis", vmin=0, aspect="auto")
a_t2v.set_yticks(range(n_words), words, fontsize=8)
a_t2v.set_xticks(range(n_reg), reg_names, rotation=30, ha="right", fontsize=8)
a_t2v.set_title("words → regions (each row sums to 1)", fontsize=10)
fig.colorbar(im, ax=a_t2v, label="attention weight")
im = a_v2t.imshow(v2t[:n_reg, :n_words].numpy(), cmap="viridis", vmin=0, aspect="auto")
a_v2t.set_xticks(range(n_words), words, rotation=45, ha="right", fontsize=8)
a_v2t.set_yticks(range(n_reg), reg_names, fontsize=8)
a_v2t.set_title("regions → words (each row sums to 1)", fontsize=10)
fig.colorbar(im, ax=a_v2t, label="attention weight", pad=0.01)
fig.suptitle(f"ViLBERT co-attention: last Co-TRM, {pre.config.bi_num_attention_heads} heads averaged", fontsize=11)
plt.tight_layout()
plt.show()
for k in range(n_reg):
    top = int(v2t[k, :n_words].argmax())
    print(f"region {reg_names[k]:24s} attends most to {words[top]!r} ({float(v2t[k, top]):.2f})")
print("largest word -> region weight:", round(float(t2v[:n_words, :n_reg].max()), 2), f"(uniform 1/N = {1 / n_reg:.2f})")
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
results, moved, seconds, qa = run.vqa_against_question_only(pre, sm, CFG["vqa_steps"], name="ViLBERT",
                                                            batch=CFG["vqa_batch"], seed=CFG["seed"], device=device)
print(f"{len(moved['loaded'])} tensors from the checkpoint; {len(moved['new'])} new (the task heads)")
for label, acc in results.items():
    took = f" ({CFG['vqa_steps']} fine-tuning steps in {seconds[label]:.0f} s)" if label in seconds else ""
    print(f"{label:32s} {acc:6.1%}{took}")
plt.figure(figsize=(5, 2.4))
plt.barh(list(results), [100 * v for v in results.values()], color=["grey", "tab:orange", "lightgrey"])
plt.xlabel("VQA accuracy on held-out images (%)"); plt.xlim(0, 100)
plt.show()
base, full = results["question only (image zeroed)"], results["ViLBERT (with the image)"]
print(f"with the image {full:.1%}, question only {base:.1%}, majority answer {results['majority answer']:.1%}")
assert full > base + CFG["min_margin"], f"the model must use the image: {CFG['min_margin']:.0%} above the question-only model"
assert full > CFG["min_accuracy"], f"with the detector's features ViLBERT answers above {CFG['min_accuracy']:.0%} (81.7% when written)"

# %% [markdown]
# **By answer type.** VQA reports its accuracy per answer type: yes/no questions are where the
# question-only model is strongest; counting and naming a colour or a shape need the image. The table
# gives, per type, the fine-tuned model's accuracy with the image and the same model's when the
# image is zeroed at test time: where the two agree, it answers from the question alone. Below, one
# question the model got wrong, drawn on its image.

# %%
from vlp_course.viz import show_vqa_answer

preds, by_type = run.answer_types(qa, sm)
print(f"{'answer type':12s} {'questions':>9s} {'with the image':>15s} {'same model, image zeroed':>25s}")
for kind, (acc, zeroed, n) in by_type.items():
    print(f"{kind:12s} {n:9d} {acc:15.1%} {zeroed:25.1%}")
assert abs(by_type["all"][0] - full) < 1e-9
wrong = next(p for p in preds if p["accuracy"] == 0 and p["answer_type"] != "yes/no")
show_vqa_answer(st.ds.scenes.images[wrong["image"]], wrong)
plt.show()

# %% [markdown]
# ## Does pretraining help?
#
# The comparison above starts both models from the same checkpoint: it shows that the image helps,
# not that *pretraining* does. For that, fine-tune from the checkpoint and from scratch with the
# same labels and steps, where pretraining should matter most: few labels (500 questions).
# `benchmarks/bench_learning.py` measures it for the four models with three seeds and a control
# (a checkpoint pretrained on captions shown with the wrong scenes); this is its reduced version.

# %%
low = run.pretrained_against_scratch(pre, sm, CFG["low_label_steps"], labels=CFG["labels"],
                           batch=CFG["low_label_batch"], seed=CFG["seed"], device=device)
for name, acc in low.items():
    print(f"{CFG['labels']} labels, {CFG['low_label_steps']} steps, {name:20s} {acc:.1%}")
gain = low["from the checkpoint"] - low["from scratch"]
print(f"gain from pretraining: {100 * gain:+.1f} points")
assert gain > 0, "the text below reports a gain from pretraining"

# %% [markdown]
# One seed is one draw. The full benchmark, with three seeds and the wrong-scene control, ships with
# the package (`vlp_course/shipped/learning.csv`, written by `benchmarks/bench_learning.py`, with
# the date and the machine it was measured on):

# %%
from vlp_course.recipes.shipped import format_learning_results, learning_results

bench = learning_results("vilbert")
print(format_learning_results(bench))
c = {k: v[0] for k, v in bench["conditions"].items()}  # the means
assert c["pretrained"] > c["scratch"] + 0.1, "the text below: more than ten points over scratch"
assert c["wrong_scenes"] < c["scratch"] - 0.2, "the text below: the control falls far below scratch"
assert abs(c["wrong_scenes"] - results["majority answer"]) < 0.03, "the text below: about the majority answer's accuracy"
print(f"total time {time.perf_counter() - T0:.0f} s")

# %% [markdown]
# **What the numbers say.** Here pretraining helps: with the same 500 labels and the same steps, the
# fine-tune from the checkpoint is above the one from scratch, live and in the three-seed table
# (more than ten points). ViLBERT's checkpoint is also one whose matching works well (about 80%
# on held-out captions, section 3), and its masked-region task asks each hidden region's class from
# the words. The control is striking: pretrained on captions shown with the wrong scenes, the
# model learns that the image is noise, and fine-tuning from it ends far *below* scratch, at about the
# accuracy of always giving the most frequent answer (printed with the VQA results above).
# Pretraining on misaligned pairs is worse than none.

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
from vlp_course.exercises.vilbert import check_coattention

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
from vlp_course.exercises.vilbert import check_layer_schedule

check_layer_schedule(schedule)

# %% [markdown]
# ## Open questions
# Answer each in the cell that asks it; an instructor grades them by hand.

# %% [markdown] tags=["manual", "points=2"]
# **Question 1.** The text stream starts from six BERT layers before any Co-TRM, the visual stream
# from none. Why might the authors have put the co-attention late in the text stream and early in
# the visual one?
#
# ### BEGIN SOLUTION
# *Rubric.* The region features come from a deep detector and are already high-level, so they need
# little extra processing before the exchange, while the text starts from word pieces and benefits
# from BERT's pretrained layers building context first (Lu et al. 2019, section 3).
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 2.** The masked-region loss divides by the number of masked regions. What happens in
# the original code when a batch has none, and how does `region_kl_loss` avoid it?
#
# ### BEGIN SOLUTION
# *Rubric.* The original divides the summed KL by the number of masked regions, 0, giving NaN loss
# and NaN gradients that spoil the weights (vilbert-multi-task issue 28); `region_kl_loss` returns 0
# with finite gradients when no region is masked.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 3.** NLVR2 encodes each image separately with the same sentence and concatenates the
# two fused vectors (`ViLBERTForVLTasks.nlvr2`). What can this design not see that a single pass
# over both images could?
#
# ### BEGIN SOLUTION
# *Rubric.* No attention between the two images: each pass sees one image, and only the classifier
# on the two pooled vectors compares them, so fine comparisons (more X on the left than on the
# right, matching or counting objects across the pair) must pass through two summary vectors.
# ### END SOLUTION
