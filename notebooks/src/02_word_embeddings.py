# %% [markdown]
# # 2 · Distributed word representations: skip-gram and pretrained embeddings
#
# Notebook 01 ended with a problem: one-hot vectors make every pair of different words equally
# unrelated. Here each word gets a short dense vector (64 numbers instead of thousands of zeros),
# learned so that words used in similar surroundings end up close together.
#
# The idea behind it is the **distributional hypothesis** (Harris 1954; Firth 1957): words that
# appear in similar contexts tend to have similar meanings. "Blaze" and "fire" are both burning,
# spreading, fought by crews; a model that only ever sees which words appear around which can
# still discover that they are alike.
#
# Plan: turn a corpus into (centre, context) pairs → write the skip-gram with negative sampling
# loss (word2vec) by hand → train it here on real news text → look at neighbours and a 2-D map →
# compare with gensim's word2vec → look inside a real pretrained encoder's embedding table.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from gensim.models import Word2Vec
from sklearn.decomposition import PCA

from vlp_course.text import (
    SkipGramNS, Vocabulary, corpus_skipgram_pairs, cosine_similarity_matrix, input_word_vector, lee_sentences,
    load_minilm, nearest_neighbours, noise_distribution, sgns_loss, skipgram_pairs, subsample_keep_probability,
    tokenize,
)
from vlp_course.training import TrainConfig, train

CFG = dict(
    min_count=3,        # words seen fewer times are dropped, as word2vec does
    window=4,           # context = up to 4 words on each side
    dim=64,             # embedding width
    negatives=5,        # K noise words per (centre, context) pair
    subsample=1e-3,     # word2vec's threshold for dropping very frequent words
    batch=1024,         # pairs per step
    steps=500,          # optimisation steps (about 1.5 passes over the pairs)
    lr=0.01,
    gensim_epochs=10,   # passes of the gensim reference
    k=10,               # neighbours compared between models
    n_queries=300,      # the most frequent words used as queries
    threads=1,          # these models are tiny: one CPU thread avoids thread overhead
)
torch.set_num_threads(CFG["threads"])

# %% [markdown]
# ## 1. The corpus and its (centre, context) pairs
#
# We use the Lee corpus again (Australian news, about 60,000 words), split into sentences. Skip-gram
# turns text into a prediction task: for every position (the **centre** word), every word at most
# `window` positions away is a **context** word to predict. Pairs do not cross sentence boundaries.

# %%
sentences = [tokenize(s) for s in lee_sentences()]
vocab = Vocabulary.build(sentences, min_count=CFG["min_count"], specials=(), unk_token=None)
ids = [[vocab.stoi[t] for t in s if t in vocab] for s in sentences]
ids = [s for s in ids if len(s) >= 2]
counts = torch.tensor([vocab.counts[t] for t in vocab.itos], dtype=torch.float)
print(f"{len(ids)} sentences, {int(counts.sum())} tokens kept, |V| = {len(vocab)}")

example = vocab.encode(["fires", "are", "burning", "near", "sydney"])
print([tuple(vocab.decode(p)) for p in skipgram_pairs(example, window=1)])
assert len(skipgram_pairs(example, window=1)) == 2 * (len(example) - 1), "window 1: two neighbours inside, one at each end"

pairs = corpus_skipgram_pairs(ids, CFG["window"])
print("all pairs:", tuple(pairs.shape))

# %% [markdown]
# Very frequent words ("the", "of") appear in almost every window and carry little information about
# their neighbours. word2vec keeps each occurrence of a word of relative frequency f with probability
# (√(f/t) + 1)·t/f (t = `subsample`); we apply it to the pairs, once, with a fixed seed.

# %%
g = torch.Generator().manual_seed(0)
keep = subsample_keep_probability(counts, CFG["subsample"])
pairs = pairs[torch.rand(len(pairs), generator=g) < keep[pairs[:, 0]] * keep[pairs[:, 1]]]
for w in ["the", "police", "flames"]:
    print(f"keep probability of {w!r} (count {vocab.counts[w]}): {keep[vocab.stoi[w]].item():.2f}")
print("pairs after subsampling:", tuple(pairs.shape))
assert keep[vocab.stoi["the"]] < 0.2 and keep[vocab.stoi["flames"]] == 1.0

# %% [markdown]
# ## 2. Skip-gram with negative sampling
#
# Each word w has two vectors: v_w when it is the centre and u_w when it is a context word. Asking
# a softmax over all |V| words "which word is next to the centre?" is expensive; negative sampling
# asks K + 1 yes/no questions instead: "is o (the real context) a neighbour of c?" — yes; "is n_k
# (a random word) a neighbour?" — no. With σ the logistic function, the loss of one pair is
#
# $$ L = -\log \sigma(u_o^\top v_c) - \sum_{k=1}^{K} \log \sigma(-u_{n_k}^\top v_c), $$
#
# the noise words being drawn with probability proportional to count^0.75 (Mikolov et al. 2013).
# `sgns_loss` in `vlp_course.text.sgns` is these two lines of PyTorch. A check by hand: with all
# vectors 0 every σ is 1/2, so L = (K + 1) log 2.

# %%
K = CFG["negatives"]
zero_loss = sgns_loss(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, K, 4))
print(f"loss at zero vectors: {zero_loss.item():.4f} = (K+1) log 2 = {(K + 1) * np.log(2):.4f}")
assert abs(zero_loss.item() - (K + 1) * np.log(2)) < 1e-6

noise = noise_distribution(counts, 0.75)
unigram = counts / counts.sum()
print(f"P('the'): unigram {unigram[vocab.stoi['the']]:.3f} -> noise {noise[vocab.stoi['the']]:.3f} (the 0.75 power flattens it)")
assert noise[vocab.stoi["the"]] < unigram[vocab.stoi["the"]]

# %% [markdown]
# ## 3. Train it
#
# Each step draws a batch of pairs and K noise words per pair, and the course's training loop
# (`vlp_course.training.train`) runs Adam on the two tables.

# %%
def sgns_batch(step):
    idx = torch.randint(0, len(pairs), (CFG["batch"],), generator=g)
    neg = torch.multinomial(noise, CFG["batch"] * K, replacement=True, generator=g).view(CFG["batch"], K)
    return pairs[idx, 0], pairs[idx, 1], neg


sgns = SkipGramNS(len(vocab), CFG["dim"])
history = train(
    sgns, sgns_batch, lambda model, b: {"loss": model(*b)},
    TrainConfig(steps=CFG["steps"], lr=CFG["lr"], grad_clip=None, seed=0),
)
last = history.smoothed(window=50)[-1]
print(f"loss: {history.train['loss'][0]:.3f} at the start, {last:.3f} at the end")
assert last < 0.7 * history.train["loss"][0], "training lowered the loss by more than 30%"
history.plot(title="Skip-gram with negative sampling on the Lee corpus")
plt.show()

# %% [markdown]
# ## 4. Look at it: nearest neighbours
#
# The neighbours of a word are the words whose vectors have the highest cosine similarity with it.
# With only 60,000 words of training text they are noisy, but topics show: fire words near fire
# words, conflict words near conflict words.

# %%
E_ours = sgns.vectors()
probe = ["fire", "police", "afghanistan", "government", "israeli", "people"]
_, nn_ids = nearest_neighbours(E_ours, vocab.encode(probe), k=6)
for w, row in zip(probe, nn_ids):
    print(f"{w:>12}: {', '.join(vocab.decode(row))}")

# %% [markdown]
# ## 5. A reference: gensim's word2vec on the same text
#
# gensim implements the original word2vec in optimised C. We train its skip-gram (`sg=1`) with the
# same window, width, number of noise words, minimum count and subsampling, then ask how often the
# two models agree on a word's 10 nearest neighbours, among the 300 most frequent words. Random
# vectors give the baseline: agreement by chance is about k/|V|.

# %%
w2v = Word2Vec(
    sentences=sentences, vector_size=CFG["dim"], window=CFG["window"], min_count=CFG["min_count"], sg=1,
    negative=CFG["negatives"], sample=CFG["subsample"], epochs=CFG["gensim_epochs"], workers=1, seed=0,
)
E_gensim = torch.tensor(np.stack([w2v.wv[t] for t in vocab.itos]))
E_random = torch.randn(len(vocab), CFG["dim"], generator=torch.Generator().manual_seed(1))

queries = torch.arange(CFG["n_queries"])  # ids are sorted by frequency


def neighbour_overlap(a, b):
    na, nb = nearest_neighbours(a, queries, CFG["k"])[1], nearest_neighbours(b, queries, CFG["k"])[1]
    return float(np.mean([len(set(x.tolist()) & set(y.tolist())) / CFG["k"] for x, y in zip(na, nb)]))


overlap_ours = neighbour_overlap(E_ours, E_gensim)
overlap_random = neighbour_overlap(E_random, E_gensim)
print(f"shared neighbours with gensim: ours {overlap_ours:.3f}, random vectors {overlap_random:.4f} "
      f"(chance ~ k/|V| = {CFG['k'] / len(vocab):.4f})")
assert overlap_ours > 0.05 and overlap_ours > 10 * max(overlap_random, CFG["k"] / len(vocab)), \
    "our skip-gram agrees with gensim's far more than chance"

# %% [markdown]
# ## 6. A 2-D map
#
# PCA projects the 64-dimensional vectors of a few chosen words onto the plane of largest spread.
# Two dimensions lose most of the structure, yet groups of related words tend to sit together.

# %%
groups = {
    "fire": ["fire", "fires", "blaze", "flames", "firefighters", "crews", "burning"],
    "conflict": ["israeli", "palestinian", "military", "attack", "security", "troops"],
    "numbers": ["two", "three", "four", "five", "six", "eight"],
}
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for ax, (name, E) in zip(axes, [("ours (PyTorch)", E_ours), ("gensim", E_gensim)]):
    words = [w for ws in groups.values() for w in ws]
    xy = PCA(n_components=2, random_state=0).fit_transform(E[vocab.encode(words)].numpy())
    start = 0
    for gname, ws in groups.items():
        part = xy[start : start + len(ws)]
        ax.scatter(part[:, 0], part[:, 1], label=gname)
        for (x, y), w in zip(part, ws):
            ax.annotate(w, (x, y), fontsize=7)
        start += len(ws)
    ax.set_title(f"PCA of skip-gram vectors: {name}")
    ax.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7. The embedding table of a real pretrained encoder
#
# Large models learn their input vectors from far more text. all-MiniLM-L6-v2 is a small BERT
# (6 layers, width 384) trained on over a billion sentence pairs; its first layer is an embedding
# table with one row per WordPiece token (30,522 rows, notebook 03 explains word pieces). These
# rows are the model's *context-free* word vectors. Do capital cities sit together? We compare the
# mean cosine among ten capitals with their mean cosine to ten unrelated words.

# %%
minilm = load_minilm()
tok, encoder = minilm.tokenizer, minilm.model
print("loaded from:", minilm.source)
table = encoder.get_input_embeddings().weight.detach()  # (30522, 384)

capitals = ["paris", "london", "berlin", "tokyo", "rome", "madrid", "moscow", "beijing", "cairo", "athens"]
unrelated = ["banana", "running", "blue", "happy", "chair", "seven", "guitar", "slowly", "cheese", "window"]
C = torch.stack([input_word_vector(encoder, tok, w) for w in capitals])
U = torch.stack([input_word_vector(encoder, tok, w) for w in unrelated])
S = cosine_similarity_matrix(C)
within = S[~torch.eye(len(capitals), dtype=torch.bool)].mean().item()
across = cosine_similarity_matrix(C, U).mean().item()
print(f"mean cosine: capital-capital {within:.3f}, capital-unrelated {across:.3f}")
assert within > across + 0.15, "capitals are closer to each other than to unrelated words"

for w in ["paris", "banana", "running"]:
    _, row = nearest_neighbours(table, [tok.convert_tokens_to_ids(w)], k=6)
    print(f"{w:>8}: {', '.join(tok.convert_ids_to_tokens(row[0].tolist()))}")

# %% [markdown]
# The heat map shows the whole similarity matrix: a bright block of capitals, a dim block across.

# %%
words = capitals + unrelated
fig, ax = plt.subplots(figsize=(6, 5))
im = ax.imshow(cosine_similarity_matrix(torch.cat([C, U])).numpy(), cmap="magma", vmin=-0.1, vmax=1)
ax.set_xticks(range(len(words)), words, rotation=90, fontsize=7)
ax.set_yticks(range(len(words)), words, fontsize=7)
fig.colorbar(im, ax=ax, label="cosine")
ax.set_title("MiniLM input embeddings: cosine similarity")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercises
#
# ### Exercise 1 — context-window pairs
# Write `my_skipgram_pairs(ids, window)`: for a list of token ids, return a (P, 2) integer tensor
# holding every (centre id, context id) pair whose positions i ≠ j satisfy |i − j| ≤ window. Any row
# order is accepted.

# %%
def my_skipgram_pairs(ids, window):
    ### BEGIN SOLUTION
    rows = []
    for i in range(len(ids)):
        for j in range(max(0, i - window), min(len(ids), i + window + 1)):
            if j != i:
                rows.append((ids[i], ids[j]))
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 2)
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.text import check_skipgram_pairs

check_skipgram_pairs(my_skipgram_pairs)

# %% [markdown]
# ### Exercise 2 — the SGNS loss
# Write `my_sgns_loss(centre, context, negatives)` for centre vectors (B, D), context vectors (B, D)
# and noise vectors (B, K, D): the batch mean of −log σ(u_o·v_c) − Σ_k log σ(−u_k·v_c). Use
# `torch.nn.functional.logsigmoid` for numerical stability.

# %%
def my_sgns_loss(centre, context, negatives):
    ### BEGIN SOLUTION
    pos = torch.nn.functional.logsigmoid((centre * context).sum(-1))
    neg = torch.nn.functional.logsigmoid(-torch.einsum("bkd,bd->bk", negatives, centre)).sum(-1)
    return -(pos + neg).mean()
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.text import check_sgns_loss

check_sgns_loss(my_sgns_loss)

# %% [markdown]
# ### Open questions
# Answer each in the cell that asks it; an instructor grades them by hand.

# %% [markdown] tags=["manual", "points=2"]
# **Question 1.** We kept the centre table as "the" word vectors. Try the context table, or their
# sum: does the agreement with gensim change?
#
# ### BEGIN SOLUTION
# *Rubric.* The answer reports the agreement measured for the context table and for the sum next to
# the centre table's, whatever it is. Both tables are trained by the same centre-context dot
# products, so each carries the co-occurrence information; the sum (as GloVe uses W + W~) combines
# the two views.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=2"]
# **Question 2.** Raise `window` to 8. Which neighbours change? Small windows are said to favour
# words of the same type, large ones words of the same topic: do you see it?
#
# ### BEGIN SOLUTION
# *Rubric.* The answer lists neighbours at window 4 and 8 for a few words. A wider window counts co-
# occurrence over a longer span, so neighbours tend to move from words of the same kind (same part
# of speech, interchangeable in a slot) towards words of the same subject; on a small corpus the
# effect can be weak or noisy, and saying so honestly earns full marks.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=2"]
# **Question 3.** Why does the noise distribution use count^0.75 rather than the counts themselves?
# Set the power to 1 and to 0 and compare the neighbours of a rare word.
#
# ### BEGIN SOLUTION
# *Rubric.* The power 0.75 flattens the unigram distribution: frequent words are drawn less than
# their share, rare ones more (Mikolov et al. 2013 found it worked best). Power 1 fills the
# negatives with function words, so rare words are seldom contrasted; power 0 (uniform) draws rare
# words as often as "the". The answer reports the rare word's neighbours under each.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 4.** The capitals in MiniLM's table are close although the table is never trained on a
# "capital" label. Where could this similarity come from?
#
# ### BEGIN SOLUTION
# *Rubric.* From the text alone: capitals occur in similar contexts ("the capital X", "the
# government in X"), so training on text moves their rows in similar directions (the distributional
# hypothesis). No label is needed; the similarity is a by-product of predicting words from context.
# ### END SOLUTION
