"""The shared BERT prediction heads and config checks of vlp_course.models.blocks: key names, the tie
to the word embeddings, values computed by hand, and the errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vlp_course.models.blocks import (
    LMPredictionHead,
    PredictionHeadTransform,
    TransformerConfig,
    check_config,
    check_region_features,
)


def test_transform_keys_and_value():
    torch.manual_seed(0)
    t = PredictionHeadTransform(6, "gelu", 1e-12)
    assert set(t.state_dict()) == {"dense.weight", "dense.bias", "LayerNorm.weight", "LayerNorm.bias"}
    x = torch.randn(2, 3, 6)
    h = F.gelu(x @ t.dense.weight.T + t.dense.bias)
    want = (h - h.mean(-1, keepdim=True)) / torch.sqrt(h.var(-1, unbiased=False, keepdim=True) + 1e-12)
    assert torch.allclose(t(x), want, atol=1e-5)


def test_transform_without_layer_norm_has_no_layer_norm_keys():
    t = PredictionHeadTransform(6, "relu", layer_norm=False)
    assert set(t.state_dict()) == {"dense.weight", "dense.bias"}
    x = torch.randn(4, 6)
    assert torch.equal(t(x), F.relu(t.dense(x)))


def test_lm_head_is_tied_to_the_word_embeddings_and_sized_by_them():
    torch.manual_seed(0)
    emb = nn.Embedding(11, 6)
    head = LMPredictionHead(emb, "gelu", 1e-12)
    assert head.decoder.weight is emb.weight
    assert set(head.state_dict()) == {"transform.dense.weight", "transform.dense.bias", "transform.LayerNorm.weight",
                                      "transform.LayerNorm.bias", "decoder.weight", "bias"}
    with torch.no_grad():
        head.bias.copy_(torch.arange(11.0))
    x = torch.randn(2, 3, 6)
    scores = head(x)
    assert scores.shape == (2, 3, 11)
    assert torch.allclose(scores, head.transform(x) @ emb.weight.T + torch.arange(11.0), atol=1e-5)
    scores.sum().backward()
    assert emb.weight.grad is not None and emb.weight.grad.abs().sum() > 0  # the tie carries the gradient


def test_check_config_names_the_field():
    cfg = TransformerConfig(hidden_size=8, num_attention_heads=2, intermediate_size=16)
    check_config(cfg, positive=("hidden_size",), divisible=(("hidden_size", "num_attention_heads"),))
    cfg.hidden_size = 7
    with pytest.raises(ValueError, match=r"hidden_size \(7\) must be divisible by num_attention_heads \(2\)"):
        check_config(cfg, divisible=(("hidden_size", "num_attention_heads"),))
    cfg.hidden_dropout_prob = 1.0
    with pytest.raises(ValueError, match=r"hidden_dropout_prob must lie in \[0, 1\)"):
        check_config(cfg, probabilities=("hidden_dropout_prob",))
    cfg.num_hidden_layers = -1
    with pytest.raises(ValueError, match="num_hidden_layers must be >= 0"):
        check_config(cfg, non_negative=("num_hidden_layers",))
    cfg.hidden_act = "swish"
    with pytest.raises(ValueError, match="hidden_act must be one of"):
        check_config(cfg, activations=("hidden_act",))
    with pytest.raises(ValueError, match="intermediate_size must be a positive integer"):
        TransformerConfig(intermediate_size=0)


def test_check_region_features_names_widths_and_batches():
    with pytest.raises(ValueError, match=r"width 5 but the model is configured for v_feature_size = 4"):
        check_region_features(torch.zeros(2, 3, 5), 4, 2, field_name="v_feature_size")
    with pytest.raises(ValueError, match=r"batch mismatch: input_ids has 3 rows but features has 2"):
        check_region_features(torch.zeros(2, 3, 4), 4, 3, field_name="v_feature_size", what="features")
    with pytest.raises(ValueError, match=r"\(B, N, F\)"):
        check_region_features(torch.zeros(3, 4), 4, 3, field_name="v_feature_size")


def test_lm_head_at_labels_equals_the_full_scores_at_those_positions():
    torch.manual_seed(0)
    head = LMPredictionHead(nn.Embedding(11, 6), "gelu", 1e-12)
    x = torch.randn(2, 4, 6)
    labels = torch.tensor([[-100, 3, -100, 7], [5, -100, -100, -100]])
    scores, targets = head.at_labels(x, labels)
    full = head(x)
    assert scores.shape == (3, 11) and targets.tolist() == [3, 7, 5]
    assert torch.allclose(scores, torch.stack([full[0, 1], full[0, 3], full[1, 0]]), atol=1e-6)
    none, empty = head.at_labels(x, torch.full((2, 4), -100))
    assert none.shape == (0, 11) and empty.shape == (0,)
    with pytest.raises(ValueError, match=r"labels must have shape \(B, L\) = \(2, 4\)"):
        head.at_labels(x, labels[:, :3])


def test_lm_head_at_labels_refuses_flat_states_and_non_integer_labels():
    head = LMPredictionHead(nn.Embedding(11, 6), "gelu", 1e-12)
    with pytest.raises(ValueError, match=r"hidden states must have shape \(B, L, D\)"):
        head.at_labels(torch.randn(4, 6), torch.zeros(4, dtype=torch.long))
    for bad in (torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.bool)):
        with pytest.raises(ValueError, match="labels must be integer token ids"):
            head.at_labels(torch.randn(2, 4, 6), bad)
