"""Text-to-image with masked image tokens: MaskGIT (Chang et al. 2022) conditioned on a caption.

An image is a grid of G discrete tokens (:class:`vlp_course.vision.image_tokens.PatchTokenizer`).
MaskGIT trains a *bidirectional* transformer, BERT's masked LM on image tokens: hide a random share
of the tokens behind [MASK] and predict them from the rest (section 3.1). To draw an image it starts
from all [MASK] and fills the grid in a few parallel steps, keeping the most confident predictions
each time and masking the others again (section 3.2, "iterative decoding").

MaskGIT conditions on a class label: one token in front of the image tokens. Here the condition is
a caption, so the caption's words go in front: ``[CLS] w_1 … w_n [SEP] [PAD] … t_1 … t_G``, every
token sees every other (the padding is keyed out). The rest follows the original code
(google-research/maskgit at commit 1db2359):

* one embedding table for image codes, condition tokens and [MASK], in that order, [MASK] last
  (``inference.py``: ``codebook_size + num_class + 1`` entries, ``mask_token_id = -1``); words take
  the place of the classes. Word + position embeddings, LayerNorm, no segment embedding
  (``nets/maskgit_transformer.py``, ``Embed``: "segment ids are removed"); the course's
  :class:`~vlp_course.models.blocks.TextEmbeddings` with a single token type is exactly that;
* BERT's post-LN layers (the course's :class:`~vlp_course.models.blocks.Encoder`);
* the output layer is BERT's masked-LM head with the embedding table as its weights (``MlmLayer``:
  dense, GELU, LayerNorm, product with the tied table plus a bias), scores cut to the K image codes
  (``inference.py``: ``logits[..., :codebook_size]``);
* training masks ``ceil(cos(pi/2 r) G)`` random tokens, r ~ U[0, 1) (paper sections 3.1 and 3.3, and
  ``libml/mask_schedule.py``), cross-entropy on the masked tokens with label smoothing 0.1
  (``configs/maskgit_class_cond_config.py``; the training loop itself was not released);
* decoding is ``libml/parallel_decode.py``: :func:`decoding_step` and :func:`generate`.

Two things are ours, not MaskGIT's: the image tokens' positions are a row plus a column embedding
(``image_positions="grid"``; MaskGIT's one embedding per token is ``"sequence"``), and :func:`generate`
can apply Muse's classifier-free guidance (Chang et al. 2023), for a model trained with some captions
replaced by the empty one.

The shapes: B captions, T caption tokens, G image tokens, K codes, D hidden size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_course.models.blocks import (Encoder, LMPredictionHead, TextEmbeddings, TransformerConfig, check_ids,
                                      check_keep_mask, check_labels)
from vlp_course.pretraining.losses import IGNORE_INDEX

__all__ = ["TextToImageConfig", "MaskGIT", "mask_schedule", "mask_image_tokens", "tokens_to_mask",
           "decoding_step", "generate", "IGNORE_INDEX"]


@dataclass
class TextToImageConfig(TransformerConfig):
    """Sizes of :class:`MaskGIT`. ``vocab_size`` and ``max_position_embeddings`` are derived:
    K codes + ``num_words`` + 1 ([MASK]) and ``max_text_length`` + G.

    Defaults: the shipped checkpoint's (hidden 96, 3 layers, 4 heads, no dropout).
    """

    hidden_size: int = 96
    num_attention_heads: int = 4
    num_hidden_layers: int = 3
    intermediate_size: int = 384
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    type_vocab_size: int = 1
    num_words: int = 64
    num_codes: int = 1024
    num_image_tokens: int = 256
    max_text_length: int = 32
    label_smoothing: float = 0.1
    image_positions: str = "grid"

    def __post_init__(self) -> None:
        for name in ("num_words", "num_codes", "num_image_tokens", "max_text_length"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.image_positions not in ("grid", "sequence"):
            raise ValueError(f"image_positions must be 'grid' (row + column embeddings) or 'sequence', got {self.image_positions!r}")
        if self.image_positions == "grid" and round(self.num_image_tokens ** 0.5) ** 2 != self.num_image_tokens:
            raise ValueError(f"grid positions need a square number of image tokens, got {self.num_image_tokens}")
        self.vocab_size = self.num_codes + self.num_words + 1
        self.max_position_embeddings = self.max_text_length + self.num_image_tokens  # (only T used with grid positions)
        super().__post_init__()

    @property
    def mask_token_id(self) -> int:
        """The image [MASK]: the last row of the table (MaskGIT's ``mask_token_id = -1``)."""
        return self.vocab_size - 1


class MaskGIT(nn.Module):
    """A bidirectional transformer over ``[caption] [image tokens]`` that scores each image position's code.

    Parameter names: ``embeddings.*``, ``encoder.layer.N.*``, ``predictions.*`` (as the course's BERT models).
    """

    def __init__(self, config: TextToImageConfig):
        super().__init__()
        self.config = config
        self.embeddings = TextEmbeddings(config)
        if config.image_positions == "grid":  # our change: see forward
            side = round(config.num_image_tokens ** 0.5)
            self.row_embeddings = nn.Embedding(side, config.hidden_size)
            self.column_embeddings = nn.Embedding(side, config.hidden_size)
        self.encoder = Encoder(config)
        self.predictions = LMPredictionHead(self.embeddings.word_embeddings, config.hidden_act, config.layer_norm_eps)
        std = config.initializer_range
        for m in self.modules():  # MaskGIT: truncated normal, biases zero
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, image_tokens: Tensor,
                labels: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Scores for every image position, and the loss where ``labels`` are given.

        Args:
            input_ids: (B, T) caption word ids in [0, num_words).
            attention_mask: (B, T) 1 for real caption tokens, 0 for padding.
            image_tokens: (B, G) values in [0, K]: a code, or K for [MASK].
            labels: (B, G) the true codes at the masked positions, ``-100`` elsewhere.

        Returns:
            ``(logits, loss)``: (B, G, K) scores over the codes; the label-smoothed cross-entropy over
            the labelled positions, or ``None`` without labels.

        Raises:
            ValueError: ids out of range or shapes that do not match (B, T) and (B, G).
        """
        cfg = self.config
        K, G = cfg.num_codes, cfg.num_image_tokens
        if not isinstance(input_ids, Tensor) or input_ids.ndim != 2:
            raise ValueError(f"input_ids must be a (B, T) tensor, got {tuple(getattr(input_ids, 'shape', ()))}")
        B, T = input_ids.shape
        if T > cfg.max_text_length:
            raise ValueError(f"captions have at most {cfg.max_text_length} tokens, got T = {T}")
        for name, t in (("input_ids", input_ids), ("image_tokens", image_tokens)):
            if isinstance(t, Tensor) and (t.dtype.is_floating_point or t.dtype == torch.bool):
                raise ValueError(f"{name} must be an integer tensor, got {t.dtype}")
        check_ids(input_ids, (B, T), cfg.num_words, "input_ids")
        check_ids(image_tokens, (B, G), K + 1, "image_tokens (codes in [0, K), K = [MASK])")
        if attention_mask is None:
            raise ValueError(f"attention_mask must have shape ({B}, {T}) (1 = real token, 0 = padding), got None")
        check_keep_mask(attention_mask, (B, T), "attention_mask")
        check_labels(labels, (B, G), "labels")
        if labels is not None:
            check_ids(torch.where(labels == IGNORE_INDEX, 0, labels), (B, G), K, "labels (codes, -100 = no target)")

        # one table: codes 0..K-1, words K..K+W-1, [MASK] last
        ids = torch.cat([input_ids + K, torch.where(image_tokens == K, cfg.mask_token_id, image_tokens)], 1)  # (B, T + G)
        keep = torch.cat([attention_mask.bool(), image_tokens.new_ones(B, G, dtype=torch.bool)], 1)  # (B, T + G)
        if cfg.image_positions == "sequence":  # MaskGIT: one learned position per token
            x = self.embeddings(ids)  # (B, T + G, D)
        else:
            # Ours: an image token's position is its row and its column (ViT's 2-D variant, Dosovitskiy et al.
            # 2021, appendix D.4), so neighbours above and below are known as neighbours from the first step;
            # with one learned position per token that takes far longer than a CPU budget allows.
            emb = self.embeddings
            side = self.row_embeddings.num_embeddings
            r = torch.arange(G, device=ids.device)
            grid = self.row_embeddings(r // side) + self.column_embeddings(r % side)  # (G, D)
            pos = torch.cat([emb.position_embeddings.weight[:T], grid], 0)  # (T + G, D)
            x = emb.dropout(emb.LayerNorm(emb.word_embeddings(ids) + pos + emb.token_type_embeddings.weight[0]))
        h = self.encoder(x, keep).last_hidden_state[:, T:]  # (B, G, D): the image positions
        logits = self.predictions(h)[..., :K]  # (B, G, K)
        if labels is None:
            return logits, None
        loss = F.cross_entropy(logits.reshape(-1, K), labels.reshape(-1), ignore_index=IGNORE_INDEX,
                               label_smoothing=cfg.label_smoothing)
        return logits, loss


# --------------------------------------------------------------------------------------------------
# Training: how many tokens to hide
# --------------------------------------------------------------------------------------------------
def mask_schedule(ratio) -> Tensor:
    """MaskGIT's cosine schedule: the share of tokens masked, ``cos(pi/2 · ratio)``, clipped to [1e-6, 1].

    ``ratio`` in [0, 1]: drawn uniformly in training, ``t / T`` after decoding step t of T.
    Source: ``libml/mask_schedule.py`` (``method="cosine"``).
    """
    r = torch.as_tensor(ratio, dtype=torch.float64)
    if r.numel() and (float(r.min()) < 0 or float(r.max()) > 1):
        raise ValueError(f"ratio must lie in [0, 1], got {float(r.min())} .. {float(r.max())}")
    return torch.cos(math.pi / 2 * r).clamp(1e-6, 1.0)


def tokens_to_mask(num_tokens: int, step: int, iterations: int) -> int:
    """How many of ``num_tokens`` initially unknown tokens stay masked after decoding step ``step`` (0-based) of
    ``iterations``: ``floor(num_tokens · cos(pi/2 · (step + 1) / iterations))`` (``parallel_decode.py``;
    :func:`decoding_step` then keeps at least one token masked before the last step and unmasks at least one).

    Raises:
        ValueError: ``step`` outside [0, iterations).
    """
    if not 0 <= step < iterations:
        raise ValueError(f"step must lie in [0, {iterations}), got {step}")
    return int(math.floor(num_tokens * float(mask_schedule((step + 1) / iterations))))


def mask_image_tokens(codes: Tensor, mask_id: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Hide ``ceil(cos(pi/2 r) G)`` random tokens of each row (r ~ U[0, 1) per row; at least 1).

    Args:
        codes: (B, G) true codes in [0, mask_id).
        mask_id: the value that means [MASK] (K for :class:`MaskGIT`).

    Returns:
        ``(image_tokens, labels)``: (B, G) inputs with ``mask_id`` at the hidden positions; (B, G) labels,
        the true code there and -100 elsewhere.

    Raises:
        ValueError: codes not a (B, G) integer tensor in [0, mask_id).
    """
    if not isinstance(codes, Tensor) or codes.ndim != 2 or codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise ValueError(f"codes must be a (B, G) integer tensor, got {getattr(codes, 'dtype', type(codes).__name__)} "
                         f"{tuple(getattr(codes, 'shape', ()))}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= mask_id):
        raise ValueError(f"codes must lie in [0, {mask_id}) ({mask_id} is [MASK]), got {int(codes.min())} .. {int(codes.max())}")
    B, G = codes.shape
    dev = codes.device
    r = torch.rand(B, generator=generator, device=dev)  # (B,)
    n_mask = torch.ceil(mask_schedule(r).to(dev) * G).clamp(1, G)  # (B,)
    rank = torch.rand(B, G, generator=generator, device=dev).argsort(1).argsort(1)  # (B, G) a random order
    hidden = rank < n_mask[:, None]  # (B, G) the n_mask first in that order
    return (torch.where(hidden, torch.full_like(codes, mask_id), codes),
            torch.where(hidden, codes, torch.full_like(codes, IGNORE_INDEX)))


# --------------------------------------------------------------------------------------------------
# Drawing: iterative parallel decoding
# --------------------------------------------------------------------------------------------------
def decoding_step(tokens: Tensor, logits: Tensor, step: int, iterations: int, unknown_at_start: Tensor, *,
                  mask_id: int, choice_temperature: float = 4.5, temperature: float = 1.0,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """One step of MaskGIT's decoding (``libml/parallel_decode.py``, ``loop_body_fn``).

    1. Sample a code at every masked position from ``softmax(logits)``; known tokens stay.
    2. ``mask_len = floor(unknown_at_start · cos(pi/2 (step+1)/iterations))``, kept between 1 and the
       number still masked minus 1.
    3. Confidence of each sampled token: ``log p + choice_temperature · (1 - (step+1)/iterations) · gumbel``;
       known tokens have confidence +inf. The ``mask_len`` least confident are masked again.

    Args:
        tokens: (B, G) current tokens, ``mask_id`` where unknown. logits: (B, G, K) the model's scores.
        unknown_at_start: (B,) how many tokens were masked before the first step.

    Returns:
        ``(sampled, next_tokens)``: (B, G) the sampled image (every position filled: the output after the
        last step) and (B, G) the input of the next step.

    Raises:
        ValueError: shapes that do not match, or ``step`` outside [0, iterations).
    """
    if not 0 <= step < iterations:
        raise ValueError(f"step must lie in [0, {iterations}), got {step}")
    if logits.ndim != 3 or tuple(logits.shape[:2]) != tuple(tokens.shape):
        raise ValueError(f"logits must be (B, G, K) with (B, G) = {tuple(tokens.shape)}, got {tuple(logits.shape)}")
    unknown = tokens == mask_id  # (B, G)
    probs = (logits.float() / temperature).softmax(-1)  # (B, G, K)
    B, G, K = probs.shape
    sampled = torch.multinomial(probs.reshape(-1, K), 1, generator=generator).reshape(B, G)  # (B, G)
    sampled = torch.where(unknown, sampled, tokens)
    ratio = (step + 1) / iterations
    mask_len = torch.floor(unknown_at_start.to(probs) * float(mask_schedule(ratio)))[:, None]  # (B, 1)
    mask_len = torch.maximum(torch.ones_like(mask_len),
                             torch.minimum(unknown.sum(-1, keepdim=True).to(probs) - 1, mask_len))  # (B, 1)
    selected = probs.gather(-1, sampled[..., None]).squeeze(-1)  # (B, G) p of each sampled code
    selected = torch.where(unknown, selected, torch.full_like(selected, math.inf))
    u = torch.rand(B, G, generator=generator, device=probs.device).clamp(1e-20, 1 - 1e-7)
    gumbel = -torch.log(-torch.log(u))  # (B, G)
    confidence = torch.log(selected) + choice_temperature * (1.0 - ratio) * gumbel
    cut_off = confidence.sort(-1).values.gather(-1, mask_len.long())  # (B, 1): the mask_len-th smallest
    remask = confidence < cut_off  # (B, G)
    return sampled, torch.where(remask, torch.full_like(sampled, mask_id), sampled)


@torch.no_grad()
def generate(model: MaskGIT, input_ids: Tensor, attention_mask: Tensor, *, iterations: int = 8,
             choice_temperature: float = 4.5, generator: torch.Generator | None = None,
             guidance_scale: float = 0.0, empty_caption: tuple[Tensor, Tensor] | None = None,
             temperature: float = 1.0, return_steps: bool = False):
    """Draw (B, G) codes for B captions: all [MASK], then ``iterations`` :func:`decoding_step` s.

    MaskGIT's settings: 8 steps (the paper's Table 1, ImageNet 256 x 256; the released ``inference.py`` defaults to 16)
    and choice temperature 4.5 (``maskgit_class_cond_config.py``).
    ``guidance_scale`` w > 0 adds Muse's classifier-free guidance (Chang et al. 2023, section 2.7; not in
    MaskGIT): scores ``(1 + w) · cond - w · uncond``, uncond from ``empty_caption`` ((1, T) ids and keep mask of
    ``[CLS] [SEP]``), for a model trained with some captions dropped.

    Returns:
        (B, G) codes in [0, K); with ``return_steps``, also a list of the (B, G) inputs of each step
        (``K`` = still masked), to watch the image fill in.

    Raises:
        ValueError: ``iterations`` < 1, or the model's input errors.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    if guidance_scale and empty_caption is None:
        raise ValueError("guidance needs empty_caption: the (1, T) ids and keep mask of [CLS] [SEP]")
    was_training = model.training
    model.eval()
    K, G = model.config.num_codes, model.config.num_image_tokens
    B = input_ids.shape[0]
    tokens = torch.full((B, G), K, dtype=torch.long, device=input_ids.device)
    unknown_at_start = (tokens == K).sum(-1)  # (B,)
    steps = []
    sampled = tokens
    for t in range(iterations):
        steps.append(tokens)
        logits, _ = model(input_ids, attention_mask, tokens)  # (B, G, K)
        if guidance_scale:
            e_ids, e_keep = (x.to(input_ids.device).expand(B, -1) for x in empty_caption)  # (B, T)
            uncond, _ = model(e_ids, e_keep, tokens)
            logits = (1 + guidance_scale) * logits - guidance_scale * uncond
        sampled, tokens = decoding_step(tokens, logits, t, iterations, unknown_at_start, mask_id=K,
                                        choice_temperature=choice_temperature, temperature=temperature,
                                        generator=generator)
    model.train(was_training)
    return (sampled, steps) if return_steps else sampled
