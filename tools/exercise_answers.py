"""Compute the stored outputs the exercise checks compare with (``vlp_course/exercises/answers/``).

For each part (``vlp_course.exercises.<part>``) and each of its exercises, run the reference of
``tests/exercise_references.py`` on the exercise's seeded cases, post-process the output as the
check does, and write ``answers/<part>.json`` ({exercise: {labels, outputs}}) and
``answers/SHA256SUMS``. The references stay out of the package, so a student copy has nothing to
import that passes a check.

    python tools/exercise_answers.py            # write the answers
    python tools/exercise_answers.py --check    # recompute and compare; exit 1 on a difference

Run it after changing a case, a reference or the model code a reference calls;
``tests/test_exercise_feedback.py`` runs the comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from exercise_references import REFERENCES  # noqa: E402

from vlp_course.exercises import ANSWERS_DIR, encode  # noqa: E402

PARTS = ["text", "vision", "scenes", "pretraining", "visualbert", "lxmert", "vilbert", "vlbert", "vqa", "nlvr2", "comparison", "captioning", "text_to_image"]


def compute(part: str) -> dict:
    """``{exercise: {"labels": [...], "outputs": [encoded output, ...]}}`` of one part, in JSON-ready form."""
    module = importlib.import_module(f"vlp_course.exercises.{part}")
    refs = REFERENCES[part]
    if set(refs) != set(module.EXERCISES):
        raise SystemExit(f"{part}: references {sorted(refs)} but exercises {sorted(module.EXERCISES)}")
    out = {}
    for name, ex in module.EXERCISES.items():
        labels, outputs = [], []
        for label, args, kwargs in ex.cases():
            with torch.no_grad():
                y = refs[name](*args, **kwargs)
            if ex.postprocess is not None:
                y = ex.postprocess(y)
            labels.append(label)
            outputs.append(encode(y))
        out[name] = {"labels": labels, "outputs": outputs}
    return out


def dumps(data: dict) -> str:
    return json.dumps(data, sort_keys=False, separators=(",", ":")) + "\n"


def same(a, b, tol: float = 1e-5) -> bool:
    """Equal structure and values (floats within ``tol``, relative to 1 + |b|)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return abs(a - b) <= tol * (1 + abs(b))
    return type(a) is type(b) and a == b


def check() -> list[str]:
    """The parts whose stored answers differ from a fresh computation (or whose checksum is wrong)."""
    sums = (ANSWERS_DIR / "SHA256SUMS").read_text() if (ANSWERS_DIR / "SHA256SUMS").exists() else ""
    bad = []
    for part in PARTS:
        path = ANSWERS_DIR / f"{part}.json"
        if not path.exists():
            bad.append(f"{part}: {path.name} missing")
            continue
        if f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}" not in sums:
            bad.append(f"{part}: SHA-256 of {path.name} not in SHA256SUMS")
        if not same(json.loads(path.read_text()), compute(part)):
            bad.append(f"{part}: stored answers differ from the references")
    return bad


def write() -> None:
    ANSWERS_DIR.mkdir(exist_ok=True)
    lines = []
    for part in PARTS:
        path = ANSWERS_DIR / f"{part}.json"
        path.write_text(dumps(compute(part)))
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")
    (ANSWERS_DIR / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="recompute and compare; exit 1 on a difference")
    args = ap.parse_args(argv)
    if args.check:
        bad = check()
        print("\n".join(bad) if bad else "stored exercise answers match the references")
        return 1 if bad else 0
    write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
