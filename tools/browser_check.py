"""The course in a real browser: JupyterLab and the built site, driven by headless Chromium.

    python tools/browser_check.py [--notebook notebooks/09_pretraining_tasks.ipynb] [--site build/site/html]

What it does, as a learner would:
  1. starts JupyterLab the way ``make lab`` does (``tools/notebooks.py``'s learner lab, with
     ``--allow-root`` as root), on a loopback port with a random token, with its own settings and
     workspace folders so that nothing of the user's JupyterLab state is read or changed;
  2. opens the notebook's solved copy in a fresh learner's folder (``build/browser/mywork/solutions/``,
     made by ``tools/notebooks.py``; so the committed notebook gets no outputs), runs all cells from the
     Run menu, waits for the last one, and fails if a cell shows an error or
     did not run; the saved copy is checked too (no ``error`` output, every code cell executed);
  3. changes the controls of the masking explorer (notebook 9, ``vlp_course.viz.explore``: the
     scheme drop-down, then the probability slider) and fails unless the explorer's printed output changes to the new scheme
     and probability;
  4. opens two pages of the built site (the index and the notebook's page) from the files and fails
     on a page without its title, an image that did not load, or a resource the browser could not load.
Screenshots of each step go to ``build/browser/*.png``.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium chromium-driver``)
and ``selenium`` (the ``site`` extra). Chromium runs with ``--headless --no-sandbox --disable-gpu``,
no background networking, no component updates and a fresh profile, so it works as root and
offline; Playwright's own browser download is not needed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--no-default-browser-check", "--window-size=1400,1000",
]
# JupyterLab settings for the check: every cell stays in the page (no windowing), and no news or
# update pop-up covers the notebook.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


class CheckFailed(Exception):
    pass


def log(msg: str) -> None:
    print(f"[browser-check] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def learner_lab(workdir: Path, make_copies: bool = True):
    """``make lab``'s JupyterLab command line (tools/notebooks.py's ``lab_command``), after making the
    learner's copies in ``workdir``; None where this checkout's tools/notebooks.py has no learner lab."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import notebooks as nbtool
    finally:
        sys.path.pop(0)
    if not (hasattr(nbtool, "make_learner_copies") and hasattr(nbtool, "lab_command")):
        return None
    if make_copies:
        nbtool.make_learner_copies(workdir)
    return nbtool.lab_command


def start_lab(workdir: Path, notebook: Path, port: int, token: str, state: Path, logfile: Path,
              copy_only: bool = False):
    """JupyterLab as ``make lab`` starts it (the learner's copies in ``workdir``, its command line,
    ``--allow-root`` as root), plus what a headless check needs: a loopback port, a token, no browser,
    settings and workspaces of its own. Returns (process, the notebook's path under ``workdir``)."""
    settings = state / "settings"
    for name, value in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    root = os.geteuid() == 0
    lab_command = learner_lab(workdir, make_copies=not copy_only)
    if copy_only or lab_command is None:  # a copy of the notebook as it is
        opened = workdir / notebook.name
        shutil.copyfile(notebook, opened)
    else:  # the solved copy in the learner's folder: every cell must run
        opened = workdir / "solutions" / notebook.name
    if lab_command is not None:
        cmd, extra_env = lab_command(workdir, port=port, ip="127.0.0.1", browser=False, allow_root=root)
    else:  # a checkout whose tools/notebooks.py has no learner lab: the same options by hand
        cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", f"--ServerApp.root_dir={workdir}",
               f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1", "--ServerApp.open_browser=False"]
        cmd += ["--ServerApp.allow_root=True"] if root else []
        extra_env = {}
    if not opened.exists():
        raise CheckFailed(f"{opened} was not made")
    cmd += ["--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
            f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={state / 'workspaces'}"]
    env = {**os.environ, **extra_env, "JUPYTER_RUNTIME_DIR": str(state / "runtime")}
    env.pop("MPLBACKEND", None)  # as `make lab`: the kernel draws plots inline
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=logfile.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise CheckFailed(f"JupyterLab exited with {proc.returncode}; see {logfile}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, opened
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise CheckFailed(f"JupyterLab did not answer on port {port} within 120 s; see {logfile}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_chromium(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if not Path(CHROMEDRIVER).exists():
        raise CheckFailed(f"{CHROMEDRIVER} not found: apt-get install -y chromium chromium-driver")
    return webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))


def wait_for(driver, what: str, fn, timeout: float, poll: float = 0.5):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as exc:  # a stale element while the page re-renders: try again
            last = exc
        time.sleep(poll)
    raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


# JavaScript read of the notebook's state: prompts of code cells and error outputs.
CELLS_JS = """
const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
if (!nb) return null;
const cells = [...nb.querySelectorAll(':scope .jp-Cell.jp-CodeCell')];
return cells.map(c => ({
  prompt: (c.querySelector('.jp-InputArea-prompt') || {}).textContent || '',
  empty: ((c.querySelector('.cm-content') || {}).textContent || '').trim() === '',
  error: [...c.querySelectorAll('.jp-OutputArea-output')].some(o =>
      (o.getAttribute('data-mime-type') || '').includes('stderr') && /Traceback|Error:|Exception/.test(o.textContent)),
  text: [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent).join('\\n').slice(-300),
}));
"""


def run_menu(driver, menu: str, label: str) -> None:
    """Click ``menu`` in JupyterLab's menu bar, then its entry ``label`` (as a learner would)."""
    from selenium.webdriver.common.by import By

    items = driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
    match = [i for i in items if i.text.strip() == menu]
    if not match:
        raise CheckFailed(f"no {menu!r} menu in JupyterLab's menu bar")
    match[0].click()
    xpath = ("//li[contains(@class, 'lm-Menu-item')][.//div[contains(@class, 'lm-Menu-itemLabel') "
             f"and normalize-space(.)='{label}']]")
    wait_for(driver, f"the menu entry {menu} > {label}", lambda: driver.find_element(By.XPATH, xpath), 10).click()


def check_notebook(driver, base: str, token: str, workdir: Path, copy: Path, timeout: float) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    rel = copy.relative_to(workdir).as_posix()
    t0 = time.time()
    driver.get(f"{base}/lab/tree/{rel}?token={token}")
    wait_for(driver, "the notebook's cells", lambda: driver.execute_script(CELLS_JS), 120)
    wait_for(driver, "the kernel to be idle (status bar)", lambda: "| Idle" in driver.find_element(
        By.ID, "jp-main-statusbar").text, 120)
    log(f"notebook open, kernel idle after {time.time() - t0:.1f} s")
    t1 = time.time()
    run_menu(driver, "Run", "Run All Cells")

    def finished():
        cells = driver.execute_script(CELLS_JS)
        if any(c["error"] for c in cells):
            return cells
        pending = [c for c in cells if not c["empty"] and not any(ch.isdigit() for ch in c["prompt"])]
        return cells if not pending else None

    cells = wait_for(driver, "every cell to run", finished, timeout, poll=2)
    ran = time.time() - t1
    driver.save_screenshot(str(OUT / "lab-notebook-ran.png"))
    errors = [i for i, c in enumerate(cells) if c["error"]]
    if errors:  # show the failing cell in the screenshot
        driver.execute_script(
            "const c = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')[arguments[0]];"
            "if (c) c.scrollIntoView({block: 'start'});", errors[0])
        time.sleep(1)
        driver.save_screenshot(str(OUT / "lab-notebook-ran.png"))
        raise CheckFailed(f"code cell(s) {errors} show an error: {cells[errors[0]]['text']}")
    log(f"all {len(cells)} code cells ran in {ran:.1f} s, none shows an error")

    # the masking explorer (vlp_course.viz.explore): the cell's first output is the drawn state, and a
    # row of controls (a drop-down, sliders) under it redraws that output in place
    box = wait_for(driver, "the explorer's controls (a code cell with a .widget-hbox holding a drop-down)",
                   lambda: driver.find_element(By.XPATH, "//div[contains(@class, 'jp-CodeCell')]"
                                               "[.//div[contains(@class, 'widget-hbox')]//select]"), 30)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
    output = lambda: box.find_element(By.CSS_SELECTOR, ".jp-OutputArea-output").text  # noqa: E731
    before = wait_for(driver, "the explorer's first output", lambda: output().strip(), 30)
    box.screenshot(str(OUT / "widget-before.png"))
    select = Select(box.find_element(By.CSS_SELECTOR, "select"))
    current = select.first_selected_option.get_attribute("value") or select.first_selected_option.text
    options = [o.text for o in select.options]
    new = next(o for o in options if o != current)
    select.select_by_visible_text(new)
    after = wait_for(driver, f"the output to show scheme {new}",
                     lambda: output() if output() != before and f"scheme {new}," in output() else None, 60)
    log(f"drop-down {current} -> {new}: output changed ({len(before)} -> {len(after)} characters)")
    handle = box.find_element(By.CSS_SELECTOR, ".widget-slider .noUi-handle")
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT)
    after2 = wait_for(driver, "the output to show p = 0.2",
                      lambda: output() if "p = 0.2:" in output() else None, 60)
    log("probability slider 0.15 -> 0.2: output changed")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
    box.screenshot(str(OUT / "widget-after.png"))
    driver.save_screenshot(str(OUT / "lab-widget-changed.png"))
    if after2 == before:
        raise CheckFailed("the explorer's output did not change")

    # the saved copy: no error output, every code cell executed
    run_menu(driver, "File", "Save Notebook")
    time.sleep(2)
    import nbformat

    nb = nbformat.read(copy, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    bad = [i for i, c in enumerate(code) if c.execution_count is None or any(o.output_type == "error" for o in c.outputs)]
    if bad:
        raise CheckFailed(f"saved notebook: code cells {bad} did not run or hold an error")
    return {"open_s": t1 - t0, "run_all_s": ran, "cells": len(code)}


def notebook_title(path: Path) -> str:
    """The text of the notebook's ``# title`` (the page title Sphinx gives it)."""
    import nbformat

    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            return cell.source.splitlines()[0][2:].strip()
    raise CheckFailed(f"{path} has no '# title' cell")


def check_site_page(driver, page: Path, title_part: str, shot: Path, min_images: int) -> None:
    if not page.exists():
        raise CheckFailed(f"{page} is missing: build the site first (make site)")
    driver.get_log("browser")  # drop earlier messages
    driver.get(page.resolve().as_uri())
    wait_for(driver, f"{page.name} to load", lambda: driver.execute_script("return document.readyState") == "complete", 30)
    title = driver.title
    if title_part not in title:
        raise CheckFailed(f"{page.name}: title {title!r} lacks {title_part!r}")
    images = driver.execute_script(
        "return [...document.images].map(i => [i.currentSrc || i.src, i.complete && i.naturalWidth > 0])")
    broken = [src for src, ok in images if not ok]
    if broken:
        raise CheckFailed(f"{page.name}: images that did not load: {broken}")
    if len(images) < min_images:
        raise CheckFailed(f"{page.name}: {len(images)} image(s), expected at least {min_images}")
    # resources the browser could not load (the theme's own console messages are not failures)
    failed = [m["message"] for m in driver.get_log("browser")
              if m["level"] == "SEVERE" and ("Failed to load resource" in m["message"] or "net::ERR" in m["message"])]
    if failed:
        raise CheckFailed(f"{page.name}: the browser reported: {failed}")
    if page.name != "index.html":  # show the first figure the notebook drew
        driver.execute_script("const i = document.querySelector('.cell_output img, article img');"
                              "if (i) i.scrollIntoView({block: 'center'});")
        time.sleep(0.5)
    driver.save_screenshot(str(shot))
    log(f"site page {page}: title {title!r}, {len(images)} image(s) loaded")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notebook", type=Path, default=ROOT / "notebooks" / "09_pretraining_tasks.ipynb",
                    help="a notebook with the masking explorer widget")
    ap.add_argument("--site", type=Path, default=ROOT / "build" / "site" / "html", help="the built site")
    ap.add_argument("--timeout", type=float, default=900, help="seconds for Run All")
    ap.add_argument("--skip-site", action="store_true", help="only the JupyterLab part")
    ap.add_argument("--skip-lab", action="store_true", help="only the site part")
    ap.add_argument("--copy", action="store_true",
                    help="open a copy of --notebook as it is instead of the learner's solved copy (the lab is still `make lab`'s)")
    args = ap.parse_args(argv)

    OUT.mkdir(parents=True, exist_ok=True)
    workdir = OUT / "mywork"  # a fresh learner's folder for each check
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    state = Path(tempfile.mkdtemp(prefix="vlp-browser-"))
    start = time.time()
    lab = driver = None
    result = None
    try:
        if not args.skip_lab:
            port, token = free_port(), secrets.token_hex(16)
            lab, copy = start_lab(workdir, args.notebook, port, token, state, OUT / "jupyterlab.log", args.copy)
            log(f"JupyterLab on 127.0.0.1:{port} after {time.time() - start:.1f} s, opening {copy.relative_to(ROOT)}")
        driver = start_chromium(state / "chromium-profile")
        if not args.skip_lab:
            result = check_notebook(driver, f"http://127.0.0.1:{port}", token, workdir, copy, args.timeout)
        if not args.skip_site:
            check_site_page(driver, args.site / "index.html", "Vision-language pretraining", OUT / "site-index.png", 1)
            page = args.site / "notebooks" / (args.notebook.stem + ".html")
            check_site_page(driver, page, notebook_title(args.notebook)[:24], OUT / "site-notebook.png", 1)
    except CheckFailed as exc:
        if driver is not None:
            driver.save_screenshot(str(OUT / "failure.png"))
        log(f"FAILED: {exc} (screenshot: {(OUT / 'failure.png').relative_to(ROOT)})")
        return 1
    finally:
        if driver is not None:
            driver.quit()
        if lab is not None:
            stop(lab)
        shutil.rmtree(state, ignore_errors=True)
    ran = f" (Run All {result['run_all_s']:.1f} s, {result['cells']} code cells)" if result else ""
    log(f"passed in {time.time() - start:.1f} s{ran}; screenshots in {OUT.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
