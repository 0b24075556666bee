"""Visual reasoning on the scenes (NLVR2-style pairs): the pair tensors, the vocabulary the statements
add, the four adapters' pair steps, the transfer of a checkpoint into a model with a larger
vocabulary, and the statement-only baseline."""

import math

import pytest
import torch

from vlp_course.data.nlvr2 import nlvr2_statements, statement_holds
from vlp_course.data.vl_tensors import build_pair_tensors, build_scene_tensors
from vlp_course.models.blocks import VLOutput
from vlp_course.recipes import run
from vlp_course.recipes.base import KINDS, Recipe, SceneAdapter
from vlp_course.recipes.shipped import adapter
from vlp_course.text.vocab import UNK, tokenize


@pytest.fixture(scope="module")
def small():
    return {t: build_scene_tensors(120, seed=3, n_test=20, vqa_mask_token=t) for t in (False, True, "segment")}


@pytest.fixture(scope="module")
def pairs(small):
    return build_pair_tensors(small[False], n_train_pairs=200, n_test_pairs=60, seed=1)


def _adapter(kind, small):
    template = {"visualbert": True, "vlbert": "segment"}.get(kind, False)
    return adapter(small[template], Recipe(kind=kind, n_images=120, n_test=20, seed=3))


# --------------------------------------------------------------------------------------------------
# The pairs
# --------------------------------------------------------------------------------------------------
def test_pairs_keep_training_and_held_out_images_apart_with_true_labels(small, pairs):
    st = small[False]
    train, test = pairs.rows("train"), pairs.rows("test")
    assert len(train) == 200 and len(test) == 60
    assert bool((pairs.left[train] < st.n_train).all() and (pairs.right[train] < st.n_train).all())
    assert bool((pairs.left[test] >= st.n_train).all() and (pairs.right[test] >= st.n_train).all())
    assert bool((pairs.left != pairs.right).all())
    assert pairs.labels[train].float().mean() == 0.5 and pairs.labels[test].float().mean() == 0.5  # balanced
    for e, l, r, y in zip(pairs.examples, pairs.left.tolist(), pairs.right.tolist(), pairs.labels.tolist()):
        assert statement_holds(e.sentence, st.ds.scenes[l], st.ds.scenes[r]) == bool(y)  # the statement's truth
    with pytest.raises(ValueError, match="split"):
        pairs.rows("val")
    with pytest.raises(ValueError, match=">= 1"):
        build_pair_tensors(st, n_train_pairs=0)


def test_pair_vocabulary_appends_the_statements_words_and_keeps_every_old_id(small, pairs):
    st = small[False]
    V0 = len(st.vocab)
    assert pairs.vocab.itos[:V0] == st.vocab.itos  # a checkpoint's ids keep their meaning
    assert pairs.new_words and not set(pairs.new_words) & set(st.vocab.itos)
    assert pairs.vocab.itos[V0:] == pairs.new_words
    unk = pairs.vocab.id_of(UNK)
    train = pairs.rows("train")
    assert not bool((pairs.input_ids[train] == unk).any())  # every training statement is fully known
    e = pairs.examples[0]
    n = int(pairs.attention_mask[0].sum())
    assert pairs.vocab.decode(pairs.input_ids[0, 1:n - 1].tolist()) == tokenize(e.sentence)


def test_pair_rows_repeat_each_statement_for_its_left_then_right_image(pairs):
    b = pairs.batch(0, 3)
    rows = SceneAdapter.pair_rows(b)
    assert rows["image"].tolist() == [v for p in zip(b["left"].tolist(), b["right"].tolist()) for v in p]
    assert torch.equal(rows["input_ids"][0::2], b["input_ids"]) and torch.equal(rows["input_ids"][1::2], b["input_ids"])
    assert torch.equal(pairs.batch(4, 8, seed=2)["left"], pairs.batch(4, 8, seed=2)["left"])  # reproducible


# --------------------------------------------------------------------------------------------------
# The four adapters
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_transfer_grows_the_vocabulary_rows_and_keeps_the_pretrained_ones(kind, small, pairs):
    sm = _adapter(kind, small)
    torch.manual_seed(0)
    pre = sm.pretraining_model()
    model = sm.nlvr2_model(len(pairs.vocab))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = run.transfer_pretrained(model, pre)
    V0, V = len(sm.st.vocab), len(pairs.vocab)
    assert report["grown"] and all(k in report["loaded"] for k in report["grown"])
    own, src = model.state_dict(), pre.state_dict()
    for k in report["grown"]:
        assert own[k].shape[0] == V and src[k].shape[0] == V0
        assert torch.equal(own[k][:V0], src[k]) and torch.equal(own[k][V0:], before[k][V0:])
    assert all(torch.equal(own[k], src[k]) for k in report["loaded"] if k not in report["grown"])


@pytest.mark.parametrize("kind", KINDS)
def test_nlvr2_step_trains_and_the_statement_only_model_sees_no_image(kind, small, pairs):
    sm = _adapter(kind, small)
    torch.manual_seed(0)
    model = sm.nlvr2_model(len(pairs.vocab))
    b = pairs.batch(0, 6)
    out = sm.nlvr2_step(model, b)
    assert isinstance(out, VLOutput) and set(out.losses) == {"nlvr2"} and out.logits["nlvr2"].shape == (6, 2)
    assert math.isfinite(float(out.loss.detach()))
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    other = {**b, "left": b["right"], "right": b["left"]}  # other images (each pair's two swapped)
    with torch.no_grad():
        blind = [sm.nlvr2_step(model, x, zero_image=True).logits["nlvr2"] for x in (b, other)]
        seen = [sm.nlvr2_step(model, x).logits["nlvr2"] for x in (b, other)]
    assert torch.allclose(blind[0], blind[1], atol=1e-6)
    assert not torch.allclose(seen[0], seen[1], atol=1e-4)


def test_nlvr2_against_statement_only_trains_two_models_on_the_same_budget(small, pairs):
    sm = _adapter("lxmert", small)
    torch.manual_seed(0)
    pre = sm.pretraining_model()
    acc, seconds, model = run.nlvr2_against_statement_only(pre, sm, pairs, 3, batch=8)
    assert set(acc) == {"statement only", "with the images", "majority label"} and set(seconds) == set(acc) - {"majority label"}
    assert all(0.0 <= v <= 1.0 for v in acc.values()) and acc["majority label"] == 0.5
    pred = run.nlvr2_predictions(model, sm, pairs)
    assert pred.shape == (60,) and set(pred.tolist()) <= {0, 1}
    assert run.evaluate_nlvr2(model, sm, pairs) == float((pred == pairs.labels[pairs.rows("test")]).float().mean())


def test_finetune_nlvr2_from_starts_from_the_source_and_scratch_differs(small, pairs):
    """The generic fine-tune: the same seed from the same source gives the same model; from None the
    encoder's weights are fresh, so the scores' logits differ; the reported accuracy is evaluate_nlvr2's."""
    sm = _adapter("visualbert", small)
    torch.manual_seed(0)
    pre = sm.pretraining_model()
    m1, acc1, s1 = run.finetune_nlvr2_from(pre, sm, pairs, 2, batch=8, seed=4)
    m2, acc2, _ = run.finetune_nlvr2_from(pre, sm, pairs, 2, batch=8, seed=4)
    m3, _, _ = run.finetune_nlvr2_from(None, sm, pairs, 2, batch=8, seed=4)
    assert acc1 == acc2 == run.evaluate_nlvr2(m1, sm, pairs) and s1 > 0
    key = next(k for k in m1.state_dict() if "word_embeddings" in k)
    assert torch.equal(m1.state_dict()[key], m2.state_dict()[key])
    assert not torch.equal(m1.state_dict()[key], m3.state_dict()[key])


@pytest.mark.parametrize("kind", KINDS)
def test_training_throughput_counts_examples_per_second_of_every_task(kind, small, pairs, monkeypatch):
    """steps * batch examples over the timed steps only: with a clock that advances 0.5 s per reading,
    each timed step takes 0.5 s, so 3 steps of 4 examples give 12 / 1.5 = 8 examples/s."""
    import itertools

    sm = _adapter(kind, small)
    ticks = itertools.count()
    monkeypatch.setattr(run.time, "perf_counter", lambda: 0.5 * next(ticks))
    for task in ("pretrain", "vqa", "nlvr2"):
        assert run.training_throughput(sm, task, batch=4, steps=3, warmup_steps=1, pairs=pairs) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="task must be"):
        run.training_throughput(sm, "itm")
    with pytest.raises(ValueError, match="needs pairs"):
        run.training_throughput(sm, "nlvr2")
    with pytest.raises(ValueError, match=">= 1"):
        run.training_throughput(sm, "vqa", steps=0)
