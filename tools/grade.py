"""Release student copies and grade completed notebooks, with or without nbgrader.

    python tools/grade.py release 01 04 --out instructor/release     # stamped student copies + manifest
    python tools/grade.py grade SUBMISSIONS --out instructor/grades  # CSVs and HTML feedback
    python tools/grade.py nbgrader-source 01 04                      # instructor copies as nbgrader assignments

``make release NB="01 04"`` and ``make grade SUBMISSIONS=folder`` call the first two
(docs/instructors.md).

Release: the student copy of each chosen notebook (solutions stubbed, hidden tests removed, with
nbgrader's preprocessors, as ``make student``), without the Colab badge (it links the solved copy),
stamped with the course version and commit in a note under the title and in the notebook metadata
(``vlp_course``), into ``OUT/v<version>/``, with ``manifest.json``: each file's SHA-256 and its
exercises (grade_id, auto or manual, points).

Grading, for every ``.ipynb`` under SUBMISSIONS (any file name, e.g. Colab's "Copy of …"):

* the student is the first folder under SUBMISSIONS (``SUBMISSIONS/alice/Copy of 04_lenet5.ipynb``,
  or nbgrader's ``submitted/alice/04_lenet5/04_lenet5.ipynb``), or the file name's stem for a file
  lying directly in SUBMISSIONS;
* the course notebook is recognised from the release stamp, else the grade_ids in the cells'
  nbgrader metadata, else the notebook name in the file name;
* cells are matched by nbgrader ``grade_id``; a check cell whose metadata was lost is matched by its
  source. Every check cell is restored from the instructor copy (hidden tests included). A check
  cell whose code the student changed is graded with the restored code and flagged ``tampered``; a
  deleted one is put back after the cell that preceded it; a duplicated one runs once;
* the notebook runs top to bottom in a fresh kernel (working folder: a temporary one), offline, with
  a per-cell timeout (default 600 s: the course's longest training cell takes about 40 s on a 2-core
  CPU, under load up to three times that). A cell that runs past it is interrupted and the run goes
  on; errors do not stop the run;
* a check cell that runs without error earns its points; manual (open-question) cells are listed
  for grading by hand with the student's answer and the rubric.

Outputs in OUT: ``grades_long.csv`` (one row per student × notebook × exercise: status, points,
max points, tampered, notes), ``grades_wide.csv`` (one row per student, one column per exercise,
totals; manual exercises blank), ``feedback/<student>/<notebook>.html`` (a summary table and the
executed notebook, hidden tests not shown) and ``executed/<student>/<notebook>.ipynb``.

Student code runs with the grader's rights, as in nbgrader: grade on a machine or account you
can lose.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import hashlib
import html
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import notebooks as nbtool  # noqa: E402

TIMEOUT_ENAME = "GradingTimeout"
# The grading kernel runs offline and without progress bars, like CI.
KERNEL_ENV = {"VLP_COURSE_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
              "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0", "TQDM_DISABLE": "1"}


# ----------------------------------------------------------------------------------------- sources


def pick_sources(src_dir: Path, wanted: list[str]) -> list[Path]:
    """The py:percent sources in ``src_dir`` named by ``wanted`` ("04", "04_lenet5"; empty: all but the index).

    Raises:
        ValueError: if a name matches no source or several.
    """
    srcs = sorted(src_dir.glob("[0-9][0-9]_*.py"))
    if not wanted:
        return [s for s in srcs if s.stem != "00_index"]
    out = []
    for w in wanted:
        hits = [s for s in srcs if s.stem == w or s.stem.startswith(f"{w}_")]
        if len(hits) != 1:
            raise ValueError(f"{w!r} names {len(hits)} notebooks in {src_dir}; expected one of "
                             f"{', '.join(s.stem for s in srcs)}")
        out.append(hits[0])
    return out


def grade_ids(nb) -> list[dict]:
    """The graded parts of an instructor notebook: ``[{grade_id, kind, points, index}]``, kind auto/manual."""
    out = []
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            kind = "auto" if cell.cell_type == "code" else "manual"
            out.append({"grade_id": meta["grade_id"], "kind": kind, "points": meta.get("points", 1), "index": i})
    return out


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ----------------------------------------------------------------------------------------- release


def released_copy(src: Path, version: str, commit: str):
    """The student copy handed out: stubbed, no badge, stamped (note under the title and metadata)."""
    nb = nbtool.student_copy(nbtool.build_notebook(src))
    nb.cells = [c for c in nb.cells if "colab-badge.svg" not in c.source]
    stamp = nbformat.v4.new_markdown_cell(
        f"*Student copy of `{src.stem}`, vlp-course v{version} (commit {commit}).* Write your code where a "
        "cell raises `NotImplementedError()` and your answers where it says YOUR ANSWER HERE. Keep the "
        "check cells as they are: they are restored from the course's copy when graded.")
    stamp.id = "release-stamp"
    nb.cells.insert(1, stamp)
    nb.metadata["vlp_course"] = {"notebook": src.stem, "version": version, "commit": commit}
    return nb


def cmd_release(args) -> int:
    src_dir = Path(args.source).resolve()
    version = nbtool.project_meta()[1]
    commit = git_commit()
    outdir = Path(args.out).resolve() / f"v{version}"
    srcs = pick_sources(src_dir, args.notebooks)
    texts = {f"{s.stem}.ipynb": nbtool.dumps(released_copy(s, version, commit)) for s in srcs}
    report = nbtool.write_copies(outdir, texts, force=args.force)
    if report["refused"]:
        print(f"✘ {outdir}: these differ from the new release and were kept: {', '.join(report['refused'])}; "
              "run again with --force (make release FORCE=1) to replace them")
        return 1
    manifest = {
        "course": "vlp-course", "version": version, "commit": commit,
        "released": _dt.date.today().isoformat(), "notebooks": [],
    }
    for s in srcs:
        name = f"{s.stem}.ipynb"
        parts = grade_ids(nbtool.build_notebook(s))
        manifest["notebooks"].append({
            "file": name, "notebook": s.stem,
            "sha256": hashlib.sha256((outdir / name).read_bytes()).hexdigest(),
            "exercises": [{k: p[k] for k in ("grade_id", "kind", "points")} for p in parts],
            "points": sum(p["points"] for p in parts),
        })
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"released {len(srcs)} notebooks to {outdir} (manifest.json lists files, exercises and points)")
    return 0


# ----------------------------------------------------------------------------------------- grading


@dataclass
class Graded:
    """One submission: who, which notebook, and per exercise status and points."""

    student: str
    file: str
    notebook: str = ""
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _norm(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _gid(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def student_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else path.stem


def identify(nb, path: Path, instructors: dict) -> str | None:
    """Which course notebook a submission is: release stamp, else grade_ids, else the file name."""
    stem = nb.metadata.get("vlp_course", {}).get("notebook")
    if stem in instructors:
        return stem
    for cell in nb.cells:
        gid = _gid(cell) or ""
        m = re.match(r"(.+)-(solution|check|manual)-\d+$", gid)
        if m and m.group(1) in instructors:
            return m.group(1)
    hits = [s for s in instructors if s in path.name]
    return hits[0] if len(hits) == 1 else None


def prepare(sub, instr):
    """The notebook to run: the student's cells, with every check cell restored from the instructor copy.

    Returns:
        ``(nb, checks, notes)``: the notebook, ``{grade_id: (cell index, tampered, how)}`` for the
        auto-graded cells, and notes (deleted, duplicated, restored cells).
    """
    released = nbtool.student_copy(instr)
    cells = [c for c in sub.cells]
    notes = []
    # Plain cells of the instructor copy matched by source, to place a deleted check cell.
    student_index: dict[int, int] = {}
    used: set[int] = set()
    for j, icell in enumerate(released.cells):
        gid = _gid(icell)
        for k, scell in enumerate(cells):
            if k in used:
                continue
            if (gid and _gid(scell) == gid) or (not gid and scell.cell_type == icell.cell_type
                                                and _norm(scell.source) == _norm(icell.source)):
                student_index[j] = k
                used.add(k)
                break
    drop: set[int] = set()
    inserts: dict[int, list] = {}
    checks: dict[str, tuple] = {}
    for part in grade_ids(instr):
        if part["kind"] != "auto":
            continue
        gid, j = part["grade_id"], part["index"]
        want = _norm(released.cells[j].source)
        same_id = [k for k, c in enumerate(cells) if _gid(c) == gid]
        how = "as submitted"
        if not same_id:  # metadata lost (copied cells, other editors): match the code itself
            same_id = [k for k, c in enumerate(cells)
                       if c.cell_type == "code" and not _gid(c) and _norm(c.source) == want]
            how = "matched by its code (metadata lost)" if same_id else how
        restored = nbformat.v4.new_code_cell(instr.cells[j].source, metadata=dict(instr.cells[j].metadata))
        restored.id = f"restored-{gid}"
        if not same_id:
            anchor = max((student_index[i] for i in student_index if i < j and student_index[i] not in drop), default=None)
            inserts.setdefault(anchor, []).append((gid, restored))
            notes.append(f"{gid}: check cell deleted, put back")
            checks[gid] = (None, False, "deleted, put back")
            continue
        first, *dups = same_id
        if dups:
            notes.append(f"{gid}: check cell duplicated {len(dups)} time(s); runs once")
            drop.update(dups)
        # The released code, or the instructor's own (a solved copy handed in), is not tampering.
        tampered = _norm(cells[first].source) not in {want, _norm(instr.cells[j].source)}
        if tampered:
            notes.append(f"{gid}: check cell edited by the student (tampered); graded with the course's code")
        cells[first] = restored
        checks[gid] = (first, tampered, how)
    out, where = [], {}
    for k, cell in enumerate(cells):
        if k not in drop:
            where[k] = len(out)
            out.append(cell)
        for gid, new in inserts.get(k, []):
            checks[gid] = (len(out), False, "deleted, put back")
            out.append(new)
    for gid, new in inserts.get(None, []):  # nothing of the notebook left before it: at the end
        checks[gid] = (len(out), False, "deleted, put back")
        out.append(new)
    for gid, (k, tampered, how) in list(checks.items()):
        if how != "deleted, put back":
            checks[gid] = (where[k], tampered, how)
    nb = nbformat.v4.new_notebook(cells=out, metadata=sub.metadata)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return nb, checks, notes


def execute(nb, timeout: int, workdir: Path) -> tuple[dict[int, dict], str | None]:
    """Run ``nb`` in place in a fresh kernel; ``({cell index: execute reply content}, problem or None)``."""
    from nbclient import NotebookClient

    replies: dict[int, dict] = {}

    def on_cell_executed(cell, cell_index, execute_reply):
        replies[cell_index] = execute_reply.get("content", {})

    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": f"the cell ran for more than {timeout} s", "traceback": []},
        iopub_timeout=60, startup_timeout=120, record_timing=False,
        resources={"metadata": {"path": str(workdir)}}, on_cell_executed=on_cell_executed,
    )
    problem = None
    try:
        client.execute(env={**os.environ, **KERNEL_ENV})
    except Exception as err:  # the kernel died (os._exit, memory), or it would not start
        problem = f"run stopped: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return replies, problem


def _answer_text(cell) -> str:
    return cell.source.strip()


def grade_one(path: Path, root: Path, instructors: dict, timeout: int, outdir: Path) -> Graded:
    g = Graded(student=student_of(path, root), file=str(path.relative_to(root)))
    t0 = time.perf_counter()
    try:
        sub = nbformat.read(path, as_version=4)
    except Exception as err:
        g.notes.append(f"unreadable: {type(err).__name__}: {err}")
        return g
    stem = identify(sub, path, instructors)
    if stem is None:
        g.notes.append("not recognised as a course notebook (no release stamp, grade_ids or notebook name)")
        return g
    g.notebook = stem
    instr = instructors[stem]
    nb, checks, notes = prepare(sub, instr)
    g.notes += notes
    with tempfile.TemporaryDirectory(prefix="vlp-grade-") as work:
        replies, problem = execute(nb, timeout, Path(work))
    if problem:
        g.notes.append(problem)
    timed_out = [i for i, r in replies.items() if r.get("ename") == TIMEOUT_ENAME]
    if timed_out:
        g.notes.append(f"cell(s) {', '.join(map(str, timed_out))} ran past the {timeout} s timeout and were interrupted")
    released = nbtool.student_copy(instr)
    sub_by_gid = {_gid(c): c for c in sub.cells if _gid(c)}
    for part in grade_ids(instr):  # an answer cell whose metadata was lost: found by its question
        question = released.cells[part["index"]].source.split("YOUR ANSWER HERE")[0].strip()
        if part["kind"] == "manual" and part["grade_id"] not in sub_by_gid and question:
            found = [c for c in sub.cells if c.cell_type == "markdown" and not _gid(c) and c.source.strip().startswith(question)]
            if found:
                sub_by_gid[part["grade_id"]] = found[0]
    for part in grade_ids(instr):
        gid, pts = part["grade_id"], part["points"]
        row = {"student": g.student, "notebook": stem, "grade_id": gid, "kind": part["kind"],
               "max_points": pts, "tampered": "", "file": g.file, "note": ""}
        if part["kind"] == "manual":
            cell = sub_by_gid.get(gid)
            row.update(status="to grade by hand" if cell is not None else "missing", points="")
            row["answer"] = _answer_text(cell) if cell is not None else ""
            row["rubric"] = _answer_text(instr.cells[part["index"]])
        else:
            k, tampered, how = checks[gid]
            reply = replies.get(k)
            if reply is None:
                status = "not run"
            elif reply.get("status") == "ok":
                status = "passed"
            elif reply.get("ename") == TIMEOUT_ENAME:
                status = "timed out"
            else:
                status = f"failed: {reply.get('ename', '')}: {str(reply.get('evalue', ''))[:200]}"
            row.update(status=status, points=pts if status == "passed" else 0,
                       tampered="yes" if tampered else "", note="" if how == "as submitted" else how)
            # Feedback shows the check as the student had it: no hidden tests.
            nb.cells[k].source = released.cells[part["index"]].source
        g.rows.append(row)
    g.seconds = time.perf_counter() - t0
    write_feedback(g, nb, outdir)
    return g


def write_feedback(g: Graded, nb, outdir: Path) -> None:
    from nbconvert import HTMLExporter

    safe = re.sub(r"[^\w.@+-]+", "_", g.student)
    (outdir / "executed" / safe).mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, outdir / "executed" / safe / f"{g.notebook}.ipynb")
    rows = "".join(
        f"<tr><td>{html.escape(r['grade_id'])}</td><td>{html.escape(str(r['status']))}</td>"
        f"<td>{r['points']}</td><td>{r['max_points']}</td><td>{'tampered' if r['tampered'] else ''} {html.escape(r['note'])}</td></tr>"
        for r in g.rows)
    auto = [r for r in g.rows if r["kind"] == "auto"]
    total = sum(r["points"] for r in auto)
    head = (f"<h2>{html.escape(g.notebook)}: feedback for {html.escape(g.student)}</h2>"
            f"<p>Automatic checks: {total} of {sum(r['max_points'] for r in auto)} points. "
            f"Open questions are graded by hand.</p><table border=1 cellpadding=4>"
            f"<tr><th>exercise</th><th>status</th><th>points</th><th>of</th><th>notes</th></tr>{rows}</table>"
            + "".join(f"<p>{html.escape(n)}</p>" for n in g.notes))
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    i = body.find(">", body.find("<body")) + 1
    (outdir / "feedback" / safe).mkdir(parents=True, exist_ok=True)
    (outdir / "feedback" / safe / f"{g.notebook}.html").write_text(body[:i] + f"<div style='margin:1em'>{head}</div>" + body[i:])


def write_tables(results: list[Graded], outdir: Path) -> None:
    cols = ["student", "notebook", "grade_id", "kind", "status", "points", "max_points", "tampered", "note", "file"]
    with (outdir / "grades_long.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for g in results:
            if not g.rows:
                w.writerow([g.student, g.notebook, "", "", "; ".join(g.notes), "", "", "", "", g.file])
            for r in g.rows:
                w.writerow([r.get(c, "") for c in cols])
    gids: list[str] = []
    for g in results:
        for r in g.rows:
            if r["grade_id"] not in gids:
                gids.append(r["grade_id"])
    students: dict[str, dict] = {}
    for g in sorted(results, key=lambda g: g.file):
        s = students.setdefault(g.student, {"files": [], "notes": []})
        s["files"].append(g.file)
        s["notes"] += [f"{g.notebook or g.file}: {n}" for n in g.notes]
        for r in g.rows:
            s.setdefault("parts", {})
            prev = s["parts"].get(r["grade_id"])
            if prev is not None:  # two files of one notebook: keep the better, say so
                s["notes"].append(f"{r['grade_id']}: graded in more than one file, the best kept")
                if r["points"] == "" or (prev["points"] != "" and prev["points"] >= r["points"]):
                    continue
            s["parts"][r["grade_id"]] = r
    with (outdir / "grades_wide.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["student", *gids, "auto_points", "auto_max", "manual_max", "tampered", "notes"])
        for name, s in sorted(students.items()):
            parts = s.get("parts", {})
            auto = [p for p in parts.values() if p["kind"] == "auto"]
            w.writerow([name, *[parts[g]["points"] if g in parts else "" for g in gids],
                        sum(p["points"] for p in auto), sum(p["max_points"] for p in auto),
                        sum(p["max_points"] for p in parts.values() if p["kind"] == "manual"),
                        " ".join(p["grade_id"] for p in parts.values() if p["tampered"]),
                        "; ".join(dict.fromkeys(s["notes"]))])
    manual = [r for g in results for r in g.rows if r["kind"] == "manual"]
    if manual:
        with (outdir / "manual.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["student", "notebook", "grade_id", "max_points", "points", "answer", "rubric"])
            for r in manual:
                w.writerow([r["student"], r["notebook"], r["grade_id"], r["max_points"], "", r["answer"], r["rubric"]])


def grade_folder(submissions: Path, outdir: Path, *, src_dir: Path, timeout: int = 600, jobs: int = 1) -> list[Graded]:
    """Grade every notebook under ``submissions``; write the CSVs and feedback into ``outdir``.

    Raises:
        ValueError: if ``submissions`` is not a folder or holds no ``.ipynb``; if ``timeout`` < 1.
    """
    if not submissions.is_dir():
        raise ValueError(f"submissions must be a folder of .ipynb files, got {submissions}")
    if int(timeout) < 1:
        raise ValueError(f"timeout must be at least 1 second, got {timeout}")
    files = sorted(p for p in submissions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not files:
        raise ValueError(f"{submissions} holds no .ipynb file")
    instructors = {s.stem: nbtool.build_notebook(s) for s in sorted(src_dir.glob("[0-9][0-9]_*.py"))}
    outdir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(lambda p: grade_one(p, submissions, instructors, int(timeout), outdir), files))
    write_tables(results, outdir)
    return results


def cmd_grade(args) -> int:
    t0 = time.perf_counter()
    results = grade_folder(Path(args.submissions).resolve(), Path(args.out).resolve(),
                           src_dir=Path(args.source).resolve(), timeout=args.timeout, jobs=args.jobs)
    for g in results:
        auto = [r for r in g.rows if r["kind"] == "auto"]
        flags = [r["grade_id"] for r in auto if r["tampered"]]
        print(f"{g.student:<20} {g.notebook or '?':<32} {sum(r['points'] for r in auto):>3}/"
              f"{sum(r['max_points'] for r in auto):<3} {g.seconds:6.1f} s"
              + (f"  tampered: {' '.join(flags)}" if flags else "") + ("  " + "; ".join(g.notes) if g.notes else ""))
    print(f"graded {len(results)} files in {time.perf_counter() - t0:.0f} s -> {Path(args.out).resolve()}"
          " (grades_long.csv, grades_wide.csv, feedback/)")
    return 0


def cmd_nbgrader_source(args) -> int:
    """Copy instructor notebooks into nbgrader's layout: instructor/nbgrader/source/<stem>/<stem>.ipynb."""
    src_dir = Path(args.source).resolve()
    course = ROOT / "instructor" / "nbgrader" / "source"
    for s in pick_sources(src_dir, args.notebooks):
        (course / s.stem).mkdir(parents=True, exist_ok=True)
        (course / s.stem / f"{s.stem}.ipynb").write_text(nbtool.dumps(nbtool.build_notebook(s)))
        print(f"assignment {s.stem}: {course / s.stem}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=str(nbtool.SRC), help="folder of the py:percent sources (default notebooks/src)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("release", help="stamped student copies of chosen notebooks, with manifest.json")
    p.add_argument("notebooks", nargs="*", help="e.g. 01 04 (default: every notebook but the index)")
    p.add_argument("--out", default=str(ROOT / "instructor" / "release"))
    p.add_argument("--force", action="store_true", help="replace released files that differ")
    p.set_defaults(fn=cmd_release)
    p = sub.add_parser("grade", help="grade a folder of completed notebooks")
    p.add_argument("submissions")
    p.add_argument("--out", default=str(ROOT / "instructor" / "grades"))
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    p.add_argument("--jobs", type=int, default=1, help="notebooks graded side by side (default 1)")
    p.set_defaults(fn=cmd_grade)
    p = sub.add_parser("nbgrader-source", help="instructor copies as nbgrader assignments (instructor/nbgrader/source)")
    p.add_argument("notebooks", nargs="*")
    p.set_defaults(fn=cmd_nbgrader_source)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
