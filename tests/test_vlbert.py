"""VL-BERT (Su et al. 2020, section 3; jackroos/VL-BERT): geometry embedding, the packed sequence layout,
the start-as-BERT property of the zero-initialised visual LayerNorms, the box contract (pixel xyxy,
box 0 = [0, 0, W-1, H-1]), MLM / masked RoI classification / text-only MLM losses, pixel vs feature
masking, the VQA head, input errors, the original key set, and the scene recipe (whole-word masking,
own captions, the text-only corpus)."""

from __future__ import annotations

import math

import pytest
import torch
import transformers

from vlp_course.models.blocks import TextEmbeddings, TransformerConfig, VLOutput, repeat_for_pairs
from vlp_course.models.convert import (
    load_bert_into_vlbert,
    load_original_checkpoint,
    save_original_checkpoint,
    vlbert_from_original,
    vlbert_original_keys,
    vlbert_to_original,
)
from vlp_course.models.vlbert import (
    VLBERTConfig,
    VLBERTForNLVR2,
    VLBERTForPreTraining,
    VLBERTForQuestionAnswering,
    check_pixel_boxes,
    geometry_embedding,
    mask_regions_in_pixels,
    sequence_layout,
    whole_image_boxes,
    zero_box_pixels,
)

SMALL = dict(vocab_size=60, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=40,
             max_position_embeddings=40, visual_feature_size=10, geometry_dim=4, visual_region_classes=6,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, obj_downsample_dropout=0.0)


def small(**kw) -> VLBERTConfig:
    return VLBERTConfig(**{**SMALL, **kw})


def batch(cfg, B=2, T=6, R=3, W=64, H=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, cfg.vocab_size, (B, T), generator=g)
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
def test_sequence_layout_of_one_row():
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



def test_model_layout_and_attentions():
    cfg = small()
    m = VLBERTForPreTraining(cfg).eval()
    ids, feats, boxes, size = batch(cfg, B=2, T=6, R=3)
    out = m(ids, feats, boxes, size, output_attentions=True)
    assert isinstance(out, VLOutput) and out.loss is None and out.losses == {}
    L = 6 + 4 + 1
    assert out.encoder["sequence"].shape == (2, L, cfg.hidden_size)
    assert len(out.encoder["attentions"]) == cfg.num_hidden_layers
    assert all(a.shape == (2, cfg.num_attention_heads, L, L) for a in out.encoder["attentions"])
    assert out.encoder["layout"].position_ids[0].tolist() == list(range(6)) + [6] * 4 + [7]
    assert out.logits["mlm"].shape == (2, 6, cfg.vocab_size) and out.logits["mrc"].shape == (2, 4, cfg.visual_region_classes)


def test_padding_is_invisible():
    cfg = small()
    m = VLBERTForPreTraining(cfg).eval()
    ids, feats, boxes, size = batch(cfg, B=1, T=5, R=2)
    a = m(ids, feats, boxes, size)
    ids2 = torch.cat([ids, torch.zeros(1, 2, dtype=torch.long)], 1)
    tm = torch.tensor([[1] * 5 + [0, 0]])
    f2 = torch.cat([feats, torch.rand(1, 1, cfg.visual_feature_size)], 1)
    b2 = torch.cat([boxes, torch.tensor([[[0.0, 0, 5, 5]]])], 1)
    rm = torch.tensor([[1, 1, 1, 0]])
    b = m(ids2, f2, b2, size, attention_mask=tm, visual_attention_mask=rm)
    assert torch.allclose(a.logits["mlm"], b.logits["mlm"][:, :5], atol=1e-5)
    assert torch.allclose(a.logits["mrc"], b.logits["mrc"][:, :3], atol=1e-5)


# ---------------------------------------------------------------------------------------------- starts as BERT
def test_zero_visual_layernorms_make_it_bert():
    cfg = small()
    m = VLBERTForPreTraining(cfg).eval()
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
    assert torch.allclose(a.logits["mlm"], b.logits["mlm"], atol=1e-5)
    # once the LayerNorm weights are non-zero, it does not
    with torch.no_grad():
        m.vlbert.visual_ln_text.weight.fill_(1.0)
    c = m(ids, torch.rand_like(feats) * 5, boxes, size)
    assert not torch.allclose(m(ids, feats, boxes, size).logits["mlm"], c.logits["mlm"], atol=1e-3)


def test_bert_weights_load_into_the_text_side():
    cfg = small()
    hf = transformers.BertModel(transformers.BertConfig(vocab_size=cfg.vocab_size, hidden_size=24, num_hidden_layers=2,
                                                        num_attention_heads=3, intermediate_size=40,
                                                        max_position_embeddings=40, type_vocab_size=2)).eval()
    m = VLBERTForPreTraining(cfg).eval()
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


# ---------------------------------------------------------------------------------------------- box contract
def test_whole_image_box_is_w_minus_one_by_h_minus_one():
    assert whole_image_boxes(2, 64, 48).tolist() == [[[0.0, 0.0, 63.0, 47.0]]] * 2  # conceptual_captions.py: w0 - 1, h0 - 1


def test_box_contract():
    size = (64, 48)
    good = torch.tensor([[[0.0, 0, 63, 47], [3, 4, 20, 30]]])
    assert check_pixel_boxes(good, size).tolist() == [[64.0, 48.0]]
    check_pixel_boxes(torch.tensor([[[0.0, 0, 64, 48], [3, 4, 20, 30]]]), size)  # [0, 0, W, H]: within 1 px
    with pytest.raises(ValueError, match=">= 0"):
        check_pixel_boxes(torch.tensor([[[0.0, 0, 63, 47], [-2, 4, 20, 30]]]), size)
    normalised = torch.tensor([[[0.0, 0, 1, 1], [0.1, 0.2, 0.5, 0.6]]])
    with pytest.raises(ValueError, match="normalised twice"):
        check_pixel_boxes(normalised, size)
    with pytest.raises(ValueError, match="box 0 must be the whole image"):
        check_pixel_boxes(torch.tensor([[[0.0, 0, 61, 47], [3, 4, 20, 30]]]), size)  # 2 px short
    with pytest.raises(ValueError, match="box 0 must be the whole image"):
        check_pixel_boxes(torch.tensor([[[3.0, 4, 20, 30], [0, 0, 63, 47]]]), size)  # whole image not first
    with pytest.raises(ValueError, match="inside the image"):
        check_pixel_boxes(torch.tensor([[[0.0, 0, 63, 47], [3, 4, 70, 30]]]), size)
    # the model refuses the same, before any compute
    cfg = small()
    m = VLBERTForPreTraining(cfg)
    ids, feats, boxes, _ = batch(cfg, B=1, R=1)
    with pytest.raises(ValueError, match="normalised twice"):
        m(ids, feats, boxes / torch.tensor([64.0, 48, 64, 48]), (64, 48))


# ---------------------------------------------------------------------------------------------- losses & masking
def test_losses_and_no_nan_without_masked_regions():
    cfg = small()
    m = VLBERTForPreTraining(cfg)
    ids, feats, boxes, size = batch(cfg)
    N = feats.shape[1]
    targets = torch.softmax(torch.randn(2, N, cfg.visual_region_classes), -1)
    none = torch.zeros(2, N, dtype=torch.bool)
    out = m(ids, feats, boxes, size, masked_regions=none, region_targets=targets, mlm_labels=torch.full_like(ids, -100))
    assert out.losses["mrc"].item() == 0.0 and out.losses["mlm"].item() == 0.0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    sel = none.clone()
    sel[0, 2] = sel[1, 1] = True
    out = m.eval()(ids, feats, boxes, size, masked_regions=sel, region_targets=targets)
    logp = out.logits["mrc"].log_softmax(-1)
    expected = -((targets[0, 2] * logp[0, 2]).sum() + (targets[1, 1] * logp[1, 1]).sum()) / 2
    assert math.isclose(out.losses["mrc"].item(), expected.item(), rel_tol=1e-5)


def test_kept_regions_are_predicted_but_not_hidden():
    """masked_regions = the regions classified; hidden_regions = the 90% whose input is replaced."""
    cfg = small()
    m = VLBERTForPreTraining(cfg).eval()
    with torch.no_grad():
        m.vlbert.visual_ln_object.weight.fill_(1.0)
    ids, feats, boxes, size = batch(cfg)
    targets = torch.softmax(torch.randn(2, 4, cfg.visual_region_classes), -1)
    sel = torch.zeros(2, 4, dtype=torch.bool)
    sel[:, 1] = True
    kept = m(ids, feats, boxes, size, masked_regions=sel, hidden_regions=torch.zeros_like(sel), region_targets=targets)
    plain = m(ids, feats, boxes, size)
    assert torch.allclose(kept.logits["mrc"], plain.logits["mrc"], atol=1e-6)  # input unchanged
    hidden = m(ids, feats, boxes, size, masked_regions=sel, region_targets=targets)  # hidden defaults to masked
    assert not torch.allclose(hidden.logits["mrc"][:, 1], plain.logits["mrc"][:, 1], atol=1e-3)


def test_feature_masking_uses_mask_embeddings():
    cfg = small()
    m = VLBERTForPreTraining(cfg).eval()
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
    assert torch.allclose(a.logits["mlm"], b.logits["mlm"], atol=1e-5)
    c = m(ids, f2, boxes, size, masked_regions=sel, region_masking="pixels")  # pixels mode: the caller's feature is used
    assert float((a.encoder["objects"][:, 1] - c.encoder["objects"][:, 1]).detach().abs().max()) > 1e-3
    with pytest.raises(ValueError, match="never masked"):
        m(ids, feats, boxes, size, masked_regions=torch.ones_like(sel))


def test_zero_box_pixels_includes_both_ends():
    """``image[:, int(y1):int(y2) + 1, int(x1):int(x2) + 1] = 0`` (conceptual_captions.py), counted by hand."""
    img = torch.ones(1, 1, 10, 10)
    out = zero_box_pixels(img, torch.tensor([[[2.0, 3.0, 6.0, 4.0]]]), torch.tensor([[True]]))
    assert int((out == 0).sum()) == 5 * 2  # columns 2..6, rows 3..4
    assert out[0, 0, 3, 6] == 0 and out[0, 0, 4, 2] == 0 and out[0, 0, 3, 7] == 1 and out[0, 0, 5, 2] == 1
    out = zero_box_pixels(img, torch.tensor([[[1.7, 0.2, 3.9, 2.5]]]), torch.tensor([[True]]))
    assert int((out == 0).sum()) == 3 * 3  # int() truncates: columns 1..3, rows 0..2
    out = zero_box_pixels(img, torch.tensor([[[0.0, 0.0, 9.0, 9.0], [1.0, 1.0, 2.0, 2.0]]]), torch.tensor([[False, False]]))
    assert torch.equal(out, img)
    with pytest.raises(ValueError, match=">= 0"):
        zero_box_pixels(img, torch.tensor([[[-1.0, 0.0, 2.0, 2.0]]]), torch.tensor([[True]]))


def test_pixel_masking_hides_region_from_whole_image_feature():
    images = torch.rand(1, 3, 16, 16)
    boxes = torch.tensor([[[0.0, 0, 15, 15], [2.0, 2, 6, 6], [10.0, 10, 14, 14]]])

    def detector(img, bx):  # the sum of each box's pixels, both ends included
        return torch.stack([img[:, :, int(b[1]):int(b[3]) + 1, int(b[0]):int(b[2]) + 1].sum((1, 2, 3)) for b in bx[0]], 1)[..., None]

    sel = torch.tensor([[False, True, False]])
    feats = mask_regions_in_pixels(images, boxes, sel, detector)
    plain = detector(images, boxes)
    assert feats[0, 1, 0].item() == 0.0
    assert math.isclose(feats[0, 0, 0].item(), plain[0, 0, 0].item() - plain[0, 1, 0].item(), rel_tol=1e-5)
    assert feats[0, 2, 0].item() == plain[0, 2, 0].item()
    with pytest.raises(ValueError, match="never masked"):
        mask_regions_in_pixels(images, boxes, torch.tensor([[True, False, False]]), detector)


def test_text_only_rows_have_no_image_and_their_own_mlm_loss():
    cfg = small()
    m = VLBERTForPreTraining(cfg).eval()
    with torch.no_grad():  # let the image matter, so its absence is visible
        m.vlbert.visual_ln_text.weight.fill_(1.0)
        m.vlbert.visual_ln_object.weight.fill_(1.0)
    ids, feats, boxes, size = batch(cfg)
    g = torch.Generator().manual_seed(1)
    text = torch.randint(5, cfg.vocab_size, (3, 7), generator=g)
    labels = torch.full_like(text, -100)
    labels[0, 2], labels[2, 5] = 11, 12
    a = m(ids, feats, boxes, size, text_only_ids=text, text_only_mlm_labels=labels)
    b = m(ids, torch.rand_like(feats) * 4, boxes, size, text_only_ids=text, text_only_mlm_labels=labels)
    assert set(a.losses) == {"mlm_text"} and a.logits["mlm_text"].shape == (3, 7, cfg.vocab_size)
    assert torch.allclose(a.logits["mlm_text"], b.logits["mlm_text"], atol=1e-6)  # no image in the text-only rows
    assert not torch.allclose(a.logits["mlm"], b.logits["mlm"], atol=1e-3)  # while the caption rows see it
    lay = a.encoder["text_only"]["layout"]
    assert lay.is_object.sum() == 0 and lay.token_type_ids[0].tolist() == [0] * 7 + [2]  # words, then [END]
    # the words' visual embedding is aux_text_visual_embedding: the same rows through the encoder by hand
    w = m.aux_text_visual_embedding.weight[0].expand(3, 7, -1)
    ref = m.vlbert(text, torch.zeros_like(text), torch.ones_like(text), w, torch.zeros(3, 0, 24), torch.zeros(3, 0, 24),
                   torch.zeros(3, 0))
    logp = m.vlbert.mlm_head(ref["text"]).log_softmax(-1)
    expected = -(logp[0, 2, 11] + logp[2, 5, 12]) / 2
    assert math.isclose(a.losses["mlm_text"].item(), expected.item(), rel_tol=1e-5)


# ---------------------------------------------------------------------------------------------- errors
def test_input_errors():
    cfg = small()
    m = VLBERTForPreTraining(cfg)
    ids, feats, boxes, size = batch(cfg)
    with pytest.raises(ValueError, match=r"width 2048.*visual_feature_size = 10"):
        m(ids, torch.rand(2, 4, 2048), boxes, size)
    with pytest.raises(ValueError, match="batch mismatch"):
        m(ids[:1], feats, boxes, size)
    with pytest.raises(ValueError, match="integer token ids"):
        m(ids.float(), feats, boxes, size)
    with pytest.raises(ValueError, match="no tokens"):
        m(ids[:, :0], feats, boxes, size)
    with pytest.raises(ValueError, match=r"dtype torch.float64 but the model's weights are torch.float32"):
        m(ids, feats.double(), boxes, size)
    nan = feats.clone()
    nan[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        m(ids, nan, boxes, size)
    with pytest.raises(ValueError, match="first token"):
        m(ids, feats, boxes, size, attention_mask=torch.tensor([[0, 1, 1, 1, 1, 1], [1] * 6]))
    with pytest.raises(ValueError, match="segment"):
        m(ids, feats, boxes, size, token_type_ids=torch.full_like(ids, 2))
    bad = boxes.clone()
    bad[0, 1, 2] = bad[0, 1, 0] - 1
    with pytest.raises(ValueError, match="x2 >= x1"):
        m(ids, feats, bad, size)
    bad = boxes.clone()
    bad[0, 1] = torch.tensor([10.0, 10, 90, 20])
    with pytest.raises(ValueError, match="inside the image"):
        m(ids, feats, bad, size)
    with pytest.raises(ValueError, match="mlm_labels must have shape"):
        m(ids, feats, boxes, size, mlm_labels=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="region_targets must have shape"):
        m(ids, feats, boxes, size, masked_regions=torch.zeros(2, 4, dtype=torch.bool), region_targets=torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="no tokens"):
        m(ids, feats, boxes, size, text_only_ids=torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="type_vocab_size >= 3"):
        small(type_vocab_size=2)


# ---------------------------------------------------------------------------------------------- checkpoints
def test_full_size_key_set_on_meta():
    with torch.device("meta"):
        m = VLBERTForPreTraining(VLBERTConfig())
    sd = m.state_dict()
    exp = vlbert_original_keys()
    assert set(sd) == set(exp) and len(exp) == len(set(exp)) == 218
    assert tuple(sd["image_feature_extractor.obj_downsample.1.weight"].shape) == (768, 4096)
    assert tuple(sd["vlbert.token_type_embeddings.weight"].shape) == (3, 768)
    assert tuple(sd["vlbert.end_embedding.weight"].shape) == (1, 768)
    assert tuple(sd["object_mask_visual_embedding.weight"].shape) == (1, 2048)
    assert tuple(sd["vlbert.mvrc_head.region_cls_pred.weight"].shape) == (1601, 768)


def test_original_checkpoint_round_trip(tmp_path):
    cfg = small()
    src = VLBERTForPreTraining(cfg)
    orig = vlbert_to_original(src.state_dict())
    assert all(k.startswith("module.") for k in orig)
    assert {k[len("module."):] for k in orig} == set(vlbert_original_keys(cfg))
    ckpt = {"state_dict": {**orig, "module.image_feature_extractor.backbone.conv1.weight": torch.zeros(2)}, "optimizer": {}}
    assert set(vlbert_from_original(ckpt)) == set(src.state_dict())  # module. stripped, the e2e detector dropped
    path = tmp_path / "vlbert.safetensors"
    save_original_checkpoint(src, path)
    dst = VLBERTForPreTraining(cfg).eval()
    load_original_checkpoint(dst, path)
    ids, feats, boxes, size = batch(cfg)
    assert torch.allclose(src.eval()(ids, feats, boxes, size).logits["mlm"], dst(ids, feats, boxes, size).logits["mlm"])
    assert dst.vlbert.mlm_head.predictions.decoder.weight is dst.vlbert.word_embeddings.weight


# ---------------------------------------------------------------------------------------------- VQA
def test_vqa_head_reads_the_answer_mask():
    cfg = small()
    m = VLBERTForQuestionAnswering(cfg, num_answers=5).eval()
    assert {"final_mlp.0.dense.weight", "final_mlp.0.LayerNorm.weight", "final_mlp.2.weight"} <= set(m.state_dict())
    ids, feats, boxes, size = batch(cfg)
    pos = torch.tensor([3, 4])
    scores = torch.zeros(2, 5)
    scores[:, 1] = 1.0
    out = m(ids, feats, boxes, size, pos, soft_scores=scores)
    text = m.encode(ids, feats, boxes, size)["text"]
    assert torch.allclose(out.logits["vqa"], m.final_mlp(text[torch.arange(2), pos]), atol=1e-6)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits["vqa"], scores) * 5
    assert math.isclose(out.losses["vqa"].item(), expected.item(), rel_tol=1e-6) and torch.equal(out.loss, out.losses["vqa"])
    with pytest.raises(ValueError, match="inside the text"):
        m(ids, feats, boxes, size, torch.tensor([3, 99]))
    with pytest.raises(ValueError, match="inside the text"):
        m(ids, feats, boxes, size, torch.tensor([-1, 2]))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    with pytest.raises(ValueError, match=r"answer_positions\[1\] = 4 points at padding"):
        m(ids, feats, boxes, size, pos, attention_mask=mask)
    with pytest.raises(ValueError, match="integer indices"):
        m(ids, feats, boxes, size, pos.float())


# ---------------------------------------------------------------------------------------------- the recipe
def test_whole_word_masking_one_decision_per_word():
    """random_word_wwm: a selected word's pieces are all [MASK], all random, or all kept (one draw per word)."""
    from vlp_course.recipes.vlbert import mask_whole_words

    B, T, V, MASK_ID = 4000, 6, 50, 4
    ids = torch.randint(5, V, (B, T), generator=torch.Generator().manual_seed(0))
    word_ids = torch.tensor([-1, 0, 0, 1, 1, -1]).expand(B, T)  # [CLS] w0 w0 w1 w1 [SEP]
    masked, labels = mask_whole_words(ids, word_ids, V, MASK_ID, special_token_ids=range(5),
                                      generator=torch.Generator().manual_seed(1))
    sel = labels != -100
    assert not sel[:, [0, 5]].any()
    assert torch.equal(sel[:, 1], sel[:, 2]) and torch.equal(sel[:, 3], sel[:, 4])  # whole words
    assert torch.equal(labels[sel], ids[sel])
    rate = sel[:, 1].float().mean()
    assert abs(float(rate) - 0.15) < 4 * math.sqrt(0.15 * 0.85 / B)
    w = sel[:, 1]
    is_mask = masked[w][:, 1:3] == MASK_ID
    assert torch.equal(is_mask[:, 0], is_mask[:, 1])  # both pieces [MASK] or neither
    changed = masked[w][:, 1:3] != ids[w][:, 1:3]
    kept = ~changed.any(1)
    n = int(w.sum())
    assert abs(float(is_mask[:, 0].float().mean()) - 0.8) < 4 * math.sqrt(0.16 / n)
    assert abs(float(kept.float().mean()) - 0.1) < 4 * math.sqrt(0.09 / n) + 2 / V  # a random piece may equal the original


@pytest.fixture(scope="module")
def scene_adapter():
    from vlp_course.data.vl_tensors import build_scene_tensors
    from vlp_course.recipes.base import Recipe
    from vlp_course.recipes.vlbert import VLBERTAdapter

    st = build_scene_tensors(120, seed=3, n_test=20, vqa_mask_token="segment")
    return VLBERTAdapter(st, Recipe(kind="vlbert", n_images=120, n_test=20, seed=3))


def test_recipe_pairs_every_image_with_its_own_caption(scene_adapter):
    sm = scene_adapter
    b = sm.st.pretrain_batch(0, 64)
    assert (b["is_matched"] == 0).any()
    ids, mask = sm.own_captions(b, torch.Generator().manual_seed(0))
    owners = {}  # batches keep only the columns their longest caption uses: compare unpadded rows
    for r, rm, i in zip(sm.st.cap_ids, sm.st.cap_mask, sm.st.cap_image):
        owners.setdefault(tuple(r[rm.bool()].tolist()), set()).add(int(i))
    assert all(int(img) in owners[tuple(row[rm.bool()].tolist())] for row, rm, img in zip(ids, mask, b["image"]))
    assert mask[:, -1].any()  # no all-padding column
    m = b["is_matched"].bool()
    T = min(ids.shape[1], b["input_ids"].shape[1])
    assert torch.equal(ids[m][:, :T], b["input_ids"][m][:, :T]) and torch.equal(mask[m][:, :T], b["attention_mask"][m][:, :T])
    assert not ids[m][:, T:].any() and not b["input_ids"][m][:, T:].any()  # beyond: padding only


def test_recipe_text_only_corpus_is_english_in_the_scene_vocabulary(scene_adapter):
    sm = scene_adapter
    corpus = sm.text_only
    assert corpus.shape[1] == sm.text_only_length and len(corpus) > 2000
    words = sm.st.vocab.decode(corpus[:50].flatten().tolist())
    assert words.count("the") > 20 and 0.4 < words.count("[UNK]") / len(words) < 0.95
    ids, mask, labels = sm.text_only_batch(512, torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert not (labels[chosen] == sm.st.ids["[UNK]"]).any()  # unknown words are never targets
    known = (labels.numel() - (ids == sm.st.ids["[UNK]"]).sum())  # [MASK] or random replacements count as known
    assert 0.05 < float(chosen.sum() / known) < 0.3


def test_recipe_step_runs_mlm_mrc_and_mlm_text(scene_adapter):
    sm = scene_adapter
    torch.manual_seed(0)
    model = sm.pretraining_model()
    b = sm.st.pretrain_batch(0, 16)
    a = sm.pretrain_step(model, b, torch.Generator().manual_seed(4))
    again = sm.pretrain_step(model, b, torch.Generator().manual_seed(4))
    assert set(a.losses) == {"mlm", "mrc", "mlm_text"}
    assert all(torch.equal(a.losses[k], again.losses[k]) for k in a.losses)  # same generator seed, same step
    assert a.logits["mlm_text"].shape == (8, sm.text_only_length, len(sm.st.vocab))
    lay = a.encoder["layout"]
    S = sm.st.image_size
    # region 0 of every row is the whole image [0, 0, W-1, H-1]
    feats, boxes, rmask = sm.regions(b)
    assert boxes[:, 0].tolist() == [[0.0, 0.0, S - 1.0, S - 1.0]] * 16 and (rmask[:, 0] == 1).all()
    assert lay.is_object.sum(1).tolist() == rmask.sum(1).tolist()


# ---------------------------------------------------------------------------------------------- NLVR2 (ours)
def nlvr2_rows(cfg, P=3):
    ids, feats, boxes, size = batch(cfg, B=2 * P)
    ids = ids[0::2]  # (P, T): one statement per pair
    return ids, feats.view(P, 2, *feats.shape[1:]), boxes.view(P, 2, *boxes.shape[1:]), size


def test_nlvr2_adaptation_pairs_two_passes_and_needs_a_pooler():
    cfg = small(with_pooler=True, visual_scale_text_init=1.0, visual_scale_object_init=1.0)
    torch.manual_seed(0)
    m = VLBERTForNLVR2(cfg).eval()
    ids, feats, boxes, size = nlvr2_rows(cfg)

    def run(i, f, b):
        return m(*repeat_for_pairs(i, f, b), size).logits["nlvr2"]

    with torch.no_grad():
        base = run(ids, feats, boxes)
        ids2, f2, b2 = repeat_for_pairs(ids, feats, boxes)
        out = m(ids2, f2, b2, size, labels=torch.tensor([0, 1, 1]))
        pooled = m.encode(ids2, f2, b2, size)["pooled"]  # (6, D)
        manual = m.nlvr2_output(torch.cat([pooled[0::2], pooled[1::2]], 1))  # UniterForNlvr2Paired
        assert base.shape == (3, 2) and torch.allclose(out.logits["nlvr2"], manual, atol=1e-6)
        assert torch.isfinite(out.losses["nlvr2"])
        perm = torch.tensor([2, 0, 1])
        assert (run(ids[perm], feats[perm], boxes[perm]) - base[perm]).abs().max() < 1e-5
        changed = feats.clone()
        changed[1, 1] += 1.0  # pair 1's right image
        after = run(ids, changed, boxes)
        assert (after[[0, 2]] - base[[0, 2]]).abs().max() < 1e-6 and (after[1] - base[1]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="2 x num_pairs"):
        m(ids2[:5], f2[:5], b2[:5], size)
    with pytest.raises(ValueError, match="two different statements"):
        m(ids.repeat(2, 1), f2, b2, size)
    with pytest.raises(ValueError, match="with_pooler=True"):
        VLBERTForNLVR2(small())
