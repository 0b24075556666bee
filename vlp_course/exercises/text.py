"""Checks for the exercises of Part 1 (notebooks 01-03): each runs the learner's function on seeded
inputs and compares it with the stored outputs of the course's reference (``answers/text.json``),
reporting the first difference."""

from __future__ import annotations

from typing import Any, Callable

import torch

from vlp_course.exercises import Exercise, run_exercise

__all__ = [
    "check_one_hot",
    "check_bag_of_ngrams",
    "check_skipgram_pairs",
    "check_sgns_loss",
    "check_mean_pool",
    "check_mask_decisions",
    "EXERCISES",
]

_WORDS = "the a cat dog sat on mat rug ran far near".split()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _one_hot_cases():
    cases = [("a 4-token sentence, |V| = 6", ([2, 5, 0, 2], 6), {}), ("one token", ([3], 4), {})]
    for seed in range(3):
        g = _gen(seed)
        V = int(torch.randint(5, 30, (1,), generator=g))
        ids = torch.randint(0, V, (int(torch.randint(2, 12, (1,), generator=g)),), generator=g).tolist()
        cases.append((f"random ids (seed {seed}), |V| = {V}", (ids, V), {}))
    return cases


def _ngram_cases():
    cases = [
        ("bigrams of 'the cat sat on the mat'", ("the cat sat on the mat".split(), 2), {}),
        ("unigrams with repeats", ("a a b a".split(), 1), {}),
        ("trigrams", ("the dog ran far the dog ran near".split(), 3), {}),
        ("sentence shorter than n", (["cat", "sat"], 3), {}),
    ]
    for seed in range(2):
        g = _gen(seed)
        toks = [_WORDS[i] for i in torch.randint(0, 5, (15,), generator=g).tolist()]
        cases.append((f"15 random words (seed {seed}), n = 2", (toks, 2), {}))
    return cases


def _as_dict(x: Any) -> Any:
    if not isinstance(x, dict):
        raise ValueError(f"your function returned a {type(x).__name__}; expected a dict {{n-gram: count}}")
    return dict(x)


def _sorted_rows(x: Any) -> Any:
    try:
        t = torch.as_tensor(x).long()
    except Exception:  # leave odd answers to compare(), which explains what is wrong
        return x
    if t.ndim != 2 or t.shape[1] != 2:
        return x
    return torch.as_tensor(sorted(map(tuple, t.tolist())), dtype=torch.long).reshape(-1, 2)


def _skipgram_cases():
    cases = [
        ("ids [10, 11, 12, 13], window 1", ([10, 11, 12, 13], 1), {}),
        ("ids [10, 11, 12, 13], window 2", ([10, 11, 12, 13], 2), {}),
        ("window larger than the sentence", ([7, 8, 9], 5), {}),
    ]
    for seed in range(2):
        g = _gen(seed)
        ids = torch.randint(0, 50, (9,), generator=g).tolist()
        cases.append((f"9 random ids (seed {seed}), window 3", (ids, 3), {}))
    return cases


def _sgns_cases():
    cases = [("zero vectors: loss = (K + 1) log 2", (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4, 3)), {})]
    for seed, (B, K, D) in enumerate([(1, 1, 2), (4, 3, 5), (16, 5, 8)]):
        g = _gen(seed)
        args = (torch.randn(B, D, generator=g), torch.randn(B, D, generator=g), torch.randn(B, K, D, generator=g))
        cases.append((f"random B={B}, K={K}, D={D} (seed {seed})", args, {}))
    return cases


def _mean_pool_cases():
    cases = []
    for seed, (B, T, D) in enumerate([(1, 3, 2), (3, 5, 4), (8, 7, 16)]):
        g = _gen(seed)
        x = torch.randn(B, T, D, generator=g)
        lengths = torch.randint(1, T + 1, (B,), generator=g)
        mask = torch.arange(T)[None, :] < lengths[:, None]  # (B, T)
        cases.append((f"B={B}, T={T}, D={D}, lengths {lengths.tolist()}", (x, mask), {}))
    x = torch.randn(2, 4, 3, generator=_gen(9))
    cases.append(("no padding", (x, torch.ones(2, 4, dtype=torch.bool)), {}))
    return cases


def _mask_decision_cases():
    cases = []
    for seed, shape in enumerate([(1, 10), (4, 16), (2, 64)]):
        g = _gen(seed)
        ids = torch.randint(5, 100, shape, generator=g)
        selected = torch.rand(shape, generator=g) < 0.5
        uniform = torch.rand(shape, generator=g)
        random_ids = torch.randint(5, 100, shape, generator=g)
        cases.append((f"shape {shape} (seed {seed})", (ids, selected, uniform, random_ids, 4), {}))
    ids = torch.arange(10, 16).reshape(1, 6)
    u = torch.tensor([[0.0, 0.79, 0.8, 0.89, 0.9, 0.99]])
    cases.append(("boundaries u = 0, .79, .8, .89, .9, .99, all selected",
                  (ids, torch.ones(1, 6, dtype=torch.bool), u, torch.full((1, 6), 50), 4), {}))
    return cases


EXERCISES = {
    "one_hot": Exercise(_one_hot_cases),
    "bag_of_ngrams": Exercise(_ngram_cases, postprocess=_as_dict),
    "skipgram_pairs": Exercise(_skipgram_cases, postprocess=_sorted_rows),
    "sgns_loss": Exercise(_sgns_cases),
    "mean_pool": Exercise(_mean_pool_cases),
    "mask_decisions": Exercise(_mask_decision_cases),
}


def check_one_hot(fn: Callable[[list[int], int], Any]) -> None:
    """Exercise (notebook 01): ``fn(ids, vocab_size)`` -> the (n, |V|) one-hot matrix of a list of ids."""
    run_exercise("text", "one_hot", EXERCISES, fn)


def check_bag_of_ngrams(fn: Callable[[list[str], int], Any]) -> None:
    """Exercise (notebook 01): ``fn(tokens, n)`` -> a dict {n-gram joined by spaces: count}."""
    run_exercise("text", "bag_of_ngrams", EXERCISES, fn)


def check_skipgram_pairs(fn: Callable[[list[int], int], Any]) -> None:
    """Exercise (notebook 02): ``fn(ids, window)`` -> (P, 2) (centre, context) pairs; any row order."""
    run_exercise("text", "skipgram_pairs", EXERCISES, fn)


def check_sgns_loss(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any]) -> None:
    """Exercise (notebook 02): ``fn(centre (B, D), context (B, D), negatives (B, K, D))`` -> the mean SGNS loss."""
    run_exercise("text", "sgns_loss", EXERCISES, fn)


def check_mean_pool(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
    """Exercise (notebook 03): ``fn(vectors (B, T, D), mask (B, T))`` -> (B, D) average over real tokens."""
    run_exercise("text", "mean_pool", EXERCISES, fn)


def check_mask_decisions(fn: Callable[..., Any]) -> None:
    """Exercise (notebook 03): ``fn(input_ids, selected, uniform, random_ids, mask_token_id)`` -> the
    corrupted ids: [MASK] where selected and u < 0.8, the random id where 0.8 <= u < 0.9, else unchanged."""
    run_exercise("text", "mask_decisions", EXERCISES, fn)
