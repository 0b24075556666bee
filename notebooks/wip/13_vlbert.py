# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 13 · VL-BERT: one BERT over words and regions

# %% [markdown]
# **Why.** VL-BERT (Su et al., ICLR 2020) is the single-stream answer to ViLBERT: one BERT reads
# `[CLS] caption [SEP] [IMG] … [IMG] [END]`, where each [IMG] token carries a *visual feature
# embedding* — the region's appearance concatenated with a sin/cos embedding of its box, through
# Dropout, Linear and ReLU. Two LayerNorms whose weights start at **zero** add the visual embedding
# to the words and to the regions, so the untrained model is exactly BERT and learns to fade the image
# in. It is pretrained with masked words (with visual clues) and masked RoI classification (with
# linguistic clues) — and **without** image–text matching, which the authors dropped because it made
# downstream results worse. This notebook builds it with the original parameter names
# (`vlp_course.models.vlbert`), checks the layout and the start-as-BERT property, pretrains it on the
# scenes with the RoIs masked *in the pixels*, measures why that matters, and fine-tunes it on VQA.

# %%
CFG = dict(
    n_scenes=400, max_regions=4, text_len=14, roi_cells=8,   # RoIAlign cells per side (8 x 8 x RGB features)
    hidden=64, layers=2, heads=4, ffn=128, geometry_dim=8,
    batch=64, lr=2e-3,
    pretrain_steps=200, vqa_steps=250,
    probe_scenes=600,   # single-object scenes for the leakage probe
    seed=0,
)

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from vlp_course.models.vlbert import (
    VLBERTConfig, VLBERTForPretraining, VLBERTForVQA, expected_state_dict_keys, geometry_embedding, sequence_layout,
    whole_image_boxes,
)

torch.set_num_threads(min(2, torch.get_num_threads()))

# %% [markdown]
# ## 1. The input sequence and the original parameter names
#
# Segments: A (0) and B (1) for text, C (2) for every [IMG] and [END]. Positions: the text counts
# 0..T−1, **all** [IMG] tokens share position T (the regions form a set, not a sequence), [END] takes T+1.

# %%
lay = sequence_layout(torch.ones(1, 5), torch.zeros(1, 5, dtype=torch.long), torch.ones(1, 3))
tokens = ["[CLS]", "a", "red", "star", "[SEP]", "[IMG] whole image", "[IMG] region 1", "[IMG] region 2", "[END]"]
for tok, seg, pos in zip(tokens, lay.token_type_ids[0].tolist(), lay.position_ids[0].tolist()):
    print(f"{tok:18s} segment {seg}  position {pos}")
assert lay.position_ids[0].tolist() == [0, 1, 2, 3, 4, 5, 5, 5, 6] and lay.token_type_ids[0].tolist() == [0] * 5 + [2] * 4

with torch.device("meta"):
    full = VLBERTForPretraining(VLBERTConfig())
keys = list(full.state_dict())
print(f"VL-BERT-base (precomputed features, pretraining heads): {sum(p.numel() for p in full.parameters()) / 1e6:.1f} M parameters, "
      f"{len(keys)} keys, e.g. {[k for k in keys if not k.startswith('vlbert.encoder')][:8]}")
assert set(keys) == set(expected_state_dict_keys())

# %% [markdown]
# ## 2. The geometry embedding
#
# A pixel box becomes (x_c, y_c, w, h), divided by the image width or height and multiplied by 100,
# each encoded as sin and cos at frequencies 1/1000^(i/dim) — 4 × 2 × 256 = 2048 numbers in VL-BERT.

# %%
xs = torch.linspace(0, 56, 57)
sweep = torch.stack([xs, torch.full_like(xs, 20), xs + 8, torch.full_like(xs, 28)], -1)[None]  # a box sliding right
emb = geometry_embedding(sweep, (64, 64), dim=16)[0]  # (57, 128)
plt.figure(figsize=(8, 3))
plt.imshow(emb[:, :32].T.numpy(), aspect="auto", cmap="RdBu")
plt.xlabel("x1 of the box (pixels)")
plt.ylabel("sin / cos of x_c, 16 frequencies")
plt.title("geometry embedding of a sliding box")
plt.show()

# %% [markdown]
# ## 3. Data: scenes, captions, a stand-in detector
#
# As in notebook 12, the "detector" pools each box with RoIAlign straight from the pixels
# (here 8×8 cells × RGB), and its class distribution puts 0.9 on the object's true shape. Region 0 is
# the whole image, pooled the same way. Because the stand-in reads pixels, masking a region *before*
# it runs (VL-BERT's end-to-end mode) is just zeroing the box's pixels
# (`vlp_course.pretraining.regions.mask_pixels`) and running it again.

# %%
from vlp_course.data.dataset import load_vl_scenes
from vlp_course.data.scenes import SHAPES
from vlp_course.text.vocab import Vocabulary, tokenize
from vlp_course.vision.features import roi_features

ds = load_vl_scenes(CFG["n_scenes"], seed=CFG["seed"])
S, R, W = len(ds.scenes), CFG["max_regions"], ds.scenes.image_size
images = ds.scenes.tensors()  # (S, 3, W, W)
boxes = torch.cat([whole_image_boxes(S, W, W), torch.tensor([0.0, 0.0, 1.0, 1.0]).repeat(S, R, 1)], 1)  # (S, R+1, 4)
region_mask = torch.zeros(S, R + 1, dtype=torch.long)
region_mask[:, 0] = 1
cls_idx = torch.zeros(S, R + 1, dtype=torch.long)
for i, sc in enumerate(ds.scenes):
    k = min(len(sc.objects), R)
    boxes[i, 1:k + 1] = torch.from_numpy(sc.boxes()[:k])
    region_mask[i, 1:k + 1] = 1
    cls_idx[i, 1:k + 1] = torch.from_numpy(sc.labels()[:k])
det_probs = torch.full((S, R + 1, len(SHAPES)), 0.1 / (len(SHAPES) - 1)).scatter_(2, cls_idx[..., None], 0.9)


def detect(imgs, bxs):
    """The stand-in detector: (B, 3, W, W) images, (B, N, 4) pixel boxes -> (B, N, 3 * cells^2) features."""
    c = CFG["roi_cells"]
    return roi_features(imgs, bxs, box_format="pixel", image_size=(W, W), output_size=c, pool=False).flatten(2)


feats = detect(images, boxes)  # (S, R+1, F)
texts = [c for i in range(S) for c in ds.captions[i]] + [q.question for q in ds.questions]
vocab = Vocabulary.build([tokenize(t) for t in texts])
PAD, CLS, SEP, MASK = (vocab.id_of(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]"))
T = CFG["text_len"]


def encode(text, extra=()):
    ids = [CLS] + vocab.encode(tokenize(text))[: T - 2 - len(extra)] + [SEP] + list(extra)
    return ids + [PAD] * (T - len(ids))


cap_ids = torch.tensor([encode(c) for i in range(S) for c in ds.captions[i]])
cap_img = torch.tensor([i for i in range(S) for _ in ds.captions[i]])
n_train_img = int(0.8 * S)
print(f"features {tuple(feats.shape)}, {len(vocab)} words, {len(cap_ids)} captions")

# %% [markdown]
# ## 4. Starts as BERT
#
# With the visual LayerNorm weights at their initial 0, the model's outputs do not depend on what the
# regions show: the features of other images give the same masked-word scores (only the *number* of
# [IMG] tokens could matter).

# %%
cfg = VLBERTConfig(vocab_size=len(vocab), hidden_size=CFG["hidden"], num_hidden_layers=CFG["layers"],
                   num_attention_heads=CFG["heads"], intermediate_size=CFG["ffn"], max_position_embeddings=T + 2,
                   visual_feature_size=feats.shape[-1], geometry_dim=CFG["geometry_dim"], visual_region_classes=len(SHAPES),
                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, obj_downsample_dropout=0.0)
torch.manual_seed(CFG["seed"])
model = VLBERTForPretraining(cfg).eval()
ids = cap_ids[:4]
with torch.no_grad():
    a = model(ids, feats[cap_img[:4]], boxes[cap_img[:4]], (W, W), text_mask=ids != PAD, region_mask=region_mask[cap_img[:4]])
    b = model(ids, feats[7:11], boxes[cap_img[:4]], (W, W), text_mask=ids != PAD, region_mask=region_mask[cap_img[:4]])
gap = float((a["mlm_logits"] - b["mlm_logits"]).abs().max())
print(f"largest change of the MLM scores when the image is swapped: {gap:.2e}")
assert gap < 1e-4

# %% [markdown]
# ## 5. Pretraining: MLM with visual clues, masked RoI classification with linguistic clues
#
# 15 % of the words and 15 % of the regions (never region 0) are selected; a selected region is
# masked with probability 0.9 — its pixels zeroed before the detector runs, so that neither its own
# feature nor the whole-image feature shows it — and its [IMG] token becomes
# `object_mask_word_embedding`. The model predicts the detector's class scores of every selected
# region (soft cross-entropy).

# %%
from vlp_course.pretraining.regions import ZERO, mask_pixels, sample_region_actions
from vlp_course.pretraining.regions import eligible_regions
from vlp_course.pretraining.text_masking import mask_tokens
from vlp_course.training import TrainConfig, train

gen = torch.Generator().manual_seed(CFG["seed"])
train_caps = torch.nonzero(cap_img < n_train_img).squeeze(1)


def region_selection(img):
    eligible = eligible_regions((len(img), R + 1), region_mask[img], num_global=1)
    actions = sample_region_actions(eligible, 0.15, "vlbert", gen)
    return actions != 0, actions == ZERO  # selected (targets), masked (hidden)


def pretrain_batch(step):
    rows = train_caps[torch.randint(len(train_caps), (CFG["batch"],), generator=gen)]
    img = cap_img[rows]
    ids = cap_ids[rows]
    masked_ids, labels = mask_tokens(ids, len(vocab), MASK, special_token_ids=[PAD, CLS, SEP], attention_mask=ids != PAD, generator=gen)
    selected, masked = region_selection(img)
    f = detect(mask_pixels(images[img], boxes[img], masked), boxes[img])  # end-to-end: mask, then detect
    return dict(input_ids=masked_ids, features=f, boxes=boxes[img], text_mask=(ids != PAD).long(), region_mask=region_mask[img],
                masked_regions=masked, region_selected=selected, masked_lm_labels=labels, region_targets=det_probs[img])


def pretrain_step(m, b):
    out = m(b["input_ids"], b["features"], b["boxes"], (W, W), text_mask=b["text_mask"], region_mask=b["region_mask"],
            masked_regions=b["masked_regions"], region_masking="pixels", masked_lm_labels=b["masked_lm_labels"],
            region_targets=b["region_targets"], region_selected=b["region_selected"])
    return {"loss": out["loss"], "mlm": out["mlm_loss"], "mrc": out["mrc_loss"]}


torch.manual_seed(CFG["seed"])
pre = VLBERTForPretraining(cfg)
hist = train(pre, pretrain_batch, pretrain_step, TrainConfig(steps=CFG["pretrain_steps"], lr=CFG["lr"], warmup_steps=20,
                                                              seed=CFG["seed"], progress=False))
hist.plot(["mlm", "mrc"], title="VL-BERT pretraining (RoIs masked in the pixels)")
plt.show()
first = {k: float(np.mean(v[:20])) for k, v in hist.train.items()}
last = {k: float(np.mean(v[-20:])) for k, v in hist.train.items()}
print({k: (round(first[k], 3), round(last[k], 3)) for k in first})
assert last["loss"] < 0.8 * first["loss"] and last["mlm"] < first["mlm"] - 0.3
ln = pre.vlbert.visual_ln_object.weight.detach().abs().mean().item()
print(f"mean |weight| of visual_ln_object after training: {ln:.3f} (0 at the start)")

# %% [markdown]
# ## 6. Masking pixels or features: does the masked region leak?
#
# With precomputed features, VL-BERT replaces a masked region's feature by a learned vector — but
# the whole-image feature (region 0) was computed from the *unmasked* image. How much of the hidden
# object does it still show? On scenes with a single object, a logistic-regression probe reads the
# object's shape and colour from the whole-image feature alone: once from the unmasked image
# (feature-level masking) and once after the object's pixels were zeroed (pixel-level masking).

# %%
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vlp_course.data.scenes import COLORS, make_scenes

one = make_scenes(CFG["probe_scenes"], seed=CFG["seed"] + 1, max_objects=1)
img1 = one.tensors()
box1 = torch.stack([torch.from_numpy(sc.boxes()[:1]) for sc in one])  # (P, 1, 4)
whole = whole_image_boxes(len(one), W, W)
y_shape = np.array([sc.labels()[0] for sc in one])
y_color = np.array([sc.color_labels()[0] for sc in one])
g_feature = detect(img1, whole)[:, 0].numpy()  # feature-level masking: region 0 from the unmasked image
g_pixel = detect(mask_pixels(img1, box1, torch.ones(len(one), 1, dtype=torch.bool)), whole)[:, 0].numpy()
n_fit = int(0.7 * len(one))


def probe(x, y):
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.1)).fit(x[:n_fit], y[:n_fit])
    return clf.score(x[n_fit:], y[n_fit:])


leak = {(mode, what): probe(x, y) for mode, x in (("feature", g_feature), ("pixel", g_pixel))
        for what, y in (("shape", y_shape), ("colour", y_color))}
print(f"chance: shape {1 / len(SHAPES):.2f}, colour {1 / len(COLORS):.2f}")
for k, v in leak.items():
    print(f"{k[0]:>7s}-level masking: the {k[1]} of the hidden object is read from the whole-image feature with accuracy {v:.2f}")
assert leak["feature", "colour"] > leak["pixel", "colour"] + 0.25, "the unmasked whole-image feature shows the hidden object's colour"
assert leak["pixel", "colour"] < 1 / len(COLORS) + 0.1, "after pixel masking the probe is near chance"

# %% [markdown]
# With feature-level masking the hidden object's colour is still in the whole-image token (a
# linear probe reads it far above chance), so the prediction of a masked RoI can copy from there
# instead of using the caption. (Its shape is not linearly readable from this crude 8×8 pixel
# feature — a real detector's whole-image feature carries much more.) Pixel-level masking closes that shortcut; in precomputed mode VL-BERT recomputes the
# whole-image feature as the mean of the *unmasked* regions for the same reason.
#
# ## 7. VQA: fine-tune and compare with a question-only model
#
# VL-BERT's VQA input is `[CLS] question [SEP] [MASK] [SEP]` (the answer slot in segment B); the
# hidden state of that [MASK] goes through `final_mlp` to the answer scores (binary cross-entropy
# with the soft scores). We compare with the same model fine-tuned with the image zeroed.

# %%
from vlp_course.data.vqa import AnswerVocab

qs = [q for q in ds.questions if q.question_type in ("what color is the", "what shape is the", "is there a")]
answers = AnswerVocab.from_questions([q for q in qs if q.image_id < n_train_img], min_count=3)
q_ids = torch.tensor([encode(q.question, extra=(MASK, SEP)) for q in qs])
q_pos = (q_ids == MASK).long().argmax(1)  # where the answer [MASK] is
q_types = (torch.arange(T)[None] >= q_pos[:, None]).long() * (q_ids != PAD).long()  # answer slot in segment B
q_img = torch.tensor([q.image_id for q in qs])
q_tgt = torch.from_numpy(np.stack([answers.targets(q.answers) for q in qs]))
tr = torch.nonzero(q_img < n_train_img).squeeze(1)
te = torch.nonzero(q_img >= n_train_img).squeeze(1)


def finetune(zero_image: bool):
    torch.manual_seed(CFG["seed"])
    m = VLBERTForVQA(cfg, len(answers))
    m.load_state_dict(pre.state_dict(), strict=False)  # the pretrained model; final_mlp is new
    scale = 0.0 if zero_image else 1.0
    g = torch.Generator().manual_seed(CFG["seed"])

    def run(mm, rows, **kw):
        img = q_img[rows]
        return mm.vqa(q_ids[rows], feats[img] * scale, boxes[img], (W, W), q_pos[rows], token_type_ids=q_types[rows],
                      text_mask=(q_ids[rows] != PAD).long(), region_mask=region_mask[img], **kw)

    train(m, lambda s: tr[torch.randint(len(tr), (CFG["batch"],), generator=g)],
          lambda mm, rows: {"loss": run(mm, rows, soft_scores=q_tgt[rows])["loss"]},
          TrainConfig(steps=CFG["vqa_steps"], lr=CFG["lr"], warmup_steps=20, seed=CFG["seed"], progress=False))
    with torch.no_grad():
        pred = run(m, te)["logits"].argmax(1)
    return float(q_tgt[te, pred].mean())


acc_image = finetune(zero_image=False)
acc_question_only = finetune(zero_image=True)
print(f"VQA accuracy: VL-BERT {acc_image:.3f}, question only (image zeroed) {acc_question_only:.3f}")
assert acc_image > acc_question_only + 0.15, "the model should use the image"

# %% [markdown]
# ## Exercises
#
# **Exercise 1 — the geometry embedding.** Boxes (B, N, 4) in pixels (x1, y1, x2, y2), the image
# size (W, H) and `dim`. Convert to (x_c, y_c, w, h), divide x_c and w by W, y_c and h by H, multiply
# by 100; for each of the four values p compute `p / 1000 ** (i / dim)` for i = 0..dim−1 and return
# `[sin, cos]` per value, the four values one after the other: shape (B, N, 8·dim).

# %%
def my_geometry_embedding(bxs, image_size, dim):
    ### BEGIN SOLUTION
    w_img, h_img = image_size
    x1, y1, x2, y2 = bxs.unbind(-1)
    pos = torch.stack([(x1 + x2) / 2 / w_img, (y1 + y2) / 2 / h_img, (x2 - x1) / w_img, (y2 - y1) / h_img], -1) * 100
    angle = pos[..., None] / 1000 ** (torch.arange(dim, dtype=pos.dtype) / dim)  # (B, N, 4, dim)
    return torch.cat([angle.sin(), angle.cos()], -1).flatten(-2)
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.models2 import check_geometry_embedding

check_geometry_embedding(my_geometry_embedding)

# %% [markdown]
# **Exercise 2 — segments and positions.** For one unpadded example with text segment ids
# `text_token_type_ids` (T,) and `num_regions` regions (whole image included), return the segment ids
# and position ids of `[CLS] … [SEP] [IMG]×n [END]` (T + n + 1 each).

# %%
def layout(text_token_type_ids, num_regions):
    ### BEGIN SOLUTION
    t = len(text_token_type_ids)
    types = torch.cat([torch.as_tensor(text_token_type_ids).long(), torch.full((num_regions + 1,), 2)])
    pos = torch.cat([torch.arange(t), torch.full((num_regions,), t), torch.tensor([t + 1])])
    return types, pos
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.models2 import check_vlbert_layout

check_vlbert_layout(layout)

# %% [markdown]
# ## Open questions
#
# 1. Why give every [IMG] token the same position id, while words get increasing ones?
# 2. The visual LayerNorms start at weight 0. What would go wrong in the first steps if they started at 1,
#    with a BERT-initialised text side?
# 3. VL-BERT dropped the image–text matching task. The course's ViLBERT notebook keeps it. What makes a
#    matching task useful or harmful, given how its negatives are drawn?
