"""The package's layers: every import points down.

    exercises -> recipes -> models | data -> text | vision | pretraining -> training -> checkpoints -> files | course | boxes

``models`` and ``data`` sit side by side and never import each other; ``pretraining`` imports nothing
above it; nothing but ``exercises`` imports ``recipes``. The test parses every module's imports
(including those inside functions) with :mod:`ast`, so it fails on the upward import itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "vlp_course"

#: rank of each top-level part of the package; an import must go to a strictly lower rank or stay in its own part
RANK = {
    "files": 0, "course": 0, "boxes": 0, "__init__": 0,
    "checkpoints": 1,
    "training": 2,
    "text": 3, "vision": 3, "pretraining": 3,
    "models": 4, "data": 4,
    "recipes": 5,
    "exercises": 6,
}


def part_of(module: str) -> str:
    """'vlp_course.models.blocks' -> 'models'; 'vlp_course.files' -> 'files'; 'vlp_course' -> '__init__'."""
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else "__init__"


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``vlp_course`` import in the file, relative imports resolved."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "vlp_course"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "vlp_course":
                if mod == "vlp_course":  # from vlp_course import files
                    found += [(node.lineno, f"vlp_course.{a.name}") for a in node.names]
                else:
                    found.append((node.lineno, mod))
    return found


def upward_imports() -> list[str]:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        own = part_of(".".join(path.relative_to(PKG.parent).with_suffix("").parts))
        for line, mod in imports_of(path):
            target = part_of(mod)
            if target == own:
                continue
            if target not in RANK or own not in RANK:
                bad.append(f"{path.relative_to(PKG.parent)}:{line} imports {mod}: part not in the layer table")
            elif RANK[target] >= RANK[own]:
                bad.append(f"{path.relative_to(PKG.parent)}:{line} imports {mod} ({own} may not import {target})")
    return bad


def test_every_import_points_down():
    assert upward_imports() == []


def test_the_checker_catches_an_upward_import(tmp_path):
    """The test can fail: a models file importing data, or pretraining importing models, is reported."""
    global PKG
    fake = tmp_path / "vlp_course"
    (fake / "models").mkdir(parents=True)
    (fake / "pretraining").mkdir()
    (fake / "models" / "m.py").write_text("def f():\n    from vlp_course.data.scenes import SHAPES\n")
    (fake / "pretraining" / "p.py").write_text("from ..models import blocks\n")
    old, PKG = PKG, fake
    try:
        bad = upward_imports()
    finally:
        PKG = old
    assert any("models/m.py:2 imports vlp_course.data.scenes" in b for b in bad), bad
    assert any("pretraining/p.py:1 imports vlp_course.models" in b for b in bad), bad


@pytest.mark.parametrize("name", ["IGNORE_INDEX = ", "def vqa_accuracy(", "def load_checkpoint("])
def test_one_definition_per_name(name):
    """IGNORE_INDEX, the official vqa_accuracy and load_checkpoint are each defined once."""
    where = [str(p.relative_to(PKG.parent)) for p in PKG.rglob("*.py") if any(
        line.lstrip().startswith(name) for line in p.read_text().splitlines())]
    assert len(where) == 1, where


def test_weights_files_are_read_and_written_in_one_module():
    """Every safetensors read and write goes through vlp_course/checkpoints.py (bad files named there)."""
    users = [str(p.relative_to(PKG.parent)) for p in PKG.rglob("*.py")
             if any(mod.split(".")[0] == "safetensors" for mod in _all_imports(p))]
    assert users == ["vlp_course/checkpoints.py"], users


def _all_imports(path: Path) -> list[str]:
    mods = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            mods += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            mods.append(node.module or "")
    return mods
