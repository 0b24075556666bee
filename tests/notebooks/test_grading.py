"""The instructor's grading tool (tools/grade.py) end to end, on fake submissions of a tiny notebook.

The tiny course notebook is written by the test (two auto-checked exercises, one with a hidden test,
and one open question graded by hand) and built with the course's own build; the fake submissions are
made from its released student copy: complete, partial, wrong (passes the visible check, fails the
hidden one), timed out, tampered (a check cell edited, another deleted, one duplicated), and one
whose cell metadata was lost (as when cells are copied into a fresh notebook). Each must get the
points a grader would give by hand.
"""

from __future__ import annotations

import copy
import csv
import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import grade  # noqa: E402
import notebooks as nbtool  # noqa: E402

TINY = '''# %% [markdown]
# # A tiny course notebook

# %%
def double(x):
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION

# %% tags=["graded"]
assert double(3) == 6, "double(3) should be 6"
### BEGIN HIDDEN TESTS
assert double(-1) == -2, "double(-1) should be -2"
### END HIDDEN TESTS

# %%
def square(x):
    ### BEGIN SOLUTION
    return x * x
    ### END SOLUTION

# %% tags=["graded", "points=2"]
assert square(4) == 16, "square(4) should be 16"

# %% [markdown] tags=["manual", "points=2"]
# Why does a check run on more than one input?
#
# ### BEGIN SOLUTION
# Rubric: 1 point for "one input can be right by chance", 1 point for an example such as abs(2x).
# ### END SOLUTION
'''


def _set_solution(nb, n: int, body: str):
    """Put ``body`` (the function's body, indented) into the n-th solution cell of a student copy."""
    cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"]
    head = cells[n].source.splitlines()[0]
    cells[n].source = f"{head}\n{body}"


def _cell(nb, gid):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grading")
    src_dir = tmp / "src"
    src_dir.mkdir()
    (src_dir / "99_tiny.py").write_text(TINY)
    # Release: stamped student copy + manifest.
    assert grade.main(["--source", str(src_dir), "release", "99", "--out", str(tmp / "release")]) == 0
    version = nbtool.project_meta()[1]
    rel_dir = tmp / "release" / f"v{version}"
    released = nbformat.read(rel_dir / "99_tiny.ipynb", as_version=4)
    manifest = json.loads((rel_dir / "manifest.json").read_text())

    def make(student, name, edit):
        nb = copy.deepcopy(released)
        _set_solution(nb, 0, "    return 2 * x")
        _set_solution(nb, 1, "    return x * x")
        answer = _cell(nb, "99_tiny-manual-1")
        answer.source = answer.source.replace("YOUR ANSWER HERE", "Because a wrong function can be right on one input.")
        edit(nb)
        folder = tmp / "subs" / student if student else tmp / "subs"
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / name)

    make("alice", "Copy of 99_tiny.ipynb", lambda nb: None)  # complete
    make("bob", "99_tiny.ipynb", lambda nb: _set_solution(nb, 1, "    raise NotImplementedError()"))  # partial
    make("carol", "mine.ipynb", lambda nb: _set_solution(nb, 0, "    return abs(2 * x)"))  # wrong: hidden test fails
    make("dave", "99_tiny.ipynb", lambda nb: _set_solution(nb, 0, "    while True:\n        pass"))  # hangs

    def tamper(nb):
        _set_solution(nb, 0, "    return 0")
        _cell(nb, "99_tiny-check-1").source = "assert True  # the check, edited"
        nb.cells.remove(_cell(nb, "99_tiny-check-2"))  # deleted: put back after square's cell
        nb.cells.append(copy.deepcopy(_cell(nb, "99_tiny-solution-1")))  # a duplicated solution cell
        nb.cells[-1].id = "dup-solution"

    make("erin", "99_tiny.ipynb", tamper)

    def strip(nb):  # metadata lost (cells copied into a fresh notebook); a check cell duplicated
        nb.metadata.pop("vlp_course")
        for c in nb.cells:
            c.metadata.pop("nbgrader", None)
        nb.cells.append(copy.deepcopy(nb.cells[-2]))
        nb.cells[-1].id = "dup-check"

    make(None, "Copy of 99_tiny (frank).ipynb", strip)
    out = tmp / "grades"
    results = grade.grade_folder(tmp / "subs", out, src_dir=src_dir, timeout=5, jobs=2)
    return {"results": results, "out": out, "manifest": manifest, "released": released}


def test_release_is_stamped_with_manifest(graded):
    nb, manifest = graded["released"], graded["manifest"]
    version = nbtool.project_meta()[1]
    assert nb.metadata["vlp_course"]["notebook"] == "99_tiny" and nb.metadata["vlp_course"]["version"] == version
    text = "\n".join(c.source for c in nb.cells)
    assert f"v{version}" in nb.cells[1].source and "colab-badge" not in text
    assert "return 2 * x" not in text and "double(-1)" not in text and "Rubric" not in text
    assert "YOUR ANSWER HERE" in _cell(nb, "99_tiny-manual-1").source
    assert "Why does a check" in _cell(nb, "99_tiny-manual-1").source  # the question stays
    (entry,) = manifest["notebooks"]
    assert entry["points"] == 5 and [e["kind"] for e in entry["exercises"]] == ["auto", "auto", "manual"]


def _long(out):
    with (out / "grades_long.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_points_per_fake_submission(graded):
    with (graded["out"] / "grades_wide.csv").open() as fh:
        wide = {r["student"]: r for r in csv.DictReader(fh)}
    got = {s: (int(r["99_tiny-check-1"]), int(r["99_tiny-check-2"]), int(r["auto_points"])) for s, r in wide.items()}
    assert got == {
        "alice": (1, 2, 3),
        "bob": (1, 0, 1),
        "carol": (0, 2, 2),
        "dave": (0, 2, 2),
        "erin": (0, 2, 2),
        "Copy of 99_tiny (frank)": (1, 2, 3),
    }
    assert all(r["auto_max"] == "3" and r["manual_max"] == "2" and r["99_tiny-manual-1"] == "" for r in wide.values())


def test_statuses_and_flags(graded):
    rows = {(r["student"], r["grade_id"]): r for r in _long(graded["out"])}
    assert rows["carol", "99_tiny-check-1"]["status"].startswith("failed: AssertionError: double(-1)")
    assert rows["dave", "99_tiny-check-1"]["status"] == "timed out"
    assert rows["bob", "99_tiny-check-2"]["status"].startswith("failed: NotImplementedError")
    erin1, erin2 = rows["erin", "99_tiny-check-1"], rows["erin", "99_tiny-check-2"]
    assert erin1["tampered"] == "yes" and erin1["status"].startswith("failed")  # flagged, graded with the real check
    assert erin2["tampered"] == "" and erin2["note"] == "deleted, put back" and erin2["status"] == "passed"
    assert rows["alice", "99_tiny-manual-1"]["status"] == "to grade by hand"
    assert "matched by its code" in rows["Copy of 99_tiny (frank)", "99_tiny-check-1"]["note"]
    assert not any(r["tampered"] for (s, _), r in rows.items() if s != "erin")


def test_feedback_html_per_student_hides_hidden_tests(graded):
    out = graded["out"]
    for student in ("alice", "bob", "carol", "dave", "erin"):
        page = (out / "feedback" / student / "99_tiny.html").read_text()
        assert f"feedback for {student}" in page and "double(-1) == -2" not in page
    assert "tampered" in (out / "feedback" / "erin" / "99_tiny.html").read_text()
    with (out / "manual.csv").open() as fh:
        manual = list(csv.DictReader(fh))
    assert len(manual) == 6
    assert all("Rubric" in r["rubric"] and "right on one input" in r["answer"] for r in manual)


def test_a_solved_copy_handed_in_is_not_tampering(tmp_path):
    """The instructor copy (hidden tests in its check cells) graded as a submission: nothing flagged."""
    (tmp_path / "99_tiny.py").write_text(TINY)
    instr = nbtool.build_notebook(tmp_path / "99_tiny.py")
    nb, checks, notes = grade.prepare(copy.deepcopy(instr), instr)
    assert notes == [] and {gid: c[1] for gid, c in checks.items()} == {"99_tiny-check-1": False, "99_tiny-check-2": False}
    assert "double(-1)" in nb.cells[checks["99_tiny-check-1"][0]].source  # restored with the hidden test
