"""The committed notebooks are exactly what their py:percent sources generate, with no outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import notebooks as nbtool  # noqa: E402


def test_committed_notebooks_match_sources_and_have_no_outputs():
    assert nbtool.check_problems() == []


def test_every_notebook_opens_with_title_badge_and_setup():
    repo, version = nbtool.project_meta()
    for src in nbtool.sources():
        nb = json.loads((ROOT / "notebooks" / f"{src.stem}.ipynb").read_text())
        title, badge, setup = nb["cells"][:3]
        assert "".join(title["source"]).startswith("# ")
        assert f"blob/v{version}/notebooks/{src.stem}.ipynb" in "".join(badge["source"])
        code = "".join(setup["source"])
        assert "google.colab" in code and f"@v{version}" in code and "setup_notebook" in code
        # never reinstall Colab's torch (or any package Colab has): all are pinned (tests/test_packaging.py)
        assert f'"-c", "{nbtool.COLAB_PINS}"' in code and "metadata.distributions()" in code


def test_index_links_every_notebook():
    index = (ROOT / "notebooks" / "src" / "00_index.py").read_text()
    for src in nbtool.sources():
        if src.stem != "00_index":
            assert f"({src.stem}.ipynb)" in index, f"the index does not link {src.stem}"
    import re

    stems = {s.stem for s in nbtool.sources()}
    for link in re.findall(r"\(([0-9][0-9]_[a-z0-9_]+)\.ipynb\)", index):
        assert link in stems, f"the index links {link}.ipynb, which has no source"


def test_student_copy_stubs_solutions_and_drops_hidden_tests(tmp_path):
    src = tmp_path / "99_demo.py"
    src.write_text(
        "# %% [markdown]\n# # Demo\n\n# %%\ndef double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n"
        "    ### END SOLUTION\n\n# %% tags=[\"graded\"]\nassert double(3) == 6\n### BEGIN HIDDEN TESTS\n"
        "assert double(5) == 10\n### END HIDDEN TESTS\n"
    )
    nb = nbtool.build_notebook(src)
    sol, check = nb.cells[3], nb.cells[4]
    assert sol.metadata["nbgrader"]["solution"] and not sol.metadata["nbgrader"]["grade"]
    assert check.metadata["nbgrader"]["grade"] and check.metadata["nbgrader"]["points"] == 1
    st = nbtool.student_copy(nb)
    assert "raise NotImplementedError()" in st.cells[3].source and "return 2 * x" not in st.cells[3].source
    assert "double(5)" not in st.cells[4].source and "assert double(3) == 6" in st.cells[4].source
