# %% [markdown]
# # 1 · One-hot vectors and bags of words
#
# A neural network multiplies matrices; it cannot read the string "dog". Before any model of
# language (or of language *and* images) can learn, each word has to become a vector. This
# notebook builds the oldest answer to that problem, the **one-hot vector**, and its sums, the
# **bag of words** and the **bag of n-grams**. They are still used (BERT's input layer starts with
# one, as you will see), and their failures motivate everything in notebooks 02 and 03.
#
# Plan: split text into tokens → number the tokens with a vocabulary → one-hot matrix of a sentence
# → the one-hot product is an embedding lookup → bags of words and n-grams, checked against
# scikit-learn → what these vectors cannot express → exercises.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.feature_extraction.text import CountVectorizer

from vlp_course.text import (
    Vocabulary, bag_of_words, cosine_similarity_matrix, document_term_matrix, lee_documents, ngrams,
    one_hot, polarity_sentences, tokenize,
)

# Every size used below. The defaults run in well under a minute on a laptop CPU.
CFG = dict(
    min_count=2,          # a word needs this many occurrences in the Lee corpus to get its own id
    embed_dim=8,          # width of the toy embedding table in section 3
    ngram_range=(1, 2),   # unigrams and bigrams for the scikit-learn comparison
    heatmap_docs=8,       # documents (rows) in the document-term heat map
    heatmap_terms=14,     # terms (columns) in the document-term heat map
)

# %% [markdown]
# ## 1. From text to tokens to ids
#
# A **tokenizer** cuts a string into units. Here it is a regular expression: a token is a run of
# letters or digits, optionally with an apostrophe part ("it's"), lower-cased. A **vocabulary** then
# numbers the tokens. We reserve the first ids for *special tokens* that the later notebooks need:
#
# | token | role |
# |---|---|
# | `[PAD]` | fills the end of short sentences so a batch is a rectangle |
# | `[UNK]` | stands for every word the vocabulary does not know |
# | `[CLS]`, `[SEP]` | BERT's "start of input" and "end of segment" markers |
# | `[MASK]` | the hidden word that masked language modeling asks the model to guess |
#
# Our corpus is real news text: the 300 Australian news articles of the Lee corpus, which gensim
# ships with its tests, so nothing has to be downloaded.

# %%
docs = lee_documents()
corpus = [tokenize(d) for d in docs]
vocab = Vocabulary.build(corpus, min_count=CFG["min_count"])
n_tokens = sum(len(d) for d in corpus)
print(f"{len(docs)} articles, {n_tokens} tokens, {len(vocab)} vocabulary entries (min_count={CFG['min_count']})")
print("first ids:", list(enumerate(vocab.itos[:12])))

sentence = "The fire crews fought the blaze near Sydney"
tokens = tokenize(sentence)
ids = vocab.encode(tokens)
print(tokens, "->", ids)

assert vocab.itos[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
assert vocab.itos[5] == "the", "ids are given by decreasing frequency: 'the' is the most common word"
assert vocab.decode(ids) == tokens, "encode then decode gives the tokens back"
assert vocab.encode(["qwzx"]) == [vocab.unk_id], "an unknown word maps to [UNK]"

# %% [markdown]
# ## 2. The one-hot matrix of a sentence
#
# With a vocabulary V, word number i is the vector of length |V| that is 1 at position i and 0
# elsewhere. A sentence of n tokens is then the matrix X = [x₁ … xₙ]ᵀ with one row per token:
# shape (n, |V|), exactly one 1 per row.

# %%
X = one_hot(ids, len(vocab))
print("X:", tuple(X.shape), "  non-zeros per row:", X.sum(1).tolist())
assert X.shape == (len(tokens), len(vocab))
assert torch.equal(X.sum(1), torch.ones(len(tokens))), "each row has a single 1"
assert torch.equal(X.argmax(1), torch.tensor(ids)), "the 1 sits at the token's id"
print(f"fraction of zeros in X: {1 - X.mean().item():.5f}")

# %% [markdown]
# Only a few columns are used, so we draw those (plus two that are not, for contrast). The word
# "the" occurs twice: its two rows are identical.

# %%
cols = sorted(set(ids)) + [vocab.stoi["police"], vocab.stoi["minister"]]
fig, ax = plt.subplots(figsize=(6.5, 3.2))
ax.imshow(X[:, cols].numpy(), cmap="Greys", vmin=0, vmax=1)
ax.set_xticks(range(len(cols)), [f"{vocab.itos[c]} ({c})" for c in cols], rotation=60, fontsize=7)
ax.set_yticks(range(len(tokens)), tokens)
ax.set_title(f"One-hot matrix X: {len(cols)} of |V| = {len(vocab)} columns")
ax.set_xlabel("word (id)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Multiplying by a one-hot vector is looking up a row
#
# A linear layer applied to a one-hot vector, x W with W of shape (|V|, d), returns row i of W:
# all other rows are multiplied by 0. So "one-hot, then a linear layer" is the same computation as
# "take row i of a table". `torch.nn.Embedding` does the second, which avoids building the huge,
# almost empty X. Every embedding layer in this course (and in BERT) is this table.

# %%
embedding = torch.nn.Embedding(len(vocab), CFG["embed_dim"])
via_matmul = X @ embedding.weight                 # (n, |V|) @ (|V|, d) -> (n, d)
via_lookup = embedding(torch.tensor(ids))         # (n,) -> (n, d)
print("max |difference|:", (via_matmul - via_lookup).abs().max().item())
assert torch.allclose(via_matmul, via_lookup, atol=1e-6), "one-hot @ W equals the embedding lookup"

# %% [markdown]
# ## 4. Bags of words and bags of n-grams
#
# Adding the rows of X gives one vector per sentence: entry i counts how often word i occurs. This
# is the **bag of words**; the order of the words is gone. A **bag of n-grams** counts runs of n
# consecutive tokens instead (n = 2: "fire crews", "crews battled", …), which keeps some local
# order. Stacking the bags of many documents gives a *document-term matrix*.

# %%
bow = bag_of_words(ids, len(vocab))
assert torch.equal(bow, X.sum(0)), "the bag of words is the sum of the one-hot rows"
assert bow[vocab.stoi["the"]] == 2 and bow.sum() == len(tokens)
print("bigrams:", ngrams(tokens, 2))

# %% [markdown]
# Our bags are written by hand in `vlp_course.text.bags`. To check them we count the same
# n-grams with scikit-learn's `CountVectorizer` on a second real corpus, 200 movie-review sentences
# (Pang & Lee's polarity data, also shipped with gensim), giving it our tokenizer so that both
# sides see the same tokens.

# %%
reviews, labels = polarity_sentences()
review_tokens = [tokenize(r) for r in reviews]
ours, features = document_term_matrix(review_tokens, ngram_range=CFG["ngram_range"])

cv = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=CFG["ngram_range"])
theirs = cv.fit_transform(reviews)
print(f"document-term matrix: {tuple(ours.shape)} (documents x n-grams), "
      f"{(ours > 0).float().mean().item():.4f} of the entries are non-zero")
assert list(cv.get_feature_names_out()) == features, "same n-grams, same (alphabetical) column order"
assert np.array_equal(theirs.toarray(), ours.numpy()), "same counts as scikit-learn"
assert (ours > 0).float().mean() < 0.01, "bags are sparse: under 1% of the entries are non-zero"

# %% [markdown]
# The heat map shows a corner of the document-term matrix: the most frequent terms (columns) in
# the first reviews (rows). Most cells are empty even among the most frequent words.

# %%
top = torch.argsort(ours.sum(0), descending=True)[: CFG["heatmap_terms"]]
block = ours[: CFG["heatmap_docs"]][:, top].numpy()
fig, ax = plt.subplots(figsize=(6.5, 3.2))
im = ax.imshow(block, cmap="viridis")
ax.set_xticks(range(len(top)), [features[i] for i in top], rotation=60, fontsize=8)
ax.set_yticks(range(CFG["heatmap_docs"]), [f"review {i}" for i in range(CFG["heatmap_docs"])], fontsize=8)
fig.colorbar(im, ax=ax, label="count")
ax.set_title("Bag-of-n-grams counts (most frequent terms)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. What these vectors cannot express
#
# **No similarity between words.** Two different one-hot vectors never share a non-zero entry, so
# their dot product (and cosine) is 0: "blaze" is as far from "fire" as from "minister". The Gram
# matrix of all one-hot vectors is the identity.

# %%
words = ["fire", "blaze", "bushfire", "minister", "government"]
W1 = one_hot(vocab.encode(words), len(vocab))
sims = cosine_similarity_matrix(W1)
print(sims)
assert torch.equal(sims, torch.eye(len(words))), "distinct one-hot vectors are orthogonal"

# %% [markdown]
# **No order.** A bag of words adds vectors, and addition does not care about order. Two sentences
# with the same words in another order (and a very different meaning) get the *same* bag. Bigrams
# tell them apart, at the price of a much larger and sparser vocabulary of features.

# %%
s1, s2 = tokenize("The police arrested the man"), tokenize("The man arrested the police")
b1, b2 = bag_of_words(vocab.encode(s1), len(vocab)), bag_of_words(vocab.encode(s2), len(vocab))
assert torch.equal(b1, b2), "same words, other order: identical bags of words"
g1, g2 = document_term_matrix([s1, s2], ngram_range=(2, 2))[0]
assert not torch.equal(g1, g2), "their bags of bigrams differ"
print("same bag of words:", torch.equal(b1, b2), "| same bag of bigrams:", torch.equal(g1, g2))
print(f"features: {len(vocab)} words in the Lee vocabulary vs "
      f"{len(features)} unigrams+bigrams in just 200 short reviews")

# %% [markdown]
# Notebook 02 replaces one-hot vectors by short dense vectors learned from text, in which similar
# words are close; notebook 03 builds sentence vectors that do depend on word order.
#
# ## Exercises
#
# ### Exercise 1 — the one-hot matrix
# Write `my_one_hot(ids, vocab_size)`: given a list of n token ids, return the float tensor of
# shape (n, vocab_size) with a 1 at `[t, ids[t]]` and 0 elsewhere. Do not call `one_hot` or
# `torch.nn.functional.one_hot`.

# %%
def my_one_hot(ids, vocab_size):
    ### BEGIN SOLUTION
    out = torch.zeros(len(ids), vocab_size)
    out[torch.arange(len(ids)), torch.as_tensor(ids, dtype=torch.long)] = 1.0
    return out
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.text import check_one_hot

check_one_hot(my_one_hot)

# %% [markdown]
# ### Exercise 2 — a bag of n-grams
# Write `my_bag_of_ngrams(tokens, n)`: return a dict mapping every n-gram of the token list (its
# n tokens joined by single spaces, as scikit-learn does) to the number of times it occurs. A list
# shorter than n has no n-gram.

# %%
def my_bag_of_ngrams(tokens, n):
    ### BEGIN SOLUTION
    bag = {}
    for i in range(len(tokens) - n + 1):
        gram = " ".join(tokens[i : i + n])
        bag[gram] = bag.get(gram, 0) + 1
    return bag
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.text import check_bag_of_ngrams

check_bag_of_ngrams(my_bag_of_ngrams)

# %% [markdown]
# ### Open questions
# Answer each in the cell that asks it; an instructor grades them by hand.

# %% [markdown] tags=["manual", "points=2"]
# **Question 1.** The Lee vocabulary keeps words seen at least `min_count` times. What happens to
# |V|, to the share of `[UNK]` tokens in a new article, and to the memory of X when you lower it to
# 1?
#
# ### BEGIN SOLUTION
# *Rubric.* |V| grows (every word seen once now gets its own row), the share of `[UNK]` in a new
# article falls but not to 0 (unseen words remain), and a dense X grows in proportion to |V| (docs x
# |V| numbers); a sparse X grows only with its non-zeros. Many new rows are words seen once, too
# rare to learn from.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=2"]
# **Question 2.** With bigrams, how could two sentences of different meaning still share a bag? Try
# to build one.
#
# ### BEGIN SOLUTION
# *Rubric.* A full answer gives a pair and checks the bigrams. When a word repeats, the stretches
# between its occurrences can be swapped without changing any bigram: "the cat chased the dog that
# bit the mouse" and "the dog that bit the cat chased the mouse" have the same bag of bigrams but
# say different things.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 3.** A bag of words ignores order, yet it works well for topic or spam classification.
# Why might order matter less there than for a question such as "who arrested whom"?
#
# ### BEGIN SOLUTION
# *Rubric.* Topic and spam are decided mostly by which words occur ("refinance", "goal",
# "election"), wherever they are. Who did what to whom is carried only by order: "police arrested
# protesters" and "protesters arrested police" have the same bag.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 4.** `nn.Embedding` replaces "one-hot, then matrix product". Which gradient rows are
# non-zero after one training step on a single sentence?
#
# ### BEGIN SOLUTION
# *Rubric.* Only the rows of the ids that occur in the sentence (a repeated word's contributions add
# up); every other row's gradient is exactly 0, as for one-hot times a matrix, whose gradient X^T G
# is zero outside the words present.
# ### END SOLUTION
