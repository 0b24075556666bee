"""VL-BERT: geometry embedding, the packed sequence layout (P11), the start-as-BERT property of the
zero-initialised visual LayerNorms, MLM/MRC losses, pixel vs feature masking, attentions (P12), the
original key set, converters and input errors (P2, P8)."""

from __future__ import annotations

import math

import pytest
import torch
import transformers

from vlp_course.models.blocks import TextEmbeddings, TransformerConfig
from vlp_course.models.vlbert import (
    VLBERTConfig,
    VLBERTForPretraining,
    expected_state_dict_keys,
    from_original_state_dict,
    geometry_embedding,
    load_bert_into_vlbert,
    load_original_checkpoint,
    mask_regions_in_pixels,
    save_original_checkpoint,
    sequence_layout,
    to_original_state_dict,
    whole_image_boxes,
)

SMALL = dict(vocab_size=60, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=40,
             max_position_embeddings=40, visual_feature_size=10, geometry_dim=4, visual_region_classes=6,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, obj_downsample_dropout=0.0)


def small(**kw) -> VLBERTConfig:
    return VLBERTConfig(**{**SMALL, **kw})


def batch(cfg, B=2, T=6, R=3, W=64, H=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, cfg.vocab_size, (B, T), generator=g)
    x1 = torch.randint(0, 30, (B, R, 1), generator=g).float()
    y1 = torch.randint(0, 20, (B, R, 1), generator=g).float()
    boxes = torch.cat([x1, y1, x1 + 4 + torch.randint(0, 30, (B, R, 1), generator=g), y1 + 3 + torch.randint(0, 25, (B, R, 1), generator=g)], -1)
    boxes = torch.cat([whole_image_boxes(B, W, H), boxes], 1)  # (B, R+1, 4)
    feats = torch.rand(B, R + 1, cfg.visual_feature_size, generator=g)
    return ids, feats, boxes, (W, H)


# ---------------------------------------------------------------------------------------------- geometry
def test_geometry_embedding_hand_computed():
    box = torch.tensor([[[10.0, 20.0, 30.0, 60.0]]])  # centre (20, 40), size (20, 40)
    emb = geometry_embedding(box, (100, 80), dim=2)
    assert emb.shape == (1, 1, 16)
    pos = [20 / 100 * 100, 40 / 80 * 100, 20 / 100 * 100, 40 / 80 * 100]  # 20, 50, 20, 50
    expected = []
    for p in pos:
        angles = [p / 1000 ** (i / 2) for i in range(2)]
        expected += [math.sin(a) for a in angles] + [math.cos(a) for a in angles]
    assert torch.allclose(emb[0, 0], torch.tensor(expected), atol=1e-5)
    assert geometry_embedding(box, (100, 80)).shape == (1, 1, 2048)  # VL-BERT's 4 x 2 x 256


def test_geometry_embedding_rejects_bad_boxes():
    with pytest.raises(ValueError, match="x2 >= x1"):
        geometry_embedding(torch.tensor([[[30.0, 0, 10, 5]]]), (64, 64))
    with pytest.raises(ValueError, match="inside the image"):
        geometry_embedding(torch.tensor([[[0.0, 0, 70, 5]]]), (64, 64))
    with pytest.raises(ValueError, match=r"\(B, N, 4\)"):
        geometry_embedding(torch.zeros(2, 4), (64, 64))


# ---------------------------------------------------------------------------------------------- layout
def test_sequence_layout_p11():
    T, n = 5, 3  # [CLS] w w w [SEP], whole image + 2 regions
    lay = sequence_layout(torch.ones(1, T), torch.zeros(1, T, dtype=torch.long), torch.ones(1, n))
    assert lay.is_text[0].tolist() == [True] * 5 + [False] * 4
    assert lay.is_object[0].tolist() == [False] * 5 + [True] * 3 + [False]
    assert lay.is_end[0].tolist() == [False] * 8 + [True]
    assert lay.token_type_ids[0].tolist() == [0] * 5 + [2] * 4
    assert lay.position_ids[0].tolist() == [0, 1, 2, 3, 4, 5, 5, 5, 6]
    assert lay.attention_mask[0].tolist() == [1] * 9


def test_sequence_layout_packs_padding_out():
    text_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    types = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0]])
    obj_mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    lay = sequence_layout(text_mask, types, obj_mask)
    assert lay.position_ids.tolist() == [[0, 1, 2, 3, 4, 4, 5], [0, 1, 2, 2, 2, 3, 0]]
    assert lay.token_type_ids.tolist() == [[0, 0, 1, 1, 2, 2, 2], [0, 0, 2, 2, 2, 2, 0]]
    assert lay.attention_mask.tolist() == [[1] * 7, [1, 1, 1, 1, 1, 1, 0]]
    assert lay.is_end.tolist() == [[False] * 6 + [True], [False] * 5 + [True, False]]


def test_model_layout_and_attentions_p12():
    cfg = small()
    m = VLBERTForPretraining(cfg).eval()
    ids, feats, boxes, size = batch(cfg, B=2, T=6, R=3)
    out = m(ids, feats, boxes, size, output_attentions=True)
    L = 6 + 4 + 1
    assert out["sequence"].shape == (2, L, cfg.hidden_size)
    assert len(out["attentions"]) == cfg.num_hidden_layers
    assert all(a.shape == (2, cfg.num_attention_heads, L, L) for a in out["attentions"])
    assert out["layout"].position_ids[0].tolist() == list(range(6)) + [6] * 4 + [7]
    assert out["mlm_logits"].shape == (2, 6, cfg.vocab_size) and out["region_logits"].shape == (2, 4, cfg.visual_region_classes)


def test_padding_is_invisible():
    cfg = small()
    m = VLBERTForPretraining(cfg).eval()
    ids, feats, boxes, size = batch(cfg, B=1, T=5, R=2)
    a = m(ids, feats, boxes, size)
    ids2 = torch.cat([ids, torch.zeros(1, 2, dtype=torch.long)], 1)
    tm = torch.tensor([[1] * 5 + [0, 0]])
    f2 = torch.cat([feats, torch.rand(1, 1, cfg.visual_feature_size)], 1)
    b2 = torch.cat([boxes, torch.tensor([[[0.0, 0, 5, 5]]])], 1)
    rm = torch.tensor([[1, 1, 1, 0]])
    b = m(ids2, f2, b2, size, text_mask=tm, region_mask=rm)
    assert torch.allclose(a["mlm_logits"], b["mlm_logits"][:, :5], atol=1e-5)
    assert torch.allclose(a["region_logits"], b["region_logits"][:, :3], atol=1e-5)


# ---------------------------------------------------------------------------------------------- starts as BERT
def test_zero_visual_layernorms_make_it_bert():
    cfg = small()
    m = VLBERTForPretraining(cfg).eval()
    assert float(m.vlbert.visual_ln_text.weight.detach().abs().max()) == 0.0 and float(m.vlbert.visual_ln_object.weight.detach().abs().max()) == 0.0
    ids, feats, boxes, size = batch(cfg, B=2, T=6, R=3)
    types = torch.tensor([[0, 0, 0, 1, 1, 1], [0] * 6])
    x, lay = m.vlbert.embed(ids, types, torch.ones_like(ids), torch.randn(2, 6, cfg.hidden_size),
                            torch.randn(2, 4, cfg.hidden_size), m.object_linguistic_embeddings.weight[0].expand(2, 4, -1),
                            torch.ones(2, 4))
    # the text part equals BERT's embeddings of the text alone (same weights)
    bert = TextEmbeddings(TransformerConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_attention_heads=3,
                                            max_position_embeddings=cfg.max_position_embeddings, type_vocab_size=3,
                                            hidden_dropout_prob=0.0)).eval()
    bert.word_embeddings.load_state_dict(m.vlbert.word_embeddings.state_dict())
    bert.position_embeddings.load_state_dict(m.vlbert.position_embeddings.state_dict())
    bert.token_type_embeddings.load_state_dict(m.vlbert.token_type_embeddings.state_dict())
    bert.LayerNorm.load_state_dict(m.vlbert.embedding_LayerNorm.state_dict())
    assert torch.allclose(x[:, :6], bert(ids, types), atol=1e-6)
    # and the whole model ignores the image: other features and boxes give the same outputs
    a = m(ids, feats, boxes, size)
    b = m(ids, torch.rand_like(feats) * 5, torch.cat([boxes[:, :1], boxes[:, 1:] // 2], 1), size)
    assert torch.allclose(a["mlm_logits"], b["mlm_logits"], atol=1e-5)
    # once the LayerNorm weights are non-zero, it does not
    with torch.no_grad():
        m.vlbert.visual_ln_text.weight.fill_(1.0)
    c = m(ids, torch.rand_like(feats) * 5, boxes, size)
    assert not torch.allclose(m(ids, feats, boxes, size)["mlm_logits"], c["mlm_logits"], atol=1e-3)


def test_bert_weights_load_into_the_text_side():
    cfg = small()
    hf = transformers.BertModel(transformers.BertConfig(vocab_size=cfg.vocab_size, hidden_size=24, num_hidden_layers=2,
                                                        num_attention_heads=3, intermediate_size=40,
                                                        max_position_embeddings=40, type_vocab_size=2)).eval()
    m = VLBERTForPretraining(cfg).eval()
    row2 = m.vlbert.token_type_embeddings.weight[2].clone()
    load_bert_into_vlbert(m, hf.state_dict())
    assert torch.equal(m.vlbert.token_type_embeddings.weight[:2], hf.embeddings.token_type_embeddings.weight)
    assert torch.equal(m.vlbert.token_type_embeddings.weight[2], row2)
    ids = torch.randint(0, cfg.vocab_size, (2, 7))
    # with zero visual LayerNorms and no image at all, VL-BERT's text output equals BERT's
    out = m.vlbert(ids, torch.zeros_like(ids), torch.ones_like(ids), torch.zeros(2, 7, 24), torch.zeros(2, 0, 24),
                   torch.zeros(2, 0, 24), torch.zeros(2, 0))
    # the packed sequence has [END] after the text; BERT sees it as an extra token, so compare with it appended
    ref_emb = m.vlbert.embed(ids, torch.zeros_like(ids), torch.ones_like(ids), torch.zeros(2, 7, 24), torch.zeros(2, 0, 24),
                             torch.zeros(2, 0, 24), torch.zeros(2, 0))[0]
    hf_out = hf.encoder(ref_emb).last_hidden_state
    assert torch.allclose(out["sequence"], hf_out, atol=1e-5)
    assert torch.allclose(ref_emb[:, :7], hf.embeddings(ids), atol=1e-6)


# ---------------------------------------------------------------------------------------------- losses & masking
def test_losses_and_no_nan_without_masked_regions():
    cfg = small()
    m = VLBERTForPretraining(cfg)
    ids, feats, boxes, size = batch(cfg)
    N = feats.shape[1]
    targets = torch.softmax(torch.randn(2, N, cfg.visual_region_classes), -1)
    none = torch.zeros(2, N, dtype=torch.bool)
    out = m(ids, feats, boxes, size, masked_regions=none, region_targets=targets, masked_lm_labels=torch.full_like(ids, -100))
    assert out["mrc_loss"].item() == 0.0 and out["mlm_loss"].item() == 0.0
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    sel = none.clone()
    sel[0, 2] = sel[1, 1] = True
    out = m.eval()(ids, feats, boxes, size, masked_regions=sel, region_targets=targets)
    logp = out["region_logits"].log_softmax(-1)
    expected = -((targets[0, 2] * logp[0, 2]).sum() + (targets[1, 1] * logp[1, 1]).sum()) / 2
    assert math.isclose(out["mrc_loss"].item(), expected.item(), rel_tol=1e-5)


def test_feature_masking_uses_mask_embeddings():
    cfg = small()
    m = VLBERTForPretraining(cfg).eval()
    with torch.no_grad():
        m.vlbert.visual_ln_object.weight.fill_(1.0)
        m.vlbert.visual_ln_text.weight.fill_(1.0)
    ids, feats, boxes, size = batch(cfg)
    sel = torch.zeros(2, feats.shape[1], dtype=torch.bool)
    sel[:, 1] = True
    a = m(ids, feats, boxes, size, masked_regions=sel)
    f2 = feats.clone()
    f2[:, 1] = torch.rand(2, cfg.visual_feature_size) * 9
    b = m(ids, f2, boxes, size, masked_regions=sel)  # the masked feature is never seen
    assert torch.allclose(a["mlm_logits"], b["mlm_logits"], atol=1e-5)
    c = m(ids, f2, boxes, size, masked_regions=sel, region_masking="pixels")  # pixels mode: the caller's feature is used
    assert float((a["objects"][:, 1] - c["objects"][:, 1]).detach().abs().max()) > 1e-3
    with pytest.raises(ValueError, match="never masked"):
        m(ids, feats, boxes, size, masked_regions=torch.ones_like(sel))


def test_pixel_masking_hides_region_from_whole_image_feature():
    images = torch.rand(1, 3, 16, 16)
    boxes = torch.tensor([[[0.0, 0, 16, 16], [2.0, 2, 6, 6], [10.0, 10, 14, 14]]])
    detector = lambda img, bx: torch.stack([img[:, :, int(b[1]):int(b[3]), int(b[0]):int(b[2])].sum((1, 2, 3)) for b in bx[0]], 1)[..., None]  # noqa: E731
    sel = torch.tensor([[False, True, False]])
    feats = mask_regions_in_pixels(images, boxes, sel, detector)
    plain = detector(images, boxes)
    assert feats[0, 1, 0].item() == 0.0
    assert math.isclose(feats[0, 0, 0].item(), plain[0, 0, 0].item() - plain[0, 1, 0].item(), rel_tol=1e-5)
    assert feats[0, 2, 0].item() == plain[0, 2, 0].item()


def test_text_only_batch_uses_aux_embedding():
    cfg = small()
    m = VLBERTForPretraining(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 5))
    out = m(ids, None, None)
    assert out["sequence"].shape == (2, 6, cfg.hidden_size)  # text + [END]
    assert out["layout"].token_type_ids[0].tolist() == [0] * 5 + [2]


# ---------------------------------------------------------------------------------------------- errors
def test_input_errors():
    cfg = small()
    m = VLBERTForPretraining(cfg)
    ids, feats, boxes, size = batch(cfg)
    with pytest.raises(ValueError, match=r"width 2048.*visual_feature_size = 10"):
        m(ids, torch.rand(2, 4, 2048), boxes, size)
    with pytest.raises(ValueError, match="batch mismatch"):
        m(ids[:1], feats, boxes, size)
    bad = boxes.clone()
    bad[0, 1, 2] = bad[0, 1, 0] - 1
    with pytest.raises(ValueError, match="x2 >= x1"):
        m(ids, feats, bad, size)
    with pytest.raises(ValueError, match="inside the image"):
        m(ids, feats, boxes * 3, size)
    with pytest.raises(ValueError, match="type_vocab_size >= 3"):
        small(type_vocab_size=2)


# ---------------------------------------------------------------------------------------------- checkpoints
def test_full_size_key_set_on_meta():
    with torch.device("meta"):
        m = VLBERTForPretraining(VLBERTConfig())
    sd = m.state_dict()
    exp = expected_state_dict_keys()
    assert set(sd) == set(exp) and len(exp) == len(set(exp)) == 218
    assert tuple(sd["image_feature_extractor.obj_downsample.1.weight"].shape) == (768, 4096)
    assert tuple(sd["vlbert.token_type_embeddings.weight"].shape) == (3, 768)
    assert tuple(sd["vlbert.end_embedding.weight"].shape) == (1, 768)
    assert tuple(sd["object_mask_visual_embedding.weight"].shape) == (1, 2048)
    assert tuple(sd["vlbert.mvrc_head.region_cls_pred.weight"].shape) == (1601, 768)


def test_strict_load_strips_module_and_drops_e2e_detector(tmp_path):
    cfg = small()
    src = VLBERTForPretraining(cfg)
    orig = to_original_state_dict(src.state_dict())
    assert all(k.startswith("module.") for k in orig)
    assert {k[len("module."):] for k in orig} == set(expected_state_dict_keys(cfg))
    ckpt = {"state_dict": {**orig, "module.image_feature_extractor.backbone.conv1.weight": torch.zeros(2)}, "optimizer": {}}
    dst = VLBERTForPretraining(cfg)
    assert load_original_checkpoint(dst, ckpt) == ([], [])
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    path = tmp_path / "vlbert.safetensors"
    save_original_checkpoint(src, path)
    dst2 = VLBERTForPretraining(cfg).eval()
    load_original_checkpoint(dst2, path)
    ids, feats, boxes, size = batch(cfg)
    assert torch.allclose(src.eval()(ids, feats, boxes, size)["mlm_logits"], dst2(ids, feats, boxes, size)["mlm_logits"])
    assert dst2.vlbert.mlm_head.predictions.decoder.weight is dst2.vlbert.word_embeddings.weight
    back = to_original_state_dict(from_original_state_dict(orig))
    assert all(torch.equal(back[k], orig[k]) for k in orig)
    with pytest.raises(ValueError, match="missing"):
        load_original_checkpoint(VLBERTForPretraining(small(with_pooler=True)), orig)


def test_vqa_head_reads_the_answer_mask():
    from vlp_course.models.vlbert import VLBERTForVQA

    cfg = small()
    m = VLBERTForVQA(cfg, num_answers=5).eval()
    assert {"final_mlp.0.dense.weight", "final_mlp.0.LayerNorm.weight", "final_mlp.2.weight"} <= set(m.state_dict())
    ids, feats, boxes, size = batch(cfg)
    pos = torch.tensor([3, 4])
    scores = torch.zeros(2, 5)
    scores[:, 1] = 1.0
    out = m.vqa(ids, feats, boxes, size, pos, soft_scores=scores)
    text = m(ids, feats, boxes, size)["text"]
    assert torch.allclose(out["logits"], m.final_mlp(text[torch.arange(2), pos]), atol=1e-6)
    assert torch.isfinite(out["loss"])
    with pytest.raises(ValueError, match="answer_positions"):
        m.vqa(ids, feats, boxes, size, torch.tensor([3, 99]))
