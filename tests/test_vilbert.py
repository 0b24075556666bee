"""ViLBERT: layer placement, regions (5-d location, global token), co-attention, losses (P1, P4, P5),
the NLVR2 pair head, the original key set (533 / 560 keys), converters and input errors (P2, P8)."""

from __future__ import annotations

import math

import pytest
import torch

from vlp_course.models.blocks import MultiHeadAttention
from vlp_course.models.vilbert import (
    ViLBERTConfig,
    ViLBERTForPretraining,
    ViLBERTForVLTasks,
    expected_state_dict_keys,
    from_original_state_dict,
    global_image_token,
    layer_schedule,
    load_original_checkpoint,
    pair_logits,
    prepare_regions,
    repeat_for_pairs,
    save_original_checkpoint,
    to_original_state_dict,
)

SMALL = dict(vocab_size=50, hidden_size=24, num_hidden_layers=4, num_attention_heads=3, intermediate_size=40,
             max_position_embeddings=32, v_feature_size=10, v_target_size=7, v_hidden_size=16, v_num_hidden_layers=2,
             v_num_attention_heads=2, v_intermediate_size=16, bi_hidden_size=20, bi_num_attention_heads=4,
             v_biattention_id=[0, 1], t_biattention_id=[2, 4], num_labels=5, num_labels_gqa=3,
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
    m = ViLBERTForPretraining(cfg).eval()
    order = []
    for name, mod in m.bert.encoder.named_children():
        for i, layer in enumerate(mod):
            layer.register_forward_hook(lambda *_, n=name, i=i: order.append(({"layer": "t", "v_layer": "v", "c_layer": "c"}[n], i)))
    ids, reg = batch(cfg)
    m(ids, reg["features"], reg["locations"])
    assert order == layer_schedule(cfg)


@pytest.mark.parametrize("kw", [dict(v_biattention_id=[0, 1], t_biattention_id=[2]), dict(t_biattention_id=[2, 9]),
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
    m = ViLBERTForPretraining(cfg).eval()
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
    m = ViLBERTForPretraining(cfg).eval()
    ids, reg = batch(cfg, B=2)
    out = m(ids, reg["features"], reg["locations"], output_attentions=True)
    assert len(out["co_attentions"]) == 2
    v2t, t2v = out["co_attentions"][0]
    assert torch.allclose(v2t.sum(-1), torch.ones_like(v2t.sum(-1))) and torch.allclose(t2v.sum(-1), torch.ones_like(t2v.sum(-1)))
    # appending a padded region changes nothing for the real tokens
    f2 = torch.cat([reg["features"], torch.rand(2, 1, cfg.v_feature_size)], 1)
    l2 = torch.cat([reg["locations"], torch.tensor([0.0, 0, 1, 1, 1]).expand(2, 1, 5)], 1)
    mask = torch.cat([reg["image_attention_mask"], torch.zeros(2, 1, dtype=torch.long)], 1)
    out2 = m(ids, f2, l2, image_attention_mask=mask)
    assert torch.allclose(out["mlm_logits"], out2["mlm_logits"], atol=1e-5)
    assert torch.allclose(out["region_logits"], out2["region_logits"][:, :-1], atol=1e-5)


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
    m = ViLBERTForPretraining(cfg)
    ids, reg = batch(cfg)
    B, N = reg["features"].shape[:2]
    target = torch.softmax(torch.randn(B, N, cfg.v_target_size), -1)
    labels = torch.full((B, N), -100)
    out = m(ids, reg["features"], reg["locations"], region_targets=target, region_labels=labels)
    assert out["region_loss"].item() == 0.0
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_region_loss_is_kl_over_masked_regions_without_global_token():
    cfg = small()
    m = ViLBERTForPretraining(cfg).eval()
    ids, reg = batch(cfg, B=2)
    B, N = reg["features"].shape[:2]
    target = torch.softmax(torch.randn(B, N, cfg.v_target_size), -1)
    labels = torch.full((B, N), -100)
    labels[0, 2] = labels[1, 1] = labels[1, 3] = 1
    labels[0, 0] = 1  # the global token is never scored
    out = m(ids, reg["features"], reg["locations"], region_targets=target, region_labels=labels)
    logq = out["region_logits"].log_softmax(-1)
    kl = (target * (target.log() - logq)).sum(-1)
    expected = (kl[0, 2] + kl[1, 1] + kl[1, 3]) / 3
    assert math.isclose(out["region_loss"].item(), expected.item(), rel_tol=1e-5)


def test_alignment_polarity_and_masked_losses_on_mismatched_pairs():
    torch.manual_seed(0)
    cfg = small()
    m = ViLBERTForPretraining(cfg).eval()
    ids, reg = batch(cfg, B=2)
    labels = torch.full_like(ids, -100)
    labels[:, 1] = ids[:, 1]
    is_matched = torch.tensor([1, 0])
    out = m(ids, reg["features"], reg["locations"], masked_lm_labels=labels, is_matched=is_matched)
    ce = torch.nn.functional.cross_entropy(out["mlm_logits"][0, 1][None], ids[0, 1:2])
    assert math.isclose(out["mlm_loss"].item(), ce.item(), rel_tol=1e-5)  # row 1 (mismatched) excluded: P4
    m2 = ViLBERTForPretraining(small(masked_loss_on_mismatched=True)).eval()
    m2.load_state_dict(m.state_dict())
    out2 = m2(ids, reg["features"], reg["locations"], masked_lm_labels=labels, is_matched=is_matched)
    ce_both = torch.nn.functional.cross_entropy(out2["mlm_logits"][:, 1], ids[:, 1])  # both rows counted
    assert math.isclose(out2["mlm_loss"].item(), ce_both.item(), rel_tol=1e-5)
    itm = torch.nn.functional.cross_entropy(out["matching_logits"], is_matched)
    assert math.isclose(out["matching_loss"].item(), itm.item(), rel_tol=1e-5)


def test_polarity_converted_at_the_checkpoint_boundary():
    cfg = small()
    m = ViLBERTForPretraining(cfg).eval()
    sd = to_original_state_dict(m.state_dict())
    # an original head whose class 0 ("aligned") wins for any input
    sd["cls.bi_seq_relationship.weight"].zero_()
    sd["cls.bi_seq_relationship.bias"] = torch.tensor([5.0, -5.0])
    load_original_checkpoint(m, sd)
    ids, reg = batch(cfg)
    p = m(ids, reg["features"], reg["locations"])["matching_logits"].softmax(-1)
    assert (p[:, 1] > 0.99).all()  # our class 1 = matched
    back = to_original_state_dict(m.state_dict())
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
    out = m.nlvr2(ids2, f2, l2, num_pairs=P, labels=torch.tensor([0, 1]))
    assert out["logits"].shape == (2, 2) and torch.isfinite(out["loss"])
    pooled = m.encode(ids2, f2, l2)["pooled"]
    manual = m.vil_binary_prediction(torch.cat([pooled[0::2], pooled[1::2]], 1))
    assert torch.allclose(out["logits"], manual, atol=1e-5)
    with pytest.raises(ValueError, match="2 x num_pairs"):
        m.nlvr2(ids2[:3], f2[:3], l2[:3], num_pairs=P)
    with pytest.raises(ValueError, match="2 x num_pairs"):
        pair_logits(m.vil_binary_prediction, pooled[:3], 2)


def test_vqa_head_shape_and_loss():
    cfg = small()
    m = ViLBERTForVLTasks(cfg)
    ids, reg = batch(cfg)
    scores = torch.zeros(3, cfg.num_labels)
    scores[:, 2] = 1.0
    out = m.vqa(ids, reg["features"], reg["locations"], soft_scores=scores)
    assert out["logits"].shape == (3, cfg.num_labels) and torch.isfinite(out["loss"])


# ---------------------------------------------------------------------------------------------- errors
def test_feature_width_error_names_both_widths():
    cfg = small()
    m = ViLBERTForPretraining(cfg)
    ids, reg = batch(cfg)
    with pytest.raises(ValueError, match=r"width 197.*v_feature_size = 10"):
        m(ids, torch.rand(3, 5, 197), reg["locations"])


def test_batch_mismatch_and_bad_locations():
    cfg = small()
    m = ViLBERTForPretraining(cfg)
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
        pre = ViLBERTForPretraining(ViLBERTConfig())
        tasks = ViLBERTForVLTasks(ViLBERTConfig(task_specific_tokens=True))
    return pre, tasks


def test_full_size_key_sets(full_models):
    pre, tasks = full_models
    exp = expected_state_dict_keys()
    assert len(exp) == 533 and len(set(exp)) == 533
    assert set(pre.state_dict()) == set(exp)
    exp_t = expected_state_dict_keys(ViLBERTConfig(task_specific_tokens=True), tasks=True)
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
    assert abs(sum(p.numel() for p in pre.parameters()) / 1e6 - 250.0) < 0.1  # vl-models.md 1.1


def test_strict_load_of_original_key_set_small_and_module_prefix():
    cfg = small(task_specific_tokens=True)
    src = ViLBERTForVLTasks(cfg)
    orig = {("module." + k): v for k, v in to_original_state_dict(src.state_dict()).items()}
    assert {k[len("module."):] for k in orig} == set(expected_state_dict_keys(cfg, tasks=True))
    dst = ViLBERTForVLTasks(cfg)
    assert load_original_checkpoint(dst, orig) == ([], [])
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    # a pretraining file into the task model: only the task heads are missing (strict=False)
    pre = ViLBERTForPretraining(small())
    missing, unexpected = load_original_checkpoint(ViLBERTForVLTasks(small()), to_original_state_dict(pre.state_dict()), strict=False)
    assert unexpected == [] and {k.split(".")[0] for k in missing} == {"vil_prediction", "vil_prediction_gqa", "vil_binary_prediction",
                                                                       "vil_logit", "vil_tri_prediction", "vision_logit", "linguisic_logit"}
    with pytest.raises(ValueError, match="missing"):
        load_original_checkpoint(ViLBERTForVLTasks(small()), to_original_state_dict(pre.state_dict()))


def test_safetensors_round_trip(tmp_path):
    cfg = small()
    m = ViLBERTForPretraining(cfg).eval()
    path = tmp_path / "vilbert.safetensors"
    save_original_checkpoint(m, path)
    from safetensors.torch import load_file

    orig = load_file(str(path))
    assert set(orig) == set(expected_state_dict_keys(cfg))
    m2 = ViLBERTForPretraining(cfg).eval()
    load_original_checkpoint(m2, path)
    ids, reg = batch(cfg)
    a, b = m(ids, reg["features"], reg["locations"]), m2(ids, reg["features"], reg["locations"])
    for k in ("mlm_logits", "region_logits", "matching_logits"):
        assert torch.allclose(a[k], b[k])
    assert m2.cls.predictions.decoder.weight is m2.bert.embeddings.word_embeddings.weight  # still tied
    rt = to_original_state_dict(from_original_state_dict(orig))
    assert all(torch.equal(rt[k], orig[k]) for k in orig)


def test_shape_mismatch_names_key():
    m = ViLBERTForPretraining(small())
    sd = to_original_state_dict(ViLBERTForPretraining(small(v_feature_size=12)).state_dict())
    with pytest.raises(ValueError, match="image_embeddings.weight"):
        load_original_checkpoint(m, sd)
