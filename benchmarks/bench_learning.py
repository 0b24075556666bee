"""Does pretraining help? VQA accuracy in the low-label regime, pretrained against scratch against a control.

    python benchmarks/bench_learning.py                 # -> benchmarks/results/learning.md and learning.csv
    python benchmarks/bench_learning.py --quick         # one model, one seed, few steps: a smoke run
    python benchmarks/bench_learning.py --models visualbert   # re-measure some models, keep the others' rows
    python benchmarks/bench_learning.py --vlbert        # VL-BERT's recipe one change at a time -> results/vlbert_recipe.md
    python benchmarks/run_all.py --only learning        # the same, inside the benchmark table

For each of the four models, with ``LABELS`` labelled training questions (the low-label regime) and
the same fine-tune budget (``STEPS`` steps of batch ``BATCH``, AdamW 1e-3, warm-up 50), the VQA
model starts from:

* ``pretrained``: the shipped checkpoint (``vlp_course/shipped/<model>_scenes.safetensors``);
* ``scratch``: nothing (the same fresh initialisation of the answer head and of everything else);
* ``wrong_scenes``: the **control**, a checkpoint pretrained with the same recipe and the same number of
  steps on captions (and, for LXMERT, questions) shown with the wrong scenes
  (:meth:`~vlp_course.data.vl_tensors.SceneTensors.with_wrong_scenes`). If the gain came from
  aligned image-text pairs it must vanish here; if it came from merely seeing the words and the
  regions (their statistics, the scale of the features), it would survive.

The control checkpoint is not shipped: it is built once with
``python -m vlp_course.recipes.shipped --model <model> --pairing wrong_scenes`` (the same time as the
shipped one, minutes per model on two cores) and cached in ``cache_dir()/checkpoints``.
Each condition runs with three seeds (the labelled subset, the fresh weights and the batch order
all follow the seed); the table gives mean ± standard deviation and the gain in points.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import Row, machine  # noqa: E402

from vlp_course import files  # noqa: E402
from vlp_course.recipes import run as recipe_run  # noqa: E402
from vlp_course.recipes.base import KINDS  # noqa: E402
from vlp_course.recipes.shipped import (STUDY_COLUMNS, checkpoint_name, default_recipe, load_scene_checkpoint,  # noqa: E402
                                        recipe_study, train_scene_checkpoint)

LABELS = 500
STEPS = 300
BATCH = 64
SEEDS = (0, 1, 2)
CONDITIONS = ("pretrained", "scratch", "wrong_scenes")
COLUMNS = ["model", "condition", "labels", "seed", "steps", "vqa_accuracy", "seconds", "measured"]


def control_checkpoint(kind: str, *, device=None) -> tuple[Path, float]:
    """The wrong-scene control of ``kind`` (built and cached on first use): ``(path, seconds it took to build)``."""
    from dataclasses import replace

    path = files.cache_dir() / "checkpoints" / checkpoint_name(kind, "wrong_scenes")
    if path.exists():
        return path, 0.0
    t = time.perf_counter()
    train_scene_checkpoint(replace(default_recipe(kind), pairing="wrong_scenes"), path, device=device, progress=False)
    return path, time.perf_counter() - t


def measure(kind: str, *, labels: int = LABELS, steps: int = STEPS, batch: int = BATCH, seeds=SEEDS,
            conditions=CONDITIONS, device=None, log=print) -> list[dict]:
    """One row per (condition, seed): the columns of :data:`COLUMNS`."""
    pre, ad, _ = load_scene_checkpoint(kind)
    measured = f"{dt.date.today().isoformat()} on {machine()}"
    sources = {"pretrained": pre, "scratch": None}
    if "wrong_scenes" in conditions:
        path, built = control_checkpoint(kind, device=device)
        if built:
            log(f"{kind}: built the wrong-scene control in {built:.0f} s")
        sources["wrong_scenes"] = load_scene_checkpoint(kind, path)[0]
    rows = []
    for seed in seeds:
        questions = ad.st.labelled_questions(labels, seed=seed)
        for cond in conditions:
            src = sources[cond]
            _, acc, secs = recipe_run.finetune_from(src.to(device or "cpu") if src is not None else None, ad, steps,
                                             questions=questions, batch=batch, seed=seed, device=device)
            rows.append({"model": kind, "condition": cond, "labels": labels, "seed": seed, "steps": steps,
                         "vqa_accuracy": round(acc, 4), "seconds": round(secs, 1), "measured": measured})
            log(f"{kind:10s} {cond:12s} seed {seed}: {acc:.1%} ({secs:.0f} s)")
    return rows


def summary(rows: list[dict]) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(model, condition): (mean, std)}`` of the VQA accuracy over seeds."""
    out: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        out.setdefault((r["model"], r["condition"]), []).append(float(r["vqa_accuracy"]))
    return {k: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) for k, v in out.items()}


def markdown_table(rows: list[dict]) -> list[str]:
    s = summary(rows)
    models = list(dict.fromkeys(r["model"] for r in rows))
    n = len({r["seed"] for r in rows})
    lines = ["| model | pretrained | from scratch | wrong-scene control | gain over scratch (points) | control's gain (points) |",
             "|---|---|---|---|---|---|"]
    for m in models:
        cell = {c: s.get((m, c)) for c in CONDITIONS}
        fmt = {c: (f"{100 * v[0]:.1f} ± {100 * v[1]:.1f}%" if v else "—") for c, v in cell.items()}
        gain = f"{100 * (cell['pretrained'][0] - cell['scratch'][0]):+.1f}" if cell["pretrained"] and cell["scratch"] else "—"
        ctrl = f"{100 * (cell['wrong_scenes'][0] - cell['scratch'][0]):+.1f}" if cell["wrong_scenes"] and cell["scratch"] else "—"
        lines.append(f"| {m} | {fmt['pretrained']} | {fmt['scratch']} | {fmt['wrong_scenes']} | {gain} | {ctrl} |")
    lines.append("")
    lines.append(f"Mean ± standard deviation over {n} seed{'s' if n > 1 else ''}; official VQA accuracy on the held-out images.")
    return lines


def write(rows: list[dict], out: Path, header: list[str]) -> None:
    """``out``/learning.csv and learning.md; with the default ``out``, the csv is also copied to
    ``vlp_course/shipped/learning.csv``, where the notebooks read it (``shipped.learning_results``)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "learning.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    if out.resolve() == (HERE / "results").resolve():
        shipped = files.shipped_dir() / "learning.csv"
        shutil.copyfile(out / "learning.csv", shipped)  # byte for byte the benchmark's file
        files.record_sha256(shipped)  # the shipped folder lists every file's SHA-256
    (out / "learning.md").write_text("\n".join(["# Does pretraining help? (bench_learning.py)", "", *header, "",
                                                *markdown_table(rows), ""]))


#: What held the old recipe back: one change at a time from this recipe (VisualBERT, from scratch, all labels).
ABLATION_STEPS = 600
ABLATIONS = (
    ("this recipe: detector features, batch 128, lr 1e-3, warm-up 50, init 0.07, no dropout", {}, {}),
    ("question only (image zeroed)", {}, {"zero_image": True}),
    ("oracle features (one-hot + noise 0.3), as before", {"features": "oracle"}, {}),
    ("batch 32 (as before), same steps", {}, {"batch": 32}),
    ("init 0.02 (BERT-base's, too small at width 64)", {"init": 0.02}, {}),
    ("dropout 0.1 (the originals')", {"dropout": 0.1}, {}),
    ("learning rate 1e-4", {}, {"lr": 1e-4}),
    ("no warm-up", {}, {"warmup": 0}),
    ("width 128 (init 0.05)", {"hidden": 128, "ffn": 512, "init": 0.049}, {}),
    ("4 layers", {"layers": 4}, {}),
    (f"half the steps ({ABLATION_STEPS // 2})", {}, {"steps": ABLATION_STEPS // 2}),
)


def recipe_ablation(kind: str = "visualbert", steps: int = ABLATION_STEPS, seed: int = 0, log=print) -> list[dict]:
    """VQA accuracy from scratch with all training questions, changing one thing at a time."""
    from dataclasses import replace

    from vlp_course.recipes.base import Recipe, scene_tensors
    from vlp_course.recipes.shipped import adapter

    rows = []
    for label, recipe_change, run_change in ABLATIONS:
        r = replace(Recipe(kind=kind), **recipe_change)
        ad = adapter(scene_tensors(r), r)
        kw = {"steps": steps, **run_change}
        _, acc, secs = recipe_run.finetune_from(None, ad, kw.pop("steps"), seed=seed, **kw)
        rows.append({"model": kind, "change": label, "steps": run_change.get("steps", steps), "seed": seed,
                     "vqa_accuracy": round(acc, 4), "seconds": round(secs, 1)})
        log(f"{label:70s} {acc:.1%} ({secs:.0f} s)")
    return rows


def write_ablation(rows: list[dict], out: Path, header: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "recipe.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    base = rows[0]["vqa_accuracy"]
    lines = ["# What held the recipe back (bench_learning.py --recipe)", "", *header, "",
             "| change | steps | VQA accuracy | points against this recipe | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {r['change']} | {r['steps']} | {100 * r['vqa_accuracy']:.1f}% | {100 * (r['vqa_accuracy'] - base):+.1f} | "
              f"{r['seconds']:.0f} |" for r in rows]
    (out / "recipe.md").write_text("\n".join(lines + [""]))


#: VL-BERT on the scenes, from scratch with all training questions: its original recipe against one
#: change at a time, with VisualBERT on the same budget as the reference (``--vlbert``).
STUDY_STEPS = 600
ORIGINAL = {"visual_scale_text_init": 0.0, "visual_scale_object_init": 0.0}  # cfgs/*/*.yaml of the original
VLBERT_CHANGES = (
    # (label, model, VLBERTConfig settings, VQA loss, image zeroed)
    ("as the original: both visual LayerNorms start at 0, BCE loss", "vlbert", ORIGINAL, "bce", False),
    ("the regions' visual LayerNorm starts at 1 (the words' stays at 0)", "vlbert",
     {**ORIGINAL, "visual_scale_object_init": 1.0}, "bce", False),
    ("both visual LayerNorms start at 1", "vlbert", {"visual_scale_text_init": 1.0, "visual_scale_object_init": 1.0},
     "bce", False),
    ("as the original, with VisualBERT's KL loss", "vlbert", ORIGINAL, "kl", False),
    ("the regions' LayerNorm at 1 and the KL loss", "vlbert", {**ORIGINAL, "visual_scale_object_init": 1.0}, "kl", False),
    ("as the original, question only (image zeroed)", "vlbert", ORIGINAL, "bce", True),
    ("VisualBERT, its own recipe (KL loss)", "visualbert", {}, "kl", False),
)


def study_adapter(st, recipe, config_changes: dict, loss: str):
    """The recipe's adapter; for VL-BERT with ``config_changes`` set in its config and ``loss``
    ``"kl"``: VisualBERT's KL divergence on the answer scores instead of VL-BERT's binary cross-entropy."""
    from dataclasses import replace

    from vlp_course.models.blocks import VLOutput
    from vlp_course.models.visualbert import vqa_kl_loss
    from vlp_course.recipes.shipped import adapter
    from vlp_course.recipes.vlbert import VLBERTAdapter

    if recipe.kind != "vlbert":
        return adapter(st, recipe)

    class Variant(VLBERTAdapter):
        def config(self, num_answers=None):
            return replace(super().config(num_answers), **config_changes)

        def vqa_step(self, model, batch, zero_image=False):
            if loss == "bce" or "soft_scores" not in batch:
                return super().vqa_step(model, batch, zero_image)
            out = super().vqa_step(model, {k: v for k, v in batch.items() if k != "soft_scores"}, zero_image)
            kl = vqa_kl_loss(out.logits["vqa"], batch["soft_scores"])
            return VLOutput(loss=kl, losses={"vqa": kl}, logits=out.logits, encoder=out.encoder)

    return Variant(st, recipe)


def vlbert_study(steps: int = STUDY_STEPS, batch: int = BATCH, seeds=SEEDS, log=print) -> list[dict]:
    """One row per (change, seed) of :data:`VLBERT_CHANGES`: VQA accuracy from scratch after ``steps``
    steps of batch ``batch`` on all training questions (columns :data:`STUDY_COLUMNS`)."""
    from vlp_course.recipes.base import Recipe, scene_tensors

    measured = f"{dt.date.today().isoformat()} on {machine()}"
    rows = []
    for seed in seeds:
        for label, kind, config_changes, loss, zero_image in VLBERT_CHANGES:
            ad = study_adapter(scene_tensors(Recipe(kind=kind)), Recipe(kind=kind), config_changes, loss)  # built once
            _, acc, secs = recipe_run.finetune_from(None, ad, steps, batch=batch, seed=seed, zero_image=zero_image)
            rows.append({"model": kind, "change": label, "seed": seed, "steps": steps, "batch": batch,
                         "vqa_accuracy": round(acc, 4), "seconds": round(secs, 1), "measured": measured})
            log(f"seed {seed} {label:70s} {acc:.1%} ({secs:.0f} s)")
    return rows


def write_study(rows: list[dict], out: Path, header: list[str]) -> None:
    """``out``/vlbert_recipe.csv and .md; with the default ``out`` the csv is also copied to
    ``vlp_course/shipped/vlbert_recipe.csv`` (read by ``shipped.recipe_study``, printed in notebook 13)."""
    out.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=list(STUDY_COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    (out / "vlbert_recipe.csv").write_text(text.getvalue())
    if out.resolve() == (HERE / "results").resolve():
        shipped = files.shipped_dir() / "vlbert_recipe.csv"
        shipped.write_text(text.getvalue())
        files.record_sha256(shipped)
    study = recipe_study(out / "vlbert_recipe.csv")  # the same reader notebook 13 uses
    base = next(iter(study["changes"].values()))[0]  # the first change listed: the original recipe
    lines = ["# VL-BERT's recipe on the scenes, one change at a time (bench_learning.py --vlbert)", "", *header, "",
             "| change | VQA accuracy (mean ± std) | points against the original | lowest, highest seed |", "|---|---|---|---|"]
    for label, (mean, sd, lo, hi, _) in study["changes"].items():
        lines.append(f"| {label} | {100 * mean:.1f} ± {100 * sd:.1f}% | {100 * (mean - base):+.1f} | "
                     f"{100 * lo:.1f}%, {100 * hi:.1f}% |")
    (out / "vlbert_recipe.md").write_text("\n".join(lines + [""]))


def read_rows(out: Path) -> list[dict]:
    """The rows of an existing ``learning.csv`` in ``out`` (numbers as numbers); [] if there is none."""
    path = out / "learning.csv"
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r.update(labels=int(r["labels"]), seed=int(r["seed"]), steps=int(r["steps"]),
                 vqa_accuracy=float(r["vqa_accuracy"]), seconds=float(r["seconds"]), measured=r.get("measured") or "unknown")
    return rows


def run_bench(quick: bool = False, out: Path | None = None, log=print, kinds=None) -> list[dict]:
    kinds = KINDS[:1] if quick else (kinds or KINDS)
    kw = dict(steps=20, seeds=(0,), conditions=("pretrained", "scratch")) if quick else {}
    rows = []
    for kind in kinds:
        rows += measure(kind, log=log, **kw)
    return rows


def run(quick: bool = False, out: Path | None = None) -> list[Row]:
    """For ``run_all.py``: one :class:`Row` per (model, condition, seed); the full run also writes learning.md/.csv."""
    t = time.perf_counter()
    rows = run_bench(quick)
    if not quick and out is not None:
        write(rows, Path(out), _header(time.perf_counter() - t))
    return [Row("learning", f"{r['model']} {r['condition']} seed {r['seed']}", "VQA accuracy", float(r["vqa_accuracy"]),
                "fraction", extra={"labels": r["labels"], "steps": r["steps"], "seconds": r["seconds"]}) for r in rows]


def markdown(rows: list[Row]) -> list[str]:
    return markdown_table([{"model": r.case.split()[0], "condition": r.case.split()[1], "seed": int(r.case.split()[-1]),
                            "vqa_accuracy": r.value} for r in rows])


def _header(seconds: float) -> list[str]:
    return [f"Measured {dt.date.today().isoformat()} on {machine()}; {seconds / 60:.0f} min in all.",
            f"{LABELS} labelled training questions, {STEPS} fine-tuning steps of batch {BATCH} (AdamW 1e-3, warm-up 50), "
            "the same for every condition; seeds " + ", ".join(map(str, SEEDS)) + ".",
            "Each wrong-scene control is built once with the shipped recipe's steps "
            "(`python -m vlp_course.recipes.shipped --model X --pairing wrong_scenes`) and cached."]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="VisualBERT, one seed, 20 steps, no control: a smoke run")
    ap.add_argument("--recipe", action="store_true",
                    help="instead: what held the recipe back, one change at a time (-> results/recipe.md, recipe.csv)")
    ap.add_argument("--vlbert", action="store_true",
                    help="instead: VL-BERT's recipe one change at a time, 3 seeds (-> results/vlbert_recipe.md, .csv)")
    ap.add_argument("--models", nargs="+", choices=KINDS, default=None,
                    help="measure only these models; the other models' rows are kept from the existing learning.csv")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    t = time.perf_counter()
    if args.recipe:
        rows = recipe_ablation()
        write_ablation(rows, Path(args.out), [f"Measured {dt.date.today().isoformat()} on {machine()}; VisualBERT from "
                                              f"scratch, all training questions, seed 0, {ABLATION_STEPS} steps unless noted."])
        print((Path(args.out) / "recipe.md").read_text())
        return 0
    if args.vlbert:
        rows = vlbert_study(steps=20 if args.quick else STUDY_STEPS, seeds=SEEDS[:1] if args.quick else SEEDS)
        out = Path(args.out)
        write_study(rows, out, [f"Measured {dt.date.today().isoformat()} on {machine()}; "
                                f"{(time.perf_counter() - t) / 60:.0f} min in all.",
                                f"From scratch, all training questions, {rows[0]['steps']} steps of batch {BATCH} "
                                "(AdamW 1e-3, warm-up 50); seeds " + ", ".join(str(r) for r in dict.fromkeys(r["seed"] for r in rows)) + "."])
        print((out / "vlbert_recipe.md").read_text())
        return 0
    rows = run_bench(args.quick, kinds=args.models)
    if args.quick:
        print("\n".join(markdown_table(rows)))
        return 0
    header = _header(time.perf_counter() - t)
    if args.models:
        kept = [r for r in read_rows(Path(args.out)) if r["model"] not in args.models]
        rows = sorted(kept + rows, key=lambda r: KINDS.index(r["model"]))
        header[0] = header[0].replace("Measured", "Rows of " + ", ".join(args.models) + " measured") + \
            (" The other models' rows are kept from an earlier run (the `measured` column of learning.csv)." if kept else "")
    write(rows, Path(args.out), header)
    print((Path(args.out) / "learning.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
