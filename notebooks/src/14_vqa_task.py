# %% [markdown]
# # 14 · VQA as a task: files, answers, losses, the metric and the errors
#
# **Why.** Notebooks 10–13 fine-tuned four models for visual question answering and reported one
# number each. This notebook looks at the task itself, as the 2019 models met it in VQA v2 (Goyal et
# al., CVPR 2017; the metric from Antol et al., ICCV 2015, section 4). A question comes with **ten**
# human answers, and every one of those models treats answering as **classification** over a fixed list
# of frequent answers, trained towards **soft scores**: an answer two annotators gave is worth 0.6, not
# 0 or 1. We go through it in order:
#
# 1. the official files (questions, annotations, results) written from the scenes and read back;
# 2. the answer vocabulary, built as the originals build it;
# 3. the soft scores;
# 4. the two losses the originals use, binary cross-entropy (LXMERT, ViLBERT, VL-BERT) and VisualBERT's
#    KL divergence, compared on the same model, checkpoint, batches and steps;
# 5. the official accuracy, per answer type and per question type, from a results file, against the
#    "soft-score accuracy" that training loops print;
# 6. the errors: by question type, by number of objects, a grid of wrong answers, and which questions
#    a model answers without looking (the same model fine-tuned with the image zeroed).

# %%
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from vlp_course.data.vqa import (
    AnswerVocab, evaluate_vqa, load_vqa, load_vqa_results, normalize_answer, soft_score, vqa_accuracy, write_vqa,
)
from vlp_course.models.visualbert import vqa_kl_loss
from vlp_course.pretraining.losses import vqa_bce_loss
from vlp_course.recipes import run
from vlp_course.recipes.shipped import load_scene_checkpoint
from vlp_course.training import TrainConfig, train
from vlp_course.viz import show_vqa_answer

T0 = time.perf_counter()
SECONDS = {}  # wall-clock seconds of the heavy cells, printed at the end

# %% [markdown]
# Every size lives here; budgets are in steps, not seconds, so the numbers do not depend on the
# machine's load. Every fine-tune in this notebook uses the same budget, from the same checkpoint,
# with the same batches. The model is VisualBERT, the fastest of the four to fine-tune on a CPU
# (`benchmarks/results/compare.md`; notebook 16 measures it again).

# %%
CFG = dict(
    steps=150, batch=64, lr=2e-3, warmup=50, seed=0,  # each of the three fine-tunes (about 8 s each on one core)
    min_counts=(1, 3, 9, 30, 100, 300, 1000, 3000),  # thresholds of the answer-vocabulary table
    # the asserted margins, measured with seeds 0 to 4 (the values are in the comments of the cells that assert them)
    kl_over_bce=0.05, kl_over_blind=0.08, colour_gain=0.4,
)

# %% [markdown]
# ## 1. VQA v2 in its official files
#
# VQA v2 ships three kinds of JSON file (the layout of GT-Vision-Lab/VQA, `README.md`, and what
# `vlp_course.data.vqa` reads and writes):
#
# * **questions** — `{"questions": [{"image_id", "question", "question_id"}, ...]}` plus `info`,
#   `task_type` (`"Open-Ended"`), `data_type` (`"mscoco"`) and `data_subtype` (`"train2014"` ...);
# * **annotations** — one per question: `question_type` (its first words, e.g. `"what color is the"`,
#   from the list in the repository's `QuestionTypes/mscoco_question_types.txt`), `answer_type`
#   (`"yes/no"`, `"number"` or `"other"`), `multiple_choice_answer` (the most frequent answer) and the
#   ten `answers`, each `{"answer", "answer_confidence", "answer_id"}`;
# * **results**, what a model hands in — a list `[{"question_id", "answer"}, ...]` with one answer per
#   question.
#
# The scenes' questions have the same fields (ten simulated annotators who sometimes err, or type
# "Two" or "red." for "2" or "red"; notebook 8). We write the held-out images' questions in the
# official format, look at one record of each file, and read them back with the loader that reads
# VQA v2 itself.

# %%
t = time.perf_counter()
pre, sm, meta = load_scene_checkpoint("visualbert")  # the 5,000-step checkpoint of notebook 10
st = sm.st
train_q = [st.ds.questions[r] for r in st.rows("questions", "train").tolist()]
test_rows = st.rows("questions", "test")
test_q = [st.ds.questions[r] for r in test_rows.tolist()]
SECONDS["load the checkpoint and the scenes"] = time.perf_counter() - t

folder = Path(tempfile.mkdtemp(prefix="vqa14_"))
qfile, afile = write_vqa(test_q, folder, split="val2014")
on_disk_q, on_disk_a = json.loads(qfile.read_text()), json.loads(afile.read_text())
print(f"{qfile.name}: keys {sorted(on_disk_q)}")
print("  a question:  ", json.dumps(on_disk_q["questions"][0]))
ann = on_disk_a["annotations"][0]
print(f"{afile.name}: keys {sorted(on_disk_a)}")
print("  its annotation:", json.dumps({k: v for k, v in ann.items() if k != "answers"}))
print("  its ten answers:", [a["answer"] for a in ann["answers"]], "| the first in full:", json.dumps(ann["answers"][0]))

questions = load_vqa(qfile, afile)  # {question_id: VQAQuestion}
print(f"read back: {len(questions)} questions of {len({q.image_id for q in questions.values()})} held-out images")
assert len(questions) == len(test_q)
assert all(questions[q.question_id].answers == q.answers and questions[q.question_id].question_type == q.question_type
           for q in test_q), "the files hold exactly what was written"

# %% [markdown]
# The results record is what a model writes; section 5 writes one from a fine-tuned model and scores it.
#
# ## 2. The answer vocabulary
#
# The originals do not generate answers: they classify over a fixed list. The list of the 2019
# models is the one of the bottom-up-attention setup (hengyuan-hu/bottom-up-attention-vqa,
# `tools/compute_softscore.py`): normalise each question's `multiple_choice_answer` (the official
# punctuation, number-word and article rules of `normalize_answer`) and keep the answers that are the
# most frequent answer of **at least 9 questions** of VQA v2's training and validation sets:
# **3,129 answers**. The model can only ever predict an answer on the list.
#
# The course's `AnswerVocab.from_questions(questions, min_count)` counts each of the ten annotators'
# normalised answers instead of one answer per question; the scenes' model uses it with
# `min_count = 3` on the training images. The table shows, for each threshold, how many answers each
# rule keeps, how many distinct strings the annotators typed, and the share of training questions
# whose most frequent answer survives.

# %%
typed = Counter(a for q in train_q for a in q.answers)  # strings as typed
every_answer = Counter(normalize_answer(a) for q in train_q for a in q.answers)  # AnswerVocab.from_questions' count
per_question = Counter(normalize_answer(q.multiple_choice_answer) for q in train_q)  # bottom-up's count
print(f"{'min_count':>9s} {'typed strings':>14s} {'AnswerVocab (10 answers)':>25s} {'bottom-up (1 per question)':>27s} "
      f"{'questions covered':>18s}")
sizes = {"typed strings": [], "AnswerVocab (every annotator, normalised)": [], "bottom-up (most frequent answer, normalised)": []}
for m in CFG["min_counts"]:
    kept = {a for a, n in per_question.items() if n >= m}
    covered = np.mean([normalize_answer(q.multiple_choice_answer) in kept for q in train_q])
    row = (sum(n >= m for n in typed.values()), sum(n >= m for n in every_answer.values()), len(kept))
    for k, v in zip(sizes, row):
        sizes[k].append(v)
    print(f"{m:9d} {row[0]:14d} {row[1]:25d} {row[2]:27d} {covered:18.1%}")

fig, ax = plt.subplots(figsize=(6, 3))
for label, v in sizes.items():
    ax.plot(CFG["min_counts"], v, marker="o", label=label)
ax.set_xscale("log"); ax.set_xlabel("min_count (log scale)"); ax.set_ylabel("answers kept")
ax.set_title("the scenes' answer vocabulary against the frequency threshold", fontsize=10); ax.legend(fontsize=8)
plt.show()

vocab = AnswerVocab.from_questions(train_q, min_count=3)
assert vocab.answers == st.answers.answers == sorted(a for a, n in every_answer.items() if n >= 3), "the model's vocabulary"
n_typed, n_norm = sizes["typed strings"][0], sizes["AnswerVocab (every annotator, normalised)"][0]
print(f"normalisation folds {n_typed} typed strings into {n_norm} answers; the model chooses among {len(st.answers)}")
assert n_typed > 2 * n_norm and n_norm == len(st.answers)

# %% [markdown]
# **What to see.** The scenes' world is closed (seven colours, six shapes, counts, four directions,
# yes and no), so the normalised vocabulary barely moves until the threshold reaches the hundreds;
# normalisation is what matters here, folding about three typed strings into each answer. On VQA v2
# the answers have a long tail, and the threshold trades the size of the classifier against the
# questions it can never get right.
#
# ## 3. Soft scores
#
# The target of a question is a vector over the vocabulary: an answer given by k of the ten
# annotators scores `min(1, 0.3 k)`, i.e. 0.3, 0.6, 0.9 and 1.0 for k = 1, 2, 3 and 4 or more
# (`soft_score`). Those numbers are not arbitrary: they are the official accuracy of predicting that
# answer, which averages `min(1, matches / 3)` over the ten ways of leaving one annotator out. The
# naive `min(1, k / 3)`, without the leaving out, is too generous for k = 1 and 2:

# %%
print(f"{'k':>3s} {'soft_score(k)':>14s} {'official accuracy':>18s} {'min(1, k/3)':>12s}")
for k in range(11):
    gts = ["cat"] * k + [f"other {j}" for j in range(10 - k)]  # k annotators agree, the others say something else
    official = vqa_accuracy("cat", gts)
    print(f"{k:3d} {soft_score(k):14.1f} {official:18.4f} {min(1, k / 3):12.4f}")
    assert abs(soft_score(k) - official) < 1e-9, "the soft score is the official accuracy of that answer"
assert min(1, 1 / 3) > soft_score(1) and min(1, 2 / 3) > soft_score(2)

# %% [markdown]
# A real target: a held-out question whose annotators disagree and typed a variant. `st.q_target`
# holds every question's target vector (A = 26 answers); `AnswerVocab.targets` builds it from the ten
# answers (normalised first, answers outside the vocabulary dropped).

# %%
row = next(r for r in test_rows.tolist()
           if len({normalize_answer(a) for a in st.ds.questions[r].answers}) > 1
           and any(a != normalize_answer(a) for a in st.ds.questions[r].answers))
q = st.ds.questions[row]
target = st.q_target[row]  # (A,)
print(f"{q.question!r}: answers {q.answers}")
print("target, non-zero entries:", {st.answers.decode(i): round(float(target[i]), 1) for i in torch.nonzero(target).flatten()})
assert torch.equal(target, torch.from_numpy(st.answers.targets(q.answers)))

# %% [markdown]
# ## 4. Two losses on the same model and budget
#
# The model's answer layer gives a vector of A logits `z`. Two losses turn the soft scores `t` into
# a training signal:
#
# * **binary cross-entropy, summed over answers** — every answer is its own yes/no question, with
#   probability `sigmoid(z_a)` and target `t_a`; the loss is averaged over the elements and multiplied
#   by A, i.e. summed over answers and averaged over questions (airsplay/lxmert `src/tasks/vqa.py`,
#   jiasenlu/vilbert_multi_task `vilbert/task_utils.py`, jackroos/VL-BERT
#   `vqa/modules/resnet_vlbert_for_vqa.py`: `vlp_course.pretraining.losses.vqa_bce_loss`);
# * **KL divergence with batch mean** — VisualBERT (uclanlp/visualbert
#   `visualbert/pytorch_pretrained_bert/modeling.py`, `TrainVisualBERTObjective`) compares
#   `log_softmax(z)` with `t` through `KLDivLoss(reduction="batchmean")`: summed over answers, divided
#   by the number of questions (`vlp_course.models.visualbert.vqa_kl_loss`). The original passes the
#   soft scores as they are, **not renormalised** to sum to 1 (`visualbert/dataloaders/vqa_dataset.py`
#   builds them as `min(1, 0.3 count)`), so a question whose annotators split between two answers
#   weighs more than one with a single answer.
#
# Below, the training step is written out. `sm.vqa_step(model, batch)` lays out the question and the
# regions and returns the model's output; we take its logits, never show it the targets, and apply the
# loss we choose. Both fine-tunes start from the same checkpoint with the same answer-layer
# initialisation, see the same batches in the same order, with the same optimiser, learning rate and
# steps; only the loss differs.

# %%
LOSSES = {"BCE (LXMERT, ViLBERT, VL-BERT)": vqa_bce_loss, "KL (VisualBERT)": vqa_kl_loss}
BCE, KL = LOSSES


def vqa_batches(step):
    """The training batch of `step`: the same for every run (it depends on the step and the seed only)."""
    return {k: v for k, v in st.vqa_batch(step, CFG["batch"], seed=CFG["seed"]).items() if k != "rows"}


def vqa_loss_step(model, batch, loss_fn, zero_image=False):
    targets = batch["soft_scores"]  # (B, A) soft scores
    question = {k: v for k, v in batch.items() if k != "soft_scores"}  # what the model may see
    logits = sm.vqa_step(model, question, zero_image).logits["vqa"]  # (B, A) read at each question's [MASK]
    return {"loss": loss_fn(logits, targets)}


def fresh_model():
    torch.manual_seed(CFG["seed"])  # the same initialisation of the new answer layer for every run
    qa = sm.qa_model()
    run.transfer_pretrained(qa, pre)  # the checkpoint's encoder; only `cls` (the answer layer) is new
    return qa


def finetune(loss_fn, zero_image=False):
    """A VQA model from the checkpoint, fine-tuned with `loss_fn(logits (B, A), soft_scores (B, A))` for CFG's budget."""
    qa = fresh_model()
    cfg = TrainConfig(steps=CFG["steps"], lr=CFG["lr"], warmup_steps=CFG["warmup"], seed=CFG["seed"], progress=False)
    train(qa, vqa_batches, lambda m, b: vqa_loss_step(m, b, loss_fn, zero_image), cfg, device=device)
    return qa


# the step with the KL loss is the model's own (VisualBertForQuestionAnswering computes vqa_kl_loss itself)
qa0, batch0 = fresh_model().eval(), vqa_batches(0)
with torch.no_grad():
    own = sm.vqa_step(qa0, batch0).loss
    ours = {name: vqa_loss_step(qa0, batch0, fn)["loss"] for name, fn in LOSSES.items()}
print({k: round(float(v), 3) for k, v in ours.items()}, "| the model's own loss:", round(float(own), 3))
assert torch.allclose(ours[KL], own, atol=1e-6)

# %% [markdown]
# Before training, where does each loss push? The gradient of the loss with respect to the logits
# says it. With binary cross-entropy each answer is pushed on its own, so the 24 or so answers with
# target 0 take most of the push; with the softmax, the answers compete: the gradient of a question
# is `(sum of t) · softmax(z) − t`, which sums to 0 over the answers, so the push down on the answers
# with target 0 is at most half of the whole.

# %%
logits0 = sm.vqa_step(qa0, {k: v for k, v in batch0.items() if k != "soft_scores"}).logits["vqa"].detach()
t0 = batch0["soft_scores"]
share = {}
for name, fn in LOSSES.items():
    z = logits0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(z, t0), z)  # (B, A)
    share[name] = (float(g.abs()[t0 == 0].sum() / g.abs().sum()),
                   float(g.abs()[torch.arange(len(t0)), t0.argmax(-1)].sum() / g.abs().sum()))
    print(f"{name:32s} gradient on answers with target 0: {share[name][0]:.0%}, on each question's best answer: {share[name][1]:.0%}")
assert share[BCE][0] > 0.85 and share[KL][0] <= 0.5 + 1e-6 and share[KL][1] > 4 * share[BCE][1]

# %%
t = time.perf_counter()
models, preds = {}, {}
for name, fn in LOSSES.items():
    models[name] = finetune(fn)
    preds[name] = run.vqa_predictions(models[name], sm)  # the argmax answer to every held-out question, scored
SECONDS["two fine-tunes (BCE, KL)"] = time.perf_counter() - t
acc = {name: float(np.mean([p["accuracy"] for p in preds[name]])) for name in LOSSES}
for name in LOSSES:
    print(f"{name:32s} VQA accuracy {acc[name]:.1%} after {CFG['steps']} steps of {CFG['batch']} questions")


def by_question_type(predictions):
    out = {}
    for p in predictions:
        out.setdefault(st.ds.questions[p["row"]].question_type, []).append(p["accuracy"])
    return {k: float(np.mean(v)) for k, v in sorted(out.items())}


types = list(by_question_type(preds[KL]))
fig, ax = plt.subplots(figsize=(8, 3))
for k, name in enumerate(LOSSES):
    per_type = by_question_type(preds[name])
    ax.bar(np.arange(len(types)) + 0.4 * k - 0.2, [100 * per_type[q] for q in types], width=0.4, label=f"{name}: {acc[name]:.1%}")
ax.set_xticks(range(len(types)), [f'"{q} …"' for q in types], fontsize=8, rotation=15, ha="right")
ax.set_ylabel("VQA accuracy (%)"); ax.set_ylim(0, 100); ax.legend(fontsize=8)
ax.set_title(f"same checkpoint, batches and {CFG['steps']} steps; only the loss differs", fontsize=10)
plt.show()
kl_t, bce_t = by_question_type(preds[KL]), by_question_type(preds[BCE])
# seeds 0, 1, 2, 3, 4: KL 67.1 / 73.7 / 69.4 / 66.6 / 70.0%, BCE 53.4 / 55.7 / 55.0 / 58.5 / 55.2%
# (KL ahead by 13.7 / 18.0 / 14.5 / 8.0 / 14.8 points); colour questions, KL - BCE: +52 / +64 / +64 / +38 / +72 points
assert acc[KL] > acc[BCE] + CFG["kl_over_bce"], "the text below: at this budget, KL is well ahead"
assert kl_t["what color is the"] > bce_t["what color is the"] + 0.3, "the text below: KL has learned colours, BCE much less"

# %% [markdown]
# **What it shows.** On the same budget the KL loss is far ahead, and the bars say where: the KL
# model has learned to name the colour of the object a question picks out, the BCE model much less
# so. The gradient shares above suggest one reason: most of what binary
# cross-entropy does early is push the many wrong answers down, each on its own. The originals train
# for many epochs, where binary cross-entropy serves LXMERT, ViLBERT and VL-BERT well; this comparison
# says which loss gets further in a short fine-tune, nothing more. The shipped recipe study of
# notebook 13 points the same way for VL-BERT trained from scratch for 600 steps:

# %%
from vlp_course.recipes.shipped import recipe_study

study = list(recipe_study()["changes"].items())  # (label, (mean, std, lowest seed, highest seed, seeds))
(bce_label, bce_row), (kl_label, kl_row) = study[0], study[3]
print(f"{bce_label}: {bce_row[0]:.1%} (seeds {bce_row[2]:.1%} to {bce_row[3]:.1%})\n{kl_label}: {kl_row[0]:.1%} "
      f"(seeds {kl_row[2]:.1%} to {kl_row[3]:.1%})")
assert "BCE" in bce_label and "KL" in kl_label and kl_row[2] > bce_row[3], "KL's worst seed beats BCE's best"

# %% [markdown]
# ## 5. The official accuracy, from a results file
#
# The KL model answers every held-out question; its answers go into a results file in the official
# format, which we read back (the loader refuses malformed files) and score with the official
# evaluation: overall, per answer type and per question type, in percent rounded to two decimals, as
# GT-Vision-Lab/VQA `PythonEvaluationTools/vqaEvaluation/vqaEval.py` prints them. The score from
# the file must equal the one computed in memory.

# %%
qa, predictions = models[KL], preds[KL]
results = [{"question_id": st.ds.questions[p["row"]].question_id, "answer": p["predicted"]} for p in predictions]
rfile = folder / "OpenEnded_mscoco_val2014_visualbert_results.json"
rfile.write_text(json.dumps(results))
print(f"{rfile.name}: {len(results)} results, the first: {json.dumps(results[0])}")
answers_read = load_vqa_results(rfile, questions.keys())  # {question_id: answer}, every question answered once
scores = evaluate_vqa(questions, answers_read)
in_memory = 100 * np.mean([p["accuracy"] for p in predictions])
print(f"official overall accuracy {scores['overall']:.2f}% (in memory: {in_memory:.4f}%)")
assert abs(scores["overall"] - in_memory) <= 0.005 + 1e-9, "the file's score is the in-memory score, rounded"
print(f"\n{'answer type':12s} {'questions':>9s} {'accuracy':>9s}")
for kind, v in scores["perAnswerType"].items():
    print(f"{kind:12s} {sum(q.answer_type == kind for q in test_q):9d} {v:8.2f}%")
print(f"\n{'question type':20s} {'questions':>9s} {'accuracy':>9s}")
for kind, v in sorted(scores["perQuestionType"].items(), key=lambda kv: -kv[1]):
    print(f"{kind:20s} {sum(q.question_type == kind for q in test_q):9d} {v:8.2f}%")

# %% [markdown]
# **Bad results files.** The official tools assert on a results file that does not answer exactly
# the questions; `load_vqa_results` raises a `ValueError` with one line saying what is wrong instead
# (the cases are tested in `tests/test_vqa_eval.py`). Three broken files:

# %%
broken = {
    "an unknown question id": results[:-1] + [{"question_id": 10**9, "answer": "yes"}],
    "an answer missing": [{"question_id": results[0]["question_id"]}] + results[1:],
    "a question answered twice": results + [results[5]],
}
for what, entries in broken.items():
    bad = folder / "broken_results.json"
    bad.write_text(json.dumps(entries))
    try:
        load_vqa_results(bad, questions.keys())
        raise AssertionError(f"{what}: accepted")
    except ValueError as err:
        assert "\n" not in str(err)
        print(f"{what:26s} -> ValueError: {str(err).replace(str(folder) + '/', '')}")

# %% [markdown]
# ### The "soft-score accuracy" of training loops
#
# Many training loops print, as their accuracy, the soft score of the predicted answer read from the
# target vector (airsplay/lxmert `src/tasks/vqa_data.py`: `VQAEvaluator.evaluate` adds up
# `label[answer]`). It is cheap and looks like the official number, but it is not quite. The targets
# of the bottom-up-attention setup (`compute_target` in its `tools/compute_softscore.py`) count the
# answers **as typed** (the normalisation is applied to the vocabulary only), so an annotator's "Two"
# or "red." does not count for "2" or "red"; the official evaluation normalises the answers, except
# when all ten are identical, where it compares them as typed. Below, both numbers for the same
# predictions, and the questions where they differ. (The course's own targets, `st.q_target`,
# normalise every answer; on the scenes they give the official number for every question.)

# %%
def typed_soft_score(p):
    """The score of the predicted answer in a target built from the answers as typed (bottom-up's compute_target)."""
    return soft_score(Counter(p["answers"])[p["predicted"]])


official_q = np.array([p["accuracy"] for p in predictions])
typed_q = np.array([typed_soft_score(p) for p in predictions])
course_q = np.array([float(st.q_target[p["row"], st.answers.index[p["predicted"]]]) for p in predictions])
differ = np.nonzero(np.abs(typed_q - official_q) > 1e-9)[0]
print(f"official VQA accuracy {official_q.mean():.2%} | soft-score accuracy, typed answers {typed_q.mean():.2%} | "
      f"with the course's normalised targets {course_q.mean():.2%}")
print(f"{len(differ)} of {len(predictions)} questions score differently; for example:")
for i in differ[:5]:
    p = predictions[i]
    print(f"  {p['question']!r:48s} predicted {p['predicted']!r:9s} official {official_q[i]:.1f}, typed {typed_q[i]:.1f}  {p['answers']}")
assert np.all(typed_q <= official_q + 1e-9) and len(differ) > 0, "typed counting can only miss matches"
assert np.allclose(course_q, official_q, atol=1e-6), "normalised targets agree with the official score on the scenes"
unanimous = ["Two"] * 10  # the one case where normalising the targets is wrong the other way
print(f'ten annotators typed "Two": the official accuracy of "2" is {vqa_accuracy("2", unanimous):.1f} (compared as typed), '
      f'its normalised soft score {AnswerVocab(["2"]).targets(unanimous)[0]:.1f}')
assert vqa_accuracy("2", unanimous) == 0.0 and AnswerVocab(["2"]).targets(unanimous)[0] == 1.0

# %% [markdown]
# **What to see.** The gap is small on the scenes (their annotators rarely mistype), and it always
# goes one way: counting the answers as typed can only miss matches. On VQA v2, where answers are
# typed freely, report the official number from a results file, never the training loop's.
#
# ## 6. Looking at the errors
#
# **Which questions need the image?** The same model, fine-tuned with the same loss and budget but
# with the image zeroed (features and boxes 0, every region slot real; `zero_image=True`, as the
# question-only baselines of notebooks 10–13), can only learn what the question's words predict.

# %%
t = time.perf_counter()
blind_model = finetune(vqa_kl_loss, zero_image=True)
blind = run.vqa_predictions(blind_model, sm, zero_image=True)
SECONDS["question-only fine-tune"] = time.perf_counter() - t
with_image, without = by_question_type(predictions), by_question_type(blind)
acc_blind = float(np.mean([p["accuracy"] for p in blind]))
# the prior of each question type: its most frequent training answer, given to every held-out question of the type
top = {k: Counter(q.multiple_choice_answer for q in train_q if q.question_type == k).most_common(1)[0][0] for k in types}
prior = {k: float(np.mean([vqa_accuracy(top[k], q.answers) for q in test_q if q.question_type == k])) for k in types}
print(f"with the image {acc[KL]:.1%}, question only {acc_blind:.1%}")
fig, ax = plt.subplots(figsize=(8, 3))
x = np.arange(len(types))
ax.bar(x - 0.27, [100 * with_image[q] for q in types], width=0.27, label="with the image", color="tab:orange")
ax.bar(x, [100 * without[q] for q in types], width=0.27, label="question only (image zeroed)", color="grey")
ax.bar(x + 0.27, [100 * prior[q] for q in types], width=0.27, label="the type's most frequent answer", color="lightgrey")
ax.set_xticks(x, [f'"{q} …"' for q in types], fontsize=8, rotation=15, ha="right")
ax.set_ylabel("VQA accuracy (%)"); ax.set_ylim(0, 100); ax.legend(fontsize=8)
ax.set_title("VisualBERT fine-tuned with and without the image, per question type", fontsize=10)
plt.show()
gain = {q: with_image[q] - without[q] for q in types}
print(f"{'question type':20s} {'with image':>10s} {'question only':>13s} {'gain':>6s} {'most frequent answer':>21s}")
for q in types:
    print(f"{q:20s} {with_image[q]:10.1%} {without[q]:13.1%} {100 * gain[q]:+6.1f} {prior[q]:14.1%} ({top[q]!r})")
colour, shape = "what color is the", "what shape is the"
others = [q for q in types if q not in (colour, shape)]
# seeds 0, 1, 2, 3, 4: with the image 67.1 / 73.7 / 69.4 / 66.6 / 70.0%, question only 52.9 / 50.4 / 53.0 / 52.9 / 54.5%;
# colour +52 / +74 / +67 / +58 / +62 points, shape +26 / +68 / +29 / +27 / +9; the largest gain on the other
# types +5.6 / +5.8 / +3.1 / 0.0 / +12.8; question only against the type's most frequent answer: at most 11.0 points apart
assert acc[KL] > acc_blind + CFG["kl_over_blind"], "the image helps"
assert gain[colour] > CFG["colour_gain"] and gain[shape] > 0, "colour questions gain most"
assert max(gain[q] for q in others) < 0.5 * gain[colour], "yes/no, counting and 'where' gain far less"
assert all(abs(without[q] - prior[q]) < 0.15 for q in types), "question only is close to the type's most frequent answer"
yes_no_and_counting = [q for q in others if q != "where is the"]
assert max(prior[q] for q in (colour, shape)) < 0.3 and min(prior[q] for q in yes_no_and_counting) > 0.6, "the priors, as the text says"

# %% [markdown]
# **What to see.** The question-only model (grey) scores close to always giving the type's most
# frequent answer (light grey; within 15 points on every type): from the words alone it learns mostly
# the prior of each question type. That prior is low for colours and shapes (about one answer in four
# or five) and high for the yes/no and counting questions (more than 60%), so a model can look good on
# those without the image. With the image (orange), the model gains most on colour questions; on
# shapes the gain is smaller and varies with the seed at this budget (it learns them later); on yes/no,
# counting and "where" questions it gains far less (at most half as much as on colours). At this
# budget it has learned to read an object's colour from its region, not yet its presence, number or
# position.
#
# **By number of objects.** Each image holds one to four objects; more objects mean more to count
# and more to tell apart. The mix of questions changes too (an image with one object gets no "where"
# and no "is the … left of …" question), so the table also splits by answer type. And the answers'
# prior changes with the number of objects: on a one-object image a count is almost always 0 or 1,
# which a model can guess from the question alone. The last column is the question-only model's
# accuracy on the counting questions: what the prior alone gets.

# %%
n_objects = lambda p: len(st.ds.scenes[p["image"]].objects)
print(f"{'objects':>7s} {'questions':>9s} {'all':>6s}  " + "  ".join(f"{k:>7s}" for k in ("yes/no", "number", "other"))
      + f"  {'number, question only':>22s}")
by_n = {}
for n in sorted({n_objects(p) for p in predictions}):
    ps = [p for p in predictions if n_objects(p) == n]
    by_n[n] = {"all": float(np.mean([p["accuracy"] for p in ps]))}
    for kind in ("yes/no", "number", "other"):
        by_n[n][kind] = float(np.mean([p["accuracy"] for p in ps if p["answer_type"] == kind]))
    by_n[n]["number, question only"] = float(np.mean([p["accuracy"] for p in blind
                                                      if n_objects(p) == n and p["answer_type"] == "number"]))
    print(f"{n:7d} {len(ps):9d} {by_n[n]['all']:6.1%}  " + "  ".join(f"{by_n[n][k]:7.1%}" for k in ("yes/no", "number", "other"))
          + f"  {by_n[n]['number, question only']:22.1%}")
fig, ax = plt.subplots(figsize=(5, 2.8))
for kind in ("all", "yes/no", "number", "other"):
    ax.plot(list(by_n), [100 * by_n[n][kind] for n in by_n], marker="o", label=kind, lw=3 if kind == "all" else 1.5)
ax.plot(list(by_n), [100 * by_n[n]["number, question only"] for n in by_n], ls="--", color="grey", label="number, question only")
ax.set_xticks(list(by_n)); ax.set_xlabel("objects in the image"); ax.set_ylabel("VQA accuracy (%)"); ax.set_ylim(0, 100)
ax.legend(fontsize=8, title="answer type", title_fontsize=8); ax.set_title("accuracy by number of objects", fontsize=10)
plt.show()
# seeds 0, 1, 2, 3, 4: all questions 80.9 / 87.1 / 84.4 / 84.3 / 82.0% with one object, the best of two to four
# objects 63.3 / 73.5 / 65.1 / 64.5 / 68.0%;
# counting (answer type "number") 85.4 / 84.3 / 92.0 / 92.5 / 92.5% with one object, 64.0 / 38.5 / 66.0 / 52.1 / 67.5% with four;
# counting with the image minus question only, averaged over 1-4 objects (absolute): 7.2 / 1.4 / 4.4 / 0.0 / 8.4 points
assert all(by_n[1]["all"] > by_n[n]["all"] + 0.1 for n in by_n if n > 1), "one object is the easiest image"
assert by_n[1]["number"] > by_n[4]["number"] + 0.15, "counting four objects goes wrong more often than counting one"
count_gap = np.mean([abs(by_n[n]["number"] - by_n[n]["number, question only"]) for n in by_n])
print(f"counting, with the image against question only: {100 * count_gap:.1f} points apart on average")
assert count_gap < 0.12, "at this budget the counts come from the question's prior, not from counting"

# %% [markdown]
# **What to see.** Accuracy is highest on one-object images and lower on every larger one, and the
# split by answer type shows it is not only the mix of questions: counting four objects goes wrong far
# more often than counting one. But the grey dashed line says why: the question-only model, which never
# sees the image, does about as well on the counting questions at every number of objects. At this budget
# the model does not count; it has learned the prior of each count question, and that prior is easy on a
# one-object image (the answer is nearly always 0 or 1) and hard on a busy one. An accuracy-by-difficulty
# table can hide a model that scores without looking; the question-only column is what exposes it.
#
# **A grid of wrong answers.** One wrong answer (VQA accuracy 0) per question type, drawn on its
# image with the question, the model's answer and the ten annotators' answers.

# %%
wrong = {}
for p in predictions:
    kind = st.ds.questions[p["row"]].question_type
    if p["accuracy"] == 0 and kind not in wrong:
        wrong[kind] = p
fig, axes = plt.subplots(2, 3, figsize=(11, 9))
for ax, kind in zip(axes.flat, types):
    if kind in wrong:
        show_vqa_answer(st.ds.scenes.images[wrong[kind]["image"]], wrong[kind], ax=ax)
        ax.set_xlabel(f"question type: {kind}", fontsize=8)
    else:
        ax.axis("off")
plt.tight_layout(h_pad=2.5); plt.show()

# %% [markdown]
# **What to see.** Read each wrong answer against its image and the annotators' answers. The model
# answers in the right kind (a count for "how many", yes or no for "is there"): it has learned what
# each question type asks for, and what goes wrong is the content of the answer. A wrong count is
# usually off by one. The cell below checks both over every held-out answer.

# %%
kinds = {}
for p in predictions:  # the answers the model gives, per answer type
    kinds.setdefault(p["answer_type"], set()).add(p["predicted"])
print({k: sorted(v) for k, v in kinds.items()})
assert kinds["yes/no"] <= {"yes", "no"} and all(a.isdigit() for a in kinds["number"]), "the right kind of answer"
off_by_one = [abs(int(p["predicted"]) - int(st.ds.questions[p["row"]].multiple_choice_answer)) == 1
              for p in predictions if p["answer_type"] == "number" and p["accuracy"] == 0]
print(f"wrong counts off by one: {np.mean(off_by_one):.0%} of {len(off_by_one)}")
# seeds 0, 1, 2, 3, 4: 70 / 62 / 74 / 52 / 78%
assert np.mean(off_by_one) > 0.5, "a wrong count is usually off by one"
print("heavy cells (s):", {k: round(v, 1) for k, v in SECONDS.items()})
print(f"total time {time.perf_counter() - T0:.0f} s")

# %% [markdown]
# ## Exercises
#
# **Exercise 1 — the official accuracy, with its normalisation.** Write
# `my_vqa_accuracy(prediction, answers)` for ten answers, as the official evaluation does: first
# clean every string (newlines and tabs become spaces, then strip the ends); if the ten cleaned
# answers are **not** all identical, apply `normalize_answer` to the prediction and to each answer
# (if they are all identical, compare as they are); then average, over the ten annotators `i`,
# `min(1, (number of the other nine answers equal to the prediction) / 3)`.

# %%
from vlp_course.data.vqa import normalize_answer


def my_vqa_accuracy(prediction, answers):
    ### BEGIN SOLUTION
    def clean(s):
        return s.replace("\n", " ").replace("\t", " ").strip()

    gts, pred = [clean(a) for a in answers], clean(prediction)
    if len(set(gts)) > 1:
        gts, pred = [normalize_answer(a) for a in gts], normalize_answer(pred)
    scores = [min(1.0, sum(a == pred for a in gts[:i] + gts[i + 1:]) / 3) for i in range(len(gts))]
    return sum(scores) / len(scores)
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.vqa import check_vqa_accuracy

check_vqa_accuracy(my_vqa_accuracy)

# %% [markdown]
# **Exercise 2 — a soft-score target vector.** Write `my_soft_score_targets(answers, vocab)`: for ten
# answers and a list of A (normalised) answers, return a float tensor of shape (A,) whose entry `i` is
# `min(1, 0.3 · k)`, where k is the number of the ten answers whose `normalize_answer` equals
# `vocab[i]`. Answers that are not in `vocab` are dropped.

# %%
from vlp_course.data.vqa import normalize_answer


def my_soft_score_targets(answers, vocab):
    ### BEGIN SOLUTION
    counts = {}
    for a in answers:
        a = normalize_answer(a)
        counts[a] = counts.get(a, 0) + 1
    return torch.tensor([min(1.0, 0.3 * counts.get(v, 0)) for v in vocab])
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.vqa import check_soft_scores

check_soft_scores(my_soft_score_targets)

# %% [markdown]
# **Exercise 3 — the two losses.** Write `my_vqa_losses(logits, soft_scores)` for (B, A) tensors,
# returning the pair `(bce, kl)` of scalars: `bce` is the binary cross-entropy of `sigmoid(logits)`
# against the soft scores, summed over the A answers and averaged over the B questions; `kl` is
# VisualBERT's `sum over answers of t · (log t − log_softmax(logits))` with 0 · log 0 = 0, the soft
# scores `t` as given (not renormalised), averaged over the B questions. Use `torch.nn.functional.logsigmoid`
# and `log_softmax` rather than taking the log of a probability.

# %%
import torch.nn.functional as F


def my_vqa_losses(logits, soft_scores):
    ### BEGIN SOLUTION
    B = logits.shape[0]
    t = soft_scores
    bce = -(t * F.logsigmoid(logits) + (1 - t) * F.logsigmoid(-logits)).sum() / B
    log_q = logits.log_softmax(-1)
    kl = torch.where(t > 0, t * (torch.log(t.clamp_min(1e-12)) - log_q), torch.zeros_like(t)).sum() / B
    return bce, kl
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.vqa import check_vqa_losses

check_vqa_losses(my_vqa_losses)

# %% [markdown]
# ## Open questions
# Answer each in the cell that asks it; an instructor grades them by hand.

# %% [markdown] tags=["manual", "points=2"]
# **Question 1.** The scenes' question-only model is far above chance on yes/no and counting
# questions. Name two ways the question's words can give the answer away, and say how VQA v2
# (Goyal et al. 2017) tried to remove such priors when it was collected.
#
# ### BEGIN SOLUTION
# *Rubric.* Examples: the answer distribution of a question type is skewed (most "is there a …"
# questions have one answer, "how many" questions are mostly small numbers); a phrase correlates with
# the answer (a question naming a size or an unlikely colour-shape pair is more often a "no"). VQA v2
# balanced the data: for each question it collected a complementary, similar image on which the same
# question has a different answer, so the words alone predict less.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=2"]
# **Question 2.** With VQA v2's 3,129 answers, about how large is the sum over answers of binary
# cross-entropy at the start of training if all logits are 0, and what share of its gradient goes to
# answers with target 0? Why might that slow a short fine-tune compared with the softmax-based KL?
#
# ### BEGIN SOLUTION
# *Rubric.* Each answer contributes ln 2, so the loss starts near 3,129 · 0.69 ≈ 2,170 per question;
# every answer's gradient is sigmoid(0) − t = 0.5 − t, so nearly all of it (all answers but the one or
# two with a non-zero score) pushes wrong answers down, each on its own. Until the wrong answers'
# logits are low, little of the signal separates the right answer from its competitors; with a
# softmax the answers compete from the first step and the push down equals the pull up.
# ### END SOLUTION
