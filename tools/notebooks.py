"""Build, check and hand out the course notebooks.

The notebooks are authored as jupytext py:percent sources in ``notebooks/src/NN_name.py``; the
``.ipynb`` files that learners open are generated from them:

    python tools/notebooks.py build            # notebooks/src/*.py -> notebooks/*.ipynb
    python tools/notebooks.py check            # fail if a committed .ipynb differs from its source
    python tools/notebooks.py student OUTDIR   # student copies: solutions stubbed, hidden tests removed

What the build adds to every notebook, after the source's title cell:
  * an "Open in Colab" badge, built from the repository URL in pyproject.toml ([project.urls]) and
    the package version (the notebook's release tag ``v<version>``);
  * the setup cell: only on Colab, pip-installs the course package at that release while pinning
    the torch and torchvision that Colab already has; everywhere, ``setup_notebook()`` seeds the
    RNGs, picks the device, prints versions and warns a Colab user on a CPU runtime.
It also writes nbgrader's cell metadata: a code cell holding ``### BEGIN SOLUTION`` becomes an
autograded-answer cell, a cell tagged ``graded`` becomes an autograder-tests cell (``points=N`` in
its tags sets the points, default 1), so an instructor with nbgrader can use the notebooks unchanged.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import jupytext
import nbformat

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "notebooks" / "src"
OUT = ROOT / "notebooks"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def project_meta() -> tuple[str, str]:
    """(repository URL, version) from pyproject.toml: the one place they are kept."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return meta["urls"]["Repository"].rstrip("/"), meta["version"]


def colab_url(stem: str) -> str:
    repo, version = project_meta()
    path = repo.split("github.com/", 1)[1]
    return f"https://colab.research.google.com/github/{path}/blob/v{version}/notebooks/{stem}.ipynb"


def setup_cell_source() -> str:
    repo, version = project_meta()
    return f'''# Setup. On Colab only: install the course package at this notebook's release (v{version}),
# keeping the torch and torchvision that Colab ships. Everywhere: seed, pick the device, print versions.
import sys

if "google.colab" in sys.modules:
    import subprocess

    import torch
    import torchvision

    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", f"torch=={{torch.__version__}}",
         f"torchvision=={{torchvision.__version__}}", "vlp-course @ git+{repo}@v{version}"],
        check=True,
    )

from vlp_course.course import setup_notebook

env = setup_notebook(seed=0)
device = env.device'''


def _points(cell) -> int:
    for tag in cell.metadata.get("tags", []):
        m = re.fullmatch(r"points=(\d+)", tag)
        if m:
            return int(m.group(1))
    return 1


def build_notebook(src: Path) -> nbformat.NotebookNode:
    """The instructor notebook generated from one py:percent source."""
    nb = jupytext.read(src, fmt="py:percent")
    stem = src.stem
    if not nb.cells or nb.cells[0].cell_type != "markdown" or not nb.cells[0].source.startswith("# "):
        raise ValueError(f"{src}: the first cell must be a markdown title starting with '# '")
    badge = nbformat.v4.new_markdown_cell(f"[![Open In Colab]({COLAB_BADGE})]({colab_url(stem)})")
    setup = nbformat.v4.new_code_cell(setup_cell_source())
    cells = [nb.cells[0], badge, setup] + list(nb.cells[1:])
    n_sol = n_check = 0
    out_cells = []
    for i, cell in enumerate(cells):
        cell = copy.deepcopy(cell)
        cell.id = f"c{i:03d}"
        cell.metadata.pop("lines_to_next_cell", None)
        cell.metadata.pop("lines_to_end_of_cell_marker", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            tags = cell.metadata.get("tags", [])
            if "### BEGIN SOLUTION" in cell.source:
                n_sol += 1
                cell.metadata["nbgrader"] = {
                    "grade": False, "grade_id": f"{stem}-solution-{n_sol}", "locked": False,
                    "schema_version": 3, "solution": True, "task": False,
                }
            elif "graded" in tags:
                n_check += 1
                cell.metadata["nbgrader"] = {
                    "grade": True, "grade_id": f"{stem}-check-{n_check}", "locked": True,
                    "points": _points(cell), "schema_version": 3, "solution": False, "task": False,
                }
            elif "### BEGIN HIDDEN TESTS" in cell.source:
                raise ValueError(f"{src}: a cell with hidden tests must be tagged 'graded'")
        out_cells.append(cell)
    nb.cells = out_cells
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


def dumps(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb, version=4) + "\n"


def sources() -> list[Path]:
    return sorted(SRC.glob("[0-9][0-9]_*.py"))


def cmd_build(_args) -> int:
    for src in sources():
        target = OUT / f"{src.stem}.ipynb"
        text = dumps(build_notebook(src))
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            print(f"wrote {target.relative_to(ROOT)}")
    return 0


def check_problems() -> list[str]:
    """Every way the committed notebooks differ from their sources or carry outputs."""
    problems = []
    srcs = {s.stem for s in sources()}
    for src in sources():
        target = OUT / f"{src.stem}.ipynb"
        if not target.exists():
            problems.append(f"{target.relative_to(ROOT)} is missing: run `make notebooks`")
        elif target.read_text() != dumps(build_notebook(src)):
            problems.append(f"{target.relative_to(ROOT)} differs from {src.relative_to(ROOT)}: run `make notebooks`")
    for nbpath in sorted(OUT.glob("*.ipynb")):
        if nbpath.stem not in srcs:
            problems.append(f"{nbpath.relative_to(ROOT)} has no source in notebooks/src/")
        nb = nbformat.read(nbpath, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
                problems.append(f"{nbpath.relative_to(ROOT)}: cell {cell.get('id')} has stored outputs or an execution count")
                break
    return problems


def cmd_check(_args) -> int:
    problems = check_problems()
    for p in problems:
        print("✘", p)
    if not problems:
        print(f"✔ {len(sources())} notebooks match their sources and carry no outputs")
    return 1 if problems else 0


def student_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """nbgrader's own preprocessors: solutions become a NotImplementedError stub, hidden tests go."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    nb = copy.deepcopy(nb)
    resources = {"language": "python"}
    nb, resources = ClearSolutions().preprocess(nb, resources)
    nb, resources = ClearHiddenTests().preprocess(nb, resources)
    return nb


def cmd_student(args) -> int:
    outdir = Path(args.outdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    for src in sources():
        nb = student_copy(build_notebook(src))
        (outdir / f"{src.stem}.ipynb").write_text(dumps(nb))
    print(f"wrote {len(sources())} student notebooks to {outdir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="generate notebooks/*.ipynb from notebooks/src/*.py").set_defaults(fn=cmd_build)
    sub.add_parser("check", help="fail when a notebook differs from its source or has outputs").set_defaults(fn=cmd_check)
    p = sub.add_parser("student", help="write student copies (solutions stubbed, hidden tests removed)")
    p.add_argument("outdir")
    p.set_defaults(fn=cmd_student)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
