"""The exercise checks as a learner meets them: one-line feedback, stored answers, nothing to import.

- every notebook's own solution passes its check; a stub fails with "not implemented yet";
- a wrong answer fails with one line naming exercise, case and difference (outputs count from 1,
  values printed as plain numbers), and Jupyter shows that line, not a traceback (IPython's
  ``_render_traceback_``), while the cell still counts as failed for nbval and nbgrader;
- the stored answers (``vlp_course/exercises/answers``) equal a fresh run of the references of
  ``tests/exercise_references.py``, which ``vlp_course`` does not contain;
- a function of the course's own package passed as it is fails every check.
"""

from __future__ import annotations

import importlib
import math
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from vlp_course.exercises import ExerciseFailed, load_answers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import exercise_answers  # noqa: E402
import notebooks as nbtool  # noqa: E402
from exercise_references import REFERENCES  # noqa: E402

PARTS = exercise_answers.PARTS


def _solutions_and_checks():
    """(notebook, grade_id, solution source, graded cell source) for every graded cell."""
    out = []
    for src in nbtool.sources():
        sol = None
        for c in nbtool.build_notebook(src).cells:
            md = c.metadata.get("nbgrader", {})
            if c.cell_type == "code" and md.get("solution"):
                sol = c.source
            elif c.cell_type == "code" and md.get("grade"):
                out.append((src.stem, md["grade_id"], sol, c.source))
    return out


GRADED = _solutions_and_checks()


def _namespace():
    return {"torch": torch, "np": np, "math": math, "nn": torch.nn, "F": torch.nn.functional}


def _one_line(err: ExerciseFailed) -> str:
    msg = str(err)
    assert "\n" not in msg and "np.float" not in msg and "np.int" not in msg and "tensor(" not in msg, msg
    return msg


# ---- stored answers and references -----------------------------------------------------------------

def test_stored_answers_equal_the_references():
    assert exercise_answers.check() == []


def test_stored_answers_are_checksummed_and_cover_every_exercise(tmp_path, monkeypatch):
    for part in PARTS:
        module = importlib.import_module(f"vlp_course.exercises.{part}")
        assert set(load_answers(part)) == set(module.EXERCISES) == set(REFERENCES[part]), part
    # an altered answers file is refused
    import vlp_course.exercises as ex

    for f in ex.ANSWERS_DIR.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "text.json").write_text((tmp_path / "text.json").read_text().replace('"array":[1', '"array":[0', 1))
    monkeypatch.setattr(ex, "ANSWERS_DIR", tmp_path)
    ex.load_answers.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="SHA-256 differs"):
            ex.load_answers("text")
    finally:
        ex.load_answers.cache_clear()


def test_no_reference_is_importable_from_the_package():
    names = {"single_stream_mask", "reduced_conv_params", "shortcut_params"}
    for part in PARTS:
        module = importlib.import_module(f"vlp_course.exercises.{part}")
        public = {n for n in dir(module) if not n.startswith("_")}
        assert not [n for n in public if n.startswith("reference")], part
        assert not public & names, (part, public & names)
        assert {n for n in public if callable(getattr(module, n)) and getattr(getattr(module, n), "__module__", "")
                == module.__name__} <= {n for n in public if n.startswith("check_")}, part
    for gone in ("models", "models2"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"vlp_course.exercises.{gone}")
    assert "vlp_course" not in sys.modules["exercise_references"].__file__


def test_the_old_shortcut_fails():
    """Before, ``reference_region_masking_801010`` was importable and passed its check."""
    from vlp_course.exercises import pretraining

    assert not hasattr(pretraining, "reference_region_masking_801010")


def test_no_part_module_shadows_a_name_of_the_package():
    """Importing ``vlp_course.exercises.<part>`` sets the attribute ``<part>`` on the package: a part named like
    one of the package's functions (``compare``, ``encode`` ...) would replace that function for every check."""
    import pkgutil

    import vlp_course.exercises as ex

    parts = {m.name for m in pkgutil.iter_modules(ex.__path__)}
    assert not parts & set(ex.__all__), f"rename the part module(s) {sorted(parts & set(ex.__all__))}"
    assert parts >= {"vqa", "nlvr2", "comparison", "captioning", "text_to_image"}


def test_the_vqa_parts_accuracy_check_refuses_the_package_function():
    from vlp_course.data.vqa import vqa_accuracy
    from vlp_course.exercises.vqa import check_vqa_accuracy

    with pytest.raises(ExerciseFailed, match="'vqa_accuracy' is the course's own function; pass the function you wrote"):
        check_vqa_accuracy(vqa_accuracy)


@pytest.mark.parametrize("func", ["vlp_course.text.bags:one_hot", "vlp_course.vision.lenet:conv_output_size",
                                  "vlp_course.vision.gan:generator_loss", "vlp_course.data.vqa:vqa_accuracy",
                                  "vlp_course.models.vlbert:geometry_embedding"])
def test_a_package_function_passed_as_it_is_fails(func):
    mod, name = func.split(":")
    fn = getattr(importlib.import_module(mod), name)
    check = {"one_hot": "text:check_one_hot", "conv_output_size": "vision:check_conv_output_size",
             "generator_loss": "vision:check_generator_loss", "vqa_accuracy": "scenes:check_vqa_accuracy",
             "geometry_embedding": "vlbert:check_geometry_embedding"}[name].split(":")
    with pytest.raises(ExerciseFailed, match=f"'{name}' is the course's own function; pass the function you wrote"):
        getattr(importlib.import_module(f"vlp_course.exercises.{check[0]}"), check[1])(fn)


# ---- every check: solution passes, stub fails -----------------------------------------------------

@pytest.mark.parametrize("nb,grade_id,solution,graded", GRADED, ids=[g[1] for g in GRADED])
def test_notebook_solution_passes_and_stub_fails(nb, grade_id, solution, graded, capsys):
    ns = _namespace()
    exec(solution, ns)  # noqa: S102 - the notebook's own solution
    exec(graded, ns)  # noqa: S102 - the graded cell, hidden tests included
    assert "✔" in capsys.readouterr().out
    stub = re.sub(r"### BEGIN SOLUTION.*?### END SOLUTION", "raise NotImplementedError()", solution, flags=re.S)
    ns = _namespace()
    exec(stub, ns)  # noqa: S102
    with pytest.raises(ExerciseFailed, match="not implemented yet") as err:
        exec(graded, ns)  # noqa: S102
    _one_line(err.value)


# ---- wrong answers: the exact one-line messages -------------------------------------------------------

def _masking(features, eligible, u_select, u_action, replacement, prob=0.15):
    selected = eligible.bool() & (u_select < prob)
    out = features.clone()
    out[selected & (u_action < 0.8)] = 0.0
    rep = selected & (u_action >= 0.8) & (u_action < 0.9)
    out[rep] = replacement[rep]
    return out, selected


def _sampler(u_swap, u_pick, p_negative=0.5, skip_own_row=True):
    B = u_swap.shape[0]
    rows = torch.arange(B)
    k = (u_pick * (B - 1)).floor().long().clamp(max=max(B - 2, 0))
    other = k + (k >= rows).long() if skip_own_row else k
    negative = u_swap < p_negative
    return torch.where(negative, other, rows), (~negative).long()


def _always_normalised_accuracy(prediction, answers):
    """The official accuracy, except that it normalises even when the ten answers are identical."""
    from vlp_course.data.vqa import normalize_answer

    gts, pred = [normalize_answer(a) for a in answers], normalize_answer(prediction)
    return sum(min(1.0, sum(a == pred for a in gts[:i] + gts[i + 1:]) / 3) for i in range(10)) / 10


def _typed_targets(answers, vocab):
    """Soft-score targets counted on the answers as typed (no normalisation)."""
    return torch.tensor([min(1.0, 0.3 * list(answers).count(v)) for v in vocab])


def _kl_renormalised(logits, soft_scores):
    """Right BCE; KL against the soft scores renormalised to sum 1 (not VisualBERT's)."""
    B = logits.shape[0]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, soft_scores, reduction="sum") / B
    target = soft_scores / soft_scores.sum(-1, keepdim=True).clamp_min(1e-12)
    return bce, torch.nn.functional.kl_div(logits.log_softmax(-1), target, reduction="batchmean")


CASE1 = "region_masking_801010, case '4 regions, global first; one zeroed, one replaced, one kept'"
def _beam_step_extending_finished(scores, log_probs, done):
    """A finished hypothesis extended like the others: it comes back into the beam."""
    K, vocab = log_probs.shape
    top, flat = (scores[:, None] + log_probs).reshape(-1).topk(K)
    return top, flat // vocab, flat % vocab


def _beam_step_true_division(scores, log_probs, done):
    K, vocab = log_probs.shape
    live = torch.where(done, torch.full_like(scores, float("-inf")), scores)
    top, flat = (live[:, None] + log_probs).reshape(-1).topk(K)
    return top, flat / vocab, flat % vocab


def _training_mask_floor_and_rank(codes, ratios, order, mask_id):
    """floor instead of ceil, and ``order`` read as each position's rank instead of a list of positions."""
    n = torch.floor(torch.cos(math.pi / 2 * ratios) * codes.shape[1]).long()
    hidden = order < n[:, None]
    return torch.where(hidden, mask_id, codes), torch.where(hidden, codes, -100)


def _remask_known_too(confidence, unknown, n):
    """Forgets that known tokens are never masked again (their confidence is +inf in the original)."""
    return confidence < confidence.sort(-1).values.gather(-1, n[:, None])


WRONG = [
    ("pretraining", "check_region_masking_801010", lambda *a, **k: (_masking(*a, **k)[0], _masking(*a, **k)[1][..., None]),
     f"{CASE1}: output #2 has shape (1, 4, 1), expected (1, 4)"),
    ("pretraining", "check_region_masking_801010", lambda *a, **k: _masking(*a, **k)[0],
     f"{CASE1}: your function returned a Tensor; expected a tuple of 2 values"),
    ("pretraining", "check_region_masking_801010",
     lambda f, e, us, ua, r, prob=0.15: _masking(f, e, us, ua, torch.zeros_like(r), prob),  # replaces by zeros
     f"{CASE1}: output #1: 3 of 12 values differ; first at index (0, 2, 0): yours 0, expected -7"),
    ("pretraining", "check_negative_sampler", lambda u, p, pn=0.5: _sampler(u, p, pn, skip_own_row=False),
     "negative_sampler, case '3 rows, all negatives, u_pick [0, 0.5, 0.9]: a row skips itself': output #1: 2 of 3 "
     "values differ; first at index (0,): yours 0, expected 1"),
    ("pretraining", "check_negative_sampler", lambda u, p, pn=0.5: (_sampler(u, p, pn)[0], 1 - _sampler(u, p, pn)[1]),
     "negative_sampler, case '4 rows by hand': output #2: 4 of 4 values differ; first at index (0,): yours 0, "
     "expected 1"),
    ("text", "check_one_hot", lambda ids, V: torch.eye(V)[ids][:, :-1],
     "one_hot, case 'a 4-token sentence, |V| = 6': the output has shape (4, 5), expected (4, 6)"),
    ("text", "check_bag_of_ngrams", lambda t, n: {" ".join(t[i:i + n]): 1 for i in range(len(t) - n + 1)},
     "bag_of_ngrams, case 'unigrams with repeats': the output['a'] is 1, expected 3"),
    ("text", "check_bag_of_ngrams", lambda t, n: [t],
     "bag_of_ngrams, case 'bigrams of 'the cat sat on the mat'': your function returned a list; expected a dict "
     "{n-gram: count}"),
    ("vision", "check_conv_output_size", lambda n, k, s, p: (n - k) // s + 1,
     "conv_output_size, case ''same' conv: 15, k=3, p=1': the output is 13, expected 15"),
    ("vision", "check_conv_params", lambda ci, co, k: np.int64(ci * co * k * k),
     "conv_params, case 'LeNet C1': the output is 150, expected 156"),
    ("vision", "check_generator_loss", lambda f: torch.log(1 - torch.sigmoid(f)).mean(),
     "generator_loss, case 'small logits': the output is -0.945552, expected 0.677484"),
    ("vision", "check_residual_forward", lambda b, x: b(x),
     "residual_forward, case 'identity shortcut': your function called the whole ResidualBlock module; compute its "
     "output from its parts, as the exercise asks"),
    ("scenes", "check_vqa_accuracy", lambda p, a: min(1.0, sum(x == p for x in a) / 3),
     # 'b' 3 times of 10: dropping one of them leaves 2 matches (3 subsets of 10 score 2/3) -> 0.9
     "VQA accuracy, case 'prediction 'b' vs ['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c', 'a']': the output is 1, "
     "expected 0.9"),
    ("vilbert", "check_layer_schedule", lambda v, t, nv, nt: [("v", j) for j in range(nv)] + [("t", i) for i in range(nt)],
     "layer schedule, case '6/6 (bert_base_6layer_6conect)': the output: item #1 is ('v', 0), expected ('t', 0)"),
    ("visualbert", "check_mask_token_states", lambda h, m: h[torch.arange(h.shape[0]), m.sum(1) - 1],
     None),  # any one-line message about the first case
    ("vqa", "check_vqa_accuracy", _always_normalised_accuracy,
     "official VQA accuracy, case ''yes.' against ten 'yes': unanimous, compared as typed': the output is 1, expected 0"),
    ("vqa", "check_soft_scores", _typed_targets,
     "soft-score targets, case 'variants: two, 2, 2, 3, Two, 2, 3, 3, 3, 4': the output: 1 of 14 values differ; first "
     "at index (2,): yours 0.9, expected 1"),
    ("vqa", "check_vqa_losses", _kl_renormalised,
     "VQA losses (BCE, KL), case 'one question, 3 answers': output #2 is 0.393415, expected 0.852513"),
    ("vqa", "check_vqa_losses", lambda z, t: (torch.nn.functional.binary_cross_entropy_with_logits(z, t),  # mean, not sum
                                              torch.nn.functional.kl_div(z.log_softmax(-1), t, reduction="batchmean")),
     "VQA losses (BCE, KL), case 'one question, 3 answers': output #1 is 0.571422, expected 1.71427"),
    ("nlvr2", "check_pair_classifier", lambda h, w, b: torch.cat([h[1::2], h[0::2]], 1) @ w.T + b,  # right image first
     "pair classifier, case '1 pair, D = 2': the output: 2 of 2 values differ; first at index (0, 0): yours 1.08692, "
     "expected -2.51998"),
    ("nlvr2", "check_pair_classifier", lambda h, w, b: torch.cat([h[:len(h) // 2], h[len(h) // 2:]], 1) @ w.T + b,  # halves
     "pair classifier, case '3 pairs, D = 4': the output: 6 of 6 values differ; first at index (0, 0): yours -0.905854, "
     "expected 0.911848"),
    ("nlvr2", "check_one_pass_regions", lambda f, m: (f.transpose(1, 2).flatten(1, 2), m.transpose(1, 2).flatten(1, 2),
                                                      torch.tensor([0, 1]).repeat(f.shape[2]).expand(f.shape[0], -1)),
     "one-pass regions, case '1 pair, 2 slots, all real': output #1: 6 of 12 values differ; first at index (0, 1, 0): "
     "yours -1.52277, expected 0.621317"),  # the two images' slots interleaved
    ("nlvr2", "check_statement_only_ceiling", lambda s, y: 0.5,
     "statement-only ceiling, case 'one sentence always true': the output is 0.5, expected 0.8"),
    ("comparison", "check_layer_parameters", lambda D, F: 4 * D * D + 2 * D * F,  # the weights only, no biases or LayerNorms
     "layer parameters, case 'D = 64, F = 256 (the course)': the output is 49152, expected 49984"),
    ("comparison", "check_settled", lambda a, b: (float(np.mean(a) - np.mean(b)),  # population variances
                                                  float(np.sqrt(np.var(a) / len(a) + np.var(b) / len(b))), True),
     "settled difference, case 'a clear lead': output #2 is 0.00527046, expected 0.00645497"),
    ("captioning", "check_seq2seq_mask", lambda T, V: torch.tril(torch.ones(T + V, T + V, dtype=torch.bool)),
     "seq2seq mask, case 'T = 2, V = 1': the output: 3 of 9 values differ; first at index (0, 2): yours False, "
     "expected True"),  # one triangle over everything: [CLS] cannot see the regions, the regions see the caption
    ("captioning", "check_beam_step", _beam_step_extending_finished,
     "beam step, case 'K = 3, the best one finished': output #1: 3 of 3 values differ; first at index (0,): yours "
     "-1.6308, expected -2.05155"),
    ("captioning", "check_beam_step", _beam_step_true_division,
     "beam step, case 'K = 2, nothing finished': parent and token must be integer tensors (use // and %, not /): "
     "they are indices"),
    ("text_to_image", "check_tokens_to_mask", lambda G, t, T: math.floor(G * math.cos(math.pi / 2 * t / T)),  # t, not t + 1
     "tokens to mask, case 'G = 256, step 0 of 8': the output is 256, expected 251"),
    ("text_to_image", "check_tokens_to_mask", lambda G, t, T: G * math.cos(math.pi / 2 * (t + 1) / T),  # not floored
     "tokens to mask, case 'G = 256, step 0 of 8': a number of tokens is a whole number, got 251.081031783227 "
     "(use math.floor)"),
    ("text_to_image", "check_training_mask", _training_mask_floor_and_rank,
     "training mask, case 'B = 2, r = 0.5 and 0.9': output #1: 8 of 32 values differ; first at index (0, 1): yours 7, "
     "expected 4"),
    ("text_to_image", "check_remask", _remask_known_too,
     "remask, case 'B = 2, G = 8, half known': the output: 4 of 16 values differ; first at index (0, 0): yours False, "
     "expected True"),
    ("vqa", "check_vqa_losses", lambda z, t: 0.0,
     "VQA losses (BCE, KL), case 'one question, 3 answers': your function returned a float; expected a tuple (bce, kl) "
     "of two numbers"),
]


@pytest.mark.parametrize("part,check,wrong,message", WRONG, ids=[f"{w[1]}-{i}" for i, w in enumerate(WRONG)])
def test_wrong_answer_gets_its_one_line(part, check, wrong, message):
    with pytest.raises(ExerciseFailed) as err:
        getattr(importlib.import_module(f"vlp_course.exercises.{part}"), check)(wrong)
    msg = _one_line(err.value)
    if message is None:
        assert re.match(r"mask_token_states, case 'B=3, T=6, V=2, lengths=\[.*\]': the output: \d+ of \d+ values differ", msg), msg
    else:
        assert msg == message
    assert err.value._render_traceback_() == [f"✘ {msg}"]


def test_a_crash_shows_the_learners_line_only():
    from vlp_course.exercises.pretraining import check_negative_sampler

    def mine(u_swap, u_pick, p_negative=0.5):
        return u_swap @ torch.zeros(2, 2)  # the learner's bug

    with pytest.raises(ExerciseFailed) as err:
        check_negative_sampler(mine)
    msg = _one_line(err.value)
    assert msg.startswith("negative_sampler, case '4 rows by hand': your function raised RuntimeError: mat1 and mat2")
    lines = err.value._render_traceback_()
    assert lines[0] == f"✘ {msg}"
    assert lines[1:] == ["  in mine, line {}: return u_swap @ torch.zeros(2, 2)  # the learner's bug".format(
        mine.__code__.co_firstlineno + 1)]


def test_feedback_in_a_kernel_is_one_line_and_the_cell_fails():
    """IPython shows ``_render_traceback_``'s lines; nbgrader still gives the cell no points."""
    from nbclient import NotebookClient
    from nbgrader.utils import determine_grade

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from vlp_course.exercises.vision import check_conv_output_size\n"
        "check_conv_output_size(lambda n, k, s, p: (n - k) // s + 1)")]
    nb.cells[0].metadata["nbgrader"] = {"grade": True, "solution": False, "points": 1, "grade_id": "c1", "locked": True}
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    (out,) = nb.cells[0].outputs
    assert out.output_type == "error" and out.ename == "ExerciseFailed"
    assert out.traceback == ["✘ conv_output_size, case ''same' conv: 15, k=3, p=1': the output is 13, expected 15"]
    assert determine_grade(nb.cells[0])[0] == 0
