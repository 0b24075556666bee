"""Fused attention against explicit attention: forward and backward of one attention call.

    python benchmarks/bench_attention.py

``torch.nn.functional.scaled_dot_product_attention`` (what the course's ``MultiHeadAttention``
calls when no attention weights are requested) against the explicit ``softmax(Q K^T / sqrt(d) +
mask) V`` (what it computes when they are, and what transformers' VisualBERT and LXMERT compute).
Shapes (B, H, L, d): the course's small size (B 32, 4 heads of 32) and the originals' base size
(B 8, 12 heads of 64), at the benchmark's 56 tokens (20 text + 36 regions) and at longer sequences.
Each figure is the median of ``repeats`` timed calls after 3 warm-up calls, forward + backward of
the output's sum, with an additive (B, 1, 1, L) mask, fp32, on the CPU (and CUDA when present).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, time_fn  # noqa: E402

SHAPES = ((32, 4, 56, 32), (8, 12, 56, 64), (32, 4, 148, 32), (8, 12, 256, 64))


def explicit(q, k, v, bias):
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 + bias  # (B, H, L, L)
    return scores.softmax(-1) @ v  # (B, H, L, d)


def fused(q, k, v, bias):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def time_call(fn, shape, device: str = "cpu", repeats: int = 20) -> float:
    """Median seconds of forward + backward of ``fn`` on random (B, H, L, d) inputs."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=g).to(device).requires_grad_() for _ in range(3))
    bias = torch.zeros(shape[0], 1, 1, shape[2], device=device)
    median, _ = time_fn(lambda: fn(q, k, v, bias).sum().backward(), warmup=3, repeats=repeats,
                        sync_cuda=device == "cuda")
    return median


def run(quick: bool = False, devices: list[str] | None = None) -> list:
    """Rows for benchmarks/run_all.py: milliseconds per call of each path, and the ratio."""

    rows = []
    for device in devices or ["cpu"]:
        for shape in SHAPES[:2] if quick else SHAPES:
            t = {name: time_call(fn, shape, device, 5 if quick else 20) for name, fn in (("explicit", explicit), ("fused", fused))}
            case = "B={} H={} L={} d={}".format(*shape)
            extra = {"threads": torch.get_num_threads()}
            rows += [Row("attention", case, f"{name} forward+backward", secs * 1e3, "ms", device, dict(extra))
                     for name, secs in t.items()]
            rows.append(Row("attention", case, "speed fused/explicit", t["explicit"] / t["fused"], "x", device, dict(extra)))
    return rows


if __name__ == "__main__":
    for r in run():
        print(f"{r.device:5s} {r.case:24s} {r.metric:24s} {r.value:8.2f} {r.unit}")
