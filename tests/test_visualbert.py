"""VisualBERT: parity with transformers' VisualBert* (weights copied through the converter), the
original's conventions where transformers differs (uclanlp/visualbert ``pytorch_pretrained_bert/modeling.py``),
and bad input refused before any compute (each test names the public report it stands for)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from vlp_course.models.convert import load_original_checkpoint  # noqa: E402
from vlp_course.models.visualbert import (  # noqa: E402
    VisualBertConfig,
    VisualBertForNLVR2,
    VisualBertForPreTraining,
    VisualBertForQuestionAnswering,
    VisualBertModel,
    pair_regions,
    vqa_kl_loss,
)

TOL = 1e-5
B, T, V, F, VOCAB = 3, 7, 4, 12, 50
MASK = 4  # the [MASK] id of these small vocabularies (bert-base-uncased's is 103, the config default)


def hf_config(**kw):
    base = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                visual_embedding_dim=F, max_position_embeddings=40, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0, num_labels=6)
    base.update(kw)
    return transformers.VisualBertConfig(**base)


def randomize(module, seed=1):
    """Every parameter random (LayerNorm weights around 1), so no test passes on zeros and ones."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if name.endswith("LayerNorm.weight") else 0.0))
    return module.eval()


def pair(hf_cls, our_cls, **kw):
    cfg = hf_config(**kw)
    hf = randomize(hf_cls(cfg))
    ours = our_cls(VisualBertConfig.from_hf(cfg, mask_token_id=MASK)).eval()
    report = load_original_checkpoint(ours, hf.state_dict())
    assert report.ok, str(report)
    return hf, ours


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(MASK + 1, VOCAB, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 5:] = 0  # padded text
    ids[torch.arange(B), mask.sum(1) - 2] = MASK  # "... ? [MASK] [SEP]": where VQA reads the answer
    feats = torch.randn(B, V, F, generator=g)
    vmask = torch.ones(B, V, dtype=torch.long)
    vmask[2, 3:] = 0  # padded regions
    types = torch.zeros(B, T, dtype=torch.long)
    types[0, 4:] = 1
    return ids, mask, feats, vmask, types


def maxdiff(a, b):
    return (a - b).abs().max().item()


def assert_all_close(hf_seq, our_seq):
    assert len(hf_seq) == len(our_seq)
    worst = max(maxdiff(a, b) for a, b in zip(hf_seq, our_seq))
    assert worst < TOL, worst


# ------------------------------------------------------------------------------------------------
# Parity
# ------------------------------------------------------------------------------------------------
def test_model_parity_with_padding_hidden_states_and_attentions():
    hf, ours = pair(transformers.VisualBertModel, VisualBertModel)
    ids, mask, feats, vmask, types = inputs()
    vtypes = torch.zeros(B, V, dtype=torch.long)  # explicit: HF's default differs (see below)
    with torch.no_grad():
        h = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, visual_embeds=feats,
               visual_attention_mask=vmask, visual_token_type_ids=vtypes, output_hidden_states=True,
               output_attentions=True)
        o = ours(ids, feats, mask, vmask, types, output_hidden_states=True, output_attentions=True)
    assert maxdiff(h.last_hidden_state, o.last_hidden_state) < TOL
    assert maxdiff(h.pooler_output, o.pooler_output) < TOL
    assert_all_close(h.hidden_states, o.hidden_states)  # embeddings + every layer
    assert_all_close(h.attentions, o.attentions)


def test_text_only_parity_and_shapes():
    hf, ours = pair(transformers.VisualBertModel, VisualBertModel)
    ids, mask, *_ = inputs()
    with torch.no_grad():
        h = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        o = ours(ids, attention_mask=mask, output_hidden_states=True)  # no visual input (transformers issue 12827)
    assert o.last_hidden_state.shape == (B, T, 32)
    assert_all_close(h.hidden_states, o.hidden_states)
    assert maxdiff(h.pooler_output, o.pooler_output) < TOL


def test_pretraining_parity_logits_and_loss():
    hf, ours = pair(transformers.VisualBertForPreTraining, VisualBertForPreTraining)
    ids, mask, feats, vmask, types = inputs()
    vtypes = torch.zeros(B, V, dtype=torch.long)
    labels = torch.full((B, T), -100)
    labels[0, 2], labels[1, 1], labels[2, 3] = 5, 7, 9
    is_matched = torch.tensor([1, 0, 1])
    hf_labels = torch.cat([labels, torch.full((B, V), -100)], 1)  # HF wants (B, T+V)
    with torch.no_grad():
        h = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, visual_embeds=feats,
               visual_attention_mask=vmask, visual_token_type_ids=vtypes, labels=hf_labels,
               sentence_image_labels=is_matched, output_attentions=True)
        o = ours(ids, feats, mask, vmask, types, mlm_labels=labels, is_matched=is_matched, output_attentions=True)
    assert maxdiff(h.prediction_logits, o.logits["mlm"]) < TOL
    assert maxdiff(h.seq_relationship_logits, o.logits["itm"]) < TOL
    assert_all_close(h.attentions, o.encoder.attentions)
    assert abs(h.loss.item() - o.loss.item()) < TOL
    assert set(o.losses) == {"mlm", "itm"} and abs((o.losses["mlm"] + o.losses["itm"]).item() - o.loss.item()) < 1e-6
    # HF's labels layout (B, T+V) is accepted too
    o2 = ours(ids, feats, mask, vmask, types, mlm_labels=hf_labels, is_matched=is_matched)
    assert abs(o2.loss.item() - o.loss.item()) < 1e-6


def test_vqa_parity_on_the_mask_token():
    hf, ours = pair(transformers.VisualBertForQuestionAnswering, VisualBertForQuestionAnswering)
    ids, mask, feats, vmask, types = inputs()
    vtypes = torch.zeros(B, V, dtype=torch.long)
    scores = torch.zeros(B, 6)
    scores[0, 1], scores[1, 2], scores[1, 3], scores[2, 0] = 1.0, 0.9, 0.3, 0.6
    with torch.no_grad():
        h = hf(input_ids=ids, attention_mask=mask, visual_embeds=feats, visual_attention_mask=vmask,
               visual_token_type_ids=vtypes)
        hl = hf(input_ids=ids, attention_mask=mask, visual_embeds=feats, visual_attention_mask=vmask,
                visual_token_type_ids=vtypes, labels=scores)
        o = ours(ids, feats, mask, vmask, soft_scores=scores)
    assert maxdiff(h.logits, o.logits["vqa"]) < TOL
    assert abs(hl.loss.item() - o.loss.item()) < TOL
    assert set(o.losses) == {"vqa"} and o.losses["vqa"].item() == o.loss.item()
    assert ours.answer_positions(ids, mask).tolist() == [T - 2, 5 - 2, T - 2]  # the [MASK] before the last [SEP]


# ------------------------------------------------------------------------------------------------
# Where we follow the original, not transformers
# ------------------------------------------------------------------------------------------------
def test_visual_token_type_default_is_original_zero_not_hf_one():
    hf, ours = pair(transformers.VisualBertModel, VisualBertModel)
    ids, mask, feats, vmask, _ = inputs()
    with torch.no_grad():
        o = ours(ids, feats, mask, vmask).last_hidden_state
        hf_zeros = hf(input_ids=ids, attention_mask=mask, visual_embeds=feats, visual_attention_mask=vmask,
                      visual_token_type_ids=torch.zeros(B, V, dtype=torch.long)).last_hidden_state
        hf_default = hf(input_ids=ids, attention_mask=mask, visual_embeds=feats, visual_attention_mask=vmask).last_hidden_state
    assert maxdiff(o, hf_zeros) < TOL
    assert maxdiff(o, hf_default) > 1e-3  # HF's default is type 1
    hf_like = VisualBertModel(VisualBertConfig.from_hf(hf.config, visual_token_type_default=1)).eval()
    load_original_checkpoint(hf_like, hf.state_dict())
    with torch.no_grad():
        assert maxdiff(hf_like(ids, feats, mask, vmask).last_hidden_state, hf_default) < TOL


def test_regions_share_visual_position_zero_and_one_layernorm():
    cfg = VisualBertConfig(vocab_size=VOCAB, hidden_size=16, num_attention_heads=2, num_hidden_layers=0,
                           intermediate_size=32, visual_embedding_dim=F, hidden_dropout_prob=0.0)
    emb = VisualBertModel(cfg).eval().embeddings
    ids, _, feats, _, _ = inputs()
    x = emb(ids, visual_feats=feats)
    raw_v = emb.visual_projection(feats) + emb.visual_position_embeddings.weight[0] + emb.visual_token_type_embeddings.weight[0]
    assert maxdiff(x[:, T:], emb.LayerNorm(raw_v)) < 1e-6
    # swapping two regions swaps their embeddings: no position information among regions
    y = emb(ids, visual_feats=feats[:, [1, 0, 2, 3]])
    assert maxdiff(y[:, T], x[:, T + 1]) < 1e-6


# ------------------------------------------------------------------------------------------------
# Defaults, and failures met in public implementations
# ------------------------------------------------------------------------------------------------
def small(**kw):
    base = dict(vocab_size=VOCAB, hidden_size=16, num_attention_heads=2, num_hidden_layers=2, intermediate_size=32,
                visual_embedding_dim=F, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_answers=5,
                mask_token_id=MASK)
    base.update(kw)
    return VisualBertConfig(**base)


def test_missing_token_types_and_masks_default_to_zeros_and_ones():  # transformers issue 13001
    torch.manual_seed(0)
    m = VisualBertModel(small()).eval()
    ids, _, feats, _, _ = inputs()
    a = m(ids, feats).last_hidden_state
    b = m(ids, feats, torch.ones(B, T), torch.ones(B, V), torch.zeros(B, T, dtype=torch.long),
          torch.zeros(B, V, dtype=torch.long)).last_hidden_state
    assert maxdiff(a, b) < 1e-6


def test_output_attentions_one_square_tensor_per_layer():  # mmf issue 1036
    m = VisualBertModel(small(num_hidden_layers=3)).eval()
    ids, mask, feats, vmask, _ = inputs()
    att = m(ids, feats, mask, vmask, output_attentions=True).attentions
    assert isinstance(att, tuple) and len(att) == 3
    assert all(a.shape == (B, 2, T + V, T + V) for a in att)
    assert torch.allclose(att[0].sum(-1), torch.ones(B, 2, T + V), atol=1e-5)
    assert att[0][2, :, :, T + 3].abs().max() == 0  # the padded region gets no weight


def test_feature_width_mismatch_names_both_widths():  # transformers issue 18228
    m = VisualBertModel(small(visual_embedding_dim=2048))
    ids = torch.randint(0, VOCAB, (1, 5))
    with pytest.raises(ValueError, match=r"768.*2048"):
        m(ids, torch.randn(1, 197, 768))


def test_batch_mismatch_and_bad_shapes_raise():
    m = VisualBertForPreTraining(small())
    ids, mask, feats, vmask, _ = inputs()
    with pytest.raises(ValueError, match="batch sizes differ"):
        m(ids, feats[:2])
    with pytest.raises(ValueError, match="visual_attention_mask"):
        m(ids, feats, mask, vmask[:, :2])
    with pytest.raises(ValueError, match="input_ids must lie in"):
        m(ids + VOCAB, feats)
    with pytest.raises(ValueError, match="mlm_labels"):
        m(ids, feats, mlm_labels=torch.zeros(B, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="without visual_feats"):
        m(ids, visual_attention_mask=vmask)


def test_mlm_on_mismatched_option_default_follows_original():  # the question of lxmert issue 51
    assert VisualBertConfig().mlm_on_mismatched is True  # the original masks both captions of every pair
    torch.manual_seed(0)
    m = VisualBertForPreTraining(small()).eval()
    ids, mask, feats, vmask, _ = inputs()
    labels = torch.full((B, T), -100)
    labels[1, 2] = 4  # only the mismatched row has a masked token
    is_matched = torch.tensor([1, 0, 1])
    out = m(ids, feats, mlm_labels=labels, is_matched=is_matched)
    expect = torch.nn.functional.cross_entropy(out.logits["mlm"][1, 2][None], torch.tensor([4]))
    assert abs(out.losses["mlm"].item() - expect.item()) < 1e-6 and expect.item() > 0
    m.config.mlm_on_mismatched = False
    dropped = m(ids, feats, mlm_labels=labels, is_matched=is_matched).losses["mlm"]
    assert dropped.item() == 0.0


def test_matching_head_class_one_means_matched():  # transformers issue 7266
    torch.manual_seed(0)
    m = VisualBertForPreTraining(small()).eval()
    ids, _, feats, _, _ = inputs()
    out = m(ids, feats, is_matched=torch.tensor([1, 1, 1]))
    expect = -out.logits["itm"].log_softmax(-1)[:, 1].mean()
    assert abs(out.losses["itm"].item() - expect.item()) < 1e-6


def test_vqa_loss_is_kl_on_unnormalised_soft_scores_and_works_without_mask():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    scores = torch.tensor([[1.0, 0.3, 0.0]])
    logp = logits.log_softmax(-1)
    expect = (1.0 * (0.0 - logp[0, 0]) + 0.3 * (torch.log(torch.tensor(0.3)) - logp[0, 1])).item()
    assert abs(vqa_kl_loss(logits, scores).item() - expect) < 1e-6
    m = VisualBertForQuestionAnswering(small()).eval()
    ids, _, feats, _, _ = inputs()
    ids[:, T - 2] = MASK  # without attention_mask every token is real: the [MASK] is at T - 2
    out = m(ids, feats)  # HF raises without attention_mask
    assert out.logits["vqa"].shape == (B, 5) and m.answer_positions(ids).tolist() == [T - 2] * B
    assert out.loss is None and out.losses == {}


def test_masked_mlm_scores_give_the_same_loss_and_gradients_with_less_work():
    """mlm_scores="masked" scores only the labelled positions (original BERT's gather): same loss, same
    gradients, and logits equal to the full ones at those positions; bad values are refused."""
    _, ours = pair(transformers.VisualBertForPreTraining, VisualBertForPreTraining)
    ids, mask, feats, vmask, types = inputs()
    labels = torch.full((B, T), -100)
    labels[0, 2], labels[1, 1], labels[2, 3], labels[2, 5] = 5, 7, 9, 11
    is_matched = torch.tensor([1, 1, 1])
    runs = {}
    for mode in ("all", "masked"):
        ours.zero_grad()
        o = ours(ids, feats, mask, vmask, types, mlm_labels=labels, is_matched=is_matched, mlm_scores=mode)
        o.loss.backward()
        runs[mode] = (o, {n: p.grad.clone() for n, p in ours.named_parameters() if p.grad is not None})
    (full, g_full), (masked, g_masked) = runs["all"], runs["masked"]
    assert masked.logits["mlm"].shape == (4, VOCAB)
    keep = torch.cat([labels, torch.full((B, V), -100)], 1) != -100
    assert maxdiff(full.logits["mlm"][keep], masked.logits["mlm"]) < 1e-6
    assert abs(full.losses["mlm"].item() - masked.losses["mlm"].item()) < 1e-6
    assert g_full.keys() == g_masked.keys()
    assert max(maxdiff(g_full[n], g_masked[n]) for n in g_full) < 1e-6
    with pytest.raises(ValueError, match="mlm_scores must be 'all' or 'masked'"):
        ours(ids, feats, mask, vmask, types, mlm_labels=labels, mlm_scores="labelled")
    with pytest.raises(ValueError, match="needs mlm_labels"):
        ours(ids, feats, mask, vmask, types, mlm_scores="masked")


def test_region_positions_are_never_mlm_targets():
    _, ours = pair(transformers.VisualBertForPreTraining, VisualBertForPreTraining)
    ids, mask, feats, vmask, types = inputs()
    labels = torch.full((B, T + V), -100)
    labels[0, T + 1] = 3  # a target on a region row
    for mode in ("all", "masked"):
        with pytest.raises(ValueError, match="must be -100 over the regions"):
            ours(ids, feats, mask, vmask, types, mlm_labels=labels, mlm_scores=mode)


# ------------------------------------------------------------------------------------------------
# Bad input is refused before any compute, at the model's one boundary (check_inputs)
# ------------------------------------------------------------------------------------------------
def _no_compute(model):
    """Make the encoder raise if reached, so a test proves the check came before any matrix product."""
    def boom(*a, **k):
        raise AssertionError("the encoder ran before the input was refused")
    model.visual_bert.encoder.forward = boom
    return model


@pytest.mark.parametrize("cls", [VisualBertForPreTraining, VisualBertForQuestionAnswering])
def test_bad_inputs_raise_before_the_encoder_runs(cls):
    m = _no_compute(cls(small()))
    ids, mask, feats, vmask, _ = inputs()
    with pytest.raises(ValueError, match="input_ids must be integer token ids"):
        m(ids.float(), feats, mask, vmask)
    with pytest.raises(ValueError, match=r"visual_feats has dtype torch.float64 but the model's weights are torch.float32"):
        m(ids, feats.double(), mask, vmask)
    with pytest.raises(ValueError, match="visual_feats must be a floating-point tensor"):
        m(ids, feats.long(), mask, vmask)
    bad = feats.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"visual_feats must be finite; visual_feats\[1, 2, 3\] = nan"):
        m(ids, bad, mask, vmask)
    bad[1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match="must be finite"):
        m(ids, bad, mask, vmask)


@pytest.mark.parametrize("cls", [VisualBertModel, VisualBertForPreTraining, VisualBertForQuestionAnswering])
def test_empty_text_is_refused_instead_of_pooling_a_region(cls):
    """With T = 0 (or a row whose first token is padding), position 0 of the joint sequence would be a
    region (or padding), and the pooler would read it as [CLS]; the models refuse such text."""
    m = cls(small())
    if cls is not VisualBertModel:
        m = _no_compute(m)
    _, _, feats, vmask, _ = inputs()
    with pytest.raises(ValueError, match="input_ids has no tokens"):
        m(torch.zeros(B, 0, dtype=torch.long), feats, visual_attention_mask=vmask)
    ids, mask, *_ = inputs()
    mask[2] = 0  # row 2: text entirely padding
    with pytest.raises(ValueError, match="attention_mask row 2 hides its first token"):
        m(ids, feats, mask, vmask)


def test_pretraining_labels_are_checked_before_the_encoder_runs():
    m = _no_compute(VisualBertForPreTraining(small()))
    ids, mask, feats, vmask, _ = inputs()
    with pytest.raises(ValueError, match=r"is_matched must have shape \(3,\)"):
        m(ids, feats, mask, vmask, is_matched=torch.ones(2, dtype=torch.long))
    with pytest.raises(ValueError, match="is_matched must be integer labels"):
        m(ids, feats, mask, vmask, is_matched=torch.ones(B))
    with pytest.raises(ValueError, match=r"is_matched must hold 1 \(matched\), 0"):
        m(ids, feats, mask, vmask, is_matched=torch.tensor([1, 2, 0]))
    with pytest.raises(ValueError, match="mlm_labels must be integer labels"):
        m(ids, feats, mask, vmask, mlm_labels=torch.zeros(B, T))
    with pytest.raises(ValueError, match=r"mlm_labels must lie in \[0, 50\)"):
        m(ids, feats, mask, vmask, mlm_labels=torch.full((B, T), VOCAB))


def test_vqa_reads_only_a_mask_token_at_sum_minus_two():
    """The original reads the answer at ``input_mask.sum - 2`` without looking at the token there; a
    question without ``? [MASK]`` or a mask with a hole would be answered from the wrong token."""
    m = _no_compute(VisualBertForQuestionAnswering(small()))
    ids, mask, feats, vmask, _ = inputs()
    assert m.answer_positions(ids, mask).tolist() == [5, 3, 5]
    no_mask = ids.clone()
    no_mask[1, 3] = 7  # row 1: "[CLS] … ? 7 [SEP]"
    with pytest.raises(ValueError, match=r"row 1: the token at the answer position attention_mask.sum - 2 = 3 is id 7, "
                                         r"not \[MASK\] \(mask_token_id = 4\)"):
        m(no_mask, feats, mask, vmask)
    holed = mask.clone()
    holed[0, 2] = 0  # row 0: 1 1 0 1 1 1 1 -> sum - 2 = 4, a word, not the [MASK] at 5
    with pytest.raises(ValueError, match=r"attention_mask row 0 is \[1, 1, 0, 1, 1, 1, 1\]: it must be 1s followed by 0s"):
        m(ids, feats, holed, vmask)
    with pytest.raises(ValueError, match="1 \\(real token\\) and 0 \\(padding\\) only"):
        m(ids, feats, mask * 2, vmask)
    with pytest.raises(ValueError, match=r"soft_scores must have shape \(B, A\) = \(3, 5\)"):
        m(ids, feats, mask, vmask, soft_scores=torch.zeros(B, 4))
    with pytest.raises(ValueError, match="soft scores must lie in"):
        m(ids, feats, mask, vmask, soft_scores=torch.full((B, 5), 1.5))


def test_mask_token_id_defaults_to_bert_base_uncased_and_must_be_in_the_vocabulary():
    assert VisualBertConfig().mask_token_id == 103  # bert-base-uncased's [MASK]
    with pytest.raises(ValueError, match="mask_token_id = 103 is not in the vocabulary"):
        VisualBertForQuestionAnswering(small(mask_token_id=103))
    with pytest.raises(ValueError, match="mask_token_id must be >= 0"):
        small(mask_token_id=-1)


# ------------------------------------------------------------------------------------------------
# NLVR2 in one pass (uclanlp nlvr_dataset.py: both images' regions, visual token types 0 and 1)
# ------------------------------------------------------------------------------------------------
def nlvr2_inputs(P=3, N=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(MASK + 1, VOCAB, (P, T), generator=g)
    feats = torch.randn(P, 2, N, F, generator=g)
    rmask = torch.ones(P, 2, N, dtype=torch.long)
    rmask[1, 0, 2:] = 0  # pair 1's left image has 2 boxes, its right image 3
    return ids, feats, rmask


def test_nlvr2_parity_with_transformers_visual_reasoning():
    hf, ours = pair(transformers.VisualBertForVisualReasoning, VisualBertForNLVR2, num_labels=2)
    ids, feats, rmask = nlvr2_inputs()
    vf, vmask, vtypes = pair_regions(feats, rmask)
    labels = torch.tensor([1, 0, 1])
    with torch.no_grad():
        h = hf(input_ids=ids, visual_embeds=vf, visual_attention_mask=vmask, visual_token_type_ids=vtypes, labels=labels)
        o = ours(ids, vf, visual_attention_mask=vmask, visual_token_type_ids=vtypes, labels=labels)
    assert o.logits["nlvr2"].shape == (3, 2)
    assert maxdiff(h.logits, o.logits["nlvr2"]) < TOL
    assert abs(h.loss.item() - o.losses["nlvr2"].item()) < TOL


def test_pair_regions_types_follow_the_image_not_the_position():
    ids, feats, rmask = nlvr2_inputs()
    vf, vmask, vtypes = pair_regions(feats, rmask)
    assert vf.shape == (3, 6, F) and vtypes.tolist()[1] == [0, 0, 0, 1, 1, 1]
    assert vmask.tolist()[1] == [1, 1, 0, 1, 1, 1]  # the left image's padding stays in its own slots
    assert torch.equal(vf[1, 3], feats[1, 1, 0])  # the right image's first region, typed 1
    with pytest.raises(ValueError, match=r"\(P, 2, N, F\)"):
        pair_regions(feats.flatten(1, 2), rmask)
    with pytest.raises(ValueError, match="no real region"):
        pair_regions(feats, torch.cat([rmask[:, :1], torch.zeros_like(rmask[:, 1:])], 1))


def test_nlvr2_prediction_depends_only_on_its_own_pair():
    torch.manual_seed(0)
    m = randomize(VisualBertForNLVR2(small()))
    ids, feats, rmask = nlvr2_inputs()

    def run(i, f, r):
        vf, vm, vt = pair_regions(f, r)
        return m(i, vf, visual_attention_mask=vm, visual_token_type_ids=vt).logits["nlvr2"]

    with torch.no_grad():
        base = run(ids, feats, rmask)
        perm = torch.tensor([2, 0, 1])
        assert maxdiff(run(ids[perm], feats[perm], rmask[perm]), base[perm]) < 1e-5
        changed = feats.clone()
        changed[2, 1] += 1.0  # pair 2's right image
        after = run(ids, changed, rmask)
        assert maxdiff(after[:2], base[:2]) < 1e-6 and maxdiff(after[2], base[2]) > 1e-4
        swapped = run(ids, feats.flip(1), rmask.flip(1))  # left and right exchanged: the types tell them apart
        assert maxdiff(swapped, base) > 1e-4


def test_nlvr2_refuses_missing_types_one_image_rows_and_bad_labels():
    m = VisualBertForNLVR2(small()).eval()
    ids, feats, rmask = nlvr2_inputs()
    vf, vmask, vtypes = pair_regions(feats, rmask)
    with pytest.raises(ValueError, match="visual_token_type_ids"):
        m(ids, vf, visual_attention_mask=vmask)
    with pytest.raises(ValueError, match="both images"):
        m(ids, vf, visual_attention_mask=vmask, visual_token_type_ids=torch.zeros_like(vtypes))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        m(ids, vf, visual_attention_mask=vmask, visual_token_type_ids=vtypes, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="0 \\(false\\) or 1"):
        m(ids, vf, visual_attention_mask=vmask, visual_token_type_ids=vtypes, labels=torch.tensor([0, 1, 2]))
