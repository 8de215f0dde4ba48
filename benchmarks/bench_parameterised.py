"""Fit time with a parameterised ratio r(x | m) against the same model with fixed ratios.

Model: one observable, a Gaussian signal (σ = 0.3) on an exponential background over a
uniform reference sample, N events (observed) + N/2 reference events, exact ONNX graphs
from ratiofactory.testing. Three fits of the same data on the chosen backend:

- fixed:         the signal ratio evaluated once at m = 2.1 (ordinary ratio model), fit μ;
- param, m fixed: the parameterised network with m fixed at 2.1, fit μ (same likelihood);
- param, m free:  fit μ and m.

Each is timed twice: the first fit (model build, ONNX evaluation, jit compilation) and the
second (steady). Ratios are against "fixed" in the same run.

    python benchmarks/bench_parameterised.py [--events 100000] [--backend jax]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyhf

from ratiofactory import Workspace, infer
from ratiofactory.testing import (
    Exponential,
    Normal,
    Uniform,
    ratio_model,
    sample_mixture,
    shifted_normal_ratio_model,
)

SIGMA, MASS = 0.3, 2.1
REFERENCE = [(1.0, [Uniform(0.0, 4.0)])]
BACKGROUND = [(1.0, [Exponential(0.5, 0.0, 4.0)])]


def write(root: Path, n: int) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    n_sig = n // 5
    signal = rng.normal(MASS, SIGMA, 2 * n_sig)
    signal = signal[(signal > 0) & (signal < 4)][:n_sig]
    np.savez(root / "observed.npz", x=np.concatenate([signal, sample_mixture(BACKGROUND, n - n_sig, rng)[:, 0]]))
    np.savez(root / "reference.npz", x=sample_mixture(REFERENCE, n // 2, rng)[:, 0])
    (root / "param.onnx").write_bytes(shifted_normal_ratio_model(SIGMA, REFERENCE, output="log_ratio"))
    (root / "fixed.onnx").write_bytes(ratio_model([(1.0, [Normal(MASS, SIGMA)])], REFERENCE, output="log_ratio"))
    (root / "background.onnx").write_bytes(ratio_model(BACKGROUND, REFERENCE))
    paths = {}
    for kind in ("fixed", "param"):
        ratio = {"onnx": {"path": f"{kind}.onnx"}, "output": "log_ratio"}
        if kind == "param":
            ratio["parameters"] = ["m"]
        spec = {"version": "1.0.0", "unbinned_channels": [{
            "name": "SR", "observables": [{"name": "x", "bounds": [0.0, 4.0]}],
            "reference": {"events": {"path": "reference.npz"}},
            "samples": [{"name": "signal", "yield": n / 5, "ratio": ratio,
                         "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                        {"name": "background", "yield": 4 * n / 5,
                         "ratio": {"onnx": {"path": "background.onnx"}, "output": "ratio"}, "modifiers": []}]}],
            "observations": [{"name": "SR", "events": {"path": "observed.npz"}}],
            "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
                {"name": "mu", "bounds": [[0.0, 5.0]], "inits": [1.0]}]
                + ([{"name": "m", "bounds": [[1.0, 3.0]], "inits": [2.0]}] if kind == "param" else [])}}]}
        paths[kind] = root / f"{kind}.json"
        paths[kind].write_text(json.dumps(spec))
    return paths


def timed_fits(path: Path, fixed: dict[str, float] | None) -> tuple[float, float, float]:
    start = time.perf_counter()
    ws = Workspace.load(path)
    model = ws.model(cache=False)
    data = ws.data(model)
    result = infer.fit(model, data, fixed=fixed)
    first = time.perf_counter() - start
    start = time.perf_counter()
    infer.fit(model, data, fixed=fixed)
    return first, time.perf_counter() - start, result.poi_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--backend", choices=["jax", "numpy"], default="jax")
    args = parser.parse_args()
    pyhf.set_backend(args.backend)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write(Path(tmp), args.events)
        rows = [("fixed ratio", *timed_fits(paths["fixed"], None)),
                ("param, m fixed", *timed_fits(paths["param"], {"m": MASS})),
                ("param, m free", *timed_fits(paths["param"], None))]
    base_first, base_steady = rows[0][1], rows[0][2]
    print(f"{args.events} observed + {args.events // 2} reference events, backend {args.backend}")
    print(f"{'model':<16} {'first fit [s]':>14} {'ratio':>7} {'steady fit [s]':>15} {'ratio':>7} {'mu_hat':>8}")
    for name, first, steady, mu in rows:
        print(f"{name:<16} {first:>14.3f} {first / base_first:>7.2f} {steady:>15.3f} {steady / base_steady:>7.2f}"
              f" {mu:>8.4f}")


if __name__ == "__main__":
    main()
