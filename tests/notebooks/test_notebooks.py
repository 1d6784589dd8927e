"""The notebooks in notebooks/ run top to bottom without an error, leave no files behind, and are
committed without outputs.

Each notebook runs in a fresh kernel of *this* interpreter (see ``kernel_env``), with the notebooks
folder as its working directory, exactly as Jupyter would start it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
DASHBOARD = NOTEBOOKS / "dashboard.ipynb"
TEACHING = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if p != DASHBOARD)
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))
CLIMATE_CSV = ROOT.parent / "shared" / "data" / "msda" / "Canadian_climate_history.csv"

CELL_TIMEOUT = 120  # seconds per cell; a notebook as a whole is meant to take under a minute
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# caches that pytest and hypothesis themselves may create in the repository root while we run
TOOL_CACHES = {".pytest_cache", ".hypothesis"}
# settings the dashboard notebook reads from the environment: the tests run it with none of them
APP_ENV = ("MSDA_WIDGETS_DATA", "MSDA_WIDGETS_THEME", "MSDA_WIDGETS_SETTINGS")


@pytest.fixture(scope="session")
def kernel_env(tmp_path_factory):
    """A "python3" kernel that is guaranteed to run this interpreter (the venv's).

    jupyter_client looks a kernel name up on the Jupyter data path, in this order: $JUPYTER_PATH,
    the user's folder (~/.local/share/jupyter), then sys.prefix, and the first "python3" found
    wins. A "python3" kernelspec in the user's folder pointing at another Python (common on
    teaching machines) would therefore run the notebooks without msda_widgets, or with another
    copy of it. So we write a kernelspec whose argv is ``sys.executable`` into a temporary folder
    and put that folder first on JUPYTER_PATH for this test session only. Nothing global is
    written or changed, and it also works where no kernelspec is installed at all (ipykernel
    only has to be importable, which it is: it is a dependency).
    """
    data_dir = tmp_path_factory.mktemp("jupyter_data")
    spec_dir = data_dir / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (msda_widgets tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        old = os.environ.get("JUPYTER_PATH")
        mp.setenv("JUPYTER_PATH", os.pathsep.join([str(data_dir)] + ([old] if old else [])))
        for name in APP_ENV:
            mp.delenv(name, raising=False)
        yield


def _snapshot() -> tuple[set, set]:
    """Everything under notebooks/, and the repository root's own entries."""
    in_notebooks = {p.relative_to(NOTEBOOKS) for p in NOTEBOOKS.rglob("*")}
    in_root = {p.name for p in ROOT.iterdir()} - TOOL_CACHES
    return in_notebooks, in_root


def _execute(path: Path, workdir: Path | None = None) -> nbformat.NotebookNode:
    """Run the notebook in a fresh kernel with ``workdir`` (default: the notebook's folder) as
    its working directory; a cell that raises makes nbclient raise CellExecutionError (with the
    cell and the traceback)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir or path.parent)}})
    client.execute()
    return nb


def _run_without_writing(path: Path) -> nbformat.NotebookNode:
    before = _snapshot()
    nb = _execute(path)
    after = _snapshot()
    new_in_notebooks = sorted(map(str, after[0] - before[0]))
    new_in_root = sorted(after[1] - before[1])
    assert not new_in_notebooks, f"{path.name} wrote into notebooks/: {new_in_notebooks}"
    assert not new_in_root, f"{path.name} wrote into the repository root: {new_in_root}"
    return nb


def test_the_teaching_notebooks_are_there():
    names = [p.name for p in TEACHING]
    assert names == ["01_quickstart.ipynb", "02_how_detection_works.ipynb",
                     "03_reading_explanations.ipynb", "04_real_data.ipynb",
                     "05_grading_a_detector.ipynb", "06_profiling_sensors.ipynb"]


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    """Clean diffs: no outputs, execution counts or saved widget state in the committed file."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    assert "widgets" not in nb.metadata, "saved widget state: clear the outputs before committing"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {cell.id} of {path.name} has outputs"
            assert cell.execution_count is None, f"cell {cell.id} of {path.name} has an execution count"
        assert "execution" not in cell.metadata, f"cell {cell.id} of {path.name} has execution timings"


def test_real_data_notebook_has_a_parameters_cell():
    """papermill-style: ``papermill 04_real_data.ipynb out.ipynb -p DATA_PATH /path/file.csv``."""
    nb = nbformat.read(NOTEBOOKS / "04_real_data.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert tagged[0].cell_type == "code"
    assert tagged[0].source.splitlines()[0].startswith("DATA_PATH = None")


@pytest.mark.slow
@pytest.mark.parametrize("path", TEACHING, ids=lambda p: p.name)
def test_notebook_runs(path, kernel_env):
    nb = _run_without_writing(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "not every cell ran"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors


@pytest.mark.slow
def test_real_data_notebook_falls_back_to_the_built_in_data(kernel_env, tmp_path, monkeypatch):
    """Where the climate file is present, test_notebook_runs covers the real-data branch; this
    covers the other one: run from a folder with no ../../shared beside it and no
    $MSDA_CLIMATE_CSV, the notebook says so and still runs on the built-in data."""
    if not CLIMATE_CSV.is_file():
        pytest.skip("the climate file is absent, so test_notebook_runs already ran the fallback")
    monkeypatch.delenv("MSDA_CLIMATE_CSV", raising=False)
    workdir = tmp_path / "course" / "term" / "notebooks"
    workdir.mkdir(parents=True)
    nb = _execute(NOTEBOOKS / "04_real_data.ipynb", workdir=workdir)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                      if o.output_type == "stream")
    assert "Falling back to the built-in demo data" in printed
    assert list(workdir.iterdir()) == []


@pytest.mark.slow
def test_dashboard_notebook_shows_the_app(kernel_env):
    nb = _run_without_writing(DASHBOARD)
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    views = [o for o in last.outputs if WIDGET_VIEW in o.get("data", {})]
    assert views, f"the last cell shows no widget; its outputs: {last.outputs}"
    assert views[0]["data"][WIDGET_VIEW]["model_id"]
