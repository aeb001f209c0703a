"""The kernel's LAPACK path (a dense block above ``DENSE_LOOP_MAX`` rows), which the other tests'
designs do not reach: ``benchmarks/kernel_large_check.py`` compares the collapsed density with the
dense multivariate normal (1e-10) and its gradients and REML's with central differences (1e-6)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "kernel_large_check.py"


def test_lapack_path_matches_dense_normal_and_differences(capsys):
    spec = importlib.util.spec_from_file_location("kernel_large_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main() == 0, capsys.readouterr().out
