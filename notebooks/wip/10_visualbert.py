# %% [markdown]
# # 10 · VisualBERT: one BERT over words and regions
#
# VisualBERT (Li et al., 2019) is the simplest of the 2019 vision-language models: take BERT, project
# each image region's feature vector to BERT's width, append the regions to the sentence, and let
# the same self-attention layers mix everything. No new layer type, no box coordinates, no second
# stream. Here we build it from `vlp_course.models.visualbert` (whose outputs equal the
# `transformers` port's to 1e-5, see `tests/test_visualbert.py`), pretrain it for a few hundred
# steps on captions of synthetic scenes, look at where a word attends among the regions, and
# fine-tune it for visual question answering — checking that it really uses the image.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from vlp_course.data import SHAPES, COLORS, SIZES, AnswerVocab, load_vl_scenes, vqa_accuracy
from vlp_course.models.convert import load_checkpoint
from vlp_course.models.visualbert import VisualBertConfig, VisualBertForPreTraining, VisualBertForQuestionAnswering
from vlp_course.pretraining import mask_tokens
from vlp_course.pretraining.matching import sample_matching
from vlp_course.text.vocab import Vocabulary, tokenize
from vlp_course.training import TrainConfig, train

T0 = time.perf_counter()

# %% [markdown]
# All sizes live in one place. The defaults run in well under a minute on a 2-core CPU; budgets are
# in steps, not seconds, so results do not depend on the machine's load. Dropout is off: it halves
# the speed of a tiny model on a CPU (the original uses 0.1).

# %%
CFG = dict(
    n_images=2000, n_test_images=300, feature_noise=0.3,  # data
    hidden=64, layers=2, heads=4, ffn=256,  # model (BERT-base: 768, 12, 12, 3072)
    batch=64, lr=2e-3, warmup=20,
    pretrain_steps=80, vqa_steps=300,  # budgets in steps
    seed=0,
)

# %% [markdown]
# ## The data: scenes, captions, questions and region features
#
# `load_vl_scenes` gives 64×64 images of coloured shapes with ground-truth boxes, five captions per
# image, and VQA questions with ten (simulated) annotator answers each.
#
# **Region features.** VisualBERT consumes a detector's region features (2048-d Detectron fc6
# vectors in the paper). The course has a stand-in detector (`vlp_course.data.detector`), but
# training it from an empty cache costs more than this notebook's CPU budget, so here each region's
# feature is an *oracle* one: the one-hot shape, colour and size of the ground-truth object plus
# Gaussian noise — a near-perfect detector. VisualBERT itself has **no box input** (its visual
# position ids are all 0), so we append the normalised box `(x1, y1, x2, y2)` to each feature;
# without it, questions such as "is the circle left of the star?" would be unanswerable.

# %%
ds = load_vl_scenes(CFG["n_images"], seed=CFG["seed"])
S = ds.scenes.image_size
MAX_REG = max(len(sc.objects) for sc in ds.scenes)
F_DIM = len(SHAPES) + len(COLORS) + len(SIZES) + 4

g = torch.Generator().manual_seed(CFG["seed"])
feats = torch.zeros(len(ds), MAX_REG, F_DIM)  # (N_img, V, F)
boxes = torch.zeros(len(ds), MAX_REG, 4)
region_mask = torch.zeros(len(ds), MAX_REG, dtype=torch.long)
for i, sc in enumerate(ds.scenes):
    n = len(sc.objects)
    one_hot = torch.cat([torch.eye(len(SHAPES))[sc.labels()], torch.eye(len(COLORS))[sc.color_labels()],
                         torch.eye(len(SIZES))[sc.size_labels()]], 1)  # (n, 15)
    boxes[i, :n] = torch.as_tensor(sc.boxes(), dtype=torch.float32) / S  # normalised xyxy
    feats[i, :n] = torch.cat([one_hot + CFG["feature_noise"] * torch.randn(one_hot.shape, generator=g), boxes[i, :n]], 1)
    region_mask[i, :n] = 1
print(f"{len(ds)} images, up to {MAX_REG} regions of width F = {F_DIM}; {len(ds.questions)} questions")

# %% [markdown]
# A word-level vocabulary (BERT's special tokens first: `[PAD]` 0, `[UNK]` 1, `[CLS]` 2, `[SEP]` 3,
# `[MASK]` 4) over captions and questions, and padded id tensors.

# %%
captions = [(i, c) for i, caps in ds.captions.items() for c in caps]
vocab = Vocabulary.build([tokenize(c) for _, c in captions] + [tokenize(q.question) + ["?"] for q in ds.questions])
CLS, SEP, MASK, PAD = (vocab.id_of(t) for t in ("[CLS]", "[SEP]", "[MASK]", "[PAD]"))


def encode(token_lists, length):
    ids = torch.full((len(token_lists), length), PAD, dtype=torch.long)
    for r, toks in enumerate(token_lists):
        toks = toks[:length]
        ids[r, :len(toks)] = torch.tensor(toks)
    return ids, (ids != PAD).long()


CAP_LEN = 2 + max(len(tokenize(c)) for _, c in captions)  # [CLS] caption [SEP]
cap_ids, cap_mask = encode([[CLS] + vocab.encode(tokenize(c)) + [SEP] for _, c in captions], CAP_LEN)
cap_image = torch.tensor([i for i, _ in captions])
print(len(vocab), "words; caption ids", tuple(cap_ids.shape))

# %% [markdown]
# ## The model, drawn from its config
#
# `VisualBertConfig` holds BERT's sizes plus the feature width. The table lists every parameter
# group of the model we build, read from the module itself.

# %%
config = VisualBertConfig(vocab_size=len(vocab), hidden_size=CFG["hidden"], num_hidden_layers=CFG["layers"],
                          num_attention_heads=CFG["heads"], intermediate_size=CFG["ffn"], max_position_embeddings=32,
                          visual_embedding_dim=F_DIM, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                          num_answers=2)
torch.manual_seed(CFG["seed"])
model = VisualBertForPreTraining(config)

groups = {}
for name, p in model.named_parameters():  # tied decoder counted once by named_parameters
    key = ".".join(name.split(".")[:4]) if ".layer." in name else ".".join(name.split(".")[:3])
    groups[key] = groups.get(key, 0) + p.numel()
print(f"{'module':54s} {'parameters':>10s}")
for k, n in groups.items():
    print(f"{k:54s} {n:10,d}")
print(f"{'total':54s} {sum(groups.values()):10,d}")

# %% [markdown]
# The input is one sequence: `[CLS] caption [SEP]` then the regions. Each text token gets
# word + position + token-type embeddings; each region gets `visual_projection(feature)` + the visual
# position embedding of id 0 + the visual token type (0, as in the original code; `transformers`
# defaults to 1). One LayerNorm then normalises all T+V vectors together.

# %%
fig, ax = plt.subplots(figsize=(7, 1.6))
tokens = ["[CLS]", "a", "red", "star", "[SEP]"] + [f"region {k + 1}" for k in range(MAX_REG)]
for k, tok in enumerate(tokens):
    vis = tok.startswith("region")
    ax.add_patch(plt.Rectangle((k, 0), 0.9, 0.9, color="tab:orange" if vis else "tab:blue", alpha=0.6))
    ax.text(k + 0.45, 0.45, tok.replace(" ", "\n"), ha="center", va="center", fontsize=7)
ax.text(len(tokens) / 2, 1.25, f"{config.num_hidden_layers} shared self-attention layers × {config.num_attention_heads} heads, "
        f"width {config.hidden_size}", ha="center")
ax.set_xlim(0, len(tokens)); ax.set_ylim(0, 1.6); ax.axis("off")
plt.show()

# %% [markdown]
# ## Exercise 1: the joint embedding
#
# Write VisualBERT's embedding by hand from the tables of a `VisualBertEmbeddings` module `emb`:
# text tokens use `word_embeddings`, `position_embeddings` (positions 0..T-1) and
# `token_type_embeddings` (type 0); regions use `visual_projection`, `visual_position_embeddings`
# (id 0 for every region) and `visual_token_type_embeddings` (type 0). Concatenate text then
# regions and apply `emb.LayerNorm` once. Return a (B, T+V, D) tensor.

# %%
def visualbert_embeddings(emb, input_ids, visual_feats):
    ### BEGIN SOLUTION
    B, T = input_ids.shape
    V = visual_feats.shape[1]
    text = (emb.word_embeddings(input_ids) + emb.position_embeddings(torch.arange(T))[None]
            + emb.token_type_embeddings(torch.zeros_like(input_ids)))
    zeros = torch.zeros(B, V, dtype=torch.long)
    regions = (emb.visual_projection(visual_feats) + emb.visual_position_embeddings(zeros)
               + emb.visual_token_type_embeddings(zeros))
    return emb.LayerNorm(torch.cat([text, regions], dim=1))
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.models import check_visualbert_embeddings

check_visualbert_embeddings(visualbert_embeddings)

# %% [markdown]
# ## Pretraining: masked language modelling and sentence-image matching
#
# Each step takes a batch of captions; half of them are swapped for a caption of another image
# (`is_matched` = 0), 15% of the words are masked (80% `[MASK]`, 10% random, 10% kept), and the
# loss is MLM + matching. The original masks words of mismatched pairs too
# (`config.mlm_on_mismatched = True`). (The original feeds two captions, `[CLS] a [SEP] b [SEP]`, and
# asks whether *b* describes the image; one caption keeps the sequence short.)

# %%
def pretrain_batch(step):
    gen = torch.Generator().manual_seed(10_000 + step)
    rows = torch.randint(len(captions), (CFG["batch"],), generator=gen)
    img = cap_image[rows]
    m = sample_matching(len(rows), image_ids=img, generator=gen)
    ids, mask = cap_ids[rows[m.caption_index]], cap_mask[rows[m.caption_index]]
    masked, labels = mask_tokens(ids, len(vocab), MASK, special_token_ids=vocab.special_ids(), attention_mask=mask, generator=gen)
    return dict(input_ids=masked, attention_mask=mask, visual_feats=feats[img], visual_attention_mask=region_mask[img],
                mlm_labels=labels, is_matched=m.is_matched)


def pretrain_step(model, b):
    out = model(b["input_ids"], b["visual_feats"], b["attention_mask"], b["visual_attention_mask"],
                mlm_labels=b["mlm_labels"], is_matched=b["is_matched"])
    acc = (out.seq_relationship_logits.argmax(1) == b["is_matched"]).float().mean()
    return {"loss": out.loss, "mlm": out.mlm_loss, "matching": out.matching_loss, "match_acc": acc}


t = time.perf_counter()
hist = train(model, pretrain_batch, pretrain_step,
             TrainConfig(steps=CFG["pretrain_steps"], lr=CFG["lr"], warmup_steps=CFG["warmup"], seed=CFG["seed"], progress=False))
print(f"pretraining: {CFG['pretrain_steps']} steps in {time.perf_counter() - t:.1f} s")
hist.plot(["mlm", "matching"], title="VisualBERT pretraining losses")
plt.show()

# %%
mlm0, mlm1 = np.mean(hist.train["mlm"][:20]), np.mean(hist.train["mlm"][-20:])
itm0, itm1 = np.mean(hist.train["matching"][:20]), np.mean(hist.train["matching"][-20:])
print(f"MLM loss {mlm0:.2f} -> {mlm1:.2f};  matching loss {itm0:.3f} -> {itm1:.3f};  "
      f"matching accuracy (last 20 steps) {np.mean(hist.train['match_acc'][-20:]):.2f}")
assert mlm1 < 0.85 * mlm0, "the masked-word loss should fall by at least 15%"

# %% [markdown]
# ## Where does a word look?
#
# With `output_attentions=True` the model returns one (B, heads, T+V, T+V) tensor per layer. Below,
# the attention of a colour word of a caption to each region (last layer, averaged over heads), drawn
# on the image: the brighter a box's outline, the more that word attends to the region.

# %%
img_id = next(i for i in range(len(ds) - CFG["n_test_images"], len(ds)) if len(ds.scenes[i].objects) >= 3)
sc = ds.scenes[img_id]
word = sc.objects[0].color
text = f"a {word} {sc.objects[0].shape}"
ids, mask = encode([[CLS] + vocab.encode(tokenize(text)) + [SEP]], 8)
model.eval()
with torch.no_grad():
    out = model.visual_bert(ids, feats[img_id:img_id + 1], mask, region_mask[img_id:img_id + 1], output_attentions=True)
T = ids.shape[1]
att = out.attentions[-1][0].mean(0)  # (T+V, T+V), averaged over heads
w = att[tokenize(text).index(word) + 1, T:T + len(sc.objects)]  # word -> regions
fig, (a0, a1) = plt.subplots(1, 2, figsize=(7, 3.2))
a0.imshow(sc.image)
for k, o in enumerate(sc.objects):
    x1, y1, x2, y2 = sc.boxes()[k]
    a0.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=3, color=plt.cm.viridis(float(w[k] / w.max()))))
    a0.text(x1, y1 - 1, str(k + 1), color="white", fontsize=8)
a0.set_title(f'attention of "{word}" in "{text}"', fontsize=9); a0.axis("off")
a1.bar([f"{k + 1}: {o.color} {o.shape}" for k, o in enumerate(sc.objects)], w.numpy(), color="tab:orange")
a1.tick_params(axis="x", rotation=45, labelsize=7); a1.set_ylabel("attention weight")
plt.tight_layout(); plt.show()
assert abs(float(att.sum(-1).mean()) - 1.0) < 1e-4  # each row of attention weights is a distribution

# %% [markdown]
# After so few steps the matching loss has barely moved from log 2 ≈ 0.69 (the course's planning
# runs needed about a minute of pretraining for 75% matching accuracy) and the attention pattern is
# noisy; a longer pretraining run (raise `pretrain_steps`) sharpens both.
#
# ## VQA: read the answer from the [MASK] token
#
# VisualBERT's VQA input is `[CLS] question ? [MASK] [SEP]`; a linear layer on the hidden state of the
# [MASK] token (at index `attention_mask.sum() - 2`) scores every answer, and the loss is
# KL-divergence to the soft VQA scores (0.3 per annotator, up to 1). We start from the pretrained
# weights: `load_checkpoint` maps the pretraining state dict onto the QA model and reports what it
# left out.
#
# **Baseline.** A model can answer many questions from the question alone ("how many…" → "1").
# The honest baseline is the same model trained and tested with the image zeroed; the
# vision-language model must beat it by a wide margin.

# %% [markdown]
# ## Exercise 2: the [MASK] token's state
#
# Given hidden states (B, T+V, D) and the text's attention mask (B, T) of
# `[CLS] question ? [MASK] [SEP] [PAD]…`, return the (B, D) states at the [MASK] of each row.

# %%
def mask_token_states(hidden, attention_mask):
    ### BEGIN SOLUTION
    positions = attention_mask.long().sum(1) - 2
    return hidden[torch.arange(hidden.shape[0]), positions]
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.models import check_mask_token_states

check_mask_token_states(mask_token_states)

# %%
answers = AnswerVocab.from_questions(ds.questions, min_count=3)
Q_LEN = 4 + max(len(tokenize(q.question)) for q in ds.questions)  # [CLS] question ? ([MASK]) [SEP]
q_ids, q_mask = encode([[CLS] + vocab.encode(tokenize(q.question) + ["?"]) + [MASK, SEP] for q in ds.questions], Q_LEN)
q_image = torch.tensor([q.image_id for q in ds.questions])
q_target = torch.from_numpy(np.stack([answers.targets(q.answers) for q in ds.questions]))
test_rows = torch.nonzero(q_image >= len(ds) - CFG["n_test_images"]).squeeze(1)
train_rows = torch.nonzero(q_image < len(ds) - CFG["n_test_images"]).squeeze(1)
print(f"{len(answers)} answers; {len(train_rows)} training and {len(test_rows)} test questions")


def vqa_batch(step):
    gen = torch.Generator().manual_seed(20_000 + step)
    rows = train_rows[torch.randint(len(train_rows), (CFG["batch"],), generator=gen)]
    return dict(input_ids=q_ids[rows], attention_mask=q_mask[rows], visual_feats=feats[q_image[rows]],
                visual_attention_mask=region_mask[q_image[rows]], soft_scores=q_target[rows])


def make_step(zero_image):
    def step(model, b):
        v = torch.zeros_like(b["visual_feats"]) if zero_image else b["visual_feats"]
        out = model(b["input_ids"], v, b["attention_mask"], b["visual_attention_mask"], soft_scores=b["soft_scores"])
        return {"loss": out.loss}
    return step


@torch.no_grad()
def vqa_eval(model, zero_image):
    model.eval()
    rows = test_rows
    v = feats[q_image[rows]]
    logits = model(q_ids[rows], torch.zeros_like(v) if zero_image else v, q_mask[rows], region_mask[q_image[rows]]).logits
    preds = logits.argmax(1).tolist()
    return float(np.mean([vqa_accuracy(answers.decode(p), ds.questions[r].answers) for p, r in zip(preds, rows.tolist())]))


qa_config = VisualBertConfig(**{**config.__dict__, "num_answers": len(answers)})
results = {}
for name, zero_image in (("question only (image zeroed)", True), ("VisualBERT (pretrained, with image)", False)):
    torch.manual_seed(CFG["seed"])
    qa = VisualBertForQuestionAnswering(qa_config)
    if not zero_image:
        report = load_checkpoint(qa, model.state_dict(), strict=False)
        print(report)
    t = time.perf_counter()
    h = train(qa, vqa_batch, make_step(zero_image), TrainConfig(steps=CFG["vqa_steps"], lr=CFG["lr"], warmup_steps=CFG["warmup"],
                                                                 seed=CFG["seed"], progress=False))
    results[name] = vqa_eval(qa, zero_image)
    print(f"{name}: VQA accuracy {results[name]:.1%} ({CFG['vqa_steps']} steps, {time.perf_counter() - t:.1f} s)")
vqa_model = qa

# %%
base, full = results["question only (image zeroed)"], results["VisualBERT (pretrained, with image)"]
train_answers = [ds.questions[r].multiple_choice_answer for r in train_rows.tolist()]
majority = max(set(train_answers), key=train_answers.count)
prior = float(np.mean([vqa_accuracy(majority, ds.questions[r].answers) for r in test_rows.tolist()]))
results["majority answer"] = prior
plt.figure(figsize=(5, 2.4))
plt.barh(list(results), [100 * v for v in results.values()], color=["grey", "tab:orange", "lightgrey"])
plt.xlabel("VQA accuracy on held-out images (%)"); plt.xlim(0, 100)
plt.show()
print(f"with image {full:.1%}, question only {base:.1%}, majority answer {prior:.1%}")
assert full > prior + 0.1, "the model should learn far more than the majority answer"
print(f"total time {time.perf_counter() - T0:.0f} s")

# %% [markdown]
# **Read the numbers honestly.** With the default budget (a few hundred steps on a CPU) both models
# learn the question priors ("how many…" → "1"), far above the majority answer, but the model
# with the image is not yet clearly better than the question-only one: a claim that a model *uses
# the image* needs that margin. The course's planning runs needed about 500 steps of batch 128
# (40 s on 2 CPU cores) before a model of this size left the question-only level; raise
# `CFG["vqa_steps"]` (and `batch`) on a faster machine and compare again.
#
# ## Open questions
#
# * VisualBERT gives every region the same position id. What does that make the model invariant
#   to, and how did we work around the missing box geometry? How do LXMERT and VL-BERT encode boxes?
# * The matching task here swaps whole captions. Why might hard negatives (a caption that differs in
#   one colour word) teach the model more about grounding words in regions?
# * Re-run the VQA comparison without loading the pretrained weights. With this budget, does
#   pretraining help? (The course's planning notes measured a clear gain only after about a minute
#   of pretraining.)
