"""LXMERT: parity with transformers' Lxmert* (weights copied through the converter), the original's
conventions where transformers differs (boxes, VQA loss), the pretraining tasks, and bad input."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from vlp_course.models.convert import load_original_checkpoint  # noqa: E402
from vlp_course.models.lxmert import (  # noqa: E402
    LxmertConfig,
    LxmertForNLVR2,
    LxmertForPreTraining,
    LxmertForQuestionAnswering,
    LxmertModel,
)
from vlp_course.models.blocks import repeat_for_pairs  # noqa: E402
from vlp_course.pretraining.losses import vqa_bce_loss  # noqa: E402

TOL = 1e-5
B, T, N, F, VOCAB = 3, 7, 5, 12, 50


def hf_config(**kw):
    base = dict(vocab_size=VOCAB, hidden_size=32, num_attention_heads=4, intermediate_size=64, l_layers=2,
                r_layers=2, x_layers=2, visual_feat_dim=F, num_qa_labels=7, num_object_labels=9, num_attr_labels=5,
                max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    base.update(kw)
    return transformers.LxmertConfig(**base)


def randomize(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            ln = name.endswith(("LayerNorm.weight", "layer_norm.weight")) or (name.startswith("answer_head.logit_fc.2") and name.endswith("weight"))
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if ln else 0.0))
    return module.eval()


def pair(hf_cls, our_cls, **ours_overrides):
    cfg = hf_config()
    hf = randomize(hf_cls(cfg))
    ours = our_cls(LxmertConfig.from_hf(cfg, **ours_overrides)).eval()
    report = load_original_checkpoint(ours, hf.state_dict())
    assert report.ok, str(report)
    return hf, ours


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 4:] = 0
    feats = torch.randn(B, N, F, generator=g)
    xy = torch.rand(B, N, 2, generator=g) * 0.5
    boxes = torch.cat([xy, xy + torch.rand(B, N, 2, generator=g) * 0.5], -1)  # normalised xyxy
    vmask = torch.ones(B, N, dtype=torch.long)
    vmask[2, 3:] = 0
    return ids, mask, feats, boxes, vmask


def maxdiff(a, b):
    return (a - b).abs().max().item()


def assert_all_close(hf_seq, our_seq):
    assert len(hf_seq) == len(our_seq)
    worst = max(maxdiff(a, b) for a, b in zip(hf_seq, our_seq))
    assert worst < TOL, worst


# ------------------------------------------------------------------------------------------------
# Parity
# ------------------------------------------------------------------------------------------------
def test_model_parity_every_state_and_attention_with_padding():
    hf, ours = pair(transformers.LxmertModel, LxmertModel)
    ids, mask, feats, boxes, vmask = inputs()
    types = torch.zeros(B, T, dtype=torch.long)
    types[0, 5:] = 1
    with torch.no_grad():
        h = hf(input_ids=ids, visual_feats=feats, visual_pos=boxes, attention_mask=mask, visual_attention_mask=vmask,
               token_type_ids=types, output_hidden_states=True, output_attentions=True)
        o = ours(ids, feats, boxes, mask, vmask, types, output_hidden_states=True, output_attentions=True)
    assert maxdiff(h.language_output, o.language_output) < TOL
    assert maxdiff(h.vision_output, o.vision_output) < TOL
    assert maxdiff(h.pooled_output, o.pooled_output) < TOL
    # ours also return the embeddings first; HF starts with the first layer
    assert_all_close(h.language_hidden_states, o.language_hidden_states[1:])
    assert_all_close(h.vision_hidden_states, o.vision_hidden_states[1:])
    assert_all_close(h.language_attentions, o.language_attentions)
    assert_all_close(h.vision_attentions, o.vision_attentions)
    assert_all_close(h.cross_encoder_attentions, o.cross_attentions)
    assert all(a.shape == (B, 4, N, T) for a in o.cross_attentions_vision)


def test_model_parity_without_masks_and_token_types():
    hf, ours = pair(transformers.LxmertModel, LxmertModel)
    ids, _, feats, boxes, _ = inputs(1)
    with torch.no_grad():
        h = hf(input_ids=ids, visual_feats=feats, visual_pos=boxes)
        o = ours(ids, feats, boxes)
    assert maxdiff(h.pooled_output, o.pooled_output) < TOL
    assert maxdiff(h.vision_output, o.vision_output) < TOL


def test_pretraining_parity_all_heads_and_total_loss():
    hf, ours = pair(transformers.LxmertForPreTraining, LxmertForPreTraining, visual_loss_normalizer=6.67)
    ids, mask, feats, boxes, vmask = inputs()
    g = torch.Generator().manual_seed(3)
    mlm = torch.full((B, T), -100)
    mlm[0, 1], mlm[1, 2], mlm[2, 5] = 4, 8, 15
    is_matched = torch.tensor([1, 0, 1])
    obj = torch.randint(0, 9, (B, N), generator=g)
    attr = torch.randint(0, 5, (B, N), generator=g)
    obj_conf, attr_conf = torch.rand(B, N, generator=g), torch.rand(B, N, generator=g)
    target = torch.randn(B, N, F, generator=g)
    fmask = (torch.rand(B, N, generator=g) < 0.4).float()
    qa = torch.tensor([2, 5, 6])
    hf_qa = torch.tensor([2, -100, 6])  # the original ignores QA on mismatched pairs (done in its data loader)
    with torch.no_grad():
        h = hf(input_ids=ids, visual_feats=feats, visual_pos=boxes, attention_mask=mask, visual_attention_mask=vmask,
               labels=mlm, matched_label=is_matched, ans=hf_qa,
               obj_labels={"obj": (obj, obj_conf), "attr": (attr, attr_conf), "feat": (target, fmask)},
               output_attentions=True)
        o = ours(ids, feats, boxes, mask, vmask, mlm_labels=mlm, is_matched=is_matched, obj_labels=obj,
                 obj_confidence=obj_conf, attr_labels=attr, attr_confidence=attr_conf, feat_targets=target,
                 masked_regions=fmask.bool(), qa_labels=qa, output_attentions=True)
    assert maxdiff(h.prediction_logits, o.logits["mlm"]) < TOL
    assert maxdiff(h.cross_relationship_score, o.logits["itm"]) < TOL
    assert maxdiff(h.question_answering_score, o.logits["qa"]) < TOL
    assert_all_close(h.cross_encoder_attentions, o.encoder.cross_attentions)
    assert set(o.losses) == {"mlm", "itm", "obj", "attr", "feat", "qa"}
    assert abs(h.loss.item() - o.loss.item()) < 1e-4 * max(1.0, abs(h.loss.item()))
    # the visual heads: compare with HF's module on the same vision output
    with torch.no_grad():
        hv = hf.obj_predict_head(o.encoder.vision_output)
    for k in ("obj", "attr", "feat"):
        assert maxdiff(hv[k], o.logits[k]) < TOL


def test_vqa_parity_logits():
    hf, ours = pair(transformers.LxmertForQuestionAnswering, LxmertForQuestionAnswering)
    ids, mask, feats, boxes, vmask = inputs()
    with torch.no_grad():
        h = hf(input_ids=ids, visual_feats=feats, visual_pos=boxes, attention_mask=mask, visual_attention_mask=vmask)
        o = ours(ids, feats, boxes, mask, vmask)
    assert maxdiff(h.question_answering_score, o.logits["vqa"]) < TOL


def test_vqa_loss_is_original_bce_not_hf_cross_entropy():
    hf, ours = pair(transformers.LxmertForQuestionAnswering, LxmertForQuestionAnswering)
    ids, mask, feats, boxes, vmask = inputs()
    scores = torch.zeros(B, 7)
    scores[0, 1], scores[0, 2], scores[1, 3], scores[2, 6] = 1.0, 0.3, 0.9, 0.6
    with torch.no_grad():
        o = ours(ids, feats, boxes, mask, vmask, soft_scores=scores)
        h = hf(input_ids=ids, visual_feats=feats, visual_pos=boxes, attention_mask=mask, visual_attention_mask=vmask,
               labels=scores.argmax(1))
    assert abs(o.loss.item() - vqa_bce_loss(o.logits["vqa"], scores).item()) < 1e-6  # BCE(mean) x A, airsplay vqa.py
    assert abs(o.loss.item() - h.loss.item()) > 1e-3  # HF: cross-entropy on one index


# ------------------------------------------------------------------------------------------------
# Structure and tasks
# ------------------------------------------------------------------------------------------------
def small(**kw):
    base = dict(vocab_size=VOCAB, hidden_size=16, num_attention_heads=2, intermediate_size=32, l_layers=1, r_layers=1,
                x_layers=2, visual_feat_dim=F, num_qa_labels=4, num_object_labels=6, num_attr_labels=3,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    base.update(kw)
    return LxmertConfig(**base)


def test_one_cross_attention_module_serves_both_directions():
    m = LxmertModel(small(x_layers=1)).eval()
    ids, mask, feats, boxes, vmask = inputs()
    names = [n for n, _ in m.named_parameters() if "x_layers.0." in n and "attention" in n and ".att." in n]
    assert sorted(n.split(".att.")[1] for n in names) == sorted(["query.weight", "query.bias", "key.weight", "key.bias", "value.weight", "value.bias"])
    base = m(ids, feats, boxes, mask, vmask)
    with torch.no_grad():
        m.encoder.x_layers[0].visual_attention.att.value.weight.add_(torch.randn(16, 16))
    moved = m(ids, feats, boxes, mask, vmask)
    assert maxdiff(base.language_output, moved.language_output) > 1e-4
    assert maxdiff(base.vision_output, moved.vision_output) > 1e-4  # the same weights act on vision queries


def test_object_encoder_averages_feature_and_box_branches():
    m = LxmertModel(small()).eval()
    _, _, feats, boxes, _ = inputs()
    enc = m.encoder.visn_fc
    x = enc.visn_layer_norm(enc.visn_fc(feats))
    y = enc.box_layer_norm(enc.box_fc(boxes))
    assert maxdiff(enc(feats, boxes), (x + y) / 2) < 1e-6


def test_text_stream_sees_no_vision_before_cross_layers():
    m = LxmertModel(small()).eval()
    ids, mask, feats, boxes, vmask = inputs()
    a = m(ids, feats, boxes, mask, vmask, output_hidden_states=True)
    b = m(ids, torch.randn_like(feats), boxes, mask, vmask, output_hidden_states=True)
    L = m.config.l_layers
    assert maxdiff(a.language_hidden_states[L], b.language_hidden_states[L]) == 0
    assert maxdiff(a.language_output, b.language_output) > 1e-4


def test_mlm_on_mismatched_default_counts_and_option_drops():  # airsplay/lxmert#51
    assert LxmertConfig().mlm_on_mismatched is True  # airsplay/lxmert#51
    torch.manual_seed(0)
    m = LxmertForPreTraining(small()).eval()
    ids, mask, feats, boxes, vmask = inputs()
    mlm = torch.full((B, T), -100)
    mlm[1, 2] = 9
    is_matched = torch.tensor([1, 0, 1])
    assert m(ids, feats, boxes, mlm_labels=mlm, is_matched=is_matched).losses["mlm"].item() > 0
    m.config.mlm_on_mismatched = False
    assert m(ids, feats, boxes, mlm_labels=mlm, is_matched=is_matched).losses["mlm"].item() == 0.0


def test_label_weighting_confidence_counts_unmasked_boxes_mask_does_not():
    torch.manual_seed(0)
    m = LxmertForPreTraining(small()).eval()
    ids, mask, feats, boxes, vmask = inputs()
    obj = torch.randint(0, 6, (B, N))
    conf = torch.ones(B, N)
    none_masked = torch.zeros(B, N, dtype=torch.bool)
    out = m(ids, feats, boxes, obj_labels=obj, obj_confidence=conf, masked_regions=none_masked)
    assert out.losses["obj"].item() > 0  # original: every box, weighted by confidence
    m.config.label_weighting = "mask"
    out = m(ids, feats, boxes, obj_labels=obj, obj_confidence=conf, masked_regions=none_masked)
    assert out.losses["obj"].item() == 0.0


def test_qa_ignored_on_mismatched_pairs():
    torch.manual_seed(0)
    m = LxmertForPreTraining(small()).eval()
    ids, mask, feats, boxes, vmask = inputs()
    out = m(ids, feats, boxes, qa_labels=torch.tensor([1, 2, 3]), is_matched=torch.tensor([0, 0, 0]))
    assert out.losses["qa"].item() == 0.0


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------
def test_feature_width_mismatch_names_both_widths():  # transformers#18228
    m = LxmertModel(small(visual_feat_dim=2048))
    ids = torch.randint(1, VOCAB, (1, 5))
    boxes = torch.tensor([[[0.1, 0.1, 0.5, 0.5]]]).expand(1, 197, 4)
    with pytest.raises(ValueError, match=r"768.*2048"):
        m(ids, torch.randn(1, 197, 768), boxes)


def test_boxes_are_xyxy_not_hf_docs_xywh():
    m = LxmertModel(small())
    ids, _, feats, _, _ = inputs()
    xywh = torch.tensor([0.6, 0.5, 0.2, 0.3]).expand(B, N, 4)  # (x, y, w, h): x2 < x1 when read as xyxy
    with pytest.raises(ValueError, match="x2 >= x1"):
        m(ids, feats, xywh)


def test_boxes_out_of_range_and_shape_raise():
    m = LxmertModel(small())
    ids, _, feats, boxes, _ = inputs()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m(ids, feats, boxes * 64)  # pixel boxes
    with pytest.raises(ValueError, match="boxes must have shape"):
        m(ids, feats, boxes[..., :2])
    with pytest.raises(ValueError, match="needs both"):
        m(ids, feats, None)


def test_batch_size_mismatch_raises():
    m = LxmertModel(small())
    ids, mask, feats, boxes, vmask = inputs()
    with pytest.raises(ValueError, match="batch sizes differ"):
        m(ids, feats[:2], boxes[:2])
    with pytest.raises(ValueError, match="boxes must have shape"):
        m(ids, feats, boxes[:2])
    with pytest.raises(ValueError, match="visual_attention_mask"):
        m(ids, feats, boxes, mask, vmask[:2])


def test_masked_mlm_scores_give_the_same_loss_and_gradients():
    """mlm_scores="masked" runs the vocabulary projection on the labelled tokens only (original BERT's
    gather); the MLM loss, the total and every gradient are those of the full scores."""
    _, ours = pair(transformers.LxmertForPreTraining, LxmertForPreTraining)
    ids, mask, feats, boxes, vmask = inputs()
    mlm = torch.full((B, T), -100)
    mlm[0, 1], mlm[1, 2], mlm[2, 5] = 4, 8, 15
    is_matched = torch.tensor([1, 0, 1])
    runs = {}
    for mode in ("all", "masked"):
        ours.zero_grad()
        o = ours(ids, feats, boxes, mask, vmask, mlm_labels=mlm, is_matched=is_matched, mlm_scores=mode)
        o.loss.backward()
        runs[mode] = (o, {n: p.grad.clone() for n, p in ours.named_parameters() if p.grad is not None})
    (full, g_full), (masked, g_masked) = runs["all"], runs["masked"]
    assert masked.logits["mlm"].shape == (3, VOCAB)
    assert maxdiff(full.logits["mlm"][mlm != -100], masked.logits["mlm"]) < 1e-6
    assert abs(full.losses["mlm"].item() - masked.losses["mlm"].item()) < 1e-6
    assert g_full.keys() == g_masked.keys()
    assert max(maxdiff(g_full[n], g_masked[n]) for n in g_full) < 1e-6
    with pytest.raises(ValueError, match="mlm_scores must be 'all' or 'masked'"):
        ours(ids, feats, boxes, mask, vmask, mlm_labels=mlm, mlm_scores="sparse")
    with pytest.raises(ValueError, match="needs mlm_labels"):
        ours(ids, feats, boxes, mask, vmask, mlm_scores="masked")


def test_mlm_labels_are_checked_before_any_head():
    _, ours = pair(transformers.LxmertForPreTraining, LxmertForPreTraining)
    ids, mask, feats, boxes, vmask = inputs()
    for bad in (torch.full((B + 1, T), -100), torch.full((B, T + 1), -100), [[-100] * T] * B):
        for mode in ("all", "masked"):
            with pytest.raises(ValueError, match=r"mlm_labels must have shape \(B, T\) = \(3, 7\)"):
                ours(ids, feats, boxes, mask, vmask, mlm_labels=bad, mlm_scores=mode)
    _, no_mlm = pair(transformers.LxmertForPreTraining, LxmertForPreTraining, task_mask_lm=False)
    with pytest.raises(ValueError, match="task_mask_lm"):
        no_mlm(ids, feats, boxes, mask, vmask, mlm_labels=torch.full((B, T), -100), mlm_scores="masked")


def test_inputs_refused_before_compute():
    """One boundary (``LxmertModel.check_inputs``, called first by every LXMERT model) refuses what
    would otherwise fail deep inside or silently compute nonsense."""
    m = LxmertForPreTraining(small())
    ids, mask, feats, boxes, vmask = inputs()
    with pytest.raises(ValueError, match="input_ids must be integer token ids"):
        m(ids.float(), feats, boxes)
    with pytest.raises(ValueError, match="no tokens"):
        m(ids[:, :0], feats, boxes)
    with pytest.raises(ValueError, match=r"visual_feats has dtype torch.float64 but the model's weights are torch.float32"):
        m(ids, feats.double(), boxes)
    with pytest.raises(ValueError, match="floating-point"):
        m(ids, feats.long(), boxes)
    for bad in (float("nan"), float("inf")):
        f = feats.clone()
        f[1, 2, 3] = bad
        with pytest.raises(ValueError, match=r"visual_feats must be finite; visual_feats\[1, 2, 3\]"):
            m(ids, f, boxes)
    with pytest.raises(ValueError, match="boxes must be floating-point"):
        m(ids, feats, (boxes > 0.5).long())
    first_padded = mask.clone()
    first_padded[0, 0] = 0
    with pytest.raises(ValueError, match="hides its first token"):
        m(ids, feats, boxes, first_padded)


def test_pretraining_labels_refused_before_compute():
    m = LxmertForPreTraining(small())
    ids, mask, feats, boxes, vmask = inputs()
    sel = torch.zeros(B, N, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"masked_regions must be a bool \(B, N\) = \(3, 5\)"):
        m(ids, feats, boxes, feat_targets=feats, masked_regions=sel.float())
    with pytest.raises(ValueError, match="feat_targets need masked_regions"):
        m(ids, feats, boxes, feat_targets=feats)
    with pytest.raises(ValueError, match=r"feat_targets must have the shape of the features \(B, N, F\) = \(3, 5, 12\)"):
        m(ids, feats, boxes, feat_targets=feats[:, :, :4], masked_regions=sel)
    with pytest.raises(ValueError, match="obj_labels need obj_confidence"):
        m(ids, feats, boxes, obj_labels=torch.zeros(B, N, dtype=torch.long))
    with pytest.raises(ValueError, match="obj_labels must be integer labels"):
        m(ids, feats, boxes, obj_labels=torch.zeros(B, N), obj_confidence=torch.ones(B, N))
    with pytest.raises(ValueError, match=r"attr_confidence must be a float \(B, N\)"):
        m(ids, feats, boxes, attr_labels=torch.zeros(B, N, dtype=torch.long), attr_confidence=torch.ones(B, N + 1))
    with pytest.raises(ValueError, match=r"qa_labels must have shape \(3,\)"):
        m(ids, feats, boxes, qa_labels=torch.zeros(B, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"is_matched must have shape \(3,\)"):
        m(ids, feats, boxes, is_matched=torch.ones(B + 1, dtype=torch.long))
    qa = LxmertForQuestionAnswering(small())
    with pytest.raises(ValueError, match=r"soft_scores must be a float \(B, A\) = \(3, 4\)"):
        qa(ids, feats, boxes, soft_scores=torch.zeros(B, 5))


def test_qa_loss_is_cross_entropy_on_matched_labelled_rows():
    """LXMERT's image QA during pretraining: softmax cross-entropy over the answer table on the rows
    with an answer, ignoring mismatched pairs (airsplay ``LXRTPretraining.forward``, ignore -1;
    ``lxmert_pretrain.py`` sets -1 for mismatched pairs and unlabelled sentences)."""
    torch.manual_seed(0)
    m = LxmertForPreTraining(small()).eval()
    ids, mask, feats, boxes, vmask = inputs()
    out = m(ids, feats, boxes, mask, vmask, qa_labels=torch.tensor([3, 1, -100]), is_matched=torch.tensor([1, 0, 1]))
    logp = torch.log_softmax(out.logits["qa"], -1)
    assert out.logits["qa"].shape == (B, 4)
    assert abs(out.losses["qa"].item() - (-logp[0, 3]).item()) < 1e-6  # row 1 mismatched, row 2 unlabelled
    assert abs(out.loss.item() - out.losses["qa"].item() - out.losses["itm"].item()) < 1e-6


# ------------------------------------------------------------------------------------------------
# The recipe (vlp_course.recipes.lxmert)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapter():
    from vlp_course.recipes.base import Recipe, scene_tensors
    from vlp_course.recipes.lxmert import LxmertAdapter

    recipe = Recipe(kind="lxmert", n_images=120, n_test=30, hidden=16, heads=2, ffn=32)
    return LxmertAdapter(scene_tensors(recipe), recipe)


def _question_of(st, ids_row, mask_row):
    """The question rows whose text equals the given row (several images can share a question text)."""
    n = int(mask_row.sum())
    Tq = st.q_ids.shape[1]
    if n > Tq:
        return []
    same = (st.q_mask.sum(1) == n) & (st.q_ids[:, :n] == ids_row[:n]).all(1)
    return torch.nonzero(same).squeeze(1).tolist()


def test_questions_join_the_pretraining_batch(adapter):
    st = adapter.st
    batch = st.pretrain_batch(0, 60)
    ids, mask, qa = adapter.ask_questions(batch, torch.Generator().manual_seed(0))
    k = round(60 * adapter.question_fraction)
    assert k == 20 and ids.shape[1] == max(batch["input_ids"].shape[1], st.q_ids.shape[1])  # the batch trims its captions
    # the caption rows are unchanged and unlabelled
    T = batch["input_ids"].shape[1]
    assert torch.equal(ids[k:, :T], batch["input_ids"][k:]) and (qa[k:] == -100).all()
    for r in range(k):
        img = int(batch["image"][r])
        rows = _question_of(st, ids[r], mask[r])
        assert rows, f"row {r} must show a question"
        if batch["is_matched"][r] == 1:  # a question of its own image, labelled with one of its answers
            own = [q for q in rows if int(st.q_image[q]) == img]
            assert own and any(st.q_target[q, int(qa[r])] > 0 for q in own)
        else:  # a question of another training image, no label
            assert any(int(st.q_image[q]) != img and int(st.q_image[q]) < st.n_train for q in rows)
            assert qa[r] == -100
    assert 0 < int((qa != -100).sum()) < k


def test_qa_label_drawn_in_proportion_to_the_soft_scores(adapter):
    """One answer per question, drawn with probability score / sum of scores (lxmert_pretrain.py)."""
    st = adapter.st
    q = next(i for i in range(len(st.q_ids)) if (st.q_target[i] > 0).sum() >= 2 and st.q_image[i] < st.n_train)
    batch = {"input_ids": st.cap_ids[:600], "attention_mask": st.cap_mask[:600],
             "image": st.q_image[q].repeat(600), "is_matched": torch.ones(600, dtype=torch.long)}
    counts = torch.zeros(len(st.answers))
    table, count = adapter.question_table.clone(), adapter.question_count.clone()
    try:  # the image asks only question q here
        adapter.question_table[st.q_image[q], 0], adapter.question_count[st.q_image[q]] = q, 1
        _, _, qa = adapter.ask_questions(batch, torch.Generator().manual_seed(1))
    finally:
        adapter.question_table, adapter.question_count = table, count
    labelled = qa[qa != -100]
    assert len(labelled) == 200
    counts = torch.bincount(labelled, minlength=len(st.answers)).float() / len(labelled)
    want = st.q_target[q] / st.q_target[q].sum()
    assert (counts[want == 0] == 0).all()
    assert (counts - want).abs().max() < 0.12  # 200 draws: 3.5 standard deviations of the largest share


def test_pretrain_step_runs_all_five_tasks_and_vqa_step(adapter):
    torch.manual_seed(0)
    model = adapter.pretraining_model()
    batch = adapter.st.pretrain_batch(0, 24)
    a = adapter.pretrain_step(model, batch, torch.Generator().manual_seed(3))
    b = adapter.pretrain_step(model, batch, torch.Generator().manual_seed(3))
    assert set(a.losses) == {"mlm", "itm", "obj", "attr", "feat", "qa"}
    assert all(torch.isfinite(v) and v > 0 for v in a.losses.values())
    assert all(torch.equal(a.losses[k], b.losses[k]) for k in a.losses)  # same generator, same step
    assert a.logits["qa"].shape == (24, len(adapter.st.answers))
    qa = adapter.qa_model()
    vb = adapter.st.vqa_batch(0, 5)
    out = adapter.vqa_step(qa, vb)
    assert out.logits["vqa"].shape == (5, len(adapter.st.answers)) and set(out.losses) == {"vqa"}
    # the pretraining answer head moves into the VQA model (same answer table)
    from vlp_course.recipes.run import transfer_pretrained
    assert transfer_pretrained(qa, model)["new"] == []
    zero = adapter.vqa_step(qa, vb, zero_image=True)
    assert torch.isfinite(zero.loss)


# ------------------------------------------------------------------------------------------------
# NLVR2: two passes, statements interleaved s0, s0, s1, s1 (airsplay src/tasks/nlvr2_model.py)
# ------------------------------------------------------------------------------------------------
def nlvr2_rows(P=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (P, T), generator=g)
    feats = torch.randn(P, 2, N, F, generator=g)
    xy = torch.rand(P, 2, N, 2, generator=g) * 0.5
    boxes = torch.cat([xy, xy + 0.4], -1)  # normalised xyxy
    return ids, feats, boxes


def test_nlvr2_concatenates_the_pair_pooled_vectors_in_the_original_order():
    m = randomize(LxmertForNLVR2(small()))
    assert sorted(k for k in m.state_dict() if k.startswith("logit_fc")) == sorted(
        f"logit_fc.{i}.{w}" for i in (0, 2, 3) for w in ("weight", "bias"))  # the original's head names
    ids, feats, boxes = nlvr2_rows()
    ids2, f2, b2 = repeat_for_pairs(ids, feats, boxes)
    assert ids2.shape == (6, T) and torch.equal(ids2[2], ids2[3]) and torch.equal(f2[3], feats[1, 1])
    with torch.no_grad():
        out = m(ids2, f2, b2, labels=torch.tensor([1, 0, 1]))
        pooled = m.lxmert(ids2, f2, b2).pooled_output  # (6, D)
        manual = m.logit_fc(torch.cat([pooled[0::2], pooled[1::2]], 1))  # (3, 2D) -> (3, 2)
    assert out.logits["nlvr2"].shape == (3, 2) and maxdiff(out.logits["nlvr2"], manual) < 1e-6
    assert abs(out.losses["nlvr2"].item() - torch.nn.functional.cross_entropy(manual, torch.tensor([1, 0, 1])).item()) < 1e-6


def test_nlvr2_prediction_depends_only_on_its_own_pair():
    m = randomize(LxmertForNLVR2(small()))
    ids, feats, boxes = nlvr2_rows()

    def run(i, f, b):
        return m(*repeat_for_pairs(i, f, b)).logits["nlvr2"]

    with torch.no_grad():
        base = run(ids, feats, boxes)
        perm = torch.tensor([1, 2, 0])
        assert maxdiff(run(ids[perm], feats[perm], boxes[perm]), base[perm]) < 1e-5
        changed = feats.clone()
        changed[0, 0] += 1.0  # pair 0's left image
        after = run(ids, changed, boxes)
        assert maxdiff(after[1:], base[1:]) < 1e-6 and maxdiff(after[0], base[0]) > 1e-4
        assert maxdiff(run(ids, feats.flip(1), boxes.flip(1)), base) > 1e-4  # left and right are not interchangeable


def test_nlvr2_refuses_odd_rows_tiled_statements_and_bad_labels():
    m = LxmertForNLVR2(small()).eval()
    ids, feats, boxes = nlvr2_rows()
    ids2, f2, b2 = repeat_for_pairs(ids, feats, boxes)
    with pytest.raises(ValueError, match="2 x num_pairs"):
        m(ids2[:5], f2[:5], b2[:5])
    tiled = ids.repeat(2, 1)  # s0, s1, s2, s0, s1, s2: every pair would mix two statements
    with pytest.raises(ValueError, match="two different statements"):
        m(tiled, f2, b2)
    with pytest.raises(ValueError, match="0 \\(false\\) or 1"):
        m(ids2, f2, b2, labels=torch.tensor([0, 1, -100]))
    with pytest.raises(ValueError, match=r"\(P, 2, N, ·\)"):
        repeat_for_pairs(ids, f2, b2)
