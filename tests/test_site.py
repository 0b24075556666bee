"""The static site's tools (tools/course_site.py): the offline HTML check, the freshness rule of the
executed copies, the page copy of a notebook, the runtime table and the index's figure.

None of these builds the site or runs a notebook (``make site`` does); they check the pieces on small
hand-made inputs where the right answer is known.
"""

from __future__ import annotations

import base64
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("course_site", ROOT / "tools" / "course_site.py")
course_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(course_site)

PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def _site(tmp_path: Path, index_body: str, page_body: str = '<h1 id="top">A</h1><p id="sec">x</p>') -> Path:
    html = tmp_path / "html"
    (html / "notebooks").mkdir(parents=True)
    (html / "_static").mkdir()
    (html / "_static" / "fig.png").write_bytes(PNG_1x1)
    (html / "index.html").write_text(f"<html><body>{index_body}</body></html>")
    (html / "notebooks" / "01_a.html").write_text(
        f'<html><head><link rel="stylesheet" href="../_static/s.css"></head><body>{page_body}'
        '<a href="../index.html">home</a><img src="../_static/fig.png"></body></html>')
    (html / "_static" / "s.css").write_text("body {}")
    return html


GOOD_INDEX = ('<a href="notebooks/01_a.html">A</a> <a href="notebooks/01_a.html#sec">section</a> '
              '<a href="#here" id="here">self</a> <a href="https://example.org/">outside</a> '
              '<img src="_static/fig.png" alt="fig"> <img src="data:image/png;base64,AAAA">')


def test_check_passes_a_complete_site(tmp_path, capsys):
    html = _site(tmp_path, GOOD_INDEX)
    assert course_site.check(html, notebooks=[Path("01_a.ipynb")]) == 0
    assert "2 pages, 0 problem(s)" in capsys.readouterr().out


@pytest.mark.parametrize("index_body, expected", [
    (GOOD_INDEX + '<img src="_static/missing.png">', "<img> file missing: _static/missing.png"),
    (GOOD_INDEX + '<a href="notebooks/02_b.html">B</a>', "broken link notebooks/02_b.html"),
    (GOOD_INDEX + '<a href="notebooks/01_a.html#nowhere">x</a>', "no id 'nowhere' in notebooks/01_a.html"),
    (GOOD_INDEX + '<a href="#nowhere">x</a>', "no id 'nowhere' in index.html"),
    (GOOD_INDEX + '<script src="https://cdn.example.org/x.js"></script>', "loads https://cdn.example.org/x.js from another host"),
    (GOOD_INDEX + '<img src="//cdn.example.org/x.png">', "from another host"),
])
def test_check_finds_each_kind_of_problem(tmp_path, capsys, index_body, expected):
    html = _site(tmp_path, index_body)
    assert course_site.check(html, notebooks=[Path("01_a.ipynb")]) == 1
    out = capsys.readouterr().out
    assert expected in out, out


def test_check_finds_a_missing_notebook_page(tmp_path, capsys):
    html = _site(tmp_path, GOOD_INDEX)
    assert course_site.check(html, notebooks=[Path("01_a.ipynb"), Path("02_b.ipynb")]) == 1
    assert "missing page: notebooks/02_b.html (for 02_b.ipynb)" in capsys.readouterr().out


def test_check_of_a_site_that_was_not_built(tmp_path):
    assert course_site.check(tmp_path / "nothing") == 1


def _notebook(*sources: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title")] + [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def test_an_executed_copy_is_fresh_only_with_the_same_cells_all_run(tmp_path):
    source, done = tmp_path / "src.ipynb", tmp_path / "done.ipynb"
    nbformat.write(_notebook("x = 1", "print(x)"), source)
    assert not course_site.is_fresh(done, source)  # missing
    executed = _notebook("x = 1", "print(x)")
    executed.cells[1].execution_count, executed.cells[2].execution_count = 1, 2
    nbformat.write(executed, done)
    assert course_site.is_fresh(done, source)
    executed.cells[2].execution_count = None  # a cell that did not run
    nbformat.write(executed, done)
    assert not course_site.is_fresh(done, source)
    executed.cells[2].execution_count = 2
    nbformat.write(executed, done)
    nbformat.write(_notebook("x = 2", "print(x)"), source)  # the source changed since
    assert not course_site.is_fresh(done, source)


def test_the_page_copy_turns_the_colab_badge_into_a_plain_link():
    sys_path_tools = str(ROOT / "tools")
    import sys

    sys.path.insert(0, sys_path_tools)
    try:
        import notebooks as nbtool
    finally:
        sys.path.remove(sys_path_tools)
    url = nbtool.colab_url("09_pretraining_tasks")
    nb = _notebook("1 + 1")
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(f"[![Open In Colab]({nbtool.COLAB_BADGE})]({url})"))
    page = course_site.site_copy(nb)
    assert page.cells[1].source == f"[Open in Colab]({url})"
    assert nb.cells[1].source.startswith("[![Open In Colab]")  # the executed copy is left as it was
    assert [c.source for c in page.cells[2:]] == ["1 + 1"]


def test_the_runtime_table_reads_the_course_benchmark(tmp_path):
    (tmp_path / "results.csv").write_text(
        "bench,case,metric,value,unit,device,recorded\n"
        "course,00_index.ipynb,execution time,4.14,s,cpu,2026-11-29 18:59\n"
        "course,01_one.ipynb,execution time,7.49,s,cpu,2026-11-29 18:59\n"
        "course,all 2 notebooks in the file,execution time,11.63,s,cpu,2026-11-29 18:59\n")
    (tmp_path / "results.md").write_text("# Results\n\nMeasured 2026-11-29 19:10 (0 min) on: AMD EPYC; 2 cores.\n")
    table = course_site.runtimes_table(tmp_path)
    assert "measured 2026-11-29 19:10 (0 min) on: AMD EPYC; 2 cores)" in table
    assert "| [00_index](notebooks/00_index.ipynb) | 4 |" in table
    assert "| [01_one](notebooks/01_one.ipynb) | 7 |" in table
    assert "| all 2 | 12 |" in table  # 4.14 + 7.49 = 11.63; the 'all' row of the file is not a notebook
    (tmp_path / "results.csv").write_text("bench,case,metric,value,unit,device,recorded\n")
    with pytest.raises(ValueError, match="no per-notebook"):
        course_site.runtimes_table(tmp_path)


def test_the_shipped_runtimes_cover_every_notebook():
    table = course_site.runtimes_table()
    for nb in course_site.course_notebooks():
        assert f"[{nb.stem}](notebooks/{nb.name})" in table, f"{nb.name} has no measured runtime"


def test_the_index_figure_is_the_output_of_notebook_0s_tagged_cell():
    index = nbformat.read(course_site.course_notebooks()[0], as_version=4)
    tagged = [c for c in index.cells if course_site.FIGURE_TAG in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code" and "plt.show()" in tagged[0].source
    with pytest.raises(ValueError, match="no image/png output"):
        course_site.course_path_figure(index)  # the committed notebook has no outputs
    tagged[0].outputs = [nbformat.v4.new_output("display_data", data={
        "image/png": base64.b64encode(PNG_1x1).decode(), "text/plain": "<Figure>"})]
    assert course_site.course_path_figure(index) == PNG_1x1
    with pytest.raises(ValueError, match="no code cell tagged"):
        course_site.course_path_figure(_notebook("1"))


def test_every_notebook_has_a_place_in_the_site_index():
    index = (ROOT / "docs" / "site" / "index.md").read_text()
    listed = re.findall(r"^notebooks/(\S+)$", index, re.MULTILINE)
    assert listed == [nb.stem for nb in course_site.course_notebooks()]
