"""Run every benchmark and write one table: benchmarks/results/results.{md,csv}.

    python benchmarks/run_all.py                  # everything (about half an hour on a 2-core CPU)
    python benchmarks/run_all.py --quick          # small sizes, fewer repeats: a smoke run of a few minutes
    python benchmarks/run_all.py --only scenes models --device cpu --threads 1

Each ``bench_*.py`` module in this folder exposes ``run(quick: bool) -> list[Row]``; a module whose
``run`` also takes ``devices`` (a list of "cpu"/"cuda") or ``out`` (the results folder) gets them.
The results record the date, the machine (CPU model, cores, torch version and threads, GPU) and
the load average before and after the run.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib
import inspect
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import Row, machine  # noqa: E402

BASE_COLUMNS = ["bench", "case", "metric", "value", "unit", "device"]


def available() -> list[str]:
    return sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_results(rows: list[Row], out: Path, header: list[str], modules: dict | None = None) -> None:
    """results.csv (one line per row, every column) and results.md: per bench, the module's own
    ``markdown(rows)`` tables when it has one, else one table with only the columns that bench fills."""
    out.mkdir(parents=True, exist_ok=True)
    flat = [r.flat() for r in rows]
    cols = list(BASE_COLUMNS)
    for f in flat:
        cols += [k for k in f if k not in cols]
    with (out / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(flat)
    lines = ["# Benchmark results", "", *header, ""]
    for bench in dict.fromkeys(f["bench"] for f in flat):
        lines += [f"## {bench}", ""]
        mod = (modules or {}).get(bench)
        if mod is not None and hasattr(mod, "markdown"):
            lines += mod.markdown([r for r in rows if r.bench == bench])
            continue
        part = [f for f in flat if f["bench"] == bench]
        used = [c for c in cols if c != "bench" and any(f.get(c) not in (None, "") for f in part)]
        lines += ["| " + " | ".join(used) + " |", "|" + "---|" * len(used)]
        lines += ["| " + " | ".join(_cell(f.get(c)) for c in used) + " |" for f in part]
        lines.append("")
    (out / "results.md").write_text("\n".join(lines))


def main(argv=None) -> int:
    names = available()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and fewer repeats (a smoke run)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help=f"benchmarks to run, from: {' '.join(names)}")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto (default): CPU, and CUDA too when a GPU is present")
    ap.add_argument("--threads", type=int, help="torch's intra-op threads (default: torch's own choice)")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for results.md, results.csv and plots")
    args = ap.parse_args(argv)
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            ap.error(f"unknown benchmark(s) {' '.join(unknown)}; choose from: {' '.join(names)}")
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be a positive integer, got {args.threads}")

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])
    out = Path(args.out)
    load0 = os.getloadavg()
    start = dt.datetime.now()
    desc = machine()  # before the benchmarks run: bench_scenes sets one thread for itself
    rows: list[Row] = []
    modules = {}
    for name in args.only or names:
        mod = importlib.import_module(f"bench_{name}")
        if not hasattr(mod, "run"):
            continue
        print(f"== {name}", flush=True)
        params = inspect.signature(mod.run).parameters
        kw = {}
        if "devices" in params:
            kw["devices"] = devices
        if "out" in params:
            kw["out"] = out
        got = mod.run(quick=args.quick, **kw)
        for r in got:
            modules.setdefault(r.bench, mod)
        for r in got:
            print(f"  {r.device:<5} {r.case:<58} {r.metric:<34} {r.value:12.4g} {r.unit}", flush=True)
        rows.extend(got)
    load1 = os.getloadavg()
    minutes = (dt.datetime.now() - start).total_seconds() / 60
    header = [f"Measured {start:%Y-%m-%d %H:%M} ({minutes:.0f} min{', --quick' if args.quick else ''}) on: {desc}.",
              "",
              f"Load average (1, 5, 15 min) before the run: {', '.join(f'{x:.2f}' for x in load0)}; "
              f"after: {', '.join(f'{x:.2f}' for x in load1)} ({os.cpu_count()} cores). A load above the "
              "core count means other processes shared the CPU while these numbers were taken.",
              "",
              "See benchmarks/README.md for what each benchmark measures and how."]
    write_results(rows, out, header, modules)
    print(f"wrote {out / 'results.md'} and results.csv ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
