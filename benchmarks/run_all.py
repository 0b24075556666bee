"""Run every benchmark and write one table: benchmarks/results/results.{md,csv}.

    python benchmarks/run_all.py            # everything (a few minutes on a 2-core CPU)
    python benchmarks/run_all.py --quick    # fewer repeats and sizes, for a smoke run
    python benchmarks/run_all.py --only scenes models

Each ``bench_*.py`` module in this folder exposes ``run(quick: bool) -> list[Row]``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import machine  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", help="names of bench_<name>.py modules to run")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    names = sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n in args.only]
    rows = []
    for name in names:
        mod = importlib.import_module(f"bench_{name}")
        if not hasattr(mod, "run"):
            continue
        print(f"== {name}")
        got = mod.run(quick=args.quick)
        for r in got:
            print(f"  {r.case:<40} {r.metric:<28} {r.value:12.4g} {r.unit}")
        rows.extend(got)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    flat = [r.flat() for r in rows]
    cols = ["bench", "case", "metric", "value", "unit", "device"]
    for f in flat:
        cols += [k for k in f if k not in cols]
    with (out / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(flat)
    lines = [f"# Benchmark results\n\nMeasured {stamp} on: {machine()}\n", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    for f in flat:
        cells = [f"{f.get(c):.4g}" if isinstance(f.get(c), float) else str(f.get(c, "")) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'results.md'} and results.csv ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
