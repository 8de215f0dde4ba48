"""Validation: the Asimov expected interval equals the median interval of toys.

On an exact-ratio unbinned toy (one observable x ∈ [0, 10]; signal N(5, 0.5) with yield
50 μ, background a truncated exponential with yield 500 b, both times lumi with a 5 %
Gaussian constraint), the 68.27 % profile-likelihood interval on μ from the Asimov
dataset at the true point (μ = 1, b = 1, lumi = 1) is compared with the median lower and
upper interval ends of toys generated from the true model: fresh signal and background
events drawn from their densities with Poisson-fluctuated counts, and the lumi auxiliary
measurement drawn from its Gaussian.

Toys are pooled, 25 at a time, into one workspace's observed event set; toy k is the
data vector that weighs its own events 1 and every other event 0 (the model's data is
per-event weights), so the ONNX ratios are evaluated once per pool and every fit reuses
one jit-compiled likelihood.

Run:  python validation/asimov_vs_toys.py [--toys 200] [--seed 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyhf
from scipy import stats

import ratiofactory
from ratiofactory import infer
from ratiofactory.testing import Exponential, Normal, ratio_model

NU_S, NU_B, LUMI_SIGMA = 50.0, 500.0, 0.05
P_S = [(1.0, [Normal(5.0, 0.5)])]
P_B = [(1.0, [Exponential(0.3, 0.0, 10.0)])]
P_REF = [(0.5, P_S[0][1]), (0.5, P_B[0][1])]
GRID = np.linspace(0.0, 2.5, 11)


def _background(n: int, rng: np.random.Generator) -> np.ndarray:
    return stats.truncexpon(b=3.0, scale=1 / 0.3).rvs(n, random_state=rng)


def build(root: Path, n_toys: int, rng: np.random.Generator) -> tuple[object, np.ndarray, list[slice]]:
    """Workspace with the events of ``n_toys`` toys pooled; returns (model, lumi aux per
    toy, the slice of each toy's events)."""
    root.mkdir(parents=True)
    (root / "S.onnx").write_bytes(ratio_model(P_S, P_REF, output="log_ratio"))
    (root / "B.onnx").write_bytes(ratio_model(P_B, P_REF, output="ratio"))
    pieces, slices, start = [], [], 0
    for _ in range(n_toys):
        events = np.concatenate([rng.normal(5.0, 0.5, rng.poisson(NU_S)), _background(rng.poisson(NU_B), rng)])
        pieces.append(events)
        slices.append(slice(start, start + events.size))
        start += events.size
    np.savez(root / "observed.npz", x=np.concatenate(pieces))
    grid = (np.arange(20000) + 0.5) * 10.0 / 20000  # midpoint-rule reference sample
    p_ref = 0.5 * (stats.norm.pdf(grid, 5.0, 0.5) + stats.truncexpon(b=3.0, scale=1 / 0.3).pdf(grid))
    np.savez(root / "reference.npz", x=grid, w=p_ref)
    onnx = lambda f, out: {"onnx": {"path": f}, "output": out}
    spec = {
        "version": "1.0.0",
        "unbinned_channels": [{
            "name": "SR", "observables": [{"name": "x", "bounds": [0.0, 10.0]}],
            "reference": {"events": {"path": "reference.npz", "weight": "w"}},
            "samples": [
                {"name": "S", "yield": NU_S, "ratio": onnx("S.onnx", "log_ratio"), "modifiers": [
                    {"name": "mu", "type": "normfactor", "data": None},
                    {"name": "lumi", "type": "lumi", "data": None}]},
                {"name": "B", "yield": NU_B, "ratio": onnx("B.onnx", "ratio"), "modifiers": [
                    {"name": "b", "type": "normfactor", "data": None},
                    {"name": "lumi", "type": "lumi", "data": None}]}]}],
        "observations": [{"name": "SR", "events": {"path": "observed.npz"}}],
        "measurements": [{"name": "toys", "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[-5.0, 10.0]]},
            {"name": "lumi", "auxdata": [1.0], "sigmas": [LUMI_SIGMA], "bounds": [[0.5, 1.5]], "inits": [1.0]}]}}],
    }
    (root / "workspace.json").write_text(json.dumps(spec))
    model = ratiofactory.Workspace.load(root / "workspace.json").model()
    aux = rng.normal(1.0, LUMI_SIGMA, n_toys)
    return model, aux, slices


def toy_data(model, k: int, aux: np.ndarray, slices: list[slice]) -> np.ndarray:
    """Data vector of toy k: its events weigh 1, all others (and the reference) 0."""
    data = np.zeros(model.config.nmaindata + model.config.nauxdata)
    data[slices[k]] = 1.0
    data[model.config.nmaindata:] = aux[k]
    return data


def interval_of(model, data) -> tuple[float, float, float]:
    scan = infer.profile_scan(model, data, GRID)
    ci = infer.interval(scan)
    if len(ci.intervals) != 1 or any(any(ends) for ends in ci.open_ends):
        raise RuntimeError(f"unexpected interval shape {ci.intervals} {ci.open_ends}")
    return ci.bestfit, ci.lower, ci.upper


def median_error(values: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> float:
    """Bootstrap standard error of the median."""
    boots = np.median(rng.choice(values, size=(n_boot, values.size), replace=True), axis=1)
    return float(np.std(boots))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toys", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pool", type=int, default=25, help="toys per workspace")
    parser.add_argument("--backend", default="jax", choices=["jax", "numpy"])
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here (atomically)")
    args = parser.parse_args(argv)
    pyhf.set_backend(args.backend)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    toys = []
    with tempfile.TemporaryDirectory() as tmp:
        for first in range(0, args.toys, args.pool):
            n = min(args.pool, args.toys - first)
            model, aux, slices = build(Path(tmp) / f"pool{first}", n, rng)
            if first == 0:
                truth = np.array(model.config.suggested_init(), dtype=float)
                asimov = np.asarray(infer.asimov_data(model, truth))
                a_best, a_lo, a_hi = interval_of(model, asimov)
            toys += [interval_of(model, toy_data(model, k, aux, slices)) for k in range(n)]
    toys = np.array(toys)
    elapsed = time.perf_counter() - start
    rows = []
    for j, name in enumerate(("best fit", "lower", "upper")):
        median, error = float(np.median(toys[:, j])), median_error(toys[:, j], rng)
        expected = (a_best, a_lo, a_hi)[j]
        rows.append({"quantity": name, "asimov": expected, "toy_median": median, "median_error": error,
                     "pull": (expected - median) / error})
    coverage = float(np.mean((toys[:, 1] <= 1.0) & (toys[:, 2] >= 1.0)))
    print(f"{args.toys} toys, backend {args.backend}, {elapsed:.1f} s")
    print(f"{'':10s} {'Asimov':>10s} {'toy median':>11s} {'± error':>9s} {'pull':>6s}")
    for r in rows:
        print(f"{r['quantity']:10s} {r['asimov']:10.4f} {r['toy_median']:11.4f} {r['median_error']:9.4f} {r['pull']:6.2f}")
    print(f"coverage of mu = 1 by the 68.27 % intervals: {coverage:.3f} ± {np.sqrt(coverage * (1 - coverage) / args.toys):.3f}")
    if args.json is not None:
        payload = {"toys": args.toys, "seed": args.seed, "backend": args.backend, "seconds": elapsed,
                   "rows": rows, "coverage": coverage}
        tmp_path = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp_path.write_text(json.dumps(payload, indent=1))
        os.replace(tmp_path, args.json)
    return 0 if all(abs(r["pull"]) < 3 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
