# %% [markdown]
# # 3 · Sequence representations: averages, LSTMs and BERT
#
# Notebook 02 gave every *word* a vector. A caption, a question or a sentence needs one too, and a
# vision-language model needs one vector per word *that knows the rest of the sentence*. This
# notebook walks from the simplest sentence vector to the one BERT computes:
#
# 1. average the word vectors — cheap, and blind to word order (we prove it);
# 2. read the words in order with an LSTM — we train one on a task that only order can solve;
# 3. BERT: WordPiece tokens, the masked-language-modeling corruption used to pretrain it, and
#    *contextual* vectors from a real pretrained encoder, where one word gets different vectors in
#    different sentences.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from vlp_course.pretraining.text_masking import IGNORE_INDEX, mask_tokens
from vlp_course.text import (
    LSTMClassifier, MeanEmbeddingClassifier, Vocabulary, contextual_word_vector, cosine_similarity_matrix,
    find_word_pieces, lee_sentences, load_minilm, mean_pool, pad_sequences, shuffle_tokens, tokenize,
)
from vlp_course.training import TrainConfig, train

CFG = dict(
    min_count=3,          # word-order task: rarer words become [UNK]
    max_len=16,           # sentences are cut to their first 16 words
    min_len=6,            # ... and must have at least 6
    n_test=500,           # held-out sentences (each appears original and shuffled)
    embed_dim=32,
    hidden=32,            # LSTM width per direction
    batch=64,
    mean_steps=50,        # training steps of the averaging model (it cannot beat chance anyway)
    lstm_steps=200,       # training steps of the LSTM
    lr=5e-3,
    mlm_probability=0.15,
    threads=1,            # the models are tiny: one CPU thread avoids thread overhead
)
torch.set_num_threads(CFG["threads"])

# %% [markdown]
# ## 1. Averaging word vectors
#
# The simplest sentence vector is the mean of its word vectors. We take the context-free input
# vectors of a real pretrained encoder (all-MiniLM-L6-v2, met in notebook 02) as word vectors.

# %%
minilm = load_minilm()
tok, encoder = minilm.tokenizer, minilm.model
table = encoder.get_input_embeddings()  # nn.Embedding(30522, 384)


def average_vector(text):
    ids = torch.tensor(tok(text, add_special_tokens=False)["input_ids"])
    return table(ids).mean(0).detach()


a = average_vector("the police arrested the man")
b = average_vector("the man arrested the police")
print("cosine of the two averages:", F.cosine_similarity(a, b, dim=0).item())
assert torch.allclose(a, b, atol=1e-6), "a mean is a sum: it cannot see word order"

# %% [markdown]
# In a batch, short sentences are padded to the longest one, so the mean must skip the padded
# positions: `mean_pool(vectors, mask)` divides the masked sum by the number of real tokens. A padded
# sentence gets exactly the vector it gets alone.

# %%
texts = ["the fire spread quickly", "crews fought the fire through the night near the town"]
enc = tok(texts, padding=True, add_special_tokens=False, return_tensors="pt")
with torch.no_grad():
    pooled = mean_pool(table(enc["input_ids"]), enc["attention_mask"])  # (2, 384)
print("padded batch:", tuple(enc["input_ids"].shape), "-> pooled", tuple(pooled.shape))
assert torch.allclose(pooled[0], average_vector(texts[0]), atol=1e-6), "padding does not change the mean"

# %% [markdown]
# ## 2. A task that only word order can solve
#
# We take real sentences from the Lee news corpus and make a second copy of each with its words
# shuffled. The task: original (label 1) or shuffled (label 0)? Both copies contain exactly the
# same words, so **any** model that sees only the average of the word vectors receives the same
# input for both and must give both the same answer: on a test set where every sentence appears
# in both versions it is right exactly half the time, whatever its training. An LSTM reads the
# words in order and can learn what English word order looks like.

# %%
g = torch.Generator().manual_seed(0)
sentences = [tokenize(s)[: CFG["max_len"]] for s in lee_sentences()]
sentences = [s for s in sentences if len(s) >= CFG["min_len"]]
order = torch.randperm(len(sentences), generator=g).tolist()
test_s = [sentences[i] for i in order[: CFG["n_test"]]]
train_s = [sentences[i] for i in order[CFG["n_test"] :]]
vocab = Vocabulary.build(train_s, min_count=CFG["min_count"])


def make_split(sents):
    seqs, labels = [], []
    for s in sents:
        seqs += [vocab.encode(s), vocab.encode(shuffle_tokens(s, g))]
        labels += [1, 0]
    ids, mask = pad_sequences(seqs, pad_id=vocab.pad_id)
    return ids, mask, torch.tensor(labels)


train_data, test_data = make_split(train_s), make_split(test_s)
print(f"{len(train_s)} training and {len(test_s)} test sentences, |V| = {len(vocab)}")
i = next(k for k, s in enumerate(train_s) if all(t in vocab for t in s))  # an example without [UNK]
print("original:", " ".join(vocab.decode(train_data[0][2 * i][train_data[1][2 * i]])))
print("shuffled:", " ".join(vocab.decode(train_data[0][2 * i + 1][train_data[1][2 * i + 1]])))


def batches(step):
    idx = torch.randint(0, len(train_data[2]), (CFG["batch"],), generator=g)
    return tuple(t[idx] for t in train_data)


def step_fn(model, batch):
    ids, mask, y = batch
    logits = model(ids, mask)
    return {"loss": F.cross_entropy(logits, y), "accuracy": (logits.argmax(1) == y).float().mean()}


def test_accuracy(model):
    with torch.no_grad():
        return (model(test_data[0], test_data[1]).argmax(1) == test_data[2]).float().mean().item()

# %%
mean_model = MeanEmbeddingClassifier(len(vocab), CFG["embed_dim"], 2, pad_id=vocab.pad_id)
mean_hist = train(mean_model, batches, step_fn, TrainConfig(steps=CFG["mean_steps"], lr=CFG["lr"], seed=0))
lstm_model = LSTMClassifier(len(vocab), CFG["embed_dim"], CFG["hidden"], 2, pad_id=vocab.pad_id)
lstm_hist = train(lstm_model, batches, step_fn, TrainConfig(steps=CFG["lstm_steps"], lr=CFG["lr"], seed=0))

acc_mean, acc_lstm = test_accuracy(mean_model), test_accuracy(lstm_model)
print(f"test accuracy: average of word vectors {acc_mean:.3f}, LSTM {acc_lstm:.3f}")
assert abs(acc_mean - 0.5) < 1e-9, "the averaging model is exactly at chance on paired sentences"
assert acc_lstm > 0.65, "the LSTM reads order and beats chance clearly"

fig, ax = plt.subplots()
ax.plot(mean_hist.steps, mean_hist.smoothed("accuracy"), label="average of word vectors")
ax.plot(lstm_hist.steps, lstm_hist.smoothed("accuracy"), label="bidirectional LSTM")
ax.axhline(0.5, color="grey", ls=":", label="chance")
ax.set_xlabel("step")
ax.set_ylabel("training accuracy (running mean)")
ax.set_title("Original vs shuffled sentences")
ax.legend()
plt.show()

# %% [markdown]
# ## 3. BERT's input: WordPiece tokens
#
# BERT does not use a word vocabulary: a word it does not know is cut into known pieces, and a
# piece that continues a word starts with `##`. So no word is ever `[UNK]` for lack of a
# vocabulary entry, and 30,522 entries cover English. Every input starts with `[CLS]` (its final
# vector summarises the input) and each segment ends with `[SEP]`.

# %%
text = "Firefighters were battling unpredictable bushfires near Sydney."
enc = tok(text)
pieces = tok.convert_ids_to_tokens(enc["input_ids"])
print(pieces)
print(enc["input_ids"])
assert (tok.cls_token_id, tok.sep_token_id, tok.mask_token_id, tok.pad_token_id) == (101, 102, 103, 0)
assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
assert any(p.startswith("##") for p in pieces), "rare words are split into ## pieces"
assert tok.unk_token_id not in enc["input_ids"]
assert tok.decode(enc["input_ids"], skip_special_tokens=True) == text.lower(), "decoding glues the pieces back"

# %% [markdown]
# ### Tokenizer playground
#
# Type a sentence: the table lists its pieces, their ids, which word of the text each piece comes
# from (the tokenizer first splits on spaces *and* punctuation, so "." is a word of its own), and
# what kind of piece it is. Try a rare word, a misspelling, a name, an accented letter, an emoji.
# A character that no piece covers (here the emoji) still becomes `[UNK]`: the 30,522 pieces cover
# English words, not every Unicode symbol. In a static view the table shows the default sentence.

# %%
from vlp_course.viz import explore


def show_pieces(text: str = "Bushfires near Sydney 🔥 were unpredictable.") -> str:
    enc = tok(text, return_offsets_mapping=True)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    special = set(tok.all_special_ids) - {tok.unk_token_id}
    rows = [f"{'#':>3s}  {'piece':16s} {'id':>6s}  {'word':>4s}  {'from the text':16s} kind"]
    for k, (p, i, w, (s, e)) in enumerate(zip(pieces, enc["input_ids"], enc.word_ids(), enc["offset_mapping"])):
        kind = ("special token" if i in special else "[UNK]: no piece covers it" if i == tok.unk_token_id
                else "continues a word (##)" if p.startswith("##") else "starts a word")
        rows.append(f"{k:3d}  {p:16s} {i:6d}  {'' if w is None else w:>4}  {text[s:e]:16s} {kind}")
    n_unk = enc["input_ids"].count(tok.unk_token_id)
    rows.append(f"{len(pieces)} pieces (2 special) for {len(text.split())} space-separated words; {n_unk} [UNK]")
    return "\n".join(rows)


assert "[UNK]: no piece covers it" in show_pieces() and "continues a word" in show_pieces()
explore(show_pieces, text=("Bushfires near Sydney 🔥 were unpredictable.",));

# %% [markdown]
# ## 4. Masked language modeling: how BERT is pretrained
#
# BERT learns by repairing corrupted text. In each sentence 15% of the tokens are chosen; of these,
# 80% are replaced by `[MASK]`, 10% by a random token and 10% are left as they are, and the model
# must predict the original token at every chosen position (Devlin et al. 2019). The random and
# unchanged cases keep the model from learning that only `[MASK]` positions matter, since no
# `[MASK]` appears when BERT is used later. `[CLS]`, `[SEP]` and padding are never chosen.
#
# `mask_tokens` in `vlp_course.pretraining.text_masking` does this (the vision-language models of
# later notebooks reuse it). We run it on the whole Lee corpus, tokenized with the real tokenizer,
# and measure the rates.

# %%
lee = tok(lee_sentences(), padding=True, truncation=True, max_length=64, return_tensors="pt",
          return_special_tokens_mask=True)
ids = lee["input_ids"]
masked, labels = mask_tokens(
    ids, vocab_size=tok.vocab_size, mask_token_id=tok.mask_token_id,
    special_tokens_mask=lee["special_tokens_mask"], attention_mask=lee["attention_mask"],
    special_token_ids=tok.all_special_ids, mlm_probability=CFG["mlm_probability"],
    generator=torch.Generator().manual_seed(0),
)
eligible = lee["attention_mask"].bool() & ~lee["special_tokens_mask"].bool()
chosen = labels != IGNORE_INDEX
n_el, n_ch = int(eligible.sum()), int(chosen.sum())
rates = {
    "chosen": n_ch / n_el,
    "[MASK]": (masked[chosen] == tok.mask_token_id).float().mean().item(),
    "random": ((masked[chosen] != tok.mask_token_id) & (masked[chosen] != ids[chosen])).float().mean().item(),
    "kept": (masked[chosen] == ids[chosen]).float().mean().item(),
}
print(f"{n_el} eligible tokens, {n_ch} chosen")
print({k: round(v, 4) for k, v in rates.items()})


def within_4_sigma(rate, p, n):
    return abs(rate - p) < 4 * np.sqrt(p * (1 - p) / n)


assert within_4_sigma(rates["chosen"], 0.15, n_el)
assert within_4_sigma(rates["[MASK]"], 0.8, n_ch) and within_4_sigma(rates["random"], 0.1, n_ch)
assert within_4_sigma(rates["kept"], 0.1, n_ch)
assert not (chosen & ~eligible).any(), "special tokens and padding are never chosen"
assert torch.equal(masked[~chosen], ids[~chosen]), "tokens not chosen are untouched"

print("original:", tok.decode(ids[3][lee["attention_mask"][3].bool()]))
print("masked:  ", tok.decode(masked[3][lee["attention_mask"][3].bool()]))

fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(list(rates), list(rates.values()), color=["C0", "C1", "C2", "C3"])
ax.scatter(list(rates), [0.15, 0.8, 0.1, 0.1], color="k", marker="_", s=600, label="target", zorder=3)
ax.set_ylabel("measured rate")
ax.set_title("Masking rates on the Lee corpus")
ax.legend()
plt.show()

# %% [markdown]
# **Whole-word masking.** With word pieces, masking `##fires` alone while `bush` stays visible
# makes the guess easy. The later BERT release chooses whole *words* instead: all pieces of a chosen
# word are predicted together. The tokenizer tells which word each piece belongs to.

# %%
word_ids = torch.tensor([[-1 if w is None else w for w in lee.word_ids(i)] for i in range(len(ids))])
wmasked, wlabels = mask_tokens(
    ids, vocab_size=tok.vocab_size, mask_token_id=tok.mask_token_id, special_token_ids=tok.all_special_ids,
    special_tokens_mask=lee["special_tokens_mask"], attention_mask=lee["attention_mask"],
    whole_word_ids=word_ids, generator=torch.Generator().manual_seed(0),
)
wchosen = wlabels != IGNORE_INDEX
# one key per (sentence, word); count the pieces of each word and how many of them were chosen
key = (torch.arange(len(ids))[:, None] * (word_ids.max() + 1) + word_ids)[eligible]
pieces_per_word = torch.bincount(key)
chosen_per_word = torch.bincount(key, weights=wchosen[eligible].float()).long()
used = pieces_per_word > 0
assert torch.all((chosen_per_word[used] == 0) | (chosen_per_word[used] == pieces_per_word[used])), \
    "a word is chosen with all its pieces, or not at all"
split_words = int((pieces_per_word > 1).sum())
print(f"{split_words} words span several pieces; none of them is ever partly chosen")
share = wchosen.sum().item() / n_el
print(f"share of eligible pieces chosen: {share:.4f}")
assert abs(share - CFG["mlm_probability"]) < 0.02, "choosing 15% of words still predicts about 15% of the pieces"

# %% [markdown]
# ## 5. Contextual vectors: one word, many vectors
#
# An input embedding gives "bank" one vector. After 6 layers of self-attention over the sentence,
# the encoder's output for "bank" depends on its neighbours. We put "bank" in three river
# sentences and three money sentences.

# %%
river = ["he sat on the bank of the river and watched the water.",
         "the boat drifted toward the muddy bank of the stream.",
         "fishermen lined the grassy bank of the lake at dawn."]
money = ["she went to the bank to deposit her salary.",
         "the bank approved the loan for the new house.",
         "interest rates at the bank rose again this year."]
sents = river + money

# The input (context-free) vector of "bank" is the same row of the table in every sentence:
rows = []
for s in sents:
    enc = tok(s, return_tensors="pt")
    pos = find_word_pieces(tok, enc["input_ids"][0], "bank")
    rows.append(table(enc["input_ids"][0, pos]).detach().mean(0))
assert all(torch.equal(rows[0], r) for r in rows), "one input vector for 'bank', whatever the sentence"

vecs = torch.stack([contextual_word_vector(encoder, tok, s, "bank") for s in sents])  # (6, 384)
S = cosine_similarity_matrix(vecs)
same = torch.cat([S[:3, :3][~torch.eye(3, dtype=torch.bool)], S[3:, 3:][~torch.eye(3, dtype=torch.bool)]]).mean().item()
cross = S[:3, 3:].mean().item()
print(f"cosine of contextual 'bank' vectors: same sense {same:.3f}, river vs money {cross:.3f}, "
      f"largest river-money {S[:3, 3:].max().item():.3f}")
assert S[:3, 3:].max() < 0.9, "the contextual vectors of 'bank' clearly differ between senses"
assert same > cross + 0.05, "same-sense uses are closer than different-sense uses"

fig, ax = plt.subplots(figsize=(5, 4))
im = ax.imshow(S.numpy(), cmap="magma", vmin=0.5, vmax=1)
labels6 = [f"river {i + 1}" for i in range(3)] + [f"money {i + 1}" for i in range(3)]
ax.set_xticks(range(6), labels6, rotation=45)
ax.set_yticks(range(6), labels6)
fig.colorbar(im, ax=ax, label="cosine")
ax.set_title("Contextual vectors of 'bank' (MiniLM, last layer)")
plt.tight_layout()
plt.show()

# %% [markdown]
# These contextual vectors are what the vision-language models of the next parts align with image
# regions: the text stream of ViLBERT, LXMERT, VisualBERT and VL-BERT is a BERT.
#
# ## Exercises
#
# ### Exercise 1 — mean pooling with a padding mask
# Write `my_mean_pool(vectors, mask)` for vectors (B, T, D) and a mask (B, T) (True on real
# tokens): return the (B, D) mean over the real tokens of each sequence only.

# %%
def my_mean_pool(vectors, mask):
    ### BEGIN SOLUTION
    m = mask.float().unsqueeze(-1)
    return (vectors * m).sum(1) / m.sum(1).clamp_min(1.0)
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.text import check_mean_pool

check_mean_pool(my_mean_pool)

# %% [markdown]
# ### Exercise 2 — the 80/10/10 rule
# The random draws are given, so the answer is exact. Write
# `my_mask_decisions(input_ids, selected, uniform, random_ids, mask_token_id)`: at every position
# where `selected` is True, put `mask_token_id` if `uniform < 0.8`, the value of `random_ids` if
# `0.8 <= uniform < 0.9`, and keep the token otherwise; positions not selected are kept. Do not
# modify `input_ids` in place.

# %%
def my_mask_decisions(input_ids, selected, uniform, random_ids, mask_token_id):
    ### BEGIN SOLUTION
    out = input_ids.clone()
    to_mask = selected & (uniform < 0.8)
    to_random = selected & (uniform >= 0.8) & (uniform < 0.9)
    out[to_mask] = mask_token_id
    out[to_random] = random_ids[to_random]
    return out
    ### END SOLUTION


# %% tags=["graded"]
from vlp_course.exercises.text import check_mask_decisions

check_mask_decisions(my_mask_decisions)

# %% [markdown]
# ### Open questions
# Answer each in the cell that asks it; an instructor grades them by hand.

# %% [markdown] tags=["manual", "points=2"]
# **Question 1.** The shuffled sentences keep their words. Name two kinds of clue the LSTM could use
# to spot a shuffled sentence. How would you test whether it uses the first one?
#
# ### BEGIN SOLUTION
# *Rubric.* Clues: which word comes first or last (sentences start with a capitalised determiner or
# subject, end with a noun and a full stop) and local word pairs that never occur in real text ("the
# the", a determiner before a verb). Test the first: shuffle the sentences but keep the first (and
# last) word in place, and see how far the LSTM's accuracy drops.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=2"]
# **Question 2.** Would a bag of bigrams (notebook 01) with a linear classifier solve the word-order
# task? What would that say about "order-blind" models?
#
# ### BEGIN SOLUTION
# *Rubric.* Largely yes: shuffling creates word pairs real sentences never contain, and a linear
# classifier on bigram counts can pick them up. So a model blind to global order can still use local
# order; "order-blind" fits a bag of single words, not a bag of n-grams.
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 3.** Why does BERT keep 10% of the chosen tokens unchanged instead of always writing
# `[MASK]`?
#
# ### BEGIN SOLUTION
# *Rubric.* [MASK] never appears when the model is used, so the model must also represent real
# tokens well; keeping 10 % unchanged (and replacing 10 % by random words) means any input token
# might be a target, so the model must keep a good representation of every token (Devlin et al.
# 2019, section 3.1 and appendix).
# ### END SOLUTION

# %% [markdown] tags=["manual", "points=1"]
# **Question 4.** Find a word whose two senses MiniLM does *not* separate well. What about its
# contexts might explain it?
#
# ### BEGIN SOLUTION
# *Rubric.* The answer names a word and shows its contexts' similarity. Plausible reasons: the two
# senses' contexts share most words or syntax, one sense is rare in the pretraining text, or the
# deciding word is absent or far away in a short sentence; MiniLM is also a small model.
# ### END SOLUTION
