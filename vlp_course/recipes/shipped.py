"""The shipped course checkpoints: each of the four models pretrained on the scenes with its own tasks.

A notebook's CPU budget (about a minute) is too short for a from-scratch model to learn to use the
image; the course therefore ships, per model, a small checkpoint pretrained longer with that model's
own pretraining tasks (``vlp_course/shipped/<model>_scenes.safetensors``, SHA-256 in ``vlp_course/shipped/SHA256SUMS``,
package data: a pip install has them), and the
notebooks fine-tune it briefly for VQA. Reproduce one with::

    python -m vlp_course.recipes.shipped --model visualbert      # or lxmert, vilbert, vlbert

The file's metadata holds the :class:`~vlp_course.recipes.base.Recipe`, the vocabulary, the final
losses, the training time and the loss curves.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import torch
from vlp_course import files
from vlp_course.checkpoints import load_safetensors, read_header_metadata, save_safetensors
from vlp_course.recipes.base import KINDS, PAIRINGS, Recipe, SceneAdapter, scene_tensors
from vlp_course.recipes.lxmert import LxmertAdapter
from vlp_course.recipes.run import pretrain
from vlp_course.recipes.vilbert import ViLBERTAdapter
from vlp_course.recipes.visualbert import VisualBertAdapter
from vlp_course.recipes.vlbert import VLBERTAdapter

__all__ = ["ADAPTERS", "STEPS", "default_recipe", "adapter", "checkpoint_name", "load_scene_checkpoint", "train_scene_checkpoint",
           "learning_results", "format_learning_results", "recipe_study", "format_recipe_study",
           "COMPARISON_COLUMNS", "comparison_results"]

ADAPTERS: dict[str, type[SceneAdapter]] = {"visualbert": VisualBertAdapter, "lxmert": LxmertAdapter,
                                            "vilbert": ViLBERTAdapter, "vlbert": VLBERTAdapter}


#: Steps of each shipped checkpoint where they differ from :attr:`Recipe.steps`: those whose matching task
#: leaves chance late. VisualBERT's leaves it after about 1,200 steps; its held-out matching accuracy is
#: 0.74 at 2,000 steps and levels off near 0.87 from about 5,000. LXMERT (five tasks, a third of its rows
#: questions) stays at chance for about 3,500 steps and reaches 0.78 (training batches) by 5,000. Stopped
#: earlier, neither checkpoint beat scratch by much in ``benchmarks/bench_learning.py``.
STEPS = {"lxmert": 6000, "visualbert": 5000}


def default_recipe(kind: str) -> Recipe:
    """The recipe of the shipped ``kind`` checkpoint (what the command-line tool reproduces)."""
    return Recipe(kind=kind, steps=STEPS.get(kind, Recipe.steps))


def adapter(st, recipe: Recipe) -> SceneAdapter:
    """The adapter of ``recipe.kind`` over the scene tensors ``st``."""
    return ADAPTERS[recipe.kind](st, recipe)


def checkpoint_name(kind: str, pairing: str = "aligned") -> str:
    """``<kind>_scenes.safetensors``; the wrong-scene control: ``<kind>_scenes_wrong.safetensors``."""
    return f"{kind}_scenes.safetensors" if pairing == "aligned" else f"{kind}_scenes_wrong.safetensors"


def _rebuild(kind: str) -> str:
    return f"python -m vlp_course.recipes.shipped --model {kind}"


def load_scene_checkpoint(kind: str, path: str | Path | None = None):
    """Load a course checkpoint: returns ``(model, adapter, metadata)``.

    The file (default ``vlp_course/shipped/<kind>_scenes.safetensors``) must match its SHA-256 in
    ``vlp_course/shipped/SHA256SUMS``; its metadata holds the :class:`Recipe` and the vocabulary, so the data are
    rebuilt exactly as in training. When an install lacks the ``vlp_course/shipped/`` files (a broken one), the
    checkpoint is pretrained once with the default recipe (on CUDA when available) and cached.

    Raises:
        ValueError: unknown kind, a SHA-256 mismatch, or a checkpoint whose keys do not fit the model.
        FileNotFoundError: if the file is missing (reproduce it with the command in the module docstring).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    p = Path(path) if path is not None else files.shipped_dir() / checkpoint_name(kind)
    if not p.exists() and path is None:
        # an install without vlp_course/shipped/ (a broken one; pip and Colab have it): train it once, cache it
        cached = files.cache_dir() / "checkpoints" / checkpoint_name(kind)
        if not cached.exists():
            warnings.warn(f"{p} is not here: pretraining the {kind} checkpoint now (minutes on a CPU, "
                          f"seconds on a GPU); it is cached in {cached}", stacklevel=2)
            device = "cuda" if torch.cuda.is_available() else None
            train_scene_checkpoint(default_recipe(kind), cached, device=device, progress=True)
        p, path = cached, cached
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing; reproduce it with: {_rebuild(kind)}")
    if path is None:
        files.check_shipped(p, _rebuild(kind))
    meta = read_header_metadata(p)
    recipe = Recipe(**json.loads(meta["recipe"]))
    ad = adapter(scene_tensors(recipe, vocab_tokens=json.loads(meta["vocab"])), recipe)
    model = ad.pretraining_model()
    missing, unexpected = model.load_state_dict(load_safetensors(p), strict=False)
    if missing or unexpected:
        raise ValueError(f"{p} does not fit {type(model).__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval(), ad, meta


#: The columns ``learning.csv`` must have (written by ``benchmarks/bench_learning.py``).
LEARNING_COLUMNS = ("model", "condition", "labels", "seed", "steps", "vqa_accuracy", "seconds", "measured")


def _read_results(p: Path, columns: tuple[str, ...], writer: str) -> list[dict[str, str]]:
    """The rows of a benchmark's CSV, after checking that it exists and has ``columns``."""
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing; {writer} writes it")
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{p} lacks the columns {missing}; expected {list(columns)}")
        return list(reader)


def _accuracies_by(rows: list[dict[str, str]], column: str) -> dict[str, list[float]]:
    """The rows' VQA accuracies grouped by ``column``, in the order the groups first appear."""
    acc: dict[str, list[float]] = {}
    for r in rows:
        acc.setdefault(r[column], []).append(float(r["vqa_accuracy"]))
    return acc


def learning_results(kind: str, path: str | Path | None = None) -> dict:
    """The shipped result of the pretraining-gain benchmark for ``kind`` (``benchmarks/bench_learning.py``,
    copied to ``vlp_course/shipped/learning.csv`` so an installed package has it).

    Returns:
        ``{"conditions": {condition: (mean, std, seeds)}, "labels": int, "steps": int, "measured": str}``:
        per condition (``"pretrained"``, ``"scratch"``, ``"wrong_scenes"``) the official VQA accuracy in
        [0, 1] over the seeds (std 0 with one seed); ``measured`` is the date and machine of the rows.

    Raises:
        ValueError: unknown ``kind``, a file without the columns of :data:`LEARNING_COLUMNS`, or no rows for ``kind``.
        FileNotFoundError: if the file is missing (``python benchmarks/bench_learning.py`` writes it).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    p = Path(path) if path is not None else files.shipped_dir() / "learning.csv"
    rows = [r for r in _read_results(p, LEARNING_COLUMNS, "python benchmarks/bench_learning.py") if r["model"] == kind]
    if not rows:
        raise ValueError(f"{p} has no rows for {kind!r}")
    return {"conditions": {c: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
                           for c, v in _accuracies_by(rows, "condition").items()},
            "labels": int(rows[0]["labels"]), "steps": int(rows[0]["steps"]),
            "measured": "; ".join(dict.fromkeys(r["measured"] for r in rows))}


def format_learning_results(results: dict) -> str:
    """:func:`learning_results` as printable lines: the date and machine, the budget, one line per
    condition (mean ± std over seeds) and each condition's gain over scratch in points."""
    c = results["conditions"]
    lines = [f"bench_learning.py, measured {results['measured']}",
             f"{results['labels']} labels, {results['steps']} fine-tuning steps; "
             "official VQA accuracy on the held-out images, mean ± std over seeds"]
    for cond, (mean, std, n) in c.items():
        gain = f"  {100 * (mean - c['scratch'][0]):+.1f} points over scratch" if "scratch" in c and cond != "scratch" else ""
        lines.append(f"  {cond:14s} {mean:6.1%} ± {std:4.1%} ({n} seeds){gain}")
    return "\n".join(lines)


#: The columns ``vlbert_recipe.csv`` must have (written by ``benchmarks/bench_learning.py --vlbert``).
STUDY_COLUMNS = ("model", "change", "seed", "steps", "batch", "vqa_accuracy", "seconds", "measured")


def recipe_study(path: str | Path | None = None) -> dict:
    """The shipped VL-BERT recipe study (``benchmarks/bench_learning.py --vlbert``, copied to
    ``vlp_course/shipped/vlbert_recipe.csv``): VQA accuracy from scratch, one change at a time.

    Returns:
        ``{"changes": {label: (mean, std, lowest, highest, seeds)}, "steps": int, "batch": int, "measured": str}``
        with the changes in the file's order (the first is the original recipe); accuracies in [0, 1].

    Raises:
        ValueError: a file without the columns of :data:`STUDY_COLUMNS`, or without rows.
        FileNotFoundError: if the file is missing.
    """
    p = Path(path) if path is not None else files.shipped_dir() / "vlbert_recipe.csv"
    rows = _read_results(p, STUDY_COLUMNS, "python benchmarks/bench_learning.py --vlbert")
    if not rows:
        raise ValueError(f"{p} has no rows")
    return {"changes": {c: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, min(v), max(v), len(v))
                        for c, v in _accuracies_by(rows, "change").items()},
            "steps": int(rows[0]["steps"]), "batch": int(rows[0]["batch"]),
            "measured": "; ".join(dict.fromkeys(r["measured"] for r in rows))}


def format_recipe_study(results: dict) -> str:
    """:func:`recipe_study` as printable lines: date and machine, budget, one line per change with its
    mean ± std, its lowest and highest seed, and its difference from the first (original) row in points."""
    c = results["changes"]
    base = next(iter(c.values()))[0]
    lines = [f"bench_learning.py --vlbert, measured {results['measured']}",
             f"from scratch, all training questions, {results['steps']} steps of batch {results['batch']}; "
             "official VQA accuracy on the held-out images"]
    for label, (mean, std, lo, hi, n) in c.items():
        lines.append(f"  {label:68s} {mean:6.1%} ± {std:4.1%} (seeds: {lo:.1%} to {hi:.1%}) {100 * (mean - base):+5.1f}")
    return "\n".join(lines)


#: The columns ``compare.csv`` must have (written by ``benchmarks/bench_compare.py``).
COMPARISON_COLUMNS = ("model", "measure", "condition", "seed", "steps", "value", "seconds", "measured")


def comparison_results(path: str | Path | None = None) -> dict:
    """The shipped head-to-head comparison of the four models (``benchmarks/bench_compare.py``, copied to
    ``vlp_course/shipped/compare.csv``).

    Returns:
        ``{"values": {(model, measure, condition): (mean, std, seeds)}, "steps": {(model, measure, condition): steps},
        "measured": str}``. Measures: ``"parameters"`` (conditions "pretraining model", "vqa model", "nlvr2 model"),
        ``"examples_per_s"`` ("pretrain", "vqa", "nlvr2"), ``"vqa_accuracy"`` ("pretrained", "scratch") and
        ``"nlvr2_accuracy"`` ("pretrained", "scratch"), accuracies in [0, 1]; std is the
        sample standard deviation over seeds (0 with one). ``measured``: the rows' dates and machines.

    Raises:
        ValueError: a file without the columns of :data:`COMPARISON_COLUMNS`, or without rows.
        FileNotFoundError: if the file is missing.
    """
    p = Path(path) if path is not None else files.shipped_dir() / "compare.csv"
    rows = _read_results(p, COMPARISON_COLUMNS, "python benchmarks/bench_compare.py")
    if not rows:
        raise ValueError(f"{p} has no rows")
    groups: dict[tuple[str, str, str], list[float]] = {}
    steps: dict[tuple[str, str, str], int] = {}
    for r in rows:
        key = (r["model"], r["measure"], r["condition"])
        groups.setdefault(key, []).append(float(r["value"]))
        steps[key] = int(r["steps"])
    return {"values": {k: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for k, v in groups.items()},
            "steps": steps, "measured": "; ".join(dict.fromkeys(r["measured"] for r in rows))}


def _curves(train: dict[str, list[float]], window: int) -> dict[str, list[float]]:
    n = len(next(iter(train.values())))
    starts = list(range(0, n - window + 1, window))
    out = {"step": [s + window for s in starts]}
    for k, v in train.items():
        out[k] = [round(sum(v[s:s + window]) / window, 4) for s in starts]
    return out


def train_scene_checkpoint(recipe: Recipe, path: str | Path, *, device=None, progress: bool = True) -> Path:
    """Pretrain ``recipe``'s model from scratch and write it to ``path`` (safetensors, atomically) with
    its metadata: the recipe, the vocabulary, the final losses, the seconds and the loss curves."""
    st = scene_tensors(recipe)
    ad = adapter(st, recipe)
    torch.manual_seed(recipe.seed)
    model = ad.pretraining_model()
    t = time.perf_counter()
    hist = pretrain(model, ad, recipe.steps, seed=recipe.seed, progress=progress, device=device)
    secs = time.perf_counter() - t
    last = {k: float(sum(v[-100:]) / len(v[-100:])) for k, v in hist.train.items()}
    print(f"{recipe.kind}: {recipe.steps} steps in {secs:.0f} s; last 100 steps: "
          + ", ".join(f"{k} {v:.3f}" for k, v in last.items()))
    meta = {"recipe": json.dumps(asdict(recipe)), "vocab": json.dumps(st.vocab.itos),
            "final_losses": json.dumps({k: round(v, 4) for k, v in last.items()}), "train_seconds": f"{secs:.0f}",
            # the training curves, averaged over windows of 50 steps: {"step": [...], "mlm": [...], ...}
            "history": json.dumps(_curves(hist.train, 50))}
    return save_safetensors(model, path, metadata=meta)  # tied weights stored once, restored under every name


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Pretrain a course model on the scenes and write vlp_course/shipped/<model>_scenes.safetensors")
    ap.add_argument("--model", choices=KINDS, required=True)
    ap.add_argument("--steps", type=int, default=None, help=f"default: {Recipe.steps} ({STEPS} where they differ)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--pairing", choices=PAIRINGS, default="aligned",
                    help="wrong_scenes: the control, every caption shown with another scene")
    ap.add_argument("--out", default=str(files.shipped_dir()))
    args = ap.parse_args(argv)
    target = Path(args.out) / checkpoint_name(args.model, args.pairing)
    recipe = replace(default_recipe(args.model), pairing=args.pairing)
    if args.steps is not None:
        recipe = replace(recipe, steps=args.steps)
    train_scene_checkpoint(recipe, target, device=args.device)
    digest = files.record_sha256(target)
    print(f"wrote {target} ({target.stat().st_size:,} bytes), sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())

