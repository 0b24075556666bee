"""Checkpoint converters: original key sets (uclanlp VisualBERT, airsplay LXMERT), HF keys, safetensors
round trips, and load reports that name missing, unexpected and mismatched keys."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from vlp_course.checkpoints import load_safetensors, save_safetensors  # noqa: E402
from vlp_course.models.convert import (  # noqa: E402
    LoadReport,
    detect_source,
    family_of,
    load_original_checkpoint,
    lxmert_from_original,
    lxmert_to_original,
    save_original_checkpoint,
    visualbert_from_original,
    visualbert_to_hf,
    visualbert_to_original,
)
from vlp_course.models.lxmert import LxmertConfig, LxmertForPreTraining, LxmertModel  # noqa: E402
from vlp_course.models.visualbert import (  # noqa: E402
    VisualBertConfig,
    VisualBertForPreTraining,
    VisualBertForQuestionAnswering,
    VisualBertModel,
)

TOL = 1e-5
VOCAB, F = 40, 10


def randomize(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            ln = name.endswith(("LayerNorm.weight", "layer_norm.weight"))
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if ln else 0.0))
    return module.eval()


def vb_hf_config(**kw):
    return transformers.VisualBertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=32, visual_embedding_dim=F, max_position_embeddings=20,
                                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=5, **kw)


def lx_hf_config():
    return transformers.LxmertConfig(vocab_size=VOCAB, hidden_size=16, num_attention_heads=2, intermediate_size=32,
                                     l_layers=2, r_layers=1, x_layers=2, visual_feat_dim=F, num_qa_labels=6,
                                     num_object_labels=7, num_attr_labels=4, max_position_embeddings=20,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def vb_inputs():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (2, 6), generator=g)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    return ids, torch.randn(2, 3, F, generator=g), mask


def lx_inputs():
    ids, feats, mask = vb_inputs()
    xy = torch.rand(2, 3, 2) * 0.5
    return ids, feats, torch.cat([xy, xy + 0.4], -1), mask


# ------------------------------------------------------------------------------------------------
# VisualBERT
# ------------------------------------------------------------------------------------------------
ORIGINAL_VB_KEYS = {
    "bert.bert.embeddings.word_embeddings.weight",
    "bert.bert.embeddings.token_type_embeddings_visual.weight",
    "bert.bert.embeddings.position_embeddings_visual.weight",
    "bert.bert.embeddings.projection.weight",
    "bert.bert.embeddings.projection.bias",
    "bert.bert.encoder.layer.1.attention.self.query.weight",
    "bert.bert.pooler.dense.weight",
    "bert.cls.predictions.bias",
    "bert.cls.predictions.decoder.weight",
    "bert.cls.predictions.transform.LayerNorm.weight",
    "bert.cls.seq_relationship.weight",
}


def test_visualbert_original_key_set_loads_and_matches_hf():
    hf = randomize(transformers.VisualBertForPreTraining(vb_hf_config()))
    original = visualbert_to_original(hf.state_dict())  # the uclanlp names (AllenNLP's "bert." prefix)
    assert ORIGINAL_VB_KEYS <= set(original)
    assert not any(k.endswith("position_ids") or "decoder.bias" in k or "visual_bert" in k for k in original)
    assert len(original) == len(hf.state_dict()) - 1  # HF's decoder.bias copy is not in the original
    original["detector.backbone.conv1.weight"] = torch.zeros(2, 2)  # as in the VCR files
    assert detect_source(original, "visualbert") == "original"
    ours = VisualBertForPreTraining(VisualBertConfig.from_hf(hf.config)).eval()
    report = load_original_checkpoint(ours, original)
    assert report.ok and report.source == "original"
    assert "detector.backbone.conv1.weight" in report.dropped
    ids, feats, mask = vb_inputs()
    with torch.no_grad():
        h = hf(input_ids=ids, attention_mask=mask, visual_embeds=feats, visual_token_type_ids=torch.zeros(2, 3, dtype=torch.long))
        o = ours(ids, feats, mask)
    assert (h.prediction_logits - o.logits["mlm"]).abs().max() < TOL
    assert (h.seq_relationship_logits - o.logits["itm"]).abs().max() < TOL


def test_visualbert_original_vqa_classifier_and_round_trip():
    hf = randomize(transformers.VisualBertForQuestionAnswering(vb_hf_config()))
    original = visualbert_to_original(hf.state_dict())
    assert {"bert.classifier.weight", "bert.classifier.bias"} <= set(original)
    renamed, dropped = visualbert_from_original(original)
    assert not dropped
    assert set(renamed) == {k for k in hf.state_dict() if not k.endswith("position_ids")}
    ours = VisualBertForQuestionAnswering(VisualBertConfig.from_hf(hf.config, mask_token_id=4)).eval()
    assert load_original_checkpoint(ours, original).ok


def test_ours_back_to_hf_strict():
    torch.manual_seed(0)
    ours = randomize(VisualBertForPreTraining(VisualBertConfig.from_hf(vb_hf_config())))
    hf = transformers.VisualBertForPreTraining(vb_hf_config()).eval()
    result = hf.load_state_dict(visualbert_to_hf(ours.state_dict()), strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) <= {"visual_bert.embeddings.position_ids"}
    ids, feats, mask = vb_inputs()
    with torch.no_grad():
        h = hf(input_ids=ids, attention_mask=mask, visual_embeds=feats, visual_token_type_ids=torch.zeros(2, 3, dtype=torch.long))
        assert (h.prediction_logits - ours(ids, feats, mask).logits["mlm"]).abs().max() < TOL


# ------------------------------------------------------------------------------------------------
# LXMERT
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data_parallel", [True, False])
def test_lxmert_airsplay_key_set_loads_and_matches_hf(data_parallel):
    hf = randomize(transformers.LxmertForPreTraining(lx_hf_config()))
    original = lxmert_to_original(hf.state_dict(), data_parallel=data_parallel)
    prefix = "module.bert." if data_parallel else "bert."
    assert prefix + "encoder.x_layers.1.visual_attention.att.query.weight" in original
    assert ("module." if data_parallel else "") + "obj_predict_head.decoder_dict.attr.weight" in original
    assert len(original) == len(hf.state_dict())
    assert set(lxmert_from_original(original)) == set(hf.state_dict())
    ours = LxmertForPreTraining(LxmertConfig.from_hf(hf.config)).eval()
    report = load_original_checkpoint(ours, original)
    assert report.ok and report.source == "original"
    ids, feats, boxes, mask = lx_inputs()
    with torch.no_grad():
        h = hf(input_ids=ids, visual_feats=feats, visual_pos=boxes, attention_mask=mask)
        o = ours(ids, feats, boxes, mask)
    for a, b in ((h.prediction_logits, o.logits["mlm"]), (h.cross_relationship_score, o.logits["itm"]),
                 (h.question_answering_score, o.logits["qa"])):
        assert (a - b).abs().max() < TOL


def test_lxmert_task_file_with_encoder_only_loads_into_base_model():
    hf = randomize(transformers.LxmertModel(lx_hf_config()))
    encoder_only = {"bert." + k: v for k, v in hf.state_dict().items()}  # airsplay *_LXRT.pth: keys bert.*
    ours = LxmertModel(LxmertConfig.from_hf(hf.config)).eval()
    assert load_original_checkpoint(ours, encoder_only).ok
    ids, feats, boxes, mask = lx_inputs()
    with torch.no_grad():
        assert (hf(input_ids=ids, visual_feats=feats, visual_pos=boxes, attention_mask=mask).pooled_output
                - ours(ids, feats, boxes, mask).pooled_output).abs().max() < TOL


# ------------------------------------------------------------------------------------------------
# safetensors and reports
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["visualbert", "lxmert"])
def test_safetensors_round_trip_stores_tied_weights_once(tmp_path, family):
    torch.manual_seed(0)
    if family == "visualbert":
        cfg = VisualBertConfig.from_hf(vb_hf_config())
        a, b = randomize(VisualBertForPreTraining(cfg)), VisualBertForPreTraining(cfg).eval()
    else:
        cfg = LxmertConfig.from_hf(lx_hf_config())
        a, b = randomize(LxmertForPreTraining(cfg)), LxmertForPreTraining(cfg).eval()
    path = save_safetensors(a, tmp_path / "m.safetensors", metadata={"note": "test"})
    raw = load_safetensors(path)
    assert "cls.predictions.decoder.weight" in raw  # restored from the metadata
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        assert "cls.predictions.decoder.weight" not in set(f.keys())
        assert f.metadata()["note"] == "test"
    report = load_original_checkpoint(b, path)
    assert report.ok, str(report)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    base = b.visual_bert if family == "visualbert" else b.lxmert
    assert b.cls.predictions.decoder.weight is base.embeddings.word_embeddings.weight  # still tied


def test_report_lists_missing_and_unexpected_and_strict_raises():
    cfg = VisualBertConfig.from_hf(vb_hf_config())
    base = randomize(VisualBertModel(cfg))
    full = VisualBertForPreTraining(cfg)
    with pytest.raises(ValueError, match=r"missing in the checkpoint[\s\S]*cls\.seq_relationship\.weight"):
        load_original_checkpoint(full, base.state_dict())
    report = load_original_checkpoint(full, base.state_dict(), strict=False)
    assert isinstance(report, LoadReport)
    assert "cls.seq_relationship.weight" in report.missing and "cls.predictions.decoder.weight" not in report.missing
    assert not report.unexpected and "cls.predictions.bias" in str(report)
    assert torch.equal(full.visual_bert.pooler.dense.weight, base.pooler.dense.weight)
    # a pretraining checkpoint into the base model: the heads are unexpected
    sd = dict(randomize(VisualBertForPreTraining(cfg)).state_dict())
    sd["visual_bert.encoder.layer.9.output.dense.weight"] = torch.zeros(16, 32)
    with pytest.raises(ValueError, match=r"unexpected[\s\S]*encoder\.layer\.9"):
        load_original_checkpoint(VisualBertModel(cfg), sd)
    report = load_original_checkpoint(VisualBertModel(cfg), sd, strict=False)
    assert "cls.seq_relationship.weight" in report.unexpected and not report.missing


def test_shape_mismatch_names_key_and_shapes():
    hf = transformers.VisualBertModel(vb_hf_config())
    ours = VisualBertModel(VisualBertConfig.from_hf(vb_hf_config(), visual_embedding_dim=F + 2))
    with pytest.raises(ValueError, match=r"visual_projection\.weight: checkpoint \(16, 10\) vs model \(16, 12\)"):
        load_original_checkpoint(ours, hf.state_dict())


def test_inconsistent_decoder_bias_is_refused():
    sd = dict(transformers.VisualBertForPreTraining(vb_hf_config()).state_dict())
    sd["cls.predictions.decoder.bias"] = sd["cls.predictions.bias"] + 1
    with pytest.raises(ValueError, match="decoder.bias differs"):
        load_original_checkpoint(VisualBertForPreTraining(VisualBertConfig.from_hf(vb_hf_config())), sd)


# ------------------------------------------------------------------------------------------------
# One loader and one writer for the four families
# ------------------------------------------------------------------------------------------------
def four_models():
    """A small model of each family, with random weights (built from the configs the model tests use)."""
    from vlp_course.models.vilbert import ViLBERTConfig, ViLBERTForPreTraining
    from vlp_course.models.vlbert import VLBERTConfig, VLBERTForPreTraining

    vil = ViLBERTConfig(vocab_size=VOCAB, hidden_size=24, num_hidden_layers=4, num_attention_heads=3, intermediate_size=40,
                        max_position_embeddings=32, v_feature_size=F, v_target_size=7, v_hidden_size=16,
                        v_num_hidden_layers=2, v_num_attention_heads=2, v_intermediate_size=16, bi_hidden_size=20,
                        bi_num_attention_heads=4, v_biattention_id=[0, 1], t_biattention_id=[2, 3])
    vl = VLBERTConfig(vocab_size=VOCAB, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=40,
                      max_position_embeddings=40, visual_feature_size=F, geometry_dim=4, visual_region_classes=6)
    return {
        "visualbert": lambda: VisualBertForPreTraining(VisualBertConfig.from_hf(vb_hf_config())),
        "lxmert": lambda: LxmertForPreTraining(LxmertConfig.from_hf(lx_hf_config())),
        "vilbert": lambda: ViLBERTForPreTraining(vil),
        "vlbert": lambda: VLBERTForPreTraining(vl),
    }


@pytest.mark.parametrize("family", ["visualbert", "lxmert", "vilbert", "vlbert"])
def test_save_and_load_original_checkpoint_round_trip_for_every_family(tmp_path, family):
    make = four_models()[family]
    torch.manual_seed(0)
    src, dst = randomize(make(), seed=3), make()
    assert family_of(src) == family
    path = save_original_checkpoint(src, tmp_path / f"{family}.safetensors")
    stored = load_safetensors(path)
    prefix = {"visualbert": "bert.bert.", "lxmert": "bert.", "vilbert": "bert.", "vlbert": "module.vlbert."}[family]
    assert any(k.startswith(prefix) for k in stored), sorted(stored)[:5]  # the original's names, not ours
    report = load_original_checkpoint(dst, path)
    assert report.ok and report.source == "original", str(report)
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k


def test_vilbert_alignment_rows_are_swapped_in_the_file(tmp_path):
    src = randomize(four_models()["vilbert"]())
    stored = load_safetensors(save_original_checkpoint(src, tmp_path / "v.safetensors"))
    ours = src.cls.bi_seq_relationship.bias.detach()
    assert torch.equal(stored["cls.bi_seq_relationship.bias"], ours.flip(0))  # original class 1 = random caption
    dst = four_models()["vilbert"]()
    load_original_checkpoint(dst, dict(src.state_dict()), source="ours")  # our own names and polarity: no flip
    assert torch.equal(dst.cls.bi_seq_relationship.bias, ours)


def test_loader_refuses_other_models_and_unknown_sources():
    with pytest.raises(ValueError, match="VisualBERT, LXMERT, ViLBERT and VL-BERT.*Linear"):
        load_original_checkpoint(torch.nn.Linear(2, 2), {})
    with pytest.raises(ValueError, match="source for vilbert must be one of"):
        load_original_checkpoint(four_models()["vilbert"](), {}, source="hf")


def test_bad_checkpoint_file_is_named(tmp_path):
    bad = tmp_path / "lxmert.safetensors"
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match=r"lxmert\.safetensors is empty"):
        load_original_checkpoint(four_models()["lxmert"](), bad)
