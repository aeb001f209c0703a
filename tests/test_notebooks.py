"""The walkthrough notebooks in notebooks/ run end to end, and are committed without outputs.

Each notebook reads its sampling settings from the environment; here they are set
small (BAYESMER_NB_DRAWS and friends), so the runs check that every cell works, not
that the chains converge.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SMALL = {
    "BAYESMER_NB_DRAWS": "100",
    "BAYESMER_NB_TUNE": "100",
    "BAYESMER_NB_CHAINS": "2",
    "MPLBACKEND": "Agg",
    # BLAS threads spinning against the sampler's threads slow small fits badly
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def test_there_is_one_notebook_per_seed():
    prefixes = {p.name[:3] for p in NOTEBOOKS}
    assert prefixes >= {"000", "001", "002", "003"}, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    book = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(book.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts; strip them before committing"


@pytest.fixture
def small_env(monkeypatch):
    for key, value in SMALL.items():
        monkeypatch.setenv(key, value)
    # the kernel is started from the environment of this process: make its
    # "python" resolve to the interpreter running the tests (this venv's)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))

@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, small_env):
    book = nbformat.read(path, as_version=4)
    # a first cell that reports which environment the kernel runs in
    probe = nbformat.v4.new_code_cell("import sys; print(sys.prefix)")
    book.cells.insert(0, probe)
    client = nbclient.NotebookClient(
        book,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the failing cell
    seconds = time.perf_counter() - start
    kernel_prefix = "".join(o.get("text", "") for o in book.cells[0].outputs).strip()
    assert kernel_prefix == sys.prefix, f"the kernel ran in {kernel_prefix}, not in the tests' {sys.prefix}"
    errors = [
        (i, o.get("ename"), o.get("evalue"))
        for i, cell in enumerate(book.cells)
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors, errors
    print(f"{path.name}: {seconds:.0f} s")
