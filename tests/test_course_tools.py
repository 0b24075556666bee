"""The course's tools as learners and instructors use them: tools/notebooks.py, the Makefile, conftest.py.

A learner's copies are made once and never overwritten; `make student` and `make clean` keep a
changed copy unless forced; `make lab` opens the learner's folder on the index, offline unless
asked, with nbgrader's instructor menus off; manual (open-question) cells get nbgrader's metadata;
nbval waits long enough for a finished cell's outputs on a busy machine. The grading tool itself is
tested end to end in tests/notebooks/test_grading.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import notebooks as nbtool  # noqa: E402

TINY = '''# %% [markdown]
# # Tiny

# %%
def double(x):
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION

# %% tags=["graded"]
assert double(3) == 6

# %% [markdown] tags=["manual", "points=3"]
# Why test on two inputs?
#
# ### BEGIN SOLUTION
# Rubric: one input can pass by chance.
# ### END SOLUTION
'''


@pytest.fixture
def tiny_course(tmp_path, monkeypatch):
    """A one-notebook course in tmp_path/src, built into tmp_path/out."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "01_tiny.py").write_text(TINY)
    monkeypatch.setattr(nbtool, "SRC", src)
    monkeypatch.setattr(nbtool, "OUT", out)
    monkeypatch.setattr(nbtool, "ROOT", tmp_path)  # paths in messages are relative to it
    shutil.copy(ROOT / "pyproject.toml", tmp_path)  # the version and repository of the badge
    return src, out


def test_learner_copies_are_made_once_and_never_overwritten(tiny_course, tmp_path):
    work = tmp_path / "mywork"
    first = nbtool.make_learner_copies(work)
    assert first["exercises"]["written"] == ["01_tiny.ipynb"] and first["solutions"]["written"] == ["01_tiny.ipynb"]
    exercise = (work / "01_tiny.ipynb").read_text()
    assert "raise NotImplementedError()" in exercise and "return 2 * x" not in exercise
    assert "return 2 * x" in (work / "solutions" / "01_tiny.ipynb").read_text()
    # The learner saves an answer; a later `make lab` (or a course update) must not touch it.
    saved = exercise.replace("raise NotImplementedError()", "return x + x")
    (work / "01_tiny.ipynb").write_text(saved)
    again = nbtool.make_learner_copies(work)
    assert again["exercises"] == {"written": [], "same": [], "kept": ["01_tiny.ipynb"], "refused": []}
    assert (work / "01_tiny.ipynb").read_text() == saved
    # A deleted copy comes back.
    (work / "solutions" / "01_tiny.ipynb").unlink()
    assert nbtool.make_learner_copies(work)["solutions"]["written"] == ["01_tiny.ipynb"]


def test_student_refuses_to_replace_a_changed_copy_unless_forced(tiny_course, tmp_path, capsys):
    outdir = tmp_path / "student"
    assert nbtool.main(["student", str(outdir)]) == 0
    assert nbtool.main(["student", str(outdir)]) == 0, "an unchanged copy is not a conflict"
    path = outdir / "01_tiny.ipynb"
    path.write_text(path.read_text().replace("raise NotImplementedError()", "return x + x"))
    capsys.readouterr()
    assert nbtool.main(["student", str(outdir)]) == 1
    said = capsys.readouterr().out
    assert "01_tiny.ipynb" in said and "FORCE=1" in said
    assert "return x + x" in path.read_text()
    assert nbtool.main(["student", str(outdir), "--force"]) == 0
    assert "return x + x" not in path.read_text()


def test_clean_keeps_changed_copies(tiny_course, tmp_path):
    outdir = tmp_path / "student"
    nbtool.main(["student", str(outdir)])
    assert nbtool.main(["clean", str(outdir)]) == 0 and not outdir.exists()
    nbtool.main(["student", str(outdir)])
    path = outdir / "01_tiny.ipynb"
    path.write_text(path.read_text().replace("raise NotImplementedError()", "return x + x"))
    nbtool.main(["clean", str(outdir)])
    assert path.exists()
    nbtool.main(["clean", str(outdir), "--force"])
    assert not path.exists()


def test_manual_cell_gets_nbgrader_metadata_and_keeps_its_question(tiny_course):
    src, _ = tiny_course
    nb = nbtool.build_notebook(src / "01_tiny.py")
    manual = nb.cells[-1]
    assert manual.cell_type == "markdown"
    assert manual.metadata["nbgrader"] == {
        "grade": True, "grade_id": "01_tiny-manual-1", "locked": False, "points": 3,
        "schema_version": 3, "solution": True, "task": False,
    }
    student = nbtool.student_copy(nb).cells[-1]
    assert "Why test on two inputs?" in student.source and "YOUR ANSWER HERE" in student.source
    assert "Rubric" not in student.source


def test_check_advice_does_not_wipe_a_learners_work(tiny_course):
    src, out = tiny_course
    nb = nbtool.build_notebook(src / "01_tiny.py")
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="6\n")]
    nb.cells[3].execution_count = 1
    (out / "01_tiny.ipynb").write_text(nbtool.dumps(nb))
    problems = " ".join(nbtool.check_problems())
    assert "stored outputs" in problems and "mywork/" in problems and "copy it there before" in problems


def test_lab_command_roots_the_lab_at_the_learners_folder(tmp_path):
    cmd, env = nbtool.lab_command(tmp_path, port=8890, ip="0.0.0.0", browser=False, jupyter="jupyter")
    assert cmd[:2] == ["jupyter", "lab"]
    assert f"--ServerApp.root_dir={tmp_path}" in cmd and "--LabApp.default_url=/lab/tree/00_index.ipynb" in cmd
    assert {"--ServerApp.port=8890", "--ServerApp.ip=0.0.0.0", "--ServerApp.open_browser=False"} <= set(cmd)
    ext = next(a for a in cmd if a.startswith("--ServerApp.jpserver_extensions="))
    assert "'nbgrader.server_extensions.formgrader': False" in ext
    confdir = Path(env["JUPYTER_CONFIG_PATH"].split(os.pathsep)[0])
    page = json.loads((confdir / "labconfig" / "page_config.json").read_text())
    assert page == {"disabledExtensions": {"@jupyter/nbgrader": True}}


def _make_n(*args):
    out = subprocess.run(["make", "-n", "-B", "-o", ".venv/.installed", *args], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_make_lab_passes_options_and_stays_offline_unless_asked():
    plain = _make_n("lab", "PORT=8890", "IP=0.0.0.0", "BROWSER=no")
    assert "tools/notebooks.py lab mywork" in plain
    assert "--port 8890" in plain and "--ip 0.0.0.0" in plain and "--browser no" in plain
    assert "-u VLP_COURSE_OFFLINE" not in plain and "-u MPLBACKEND" in plain  # inline plots need the default backend
    assert "-u VLP_COURSE_OFFLINE -u HF_HUB_OFFLINE -u TRANSFORMERS_OFFLINE" in _make_n("lab", "ONLINE=1")
    assert "--force" in _make_n("student", "FORCE=1") and "--force" not in _make_n("student")


def test_make_test_runs_the_resolution_check_and_the_grading_test():
    text = (ROOT / "Makefile").read_text()
    test_line = next(line for line in text.splitlines() if line.startswith("test:"))
    assert "check-resolution" in test_line and "student-test" in test_line
    assert (ROOT / "tests" / "notebooks" / "test_grading.py").exists()  # run by the student-test stage


def test_nbval_waits_long_enough_for_a_finished_cells_outputs(tmp_path):
    """conftest.py raises nbval's 5 s wait between two output messages (IPyNbCell.output_timeout)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(nb, tmp_path / "probe.ipynb")
    (tmp_path / "probe_plugin.py").write_text(
        "def pytest_collection_finish(session):\n"
        "    print('OUTPUT_TIMEOUTS', [getattr(i, 'output_timeout', None) for i in session.items])\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    env.pop("NBVAL_OUTPUT_TIMEOUT", None)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "-p", "conftest", "-p", "probe_plugin", "--rootdir", str(tmp_path), str(tmp_path / "probe.ipynb")],
        cwd=tmp_path, capture_output=True, text=True, env=env)
    assert "OUTPUT_TIMEOUTS [60.0]" in out.stdout, out.stdout + out.stderr


def test_index_says_where_the_setup_cell_is():
    index = (ROOT / "notebooks" / "src" / "00_index.py").read_text()
    nb = nbtool.build_notebook(ROOT / "notebooks" / "src" / "00_index.py")
    assert "setup_notebook" in nb.cells[2].source  # the build puts it below the title cell
    assert "setup cell below" in index and "setup cell above" not in index
