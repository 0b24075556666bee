"""The course's own runtime: each notebook's execution time, read from the last `make test` run.

`make test` (the nbval stage) writes build/notebook-times.csv; this turns it into benchmark rows.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from common import Row

ROOT = Path(__file__).resolve().parents[1]


def run(quick: bool = False) -> list[Row]:
    path = ROOT / "build" / "notebook-times.csv"
    if not path.exists():
        print(f"  (no {path.relative_to(ROOT)}: run `make test` or `make nbval` first)")
        return []
    # the times are as old as the last `make test`: say when that was
    recorded = {"recorded": dt.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")}
    rows, total = [], 0.0
    with path.open() as fh:
        for rec in csv.DictReader(fh):
            secs = float(rec["seconds"])
            total += secs
            rows.append(Row("course", rec["notebook"], "execution time", secs, "s", extra=dict(recorded)))
    rows.append(Row("course", f"all {len(rows)} notebooks in the file", "execution time", total, "s", extra=dict(recorded)))
    return rows
