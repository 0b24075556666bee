"""The four models head to head on the same data and budget: size, training speed, and accuracy on VQA
and visual reasoning, each with and without pretraining.

    python benchmarks/bench_compare.py                   # -> results/compare.md, compare.csv (+ the shipped copy)
    python benchmarks/bench_compare.py --quick           # one model, one seed, a few steps: a smoke run
    python benchmarks/bench_compare.py --models vlbert   # re-measure some models, keep the others' rows
    python benchmarks/bench_compare.py --workers 2       # the fine-tunes in 2 one-thread processes

What it measures, for each of VisualBERT, LXMERT, ViLBERT and VL-BERT at the course's sizes
(``Recipe()``: hidden 64, 2 layers per stack, 4 heads):

* ``parameters``: the pretraining model, the VQA model and the NLVR2 model, counted from the modules;
* ``examples_per_s``: training throughput (forward, backward, AdamW) for pretraining (image-caption
  pairs), VQA (questions) and NLVR2 (pairs), batch 64, measured in the main process before any
  fine-tune starts, with nothing else running;
* ``vqa_accuracy``: official VQA accuracy on the held-out images after ``VQA_STEPS`` steps of batch
  ``VQA_BATCH`` on every training question, from the shipped checkpoint (``pretrained``) and from
  nothing (``scratch``);
* ``nlvr2_accuracy``: accuracy on the held-out pairs (:func:`~vlp_course.data.vl_tensors.build_pair_tensors`)
  after ``NLVR2_STEPS`` steps of ``NLVR2_BATCH`` pairs (``NLVR2_TRAIN_PAIRS`` training pairs), from the
  checkpoint and from scratch. No statement-only model is trained: every held-out sentence comes once with
  a pair it is true of and once with a pair it is false of (:func:`~vlp_course.data.nlvr2.make_nlvr2`), so
  any model that does not see the images scores exactly 50% (notebook 15 checks it).

Every fine-tune uses AdamW with a linear warm-up of 50 steps; seeds 0, 1, 2 (the fresh weights and
the batch order follow the seed). The low-label VQA comparison (500 questions) is
``bench_learning.py``'s; ``compare.md`` quotes it beside these rows.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import machine  # noqa: E402

from vlp_course import files  # noqa: E402
from vlp_course.recipes.base import KINDS  # noqa: E402

COLUMNS = ["model", "measure", "condition", "seed", "steps", "value", "seconds", "measured"]
SEEDS = (0, 1, 2)
VQA_STEPS, VQA_BATCH, VQA_LR = 300, 64, 1e-3
NLVR2_STEPS, NLVR2_BATCH, NLVR2_LR, NLVR2_TRAIN_PAIRS = 600, 64, 1e-3, 10_000
VQA_CONDITIONS = ("pretrained", "scratch")
NLVR2_CONDITIONS = ("pretrained", "scratch")
THROUGHPUT_BATCH, THROUGHPUT_STEPS = 64, 20
NAMES = {"visualbert": "VisualBERT", "lxmert": "LXMERT", "vilbert": "ViLBERT", "vlbert": "VL-BERT"}
STREAMS = {"visualbert": "single", "lxmert": "dual", "vilbert": "dual", "vlbert": "single"}


def _row(kind, measure, condition, seed, steps, value, seconds, measured) -> dict:
    return {"model": kind, "measure": measure, "condition": condition, "seed": seed, "steps": steps,
            "value": round(float(value), 4) if measure.endswith("accuracy") else round(float(value), 1),
            "seconds": round(float(seconds), 1), "measured": measured}


def measure_size_and_speed(kind: str, *, steps: int = THROUGHPUT_STEPS, measured: str = "", device=None) -> list[dict]:
    """Parameter counts and training throughput (examples/s) of ``kind``: the rows of :data:`COLUMNS`."""
    from vlp_course.data.vl_tensors import build_pair_tensors
    from vlp_course.recipes import run
    from vlp_course.recipes.shipped import load_scene_checkpoint

    _, ad, _ = load_scene_checkpoint(kind)
    pairs = build_pair_tensors(ad.st, n_train_pairs=NLVR2_TRAIN_PAIRS)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    rows = [_row(kind, "parameters", name, 0, 0, count(build()), 0, measured)
            for name, build in (("pretraining model", ad.pretraining_model), ("vqa model", ad.qa_model),
                                ("nlvr2 model", lambda: ad.nlvr2_model(len(pairs.vocab))))]
    for task in ("pretrain", "vqa", "nlvr2"):
        t = time.perf_counter()
        v = run.training_throughput(ad, task, batch=THROUGHPUT_BATCH, steps=steps, pairs=pairs, device=device)
        rows.append(_row(kind, "examples_per_s", task, 0, steps, v, time.perf_counter() - t, measured))
    return rows


def measure_accuracy(kind: str, task: str, condition: str, seed: int, steps: int, *, measured: str,
                     threads: int | None = None, device=None) -> dict:
    """One fine-tune of ``kind`` on ``task`` ("vqa" / "nlvr2") from ``condition``, scored on the held-out data."""
    if threads:
        torch.set_num_threads(threads)
    from vlp_course.data.vl_tensors import build_pair_tensors
    from vlp_course.recipes import run
    from vlp_course.recipes.shipped import load_scene_checkpoint

    pre, ad, _ = load_scene_checkpoint(kind)
    source = None if condition == "scratch" else pre
    if task == "vqa":
        _, acc, secs = run.finetune_from(source, ad, steps, batch=VQA_BATCH, lr=VQA_LR, seed=seed, device=device)
    else:
        _, acc, secs = run.finetune_nlvr2_from(source, ad, build_pair_tensors(ad.st, n_train_pairs=NLVR2_TRAIN_PAIRS), steps,
                                               batch=NLVR2_BATCH, lr=NLVR2_LR,
                                               seed=seed, device=device)
    return _row(kind, f"{task}_accuracy", condition, seed, steps, acc, secs, measured)


def jobs(kinds, seeds, vqa_steps: int, nlvr2_steps: int) -> list[tuple]:
    """Every fine-tune to run, as ``(kind, task, condition, seed, steps)``, the slowest first."""
    out = [(k, "nlvr2", c, s, nlvr2_steps) for k in kinds for s in seeds for c in NLVR2_CONDITIONS]
    out += [(k, "vqa", c, s, vqa_steps) for k in kinds for s in seeds for c in VQA_CONDITIONS]
    return out


#: The two groups of measures, re-measurable apart (``--only``).
GROUPS = {"speed": ("parameters", "examples_per_s"), "accuracy": ("vqa_accuracy", "nlvr2_accuracy")}


def run_bench(kinds=KINDS, *, seeds=SEEDS, vqa_steps: int = VQA_STEPS, nlvr2_steps: int = NLVR2_STEPS,
              throughput_steps: int = THROUGHPUT_STEPS, workers: int = 1, groups=tuple(GROUPS), log=print) -> list[dict]:
    """The rows of :data:`COLUMNS` for ``kinds``: sizes and speeds first (in this process, alone), then the
    fine-tunes, in ``workers`` one-thread processes when ``workers`` > 1; ``groups``: which of :data:`GROUPS`."""
    measured = f"{dt.date.today().isoformat()} on {machine()}"
    rows = []
    for k in kinds if "speed" in groups else ():
        rows += measure_size_and_speed(k, steps=throughput_steps, measured=measured)
        log(f"{k:10s} " + ", ".join(f"{r['condition']} {r['value']:g}" for r in rows if r["model"] == k))
    todo = jobs(kinds, seeds, vqa_steps, nlvr2_steps) if "accuracy" in groups else []
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(measure_accuracy, *j, measured=f"{dt.date.today().isoformat()} on {machine()}"
                                   .replace(f"({torch.get_num_threads()} threads)", "(1 thread)"), threads=1) for j in todo]
            for f in futures:
                rows.append(f.result())
                log(_describe(rows[-1]))
    else:
        for j in todo:
            rows.append(measure_accuracy(*j, measured=measured))
            log(_describe(rows[-1]))
    return sorted(rows, key=lambda r: KINDS.index(r["model"]))


def _describe(r: dict) -> str:
    return f"{r['model']:10s} {r['measure']:15s} {r['condition']:15s} seed {r['seed']}: {float(r['value']):.1%} ({float(r['seconds']):.0f} s)"


def summary(rows: list[dict]) -> dict[tuple[str, str, str], tuple[float, float, int]]:
    """``{(model, measure, condition): (mean, sample std, count)}`` over seeds (std 0 for one row)."""
    out: dict[tuple[str, str, str], list[float]] = {}
    for r in rows:
        out.setdefault((r["model"], r["measure"], r["condition"]), []).append(float(r["value"]))
    return {k: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for k, v in out.items()}


def markdown_tables(rows: list[dict]) -> list[str]:
    """The comparison as markdown: sizes and speeds, then the accuracies (mean ± std over seeds)."""
    s = summary(rows)
    models = [k for k in KINDS if any(r["model"] == k for r in rows)]
    pct = lambda key: f"{100 * s[key][0]:.1f} ± {100 * s[key][1]:.1f}%" if key in s else "—"  # noqa: E731
    over_half = lambda key: f"{100 * (s[key][0] - 0.5):+.1f}" if key in s else "—"  # noqa: E731
    num = lambda key, fmt="{:,.0f}": fmt.format(s[key][0]) if key in s else "—"  # noqa: E731
    lines = ["## Size and training speed", "",
             "| model | streams | parameters (pretraining model) | pretraining examples/s | VQA examples/s | NLVR2 pairs/s |",
             "|---|---|---|---|---|---|"]
    for m in models:
        lines.append(f"| {NAMES[m]} | {STREAMS[m]} | {num((m, 'parameters', 'pretraining model'))} | "
                     f"{num((m, 'examples_per_s', 'pretrain'))} | {num((m, 'examples_per_s', 'vqa'))} | "
                     f"{num((m, 'examples_per_s', 'nlvr2'))} |")
    lines += ["", "## Accuracy on the held-out images, with and without pretraining", "",
              "| model | streams | VQA from the checkpoint | VQA from scratch | gain | NLVR2 from the checkpoint | "
              "NLVR2 from scratch | gain | checkpoint over statement only (50%) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        def gain(task, a, b):
            ka, kb = (m, f"{task}_accuracy", a), (m, f"{task}_accuracy", b)
            return f"{100 * (s[ka][0] - s[kb][0]):+.1f}" if ka in s and kb in s else "—"
        lines.append(f"| {NAMES[m]} | {STREAMS[m]} | {pct((m, 'vqa_accuracy', 'pretrained'))} | "
                     f"{pct((m, 'vqa_accuracy', 'scratch'))} | {gain('vqa', 'pretrained', 'scratch')} | "
                     f"{pct((m, 'nlvr2_accuracy', 'pretrained'))} | {pct((m, 'nlvr2_accuracy', 'scratch'))} | "
                     f"{gain('nlvr2', 'pretrained', 'scratch')} | {over_half((m, 'nlvr2_accuracy', 'pretrained'))} |")
    seeds = sorted({int(r["seed"]) for r in rows if r["measure"].endswith("accuracy")})
    lines += ["", f"Mean ± sample standard deviation over seeds {', '.join(map(str, seeds))}; gains in points."]
    return lines


def read_rows(out: Path) -> list[dict]:
    """The rows of ``out``/compare.csv ([] when there is none)."""
    p = out / "compare.csv"
    if not p.exists():
        return []
    with p.open(newline="") as fh:
        return list(csv.DictReader(fh))


def write(rows: list[dict], out: Path, header: list[str]) -> None:
    """``out``/compare.csv and compare.md; with the default ``out``, the csv is also copied byte for byte to
    ``vlp_course/shipped/compare.csv``, where notebook 16 reads it (``shipped.comparison_results``)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "compare.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    if out.resolve() == (HERE / "results").resolve():
        shipped = files.shipped_dir() / "compare.csv"
        shutil.copyfile(out / "compare.csv", shipped)
        files.record_sha256(shipped)
    (out / "compare.md").write_text("\n".join(["# The four models compared (bench_compare.py)", "", *header, "",
                                               *markdown_tables(rows), ""]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="VisualBERT, one seed, a few steps: a smoke run (nothing written)")
    ap.add_argument("--models", nargs="+", choices=KINDS, default=None,
                    help="measure only these models; the other models' rows are kept from the existing compare.csv")
    ap.add_argument("--workers", type=int, default=1, help="fine-tunes in this many one-thread processes")
    ap.add_argument("--only", choices=tuple(GROUPS), default=None,
                    help="measure only sizes and speeds, or only accuracies; the other rows are kept from compare.csv")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    t = time.perf_counter()
    if args.quick:
        rows = run_bench(("visualbert",), seeds=(0,), vqa_steps=5, nlvr2_steps=5, throughput_steps=2)
        print("\n".join(markdown_tables(rows)))
        return 0
    kinds = tuple(args.models or KINDS)
    groups = (args.only,) if args.only else tuple(GROUPS)
    rows = run_bench(kinds, workers=args.workers, groups=groups)
    out = Path(args.out)
    redone = {m for g in groups for m in GROUPS[g]}
    kept = [r for r in read_rows(out) if r["model"] not in kinds or r["measure"] not in redone] if args.models or args.only else []
    rows = sorted(kept + rows, key=lambda r: KINDS.index(r["model"]))
    what = ", ".join(kinds) + ("" if not args.only else f" ({args.only})")
    header = [f"{'Rows of ' + what if args.models or args.only else 'Measured'} {dt.date.today().isoformat()} on "
              f"{machine()}; {(time.perf_counter() - t) / 60:.0f} min in all"
              + (f" (fine-tunes in {args.workers} one-thread processes)." if args.workers > 1 else ".")
              + (" The other models' rows are kept from an earlier run (the `measured` column of compare.csv)." if kept else ""),
              f"VQA: every training question, {VQA_STEPS} steps of batch {VQA_BATCH}, AdamW {VQA_LR:g}. "
              f"NLVR2: {NLVR2_TRAIN_PAIRS:,} training pairs, {NLVR2_STEPS} steps of {NLVR2_BATCH} pairs, AdamW {NLVR2_LR:g}; "
              "a statement-only model scores exactly 50% (each held-out sentence once true, once false). Warm-up 50 steps. "
              f"Throughput: batch {THROUGHPUT_BATCH}, {THROUGHPUT_STEPS} timed steps after 2 untimed."]
    write(rows, out, header)
    print((out / "compare.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
