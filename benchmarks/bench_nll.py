"""NLL value+gradient time against the memory roofline measured in the same run.

Model: one unbinned channel, 3 samples (coefficients μ − √μ, √μ, 1 − √μ), 4 per-event
shape systematics (ratiosys, code4) on every sample, N events. One evaluation reads
N · C · (1 + 2K) float64 numbers (r_j and g_jk^± for every event); the roofline is that
byte count over the bandwidth of a numpy copy of the same bytes, measured here. (The
prepared code4 interpolation keeps ln g^± beside g^±, so the arrays actually read are
N · C · (1 + 4K) numbers: the last column gives the time against that count too.)

    python benchmarks/bench_nll.py [--events 1e4 1e5 1e6] [--repeat 20]

numpy has no automatic gradient: its "value+grad" is the value plus a forward
finite-difference gradient (npars + 1 evaluations), what a numpy fit does. jax is jitted
as ratiofactory.infer does it (``traceable_logpdf``: the per-event arrays are arguments of
the compiled function); "closure compile" is the compile time of the naive
``jax.jit(jax.value_and_grad(lambda p: model.nll(p, data)))``, which folds them in as
constants.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyhf

from ratiofactory.compile import CompiledSample, ShapeSystematic, UnbinnedChannel
from ratiofactory.config import ModelConfig
from ratiofactory.events import EventSet
from ratiofactory.expressions import parse_expression
from ratiofactory.model import Model, traceable_logpdf
from ratiofactory.parameters import make_paramsets, unbinned_requirements

COEFFICIENTS = {"S": "mu - sqrt(mu)", "SBI": "sqrt(mu)", "B": "1 - sqrt(mu)"}
N_SYST = 4


def build_model(n_events: int, seed: int = 1) -> tuple[Model, np.ndarray]:
    """A model with random positive per-event arrays (no ONNX: this times the likelihood)."""
    rng = np.random.default_rng(seed)
    channel_spec = {"name": "SR", "samples": [
        {"name": name, "modifiers": [{"name": f"f_{name}", "type": "formula", "data": {"expression": expr}}]
         + [{"name": f"alpha_{k}", "type": "ratiosys", "data": {}} for k in range(N_SYST)]}
        for name, expr in COEFFICIENTS.items()
    ]}
    paramsets = make_paramsets(unbinned_requirements(channel_spec, "/unbinned_channels/0"), [])
    samples = []
    for name, expr in COEFFICIENTS.items():
        shapes = tuple(
            ShapeSystematic(f"alpha_{k}", "code4", rng.uniform(1.0, 1.2, n_events), rng.uniform(0.8, 1.0, n_events))
            for k in range(N_SYST)
        )
        ratio = rng.uniform(0.5, 1.5, n_events) if name != "S" else rng.uniform(0.0, 0.1, n_events)
        samples.append(CompiledSample(name, {"S": 20.0, "SBI": 1000.0, "B": 1000.0}[name], ratio,
                                      ratio[None], (parse_expression(expr),), (), None, (), shapes))
    events = EventSet(np.zeros((n_events, 1)), None, ("x",), "(benchmark)")
    empty = EventSet(np.zeros((0, 1)), None, ("x",), "(none)")
    channel = UnbinnedChannel("SR", ("x",), tuple(samples), events, empty,
                              np.ones(n_events), np.zeros(0), "nominal")
    config = ModelConfig(paramsets, poi_name="mu", binned_channels=[], binned_nbins={},
                         unbinned_channels=["SR"], unbinned_nevents={"SR": n_events})
    model = Model(config=config, binned=None, channels=[channel])
    data = np.concatenate([np.ones(n_events), np.zeros(config.nauxdata)])
    return model, data


def copy_bandwidth(n_bytes: int, repeat: int) -> float:
    """Bytes per second of numpy reading ``n_bytes`` (a copy reads and writes them)."""
    src = np.ones(n_bytes // 8)
    dst = np.empty_like(src)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return n_bytes / best


def best_time(fn, repeat: int) -> float:
    fn()  # warm-up (and jit compilation)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench(n_events: int, repeat: int) -> dict[str, float]:
    import jax

    model, data = build_model(n_events)
    pars = np.asarray(model.config.suggested_init()) + 0.3
    n_bytes = n_events * len(COEFFICIENTS) * (1 + 2 * N_SYST) * 8
    roofline = n_bytes / copy_bandwidth(n_bytes, repeat)

    pyhf.set_backend("numpy")
    value_np = best_time(lambda: model.logpdf(pars, data), max(3, repeat // 4))
    grad_np = value_np * (model.config.npars + 1)

    pyhf.set_backend("jax")
    data_j = jax.numpy.asarray(data)
    logpdf, arrays = traceable_logpdf(model)
    fn = jax.jit(jax.value_and_grad(lambda p, a: -logpdf(p, data_j, a)[0]))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(pars, arrays))
    compile_time = time.perf_counter() - t0
    grad_jax = best_time(lambda: jax.block_until_ready(fn(pars, arrays)), repeat)
    closure = jax.jit(jax.value_and_grad(lambda p: model.nll(p, data_j)))
    t0 = time.perf_counter()
    jax.block_until_ready(closure(pars))
    closure_compile = time.perf_counter() - t0
    pyhf.set_backend("numpy")
    return {"N": n_events, "roofline_ms": roofline * 1e3, "numpy_value_ms": value_np * 1e3,
            "numpy_value_fdgrad_ms": grad_np * 1e3, "jax_value_grad_ms": grad_jax * 1e3,
            "jax_compile_s": compile_time, "closure_compile_s": closure_compile, "jax_over_roofline": grad_jax / roofline,
            "numpy_value_over_roofline": value_np / roofline,
            "jax_over_stored_bytes": grad_jax / (roofline * (1 + 4 * N_SYST) / (1 + 2 * N_SYST))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=float, nargs="+", default=[1e4, 1e5, 1e6])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    header = ("N", "roofline ms", "numpy value ms", "numpy value+FD grad ms", "jax value+grad ms",
              "jax compile s", "closure compile s", "jax/roofline", "numpy value/roofline", "jax/stored-bytes roofline")
    print(" | ".join(header))
    for n in args.events:
        r = bench(int(n), args.repeat)
        print(f"{r['N']:.0e} | {r['roofline_ms']:.2f} | {r['numpy_value_ms']:.2f} | "
              f"{r['numpy_value_fdgrad_ms']:.1f} | {r['jax_value_grad_ms']:.2f} | {r['jax_compile_s']:.2f} | {r['closure_compile_s']:.2f} | "
              f"{r['jax_over_roofline']:.2f} | {r['numpy_value_over_roofline']:.2f} | "
              f"{r['jax_over_stored_bytes']:.2f}")


if __name__ == "__main__":
    main()
