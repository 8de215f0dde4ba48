"""Toy fits per second: ratiofactory (vectorised global Newton fits on jax) vs RooFit.

``--model gauss-exp`` (default): extended unbinned fit of 2000 expected events in
x ∈ [0, 10], Gaussian signal N(5, 0.5) with yield 200·μ on an exponential background
(slope 0.3, 1800 events, one normsys ±10 %), POI μ. Ours: exact-ratio ONNX models,
reference sample of 50k events, toys = Poisson weights on the reference events.

``--model offshell``: examples/offshell/workspace/exact.json (interference, one per-event
shape systematic, 100k reference events, ~1000 expected events), toys at μ = 1; with
``--neyman`` also the Neyman construction over 25 μ values × 1000 toys (μ ∈ [0, 4]).

Generate-and-fit per toy, with the global search of the toy fits (``--starts``).

    python benchmarks/bench_toys.py --toys 1000 [--big 10000] [--roofit]
    python benchmarks/bench_toys.py --model offshell --toys 2000 --big 10000 --neyman --baseline
    python benchmarks/bench_toys.py --model offshell --backend numpy --toys 40

Reports the first batch (compilation included) separately, toys/s in steady state (a run
with new toys after a first compiled run), and for ``--big`` the time and peak memory
(ru_maxrss, the whole process) of that many toys. ``--baseline``: the fits alone, on the
same packed toys in the same run, of the current solver and of the previous toy Newton
(autodiff Hessian by forward-over-reverse, all fit lanes stepped until the slowest has
finished), as a ratio: timings on the shared machine vary by 2x with its load, ratios much
less. On numpy every toy is fitted with MIGRAD (the reference path).
RooFit (``--roofit``, needs ``import ROOT``): RooGaussian + RooExponential in an extended
RooAddPdf, the background yield times a Gaussian-constrained normsys-like factor,
generate-and-fit per toy with MIGRAD.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyhf

import ratiofactory
from ratiofactory.infer.objective import make_setup
from ratiofactory.toys import batches, expected_main_data, generate_and_fit
from ratiofactory.toys.examples import gaussian_on_exponential

N_SIGNAL, N_BACKGROUND, N_REFERENCE = 200.0, 1800.0, 50_000


def run_toys(model, setup, truth, n_toys, seed, batch_size, span=1024, starts=None):
    """Generate and fit ``n_toys`` toys, ``span`` toys per call (as an executor's tasks would:
    the toys of a call are kept); return (seconds, fitted μ, failures, refits)."""
    expected = expected_main_data(model, truth)
    start = time.perf_counter()
    fits = [generate_and_fit(model, truth, n, seed, setup, start=first, expected=expected, batch_size=batch_size,
                             starts=starts)[1]
            for first, n in batches(n_toys, span)]
    elapsed = time.perf_counter() - start
    return (elapsed, np.concatenate([f.values[:, 0] for f in fits]), sum(f.n_failed for f in fits),
            sum(int(f.refitted.sum()) for f in fits))


def solver_ratio(model, setup, truth, n_toys: int, batch_size: int) -> None:
    """Fits per second of the current toy solver and of the previous one on the same toys."""
    import jax
    import jax.numpy as jnp

    from ratiofactory.toys import generate_toys, newton, vfit
    from ratiofactory.toys.sparse_derivatives import SparseEvaluation

    toys = generate_toys(model, truth, n_toys, 4, sparse=True)
    sparse = vfit._sparse_likelihood(model, toys[:1].dense()[0], setup.init, setup)
    if sparse is None:
        print("baseline: the model has no sparse likelihood; skipped")
        return
    packed = []
    for first in range(0, n_toys - batch_size + 1, batch_size):
        rest, idx, w = sparse.pack(toys[first:first + batch_size])
        packed.append((jnp.asarray(rest), [jnp.asarray(i) for i in idx], [jnp.asarray(v) for v in w]))
    x0 = jnp.asarray(np.tile(setup.init, (batch_size, 1)))
    box = (jnp.asarray(~setup.fixed), jnp.asarray(setup.bounds[:, 0]), jnp.asarray(setup.bounds[:, 1]))
    starts = vfit.n_starts(setup)
    solvers = {
        "current": newton.build_solver(SparseEvaluation(sparse, setup.poi_index), sparse.gather, 50, 1e-8, starts,
                                       setup.poi_index),
        "previous": newton.build_solver(newton.AutodiffEvaluation(sparse.twice_nll_gathered), sparse.gather, 50,
                                        1e-8, starts, setup.poi_index, window=False),
    }
    seconds, results = dict.fromkeys(solvers, 0.0), {name: [] for name in solvers}
    for name, solve in solvers.items():
        start = time.perf_counter()
        jax.block_until_ready(solve(x0, packed[0], *box, sparse.arrays))
        print(f"  {name} solver: compilation + first batch {time.perf_counter() - start:.1f} s")
    for batch in packed:  # alternating, so that both see the same machine load
        for name, solve in solvers.items():
            start = time.perf_counter()
            out = jax.block_until_ready(solve(x0, batch, *box, sparse.arrays))
            seconds[name] += time.perf_counter() - start
            results[name].append(np.asarray(out[1]))
    n = len(packed) * batch_size
    rates = {name: n / t for name, t in seconds.items()}
    diff = np.max(np.abs(np.concatenate(results["current"]) - np.concatenate(results["previous"])))
    print(f"fits alone, {n} toys (batches of {batch_size}, same toys, same run): current {rates['current']:.0f} "
          f"toys/s, previous {rates['previous']:.0f} toys/s: {rates['current'] / rates['previous']:.1f}x; "
          f"max |Δ(−2 ln L)| {diff:.1e}")


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def roofit(n_toys: int) -> float:
    """RooFit toys/s on the same model (generate + fit per toy)."""
    import ROOT

    ROOT.RooMsgService.instance().setGlobalKillBelow(ROOT.RooFit.WARNING)
    x = ROOT.RooRealVar("x", "x", 0.0, 10.0)
    mean, sigma = ROOT.RooRealVar("mean", "", 5.0), ROOT.RooRealVar("sigma", "", 0.5)
    slope = ROOT.RooRealVar("slope", "", -0.3)
    gauss = ROOT.RooGaussian("sig", "", x, mean, sigma)
    expo = ROOT.RooExponential("bkg", "", x, slope)
    mu = ROOT.RooRealVar("mu", "", 1.0, 0.0, 10.0)
    alpha = ROOT.RooRealVar("alpha", "", 0.0, -5.0, 5.0)
    nsig = ROOT.RooFormulaVar("nsig", f"{N_SIGNAL}*mu", ROOT.RooArgList(mu))
    nbkg = ROOT.RooFormulaVar("nbkg", f"{N_BACKGROUND}*pow(1.1, alpha)", ROOT.RooArgList(alpha))
    model = ROOT.RooAddPdf("model", "", ROOT.RooArgList(gauss, expo), ROOT.RooArgList(nsig, nbkg))
    zero, one = ROOT.RooRealVar("zero", "", 0.0), ROOT.RooRealVar("one", "", 1.0)
    constraint = ROOT.RooGaussian("constraint", "", zero, alpha, one)
    full = ROOT.RooProdPdf("full", "", ROOT.RooArgList(model, constraint))
    start = time.perf_counter()
    for _ in range(n_toys):
        mu.setVal(1.0)
        alpha.setVal(0.0)
        data = model.generate(ROOT.RooArgSet(x), ROOT.RooFit.Extended(True))
        full.fitTo(data, ROOT.RooFit.Extended(True), ROOT.RooFit.PrintLevel(-1),
                   ROOT.RooFit.Constrain(ROOT.RooArgSet(alpha)), ROOT.RooFit.Save(False))
    return n_toys / (time.perf_counter() - start)


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "offshell" / "workspace" / "exact.json"


def load(name: str, folder: str):
    """(model, data, generating parameters) of the benchmark model ``name``."""
    if name == "offshell":
        ws = ratiofactory.Workspace.load(EXAMPLE)
        model = ws.model()
        return model, ws.data(model), [1.0, 1.0, 0.0]
    path = gaussian_on_exponential(folder, n_signal=N_SIGNAL, n_background=N_BACKGROUND,
                                   n_reference=N_REFERENCE, seed=1)
    ws = ratiofactory.Workspace.load(path)
    model = ws.model()
    return model, ws.data(model), [1.0, 0.0]


def neyman(model, data, batch_size: int) -> None:
    """Time the Neyman construction over 25 μ values × 1000 toys."""
    from ratiofactory.toys import neyman_construction

    start = time.perf_counter()
    result = neyman_construction(model, data, np.linspace(0.0, 4.0, 25), 1000, seed=5, batch_size=batch_size)
    elapsed = time.perf_counter() - start
    failed = sum(p.n_failed for p in result.points)
    print(f"Neyman construction, 25 mu values x 1000 toys: {elapsed:.1f} s ({25_000 / elapsed:.0f} toys/s, each "
          f"fitted free and at mu); failed {failed}; 68.27 % interval {result.intervals[next(iter(result.intervals))]}")


def main() -> None:
    parser = argparse.ArgumentParser(description="toy fits per second")
    parser.add_argument("--model", choices=["gauss-exp", "offshell"], default="gauss-exp")
    parser.add_argument("--toys", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--backend", choices=["jax", "numpy"], default="jax")
    parser.add_argument("--baseline", action="store_true", help="fits alone: current vs previous solver")
    parser.add_argument("--starts", default=None, help="local fits per toy (default: the library's; 'off': 1)")
    parser.add_argument("--big", type=int, default=0, help="also time this many toys (peak memory)")
    parser.add_argument("--neyman", action="store_true", help="time the Neyman construction (25 x 1000 toys)")
    parser.add_argument("--roofit", action="store_true")
    args = parser.parse_args()
    starts = None if args.starts is None else (args.starts if args.starts == "off" else int(args.starts))
    pyhf.set_backend(args.backend, precision="64b")
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        model, data, truth = load(args.model, folder)
        print(f"model {args.model}: {model.config.nmaindata} events in the data vector; "
              f"load {time.perf_counter() - start:.1f} s")
        setup = make_setup(model)
        first, _, _, _ = run_toys(model, setup, truth, args.batch_size, 0, args.batch_size, starts=starts)
        print(f"first batch ({args.batch_size} toys, incl. compilation): {first:.1f} s; "
              f"peak memory so far {peak_memory_mb():.0f} MB")
        warm, mus, failed, refits = run_toys(model, setup, truth, args.toys, 1, args.batch_size, starts=starts)
        print(f"first run (compiled): {args.toys} toys in {warm:.2f} s = {args.toys / warm:.0f} toys/s;"
              f" failed {failed}, MIGRAD refits {refits}; mean mu-hat {mus.mean():.4f} ± {mus.std() / np.sqrt(mus.size):.4f}")
        steady, mus, failed, refits = run_toys(model, setup, truth, args.toys, 2, args.batch_size, starts=starts)
        print(f"steady state: {args.toys} toys in {steady:.2f} s = {args.toys / steady:.0f} toys/s;"
              f" failed {failed}, refits {refits}; sd(mu-hat) {mus.std():.4f}")
        if args.big:
            elapsed, _, failed, refits = run_toys(model, setup, truth, args.big, 3, args.batch_size, starts=starts)
            print(f"{args.big} toys in {elapsed:.1f} s = {args.big / elapsed:.0f} toys/s; failed {failed}, "
                  f"refits {refits}; peak memory (ru_maxrss) {peak_memory_mb():.0f} MB")
        if args.baseline and args.backend == "jax":
            solver_ratio(model, setup, truth, args.toys, args.batch_size)
        if args.neyman:
            neyman(model, data, args.batch_size)
    if args.roofit:
        try:
            rate = roofit(min(args.toys, 200))
        except ImportError:
            print("RooFit: ROOT is not importable; skipped", file=sys.stderr)
        else:
            print(f"RooFit: {rate:.1f} toys/s (generate + fit); ours/RooFit = {args.toys / steady / rate:.1f}x")


if __name__ == "__main__":
    main()
