"""ViLBERT (Lu et al. 2019; facebookresearch/vilbert-multi-task ``vilbert/vilbert.py``): layer placement,
regions (5-d location, global token), the task token, co-attention, losses (empty region mask, masked
losses on mismatched pairs, alignment polarity), the NLVR2 pair head, the original key set (533 / 560
keys), converters, input errors, and the scenes recipe (no leak of masked regions)."""

from __future__ import annotations

import math

import pytest
import torch

from vlp_course.models.blocks import MultiHeadAttention
from vlp_course.models.convert import (
    load_original_checkpoint,
    save_original_checkpoint,
    vilbert_from_original,
    vilbert_original_keys,
    vilbert_to_original,
)
from vlp_course.models.vilbert import (
    ViLBERTConfig,
    ViLBERTForPreTraining,
    ViLBERTForVLTasks,
    ViLBERTModel,
    global_image_token,
    layer_schedule,
    pair_logits,
    prepare_regions,
    repeat_for_pairs,
)

SMALL = dict(vocab_size=50, hidden_size=24, num_hidden_layers=4, num_attention_heads=3, intermediate_size=40,
             max_position_embeddings=32, v_feature_size=10, v_target_size=7, v_hidden_size=16, v_num_hidden_layers=2,
             v_num_attention_heads=2, v_intermediate_size=16, bi_hidden_size=20, bi_num_attention_heads=4,
             v_biattention_id=[0, 1], t_biattention_id=[2, 3], num_labels=5, num_labels_gqa=3,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, v_hidden_dropout_prob=0.0,
             v_attention_probs_dropout_prob=0.0, fused_dropout_prob=0.0)


def small(**kw) -> ViLBERTConfig:
    return ViLBERTConfig(**{**SMALL, **kw})


def batch(cfg: ViLBERTConfig, B=3, T=7, R=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    feats = torch.rand(B, R, cfg.v_feature_size, generator=g)
    x1 = torch.randint(0, 30, (B, R, 1), generator=g).float()
    y1 = torch.randint(0, 20, (B, R, 1), generator=g).float()
    boxes = torch.cat([x1, y1, x1 + 5 + torch.randint(0, 30, (B, R, 1), generator=g), y1 + 3 + torch.randint(0, 20, (B, R, 1), generator=g)], -1)
    reg = prepare_regions(feats, boxes, 64, 48)
    return ids, reg


# ---------------------------------------------------------------------------------------------- schedule
def test_layer_schedule_original_6_6():
    s = layer_schedule(ViLBERTConfig())
    expected = [("t", i) for i in range(6)] + [("c", 0)]
    for k in range(1, 6):
        expected += [("v", k - 1), ("t", 5 + k), ("c", k)]
    expected += [("v", 5), ("t", 11)]
    assert s == expected
    assert s.index(("c", 0)) == 6 and ("v", 0) not in s[:7]  # the visual embedding enters Co-TRM 0 directly


def test_layer_schedule_8_8_variant():
    cfg = ViLBERTConfig.eight_layer()
    s = layer_schedule(cfg)
    expected = [("t", i) for i in range(4)] + [("c", 0)]
    for k in range(1, 8):
        expected += [("v", k - 1), ("t", 3 + k), ("c", k)]
    expected += [("v", 7), ("t", 11)]
    assert s == expected
    assert sum(k == "t" for k, _ in s) == 12 and sum(k == "v" for k, _ in s) == 8 and sum(k == "c" for k, _ in s) == 8


def test_encoder_runs_layers_in_schedule_order():
    cfg = small()
    m = ViLBERTForPreTraining(cfg).eval()
    order = []
    for name, mod in m.bert.encoder.named_children():
        for i, layer in enumerate(mod):
            layer.register_forward_hook(lambda *_, n=name, i=i: order.append(({"layer": "t", "v_layer": "v", "c_layer": "c"}[n], i)))
    ids, reg = batch(cfg)
    m(ids, reg["features"], reg["locations"])
    assert order == layer_schedule(cfg)


@pytest.mark.parametrize("kw", [dict(v_biattention_id=[0, 1], t_biattention_id=[2]), dict(t_biattention_id=[2, 9]),
                                dict(v_biattention_id=[0, 3]),
                                dict(v_biattention_id=[1, 0]), dict(fusion_method="max")])
def test_bad_config(kw):
    with pytest.raises(ValueError):
        small(**kw)


# ---------------------------------------------------------------------------------------------- regions
def test_location_and_global_token_from_pixel_boxes():
    feats = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]])
    boxes = torch.tensor([[[0.0, 0.0, 50.0, 20.0], [10.0, 5.0, 30.0, 45.0], [0.0, 0.0, 1.0, 1.0]]])
    reg = prepare_regions(feats, boxes, width=100, height=50, region_mask=torch.tensor([[1, 1, 0]]))
    loc = reg["locations"][0]
    assert torch.allclose(loc[0], torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0]))
    assert torch.allclose(loc[1], torch.tensor([0.0, 0.0, 0.5, 0.4, 0.2]))
    assert torch.allclose(loc[2], torch.tensor([0.1, 0.1, 0.3, 0.9, 20 * 40 / 5000]))
    assert torch.allclose(reg["features"][0, 0], torch.tensor([2.0, 4.0]))  # mean of the two real regions
    assert reg["image_attention_mask"].tolist() == [[1, 1, 1, 0]]
    gf, gl = global_image_token(feats)
    assert torch.allclose(gf[0, 0], feats[0].mean(0)) and gl.shape == (1, 1, 5)


def test_bad_boxes_raise():
    feats = torch.rand(1, 2, 4)
    with pytest.raises(ValueError, match="x2 >= x1"):
        prepare_regions(feats, torch.tensor([[[10.0, 0, 5, 5], [0, 0, 4, 4]]]), 20, 20)
    with pytest.raises(ValueError, match="inside the image"):
        prepare_regions(feats, torch.tensor([[[0.0, 0, 25, 5], [0, 0, 4, 4]]]), 20, 20)


# ---------------------------------------------------------------------------------------------- co-attention
def test_coattention_directions_match_cross_attention_reference():
    """Visual queries (query1) attend over text keys/values (key2/value2), and vice versa: each
    direction equals the blocks' MultiHeadAttention with the same projections."""
    cfg = small()
    m = ViLBERTForPreTraining(cfg).eval()
    bi = m.bert.encoder.c_layer[0].biattention
    g = torch.Generator().manual_seed(1)
    vis, txt = torch.randn(2, 5, cfg.v_hidden_size, generator=g), torch.randn(2, 6, cfg.hidden_size, generator=g)
    tmask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    vmask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
    vctx, tctx, v2t, t2v = bi(vis, vmask, txt, tmask)
    ref = MultiHeadAttention(cfg.v_hidden_size, cfg.bi_num_attention_heads, context_size=cfg.hidden_size, all_head_size=cfg.bi_hidden_size)
    ref.query.load_state_dict(bi.query1.state_dict()); ref.key.load_state_dict(bi.key2.state_dict()); ref.value.load_state_dict(bi.value2.state_dict())
    out, w = ref(vis, tmask, context=txt, output_attentions=True)
    assert torch.allclose(vctx, out, atol=1e-5) and torch.allclose(v2t, w, atol=1e-6)
    ref2 = MultiHeadAttention(cfg.hidden_size, cfg.bi_num_attention_heads, context_size=cfg.v_hidden_size, all_head_size=cfg.bi_hidden_size)
    ref2.query.load_state_dict(bi.query2.state_dict()); ref2.key.load_state_dict(bi.key1.state_dict()); ref2.value.load_state_dict(bi.value1.state_dict())
    out2, w2 = ref2(txt, vmask, context=vis, output_attentions=True)
    assert torch.allclose(tctx, out2, atol=1e-5) and torch.allclose(t2v, w2, atol=1e-6)
    assert v2t.shape == (2, 4, 5, 6) and t2v.shape == (2, 4, 6, 5)
    assert float(v2t[1, :, :, 4:].detach().abs().max()) == 0.0  # padded words get no weight


def test_coattention_maps_returned_and_padding_invariant():
    cfg = small()
    m = ViLBERTForPreTraining(cfg).eval()
    ids, reg = batch(cfg, B=2)
    out = m(ids, reg["features"], reg["locations"], output_attentions=True)
    assert len(out.encoder["co_attentions"]) == 2
    v2t, t2v = out.encoder["co_attentions"][0]
    assert torch.allclose(v2t.sum(-1), torch.ones_like(v2t.sum(-1))) and torch.allclose(t2v.sum(-1), torch.ones_like(t2v.sum(-1)))
    # appending a padded region changes nothing for the real tokens
    f2 = torch.cat([reg["features"], torch.rand(2, 1, cfg.v_feature_size)], 1)
    l2 = torch.cat([reg["locations"], torch.tensor([0.0, 0, 1, 1, 1]).expand(2, 1, 5)], 1)
    mask = torch.cat([reg["image_attention_mask"], torch.zeros(2, 1, dtype=torch.long)], 1)
    out2 = m(ids, f2, l2, visual_attention_mask=mask)
    assert torch.allclose(out.logits["mlm"], out2.logits["mlm"], atol=1e-5)
    assert torch.allclose(out.logits["mrm"], out2.logits["mrm"][:, :-1], atol=1e-5)


def test_poolers_are_relu_and_fused_by_product():
    cfg = small()
    m = ViLBERTForVLTasks(cfg).eval()
    ids, reg = batch(cfg)
    out = m.encode(ids, reg["features"], reg["locations"])
    assert (out["pooled_text"] >= 0).all() and (out["pooled_visual"] >= 0).all()
    assert torch.allclose(out["pooled_text"], torch.relu(m.bert.t_pooler.dense(out["text"][:, 0])))
    assert torch.allclose(out["pooled"], out["pooled_text"] * out["pooled_visual"])


# ---------------------------------------------------------------------------------------------- losses
def test_region_loss_zero_and_finite_grads_when_nothing_masked():
    cfg = small()
    m = ViLBERTForPreTraining(cfg)
    ids, reg = batch(cfg)
    B, N = reg["features"].shape[:2]
    target = torch.softmax(torch.randn(B, N, cfg.v_target_size), -1)
    masked = torch.zeros(B, N, dtype=torch.bool)
    out = m(ids, reg["features"], reg["locations"], region_targets=target, masked_regions=masked)
    assert out.losses["mrm"].item() == 0.0  # the original divides by the zero count (NaN)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_region_loss_is_kl_over_masked_regions_without_global_token():
    cfg = small()
    m = ViLBERTForPreTraining(cfg).eval()
    ids, reg = batch(cfg, B=2)
    B, N = reg["features"].shape[:2]
    target = torch.softmax(torch.randn(B, N, cfg.v_target_size), -1)
    masked = torch.zeros(B, N, dtype=torch.bool)
    masked[0, 2] = masked[1, 1] = masked[1, 3] = True
    out = m(ids, reg["features"], reg["locations"], region_targets=target, masked_regions=masked)
    logq = out.logits["mrm"].log_softmax(-1)
    kl = (target * (target.log() - logq)).sum(-1)
    expected = (kl[0, 2] + kl[1, 1] + kl[1, 3]) / 3
    assert math.isclose(out.losses["mrm"].item(), expected.item(), rel_tol=1e-5)
    assert set(out.losses) == {"mrm"} and math.isclose(out.loss.item(), expected.item(), rel_tol=1e-5)
    masked[0, 0] = True  # the global token is never masked: it is computed from the masked regions
    with pytest.raises(ValueError, match="global image token"):
        m(ids, reg["features"], reg["locations"], region_targets=target, masked_regions=masked)


def test_alignment_polarity_and_masked_losses_on_mismatched_pairs():
    torch.manual_seed(0)
    cfg = small()
    m = ViLBERTForPreTraining(cfg).eval()
    ids, reg = batch(cfg, B=2)
    labels = torch.full_like(ids, -100)
    labels[:, 1] = ids[:, 1]
    is_matched = torch.tensor([1, 0])
    out = m(ids, reg["features"], reg["locations"], mlm_labels=labels, is_matched=is_matched)
    ce = torch.nn.functional.cross_entropy(out.logits["mlm"][0, 1][None], ids[0, 1:2])
    assert math.isclose(out.losses["mlm"].item(), ce.item(), rel_tol=1e-5)  # row 1 (mismatched) excluded: --objective 1
    m2 = ViLBERTForPreTraining(small(masked_loss_on_mismatched=True)).eval()
    m2.load_state_dict(m.state_dict())
    out2 = m2(ids, reg["features"], reg["locations"], mlm_labels=labels, is_matched=is_matched)
    ce_both = torch.nn.functional.cross_entropy(out2.logits["mlm"][:, 1], ids[:, 1])  # both rows counted (vilbert_beta)
    assert math.isclose(out2.losses["mlm"].item(), ce_both.item(), rel_tol=1e-5)
    itm = torch.nn.functional.cross_entropy(out.logits["itm"], is_matched)
    assert math.isclose(out.losses["itm"].item(), itm.item(), rel_tol=1e-5)
    # the masked regions of the mismatched row are skipped too (12-in-1), counted in vilbert_beta's recipe
    B, N = reg["features"].shape[:2]
    target = torch.softmax(torch.randn(B, N, cfg.v_target_size), -1)
    masked = torch.zeros(B, N, dtype=torch.bool)
    masked[0, 1] = masked[1, 2] = True
    r1 = m(ids, reg["features"], reg["locations"], is_matched=is_matched, masked_regions=masked, region_targets=target)
    r2 = m2(ids, reg["features"], reg["locations"], is_matched=is_matched, masked_regions=masked, region_targets=target)
    kl = (target * (target.log() - r1.logits["mrm"].log_softmax(-1))).sum(-1)
    assert math.isclose(r1.losses["mrm"].item(), kl[0, 1].item(), rel_tol=1e-5)
    assert math.isclose(r2.losses["mrm"].item(), ((kl[0, 1] + kl[1, 2]) / 2).item(), rel_tol=1e-5)


def test_polarity_converted_at_the_checkpoint_boundary():
    cfg = small()
    m = ViLBERTForPreTraining(cfg).eval()
    sd = vilbert_to_original(m.state_dict())
    # an original head whose class 0 ("aligned") wins for any input
    sd["cls.bi_seq_relationship.weight"].zero_()
    sd["cls.bi_seq_relationship.bias"] = torch.tensor([5.0, -5.0])
    load_original_checkpoint(m, sd)
    ids, reg = batch(cfg)
    p = m(ids, reg["features"], reg["locations"]).logits["itm"].softmax(-1)
    assert (p[:, 1] > 0.99).all()  # our class 1 = matched
    back = vilbert_to_original(m.state_dict())
    assert back["cls.bi_seq_relationship.bias"].tolist() == [5.0, -5.0]


# ---------------------------------------------------------------------------------------------- heads
def test_nlvr2_pair_head_needs_two_rows_per_pair():
    cfg = small()
    m = ViLBERTForVLTasks(cfg).eval()
    g = torch.Generator().manual_seed(0)
    P, T, R = 2, 6, 3
    ids = torch.randint(0, cfg.vocab_size, (P, T), generator=g)
    feats = torch.rand(P, 2, R + 1, cfg.v_feature_size, generator=g)
    locs = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0]).expand(P, 2, R + 1, 5)
    ids2, f2, l2 = repeat_for_pairs(ids, feats, locs)
    assert ids2.shape == (4, T) and torch.equal(ids2[0], ids2[1]) and torch.equal(f2[1], feats[0, 1])
    out = m.nlvr2(ids2, f2, l2, labels=torch.tensor([0, 1]))
    assert out.logits["nlvr2"].shape == (2, 2) and torch.isfinite(out.losses["nlvr2"])
    pooled = m.encode(ids2, f2, l2)["pooled"]
    manual = m.vil_binary_prediction(torch.cat([pooled[0::2], pooled[1::2]], 1))
    assert torch.allclose(out.logits["nlvr2"], manual, atol=1e-5)
    with pytest.raises(ValueError, match="2 x num_pairs"):
        m.nlvr2(ids2[:3], f2[:3], l2[:3])
    with pytest.raises(ValueError, match="two different statements"):
        m.nlvr2(ids.repeat(2, 1), f2, l2)  # s0, s1, s0, s1: tiled, not repeated
    with pytest.raises(ValueError, match="2 x num_pairs"):
        pair_logits(m.vil_binary_prediction, pooled[:3], 2)


def test_vqa_head_shape_and_loss():
    cfg = small()
    m = ViLBERTForVLTasks(cfg)
    ids, reg = batch(cfg)
    scores = torch.zeros(3, cfg.num_labels)
    scores[:, 2] = 1.0
    out = m(ids, reg["features"], reg["locations"], soft_scores=scores)
    assert out.logits["vqa"].shape == (3, cfg.num_labels) and set(out.losses) == {"vqa"}
    logits = m.vil_prediction(out.encoder["pooled"])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, scores) * cfg.num_labels  # task_utils.py
    assert math.isclose(out.loss.item(), bce.item(), rel_tol=1e-5)
    assert not hasattr(m, "vqa")  # VQA is the forward
    with pytest.raises(ValueError, match="soft_scores"):
        m(ids, reg["features"], reg["locations"], soft_scores=scores[:, :2])


# ---------------------------------------------------------------------------------------------- errors
def test_feature_width_error_names_both_widths():
    cfg = small()
    m = ViLBERTForPreTraining(cfg)
    ids, reg = batch(cfg)
    with pytest.raises(ValueError, match=r"width 197.*v_feature_size = 10"):
        m(ids, torch.rand(3, 5, 197), reg["locations"])


def test_batch_mismatch_and_bad_locations():
    cfg = small()
    m = ViLBERTForPreTraining(cfg)
    ids, reg = batch(cfg)
    with pytest.raises(ValueError, match="batch mismatch"):
        m(ids[:2], reg["features"], reg["locations"])
    bad = reg["locations"].clone()
    bad[0, 1, 2] = 0.0  # x2 < x1
    bad[0, 1, 0] = 0.5
    with pytest.raises(ValueError, match="x2 >= x1"):
        m(ids, reg["features"], bad)
    bad = reg["locations"].clone() * 30  # pixel boxes instead of normalized
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m(ids, reg["features"], bad)
    with pytest.raises(ValueError, match=r"\(B, N, 5\)"):
        m(ids, reg["features"], reg["locations"][..., :4])


# ---------------------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def full_models():
    with torch.device("meta"):
        pre = ViLBERTForPreTraining(ViLBERTConfig())
        tasks = ViLBERTForVLTasks(ViLBERTConfig(task_specific_tokens=True))
    return pre, tasks


def test_full_size_key_sets(full_models):
    pre, tasks = full_models
    exp = vilbert_original_keys()
    assert len(exp) == 533 and len(set(exp)) == 533
    assert set(pre.state_dict()) == set(exp)
    exp_t = vilbert_original_keys(ViLBERTConfig(task_specific_tokens=True), tasks=True)
    assert len(exp_t) == 560 and set(tasks.state_dict()) == set(exp_t)
    shapes = {k: tuple(v.shape) for k, v in pre.state_dict().items()}
    assert shapes["bert.t_pooler.dense.weight"] == (1024, 768)
    assert shapes["bert.v_pooler.dense.weight"] == (1024, 1024)
    assert shapes["bert.encoder.c_layer.0.biattention.query2.weight"] == (1024, 768)
    assert shapes["bert.encoder.c_layer.0.biOutput.q_dense1.weight"] == (1024, 1024)
    assert shapes["bert.encoder.c_layer.0.biOutput.dense2.weight"] == (768, 1024)
    assert shapes["cls.imagePredictions.decoder.weight"] == (1601, 1024)
    assert shapes["bert.v_embeddings.image_embeddings.weight"] == (1024, 2048)
    assert shapes["bert.v_embeddings.image_location_embeddings.weight"] == (1024, 5)
    assert abs(sum(p.numel() for p in pre.parameters()) / 1e6 - 250.0) < 0.1  # the paper's 6/6 model, ~250 M


def test_strict_load_of_original_key_set_small_and_module_prefix():
    cfg = small(task_specific_tokens=True)
    src = ViLBERTForVLTasks(cfg)
    orig = {("module." + k): v for k, v in vilbert_to_original(src.state_dict()).items()}
    assert {k[len("module."):] for k in orig} == set(vilbert_original_keys(cfg, tasks=True))
    dst = ViLBERTForVLTasks(cfg)
    assert load_original_checkpoint(dst, orig).ok
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    # a pretraining file into the task model: only the task heads are missing (strict=False)
    pre = ViLBERTForPreTraining(small())
    report = load_original_checkpoint(ViLBERTForVLTasks(small()), vilbert_to_original(pre.state_dict()), strict=False)
    assert report.unexpected == [] and {k.split(".")[0] for k in report.missing} == {"vil_prediction", "vil_prediction_gqa", "vil_binary_prediction",
                                                                       "vil_logit", "vil_tri_prediction", "vision_logit", "linguisic_logit"}
    with pytest.raises(ValueError, match="missing"):
        load_original_checkpoint(ViLBERTForVLTasks(small()), vilbert_to_original(pre.state_dict()))


def test_safetensors_round_trip(tmp_path):
    cfg = small()
    m = ViLBERTForPreTraining(cfg).eval()
    path = tmp_path / "vilbert.safetensors"
    save_original_checkpoint(m, path)
    from safetensors.torch import load_file

    orig = load_file(str(path))
    assert set(orig) == set(vilbert_original_keys(cfg))
    m2 = ViLBERTForPreTraining(cfg).eval()
    load_original_checkpoint(m2, path)
    ids, reg = batch(cfg)
    a, b = m(ids, reg["features"], reg["locations"]), m2(ids, reg["features"], reg["locations"])
    for k in ("mlm", "mrm", "itm"):
        assert torch.allclose(a.logits[k], b.logits[k])
    assert m2.cls.predictions.decoder.weight is m2.bert.embeddings.word_embeddings.weight  # still tied
    rt = vilbert_to_original(vilbert_from_original(orig))
    assert all(torch.equal(rt[k], orig[k]) for k in orig)


def test_shape_mismatch_names_key():
    m = ViLBERTForPreTraining(small())
    sd = vilbert_to_original(ViLBERTForPreTraining(small(v_feature_size=12)).state_dict())
    with pytest.raises(ValueError, match="image_embeddings.weight"):
        load_original_checkpoint(m, sd)


# ---------------------------------------------------------------------------------------------- Co-TRM schedule
def test_config_refuses_a_co_trm_after_the_last_text_layer():
    """The original's config needs max(t_biattention_id) < num_hidden_layers; the old scene config
    (t_biattention_id = [1, ..., L] with L text layers) did not satisfy it."""
    with pytest.raises(ValueError, match=r"max\(t_biattention_id\) = 2 must be < num_hidden_layers = 2"):
        small(num_hidden_layers=2, v_biattention_id=[0, 1], t_biattention_id=[1, 2])
    cfg = small(num_hidden_layers=2, v_biattention_id=[0, 1], t_biattention_id=[0, 1])
    assert layer_schedule(cfg) == [("c", 0), ("v", 0), ("t", 0), ("c", 1), ("v", 1), ("t", 1)]


# ---------------------------------------------------------------------------------------------- task token
def test_task_token_joins_before_the_embedding_layernorm():
    """vilbert-multi-task ``BertEmbeddings.forward``: word + position + type, the raw task embedding
    inserted after [CLS], then LayerNorm (and dropout) over the whole sequence."""
    cfg = small(task_specific_tokens=True)
    torch.manual_seed(0)
    m = ViLBERTModel(cfg).eval()
    emb = m.embeddings
    with torch.no_grad():  # a LayerNorm that is not the identity-at-init, so the check can fail
        emb.LayerNorm.weight.uniform_(0.5, 1.5)
        emb.LayerNorm.bias.uniform_(-0.5, 0.5)
        emb.task_embeddings.weight.mul_(7.0).add_(3.0)
    ids, reg = batch(cfg, B=2, T=5)
    task_ids = torch.tensor([[3], [11]])
    T = ids.shape[1]
    summed = emb.word_embeddings(ids) + emb.position_embeddings(torch.arange(T))[None] + emb.token_type_embeddings(torch.zeros_like(ids))
    raw_task = emb.task_embeddings.weight[task_ids[:, 0]][:, None]  # (B, 1, D)
    seq = torch.cat([summed[:, :1], raw_task, summed[:, 1:]], 1)  # (B, T+1, D)
    mean = seq.mean(-1, keepdim=True)
    var = ((seq - mean) ** 2).mean(-1, keepdim=True)
    ref = (seq - mean) / torch.sqrt(var + cfg.layer_norm_eps) * emb.LayerNorm.weight + emb.LayerNorm.bias
    got = m.embed_text(ids, None, task_ids)
    assert got.shape == (2, T + 1, cfg.hidden_size)
    assert torch.allclose(got, ref, atol=1e-5)
    assert not torch.allclose(got[:, 1], raw_task[:, 0], atol=1e-2)  # the raw vector would be the old, wrong input
    # the forward uses exactly this sequence: the embeddings' LayerNorm sees T+1 tokens, the task token raw
    seen = []
    h = emb.LayerNorm.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    out = m(ids, reg["features"], reg["locations"], attention_mask=torch.ones_like(ids), task_ids=task_ids)
    h.remove()
    assert seen[0].shape == (2, T + 1, cfg.hidden_size) and torch.allclose(seen[0][:, 1], raw_task[:, 0])
    assert out["text"].shape == (2, T + 1, cfg.hidden_size)
    with pytest.raises(ValueError, match="task_specific_tokens=False"):
        ViLBERTModel(small())(ids, reg["features"], reg["locations"], task_ids=task_ids)
    with pytest.raises(ValueError, match="num_task_tokens"):
        m(ids, reg["features"], reg["locations"], task_ids=torch.tensor([[3], [20]]))


# ---------------------------------------------------------------------------------------------- bad inputs
def test_bad_inputs_fail_before_compute():
    cfg = small()
    m = ViLBERTForPreTraining(cfg)
    ids, reg = batch(cfg)
    f, loc = reg["features"], reg["locations"]
    with pytest.raises(ValueError, match="integer token ids"):
        m(ids.float(), f, loc)
    with pytest.raises(ValueError, match="no tokens"):
        m(ids[:, :0], f, loc)
    with pytest.raises(ValueError, match=r"torch.float64 but the model's weights are torch.float32"):
        m(ids, f.double(), loc)
    bad = f.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"finite; visual_feats\[1, 2, 3\]"):
        m(ids, bad, loc)
    vmask = reg["image_attention_mask"].clone()
    vmask[2, 0] = 0
    with pytest.raises(ValueError, match="row 2 hides visual token 0, the global image token"):
        m(ids, f, loc, visual_attention_mask=vmask)
    with pytest.raises(ValueError, match=r"visual_attention_mask must have shape \(3, 5\)"):
        m(ids, f, loc, visual_attention_mask=vmask[:, :3])
    B, N = f.shape[:2]
    target = torch.softmax(torch.randn(B, N, cfg.v_target_size), -1)
    with pytest.raises(ValueError, match="masked_regions must be a bool tensor"):
        m(ids, f, loc, masked_regions=torch.zeros(B, N, dtype=torch.long), region_targets=target)
    with pytest.raises(ValueError, match=r"region_targets must have shape \(B, N, C\) = \(3, 5, 7\)"):
        m(ids, f, loc, masked_regions=torch.zeros(B, N, dtype=torch.bool), region_targets=target[..., :3])
    with pytest.raises(ValueError, match="needs both"):
        m(ids, f, loc, masked_regions=torch.zeros(B, N, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mlm_labels must have shape \(3, 7\)"):
        m(ids, f, loc, mlm_labels=ids[:, :3])
    with pytest.raises(ValueError, match=r"is_matched must have shape \(3,\)"):
        m(ids, f, loc, is_matched=torch.ones(2, dtype=torch.long))


def test_feature_width_error_names_both_widths_in_the_task_model():
    m = ViLBERTForVLTasks(small())
    ids, reg = batch(small())
    with pytest.raises(ValueError, match=r"width 197.*v_feature_size = 10"):
        m(ids, torch.rand(3, 5, 197), reg["locations"])


# ---------------------------------------------------------------------------------------------- the scenes recipe
@pytest.fixture(scope="module")
def scenes():
    from vlp_course.recipes.base import Recipe, scene_tensors
    from vlp_course.recipes.vilbert import ViLBERTAdapter

    recipe = Recipe(kind="vilbert", n_images=120, n_test=20)
    return ViLBERTAdapter(scene_tensors(recipe), recipe)


def _fed(adapter, batch, seed=0):
    """What ``pretrain_step`` passes to the model (a stand-in that records its arguments)."""
    seen = {}

    def model(*args, **kwargs):
        seen.update(args=args, **kwargs)

    adapter.pretrain_step(model, batch, torch.Generator().manual_seed(seed))
    return seen


def test_recipe_config_is_one_the_original_accepts(scenes):
    cfg = scenes.config()
    L = scenes.recipe.layers
    assert max(cfg.t_biattention_id) < cfg.num_hidden_layers
    assert cfg.t_biattention_id == cfg.v_biattention_id == list(range(L)) and cfg.v_num_hidden_layers == L
    assert cfg.masked_loss_on_mismatched is False  # vilbert-multi-task --objective 1


def test_recipe_masks_regions_before_the_global_token(scenes):
    """The global token is the mean of the *masked* features (concept_cap_dataset.py: random_region,
    then g_image_feat): N x global - (sum of the visible regions) gives the masked regions' sum,
    0 for zeroed regions, never the hidden feature."""
    b = scenes.st.pretrain_batch(0, 64, seed=0)
    seen = _fed(scenes, b)
    feats = seen["args"][1]  # (B, N+1, F)
    masked = seen["masked_regions"]  # (B, N+1) bool
    vmask = seen["visual_attention_mask"].bool()
    original = scenes.take("feats", b)  # (B, N, F) before masking
    assert masked.dtype == torch.bool and not masked[:, 0].any() and masked.any()
    real = vmask[:, 1:]  # (B, N)
    n_real = real.sum(1, keepdim=True).float()  # (B, 1)
    visible = real & ~masked[:, 1:]
    recovered = n_real * feats[:, 0] - (feats[:, 1:] * visible[..., None]).sum(1)  # (B, F)
    hidden_given = (feats[:, 1:] * masked[:, 1:, None]).sum(1)  # what the model was shown at the masked regions
    assert torch.allclose(recovered, hidden_given, atol=1e-4)
    zeroed = (masked[:, 1:] & (feats[:, 1:].abs().sum(-1) == 0))  # masked by zeroing (90% of them)
    rows = zeroed.any(1) & ~(masked[:, 1:] & ~zeroed).any(1)  # rows whose masked regions were all zeroed
    assert rows.sum() >= 5
    hidden = (original * zeroed[..., None]).sum(1)  # the features the masking hid
    assert torch.allclose(recovered[rows], torch.zeros_like(recovered[rows]), atol=1e-4)
    assert (hidden[rows].abs().sum(-1) > 0.5).all()  # there was something to hide
    # the old order (global token from the unmasked features) would give the hidden features back
    from vlp_course.models.vilbert import global_image_token

    leaky, _ = global_image_token(original, real)
    assert torch.allclose((n_real * leaky[:, 0] - (feats[:, 1:] * visible[..., None]).sum(1))[rows], hidden[rows], atol=1e-4)


def test_recipe_steps_return_the_tasks_by_name(scenes):
    torch.manual_seed(0)
    model = scenes.pretraining_model()
    b = scenes.st.pretrain_batch(0, 16, seed=0)
    out = scenes.pretrain_step(model, b, torch.Generator().manual_seed(0))
    assert set(out.losses) == {"mlm", "mrm", "itm"} and set(out.logits) == {"mlm", "mrm", "itm"}
    assert math.isclose(out.loss.item(), sum(v.item() for v in out.losses.values()), rel_tol=1e-6)
    qa = scenes.qa_model()
    vb = {k: v for k, v in scenes.st.vqa_batch(0, 8, seed=0).items() if k != "rows"}
    res = scenes.vqa_step(qa, vb)
    assert res.logits["vqa"].shape == (8, len(scenes.st.answers)) and torch.isfinite(res.losses["vqa"])

