"""REML on the InstEval shape: wall and CPU time, and the criterion's evaluations, of one source tree.

    PYTHONPATH=src .venv/bin/python benchmarks/reml_insteval_cpu.py
    git archive main src | tar -x -C /tmp/before && PYTHONPATH=/tmp/before/src .venv/bin/python benchmarks/reml_insteval_cpu.py

Run the two trees in alternation for a before/after comparison (CPU time is the steadier figure on a
shared machine). One warm-up fit (numba's cache loads), then the timed fit of
``y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)`` on ``benchmarks/reml.py``'s ``simulate_insteval()``.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reml import simulate_insteval  # noqa: E402

from bayesmer.design import build_design  # noqa: E402
from bayesmer.engine import profiled  # noqa: E402
from bayesmer.lmer import fit_reml  # noqa: E402


def main() -> None:
    warnings.simplefilter("ignore")
    design = build_design("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", simulate_insteval())
    calls = {"deviance": 0, "with gradient": 0}
    evaluate = profiled.Profiled._evaluate

    def counted(self, theta, want_grad):
        calls["with gradient" if want_grad else "deviance"] += 1
        return evaluate(self, theta, want_grad)

    profiled.Profiled._evaluate = counted
    fit_reml(design)
    calls.update({"deviance": 0, "with gradient": 0})
    c0, t0 = time.process_time(), time.perf_counter()
    fit_reml(design)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{profiled.__file__}: REML wall {wall:.2f} s, CPU {cpu:.2f} s; evaluations {calls}; "
          f"load {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
