"""`ratiofactory upper-limit` on the off-shell example from fresh processes: wall time of
the default (global fits) against `--no-global` in the same run, XLA compilations, and
the POI values tested.

    python benchmarks/bench_upper_limit.py [--workspace examples/offshell/workspace/exact.json]
                                           [--backend jax] [--repeat 2]

The machine may be shared, so every time is also given as a ratio to a fixed numpy
calibration workload timed in the same run (a fresh process each, like the command).
Target (issue 12): at most 10 s with the global fits on 2 idle cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKSPACE = ROOT / "examples" / "offshell" / "workspace" / "exact.json"

CALIBRATION = """
import time, numpy as np
start = time.perf_counter()
x = np.linspace(0.0, 1.0, 1_000_000)
for _ in range(150):
    x = np.sqrt(np.exp(-x) + 1.0) - 1.0
"""


def _timed(command: list[str], cache: str) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, RATIOFACTORY_CACHE_DIR=cache)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - start, done


def _upper_limit(workspace: Path, backend: str, extra: list[str], warm_cache: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        result_file = Path(out) / "limit.json"
        command = [sys.executable, "-c", "from ratiofactory.cli import main; main()", "upper-limit", str(workspace),
                   "--backend", backend, "--verbose", "-o", str(result_file), *extra]
        wall, done = _timed(command, warm_cache)
        result = json.loads(result_file.read_text())
    compilations = next((int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("jax: ")), None)
    return {"wall_s": wall, "observed": result["observed"], "expected": result["expected"],
            "tested": len(result.get("poi_values", [])), "compilations": compilations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=DEFAULT_WORKSPACE)
    parser.add_argument("--backend", default="jax", choices=("jax", "numpy"))
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        _upper_limit(args.workspace, args.backend, ["--no-global"], cache)  # fills the ratio cache
        for k in range(args.repeat):
            calibration, _ = _timed([sys.executable, "-c", CALIBRATION], cache)
            full = _upper_limit(args.workspace, args.backend, [], cache)
            local = _upper_limit(args.workspace, args.backend, ["--no-global"], cache)
            print(f"run {k + 1}: upper-limit {full['wall_s']:.2f} s with global fits "
                  f"({full['tested']} POI values, {full['compilations']} XLA compilations), "
                  f"{local['wall_s']:.2f} s with --no-global ({local['tested']} POI values); "
                  f"ratio global/local {full['wall_s'] / local['wall_s']:.2f}; "
                  f"calibration {calibration:.2f} s, upper-limit/calibration {full['wall_s'] / calibration:.2f}")
            print(f"  observed {full['observed']:.6g}, expected {', '.join(f'{v:.6g}' for v in full['expected'])}")


if __name__ == "__main__":
    main()
