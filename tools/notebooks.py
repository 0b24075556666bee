"""Build, check and hand out the course notebooks.

The notebooks are authored as jupytext py:percent sources in ``notebooks/src/NN_name.py``; the
``.ipynb`` files that learners open are generated from them:

    python tools/notebooks.py build            # notebooks/src/*.py -> notebooks/*.ipynb
    python tools/notebooks.py check            # fail if a committed .ipynb differs from its source
    python tools/notebooks.py student OUTDIR   # student copies: solutions stubbed, hidden tests removed
    python tools/notebooks.py learner DIR      # a learner's own copies, made once, never overwritten
    python tools/notebooks.py lab DIR          # make them if missing, then open JupyterLab on them

A learner works in their own folder (``make lab``: ``mywork/``): the exercise copies there are
student copies, the solved copies sit in ``mywork/solutions/``. Both are written only when missing,
so nothing a learner saved is ever replaced; the committed ``notebooks/*.ipynb`` stay untouched.
``student`` refuses to replace a file that differs from what it would write (a learner's answers,
or a copy of an older version) unless given ``--force``, and names the files.

What the build adds to every notebook, after the source's title cell:
  * an "Open in Colab" badge, built from the repository URL in pyproject.toml ([project.urls]) and
    the package version (the notebook's release tag ``v<version>``);
  * the setup cell: only on Colab, pip-installs the course package at that release under a
    constraints file that pins every package Colab already has (torch, numpy, ipywidgets,
    transformers ...) to its installed version, so pip adds only what Colab lacks and changes none of
    Colab's own (``tests/test_packaging.py`` resolves it against Colab's package set); everywhere,
    ``setup_notebook()`` seeds the RNGs, picks the device, prints versions and warns a Colab user on
    a CPU runtime.
It also writes nbgrader's cell metadata: a code cell holding ``### BEGIN SOLUTION`` becomes an
autograded-answer cell, a cell tagged ``graded`` becomes an autograder-tests cell (``points=N`` in
its tags sets the points, default 1), and a markdown cell tagged ``manual`` (``# %% [markdown]
tags=["manual", "points=2"]``) becomes a manually graded answer cell: it holds the open question,
then the rubric or model answer between the solution markers, which the student copy replaces with
"YOUR ANSWER HERE" (a manual cell without markers is replaced whole, so its question must then sit
in the cell above). So an instructor with nbgrader can use the notebooks unchanged.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
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


#: where the setup cell writes the pins of Colab's installed packages (a pip constraints file)
COLAB_PINS = "/tmp/vlp-course-colab-pins.txt"


def install_requirement() -> str:
    """The pip requirement of this release: ``vlp-course @ git+<repository>@v<version>``."""
    repo, version = project_meta()
    return f"vlp-course @ git+{repo}@v{version}"


def setup_cell_source() -> str:
    _, version = project_meta()
    return f'''# Setup. On Colab only: install the course package at this notebook's release (v{version}), keeping
# every package Colab already has (torch, numpy, ipywidgets, ...) at its installed version: each is pinned
# in a constraints file, so pip adds only what Colab lacks. Everywhere: seed, pick the device, print versions.
import sys

if "google.colab" in sys.modules:
    import subprocess
    from importlib import metadata

    pins = {{}}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-").replace(".", "-")
        if name and name not in pins:
            pins[name] = dist.version
    with open("{COLAB_PINS}", "w") as fh:
        fh.write("".join(f"{{name}}=={{v}}\\n" for name, v in sorted(pins.items())))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "-c", "{COLAB_PINS}",
         "{install_requirement()}"],
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
    n_sol = n_check = n_manual = 0
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
        elif cell.cell_type == "markdown" and "manual" in cell.metadata.get("tags", []):
            n_manual += 1
            cell.metadata["nbgrader"] = {
                "grade": True, "grade_id": f"{stem}-manual-{n_manual}", "locked": False,
                "points": _points(cell), "schema_version": 3, "solution": True, "task": False,
            }
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
                problems.append(
                    f"{nbpath.relative_to(ROOT)}: cell {cell.get('id')} has stored outputs or an execution count "
                    "(it was saved after running; the committed notebooks are generated: keep your work in "
                    "mywork/ (`make lab`), and if you want to keep this file, copy it there before "
                    "`make notebooks` regenerates it)"
                )
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


def write_copies(outdir: Path, texts: dict[str, str], *, force: bool = False, keep: bool = False) -> dict[str, list[str]]:
    """Write ``{file name: text}`` into ``outdir`` without losing anyone's work.

    A missing file is written. A file that already holds exactly ``text`` is left alone. A file that
    differs (a learner's answers, or a copy made from an older source) is replaced only with
    ``force``; with ``keep`` it is kept silently (a learner's folder), else it is reported.

    Returns:
        ``{"written": [...], "same": [...], "kept": [...], "refused": [...]}`` (file names).
    """
    outdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, list[str]] = {"written": [], "same": [], "kept": [], "refused": []}
    for name, text in texts.items():
        target = outdir / name
        if not target.exists():
            target.write_text(text)
            report["written"].append(name)
        elif target.read_text() == text:
            report["same"].append(name)
        elif force:
            target.write_text(text)
            report["written"].append(name)
        else:
            report["kept" if keep else "refused"].append(name)
    return report


def student_texts(stems: list[str] | None = None) -> dict[str, str]:
    """``{NN_name.ipynb: student copy}`` for every source (or the stems given)."""
    return {f"{s.stem}.ipynb": dumps(student_copy(build_notebook(s))) for s in sources() if stems is None or s.stem in stems}


def cmd_student(args) -> int:
    outdir = Path(args.outdir).resolve()
    report = write_copies(outdir, student_texts(), force=args.force)
    print(f"{outdir}: wrote {len(report['written'])} student notebooks, {len(report['same'])} already up to date")
    if report["refused"]:
        print(f"✘ not replaced, because they differ from the new copy (saved answers, or an older version): "
              f"{', '.join(report['refused'])}\n  Move them away, or run again with --force (make student FORCE=1) to replace them.")
        return 1
    return 0


def cmd_clean(args) -> int:
    """Remove the student copies in a folder that are exactly what ``student`` writes; keep changed ones."""
    outdir = Path(args.outdir).resolve()
    fresh = student_texts()
    kept = []
    for path in sorted(outdir.glob("*.ipynb")):
        if args.force or fresh.get(path.name) == path.read_text():
            path.unlink()
        else:
            kept.append(path.name)
    if kept:
        print(f"kept {len(kept)} changed copies in {outdir} (FORCE=1 removes them): {', '.join(kept)}")
    elif outdir.is_dir() and not any(outdir.iterdir()):
        outdir.rmdir()
    return 0


def make_learner_copies(workdir: Path) -> dict[str, dict[str, list[str]]]:
    """A learner's folder: student copies in ``workdir``, solved copies in ``workdir/solutions``.

    Only missing files are written; a file that exists is never replaced (see :func:`write_copies`).
    """
    solved = {f"{s.stem}.ipynb": dumps(build_notebook(s)) for s in sources()}
    return {
        "exercises": write_copies(workdir, student_texts(), keep=True),
        "solutions": write_copies(workdir / "solutions", solved, keep=True),
    }


def _print_learner_report(workdir: Path, reports) -> None:
    ex, so = reports["exercises"], reports["solutions"]
    if ex["written"] or so["written"]:
        print(f"made {len(ex['written'])} exercise copies in {workdir} and {len(so['written'])} solved copies in "
              f"{workdir / 'solutions'} (these are yours: they are never overwritten)")
    old = ex["kept"] + [f"solutions/{n}" for n in so["kept"]]
    if old:
        print(f"note: {len(old)} of your copies differ from the current course version (your answers, or an update "
              f"of the course): {', '.join(old)}. They are kept; to get a fresh copy, rename yours and run again.")


def cmd_learner(args) -> int:
    workdir = Path(args.workdir).resolve()
    _print_learner_report(workdir, make_learner_copies(workdir))
    return 0


# The learner's lab: nbgrader's instructor menus (create assignment, formgrader, course list) are not
# shown. Its lab extension is disabled through a page config in a config folder of this lab alone
# (JUPYTER_CONFIG_PATH), and its server extensions on the command line; an instructor's own lab is
# unaffected.
NBGRADER_SERVER_EXTENSIONS = (
    "nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.validate_assignment",
    "nbgrader.server_extensions.assignment_list", "nbgrader.server_extensions.course_list",
)


def lab_command(workdir: Path, *, port: int | None = None, ip: str | None = None, browser: bool = True,
                allow_root: bool = False, jupyter: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The ``jupyter lab`` command line and extra environment of a learner's lab rooted at ``workdir``."""
    confdir = Path(sys.prefix) / "etc" / "vlp-course-learner-lab"
    (confdir / "labconfig").mkdir(parents=True, exist_ok=True)
    (confdir / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyter/nbgrader": True}}, indent=1) + "\n")
    off = "{" + ", ".join(f"'{e}': False" for e in NBGRADER_SERVER_EXTENSIONS) + "}"
    cmd = [jupyter or str(Path(sys.executable).parent / "jupyter"), "lab",
           f"--ServerApp.root_dir={workdir}", "--LabApp.default_url=/lab/tree/00_index.ipynb",
           f"--ServerApp.jpserver_extensions={off}"]
    if port is not None:
        cmd.append(f"--ServerApp.port={port}")
    if ip is not None:
        cmd.append(f"--ServerApp.ip={ip}")
    if not browser:
        cmd.append("--ServerApp.open_browser=False")
    if allow_root:
        cmd.append("--ServerApp.allow_root=True")
    env = {"JUPYTER_CONFIG_PATH": os.pathsep.join(filter(None, [str(confdir), os.environ.get("JUPYTER_CONFIG_PATH")]))}
    return cmd, env


def cmd_lab(args) -> int:
    workdir = Path(args.workdir).resolve()
    _print_learner_report(workdir, make_learner_copies(workdir))
    browser = str(args.browser).lower() not in {"no", "0", "false", "none"}
    cmd, env = lab_command(workdir, port=args.port, ip=args.ip, browser=browser,
                           allow_root=hasattr(os, "geteuid") and os.geteuid() == 0)
    print(f"your exercises: {workdir}; solved copies: {workdir / 'solutions'}")
    sys.stdout.flush()
    os.execve(cmd[0], cmd, {**os.environ, **env})
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="generate notebooks/*.ipynb from notebooks/src/*.py").set_defaults(fn=cmd_build)
    sub.add_parser("check", help="fail when a notebook differs from its source or has outputs").set_defaults(fn=cmd_check)
    p = sub.add_parser("student", help="write student copies (solutions stubbed, hidden tests removed)")
    p.add_argument("outdir")
    p.add_argument("--force", action="store_true", help="replace copies that differ (saved answers are lost)")
    p.set_defaults(fn=cmd_student)
    p = sub.add_parser("clean", help="remove unchanged student copies from a folder (changed ones are kept)")
    p.add_argument("outdir")
    p.add_argument("--force", action="store_true", help="remove changed copies too")
    p.set_defaults(fn=cmd_clean)
    p = sub.add_parser("learner", help="a learner's copies (exercises, and solved ones in solutions/), written only if missing")
    p.add_argument("workdir")
    p.set_defaults(fn=cmd_learner)
    p = sub.add_parser("lab", help="make the learner's copies if missing, then open JupyterLab on them")
    p.add_argument("workdir")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--ip", default=None)
    p.add_argument("--browser", default="yes", help="'no' to start without opening a browser (headless, remote)")
    p.set_defaults(fn=cmd_lab)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
