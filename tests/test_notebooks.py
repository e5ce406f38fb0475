"""Every notebook runs headless on its small setting and shows what it should; the committed
.ipynb files are their jupytext .py sources, outputs stripped.

Each notebook runs in a fresh kernel of this interpreter (a kernelspec written to a temp dir, so
that a `python3` kernel registered elsewhere cannot take its place), in a temp working directory,
with LTF_NOTEBOOK_SMOKE=1. The kernels and the sweep's processes share one JAX compilation
cache, so that each reuses what the others compiled before it (model init ops, for one).
"""

import json
import sys
from pathlib import Path

import pytest

from ltf.writers import read_metrics

WHY = "the notebook tests need the [notebooks] extra: pip install -e '.[notebooks]'"
jupytext = pytest.importorskip("jupytext", reason=WHY)
nbclient = pytest.importorskip("nbclient", reason=WHY)
nbformat = pytest.importorskip("nbformat", reason=WHY)
pytest.importorskip("ipykernel", reason=WHY)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py"))
KERNEL = "ltf-notebook-test"


@pytest.fixture
def kernel_env(tmp_path, tmp_path_factory, monkeypatch):
    base = tmp_path_factory.getbasetemp()
    spec_dir = base / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "ltf test kernel", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(base / "jupyter"))
    monkeypatch.setenv("LTF_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("LTF_NOTEBOOK_WORKDIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LTF_CACHE_DIR", str(base / "ltf-cache"))
    monkeypatch.setenv("JAX_NUMPY_RANK_PROMOTION", "raise")  # as conftest.py sets it for the tests
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # ipykernel then picks the inline backend
    monkeypatch.delenv("LTF_SWEEP_DIR", raising=False)
    return tmp_path


def execute(path: Path, cwd: Path) -> nbformat.NotebookNode:
    nb = jupytext.read(path)
    nbclient.NotebookClient(nb, timeout=240, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def outputs(nb, key: str) -> list[str]:
    """Every output's `key` field (a MIME type, or "text" for streams), as text."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            value = out.get(key) if key == "text" else out.get("data", {}).get(key)
            if value is not None:
                found.append(value if isinstance(value, str) else "".join(value))
    return found


@pytest.mark.slow  # trains the default config's smoke setting and samples: test_train does both
def test_quickstart(kernel_env):
    nb = execute(REPO / "notebooks" / "01_quickstart.py", kernel_env)
    assert len(outputs(nb, "image/png")) == 1  # the loss curves
    assert "ROMEO:" in "\n".join(outputs(nb, "text"))  # the sample starts with its prompt
    assert read_metrics(kernel_env / "runs" / "01_quickstart-smoke", split="validation")[-1]["step"] == 6


@pytest.mark.slow  # a sweep of two training processes: about 30 s
def test_sweep_results(kernel_env):
    nb = execute(REPO / "notebooks" / "02_sweep_results.py", kernel_env)
    table = "\n".join(outputs(nb, "text/markdown"))
    # the report's rows by their labels (the config's arm names), the csv's by their run names
    assert "| `lstm` |" in table and "| `lstm_noforget` |" in table and "| 2 |" in table
    assert "| smoke,cell=lstm |" in table and "| smoke,cell=lstm_noforget |" in table
    assert len(outputs(nb, "image/png")) >= 3  # learning curves, final bpc, the per-run curves
    assert (kernel_env / "runs" / "02_smoke_sweep" / "results.csv").exists()


@pytest.mark.slow
def test_forgetting(kernel_env):
    nb = execute(REPO / "notebooks" / "03_forgetting.py", kernel_env)
    assert len(outputs(nb, "image/png")) >= 3  # forget gates, cell states, |C| over time
    text = "\n".join(outputs(nb, "text"))
    assert "lstm_noforget: f == 1 at every unit and step: True" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_ipynb_is_the_py_with_outputs_stripped(path):
    """Colab opens the .ipynb; regenerate it with `jupytext --sync notebooks/NN_name.py`."""
    ipynb = path.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run `jupytext --sync {path.relative_to(REPO)}`"
    committed, source = nbformat.read(ipynb, as_version=4), jupytext.read(path)
    cells = lambda nb: [(c.cell_type, c.source) for c in nb.cells]  # noqa: E731
    assert cells(committed) == cells(source), f"{ipynb.name} differs from {path.name}: run `jupytext --sync`"
    for cell in committed.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{ipynb.name} holds outputs"
    assert committed.metadata.kernelspec.name == "python3"


def test_notebooks_hold_nothing_machine_specific():
    for path in NOTEBOOKS + [p.with_suffix(".ipynb") for p in NOTEBOOKS]:
        text = path.read_text()
        assert str(REPO) not in text and str(Path.home()) not in text, path.name


def test_there_are_three_notebooks():
    assert [p.stem for p in NOTEBOOKS] == ["01_quickstart", "02_sweep_results", "03_forgetting"]
