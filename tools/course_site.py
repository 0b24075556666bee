"""The course as a static site: execute the notebooks once, build HTML from the executed copies, check it.

    python tools/course_site.py execute [NOTEBOOK ...]   # notebooks/*.ipynb -> build/executed/*.ipynb (with outputs)
    python tools/course_site.py build                    # build/executed + docs/site -> build/site/html
    python tools/course_site.py check                    # offline check of build/site/html

``execute`` runs each notebook top to bottom in a fresh kernel (nbclient, the library behind
``jupyter nbconvert --execute``), fails on the first error of a notebook (as ``nbval --nbval-lax``
does), saves the executed copy with its outputs to ``build/executed/`` and prints a per-notebook
duration table (``--times-csv`` also writes it as CSV, the format of ``build/notebook-times.csv``).
A notebook that fails is saved to ``build/executed/failed/`` instead, so the site never shows it.

``build`` stages ``docs/site/`` (Sphinx ``conf.py``, ``index.md``) and the executed notebooks in
``build/site/src`` and runs ``sphinx-build -W --keep-going`` (myst-nb renders the notebooks; it never
executes them). An executed copy is used when its cells are the cells of ``notebooks/NN.ipynb``;
a missing or stale copy is executed first (``--no-execute`` refuses instead). The staged copies
differ from the executed ones in one way: the "Open in Colab" badge becomes a plain link, so no page
loads an image from elsewhere. The index's figure is the ``course-path`` cell's output of notebook 0,
and its runtime table comes from ``benchmarks/results/course/``.

``check`` reads every HTML page and fails on a missing page (each notebook has one), an ``<img>`` whose
file is missing, a link to a missing page or to an anchor that the target page does not have, and a
script, stylesheet or image loaded from another host (the site must read offline). It needs no
network: Sphinx's ``linkcheck`` builder is online-only.
"""

from __future__ import annotations

import argparse
import base64
import copy
import csv
import html.parser
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "build" / "executed"
SITE_SRC = ROOT / "docs" / "site"
SITE = ROOT / "build" / "site"
COURSE_TIMES = ROOT / "benchmarks" / "results" / "course"
FIGURE_TAG = "course-path"  # the tag of notebook 0's cell that draws the path through the course
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
TARGET_S, CEILING_S = 60.0, 90.0  # the per-notebook budget on a 2-core CPU (CONTRIBUTING.md)


def _show(path: Path) -> str:
    """A path for messages: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def course_notebooks() -> list[Path]:
    """notebooks/NN_name.ipynb, in course order."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


# --------------------------------------------------------------------------------------------------
# execute
# --------------------------------------------------------------------------------------------------

def _cells_of(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def is_fresh(executed: Path, source: Path) -> bool:
    """True when ``executed`` exists, has the same cells (type and source) as ``source`` and every
    code cell of it ran (has an execution count)."""
    if not executed.exists():
        return False
    done, src = nbformat.read(executed, as_version=4), nbformat.read(source, as_version=4)
    if _cells_of(done) != _cells_of(src):
        return False
    return all(c.execution_count is not None for c in done.cells if c.cell_type == "code" and c.source.strip())


def execute_notebook(source: Path, out_dir: Path = EXECUTED, timeout: int = 300) -> tuple[float, str | None]:
    """Run ``source`` top to bottom in a fresh python3 kernel started in notebooks/.

    Writes ``out_dir/<name>`` with outputs on success, ``out_dir/failed/<name>`` on an error.
    Returns (seconds, None) or (seconds, the error's summary). ``timeout`` is per cell, in seconds.
    Plots: the kernel gets matplotlib's inline backend even where ``MPLBACKEND=Agg`` is exported (the
    Makefile does), else ``plt.show()`` would draw nothing and the site would have no figures.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(source, as_version=4)
    saved = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND  # the kernel inherits this process's environment
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(source.parent)}})
    error = None
    start = time.perf_counter()
    try:
        client.execute()
    except CellTimeoutError:
        error = f"a cell ran longer than {timeout} s"
    except DeadKernelError:
        error = "the kernel died"
    except CellExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    finally:
        seconds = time.perf_counter() - start
        if saved is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = saved
    target = out_dir / source.name if error is None else out_dir / "failed" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    nbformat.write(nb, tmp)
    tmp.replace(target)
    if error is None:
        (out_dir / "failed" / source.name).unlink(missing_ok=True)
    else:
        (out_dir / source.name).unlink(missing_ok=True)
    return seconds, error


def print_times(times: dict[str, float], errors: dict[str, str]) -> None:
    print(f"{'notebook':<48} {'seconds':>8}  status")
    for name, secs in times.items():
        flag = "ok" if secs <= TARGET_S else ("over 60 s target" if secs <= CEILING_S else "OVER 90 s CEILING")
        if name in errors:
            flag += f", FAILED: {errors[name]}"
        print(f"{name:<48} {secs:8.1f}  {flag}")
    print(f"{'total':<48} {sum(times.values()):8.1f}")


def cmd_execute(args) -> int:
    sources = [Path(p).resolve() for p in args.notebooks] or course_notebooks()
    times, errors = {}, {}
    for src in sources:
        if args.stale_only and is_fresh(args.out / src.name, src):
            print(f"{src.name}: executed copy is up to date")
            continue
        secs, err = execute_notebook(src, args.out, args.timeout)
        times[src.name] = secs
        print(f"{src.name}: {secs:.1f} s" + (f"  FAILED: {err}" if err else ""), flush=True)
        if err:
            errors[src.name] = err
    if times:
        print_times(times, errors)
    if args.times_csv and times:
        args.times_csv.parent.mkdir(parents=True, exist_ok=True)
        with args.times_csv.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["notebook", "seconds"])
            for name, secs in times.items():
                w.writerow([name, f"{secs:.2f}"])
    if errors:
        print(f"{len(errors)} notebook(s) failed; their partial copies are in {args.out / 'failed'}", file=sys.stderr)
    return 1 if errors else 0


# --------------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------------

def _write_if_changed(path: Path, data: bytes) -> None:
    """Keep the file (and its mtime, so Sphinx rebuilds only what changed) when the bytes are equal."""
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\(([^)]*)\)", re.IGNORECASE)


def site_copy(nb):
    """The page's version of an executed notebook: the Colab badge (an image on another host)
    becomes a plain link to the same address."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _BADGE.sub(r"[Open in Colab](\1)", cell.source)
    return nb


def course_path_figure(index_nb) -> bytes:
    """The PNG that notebook 0's ``course-path`` cell drew (the figure of the site's front page)."""
    for cell in index_nb.cells:
        if cell.cell_type == "code" and FIGURE_TAG in cell.metadata.get("tags", []):
            for out in cell.get("outputs", []):
                png = out.get("data", {}).get("image/png")
                if png:
                    return base64.b64decode(png)
            raise ValueError(f"notebook 0's {FIGURE_TAG!r} cell has no image/png output: was it executed "
                             "with matplotlib's inline backend?")
    raise ValueError(f"notebook 0 has no code cell tagged {FIGURE_TAG!r}")


def runtimes_table(results: Path = COURSE_TIMES) -> str:
    """Markdown: each notebook's measured execution time on a 2-core CPU, from benchmarks/results/course/."""
    rows = {}
    with (results / "results.csv").open() as fh:
        for r in csv.DictReader(fh):
            if r["metric"] == "execution time" and r["case"].endswith(".ipynb"):
                rows[r["case"]] = (float(r["value"]), r["device"], r["recorded"])
    if not rows:
        raise ValueError(f"{results / 'results.csv'} has no per-notebook 'execution time' rows")
    measured = ""
    md = results / "results.md"
    if md.exists():
        m = re.search(r"^Measured (.+)$", md.read_text(), re.MULTILINE)
        measured = m.group(1).rstrip(".") if m else ""
    lines = [
        "Each notebook's execution time, top to bottom in a fresh kernel with the default sizes "
        "(the course's CI run" + (f"; measured {measured}" if measured else "") + "). The budget is "
        "about a minute a notebook on a 2-core CPU. The numbers come from `benchmarks/results/course/` "
        "(`make bench`, `benchmarks/README.md`).",
        "",
        "| notebook | seconds (CPU) |",
        "|---|---:|",
    ]
    for name, (secs, _device, _when) in sorted(rows.items()):
        lines.append(f"| [{name.removesuffix('.ipynb')}](notebooks/{name}) | {secs:.0f} |")
    lines.append(f"| all {len(rows)} | {sum(v[0] for v in rows.values()):.0f} |")
    return "\n".join(lines) + "\n"


def stage(executed: Path = EXECUTED, src: Path = SITE / "src", execute_missing: bool = True,
          timeout: int = 300) -> list[str]:
    """Fill ``src`` with docs/site and the site copies of the executed notebooks; returns warnings."""
    warnings = []
    for path in SITE_SRC.rglob("*"):
        if path.is_file():
            _write_if_changed(src / path.relative_to(SITE_SRC), path.read_bytes())
    notebooks = course_notebooks()
    for source in notebooks:
        done = executed / source.name
        if not is_fresh(done, source):
            if not execute_missing:
                if not done.exists():
                    raise SystemExit(f"{_show(done)} is missing (run: python tools/course_site.py execute {_show(source)})")
                warnings.append(f"{done.name}: executed copy is stale (not every cell ran, or the cells differ from {_show(source)}); used as is")
            else:
                print(f"{source.name}: no up-to-date executed copy, executing it", flush=True)
                secs, err = execute_notebook(source, executed, timeout)
                if err:
                    raise SystemExit(f"{source.name} failed after {secs:.0f} s: {err}")
                print(f"{source.name}: {secs:.1f} s", flush=True)
        nb = nbformat.read(done, as_version=4)
        _write_if_changed(src / "notebooks" / source.name, nbformat.writes(site_copy(nb)).encode())
    index_nb = nbformat.read(executed / notebooks[0].name, as_version=4)
    _write_if_changed(src / "_static" / "course-path.png", course_path_figure(index_nb))
    _write_if_changed(src / "runtimes.md", runtimes_table().encode())
    # pages of notebooks that no longer exist
    keep = {p.name for p in notebooks}
    for old in (src / "notebooks").glob("*.ipynb"):
        if old.name not in keep:
            old.unlink()
    return warnings


def cmd_build(args) -> int:
    start = time.perf_counter()
    warnings = stage(args.executed, args.out / "src", execute_missing=not args.no_execute, timeout=args.timeout)
    for w in warnings:
        print("warning:", w)
    staged = time.perf_counter()
    html_dir = args.out / "html"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-j", "auto",
           "-d", str(args.out / "doctrees"), str(args.out / "src"), str(html_dir)]
    if args.clean:
        shutil.rmtree(html_dir, ignore_errors=True)
        shutil.rmtree(args.out / "doctrees", ignore_errors=True)
    rc = subprocess.call(cmd, cwd=ROOT)
    built = time.perf_counter()
    print(f"site: staged in {staged - start:.1f} s, Sphinx {built - staged:.1f} s -> {_show(html_dir)}/index.html")
    if rc != 0:
        print("sphinx-build failed (warnings are errors)", file=sys.stderr)
        return rc
    return check(html_dir)


# --------------------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------------------

class _Page(html.parser.HTMLParser):
    """Collects a page's ids and the addresses it links to or loads."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []  # <a href>
        self.loads: list[tuple[str, str]] = []  # (tag, address) of img/script/stylesheet/source

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "img" and a.get("src") is not None:
            self.loads.append(("img", a["src"]))
        elif tag == "script" and a.get("src"):
            self.loads.append(("script", a["src"]))
        elif tag == "link" and a.get("href") and set((a.get("rel") or "").split()) & {"stylesheet", "icon", "preload"}:
            self.loads.append(("link", a["href"]))
        elif tag == "source" and a.get("src"):
            self.loads.append(("source", a["src"]))


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def check(html_dir: Path = SITE / "html", notebooks: list[Path] | None = None) -> int:
    """Check the built site offline; print each problem, return the number of problems (0 = good)."""
    problems: list[str] = []
    if not (html_dir / "index.html").exists():
        print(f"site check: {html_dir}/index.html is missing (build the site first)")
        return 1
    for nb in course_notebooks() if notebooks is None else notebooks:
        page = html_dir / "notebooks" / (nb.stem + ".html")
        if not page.exists():
            problems.append(f"missing page: {page.relative_to(html_dir)} (for {nb.name})")
    # the site's pages (the themes also copy HTML templates into _static/: those are no pages)
    pages = {p: None for p in html_dir.rglob("*.html") if p.relative_to(html_dir).parts[0] != "_static"}
    parsed: dict[Path, _Page] = {}

    def page_of(path: Path) -> _Page:
        if path not in parsed:
            parsed[path] = _parse(path)
        return parsed[path]

    for path in pages:
        rel = path.relative_to(html_dir)
        page = page_of(path)
        for tag, address in page.loads:
            parts = urlsplit(address)
            if address.startswith("data:"):
                continue
            if parts.scheme or address.startswith("//"):
                problems.append(f"{rel}: <{tag}> loads {address} from another host (the site must read offline)")
                continue
            target = (path.parent / unquote(parts.path)).resolve()
            if not parts.path or not target.is_file():
                problems.append(f"{rel}: <{tag}> file missing: {address}")
        for href in page.links:
            parts = urlsplit(href)
            if parts.scheme or href.startswith("//"):
                continue  # an outside link: not checked offline (mailto:, https:, ...)
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{rel}: broken link {href}")
                continue
            if parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in page_of(target).ids:
                    problems.append(f"{rel}: link {href}: no id {parts.fragment!r} in {target.relative_to(html_dir)}")
    for p in problems:
        print("site check:", p)
    print(f"site check: {len(pages)} pages, {len(problems)} problem(s)")
    return len(problems)


def cmd_check(args) -> int:
    return 1 if check(args.html) else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("execute", help="execute notebooks into build/executed/")
    e.add_argument("notebooks", nargs="*", help="notebooks to run (default: every notebooks/NN_*.ipynb)")
    e.add_argument("--out", type=Path, default=EXECUTED)
    e.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    e.add_argument("--times-csv", type=Path, default=None, help="also write the duration table as CSV here")
    e.add_argument("--stale-only", action="store_true", help="skip notebooks whose executed copy is up to date")
    e.add_argument("--threads", type=int, default=None,
                   help="OMP/MKL threads of each kernel (e.g. 1 on a machine that other jobs share)")
    e.set_defaults(func=cmd_execute)
    b = sub.add_parser("build", help="build the HTML site from the executed copies")
    b.add_argument("--executed", type=Path, default=EXECUTED)
    b.add_argument("--out", type=Path, default=SITE)
    b.add_argument("--timeout", type=int, default=300, help="seconds per cell, for notebooks executed here")
    b.add_argument("--no-execute", action="store_true", help="never execute: use stale copies, fail on missing ones")
    b.add_argument("--clean", action="store_true", help="rebuild every page")
    b.add_argument("--threads", type=int, default=None, help="OMP/MKL threads of kernels started here")
    b.set_defaults(func=cmd_build)
    c = sub.add_parser("check", help="check the built site offline")
    c.add_argument("--html", type=Path, default=SITE / "html")
    c.set_defaults(func=cmd_check)
    args = ap.parse_args(argv)
    if args.cmd in {"execute", "build"} and args.threads:  # the kernels inherit this environment
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
