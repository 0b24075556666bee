# %% [markdown]
# # Vision-language pretraining, from one-hot vectors to ViLBERT
#
# This is the course index. Run the setup cell below once: it checks that the course package and
# PyTorch import, and tells you which device you will train on.
#
# Each notebook runs on its own, top to bottom, in ten seconds to about a minute and a half on a 2-core
# CPU (the table below), and on a Colab GPU with the badge at its top. Every claim a notebook makes is measured in that notebook and
# checked by an `assert`, so if a cell fails, something really changed.

# %% [markdown]
# ## Part 1 — representing text
# 1. [One-hot vectors and bags of words](01_one_hot_and_bag_of_words.ipynb)
# 2. [Distributed word representations: skip-gram and pretrained embeddings](02_word_embeddings.ipynb)
# 3. [Sequence representations: averages, LSTMs and BERT](03_sequence_representations.ipynb)
#
# ## Part 2 — representing images
# 4. [LeNet-5: an image as a matrix, then as a vector](04_lenet5.ipynb)
# 5. [Deeper nets: AlexNet, VGG and GoogLeNet](05_alexnet_vgg_googlenet.ipynb)
# 6. [ResNet and the degradation problem](06_resnet.ipynb)
# 7. [Generative adversarial networks (2014)](07_gan.ipynb)
#
# ## Part 3 — vision and language together
# 8. [The three key problems: representation, fusion, alignment](08_three_key_problems.ipynb)
# 9. [Pretraining tasks: MLM, masked region modeling, image-text matching](09_pretraining_tasks.ipynb)
#
# ## Part 4 — the models of 2019–2020
# 10. [VisualBERT: one BERT over words and regions](10_visualbert.ipynb)
# 11. [LXMERT: a language encoder, an object encoder and a cross-modality encoder](11_lxmert.ipynb)
# 12. [ViLBERT: two streams that talk through co-attention](12_vilbert.ipynb)
# 13. [VL-BERT: one BERT over words and regions, with visual feature embeddings](13_vlbert.ipynb)
#
# Notebooks 10–13 run the whole 2019 pipeline: pixels → the stand-in detector of notebook 8 →
# region features → model → answer. Each pretrains its model briefly from scratch, then loads a
# small checkpoint that was pretrained for longer on the same scenes (shipped in `vlp_course/shipped/`,
# SHA-256 checked; the command that reproduces it is in the notebook), fine-tunes it for VQA against
# a question-only baseline, and measures whether pretraining helped: the same fine-tune with 500
# labelled questions from the checkpoint and from scratch.
#
# ## Part 5 — downstream tasks
# 14. [VQA as a task: formats, answer vocabulary, soft scores, losses and the official accuracy](14_vqa_task.ipynb)
# 15. [Visual reasoning: is the statement true of these two images?](15_visual_reasoning.ipynb)
# 16. [Single stream or two streams? The four models head to head](16_comparison.ipynb)
# 17. [Image captioning: the same encoder, another mask](17_captioning.ipynb)
# 18. [Text to image: drawing a scene from its caption](18_text_to_image.ipynb)
#
# Notebook 14 looks at VQA itself: how the originals build the answer vocabulary and their targets,
# which loss each uses, how the official metric scores an answer, and where a model goes wrong.
# Notebook 15 gives the models a new task, NLVR2-style reasoning over a pair of images, in each
# model's own way of reading a pair. Notebook 16 compares the four models' size, speed and accuracy.
# Notebook 17 turns the pretrained VisualBERT into a captioner by changing its attention mask, and
# scores its captions with the standard metrics and with a check of whether each caption is true.
# Notebook 18 goes the other way: images become grids of tokens, a MaskGIT-style transformer fills
# them in from a caption, and the course's detector reads the drawings back to check the caption.

# %% [markdown]
# ### The path, as a picture
# Text (top row) and images (bottom row) are learned apart first; notebook 8 asks how to join them,
# notebook 9 builds the pretraining tasks, and each model notebook pretrains with its own tasks
# (right) before the same VQA fine-tune. Notebook 7 (GANs) is a side road.

# %% tags=["course-path", "hide-input"]
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

# (number, label, x, y, colour): x is the order of the course, y its topic
STEPS = [
    (1, "one-hot,\nbag of words", 0, 3, "#cfe3f7"), (2, "word\nembeddings", 1.25, 3, "#cfe3f7"),
    (3, "sequences:\nLSTM, BERT", 2.5, 3, "#cfe3f7"),
    (4, "LeNet-5", 0, 1, "#f9dcc4"), (5, "AlexNet, VGG,\nGoogLeNet", 1.25, 1, "#f9dcc4"),
    (6, "ResNet", 2.5, 1, "#f9dcc4"), (7, "GAN", 2.5, -0.2, "#eeeeee"),
    (8, "three key\nproblems", 3.75, 2, "#d8f0d2"), (9, "pretraining\ntasks", 5, 2, "#d8f0d2"),
    (10, "VisualBERT", 6.6, 3.3, "#e6dcf5"), (11, "LXMERT", 6.6, 2.3, "#e6dcf5"),
    (12, "ViLBERT", 6.6, 1.3, "#e6dcf5"), (13, "VL-BERT", 6.6, 0.3, "#e6dcf5"),
    (14, "VQA as\na task", 10.6, 3.0, "#fff2b3"), (15, "visual\nreasoning", 10.6, 1.8, "#fff2b3"),
    (16, "the four\ncompared", 10.6, 0.6, "#fff2b3"), (17, "captioning", 10.6, -0.6, "#fff2b3"),
    (18, "text to\nimage", 10.6, -1.8, "#fff2b3"),
]
TASKS = {  # each model's pretraining tasks in its notebook, then the downstream task they are fine-tuned for
    10: "MLM + image-text matching → VQA",
    11: "MLM + matching + object/attribute labels\n+ feature regression + QA → VQA",
    12: "MLM + masked multi-modal (KL)\n+ alignment (matching) → VQA",
    13: "MLM + masked RoI classification\n(no matching task) → VQA",
}
EDGES = [(1, 2), (2, 3), (4, 5), (5, 6), (3, 8), (6, 8), (8, 9), (9, 10), (9, 11), (9, 12), (9, 13), (6, 7)]
DOWNSTREAM = [14, 15, 16, 17, 18]  # each reads all four model notebooks (lines drawn from the models' column)
W, H = 1.0, 0.7  # box size
where = {n: (x, y) for n, _, x, y, _ in STEPS}


def edge_point(a, b):
    """Where the line from box a's centre towards box b's centre leaves box a."""
    (xa, ya), (xb, yb) = where[a], where[b]
    dx, dy = xb - xa, yb - ya
    t = min(W / 2 / abs(dx) if dx else 1e9, H / 2 / abs(dy) if dy else 1e9)
    return xa + t * dx, ya + t * dy


fig, ax = plt.subplots(figsize=(13, 6))
for a, b in EDGES:
    ax.annotate("", xy=edge_point(b, a), xytext=edge_point(a, b), arrowprops=dict(
        arrowstyle="-|>", color="#555555", shrinkA=0, shrinkB=0, linestyle="--" if b == 7 else "-"))
for n, label, x, y, colour in STEPS:
    ax.add_patch(FancyBboxPatch((x - W / 2, y - H / 2), W, H, boxstyle="round,pad=0.02", fc=colour, ec="#555555"))
    ax.text(x, y, f"{n}\n{label}", ha="center", va="center", fontsize=8.5)
for n, tasks in TASKS.items():
    ax.text(where[n][0] + 0.6, where[n][1], tasks, ha="left", va="center", fontsize=8.5)
ax.plot([9.45, 9.45], [-1.8, 3.0], color="#555555", lw=1)
for n in DOWNSTREAM:
    ax.annotate("", xy=(where[n][0] - W / 2, where[n][1]), xytext=(9.45, where[n][1]),
                arrowprops=dict(arrowstyle="-|>", color="#555555", shrinkA=0, shrinkB=0))
for x, part in [(1.25, "part 1 · text (top), part 2 · images (bottom)"), (4.4, "part 3 · together"),
                (6.6, "part 4 · the models"), (10.6, "part 5 · tasks")]:
    ax.text(x, 3.95, part, ha="center", fontsize=9, style="italic")
ax.set(xlim=(-0.6, 11.3), ylim=(-2.25, 4.1))
ax.axis("off")
plt.show()

# %% [markdown]
# ## How the notebooks work
# * **Sizes in one place.** Near the top of each notebook a `CFG` dictionary holds every size that
#   matters (steps, widths, data sizes). The defaults fit a 2-core laptop CPU; on a GPU you can make
#   them larger and the same code runs.
# * **Exercises.** Sections end with exercises. In your copy (`make lab` opens your own copies, in
#   `mywork/`), a coding exercise is a function that raises `NotImplementedError()`: write its body.
#   The cell after it calls a check from `vlp_course.exercises`, which compares your function with
#   the course's reference on seeded inputs and tells you which shape or value differs. The solved
#   copies are in `mywork/solutions/`. Your copies are yours: the course never overwrites them.
# * **Offline.** Nothing is downloaded while a notebook runs: the data are generated by the package,
#   shipped in `vlp_course/shipped/` with a checksum, or come with an installed package.
# * **Open questions.** Each notebook ends with open questions, one markdown cell each: write your
#   answer in that cell. With nbgrader they are manually graded cells; the solved copies hold a short
#   rubric there.

# %% [markdown]
# ## How long each notebook takes
# Measured by running every notebook top to bottom with its default `CFG` on a 2-core CPU (AMD EPYC,
# torch 2.14.1, 2 threads, no GPU) with `make notebooks-run` on 2026-12-03: the committed numbers
# in `benchmarks/results/course/results.md`.
#
# | notebook | seconds | notebook | seconds |
# |---|---:|---|---:|
# | 00 index | 3 | 10 VisualBERT | 28 |
# | 01 one-hot, bag of words | 5 | 11 LXMERT | 27 |
# | 02 word embeddings | 12 | 12 ViLBERT | 35 |
# | 03 sequence representations | 11 | 13 VL-BERT | 36 |
# | 04 LeNet-5 | 12 | 14 VQA as a task | 12 |
# | 05 AlexNet, VGG, GoogLeNet | 13 | 15 visual reasoning | 19 |
# | 06 ResNet | 16 | 16 the four compared | 19 |
# | 07 GANs | 13 | 17 captioning | 32 |
# | 08 three key problems | 8 | 18 text to image | 34 |
# | 09 pretraining tasks | 29 | | |
#
# All 19 took 365 s (about 6 minutes) in one run. The four model notebooks and the two that generate take
# longest: each model notebook fine-tunes its model twice, with and without the image, to measure what the
# image adds, and the generation notebooks decode hundreds of captions or images.
#
# **What a GPU changes.** The default sizes are what CI runs on those 2 CPU cores, so every claim is
# checked at that size. On a GPU (a Colab GPU runtime, for instance) the same cells run unchanged and
# faster, and you can raise the sizes in `CFG` (steps, widths, data sizes) to train longer or wider.
# Mixed precision (`TrainConfig.precision` in `vlp_course.training`, "auto" by default: bf16 where the GPU supports it,
# else fp16) is used on CUDA devices only; on a CPU or MPS device training stays in fp32. The shipped
# checkpoints in `vlp_course/shipped/` load the same on any device. The asserts' margins were measured
# at the default sizes on a CPU; at other sizes or on a GPU, read the numbers each cell prints.

# %%
import vlp_course

print("vlp_course", vlp_course.__version__, "is ready; device:", device)
