"""The scenes as model inputs (vl_tensors), the recipes layer's four adapters, its loops and the shipped checkpoints."""

import math
from dataclasses import replace

import pytest
import torch

from vlp_course.data.scenes import COLORS, SHAPES, SIZES, make_scenes
from vlp_course.data.vl_tensors import FEATURE_WIDTH, build_scene_tensors, oracle_regions
from vlp_course import files
from vlp_course.models.blocks import TASKS, VLOutput
from vlp_course.recipes import run
from vlp_course.recipes import shipped as sc
from vlp_course.recipes.base import KINDS, Recipe
from vlp_course.recipes.run import transfer_pretrained
from vlp_course.recipes.shipped import adapter

DATA = files.shipped_dir()  # vlp_course/shipped/


@pytest.fixture(scope="module")
def small():
    """A small SceneTensors per question template (shared by the tests of this module)."""
    return {t: build_scene_tensors(120, seed=3, n_test=20, vqa_mask_token=t) for t in (False, True, "segment")}


# --------------------------------------------------------------------------------------------------
# vl_tensors
# --------------------------------------------------------------------------------------------------
def test_oracle_regions_without_noise_are_the_one_hot_attributes():
    scenes = make_scenes(6, seed=1)
    r = oracle_regions(scenes, 0.0, torch.Generator().manual_seed(0))
    assert r["feats"].shape[-1] == FEATURE_WIDTH == len(SHAPES) + len(COLORS) + len(SIZES)
    for i, s in enumerate(scenes):
        n = len(s.objects)
        f = r["feats"][i, :n]
        assert torch.equal(f[:, : len(SHAPES)].argmax(1), torch.as_tensor(s.labels()))
        assert torch.equal(f[:, len(SHAPES): len(SHAPES) + len(COLORS)].argmax(1), torch.as_tensor(s.color_labels()))
        assert torch.equal(f.sum(1), torch.full((n,), 3.0))  # exactly three ones per region
        assert torch.equal(r["boxes"][i, :n], torch.as_tensor(s.boxes(), dtype=torch.float32))
        assert r["region_mask"][i].tolist() == [1] * n + [0] * (r["feats"].shape[1] - n)
        assert (r["shape_labels"][i, n:] == -100).all() and (r["det_labels"][i, n:] == -100).all()
        assert torch.allclose(r["det_probs"][i, :n].sum(1), torch.ones(n))


def test_oracle_regions_rejects_negative_noise():
    with pytest.raises(ValueError, match="noise"):
        oracle_regions(make_scenes(2, seed=0), -0.1, torch.Generator())


def test_build_scene_tensors_rejects_a_bad_split():
    with pytest.raises(ValueError, match="n_test"):
        build_scene_tensors(50, n_test=50)


def test_question_templates_put_the_mask_at_sum_minus_two(small):
    for template, st in small.items():
        V = st.vocab
        mask_id, sep_id = st.ids["[MASK]"], st.ids["[SEP]"]
        pos = st.q_mask.sum(1) - 2
        at = st.q_ids[torch.arange(len(pos)), pos]
        last = st.q_ids[torch.arange(len(pos)), pos + 1]
        assert (last == sep_id).all()
        if template is False:
            assert (st.q_ids != mask_id).all()
        else:
            assert (at == mask_id).all()
        if template == "segment":
            assert (st.q_ids[torch.arange(len(pos)), pos - 1] == sep_id).all()
        q0 = st.ds.questions[0].question
        assert V.decode(st.q_ids[0, 1:4].tolist()) == q0.lower().replace("?", "").split()[:3]


def test_pretrain_batches_are_reproducible_unmasked_and_matching_is_right(small):
    st = small[False]
    a, b = st.pretrain_batch(5, 64, seed=1), st.pretrain_batch(5, 64, seed=1)
    assert set(a) == {"input_ids", "attention_mask", "image", "is_matched"}  # nothing masked in data/
    assert not (a["input_ids"] == st.ids["[MASK]"]).any()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["input_ids"], st.pretrain_batch(6, 64, seed=1)["input_ids"])
    # a matched caption is one of the image's own captions; a mismatched one (almost always) is not
    # (generic captions such as "there are two things" belong to several images)
    # (batches keep only the columns their longest caption uses: compare the unpadded ids)
    owners = {}
    for r, mask, i in zip(st.cap_ids, st.cap_mask, st.cap_image):
        owners.setdefault(tuple(r[mask.bool()].tolist()), set()).add(int(i))
    assert a["attention_mask"][:, -1].any() and a["input_ids"].shape[1] <= st.cap_ids.shape[1]
    own = torch.tensor([int(img) in owners[tuple(ids[mask.bool()].tolist())]
                        for ids, mask, img in zip(a["input_ids"], a["attention_mask"], a["image"])])
    m = a["is_matched"].bool()
    assert own[m].all() and 0.2 < m.float().mean() < 0.8
    assert own[~m].float().mean() < 0.25
    # only training images
    assert (a["image"] < st.n_train).all()
    held = st.pretrain_batch(0, 64, split="test")
    assert (held["image"] >= st.n_train).all()


def test_vqa_batches_and_majority_baseline(small):
    st = small[False]
    b = st.vqa_batch(0, 32)
    assert (b["image"] < st.n_train).all() and b["soft_scores"].shape == (32, len(st.answers))
    assert float(b["soft_scores"].min()) >= 0 and float(b["soft_scores"].max()) <= 1
    # an oracle that returns the soft scores as logits scores the maximal VQA accuracy
    assert st.score_vqa(lambda bb: bb["soft_scores"]) > 0.9
    assert 0.0 < st.majority_accuracy() < 0.5


def test_vocab_tokens_rebuild_the_same_ids(small):
    st = small[False]
    again = build_scene_tensors(120, seed=3, n_test=20, vocab_tokens=st.vocab.itos)
    assert again.vocab.itos == st.vocab.itos and torch.equal(again.cap_ids, st.cap_ids)


# --------------------------------------------------------------------------------------------------
# adapters
# --------------------------------------------------------------------------------------------------
def _adapter(kind, small):
    template = {"visualbert": True, "vlbert": "segment"}.get(kind, False)
    return adapter(small[template], Recipe(kind=kind, n_images=120, n_test=20, seed=3))


#: each model's pretraining tasks, by the names of blocks.TASKS
PRETRAINING_TASKS = {"visualbert": {"mlm", "itm"}, "lxmert": {"mlm", "itm", "obj", "attr", "feat", "qa"},
                     "vilbert": {"mlm", "itm", "mrm"}, "vlbert": {"mlm", "mrc", "mlm_text"}}


@pytest.mark.parametrize("kind", KINDS)
def test_pretrain_step_runs_every_task_of_the_model_with_finite_gradients(kind, small):
    sm = _adapter(kind, small)
    torch.manual_seed(0)
    model = sm.pretraining_model()
    out = sm.pretrain_step(model, sm.st.pretrain_batch(0, 16), torch.Generator().manual_seed(0))
    assert isinstance(out, VLOutput) and set(out.losses) <= set(TASKS)
    assert set(out.losses) == PRETRAINING_TASKS[kind]
    assert all(math.isfinite(float(v.detach())) for v in out.losses.values())
    assert torch.allclose(out.loss, sum(out.losses.values()))
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("kind", KINDS)
def test_pretrain_step_masks_words_in_the_recipe_not_in_the_data(kind, small):
    """The batch arrives unmasked; the step masks about 15% of the caption words and the same generator
    seed masks the same words (so a notebook can re-run a step exactly)."""
    sm = _adapter(kind, small)
    b = sm.st.pretrain_batch(0, 64)
    ids1, labels1 = sm.mask_words(b, torch.Generator().manual_seed(5))
    ids2, labels2 = sm.mask_words(b, torch.Generator().manual_seed(5))
    assert torch.equal(ids1, ids2) and torch.equal(labels1, labels2)
    chosen = labels1 != -100
    assert torch.equal(labels1[chosen], b["input_ids"][chosen])
    real_words = (b["attention_mask"] == 1) & ~torch.isin(b["input_ids"], torch.tensor(sm.st.vocab.special_ids()))
    rate = chosen.sum() / real_words.sum()
    assert 0.08 < float(rate) < 0.25, rate


@pytest.mark.parametrize("kind", KINDS)
def test_question_only_inputs_carry_nothing_of_the_image(kind, small):
    """With zero_image, two different images give the same answer scores (no features, boxes or count)."""
    sm = _adapter(kind, small)
    torch.manual_seed(0)
    qa = sm.qa_model().eval()
    b = {k: v[:1] for k, v in sm.st.vqa_batch(0, 1).items() if k != "rows"}
    counts = sm.st.region_mask.sum(1)
    other = int(torch.nonzero(counts != counts[b["image"][0]])[0])  # an image with another number of regions
    b2 = {**b, "image": torch.tensor([other])}
    with torch.no_grad():
        same = [sm.vqa_step(qa, x, zero_image=True).logits["vqa"] for x in (b, b2)]
        diff = [sm.vqa_step(qa, x, zero_image=False).logits["vqa"] for x in (b, b2)]
    assert torch.allclose(same[0], same[1], atol=1e-6)
    assert not torch.allclose(diff[0], diff[1], atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_transfer_copies_the_encoder_and_keeps_the_new_head(kind, small):
    sm = _adapter(kind, small)
    torch.manual_seed(0)
    pre, qa = sm.pretraining_model(), sm.qa_model()
    report = transfer_pretrained(qa, pre)
    # LXMERT's VQA head starts from its pretraining answer head (same answer table; airsplay --loadLXMERTQA)
    assert report["loaded"] and (report["new"] == [] if kind == "lxmert" else report["new"])
    own, src = qa.state_dict(), pre.state_dict()
    renamed = dict(getattr(qa, "pretrained_prefix_changes", ()))
    assert all(torch.equal(own[k], src[k]) for k in report["loaded"] if k in src)
    assert [k for k in report["loaded"] if k not in src] == ([] if not renamed else [
        "final_mlp.0.dense.weight", "final_mlp.0.dense.bias", "final_mlp.0.LayerNorm.weight", "final_mlp.0.LayerNorm.bias"])
    if kind == "vlbert":  # the original's VQA config: final_mlp.0 <- vlbert.mlm_head.predictions.transform
        t = "vlbert.mlm_head.predictions.transform."
        assert torch.equal(own["final_mlp.0.dense.weight"], src[t + "dense.weight"])
        assert torch.equal(own["final_mlp.0.LayerNorm.bias"], src[t + "LayerNorm.bias"])
        assert report["new"] == ["final_mlp.2.weight", "final_mlp.2.bias"] and not any(k.startswith(t) for k in report["dropped"])


def test_transfer_refuses_shape_mismatches(small):
    sm = _adapter("visualbert", small)
    pre = sm.pretraining_model()
    wider = adapter(sm.st, Recipe(kind="visualbert", hidden=32, heads=4, ffn=64)).qa_model()
    with pytest.raises(ValueError, match="shapes differ"):
        transfer_pretrained(wider, pre)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        Recipe(kind="clip")
    with pytest.raises(ValueError, match="kind"):
        sc.load_scene_checkpoint("clip")


# --------------------------------------------------------------------------------------------------
# the shipped checkpoints
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_shipped_checkpoint_is_small_checked_and_loads(kind):
    path = DATA / sc.checkpoint_name(kind)
    assert path.exists(), f"reproduce with: python -m vlp_course.recipes.shipped --model {kind}"
    assert path.stat().st_size <= 5 * 2**20
    model, sm, meta = sc.load_scene_checkpoint(kind)
    assert sm.recipe.kind == kind and sm.st.vocab.itos[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    curves = __import__("json").loads(meta["history"])
    assert curves["mlm"][-1] < 0.6 * curves["mlm"][0]  # the recorded MLM loss fell during pretraining
    # the file was trained with today's recipe: every task of the model, and the shipped recipe's steps
    final = __import__("json").loads(meta["final_losses"])
    assert set(final) - {"loss", "itm_acc"} == PRETRAINING_TASKS[kind]
    assert sm.recipe == replace(sc.default_recipe(kind), n_images=sm.recipe.n_images)


def test_checkpoint_with_a_wrong_checksum_is_refused(monkeypatch):
    monkeypatch.setattr(files, "expected_sha256", lambda name, folder=None: "0" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        sc.load_scene_checkpoint("visualbert")


def test_without_the_data_folder_the_checkpoint_is_pretrained_once_and_cached(tmp_path, monkeypatch):
    """Installed without vlp_course/shipped/ (a broken install): load_scene_checkpoint trains the recipe, caches it, reuses it."""
    from dataclasses import replace

    from vlp_course.data import detector

    shipped_detector = detector.load_detector()  # the detector ships beside the checkpoints; keep this test about them
    monkeypatch.setattr(detector, "load_detector", lambda *a, **k: shipped_detector)
    monkeypatch.setattr(files, "shipped_dir", lambda: tmp_path / "no-data")
    monkeypatch.setenv("VLP_COURSE_CACHE", str(tmp_path / "cache"))
    real, calls = sc.train_scene_checkpoint, []

    def tiny(recipe, path, **kw):
        calls.append(recipe.kind)
        return real(replace(recipe, n_images=60, n_test=10, steps=3), path, **{**kw, "progress": False})

    monkeypatch.setattr(sc, "train_scene_checkpoint", tiny)
    with pytest.warns(UserWarning, match="pretraining the lxmert checkpoint"):
        model, sm, meta = sc.load_scene_checkpoint("lxmert")
    assert sm.recipe.steps == 3 and (tmp_path / "cache" / "checkpoints" / "lxmert_scenes.safetensors").exists()
    again, _, _ = sc.load_scene_checkpoint("lxmert")
    assert calls == ["lxmert"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_vqa_against_question_only_trains_both_models_from_the_checkpoint(small):
    sm = _adapter("lxmert", small)
    torch.manual_seed(0)
    pre = sm.pretraining_model()
    results, moved, seconds, qa = run.vqa_against_question_only(pre, sm, 2, name="LXMERT", batch=8)
    assert isinstance(qa, type(sm.qa_model())) and run.evaluate_vqa(qa, sm) == results["LXMERT (with the image)"]
    assert list(results) == ["question only (image zeroed)", "LXMERT (with the image)", "majority answer"]
    assert set(seconds) == set(list(results)[:2]) and all(s > 0 for s in seconds.values())
    assert all(0.0 <= v <= 1.0 for v in results.values())
    assert results["majority answer"] == sm.st.majority_accuracy()
    # the learning rate reaches both fine-tunes: each equals finetune_from with the same settings
    fast = run.vqa_against_question_only(pre, sm, 3, name="LXMERT", batch=8, lr=5e-3, warmup=1)[0]
    assert fast["LXMERT (with the image)"] == run.finetune_from(pre, sm, 3, batch=8, lr=5e-3, warmup=1)[1]
    assert fast["question only (image zeroed)"] == run.finetune_from(pre, sm, 3, batch=8, lr=5e-3, warmup=1,
                                                                     zero_image=True)[1]
    # LXMERT's pretraining answer head has the VQA answer table, so it moves too (airsplay's
    # --loadLXMERTQA, load_lxmert_qa in src/pretrain/qa_answer_table.py): nothing new
    assert moved["loaded"] and moved["new"] == [] and "answer_head.logit_fc.3.weight" in moved["loaded"]


def test_answer_types_pairs_each_type_with_the_same_model_image_zeroed(small):
    sm = _adapter("visualbert", small)
    torch.manual_seed(0)
    qa = sm.qa_model()
    preds, table = run.answer_types(qa, sm)
    assert preds == run.vqa_predictions(qa, sm)
    with_image = run.accuracy_by_answer_type(preds)
    zeroed = run.accuracy_by_answer_type(run.vqa_predictions(qa, sm, zero_image=True))
    assert table == {k: (acc, zeroed[k][0], n) for k, (acc, n) in with_image.items()}
    assert table["all"][2] == len(preds) and table["all"][0] == run.evaluate_vqa(qa, sm)


def test_pretrained_against_scratch_is_two_finetunes_on_the_same_labels(small):
    sm = _adapter("visualbert", small)
    torch.manual_seed(1)
    pre = sm.pretraining_model()
    low = run.pretrained_against_scratch(pre, sm, 2, labels=30, batch=8, seed=3)
    q = sm.st.labelled_questions(30, seed=3)
    assert low == {"from the checkpoint": run.finetune_from(pre, sm, 2, questions=q, batch=8, seed=3)[1],
                   "from scratch": run.finetune_from(None, sm, 2, questions=q, batch=8, seed=3)[1]}


def test_colour_word_grounding_counts_unique_colours_against_an_oracle_and_a_fixed_attention(small):
    """Hand-computed: attention that always picks the named object hits every counted word; attention
    fixed on object 0 hits exactly the words that name object 0; words whose colour two objects share,
    or that the caption does not contain, are not counted."""
    sm = _adapter("visualbert", small)
    st = sm.st
    images = range(st.n_train, len(st.ds))
    expected = []  # (image, token row, object) per countable colour word, computed independently
    for i in images:
        words = st.ds.captions[i][0].lower().replace("?", " ").replace(".", " ").split()
        colours = [o.color for o in st.ds.scenes[i].objects]
        expected += [(i, 1 + words.index(c), k) for k, c in enumerate(colours) if colours.count(c) == 1 and c in words]
    assert expected, "the held-out captions name some uniquely coloured object"
    target = {(i, row): k for i, row, k in expected}

    def oracle(ids, image):
        att = torch.rand(ids.shape[1], 6)
        for (i, row), k in target.items():
            if i == image:
                att[row, k] = 2.0
        return att

    def first_object(ids, image):
        att = torch.zeros(ids.shape[1], 6)
        att[:, 0] = 1.0
        return att

    hits = run.colour_word_grounding(sm, oracle, images)
    assert len(hits) == len(expected) and all(h for h, _ in hits)
    assert [u for _, u in hits] == [1 / len(st.ds.scenes[i].objects) for i, _, _ in expected]
    assert [h for h, _ in run.colour_word_grounding(sm, first_object, images)] == [k == 0 for _, _, k in expected]
    with pytest.raises(ValueError, match=r"\(T, N\)"):
        run.colour_word_grounding(sm, lambda ids, image: torch.zeros(ids.shape[1]), images)


def test_scene_tensors_are_built_once_per_data_recipe_and_template():
    from vlp_course.recipes.base import scene_tensors

    r = Recipe(kind="lxmert", n_images=60, n_test=10, seed=5)
    st = scene_tensors(r)
    assert scene_tensors(replace(r, kind="vilbert", steps=7, hidden=32)) is st  # same data, same question template
    assert scene_tensors(r, vocab_tokens=st.vocab.itos) is st  # a checkpoint with the same vocabulary
    other = st.vocab.itos[:-1]
    rebuilt = scene_tensors(r, vocab_tokens=other)
    assert rebuilt is not st and rebuilt.vocab.itos == other
    vb = scene_tensors(replace(r, kind="visualbert"))  # [MASK] template: its own scenes
    assert vb is not rebuilt and vb.vqa_mask_token is True
    assert scene_tensors(replace(r, seed=6)) is not rebuilt
    control = scene_tensors(replace(r, pairing="wrong_scenes"))
    aligned = scene_tensors(r)
    assert control.scene_of is not None and aligned.scene_of is None and not torch.equal(control.feats, aligned.feats)


def test_vlbert_recipe_starts_the_regions_layernorm_at_1_and_the_model_default_stays_the_originals_0(small):
    """The one named deviation of the VL-BERT recipe (Recipe.visual_scale_object_init): the regions'
    visual LayerNorm starts at 1, the words' at 0; the model's own config keeps the original's 0 and 0."""
    from vlp_course.models.vlbert import VLBERTConfig

    sm = _adapter("vlbert", small)
    for m in (sm.pretraining_model(), sm.qa_model()):
        assert torch.all(m.vlbert.visual_ln_object.weight == 1) and torch.all(m.vlbert.visual_ln_text.weight == 0)
    assert VLBERTConfig().visual_scale_object_init == 0.0 and VLBERTConfig().visual_scale_text_init == 0.0
    zero = adapter(sm.st, replace(sm.recipe, visual_scale_object_init=0.0))
    assert torch.all(zero.pretraining_model().vlbert.visual_ln_object.weight == 0)
