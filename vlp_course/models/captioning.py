"""Captioning with a BERT-style vision-language encoder: the seq2seq attention mask and [MASK] decoding.

None of the four models of the course captioned images. Their close relative Unified VLP (Zhou et
al. 2020, "Unified Vision-Language Pre-Training for Image Captioning and VQA", section 3.1 and
figure 2) showed that the *same* encoder generates text when only its attention mask changes:

* **seq2seq mask**: the image (and [CLS]) is visible to every position; a caption token sees the
  image and the caption tokens up to and including itself, never a later one; image rows never see
  the caption. The model is trained with masked LM on the caption only, so a masked caption token
  is predicted from the image and the words before it: a left-to-right language model.
* **bidirectional mask**: every position sees every real position (the pretraining of VisualBERT).

Generation then appends a ``[MASK]`` after the words so far, predicts it, writes the prediction in
its place and appends the next ``[MASK]`` (LuoweiZhou/VLP ``pytorch_pretrained_bert/modeling.py``,
``BertForSeq2SeqDecoder.forward`` and ``beam_search``), until ``[SEP]`` or a length limit.

The encoder here is VisualBERT's (:class:`~vlp_course.models.visualbert.VisualBertModel`), so the
course's pretrained VisualBERT checkpoint loads into it as it is; its layout stays VisualBERT's,
``[CLS] caption [SEP] regions`` (Unified VLP puts the regions first, ``[CLS] regions [SEP] caption
[SEP]``; which comes first changes nothing once the mask decides who sees whom). Its masked-LM
head is the checkpoint's ``cls.predictions``.

Differences from the original, all ours: Unified VLP caches each layer's states of the words
already generated; we recompute them at every step (identical results under the seq2seq mask, a
few more multiplications for captions of at most 20 words). The decoder never emits ``[PAD]``,
``[CLS]``, ``[MASK]`` or ``[UNK]`` (the original can; a caption containing them is not a caption).

Shapes: B images, T text tokens ([CLS] caption [SEP] and padding), V regions, F region-feature
width, D hidden width, K beam size, L = T + V.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor, nn

from vlp_course.models.blocks import LMPredictionHead, VLOutput, check_keep_mask, check_labels, describe_shape
from vlp_course.models.visualbert import VisualBertConfig, VisualBertModel
from vlp_course.pretraining.losses import IGNORE_INDEX, mlm_loss

__all__ = ["MASK_MODES", "caption_attention_mask", "CaptionHeads", "VisualBertForCaptioning", "Decoded",
           "greedy_decode", "beam_step", "beam_search"]

#: The two attention masks of Unified VLP: "seq2seq" generates captions, "bidirectional" understands them.
MASK_MODES = ("seq2seq", "bidirectional")


# --------------------------------------------------------------------------------------------------
# The attention mask
# --------------------------------------------------------------------------------------------------
def caption_attention_mask(attention_mask: Tensor, visual_attention_mask: Tensor, mode: str = "seq2seq") -> Tensor:
    """Who may attend to whom in ``[CLS] caption [SEP] regions``: a (B, L, L) keep mask, L = T + V.

    Row i is the query position, column j the key position; ``True`` = i may attend to j. A key is
    never visible when it is padding. Then, in ``"seq2seq"`` mode (Unified VLP, section 3.1):

    * the *source*, [CLS] (position 0) and the regions, is visible to every row;
    * a caption position j >= 1 (its words and final [SEP]) is visible only to caption rows i >= j.

    So the source rows see only the source, and caption row i sees the source and caption positions
    1..i. In ``"bidirectional"`` mode every row sees every real position.

    Args:
        attention_mask: (B, T) text keep mask (1 real, 0 padding); position 0 is [CLS] and must be real.
        visual_attention_mask: (B, V) region keep mask.
        mode: ``"seq2seq"`` or ``"bidirectional"``.

    Returns:
        (B, T + V, T + V) bool.

    Raises:
        ValueError: an unknown mode, masks that are not 2-D with the same B, or a text row whose [CLS] is padding.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mode must be one of {MASK_MODES}, got {mode!r}")
    for name, m in (("attention_mask", attention_mask), ("visual_attention_mask", visual_attention_mask)):
        if not isinstance(m, Tensor) or m.ndim != 2:
            raise ValueError(f"{name} must have shape (B, n), got {describe_shape(m)}")
    B, T = attention_mask.shape
    if visual_attention_mask.shape[0] != B:
        raise ValueError(f"visual_attention_mask must have shape (B, V) with B = {B}, got {tuple(visual_attention_mask.shape)}")
    if T == 0 or not bool((attention_mask[:, 0] != 0).all()):
        raise ValueError("every text row must start with a real [CLS] (attention_mask[:, 0] = 1)")
    V = visual_attention_mask.shape[1]
    keys = torch.cat([attention_mask != 0, visual_attention_mask != 0], dim=1)  # (B, L) real positions
    if mode == "bidirectional":
        return keys[:, None, :].expand(B, T + V, T + V).clone()  # (B, L, L)
    dev = attention_mask.device
    is_caption = torch.zeros(T + V, dtype=torch.bool, device=dev)
    is_caption[1:T] = True  # (L,) caption words and [SEP]; [CLS] and the regions are the source
    pos = torch.arange(T + V, device=dev)
    # a source key: every row; a caption key j: caption rows i >= j
    allowed = ~is_caption[None, :] | (is_caption[:, None] & (pos[None, :] <= pos[:, None]))  # (L, L)
    return allowed[None, :, :] & keys[:, None, :]  # (B, L, L)


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------
class CaptionHeads(nn.Module):
    """The masked-LM head alone, under BERT's key ``cls.predictions.*`` (transformers' ``BertOnlyMLMHead``)."""

    def __init__(self, config: VisualBertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = LMPredictionHead(word_embeddings, config.hidden_act, config.layer_norm_eps)


class VisualBertForCaptioning(nn.Module):
    """VisualBERT's encoder and masked-LM head, run under a seq2seq (or bidirectional) attention mask.

    Keys: ``visual_bert.*`` and ``cls.predictions.*``, those of
    :class:`~vlp_course.models.visualbert.VisualBertForPreTraining` less its matching head
    (``cls.seq_relationship``), so a pretraining checkpoint loads with :meth:`from_pretraining`.
    """

    tied_weights = {"cls.predictions.decoder.weight": "visual_bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: VisualBertConfig):
        super().__init__()
        self.config = config
        self.visual_bert = VisualBertModel(config)
        self.cls = CaptionHeads(config, self.visual_bert.embeddings.word_embeddings)

    @classmethod
    def from_pretraining(cls, pretrained: nn.Module) -> "VisualBertForCaptioning":
        """A captioner with every weight of a :class:`~vlp_course.models.visualbert.VisualBertForPreTraining`
        but its matching head (copied, the source is not changed).

        Raises:
            ValueError: if ``pretrained`` lacks a key of the captioner or its shapes differ.
        """
        model = cls(pretrained.config)
        state = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("cls.seq_relationship.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"the pretrained model does not fit the captioner: missing {missing[:5]}, unexpected {unexpected[:5]}")
        return model

    def forward(
        self,
        input_ids: Tensor,
        visual_feats: Tensor,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        *,
        mode: str = "seq2seq",
        mlm_labels: Tensor | None = None,
        output_attentions: bool = False,
    ) -> VLOutput:
        """Masked-LM scores of the text positions under ``mode``'s mask, and the loss when labelled.

        Args:
            input_ids: (B, T) ``[CLS] caption [SEP]`` and padding, some caption tokens replaced.
            visual_feats: (B, V, F) region features. attention_mask: (B, T); visual_attention_mask:
                (B, V); all ones when omitted.
            mode: ``"seq2seq"`` (captioning) or ``"bidirectional"``.
            mlm_labels: (B, T) original id at the masked caption positions, -100 elsewhere.

        Returns:
            :class:`VLOutput`: ``logits["mlm"]`` (B, T, vocab) over the text positions only,
            ``losses["mlm"]`` when labelled, ``encoder`` the
            :class:`~vlp_course.models.visualbert.VisualBertOutput` (attentions when asked).

        Raises:
            ValueError: the inputs (see :meth:`VisualBertModel.check_inputs`), an unknown mode, or
                ``mlm_labels`` not (B, T) integers in the vocabulary or -100.
        """
        B, T, V = self.visual_bert.check_inputs(input_ids, visual_feats, attention_mask, visual_attention_mask)
        if V == 0:
            raise ValueError("captioning needs region features: visual_feats of shape (B, V, F) with V >= 1")
        check_labels(mlm_labels, (B, T), "mlm_labels")
        if mlm_labels is not None:
            target = mlm_labels != IGNORE_INDEX
            if bool(((mlm_labels[target] < 0) | (mlm_labels[target] >= self.config.vocab_size)).any()):
                raise ValueError(f"mlm_labels must lie in [0, {self.config.vocab_size}) or be {IGNORE_INDEX}")
        t_mask = attention_mask if attention_mask is not None else input_ids.new_ones(B, T)
        v_mask = visual_attention_mask if visual_attention_mask is not None else input_ids.new_ones(B, V)
        mask = caption_attention_mask(t_mask, v_mask, mode)  # (B, T+V, T+V)

        vb = self.visual_bert
        x = vb.embeddings(input_ids, visual_feats=visual_feats)  # (B, T+V, D)
        enc = vb.encoder(x, mask, output_attentions=output_attentions)
        text_states = enc.last_hidden_state[:, :T]  # (B, T, D): only words are predicted
        logits = {"mlm": self.cls.predictions(text_states)}  # (B, T, vocab)
        losses = {"mlm": mlm_loss(logits["mlm"], mlm_labels.long())} if mlm_labels is not None else {}
        return VLOutput(VLOutput.total(losses), losses, logits, encoder=enc)


# --------------------------------------------------------------------------------------------------
# Decoding: append [MASK], predict it, repeat
# --------------------------------------------------------------------------------------------------
@dataclass
class Decoded:
    """Generated captions.

    Attributes:
        ids: (B, 1 + t) ``[CLS] words [SEP]``, then ``[PAD]`` after the [SEP]; no [SEP] when the
            length limit came first; t <= ``max_length``.
        scores: (B,) the sum of the log-probabilities of the chosen tokens ([SEP] included).
        lengths: (B,) words generated, [SEP] not counted.
    """

    ids: Tensor
    scores: Tensor
    lengths: Tensor


def _check_decoding(visual_feats: Tensor, visual_attention_mask: Tensor | None, max_length: int, ids: dict) -> Tensor:
    if not isinstance(visual_feats, Tensor) or visual_feats.ndim != 3 or visual_feats.shape[1] == 0:
        raise ValueError(f"visual_feats must have shape (B, V, F) with V >= 1, got {describe_shape(visual_feats)}")
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive int (generated tokens, [SEP] included), got {max_length!r}")
    missing = {"cls", "sep", "mask", "pad"} - set(ids)
    if missing:
        raise ValueError(f"special_ids needs the ids of {sorted(missing)}")
    B, V = visual_feats.shape[:2]
    if visual_attention_mask is None:
        return torch.ones(B, V, dtype=torch.long, device=visual_feats.device)
    check_keep_mask(visual_attention_mask, (B, V), "visual_attention_mask")
    empty = ~(visual_attention_mask != 0).any(dim=1)  # (B,)
    if bool(empty.any()):
        raise ValueError(f"every image needs at least one real region to be captioned; rows "
                         f"{empty.nonzero().flatten().tolist()[:5]} of visual_attention_mask are all 0")
    return visual_attention_mask


def _next_log_probs(model: VisualBertForCaptioning, words: Tensor, visual_feats: Tensor, visual_attention_mask: Tensor,
                    ids: dict, banned: Tensor) -> Tensor:
    """Log-probabilities (B, vocab) of the token after ``words`` (B, t): one pass over ``words [MASK]``."""
    B = words.shape[0]
    inp = torch.cat([words, words.new_full((B, 1), ids["mask"])], dim=1)  # (B, t+1): the [MASK] to predict
    keep = torch.ones_like(inp)  # the words so far are real; padding after a finished caption is never seen
    out = model(inp, visual_feats, keep, visual_attention_mask, mode="seq2seq")
    scores = out.logits["mlm"][:, -1]  # (B, vocab): the [MASK]'s prediction
    scores = scores.masked_fill(banned, float("-inf"))
    return torch.log_softmax(scores, dim=-1)


def _banned(vocab_size: int, ids: dict, extra: Iterable[int], device) -> Tensor:
    banned = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    for k in ("cls", "mask", "pad", "unk"):
        if k in ids:
            banned[ids[k]] = True
    for i in extra:
        banned[int(i)] = True
    return banned


@torch.no_grad()
def greedy_decode(model: VisualBertForCaptioning, visual_feats: Tensor, visual_attention_mask: Tensor | None = None, *,
                  special_ids: dict, max_length: int = 20, banned_ids: Iterable[int] = ()) -> Decoded:
    """The most likely next word at every step, until ``[SEP]`` or ``max_length`` tokens.

    Args:
        visual_feats: (B, V, F) region features; visual_attention_mask: (B, V).
        special_ids: ``{"cls", "sep", "mask", "pad"}`` (and ``"unk"``) token ids.
        max_length: at most this many generated tokens, [SEP] included (Unified VLP's ``max_tgt_length``, 20);
            a caption that reaches it ends without [SEP].
        banned_ids: more ids never to emit.

    Returns:
        :class:`Decoded`.

    Raises:
        ValueError: features not (B, V, F) with V >= 1, a bad mask (or an image whose regions are all
            padding), a bad ``max_length``, or a missing special id.
    """
    vmask = _check_decoding(visual_feats, visual_attention_mask, max_length, special_ids)
    model.eval()
    B, dev = visual_feats.shape[0], visual_feats.device
    banned = _banned(model.config.vocab_size, special_ids, banned_ids, dev)
    words = torch.full((B, 1), special_ids["cls"], dtype=torch.long, device=dev)  # (B, 1): [CLS]
    scores = torch.zeros(B, device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    lengths = torch.zeros(B, dtype=torch.long, device=dev)
    for _ in range(max_length):
        logp = _next_log_probs(model, words, visual_feats, vmask, special_ids, banned)  # (B, vocab)
        best, tok = logp.max(dim=-1)  # (B,), (B,)
        tok = torch.where(done, torch.full_like(tok, special_ids["pad"]), tok)  # a finished caption is padded
        scores = scores + torch.where(done, torch.zeros_like(best), best)
        lengths = lengths + (~done & (tok != special_ids["sep"])).long()
        words = torch.cat([words, tok[:, None]], dim=1)  # (B, t+1)
        done = done | (tok == special_ids["sep"])
        if bool(done.all()):
            break
    return Decoded(words, scores, lengths)


def beam_step(scores: Tensor, log_probs: Tensor, done: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One step of beam search: the K best one-token extensions of the unfinished hypotheses of each image.

    A finished hypothesis (``done``: it has produced [SEP]) has no extension: it leaves the beam, and
    :func:`beam_search` remembers it (Unified VLP's ``beam_search`` adds -10000 to its extensions).

    Args:
        scores: (B, K) each hypothesis's sum of log-probabilities (-inf for an empty slot).
        log_probs: (B, K, vocab) log-probabilities of the next token after each hypothesis.
        done: (B, K) bool, the hypotheses that have produced [SEP].

    Returns:
        ``(scores, parent, token)``, each (B, K): the new hypotheses' scores in decreasing order, the
        hypothesis each extends (an index in 0..K-1) and the token it adds.

    Raises:
        ValueError: if the shapes do not fit (B, K) and (B, K, vocab).
    """
    if scores.ndim != 2 or log_probs.ndim != 3 or log_probs.shape[:2] != scores.shape or done.shape != scores.shape:
        raise ValueError(f"scores and done must be (B, K) and log_probs (B, K, vocab), got {tuple(scores.shape)}, "
                         f"{tuple(done.shape)} and {tuple(log_probs.shape)}")
    B, K, vocab = log_probs.shape
    live = torch.where(done, torch.full_like(scores, float("-inf")), scores)  # (B, K): finished ones extend nowhere
    total = (live[..., None] + log_probs).reshape(B, K * vocab)  # (B, K*vocab): every extension
    new_scores, flat = total.topk(K, dim=-1)  # (B, K)
    return new_scores, flat // vocab, flat % vocab  # which hypothesis, which token


@torch.no_grad()
def beam_search(model: VisualBertForCaptioning, visual_feats: Tensor, visual_attention_mask: Tensor | None = None, *,
                special_ids: dict, beam_size: int = 5, max_length: int = 20, banned_ids: Iterable[int] = ()) -> Decoded:
    """Beam search: keep the ``beam_size`` most likely partial captions, extend each by every word.

    As Unified VLP's ``beam_search`` (LuoweiZhou/VLP ``pytorch_pretrained_bert/modeling.py``) with its
    default length penalty 0: a hypothesis's score is the sum of its tokens' log-probabilities; at each
    step the K best extensions of the unfinished hypotheses form the new beam (:func:`beam_step`); a
    hypothesis that produces ``[SEP]`` is finished: it is remembered and extends no further. The search
    ends when every hypothesis of a step is finished, or after ``max_length`` tokens. The answer is the
    best of all finished hypotheses and of the last step's hypotheses (Unified VLP's back-tracking
    picks among the same). ``beam_size=1`` is greedy decoding.

    Args:
        visual_feats, visual_attention_mask, special_ids, max_length, banned_ids: as :func:`greedy_decode`.
        beam_size: K >= 1 (Unified VLP decodes COCO with 5).

    Returns:
        :class:`Decoded`, one caption per image.

    Raises:
        ValueError: as :func:`greedy_decode`, or ``beam_size`` < 1.
    """
    vmask = _check_decoding(visual_feats, visual_attention_mask, max_length, special_ids)
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
    model.eval()
    B, V, Fw = visual_feats.shape
    K, dev, sep, pad = beam_size, visual_feats.device, special_ids["sep"], special_ids["pad"]
    banned = _banned(model.config.vocab_size, special_ids, banned_ids, dev)
    feats = visual_feats[:, None].expand(B, K, V, Fw).reshape(B * K, V, Fw)  # (B*K, V, F): each image K times
    vm = vmask[:, None].expand(B, K, V).reshape(B * K, V)  # (B*K, V)
    words = torch.full((B * K, 1), special_ids["cls"], dtype=torch.long, device=dev)  # (B*K, 1)
    scores = torch.zeros(B, K, device=dev)
    scores[:, 1:] = float("-inf")  # at the start the K hypotheses are the same: expand only the first
    done = torch.zeros(B, K, dtype=torch.bool, device=dev)
    best_score = torch.full((B,), float("-inf"), device=dev)  # the best finished hypothesis so far
    best = torch.full((B, 1 + max_length), pad, dtype=torch.long, device=dev)
    image = torch.arange(B, device=dev)
    for _ in range(max_length):
        logp = _next_log_probs(model, words, feats, vm, special_ids, banned).view(B, K, -1)  # (B, K, vocab)
        scores, parent, tok = beam_step(scores, logp, done)  # (B, K) each
        rows = (parent + image[:, None] * K).view(-1)  # (B*K,) rows of ``words``
        words = torch.cat([words[rows], tok.view(-1, 1)], dim=1)  # (B*K, t+1)
        done = tok == sep  # (B, K) finished at this step
        top, k = torch.where(done, scores, torch.full_like(scores, float("-inf"))).max(dim=1)  # (B,)
        better = top > best_score
        if bool(better.any()):
            t = words.shape[1]
            best[better, :t] = words[(k + image * K)[better]]
            best_score = torch.where(better, top, best_score)
        if bool(done.all()):
            break
    # the last step's hypotheses, finished or not, compete with the remembered ones
    top, k = scores.max(dim=1)  # (B,)
    last = top > best_score
    t = words.shape[1]
    best[last, :t] = words[(k + image * K)[last]]
    best[last, t:] = pad
    best_score = torch.where(last, top, best_score)
    real = (best != pad).any(dim=0).nonzero()  # columns that some caption uses
    best = best[:, : int(real.max()) + 1]  # (B, t') no column of padding only
    lengths = ((best != sep) & (best != pad)).sum(dim=1) - 1  # words only: not [CLS], [SEP] or padding
    return Decoded(best, best_score, lengths)
