"""Part 1 of the course: representing text.

* :mod:`~vlp_course.text.vocab` — tokenization, sentence splitting and the :class:`Vocabulary`.
* :mod:`~vlp_course.text.bags` — one-hot matrices, bags of words and of n-grams.
* :mod:`~vlp_course.text.sgns` — skip-gram with negative sampling (word2vec) by hand.
* :mod:`~vlp_course.text.encoders` — averaging and LSTM sequence encoders.
* :mod:`~vlp_course.text.corpora` — the offline English corpora from gensim's test data.
* :mod:`~vlp_course.text.pretrained` — the pretrained all-MiniLM-L6-v2 (BERT) tokenizer and encoder.

BERT-style token masking lives in :mod:`vlp_course.pretraining.text_masking`, since the
vision-language models reuse it.
"""

from vlp_course.text.bags import bag_of_ngrams, bag_of_words, cosine_similarity_matrix, document_term_matrix, ngrams, one_hot
from vlp_course.text.corpora import gensim_data_path, lee_documents, lee_sentences, polarity_sentences
from vlp_course.text.encoders import LSTMClassifier, MeanEmbeddingClassifier, mean_pool, pad_sequences, shuffle_tokens
from vlp_course.text.pretrained import (
    MINILM_HUB_ID,
    PretrainedText,
    PretrainedUnavailableError,
    check_wordpiece_tokenizer,
    contextual_word_vector,
    find_word_pieces,
    input_word_vector,
    load_minilm,
    minilm_package_dir,
)
from vlp_course.text.sgns import (
    SkipGramNS,
    corpus_skipgram_pairs,
    nearest_neighbours,
    noise_distribution,
    sgns_loss,
    skipgram_pairs,
    subsample_keep_probability,
)
from vlp_course.text.vocab import CLS, DEFAULT_SPECIALS, MASK, PAD, SEP, UNK, Vocabulary, split_sentences, tokenize

__all__ = [
    "PAD", "UNK", "CLS", "SEP", "MASK", "DEFAULT_SPECIALS", "tokenize", "split_sentences", "Vocabulary",
    "one_hot", "bag_of_words", "ngrams", "bag_of_ngrams", "document_term_matrix", "cosine_similarity_matrix",
    "skipgram_pairs", "corpus_skipgram_pairs", "noise_distribution", "subsample_keep_probability", "sgns_loss",
    "SkipGramNS", "nearest_neighbours",
    "pad_sequences", "mean_pool", "MeanEmbeddingClassifier", "LSTMClassifier", "shuffle_tokens",
    "gensim_data_path", "lee_documents", "lee_sentences", "polarity_sentences",
    "MINILM_HUB_ID", "PretrainedText", "PretrainedUnavailableError", "minilm_package_dir", "load_minilm",
    "check_wordpiece_tokenizer", "find_word_pieces", "contextual_word_vector", "input_word_vector",
]
