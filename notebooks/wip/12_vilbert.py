# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 12 · ViLBERT: two streams that talk through co-attention

# %% [markdown]
# **Why.** ViLBERT (Lu et al., NeurIPS 2019) keeps language and vision in two separate transformers —
# a BERT for the words, a narrower transformer for the image regions — and lets them exchange
# information only in *co-attentional* layers (Co-TRM): the regions' queries look at the words' keys
# and values, and the words' queries look at the regions'. This notebook builds the original
# architecture with the original checkpoint's parameter names (`vlp_course.models.vilbert`), pretrains
# a small one on the course's synthetic scenes with ViLBERT's three objectives (masked words, masked
# regions with a KL loss to the detector's class distribution, image–caption alignment), looks at the
# co-attention maps, and fine-tunes it on VQA against a question-only baseline.

# %%
CFG = dict(
    n_scenes=400,           # synthetic scenes (5 captions and 6 questions each)
    max_regions=4,          # regions per scene (+1 global image token)
    text_len=14,            # word pieces per caption / question, [CLS] and [SEP] included
    hidden=64, v_hidden=64, bi_hidden=64, heads=4, ffn=128,
    text_layers=2, visual_layers=1, v_biattention_id=[0, 1], t_biattention_id=[1, 2],
    batch=64, lr=2e-3,
    pretrain_steps=250,     # budget in steps, not seconds
    vqa_steps=250,
    seed=0,
)

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from vlp_course.models.vilbert import (
    ViLBERTConfig, ViLBERTForPretraining, ViLBERTForVLTasks, expected_state_dict_keys, layer_schedule, prepare_regions,
)

torch.set_num_threads(min(2, torch.get_num_threads()))

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
# the detector's class distribution. Here a stand-in keeps the CPU budget: each ground-truth box
# is pooled with RoIAlign (`vlp_course.vision.features.roi_features`) straight from the pixels (4×4
# cells × RGB = 48 numbers), and the "detector distribution" over the six shapes puts 0.9 on the
# true shape (a near-perfect detector). (`vlp_course.data.detector` has a trained CNN stand-in; training it
# costs more than this notebook's budget.) The 5-d location and the global image token come from
# `prepare_regions`.

# %%
from vlp_course.data.dataset import load_vl_scenes
from vlp_course.data.scenes import SHAPES
from vlp_course.pretraining.losses import IGNORE_INDEX
from vlp_course.text.vocab import Vocabulary, tokenize
from vlp_course.vision.features import roi_features

ds = load_vl_scenes(CFG["n_scenes"], seed=CFG["seed"])
S, R, W = len(ds.scenes), CFG["max_regions"], ds.scenes.image_size
images = ds.scenes.tensors()  # (S, 3, W, W) in [0, 1]
boxes = torch.tensor([0.0, 0.0, 1.0, 1.0]).repeat(S, R, 1)  # padding boxes
region_mask = torch.zeros(S, R, dtype=torch.long)
shape_target = torch.full((S, R), -1)
for i, sc in enumerate(ds.scenes):
    k = min(len(sc.objects), R)
    boxes[i, :k] = torch.from_numpy(sc.boxes()[:k])
    region_mask[i, :k] = 1
    shape_target[i, :k] = torch.from_numpy(sc.labels()[:k])
feats = roi_features(images, boxes, box_format="pixel", image_size=(W, W), output_size=4, pool=False).flatten(2)  # (S, R, 48)
regions = prepare_regions(feats, boxes, W, W, region_mask)  # global token first: (S, R+1, ...)
det_probs = torch.full((S, R + 1, len(SHAPES)), 0.1 / (len(SHAPES) - 1))  # (S, R+1, 6)
cls_idx = torch.cat([torch.zeros(S, 1, dtype=torch.long), shape_target.clamp(min=0)], 1)  # row 0: the global token, never a target
det_probs.scatter_(2, cls_idx[..., None], 0.9)
print("features", tuple(regions["features"].shape), "locations", tuple(regions["locations"].shape))
print("scene 0, region 1 location [x1/W, y1/H, x2/W, y2/H, area]:", regions["locations"][0, 1].numpy().round(3))

# %%
texts = [c for i in range(S) for c in ds.captions[i]] + [q.question for q in ds.questions]
vocab = Vocabulary.build([tokenize(t) for t in texts])
PAD, CLS, SEP, MASK = (vocab.id_of(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]"))
T = CFG["text_len"]


def encode(text):
    ids = [CLS] + vocab.encode(tokenize(text))[: T - 2] + [SEP]
    return ids + [PAD] * (T - len(ids))


cap_ids = torch.tensor([encode(c) for i in range(S) for c in ds.captions[i]])  # (S*5, T)
cap_img = torch.tensor([i for i in range(S) for _ in ds.captions[i]])
n_train_img = int(0.8 * S)
print(f"{len(vocab)} words; {len(cap_ids)} captions; train images 0..{n_train_img - 1}")

# %% [markdown]
# ## 3. Pretraining with ViLBERT's three objectives
#
# Per batch: half of the captions are swapped for a caption of another image (`is_matched` = 0; the
# original calls this `is_next` = 1 — the converters flip the head at the checkpoint boundary).
# 15 % of the words are masked BERT-style, 15 % of the regions are masked ViLBERT-style (90 % zeroed,
# 10 % kept; the global token never). As in ViLBERT's `--objective 1`, the masked losses of a swapped
# pair do not count (`masked_loss_on_mismatched=False`).

# %%
from vlp_course.pretraining.matching import sample_matching
from vlp_course.pretraining.regions import mask_regions
from vlp_course.pretraining.text_masking import mask_tokens
from vlp_course.training import TrainConfig, train

cfg = ViLBERTConfig(
    vocab_size=len(vocab), hidden_size=CFG["hidden"], num_hidden_layers=CFG["text_layers"], num_attention_heads=CFG["heads"],
    intermediate_size=CFG["ffn"], max_position_embeddings=T, v_feature_size=feats.shape[-1], v_target_size=len(SHAPES),
    v_hidden_size=CFG["v_hidden"], v_num_hidden_layers=CFG["visual_layers"], v_num_attention_heads=CFG["heads"],
    v_intermediate_size=CFG["ffn"], bi_hidden_size=CFG["bi_hidden"], bi_num_attention_heads=CFG["heads"],
    v_biattention_id=CFG["v_biattention_id"], t_biattention_id=CFG["t_biattention_id"],
    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, v_hidden_dropout_prob=0.0,
    v_attention_probs_dropout_prob=0.0, fused_dropout_prob=0.0,  # dropout off for short CPU runs
)
print(layer_schedule(cfg))
gen = torch.Generator().manual_seed(CFG["seed"])
train_caps = torch.nonzero(cap_img < n_train_img).squeeze(1)


def pretrain_batch(step):
    rows = train_caps[torch.randint(len(train_caps), (CFG["batch"],), generator=gen)]
    img = cap_img[rows]
    match = sample_matching(len(rows), image_ids=img, generator=gen)
    ids = cap_ids[rows[match.caption_index]]
    masked_ids, mlm_labels = mask_tokens(ids, len(vocab), MASK, special_token_ids=[PAD, CLS, SEP],
                                         attention_mask=ids != PAD, generator=gen)
    rm = mask_regions(regions["features"][img], scheme="vilbert", region_mask=regions["image_attention_mask"][img],
                      num_global=1, generator=gen)
    return dict(input_ids=masked_ids, features=rm.features, locations=regions["locations"][img],
                attention_mask=(ids != PAD).long(), image_attention_mask=regions["image_attention_mask"][img],
                masked_lm_labels=mlm_labels, region_targets=det_probs[img], region_labels=rm.selected.long(),
                is_matched=match.is_matched)


def pretrain_step(model, b):
    out = model(**b)
    return {"loss": out["loss"], "mlm": out["mlm_loss"], "region_kl": out["region_loss"], "align": out["matching_loss"]}


torch.manual_seed(CFG["seed"])
pre = ViLBERTForPretraining(cfg)
hist = train(pre, pretrain_batch, pretrain_step, TrainConfig(steps=CFG["pretrain_steps"], lr=CFG["lr"], warmup_steps=20,
                                                              seed=CFG["seed"], progress=False))
hist.plot(["mlm", "region_kl", "align"], title="ViLBERT pretraining on the scenes")
plt.show()

# %%
first = {k: float(np.mean(v[:20])) for k, v in hist.train.items()}
last = {k: float(np.mean(v[-20:])) for k, v in hist.train.items()}
print({k: (round(first[k], 3), round(last[k], 3)) for k in first})
assert last["loss"] < 0.8 * first["loss"], "the total pretraining loss should fall by 20 % or more"
assert last["mlm"] < first["mlm"] - 0.3 and last["region_kl"] < first["region_kl"] - 0.2

# %% [markdown]
# ## 4. Co-attention maps
#
# `output_attentions=True` returns, for every Co-TRM, the regions→words weights (B, H, N, T) and
# the words→regions weights (B, H, T, N). Below: the last Co-TRM, averaged over heads, for a caption of
# a held-out image. Row 0 of the regions is the global image token.

# %%
i = n_train_img
cap = ds.captions[i][0]
ids = torch.tensor([encode(cap)])
with torch.no_grad():
    out = pre(ids, regions["features"][i:i + 1], regions["locations"][i:i + 1], attention_mask=(ids != PAD).long(),
              image_attention_mask=regions["image_attention_mask"][i:i + 1], output_attentions=True)
v2t, t2v = (a[0].mean(0) for a in out["co_attentions"][-1])  # (N, T), (T, N)
n_words = int((ids != PAD).sum())
words = vocab.decode(ids[0, :n_words].tolist())
n_reg = int(regions["image_attention_mask"][i].sum())
reg_names = ["global"] + [o.describe() for o in ds.scenes[i].objects][: n_reg - 1]
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
axes[0].imshow(ds.scenes[i].image)
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
# the soft scores, times the number of answers. We keep questions whose answer needs the image
# (colour, shape, "is there a …?") and compare with the same model trained with the image zeroed.

# %%
from vlp_course.data.vqa import AnswerVocab

qs = [q for q in ds.questions if q.question_type in ("what color is the", "what shape is the", "is there a")]
answers = AnswerVocab.from_questions([q for q in qs if q.image_id < n_train_img], min_count=3)
q_ids = torch.tensor([encode(q.question) for q in qs])
q_img = torch.tensor([q.image_id for q in qs])
q_tgt = torch.from_numpy(np.stack([answers.targets(q.answers) for q in qs]))
tr = torch.nonzero(q_img < n_train_img).squeeze(1)
te = torch.nonzero(q_img >= n_train_img).squeeze(1)
print(f"{len(tr)} training and {len(te)} test questions, {len(answers)} answers")


def finetune(zero_image: bool):
    torch.manual_seed(CFG["seed"])
    model = ViLBERTForVLTasks(ViLBERTConfig(**{**cfg.to_dict(), "num_labels": len(answers), "num_labels_gqa": 2}))
    model.load_state_dict(pre.state_dict(), strict=False)  # the pretrained bert.* and cls.*; new task heads
    scale = 0.0 if zero_image else 1.0
    g = torch.Generator().manual_seed(CFG["seed"])

    def inputs(rows):
        img = q_img[rows]
        return dict(input_ids=q_ids[rows], features=regions["features"][img] * scale, locations=regions["locations"][img] * scale,
                    attention_mask=(q_ids[rows] != PAD).long(), image_attention_mask=regions["image_attention_mask"][img])

    def step(m, rows):
        return {"loss": m.vqa(**inputs(rows), soft_scores=q_tgt[rows])["loss"]}

    train(model, lambda s: tr[torch.randint(len(tr), (CFG["batch"],), generator=g)], step,
          TrainConfig(steps=CFG["vqa_steps"], lr=CFG["lr"], warmup_steps=20, seed=CFG["seed"], progress=False))
    with torch.no_grad():
        pred = model.vqa(**inputs(te))["logits"].argmax(1)
    return float(q_tgt[te, pred].mean())  # VQA accuracy = soft score of the chosen answer


acc_image = finetune(zero_image=False)
acc_question_only = finetune(zero_image=True)
print(f"VQA accuracy: ViLBERT {acc_image:.3f}, question only (image zeroed) {acc_question_only:.3f}")
assert acc_image > acc_question_only + 0.15, "the model should use the image"

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
