"""The main job (examples/offshell/analyse.py: fit, scan, intervals, impacts, plots) from a
fresh process with a cold ratio cache: wall time and XLA compilations.

    python benchmarks/bench_main_job.py [--repeat 2] [--backend jax]

The machine may be shared, so the wall time is also given as a ratio to a fixed numpy
calibration workload timed in the same run (a fresh process each, like the job).
Target (issue 12): at most 10 compilations and 10 s on 2 idle cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

JOB = """
import collections, json, sys, time
start = time.perf_counter()
import jax.monitoring  # counted directly (as ratiofactory.compilations does), so older versions run too
names, seconds = collections.Counter(), [0.0]
def listener(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        names[str(kwargs.get("fun_name", "?"))] += 1
        seconds[0] += duration
jax.monitoring.register_event_duration_secs_listener(listener)
sys.path.insert(0, {example!r})
import analyse
analyse.main(["--output", {output!r}, "--backend", {backend!r}])
print("BENCH", json.dumps({{"wall_s": time.perf_counter() - start, "compilations": sum(names.values()),
                            "compile_s": seconds[0], "names": dict(names)}}))
"""

CALIBRATION = """
import time, numpy as np
start = time.perf_counter()
x = np.linspace(0.0, 1.0, 1_000_000)
for _ in range(150):
    x = np.sqrt(np.exp(-x) + 1.0) - 1.0
print("BENCH", time.perf_counter() - start)
"""


def _run(code: str, env_cache: str) -> str:
    import os

    env = dict(os.environ, RATIOFACTORY_CACHE_DIR=env_cache)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - start
    line = next(x for x in out.stdout.splitlines() if x.startswith("BENCH "))
    return json.dumps({"process_s": wall, "inner": json.loads(line[6:])})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--backend", default="jax", choices=("jax", "numpy"))
    args = parser.parse_args()
    for k in range(args.repeat):
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as output:
            job = json.loads(_run(JOB.format(example=str(ROOT / "examples" / "offshell"), output=output,
                                             backend=args.backend), cache))
            calibration = json.loads(_run(CALIBRATION, cache))
        inner = job["inner"]
        ratio = job["process_s"] / calibration["process_s"]
        print(f"run {k + 1}: main job {job['process_s']:.2f} s (process, cold ratio cache), "
              f"{inner['compilations']} XLA compilations ({inner['compile_s']:.2f} s compiling); "
              f"calibration {calibration['process_s']:.2f} s; ratio {ratio:.2f}")
        print("  compiled:", ", ".join(f"{n} x{c}" for n, c in sorted(inner["names"].items())))


if __name__ == "__main__":
    main()
