"""Training-step benchmarks of the course's vision-language models.

    python benchmarks/bench_models.py                       # everything, on CPU (and CUDA if present)
    python benchmarks/bench_models.py --quick --parts compare
    python benchmarks/bench_models.py --parts scaling --device cpu

One training step = forward, the pretraining loss, backward and one AdamW step (lr 1e-4, PyTorch's
defaults otherwise). Three parts:

* ``compare``: the course's VisualBERT and LXMERT against transformers' ``VisualBertForPreTraining``
  and ``LxmertForPreTraining`` with the same configuration, weights (transformers' random weights
  copied into ours through :mod:`vlp_course.models.convert`), batch and labels. Before any timing
  the two give the same losses and logits (checked to 1e-4 in eval mode, before and after one
  AdamW step). Then the steps alternate, ours / theirs / theirs / ours …, so that the load of the
  machine falls on both alike; the ratio is transformers' median step time over ours (> 1: ours
  is faster). Ours scores the masked-LM head at the labelled positions only (``mlm_scores="masked"``,
  as original BERT gathers ``masked_lm_positions``): transformers scores every position, including
  VisualBERT's region rows, which are never targets. The same model scoring every position
  (``ours_all``) is timed in the same loop, so the table shows what that saving is worth.
* ``absolute``: ViLBERT and VL-BERT (no reference implementation): step time, examples/s, tokens/s,
  the step's FLOPs (``torch.utils.flop_counter.FlopCounterMode``: matrix products and attention,
  forward and backward) and the share of the device's measured fp32 matrix-multiply rate
  (``common.matmul_peak_gflops``) that the step reaches.
* ``scaling``: step time of VisualBERT (one stream) and LXMERT (two streams) at the small size as the
  text grows (8 … 128 tokens, 36 regions) and as the regions grow (10 … 100, 20 tokens); plotted
  to ``benchmarks/results/scaling.png``.

Tokens per example = text tokens + region tokens (ViLBERT's global image token included).

Peak memory: each model runs two steps in a fresh Python process (``--memory-child``). On CPU the
figure is the process's peak resident memory during the steps (``VmHWM``, reset just before them
through ``/proc/self/clear_refs``) minus its resident memory just before them, when model, inputs
and optimizer exist: activations, gradients, AdamW's two moments and temporaries. On CUDA it is
``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` at the same point.

Sizes: ``small`` is a course-sized model (hidden 128, 4 heads, FFN 512; VisualBERT 4 layers, LXMERT
2/2/2; vocabulary 1,000; 128-d region features as from the stand-in detector; dropout 0 as in the
course's notebooks; batch 32, 20 text tokens, 36 regions). ``base`` is the originals' size (BERT-base
hidden 768, 12 heads, FFN 3072, vocabulary 30,522; VisualBERT 12 layers; LXMERT 9/5/5; 2048-d
features; dropout 0.1 as in the original configs; batch 8, 20 tokens, 36 regions). ``tiny`` is for
the tests only.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import Row, matmul_peak_gflops  # noqa: E402

FAMILIES = ("visualbert", "lxmert", "vilbert", "vlbert")
NAMES = {"visualbert": "VisualBERT", "lxmert": "LXMERT", "vilbert": "ViLBERT", "vlbert": "VL-BERT"}
PARTS = ("compare", "absolute", "scaling")
TOL = 1e-4


# --------------------------------------------------------------------------------------------------
# Sizes and workloads
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Size:
    """Model sizes shared by the four families (each reads what it needs)."""

    hidden: int
    heads: int
    ffn: int
    layers: int  # VisualBERT, VL-BERT and ViLBERT's text stream
    lxmert_layers: tuple[int, int, int]  # language, object-relationship, cross-modality
    vocab: int
    feat: int  # region-feature width
    classes: int  # detector classes (ViLBERT / VL-BERT region targets, LXMERT object labels)
    attrs: int  # LXMERT attribute labels
    answers: int  # LXMERT's pretraining QA answers
    v_hidden: int  # ViLBERT's visual stream and co-attention width
    v_heads: int
    v_ffn: int
    v_layers: int
    co_layers: int
    geometry_dim: int  # VL-BERT


@dataclass(frozen=True)
class Workload:
    batch: int
    text: int
    regions: int
    dropout: float


SIZES = {
    "tiny": Size(hidden=16, heads=2, ffn=32, layers=1, lxmert_layers=(1, 1, 1), vocab=50, feat=8, classes=5, attrs=4,
                 answers=6, v_hidden=16, v_heads=2, v_ffn=32, v_layers=1, co_layers=1, geometry_dim=4),
    "small": Size(hidden=128, heads=4, ffn=512, layers=4, lxmert_layers=(2, 2, 2), vocab=1000, feat=128, classes=7,
                  attrs=7, answers=100, v_hidden=128, v_heads=4, v_ffn=512, v_layers=2, co_layers=2, geometry_dim=16),
    "base": Size(hidden=768, heads=12, ffn=3072, layers=12, lxmert_layers=(9, 5, 5), vocab=30522, feat=2048,
                 classes=1601, attrs=400, answers=9500, v_hidden=1024, v_heads=8, v_ffn=1024, v_layers=6, co_layers=6,
                 geometry_dim=256),
}
WORKLOADS = {
    "tiny": Workload(batch=2, text=6, regions=3, dropout=0.0),
    "small": Workload(batch=32, text=20, regions=36, dropout=0.0),
    "base": Workload(batch=8, text=20, regions=36, dropout=0.1),
}


def tokens_per_example(family: str, w: Workload) -> int:
    """Text tokens + region tokens actually fed to the model (ViLBERT adds the global image token)."""
    return w.text + w.regions + (1 if family == "vilbert" else 0)


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------
def _randomize(module: nn.Module, seed: int, std: float = 0.02) -> nn.Module:
    """Every parameter random (LayerNorm weights around 1), so that no output is equal by accident of
    zeros and ones, and a copy that misses a tensor shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            norm = name.endswith(("LayerNorm.weight", "layer_norm.weight")) or (
                name.startswith("answer_head.logit_fc.2") and name.endswith("weight"))
            p.copy_(torch.randn(p.shape, generator=g) * std + (1.0 if norm else 0.0))
    return module


def _text(g: torch.Generator, s: Size, w: Workload) -> dict[str, Tensor]:
    B, T = w.batch, w.text
    ids = torch.randint(2, s.vocab, (B, T), generator=g)  # id 0/1 are padding rows in some tables
    mask = torch.ones(B, T, dtype=torch.long)
    if B > 1:
        mask[-1, max(2, T - T // 4):] = 0  # one row with padded text
    mlm = torch.full((B, T), -100)
    pick = (torch.rand(B, T, generator=g) < 0.15) & (mask == 1)
    pick[:, 1] = True  # at least one target per row
    mlm[pick] = ids[pick]
    is_matched = (torch.arange(B) % 2 == 0).long()
    return {"ids": ids, "mask": mask, "mlm": mlm, "is_matched": is_matched}


def _boxes(g: torch.Generator, B: int, N: int) -> Tensor:
    """(B, N, 4) normalised xyxy boxes inside [0, 1]."""
    xy = torch.rand(B, N, 2, generator=g) * 0.5
    return torch.cat([xy, xy + 0.05 + torch.rand(B, N, 2, generator=g) * 0.45], -1)


# --------------------------------------------------------------------------------------------------
# Ours and transformers': VisualBERT and LXMERT
# --------------------------------------------------------------------------------------------------
@dataclass
class Impl:
    """One implementation ready to train: its model and a closure that returns (loss, outputs to compare)."""

    name: str
    model: nn.Module
    forward: Callable[[], tuple[Tensor, dict[str, Tensor]]]


def _models(make_theirs: Callable[[], nn.Module], make_ours: Callable[[], nn.Module], which: tuple[str, ...],
            copy_weights: bool) -> tuple[nn.Module | None, nn.Module | None]:
    """(ours, theirs): transformers' model with random weights, ours with a copy of them (through
    the converter) when ``copy_weights``. Only the models asked for are built: a model built and
    dropped in the memory child would leave freed memory that the measured one reuses unseen.

    Raises:
        RuntimeError: when the weights do not copy (the converter's report says which keys).
    """
    from vlp_course.models.convert import load_original_checkpoint

    torch.manual_seed(0)
    theirs = _randomize(make_theirs(), seed=1) if "transformers" in which or copy_weights else None
    ours = make_ours() if "ours" in which else None
    if copy_weights and ours is not None:
        report = load_original_checkpoint(ours, theirs.state_dict())
        if not report.ok:
            raise RuntimeError(f"weights did not copy:\n{report}")
    return ours, theirs


def visualbert_pair(size: str, w: Workload, device: str = "cpu", *, copy_weights: bool = True,
                    which: tuple[str, ...] = ("ours", "transformers")) -> dict[str, Impl]:
    """The course's and transformers' VisualBertForPreTraining, same config, weights and batch.

    ``ours`` scores the masked-LM head at the labelled positions only (``mlm_scores="masked"``,
    original BERT's gather); ``ours_all`` (when asked for) is the same model scoring every position,
    as transformers does. The outputs compared are the loss, the MLM scores at the labelled positions
    and the matching logits."""
    import transformers

    from vlp_course.models.visualbert import VisualBertConfig, VisualBertForPreTraining

    s = SIZES[size]
    hc = transformers.VisualBertConfig(
        vocab_size=s.vocab, hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads,
        intermediate_size=s.ffn, visual_embedding_dim=s.feat, max_position_embeddings=max(512, w.text),
        hidden_dropout_prob=w.dropout, attention_probs_dropout_prob=w.dropout)
    ours, theirs = _models(lambda: transformers.VisualBertForPreTraining(hc),
                           lambda: VisualBertForPreTraining(VisualBertConfig.from_hf(hc)), which, copy_weights)
    g = torch.Generator().manual_seed(0)
    t = _text(g, s, w)
    B, V = w.batch, w.regions
    feats = torch.randn(B, V, s.feat, generator=g)
    vmask = torch.ones(B, V, dtype=torch.long)
    vtypes = torch.zeros(B, V, dtype=torch.long)  # the original's default (transformers' is 1): given explicitly
    hf_labels = torch.cat([t["mlm"], torch.full((B, V), -100)], 1)  # transformers wants (B, T+V)
    d = {k: v.to(device) for k, v in dict(t, feats=feats, vmask=vmask, vtypes=vtypes, hf_labels=hf_labels).items()}

    keep = d["hf_labels"] != -100  # (B, T+V): the labelled positions

    def f_ours(mlm_scores: str = "masked"):
        o = ours(d["ids"], d["feats"], d["mask"], d["vmask"], visual_token_type_ids=d["vtypes"], mlm_labels=d["mlm"],
                 is_matched=d["is_matched"], mlm_scores=mlm_scores)
        scores = o.logits["mlm"] if mlm_scores == "masked" else o.logits["mlm"][keep]
        return o.loss, {"loss": o.loss, "mlm_scores_at_labels": scores, "seq_relationship_logits": o.logits["itm"]}

    def f_theirs():
        o = theirs(input_ids=d["ids"], attention_mask=d["mask"], visual_embeds=d["feats"],
                   visual_attention_mask=d["vmask"], visual_token_type_ids=d["vtypes"], labels=d["hf_labels"],
                   sentence_image_labels=d["is_matched"])
        return o.loss, {"loss": o.loss, "mlm_scores_at_labels": o.prediction_logits[keep],
                        "seq_relationship_logits": o.seq_relationship_logits}

    return _impls(which, ours, f_ours, theirs, f_theirs, device)


def _impls(which, ours, f_ours, theirs, f_theirs, device) -> dict[str, Impl]:
    """``ours``, ``ours_all`` (the same model, MLM scores at every position) and ``transformers``, as asked."""
    out = {}
    for name, model, f in (("ours", ours, f_ours), ("ours_all", ours, lambda: f_ours("all")),
                           ("transformers", theirs, f_theirs)):
        if name in which:
            out[name] = Impl(name, model.to(device), f)
    return out


def lxmert_pair(size: str, w: Workload, device: str = "cpu", *, copy_weights: bool = True,
                which: tuple[str, ...] = ("ours", "transformers")) -> dict[str, Impl]:
    """The course's and transformers' LxmertForPreTraining with all five tasks, same config, weights,
    batch and labels. Ours keeps transformers' rounded visual-loss normaliser (6.67) here so that
    the losses are the same number; QA labels of mismatched pairs are -100 for transformers, as
    ours (and the original's data loader) ignore them. ``ours`` / ``ours_all``: MLM scores at the
    labelled tokens only / at every token (see :func:`visualbert_pair`)."""
    import transformers

    from vlp_course.models.lxmert import LxmertConfig, LxmertForPreTraining

    s = SIZES[size]
    l_layers, r_layers, x_layers = s.lxmert_layers
    hc = transformers.LxmertConfig(
        vocab_size=s.vocab, hidden_size=s.hidden, num_attention_heads=s.heads, intermediate_size=s.ffn,
        l_layers=l_layers, r_layers=r_layers, x_layers=x_layers, visual_feat_dim=s.feat, num_qa_labels=s.answers,
        num_object_labels=s.classes, num_attr_labels=s.attrs, max_position_embeddings=max(512, w.text),
        hidden_dropout_prob=w.dropout, attention_probs_dropout_prob=w.dropout)
    ours, theirs = _models(lambda: transformers.LxmertForPreTraining(hc),
                           lambda: LxmertForPreTraining(LxmertConfig.from_hf(hc, visual_loss_normalizer=6.67)),
                           which, copy_weights)
    g = torch.Generator().manual_seed(0)
    t = _text(g, s, w)
    B, N = w.batch, w.regions
    d = dict(t)
    d["feats"] = torch.randn(B, N, s.feat, generator=g)
    d["boxes"] = _boxes(g, B, N)
    d["vmask"] = torch.ones(B, N, dtype=torch.long)
    d["obj"] = torch.randint(0, s.classes, (B, N), generator=g)
    d["attr"] = torch.randint(0, s.attrs, (B, N), generator=g)
    d["obj_conf"] = torch.rand(B, N, generator=g)
    d["attr_conf"] = torch.rand(B, N, generator=g)
    d["target"] = torch.randn(B, N, s.feat, generator=g)
    d["fmask"] = (torch.rand(B, N, generator=g) < 0.15).float()
    d["qa"] = torch.randint(0, s.answers, (B,), generator=g)
    d["hf_qa"] = torch.where(t["is_matched"] == 1, d["qa"], torch.full_like(d["qa"], -100))
    d = {k: v.to(device) for k, v in d.items()}

    keep = d["mlm"] != -100  # (B, T): the labelled tokens

    def f_ours(mlm_scores: str = "masked"):
        o = ours(d["ids"], d["feats"], d["boxes"], d["mask"], d["vmask"], mlm_labels=d["mlm"],
                 is_matched=d["is_matched"], obj_labels=d["obj"], obj_confidence=d["obj_conf"], attr_labels=d["attr"],
                 attr_confidence=d["attr_conf"], feat_targets=d["target"], masked_regions=d["fmask"].bool(),
                 qa_labels=d["qa"], mlm_scores=mlm_scores)
        scores = o.logits["mlm"] if mlm_scores == "masked" else o.logits["mlm"][keep]
        return o.loss, {"loss": o.loss, "mlm_scores_at_labels": scores,
                        "cross_relationship_score": o.logits["itm"],
                        "question_answering_score": o.logits["qa"]}

    def f_theirs():
        o = theirs(input_ids=d["ids"], visual_feats=d["feats"], visual_pos=d["boxes"], attention_mask=d["mask"],
                   visual_attention_mask=d["vmask"], labels=d["mlm"], matched_label=d["is_matched"], ans=d["hf_qa"],
                   obj_labels={"obj": (d["obj"], d["obj_conf"]), "attr": (d["attr"], d["attr_conf"]),
                               "feat": (d["target"], d["fmask"])})
        return o.loss, {"loss": o.loss, "mlm_scores_at_labels": o.prediction_logits[keep],
                        "cross_relationship_score": o.cross_relationship_score,
                        "question_answering_score": o.question_answering_score}

    return _impls(which, ours, f_ours, theirs, f_theirs, device)


# --------------------------------------------------------------------------------------------------
# ViLBERT and VL-BERT (ours only)
# --------------------------------------------------------------------------------------------------
def vilbert_impl(size: str, w: Workload, device: str = "cpu") -> Impl:
    """ViLBERT pretraining: masked LM + masked-region KL + alignment; the global image token first."""
    from vlp_course.models.vilbert import ViLBERTConfig, ViLBERTForPreTraining, prepare_regions

    s = SIZES[size]
    co = s.co_layers
    cfg = ViLBERTConfig(
        vocab_size=s.vocab, hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads,
        intermediate_size=s.ffn, hidden_dropout_prob=w.dropout, attention_probs_dropout_prob=w.dropout,
        max_position_embeddings=max(512, w.text), v_feature_size=s.feat, v_target_size=s.classes,
        v_hidden_size=s.v_hidden, v_num_hidden_layers=s.v_layers, v_num_attention_heads=s.v_heads,
        v_intermediate_size=s.v_ffn, v_hidden_dropout_prob=w.dropout, v_attention_probs_dropout_prob=w.dropout,
        bi_hidden_size=s.v_hidden, bi_num_attention_heads=s.v_heads, bi_intermediate_size=s.v_ffn,
        fused_dropout_prob=w.dropout,
        # the original's rule at 6/6: co-attention after visual layer k and text layer L - co + k
        v_biattention_id=list(range(co)), t_biattention_id=list(range(s.layers - co, s.layers)))
    torch.manual_seed(0)
    model = ViLBERTForPreTraining(cfg)
    g = torch.Generator().manual_seed(0)
    t = _text(g, s, w)
    B, N = w.batch, w.regions
    reg = prepare_regions(torch.randn(B, N, s.feat, generator=g), _boxes(g, B, N) * 64, 64, 64)
    targets = torch.softmax(torch.randn(B, N + 1, s.classes, generator=g), -1)
    masked = torch.zeros(B, N + 1, dtype=torch.bool)  # the global token (0) is never masked
    masked[:, 1:] = torch.rand(B, N, generator=g) < 0.15
    masked[:, 1] = True
    d = {k: v.to(device) for k, v in dict(t, **reg, targets=targets, masked=masked).items()}
    model = model.to(device)

    def f():
        o = model(d["ids"], d["features"], d["locations"], attention_mask=d["mask"],
                  visual_attention_mask=d["image_attention_mask"], mlm_labels=d["mlm"],
                  masked_regions=d["masked"], region_targets=d["targets"], is_matched=d["is_matched"])
        return o.loss, {"loss": o.loss}

    return Impl("ours", model, f)


def vlbert_impl(size: str, w: Workload, device: str = "cpu") -> Impl:
    """VL-BERT pretraining: MLM with visual clues + masked RoI classification (region 0 = whole image)."""
    from vlp_course.models.vlbert import VLBERTConfig, VLBERTForPreTraining

    s = SIZES[size]
    cfg = VLBERTConfig(
        vocab_size=s.vocab, hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads,
        intermediate_size=s.ffn, hidden_dropout_prob=w.dropout, attention_probs_dropout_prob=w.dropout,
        obj_downsample_dropout=w.dropout, max_position_embeddings=max(512, w.text + 2),
        visual_feature_size=s.feat, geometry_dim=s.geometry_dim, visual_region_classes=s.classes)
    torch.manual_seed(0)
    model = VLBERTForPreTraining(cfg)
    with torch.no_grad():  # the visual LayerNorms start at 0 (the model is then plain BERT): make them work
        model.vlbert.visual_ln_text.weight.fill_(1.0)
        model.vlbert.visual_ln_object.weight.fill_(1.0)
    g = torch.Generator().manual_seed(0)
    t = _text(g, s, w)
    B, N, S = w.batch, w.regions, 64
    boxes = _boxes(g, B, N) * S
    boxes[:, 0] = torch.tensor([0.0, 0.0, S - 1.0, S - 1.0])  # region 0: the whole image [0, 0, W-1, H-1]
    masked = torch.rand(B, N, generator=g) < 0.15
    masked[:, 0] = False
    masked[:, 1] = True
    d = dict(t, feats=torch.randn(B, N, s.feat, generator=g), boxes=boxes, masked=masked,
             targets=torch.softmax(torch.randn(B, N, s.classes, generator=g), -1))
    d = {k: v.to(device) for k, v in d.items()}
    model = model.to(device)

    def f():
        o = model(d["ids"], d["feats"], d["boxes"], (S, S), attention_mask=d["mask"], masked_regions=d["masked"],
                  mlm_labels=d["mlm"], region_targets=d["targets"])
        return o.loss, {"loss": o.loss}

    return Impl("ours", model, f)


def build(family: str, impl: str, size: str, w: Workload, device: str = "cpu") -> Impl:
    """One model ready to train (used by the memory child and the scaling part)."""
    if family == "visualbert":
        return visualbert_pair(size, w, device, copy_weights=False, which=(impl,))[impl]
    if family == "lxmert":
        return lxmert_pair(size, w, device, copy_weights=False, which=(impl,))[impl]
    if impl != "ours":
        raise ValueError(f"{family} has no reference implementation; impl must be 'ours', got {impl!r}")
    return (vilbert_impl if family == "vilbert" else vlbert_impl)(size, w, device)


# --------------------------------------------------------------------------------------------------
# The training step, the output check, timing
# --------------------------------------------------------------------------------------------------
def make_step(impl: Impl, lr: float = 1e-4) -> Callable[[], float]:
    """forward + loss + backward + AdamW step; returns the loss."""
    opt = torch.optim.AdamW(impl.model.parameters(), lr=lr)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss, _ = impl.forward()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def max_output_difference(a: Impl, b: Impl) -> float:
    """The largest absolute difference between the two implementations' outputs (eval mode, no grad)."""
    was = a.model.training, b.model.training
    a.model.eval(), b.model.eval()
    try:
        with torch.no_grad():
            _, oa = a.forward()
            _, ob = b.forward()
    finally:
        a.model.train(was[0]), b.model.train(was[1])
    worst = 0.0
    for k, va in oa.items():
        vb = ob[k]
        if va is None and vb is None:
            continue
        if va is None or vb is None or va.shape != vb.shape:
            return math.inf
        worst = max(worst, float((va.float() - vb.float()).abs().max()))
    return worst


def check_same_outputs(pair: dict[str, Impl], tol: float = TOL) -> float:
    """Outputs of ours and theirs agree within ``tol``, before and after one AdamW step (dropout off).

    Returns:
        the largest difference seen.

    Raises:
        AssertionError: naming the difference, when they do not agree.
    """
    ours, theirs = pair["ours"], pair["transformers"]
    before = max_output_difference(ours, theirs)
    if not before <= tol:
        raise AssertionError(f"ours and transformers' outputs differ by {before:.3g} (> {tol}) before training: "
                             "not the same weights or inputs")
    # one step each with dropout off: gradients and AdamW must agree as well
    for impl in (ours, theirs):
        impl.model.eval()
        make_step(impl)()
    after = max_output_difference(ours, theirs)
    if not after <= tol:
        raise AssertionError(f"ours and transformers' outputs differ by {after:.3g} (> {tol}) after one AdamW step")
    return max(before, after)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved_times(steps: dict[str, Callable[[], float]], repeats: int, warmup: int = 1,
                      device: str = "cpu") -> dict[str, list[float]]:
    """Wall time of each step function, run alternately (A B, B A, A B …) ``repeats`` times each."""
    names = list(steps)
    for _ in range(warmup):
        for n in names:
            steps[n]()
    _sync(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in (names if r % 2 == 0 else names[::-1]):
            _sync(device)
            t0 = time.perf_counter()
            steps[n]()
            _sync(device)
            times[n].append(time.perf_counter() - t0)
    return times


def step_flops(impl: Impl) -> int:
    """FLOPs of one training step's forward and backward (matrix products and attention)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten
    custom = {}
    # CPU's fused attention kernels have no formula in torch's table: count them as the others
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        custom[aten._scaled_dot_product_flash_attention_for_cpu] = (
            lambda q, k, v, *a, out_shape=None, **kw: sdpa_flop_count(q, k, v))
        custom[aten._scaled_dot_product_flash_attention_for_cpu_backward] = (
            lambda go, q, k, v, *a, out_shape=None, **kw: sdpa_backward_flop_count(go, q, k, v))
    impl.model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False, custom_mapping=custom) as counter:
        loss, _ = impl.forward()
        loss.backward()
    impl.model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


# --------------------------------------------------------------------------------------------------
# Peak memory, in a fresh process per model
# --------------------------------------------------------------------------------------------------
def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _memory_child(family: str, impl: str, size: str, w: Workload, device: str, steps: int = 2) -> dict:
    """Runs in the child process: build one model, then measure the steps' peak memory (MiB)."""
    model = build(family, impl, size, w, device)
    model.model.train()
    step = make_step(model)
    gc.collect()
    try:  # hand freed heap memory back to the system, so that the steps cannot reuse it unseen
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return {"peak_mib": (peak - before) / 2**20, "total_mib": peak / 2**20, "method": "cuda.max_memory_allocated"}
    with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM (the peak) to the current VmRSS
        fh.write("5")
    before = _proc_status_kib("VmRSS")
    for _ in range(steps):
        step()
    peak = _proc_status_kib("VmHWM")
    return {"peak_mib": (peak - before) / 1024, "total_mib": peak / 1024, "method": "VmHWM - VmRSS"}


def peak_memory(family: str, impl: str, size: str, w: Workload, device: str = "cpu", timeout: float = 900) -> dict:
    """Peak memory of two training steps of one model, measured in a fresh Python process."""
    spec = json.dumps({"family": family, "impl": impl, "size": size, "workload": w.__dict__, "device": device,
                       "threads": torch.get_num_threads()})
    res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-child", spec],
                         capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))})
    if res.returncode != 0:
        raise RuntimeError(f"memory measurement of {family}/{impl}/{size} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------
# The three parts
# --------------------------------------------------------------------------------------------------
def _case(family: str, size: str, w: Workload) -> str:
    return f"{NAMES[family]} {size} (B={w.batch}, T={w.text}, V={w.regions}, dropout {w.dropout:g})"


def _load() -> float:
    return os.getloadavg()[0]


def compare(family: str, size: str, w: Workload | None = None, *, repeats: int = 3, warmup: int = 1,
            device: str = "cpu", memory: bool = True, copy_weights: bool = True) -> list[Row]:
    """Ours against transformers' on one training step (see the module docstring).

    Raises:
        AssertionError: when the two do not give the same outputs (e.g. ``copy_weights=False``).
        ValueError: on an unknown family or size.
    """
    if family not in ("visualbert", "lxmert"):
        raise ValueError(f"compare takes 'visualbert' or 'lxmert', got {family!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    w = w or WORKLOADS[size]
    pair = (visualbert_pair if family == "visualbert" else lxmert_pair)(
        size, w, device, copy_weights=copy_weights, which=("ours", "ours_all", "transformers"))
    diff = check_same_outputs({n: pair[n] for n in ("ours", "transformers")})
    for impl in pair.values():
        impl.model.train()
    load0 = _load()
    times = interleaved_times({n: make_step(i) for n, i in pair.items()}, repeats, warmup, device)
    load1 = _load()
    med = {n: statistics.median(ts) for n, ts in times.items()}
    tok = tokens_per_example(family, w)
    case = _case(family, size, w)
    extra = {"family": family, "size": size, "batch": w.batch, "text_len": w.text, "regions": w.regions,
             "dropout": w.dropout, "repeats": repeats, "max_abs_diff": diff, "threads": torch.get_num_threads(),
             "load1": round((load0 + load1) / 2, 2)}
    rows = []
    for n in ("ours", "transformers"):
        spread = statistics.stdev(times[n]) if len(times[n]) > 1 else 0.0
        rows += [Row("models", case, f"step time ({n})", med[n], "s", device, dict(extra, impl=n, stdev=spread)),
                 Row("models", case, f"examples/s ({n})", w.batch / med[n], "examples/s", device, dict(extra, impl=n)),
                 Row("models", case, f"tokens/s ({n})", w.batch * tok / med[n], "tokens/s", device, dict(extra, impl=n))]
    rows.append(Row("models", case, "speed ratio ours/transformers", med["transformers"] / med["ours"], "x", device,
                    dict(extra, paired_ratios=[round(b / a, 3) for a, b in zip(times["ours"], times["transformers"])])))
    # the same model scoring the masked-LM head at every position, as transformers does: the same work
    rows += [Row("models", case, "step time (ours_all)", med["ours_all"], "s", device, dict(extra, impl="ours_all")),
             Row("models", case, "speed ratio ours_all/transformers", med["transformers"] / med["ours_all"], "x", device,
                 dict(extra, paired_ratios=[round(b / a, 3) for a, b in zip(times["ours_all"], times["transformers"])]))]
    # the work itself: matrix products and attention of one forward and backward, counted
    rows += [Row("models", case, f"GFLOP per step ({n})", step_flops(pair[n]) / 1e9, "GFLOP", device, dict(extra, impl=n))
             for n in ("ours", "ours_all", "transformers")]
    del pair
    gc.collect()
    if memory:
        mem = {n: peak_memory(family, n, size, w, device) for n in ("ours", "transformers")}
        for n in ("ours", "transformers"):
            rows.append(Row("models", case, f"peak memory ({n})", mem[n]["peak_mib"], "MiB", device,
                            dict(extra, impl=n, total_mib=mem[n]["total_mib"], method=mem[n]["method"])))
        rows.append(Row("models", case, "memory ratio ours/transformers",
                        mem["ours"]["peak_mib"] / max(mem["transformers"]["peak_mib"], 1e-9), "x", device, dict(extra)))
    return rows


def absolute(family: str, size: str, w: Workload | None = None, *, repeats: int = 3, warmup: int = 1,
             device: str = "cpu", memory: bool = True, peak_gflops: float | None = None) -> list[Row]:
    """Step time, throughput, FLOPs and share of the matmul peak of one of our models."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    w = w or WORKLOADS[size]
    impl = build(family, "ours", size, w, device)
    impl.model.train()
    flops = step_flops(impl)
    load0 = _load()
    times = interleaved_times({"ours": make_step(impl)}, repeats, warmup, device)["ours"]
    load1 = _load()
    med = statistics.median(times)
    if peak_gflops is None:
        peak_gflops = matmul_peak_gflops(device=device)
    achieved = flops / med / 1e9
    case = _case(family, size, w)
    extra = {"family": family, "size": size, "batch": w.batch, "text_len": w.text, "regions": w.regions,
             "dropout": w.dropout, "repeats": repeats, "threads": torch.get_num_threads(),
             "load1": round((load0 + load1) / 2, 2), "gflop_per_step": flops / 1e9, "matmul_peak_gflops": peak_gflops}
    tok = tokens_per_example(family, w)
    rows = [Row("models", case, "step time (ours)", med, "s", device, dict(extra, impl="ours")),
            Row("models", case, "examples/s (ours)", w.batch / med, "examples/s", device, dict(extra, impl="ours")),
            Row("models", case, "tokens/s (ours)", w.batch * tok / med, "tokens/s", device, dict(extra, impl="ours")),
            Row("models", case, "GFLOP/s (ours)", achieved, "GFLOP/s", device, dict(extra, impl="ours")),
            Row("models", case, "share of matmul peak (ours)", 100 * achieved / peak_gflops, "%", device,
                dict(extra, impl="ours"))]
    del impl
    gc.collect()
    if memory:
        mem = peak_memory(family, "ours", size, w, device)
        rows.append(Row("models", case, "peak memory (ours)", mem["peak_mib"], "MiB", device,
                        dict(extra, impl="ours", total_mib=mem["total_mib"], method=mem["method"])))
    return rows


SCALING_TEXT = (8, 16, 32, 64, 128)
SCALING_REGIONS = (10, 20, 36, 50, 100)


def scaling(families: tuple[str, ...] = ("visualbert", "lxmert"), size: str = "small", *,
            text_lengths: tuple[int, ...] = SCALING_TEXT, region_counts: tuple[int, ...] = SCALING_REGIONS,
            base: Workload | None = None, repeats: int = 3, warmup: int = 1, device: str = "cpu") -> list[Row]:
    """Step time of our models as the text grows (regions fixed) and as the regions grow (text fixed).

    All points of one model are built first and their steps run in turns, like ours and theirs in
    :func:`compare`, so that a change in the machine's load does not bend the curve."""
    base = base or WORKLOADS[size]
    rows = []
    for family in families:
        points = [("text", Workload(base.batch, t, base.regions, base.dropout)) for t in text_lengths]
        points += [("regions", Workload(base.batch, base.text, v, base.dropout)) for v in region_counts]
        steps = {}
        for i, (axis, w) in enumerate(points):
            impl = build(family, "ours", size, w, device)
            impl.model.train()
            steps[i] = make_step(impl)
        load0 = _load()
        times = interleaved_times(steps, repeats, warmup, device)
        load1 = _load()
        for i, (axis, w) in enumerate(points):
            rows.append(Row("scaling", _case(family, size, w), f"step time vs {axis}", statistics.median(times[i]), "s",
                            device, {"family": family, "size": size, "axis": axis, "batch": w.batch, "text_len": w.text,
                                     "regions": w.regions, "tokens": tokens_per_example(family, w), "repeats": repeats,
                                     "load1": round((load0 + load1) / 2, 2)}))
        del steps
        gc.collect()
    return rows


def plot_scaling(rows: list[Row], path: Path) -> Path:
    """Two panels, step time against text length and against regions, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, axis, xlabel in ((axes[0], "text", "text tokens (36 regions)"), (axes[1], "regions", "regions (20 text tokens)")):
        for device in sorted({r.device for r in rows}):
            for family in sorted({r.extra["family"] for r in rows}):
                pts = sorted((r.extra["text_len" if axis == "text" else "regions"], r.value * 1000) for r in rows
                             if r.extra["axis"] == axis and r.extra["family"] == family and r.device == device)
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=f"{NAMES[family]} ({device})")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training step (ms)")
    sizes = sorted({r.extra["size"] for r in rows})
    batch = sorted({r.extra["batch"] for r in rows})
    fig.suptitle(f"Training-step time, {'/'.join(sizes)} size, batch {'/'.join(map(str, batch))}")
    axes[1].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _fmt(v: float | None, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}g}"


def markdown(rows: list[Row]) -> list[str]:
    """Compact tables for results.md: ours against transformers, ViLBERT and VL-BERT, scaling."""
    lines: list[str] = []
    by_case: dict[tuple[str, str], dict[str, Row]] = {}
    for r in rows:
        if r.bench == "models":
            by_case.setdefault((r.device, r.case), {})[r.metric] = r
    cmp = {k: v for k, v in by_case.items() if "speed ratio ours/transformers" in v}
    if cmp:
        lines += ["### Ours against transformers (training step)", "",
                  "| model, size and batch | device | step ours (s) | step transformers (s) | **speed ours/transformers** "
                  "| pairs' range | speed with MLM scores at every position "
                  "| GFLOP per step ours / every position / transformers "
                  "| examples/s ours / transformers | tokens/s ours / transformers | peak memory ours / transformers (MiB) "
                  "| memory ours/transformers | outputs max abs diff | load |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for (device, case), m in cmp.items():
            def v(metric):
                return m[metric].value if metric in m else None
            ratio = m["speed ratio ours/transformers"]
            pairs = ratio.extra["paired_ratios"]
            lines.append(
                f"| {case} | {device} | {_fmt(v('step time (ours)'))} | {_fmt(v('step time (transformers)'))} "
                f"| **{ratio.value:.2f}** | {min(pairs):.2f}–{max(pairs):.2f} "
                f"| {_fmt(v('speed ratio ours_all/transformers'), 2)} "
                f"| {_fmt(v('GFLOP per step (ours)'))} / {_fmt(v('GFLOP per step (ours_all)'))} / {_fmt(v('GFLOP per step (transformers)'))} "
                f"| {_fmt(v('examples/s (ours)'))} / {_fmt(v('examples/s (transformers)'))} "
                f"| {_fmt(v('tokens/s (ours)'), 4)} / {_fmt(v('tokens/s (transformers)'), 4)} "
                f"| {_fmt(v('peak memory (ours)'), 4)} / {_fmt(v('peak memory (transformers)'), 4)} "
                f"| {_fmt(v('memory ratio ours/transformers'))} | {ratio.extra['max_abs_diff']:.1e} "
                f"| {ratio.extra['load1']} |")
        lines.append("")
    ab = {k: v for k, v in by_case.items() if "share of matmul peak (ours)" in v}
    if ab:
        lines += ["### ViLBERT and VL-BERT (training step, no reference implementation)", "",
                  "| model, size and batch | device | step (s) | examples/s | tokens/s | GFLOP per step | GFLOP/s "
                  "| matmul peak (GFLOP/s) | **share of peak** | peak memory (MiB) | load |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for (device, case), m in ab.items():
            share = m["share of matmul peak (ours)"]
            mem = m.get("peak memory (ours)")
            lines.append(
                f"| {case} | {device} | {_fmt(m['step time (ours)'].value)} | {_fmt(m['examples/s (ours)'].value)} "
                f"| {_fmt(m['tokens/s (ours)'].value, 4)} | {_fmt(share.extra['gflop_per_step'])} "
                f"| {_fmt(m['GFLOP/s (ours)'].value)} | {_fmt(share.extra['matmul_peak_gflops'])} "
                f"| **{share.value:.0f} %** | {_fmt(mem.value if mem else None, 4)} | {share.extra['load1']} |")
        lines.append("")
    scal = [r for r in rows if r.bench == "scaling"]
    if scal:
        lines += ["### Scaling (ours, training step)", "", "![step time against text length and regions](scaling.png)", "",
                  "| model | device | varied | text tokens | regions | step (ms) |", "|---|---|---|---|---|---|"]
        for r in scal:
            lines.append(f"| {NAMES[r.extra['family']]} {r.extra['size']} B={r.extra['batch']} | {r.device} "
                         f"| {r.extra['axis']} | {r.extra['text_len']} | {r.extra['regions']} | {r.value * 1000:.0f} |")
        lines.append("")
    return lines


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------
def default_devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def run(quick: bool = False, devices: list[str] | None = None, parts: tuple[str, ...] = PARTS,
        out: Path | None = None) -> list[Row]:
    """Rows for benchmarks/run_all.py. ``quick``: the small size only, fewer repeats and points."""
    from tqdm import tqdm

    devices = devices or default_devices()
    sizes = ("small",) if quick else ("small", "base")
    reps = 2 if quick else 11
    jobs: list[tuple[str, Callable[[], list[Row]]]] = []
    for device in devices:
        peak = matmul_peak_gflops(device=device) if "absolute" in parts else None
        for size in sizes:
            r = reps if size == "small" else (2 if quick else 5)
            if "compare" in parts:
                for fam in ("visualbert", "lxmert"):
                    jobs.append((f"compare {fam} {size} {device}",
                                 lambda fam=fam, size=size, r=r, device=device: compare(fam, size, repeats=r, device=device)))
            if "absolute" in parts:
                for fam in ("vilbert", "vlbert"):
                    jobs.append((f"absolute {fam} {size} {device}",
                                 lambda fam=fam, size=size, r=r, device=device, peak=peak:
                                 absolute(fam, size, repeats=r, device=device, peak_gflops=peak)))
        if "scaling" in parts:
            kw = dict(text_lengths=(8, 32, 128), region_counts=(10, 36, 100), repeats=2) if quick else dict(repeats=5)
            jobs.append((f"scaling {device}", lambda device=device, kw=kw: scaling(device=device, **kw)))
    rows: list[Row] = []
    for name, job in tqdm(jobs, desc="models", unit="job", file=sys.stdout, disable=None):
        tqdm.write(f"  {name}")
        rows += job()
    scal = [r for r in rows if r.bench == "scaling"]
    if scal:
        path = plot_scaling(scal, (out or HERE / "results") / "scaling.png")
        tqdm.write(f"  wrote {path}")
    return rows


def _workload_from(d: dict) -> Workload:
    return Workload(**d)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small size only, fewer repeats")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which parts to run")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda", "all"), default="auto",
                    help="auto: CPU, plus CUDA when present (same as all)")
    ap.add_argument("--memory-child", metavar="JSON", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        spec = json.loads(args.memory_child)
        torch.set_num_threads(spec["threads"])  # the parent's setting
        res = _memory_child(spec["family"], spec["impl"], spec["size"], _workload_from(spec["workload"]), spec["device"])
        print(json.dumps(res))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")
    devices = default_devices() if args.device in ("auto", "all") else [args.device]
    for r in run(quick=args.quick, devices=devices, parts=tuple(args.parts)):
        print(f"{r.device:<5} {r.case:<58} {r.metric:<34} {r.value:12.4g} {r.unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
