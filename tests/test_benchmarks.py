"""The benchmarks in a tiny smoke mode: each produces rows with the right fields and positive finite
numbers, the ours-against-transformers check really compares outputs, and bad CLI input is refused.
No timing is asserted."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_detector  # noqa: E402
import bench_models as bm  # noqa: E402
import run_all  # noqa: E402
from common import Row  # noqa: E402

TINY = bm.WORKLOADS["tiny"]


@pytest.fixture(autouse=True)
def _one_thread():
    # a loaded 2-core machine makes two OpenMP threads spin: tiny steps then take 100x longer
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def check_rows(rows: list[Row], bench: str) -> None:
    assert rows
    for r in rows:
        assert isinstance(r, Row) and r.bench == bench
        assert r.case and r.metric and r.unit and r.device in ("cpu", "cuda")
        assert isinstance(r.value, float) and math.isfinite(r.value) and r.value > 0, r
        flat = r.flat()
        assert set(run_all.BASE_COLUMNS) <= set(flat)


@pytest.mark.parametrize("family", ["visualbert", "lxmert"])
def test_compare_rows_and_output_check(family):
    rows = bm.compare(family, "tiny", repeats=1, warmup=0, memory=False)
    check_rows(rows, "models")
    metrics = {r.metric for r in rows}
    for impl in ("ours", "transformers"):
        assert {f"step time ({impl})", f"examples/s ({impl})", f"tokens/s ({impl})"} <= metrics
    assert "speed ratio ours/transformers" in metrics
    step = {r.extra["impl"]: r.value for r in rows if r.metric.startswith("step time")}
    ratio = next(r.value for r in rows if r.metric == "speed ratio ours/transformers")
    assert ratio == pytest.approx(step["transformers"] / step["ours"])
    tokens = next(r for r in rows if r.metric == "tokens/s (ours)")
    assert tokens.value == pytest.approx(TINY.batch * (TINY.text + TINY.regions) / step["ours"])
    assert all(r.extra["max_abs_diff"] <= bm.TOL for r in rows)


@pytest.mark.parametrize("family", ["visualbert", "lxmert"])
def test_output_check_fails_without_copied_weights(family):
    with pytest.raises(AssertionError, match="differ"):
        bm.compare(family, "tiny", repeats=1, warmup=0, memory=False, copy_weights=False)


def test_output_check_sees_one_changed_weight():
    pair = bm.visualbert_pair("tiny", TINY)
    assert bm.max_output_difference(pair["ours"], pair["transformers"]) <= bm.TOL
    with torch.no_grad():
        pair["ours"].model.cls.seq_relationship.bias[0] += 1e-2
    with pytest.raises(AssertionError, match="differ"):
        bm.check_same_outputs(pair)


@pytest.mark.parametrize("family", ["vilbert", "vlbert"])
def test_absolute_rows(family):
    rows = bm.absolute(family, "tiny", repeats=1, warmup=0, memory=False, peak_gflops=10.0)
    check_rows(rows, "models")
    by = {r.metric: r for r in rows}
    flops = by["GFLOP/s (ours)"].extra["gflop_per_step"]
    assert flops > 0
    assert by["GFLOP/s (ours)"].value == pytest.approx(flops / by["step time (ours)"].value)
    assert by["share of matmul peak (ours)"].value == pytest.approx(100 * by["GFLOP/s (ours)"].value / 10.0)


def test_memory_measurement_in_this_process():
    # what the fresh child process of peak_memory runs (here in-process, to keep the test short)
    mem = bm._memory_child("vilbert", "ours", "tiny", TINY, "cpu")
    assert mem["method"] == "VmHWM - VmRSS"
    assert 0 < mem["peak_mib"] < mem["total_mib"] and math.isfinite(mem["total_mib"])


def test_step_flops_include_the_decoder_products():
    # the word decoder alone costs 3 products (forward, input gradient, weight gradient) of
    # 2 x tokens x hidden x vocab FLOPs; the step's count must exceed that
    impl = bm.build("visualbert", "ours", "tiny", TINY)
    s = bm.SIZES["tiny"]
    decoder = 3 * 2 * TINY.batch * (TINY.text + TINY.regions) * s.hidden * s.vocab
    assert bm.step_flops(impl) > decoder


def test_scaling_rows_and_plot(tmp_path):
    rows = bm.scaling(("visualbert", "lxmert"), "tiny", text_lengths=(4, 8), region_counts=(2, 5), repeats=1, warmup=0)
    check_rows(rows, "scaling")
    assert len(rows) == 2 * 4
    assert {(r.extra["axis"], r.extra["text_len"], r.extra["regions"]) for r in rows if r.extra["family"] == "lxmert"} == {
        ("text", 4, TINY.regions), ("text", 8, TINY.regions), ("regions", TINY.text, 2), ("regions", TINY.text, 5)}
    path = bm.plot_scaling(rows, tmp_path / "scaling.png")
    assert path.stat().st_size > 1000


def test_detector_rows():
    rows = bench_detector.measure(n=8, repeats=1)
    check_rows(rows, "detector")
    assert {r.unit for r in rows} == {"images/s"}


def test_results_files(tmp_path):
    rows = [Row("models", "a", "step time (ours)", 0.5, "s", "cpu", {"impl": "ours"}),
            Row("detector", "b", "throughput", 12.0, "images/s", "cpu", {"images": 8})]
    run_all.write_results(rows, tmp_path, ["Measured now."])
    csv_text = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_text[0].split(",")[:6] == run_all.BASE_COLUMNS and len(csv_text) == 3
    md = (tmp_path / "results.md").read_text()
    assert "## models" in md and "## detector" in md and "Measured now." in md


@pytest.mark.parametrize("argv, message", [
    (["--only", "nosuch"], "unknown benchmark"),
    (["--threads", "0"], "--threads must be a positive integer"),
])
def test_run_all_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        run_all.main(argv)
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        bench_detector.main(["--n", "0"])
    assert "--n and --repeats must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bm.main(["--parts", "everything"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(ValueError, match="compare takes"):
        bm.compare("vilbert", "tiny")


def test_attention_bench_compares_equal_computations():
    import bench_attention as ba

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))
    bias = torch.zeros(2, 1, 1, 5)
    bias[1, ..., 3:] = -1e4  # padded keys
    assert torch.allclose(ba.explicit(q, k, v, bias), ba.fused(q, k, v, bias), atol=1e-5)
    rows = ba.run(quick=True)
    assert {r.metric for r in rows} == {"explicit forward+backward", "fused forward+backward", "speed fused/explicit"}
    assert len(rows) == 6 and all(math.isfinite(r.value) and r.value > 0 for r in rows)


def test_learning_table_means_and_gains_are_computed_from_the_rows():
    import bench_learning as bl

    rows = [{"model": "visualbert", "condition": c, "labels": 500, "seed": s, "steps": 3, "vqa_accuracy": a, "seconds": 1.0}
            for c, accs in (("pretrained", (0.70, 0.74)), ("scratch", (0.60, 0.60)), ("wrong_scenes", (0.61, 0.59)))
            for s, a in enumerate(accs)]
    s = bl.summary(rows)
    assert s["visualbert", "pretrained"][0] == pytest.approx(0.72) and s["visualbert", "scratch"] == (0.60, 0.0)
    assert s["visualbert", "pretrained"][1] == pytest.approx(0.0282843, abs=1e-6)  # sample std of 0.70, 0.74
    line = next(l for l in bl.markdown_table(rows) if l.startswith("| visualbert"))
    assert "72.0 ± 2.8%" in line and "| +12.0 |" in line and "| +0.0 |" in line


def test_learning_measure_rows_have_every_column(tmp_path):
    import bench_learning as bl

    rows = bl.measure("visualbert", labels=50, steps=2, batch=8, seeds=(0,), conditions=("pretrained", "scratch"),
                      log=lambda *a: None)
    assert [r["condition"] for r in rows] == ["pretrained", "scratch"]
    for r in rows:
        assert set(bl.COLUMNS) <= set(r) and 0.0 <= r["vqa_accuracy"] <= 1.0 and r["labels"] == 50
    bl.write(rows, tmp_path, ["header"])
    assert (tmp_path / "learning.csv").read_text().splitlines()[0] == ",".join(bl.COLUMNS)
    assert "| visualbert |" in (tmp_path / "learning.md").read_text()


def test_learning_models_option_remeasures_some_models_and_keeps_the_others(tmp_path, monkeypatch):
    import bench_learning as bl

    def fake_measure(kind, **kw):
        return [{"model": kind, "condition": c, "labels": 500, "seed": 0, "steps": 300, "vqa_accuracy": 0.9,
                 "seconds": 1.0, "measured": "today on here"} for c in bl.CONDITIONS]

    old = [{"model": m, "condition": c, "labels": 500, "seed": 0, "steps": 300, "vqa_accuracy": 0.5, "seconds": 2.0,
            "measured": "before"} for m in ("visualbert", "lxmert") for c in bl.CONDITIONS]
    bl.write(old, tmp_path, ["Measured before"])
    monkeypatch.setattr(bl, "measure", fake_measure)
    assert bl.main(["--models", "lxmert", "--out", str(tmp_path)]) == 0
    rows = bl.read_rows(tmp_path)
    by = {(r["model"], r["condition"]): r for r in rows}
    assert len(rows) == 6 and [r["model"] for r in rows] == ["visualbert"] * 3 + ["lxmert"] * 3  # KINDS order
    assert by["visualbert", "pretrained"]["vqa_accuracy"] == 0.5 and by["visualbert", "scratch"]["measured"] == "before"
    assert by["lxmert", "pretrained"]["vqa_accuracy"] == 0.9 and by["lxmert", "scratch"]["measured"] == "today on here"
    assert "Rows of lxmert measured" in (tmp_path / "learning.md").read_text()


def test_the_shipped_learning_results_are_the_benchmarks_and_read_back_per_model(tmp_path):
    from vlp_course import files
    from vlp_course.recipes.shipped import LEARNING_COLUMNS, format_learning_results, learning_results

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "learning.csv"
    shipped = files.shipped_dir() / "learning.csv"
    assert shipped.read_bytes() == results.read_bytes(), "bench_learning.py writes both copies"
    rows = list(csv.DictReader(shipped.open()))
    assert tuple(rows[0]) == LEARNING_COLUMNS
    for kind in ("visualbert", "lxmert", "vilbert", "vlbert"):  # the twelve conditions x 3 seeds
        assert sorted((r["condition"], r["seed"]) for r in rows if r["model"] == kind) == sorted(
            (c, s) for c in ("pretrained", "scratch", "wrong_scenes") for s in "012")
    # hand-computed mean and sample std of three rows
    f = tmp_path / "l.csv"
    f.write_text(",".join(LEARNING_COLUMNS) + "\n" + "".join(
        f"vilbert,{c},500,{s},300,{a},1.0,today\n" for c, s, a in
        (("pretrained", 0, 0.7), ("pretrained", 1, 0.8), ("pretrained", 2, 0.9), ("scratch", 0, 0.6))))
    got = learning_results("vilbert", f)
    assert got["conditions"]["pretrained"] == pytest.approx((0.8, 0.1, 3)) and got["conditions"]["scratch"] == (0.6, 0.0, 1)
    assert got["labels"] == 500 and got["steps"] == 300 and got["measured"] == "today"
    text = format_learning_results(got)
    assert "measured today" in text and "80.0% ± 10.0% (3 seeds)  +20.0 points over scratch" in text
    with pytest.raises(ValueError, match="no rows for 'lxmert'"):
        learning_results("lxmert", f)
    with pytest.raises(ValueError, match="kind must be one of"):
        learning_results("bert", f)
    (tmp_path / "bad.csv").write_text("model,condition\nvilbert,scratch\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        learning_results("vilbert", tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="bench_learning.py"):
        learning_results("vilbert", tmp_path / "none.csv")


def test_vlbert_study_changes_what_it_says_and_reads_back(tmp_path, monkeypatch):
    """The study's variants: the config change reaches the model, the KL variant's loss is VisualBERT's
    KL on the same logits, the BCE one is VL-BERT's own; the shipped reader computes mean, std, range."""
    import bench_learning as bl

    from vlp_course.data.vl_tensors import build_scene_tensors
    from vlp_course.models.visualbert import vqa_kl_loss
    from vlp_course.recipes.base import Recipe
    from vlp_course.recipes.shipped import STUDY_COLUMNS, format_recipe_study, recipe_study

    st = build_scene_tensors(120, seed=3, n_test=20, vqa_mask_token="segment")
    recipe = Recipe(kind="vlbert", n_images=120, n_test=20, seed=3)
    one = bl.study_adapter(st, recipe, {"visual_scale_object_init": 1.0}, "bce")
    torch.manual_seed(0)
    model = one.qa_model().eval()  # no dropout: both steps see the same logits
    assert torch.all(model.vlbert.visual_ln_object.weight == 1) and torch.all(model.vlbert.visual_ln_text.weight == 0)
    original = bl.study_adapter(st, recipe, bl.ORIGINAL, "bce").qa_model()
    assert torch.all(original.vlbert.visual_ln_object.weight == 0) and torch.all(original.vlbert.visual_ln_text.weight == 0)
    batch = {k: v for k, v in st.vqa_batch(0, 8).items() if k != "rows"}
    bce = one.vqa_step(model, batch)
    kl = bl.study_adapter(st, recipe, {"visual_scale_object_init": 1.0}, "kl").vqa_step(model, batch)
    assert torch.equal(kl.logits["vqa"], bce.logits["vqa"])
    assert torch.allclose(kl.loss, vqa_kl_loss(bce.logits["vqa"], batch["soft_scores"]))
    assert not torch.allclose(kl.loss, bce.loss)
    assert type(bl.study_adapter(st, replace_kind(recipe, "visualbert"), {}, "kl")).__name__ == "VisualBertAdapter"

    rows = [{"model": "vlbert", "change": ch, "seed": s, "steps": 600, "batch": 64, "vqa_accuracy": a, "seconds": 1.0,
             "measured": "today"} for ch, s, a in (("original", 0, 0.5), ("original", 1, 0.6), ("original", 2, 0.7),
                                                    ("kl", 0, 0.8))]
    bl.write_study(rows, tmp_path, ["header"])
    assert (tmp_path / "vlbert_recipe.csv").read_text().splitlines()[0] == ",".join(STUDY_COLUMNS)
    got = recipe_study(tmp_path / "vlbert_recipe.csv")
    assert got["changes"]["original"] == pytest.approx((0.6, 0.1, 0.5, 0.7, 3)) and got["changes"]["kl"] == (0.8, 0.0, 0.8, 0.8, 1)
    assert got["steps"] == 600 and got["batch"] == 64 and got["measured"] == "today"
    assert "+20.0" in format_recipe_study(got).splitlines()[-1]
    assert "| kl | 80.0 ± 0.0% | +20.0 | 80.0%, 80.0% |" in (tmp_path / "vlbert_recipe.md").read_text()
    (tmp_path / "bad.csv").write_text("model,change\nvlbert,x\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        recipe_study(tmp_path / "bad.csv")
    (tmp_path / "empty.csv").write_text(",".join(STUDY_COLUMNS) + "\n")
    with pytest.raises(ValueError, match="no rows"):
        recipe_study(tmp_path / "empty.csv")
    with pytest.raises(FileNotFoundError, match="--vlbert"):
        recipe_study(tmp_path / "none.csv")


def replace_kind(recipe, kind):
    from dataclasses import replace
    return replace(recipe, kind=kind)


def test_the_shipped_vlbert_study_is_the_benchmarks_every_change_three_seeds():
    import bench_learning as bl

    from vlp_course import files
    from vlp_course.recipes.shipped import recipe_study

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "vlbert_recipe.csv"
    shipped = files.shipped_dir() / "vlbert_recipe.csv"
    assert shipped.read_bytes() == results.read_bytes(), "bench_learning.py --vlbert writes both copies"
    got = recipe_study()
    assert list(got["changes"]) == [label for label, *_ in bl.VLBERT_CHANGES]
    assert all(n == 3 for *_, n in got["changes"].values()) and got["steps"] == bl.STUDY_STEPS


def test_compare_table_means_gains_and_shipped_reader(tmp_path):
    """bench_compare's summary and table from hand-made rows, and shipped.comparison_results reading them back."""
    import bench_compare as bc

    from vlp_course.recipes.shipped import COMPARISON_COLUMNS, comparison_results

    assert tuple(bc.COLUMNS) == COMPARISON_COLUMNS
    rows = [bc._row("vilbert", "nlvr2_accuracy", c, s, 600, a, 10.0, "today")
            for c, accs in (("pretrained", (0.80, 0.84)), ("scratch", (0.55, 0.57)))
            for s, a in enumerate(accs)]
    rows += [bc._row("vilbert", "parameters", "pretraining model", 0, 0, 123456, 0, "today"),
             bc._row("vilbert", "examples_per_s", "vqa", 0, 20, 456.78, 1.0, "today")]
    s = bc.summary(rows)
    assert s["vilbert", "nlvr2_accuracy", "pretrained"][0] == pytest.approx(0.82)
    assert s["vilbert", "nlvr2_accuracy", "pretrained"][1] == pytest.approx(0.0282843, abs=1e-6)
    text = "\n".join(bc.markdown_tables(rows))
    assert "| ViLBERT | dual | 123,456 | — | 457 | — |" in text
    assert "82.0 ± 2.8%" in text and "| +26.0 | +32.0 |" in text  # over scratch, over the statement-only 50%
    bc.write(rows, tmp_path, ["header"])
    got = comparison_results(tmp_path / "compare.csv")
    assert got["values"]["vilbert", "nlvr2_accuracy", "scratch"] == pytest.approx((0.56, 0.0141421, 2), abs=1e-6)
    assert got["values"]["vilbert", "parameters", "pretraining model"] == (123456.0, 0.0, 1)
    assert got["steps"]["vilbert", "nlvr2_accuracy", "scratch"] == 600 and got["measured"] == "today"
    (tmp_path / "bad.csv").write_text("model,measure\nvilbert,x\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        comparison_results(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="bench_compare.py"):
        comparison_results(tmp_path / "none.csv")


def test_compare_jobs_cover_every_condition_and_a_measured_row_has_every_column(monkeypatch):
    import bench_compare as bc

    todo = bc.jobs(("visualbert", "vlbert"), (0, 1), 7, 9)
    assert len(todo) == 2 * 2 * (2 + 2) and ("vlbert", "nlvr2", "scratch", 1, 9) in todo
    assert ("visualbert", "vqa", "scratch", 0, 7) in todo and todo[0][1] == "nlvr2"  # the slow ones first
    r = bc.measure_accuracy("visualbert", "nlvr2", "scratch", 0, steps=1, measured="now")
    assert list(r) == bc.COLUMNS and 0.0 <= r["value"] <= 1.0 and r["measure"] == "nlvr2_accuracy"


# ---- bench_text_to_image: every table, at a tiny budget -------------------------------------------
def test_text_to_image_bench_writes_every_table(tmp_path):
    import bench_text_to_image as t2i

    out = tmp_path / "t2i.md"
    assert t2i.main(["--steps", "2", "--gan-steps", "2", "--seeds", "0", "--tokenizer-seeds", "0", "--tokenizers", "8x16",
                     "--eval", "12", "--shipped", "--guidance", "0", "--positions", "grid", "--out", str(out)]) == 0
    text = out.read_text()
    for heading in ("The eyes on the real held-out images (plain background", "## Image tokens", "## MaskGIT from scratch",
                    "## The caption GAN from scratch", "## The shipped models"):
        assert heading in text
    assert "| 8 x 8 | 64 | 16 | 0 |" in text and text.count("| MaskGIT, 8 steps, guidance 0 |") == 3
