"""The notebooks run top to bottom (jupytext -> nbclient, a real kernel) against a lakehouse built by the pipeline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jupytext
import pytest
from helpers import clean_env, new_lakehouse
from nbclient import NotebookClient

from lakehouse_app import pipeline

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py"))


def execute_notebook(path: Path, root: Path, workdir: Path, timeout: int = 600) -> Any:
    """Convert a jupytext percent script and run every cell in a fresh kernel with LAKEHOUSE_ROOT=root."""
    nb = jupytext.read(path)
    saved, kernel_env = dict(os.environ), clean_env(LAKEHOUSE_ROOT=str(root))
    try:
        os.environ.clear()  # the kernel inherits this process's environment
        os.environ.update(kernel_env)
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


@pytest.fixture(scope="module")
def demo_root(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("notebooks") / "lh"
    settings = new_lakehouse(root, pseudonym_key="notebook-test-key-0123456789abcdef")
    pipeline.generate(settings, patients=60, seed=11, out=None, bad_rate=0.02)
    pipeline.run_all(settings, [])
    return root


@pytest.mark.fast
def test_notebooks_are_jupytext_percent_scripts() -> None:
    assert [p.name for p in NOTEBOOKS] == ["01_data_scientist.py", "02_time_travel_and_audit.py", "03_ml_engineer.py"]
    for path in NOTEBOOKS:
        nb = jupytext.read(path)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        assert sum(c.cell_type == "code" for c in nb.cells) >= 4 and nb.cells[0].cell_type == "markdown", path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, demo_root: Path, tmp_path: Path) -> None:
    nb = execute_notebook(path, demo_root, tmp_path)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    if path.name.startswith("01_"):
        assert any("image/png" in o.get("data", {}) for o in outputs), "the plot was not drawn"
    if path.name.startswith("03_"):
        text = "".join(o.get("text", "") for o in outputs)
        assert "trained on: gold.features_readmission" in text and "delta_table_version" in text
