"""Execute every notebook in `notebooks/` top to bottom, in its quick size.

The notebooks are stored as jupytext percent-format `.py` files; each is converted to a
notebook object in memory and run by nbclient in a fresh kernel of *this* interpreter, with
a temporary working directory, so nothing is written into the repository. A cell that
raises (including the notebooks' own assertions on the mathematics) fails the test.
"""

import json
import os
import sys
import time
from pathlib import Path

import pytest

# The second tier (`pytest -m slow`): studies and notebooks in their quick sizes.
pytestmark = pytest.mark.slow

nbclient = pytest.importorskip("nbclient")
jupytext = pytest.importorskip("jupytext")
pytest.importorskip("ipykernel")

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.py"))
KERNEL = "zasjax-test-python3"
CELL_TIMEOUT_S = 600


def _kernel_spec(root: Path) -> Path:
    """A kernel spec that runs `sys.executable`, so a user-wide `python3` spec pointing at
    another interpreter cannot hijack the test. Returned as a JUPYTER_PATH entry."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (zasjax tests)",
        "language": "python",
    }))
    return root


def test_notebooks_found():
    names = {p.stem for p in NOTEBOOKS}
    assert {"quickstart", "depth-sweep", "gradient-flow", "landscape",
            "edge-of-stability"} <= names, names


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nb = jupytext.reads(path.read_text(encoding="utf-8"), fmt="py:percent")
    assert any(c.cell_type == "code" for c in nb.cells), f"{path.name} has no code cells"
    work = tmp_path / "cwd"
    work.mkdir()
    jupyter_path = _kernel_spec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(
        [str(jupyter_path), *filter(None, [os.environ.get("JUPYTER_PATH")])]))
    monkeypatch.setenv("ZASJAX_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    before = sorted(p.name for p in NOTEBOOKS_DIR.iterdir())

    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT_S, allow_errors=False,
        resources={"metadata": {"path": str(work)}})
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{path.name} failed in a cell:\n{e}", pytrace=False)
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")

    assert sorted(p.name for p in NOTEBOOKS_DIR.iterdir()) == before, \
        f"{path.name} wrote into notebooks/"
