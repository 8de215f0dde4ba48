"""Fit time of ratiofactory against pyhf on a published pyhf likelihood, same run.

Workspace: ATLAS sbottom multi-b (inspire 1748602), RegionA BkgOnly + one signal patch
(64 parameters). Ours: ``ratiofactory.infer.fit`` on ``ratiofactory.Workspace(spec)``;
pyhf's: ``pyhf.infer.mle.fit`` on ``pyhf.Workspace(spec)`` with the minuit optimizer.
Both use MIGRAD with the same strategy and tolerance and no HESSE, on the same backend;
on jax the first fit (jit compilation) is timed separately and excluded from the ratio.

    python benchmarks/bench_pyhf_fit.py [--repeat 3] [--patch sbottom_1000_131_1]
"""

from __future__ import annotations

import argparse
import json
import tarfile
import time
from pathlib import Path

import jsonpatch
import numpy as np
import pyhf

import ratiofactory
import ratiofactory.infer

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "pyhf-ins1748602-probability-models.tar.gz"


def load_spec(region: str, patch: str) -> dict:
    with tarfile.open(ARCHIVE) as archive:
        background = json.load(archive.extractfile(f"{region}/BkgOnly.json"))
        signal = json.load(archive.extractfile(f"{region}/patch.{patch}.json"))
    return jsonpatch.apply_patch(background, signal)


def best_time(fit, repeat: int) -> tuple[float, float, np.ndarray]:
    """(first call, best of ``repeat`` later calls) in seconds, and the last result."""
    start = time.perf_counter()
    result = fit()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fit()
        times.append(time.perf_counter() - start)
    return first, min(times), np.asarray(result, dtype=float)


def run(backend: str, spec: dict, repeat: int, strategy: int, tolerance: float) -> None:
    pyhf.set_backend(backend, pyhf.optimize.minuit_optimizer(strategy=strategy, tolerance=tolerance), precision="64b")
    reference = pyhf.Workspace(spec)
    ref_model = reference.model()
    ref_data = reference.data(ref_model)
    ours = ratiofactory.Workspace(spec)
    model = ours.model()
    data = ours.data(model)

    def fit_pyhf():
        return pyhf.infer.mle.fit(ref_data, ref_model)

    def fit_ours():
        return ratiofactory.infer.fit(model, data, strategy=strategy, tolerance=tolerance, hesse=False).values

    first_p, t_pyhf, x_pyhf = best_time(fit_pyhf, repeat)
    first_o, t_ours, x_ours = best_time(fit_ours, repeat)
    print(f"{backend:6s} pyhf {t_pyhf:8.3f} s (first {first_p:7.3f})  ours {t_ours:8.3f} s (first {first_o:7.3f})"
          f"  ratio ours/pyhf {t_ours / t_pyhf:5.2f}  max |Δθ̂| {np.max(np.abs(x_ours - x_pyhf)):.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", default="RegionA")
    parser.add_argument("--patch", default="sbottom_1000_131_1")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--strategy", type=int, default=1, help="MINUIT strategy (pyhf's jax fit needs 1 here)")
    parser.add_argument("--tolerance", type=float, default=1e-3)
    parser.add_argument("--backends", nargs="+", default=["numpy", "jax"])
    args = parser.parse_args()
    spec = load_spec(args.region, args.patch)
    print(f"{args.region} BkgOnly + {args.patch}; MIGRAD strategy {args.strategy}, tolerance {args.tolerance}")
    for backend in args.backends:
        run(backend, spec, args.repeat, args.strategy, args.tolerance)


if __name__ == "__main__":
    main()
