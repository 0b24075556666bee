"""The reference answers of the course's auto-checked exercises, kept out of the ``vlp_course`` package.

A student copy imports ``vlp_course``; if the references lived there, passing one to its check
would pass it. They live here instead, and ``tools/exercise_answers.py`` runs each on the seeded
cases of its exercise (``vlp_course.exercises.<part>.EXERCISES``) and stores the outputs in
``vlp_course/exercises/answers/<part>.json``, the only thing the checks compare with.
``tests/test_exercise_feedback.py`` recomputes them and fails when they drift.

``REFERENCES[part][exercise]`` is a function with the exercise's signature. Most call the course's
own implementation (the subject of the notebook, used by its later cells); the sources are in the
docstrings of those functions.
"""

from __future__ import annotations

import torch

from vlp_course.boxes import normalize
from vlp_course.data.vqa import soft_scores, vqa_accuracy
from vlp_course.pretraining.matching import matching_from_uniforms
from vlp_course.pretraining.regions import KEEP_UNSELECTED, apply_region_actions, region_actions_from_uniforms
from vlp_course.pretraining.text_masking import apply_mask_decisions
from vlp_course.text.bags import bag_of_ngrams, one_hot
from vlp_course.text.encoders import mean_pool
from vlp_course.text.sgns import sgns_loss, skipgram_pairs
from vlp_course.vision.blocks import ResidualBlock, receptive_field
from vlp_course.vision.gan import discriminator_loss, generator_loss
from vlp_course.vision.lenet import conv_output_size, conv_params


# ---- text (notebooks 01-03) ----------------------------------------------------------------------

def ngrams(tokens, n):
    """``{n-gram joined by spaces: count}`` (notebook 01)."""
    return dict(bag_of_ngrams(tokens, (n, n)))


# ---- vision (notebooks 04-07) --------------------------------------------------------------------

def conv_params_torch(c_in, c_out, kernel):
    """Parameters of ``torch.nn.Conv2d(c_in, c_out, kernel)`` (weights and biases)."""
    return sum(p.numel() for p in torch.nn.Conv2d(c_in, c_out, kernel).parameters())


def reduced_conv_params(c_in, c_reduce, c_out, kernel):
    """Parameters (with biases) of a 1 x 1 reduction to ``c_reduce`` channels then a k x k conv to ``c_out``,
    counted on PyTorch modules (GoogLeNet's inception branches, Szegedy et al. 2015, section 4)."""
    m = torch.nn.Sequential(torch.nn.Conv2d(c_in, c_reduce, 1), torch.nn.Conv2d(c_reduce, c_out, kernel))
    return sum(p.numel() for p in m.parameters())


def residual_forward(block, x):
    """The basic block's output (He et al. 2016, section 3.2, figure 2): the module itself."""
    return block(x)


def shortcut_params(c_in, c_out, stride):
    """Parameters of a basic block's shortcut: 0 (identity) or c_in*c_out + 2*c_out (1 x 1 conv, no bias, + BN)."""
    return sum(p.numel() for p in ResidualBlock(c_in, c_out, stride).shortcut.parameters())


# ---- scenes (notebook 08) ------------------------------------------------------------------------

def single_stream_mask(text_lengths, region_counts, max_text, max_regions):
    """(B, T + V) float padding mask of ``[text tokens (padded to T) | regions (padded to V)]``: 1 real, 0 padding."""
    t, v = torch.arange(max_text), torch.arange(max_regions)
    tl, rc = torch.as_tensor(list(text_lengths)), torch.as_tensor(list(region_counts))
    text = (t[None, :] < tl[:, None]).float()  # (B, T)
    vis = (v[None, :] < rc[:, None]).float()  # (B, V)
    return torch.cat([text, vis], dim=1)  # (B, T + V)


# ---- pretraining (notebook 09) -------------------------------------------------------------------

def region_masking_801010(features, eligible, u_select, u_action, replacement, prob=0.15):
    """LXMERT's 80/10/10 region masking given the draws: ``(masked_features (B, N, D), selected (B, N) bool)``."""
    actions = region_actions_from_uniforms(eligible, u_select, u_action, prob, "lxmert")
    return apply_region_actions(features, actions, replacement), actions != KEEP_UNSELECTED


def negative_sampler(u_swap, u_pick, p_negative=0.5):
    """``(caption_index (B,), is_matched (B,))`` from the draws (:func:`matching_from_uniforms`)."""
    m = matching_from_uniforms(u_swap, u_pick, p_negative)
    return m.caption_index, m.is_matched


# ---- models (notebooks 10-13) --------------------------------------------------------------------

def visualbert_embeddings(emb, input_ids, visual_feats):
    """VisualBERT's joint embedding (token types 0, visual position 0): (B, T+V, D)."""
    return emb(input_ids, visual_feats=visual_feats)


def mask_token_states(hidden, attention_mask):
    """(B, L, D), (B, T) -> (B, D): the state at index ``attention_mask.sum(1) - 2`` of each row."""
    pos = attention_mask.long().sum(1) - 2  # (B,)
    return hidden[torch.arange(hidden.shape[0]), pos]


def object_embedding(enc, feats, boxes):
    """LXMERT's object encoder: (LN(visn_fc(f)) + LN(box_fc(b))) / 2, (B, N, D)."""
    return enc(feats, boxes)


def cross_modality_layer(layer, lang, lang_mask, visn, visn_mask):
    """One LXMERT cross-modality layer: ``(lang_out (B, T, D), visn_out (B, N, D))``."""
    lang_out, visn_out, _, _ = layer(lang, lang_mask, visn, visn_mask)
    return lang_out, visn_out


def coattention(bi, visual, text, text_mask):
    """Regions attend to words with a ViLBERT ``BiAttention``: ``(context (B, N, Db), weights (B, H, N, T))``."""
    vctx, _, v2t, _ = bi(visual, None, text, text_mask)
    return vctx, v2t


def layer_schedule(v_biattention_id, t_biattention_id, num_visual_layers, num_text_layers):
    """ViLBERT's layer order (:func:`vlp_course.models.vilbert.layer_schedule`)."""
    from types import SimpleNamespace

    from vlp_course.models.vilbert import layer_schedule as schedule

    return schedule(SimpleNamespace(v_biattention_id=list(v_biattention_id), t_biattention_id=list(t_biattention_id),
                                    v_num_hidden_layers=num_visual_layers, num_hidden_layers=num_text_layers))


def geometry_embedding(boxes, image_size, dim):
    """VL-BERT's box embedding (:func:`vlp_course.models.vlbert.geometry_embedding`)."""
    from vlp_course.models.vlbert import geometry_embedding as embed

    return embed(boxes, image_size, dim)


def vlbert_layout(text_token_type_ids, num_regions):
    """Segment and position ids of ``[CLS] text [SEP] [IMG] x num_regions [END]``, each (T + n + 1,)."""
    from vlp_course.models.vlbert import sequence_layout

    t = torch.as_tensor(text_token_type_ids).long()[None]
    lay = sequence_layout(torch.ones_like(t), t, torch.ones(1, int(num_regions)))
    return lay.token_type_ids[0], lay.position_ids[0]


REFERENCES = {
    "text": {"one_hot": one_hot, "bag_of_ngrams": ngrams, "skipgram_pairs": skipgram_pairs, "sgns_loss": sgns_loss,
             "mean_pool": mean_pool, "mask_decisions": apply_mask_decisions},
    "vision": {"conv_output_size": lambda n, k, s, p: conv_output_size(n, k, s, p), "conv_params": conv_params_torch,
               "receptive_field": receptive_field, "reduced_conv_params": reduced_conv_params,
               "residual_forward": residual_forward, "shortcut_params": shortcut_params,
               "discriminator_loss": discriminator_loss, "generator_loss": generator_loss},
    "scenes": {"soft scores": lambda answers: soft_scores(answers, normalize=False), "VQA accuracy": vqa_accuracy,
               "normalize boxes": lambda b, w, h: normalize(b, w, h), "single-stream mask": single_stream_mask},
    "pretraining": {"region_masking_801010": region_masking_801010, "negative_sampler": negative_sampler},
    "visualbert": {"visualbert_embeddings": visualbert_embeddings, "mask_token_states": mask_token_states},
    "lxmert": {"object_embedding": object_embedding, "cross_modality_layer": cross_modality_layer},
    "vilbert": {"co-attention (regions -> words)": coattention, "layer schedule": layer_schedule},
    "vlbert": {"geometry embedding": geometry_embedding, "VL-BERT layout": vlbert_layout},
}


# ==================================================================================================
# ---- vqa (notebook 14): VQA as a task ------------------------------------------------------------
# ==================================================================================================

def soft_score_targets(answers, vocab):
    """(A,) float32 soft-score target of ten answers over the answer list ``vocab``
    (:meth:`vlp_course.data.vqa.AnswerVocab.targets`: normalised, min(1, 0.3 count), out-of-vocabulary dropped)."""
    from vlp_course.data.vqa import AnswerVocab

    return torch.from_numpy(AnswerVocab(vocab).targets(answers))


def vqa_losses(logits, soft_scores):
    """``(bce, kl)``: :func:`vlp_course.pretraining.losses.vqa_bce_loss` and VisualBERT's
    :func:`vlp_course.models.visualbert.vqa_kl_loss`, both scalars."""
    from vlp_course.models.visualbert import vqa_kl_loss
    from vlp_course.pretraining.losses import vqa_bce_loss

    return vqa_bce_loss(logits, soft_scores), vqa_kl_loss(logits, soft_scores)


REFERENCES["vqa"] = {"official VQA accuracy": vqa_accuracy, "soft-score targets": soft_score_targets,
                     "VQA losses (BCE, KL)": vqa_losses}


# ==================================================================================================
# ---- nlvr2 (notebook 15): visual reasoning -------------------------------------------------------
# ==================================================================================================

def pair_classifier(pooled, weight, bias):
    """The two-pass pair head (:func:`vlp_course.models.blocks.pair_logits`) with a Linear(2D, 2) of the given weights."""
    from vlp_course.models.blocks import pair_logits

    head = torch.nn.Linear(weight.shape[1], 2)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
        return pair_logits(head, pooled, pooled.shape[0] // 2)


def one_pass_regions(features, region_mask):
    """VisualBERT's one-pass layout (:func:`vlp_course.models.visualbert.pair_regions`)."""
    from vlp_course.models.visualbert import pair_regions

    return pair_regions(features, region_mask)


def statement_only_ceiling(sentences, labels):
    """The best accuracy of any function of the sentence: per distinct sentence, the larger label count."""
    from collections import Counter

    by: dict = {}
    for s, y in zip(sentences, labels):
        by.setdefault(s, Counter())[int(y)] += 1
    return sum(max(c.values()) for c in by.values()) / len(labels)


REFERENCES["nlvr2"] = {"pair classifier": pair_classifier, "one-pass regions": one_pass_regions,
                       "statement-only ceiling": statement_only_ceiling}


# ==================================================================================================
# ---- comparison (notebook 16): the four models compared ---------------------------------------------
# ==================================================================================================

def layer_parameters(D, F):
    """Parameters of one BERT layer, counted from the module (:class:`vlp_course.models.blocks.TransformerLayer`)."""
    from vlp_course.models.blocks import TransformerConfig, TransformerLayer

    config = TransformerConfig(hidden_size=D, num_attention_heads=1, intermediate_size=F)
    return sum(p.numel() for p in TransformerLayer(config).parameters())


def settled_difference(a, b):
    """(mean(a) - mean(b), sqrt(var_a / n_a + var_b / n_b) with sample variances, |difference| > 2 se)."""
    import statistics

    se = (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5
    diff = statistics.mean(a) - statistics.mean(b)
    return diff, se, abs(diff) > 2 * se


REFERENCES["comparison"] = {"layer parameters": layer_parameters, "settled difference": settled_difference}


# ==================================================================================================
# ---- captioning (notebook 17): Unified VLP's mask and beam search ---------------------------------
# ==================================================================================================

def seq2seq_mask(T, V):
    """The seq2seq mask without padding (:func:`vlp_course.models.captioning.caption_attention_mask`)."""
    from vlp_course.models.captioning import caption_attention_mask

    return caption_attention_mask(torch.ones(1, T, dtype=torch.long), torch.ones(1, V, dtype=torch.long))[0]


def beam_step(scores, log_probs, done):
    """One image's beam step (:func:`vlp_course.models.captioning.beam_step` on a batch of one)."""
    from vlp_course.models.captioning import beam_step as step

    s, parent, token = step(scores[None], log_probs[None], done[None])
    return s[0], parent[0], token[0]


REFERENCES["captioning"] = {"seq2seq mask": seq2seq_mask, "beam step": beam_step}


# ==================================================================================================
# ---- text to image (notebook 18): MaskGIT's schedule, training mask and re-masking ----------------
# ==================================================================================================

def tokens_to_mask(num_tokens, step, iterations):
    """:func:`vlp_course.models.text_to_image.tokens_to_mask`."""
    from vlp_course.models.text_to_image import tokens_to_mask as f

    return f(num_tokens, step, iterations)


def training_mask(codes, ratios, order, mask_id):
    """Hide the ceil(cos(pi/2 r) G) first tokens of each row's order (MaskGIT section 3.2), written plainly."""
    from vlp_course.models.text_to_image import mask_schedule

    B, G = codes.shape
    n = torch.ceil(mask_schedule(ratios) * G).clamp(1, G)  # (B,)
    hidden = torch.zeros(B, G, dtype=torch.bool)
    for b in range(B):
        hidden[b, order[b, :int(n[b])]] = True
    return torch.where(hidden, mask_id, codes), torch.where(hidden, codes, -100)


def remask(confidence, unknown, n):
    """parallel_decode.py's cut: known tokens have confidence +inf; mask where confidence < the n-th smallest."""
    conf = torch.where(unknown, confidence, torch.full_like(confidence, float("inf")))
    cut = conf.sort(-1).values.gather(-1, n[:, None].long())  # (B, 1)
    return conf < cut


REFERENCES["text_to_image"] = {"tokens to mask": tokens_to_mask, "training mask": training_mask, "remask": remask}
