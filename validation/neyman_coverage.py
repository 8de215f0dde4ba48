"""Coverage of the Neyman construction on an exact-ratio unbinned model.

Gaussian signal (30·μ events) on an exponential background (70 events, one normsys),
exact-ratio ONNX models, μ bounded to [0, 10]. For each true μ (one near the physical
boundary), ``--experiments`` pseudo-experiments are drawn; each gets its own critical
values of t_μ from ``--toys`` toys at (μ_true, θ̂̂(μ_true)) fitted to it, and covers when
t_μ^obs(μ_true) ≤ t_μ^crit. Prints the coverage table (nominal, observed ± standard error,
pull).

    python validation/neyman_coverage.py --experiments 500 --toys 300
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pyhf

import ratiofactory
from ratiofactory.toys import neyman_coverage
from ratiofactory.toys.examples import gaussian_on_exponential


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=500)
    parser.add_argument("--toys", type=int, default=300)
    parser.add_argument("--truth", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    pyhf.set_backend("jax", precision="64b")
    with tempfile.TemporaryDirectory() as folder:
        ws = ratiofactory.Workspace.load(gaussian_on_exponential(folder, seed=1))
        model = ws.model()
        print(f"{'mu_true':>8} {'n_exp':>6} {'nominal':>9} {'coverage':>9}   {'s.e.':>6}  pull")
        for k, mu in enumerate(args.truth):
            start = time.perf_counter()
            result = neyman_coverage(model, [mu, 0.0], args.experiments, args.toys, seed=args.seed + k)
            print(result.table(), flush=True)
            print(f"# failed fits: {result.n_failed}; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
