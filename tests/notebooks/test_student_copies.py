"""Student copies: generated with nbgrader's preprocessors from the instructor notebooks.

For every notebook: the student copy has no solution left and no hidden test, and when executed top
to bottom every graded check cell fails (a stub cannot pass a check). The instructor copies
themselves are executed by the nbval stage of ``make test``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import notebooks as nbtool  # noqa: E402

SOURCES = nbtool.sources()
WITH_EXERCISES = [  # notebooks with at least one solution cell (prose may mention the markers)
    s for s in SOURCES
    if any(c.metadata.get("nbgrader", {}).get("solution") for c in nbtool.build_notebook(s).cells)
]


def _graded(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]


@pytest.mark.parametrize("src", SOURCES, ids=[s.stem for s in SOURCES])
def test_every_content_notebook_has_two_graded_exercises(src):
    nb = nbtool.build_notebook(src)
    if src.stem == "00_index":
        pytest.skip("the index has no exercises")
    sols = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(sols) >= 2, f"{src.name}: needs at least two auto-checked coding exercises, has {len(sols)}"
    assert len(_graded(nb)) >= 2, f"{src.name}: needs at least two graded check cells"


@pytest.mark.parametrize("src", WITH_EXERCISES, ids=[s.stem for s in WITH_EXERCISES])
def test_student_copy_fails_every_graded_check(src):
    student = nbtool.student_copy(nbtool.build_notebook(src))
    text = "\n".join(c.source for c in student.cells)
    assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
    assert "raise NotImplementedError()" in text
    client = NotebookClient(
        student, timeout=300, kernel_name="python3", allow_errors=True,
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    )
    client.execute()
    graded = _graded(student)
    assert graded, "no graded cells"
    passing = [c.metadata["nbgrader"]["grade_id"] for c in graded if not any(o.get("output_type") == "error" for o in c.outputs)]
    assert not passing, f"these graded checks pass in the student copy (a stub must fail them): {passing}"


def test_make_student_writes_every_notebook(tmp_path):
    """`make student` (tools/notebooks.py student): every notebook converts, the index included
    (nbgrader reads the solution markers in markdown cells too, so prose must not spell them out)."""
    assert nbtool.main(["student", str(tmp_path)]) == 0
    written = sorted(p.stem for p in tmp_path.glob("*.ipynb"))
    assert written == sorted(s.stem for s in SOURCES)
    for p in tmp_path.glob("*.ipynb"):
        text = p.read_text()
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text, p.name
