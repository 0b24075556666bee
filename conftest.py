"""Root pytest plugin: nbval made robust to a busy machine, and a per-notebook execution-time table.

Output wait. Once a cell has finished (its execute reply came back within ``--nbval-cell-timeout``),
nbval 0.11 reads the cell's output messages and gives up when two of them are more than
``IPyNbCell.output_timeout`` seconds apart, an attribute it sets to 5 in ``IPyNbCell.__init__``
(nbval/plugin.py) with no command-line option. On a loaded 2-core machine the kernel can be slower
than that to flush a finished cell's last outputs, and nbval then fails with "Timeout of 5 seconds
exceeded waiting for output". Every collected cell gets ``NBVAL_OUTPUT_TIMEOUT`` seconds instead
(default 60). A real hang is still caught: a cell that does not finish hits the cell timeout, which
this does not change.

Times. nbval reports one test item per cell; this sums the time of every phase of every cell of a
notebook (kernel start included), prints a table at the end of the run, and writes it to
``build/notebook-times.csv`` (read by the benchmarks). Budget: 60 s per notebook on a 2-core CPU,
90 s the hard ceiling, 15 minutes for the whole course.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

TARGET_S, CEILING_S, COURSE_S = 60.0, 90.0, 900.0
_times: dict[str, float] = defaultdict(float)
_failed: dict[str, int] = defaultdict(int)
OUTPUT_TIMEOUT_S = float(os.environ.get("NBVAL_OUTPUT_TIMEOUT", "60"))


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        if hasattr(item, "output_timeout") and type(item).__module__.startswith("nbval"):
            item.output_timeout = max(item.output_timeout, OUTPUT_TIMEOUT_S)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _times[path] += report.duration
        if report.failed:
            _failed[path] += 1


def pytest_terminal_summary(terminalreporter):
    if not _times:
        return
    tr = terminalreporter
    tr.section("notebook execution times")
    tr.write_line(f"{'notebook':<48} {'seconds':>8}  status")
    for path, secs in sorted(_times.items()):
        flag = "ok" if secs <= TARGET_S else ("over 60 s target" if secs <= CEILING_S else "OVER 90 s CEILING")
        if _failed[path]:
            flag += f", {_failed[path]} failed cells"
        tr.write_line(f"{Path(path).name:<48} {secs:8.1f}  {flag}")
    total = sum(_times.values())
    tr.write_line(f"{'total':<48} {total:8.1f}  {'ok' if total <= COURSE_S else 'over the 15-minute course budget'}")
    out = Path("build") / "notebook-times.csv"
    out.parent.mkdir(exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["notebook", "seconds"])
        for path, secs in sorted(_times.items()):
            w.writerow([Path(path).name, f"{secs:.2f}"])
