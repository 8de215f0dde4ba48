"""Cost of the global minimum search: fit time with and without, same run.

Cases: the off-shell interference example (examples/offshell/workspace/exact.json, 3
parameters, 100k reference events) on its observed data and on its background-only
Asimov data (two minima), and the ATLAS sbottom RegionA likelihood with one signal patch
(64 parameters, 55 of them interpolated nuisance parameters). Each fit is
``ratiofactory.infer.fit(..., hesse=False)`` from the model's init; on jax the first fit
(jit compilation) is excluded. Reported: best of ``--repeat`` wall times, the ratio
global/local, the number of local fits and of objective evaluations.

    python benchmarks/bench_global_fit.py [--repeat 3] [--backends numpy jax]
"""

from __future__ import annotations

import argparse
import json
import tarfile
import time
from pathlib import Path

import jsonpatch
import pyhf

import ratiofactory
from ratiofactory import infer

ROOT = Path(__file__).resolve().parents[1]
#: ../shared/data from the checkout (also from a worktree one level further down)
ARCHIVE = next((p for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared")
                if (p / "data").is_dir()), ROOT.parent / "shared") / "data" / "pyhf-ins1748602-probability-models.tar.gz"


def offshell() -> list[tuple[str, object, object]]:
    ws = ratiofactory.Workspace.load(ROOT / "examples" / "offshell" / "workspace" / "exact.json")
    model = ws.model()
    data = ws.data(model)
    bonly = infer.fit(model, data, fixed={"mu": 0.0}, hesse=False, global_search=False)
    return [("off-shell, observed", model, data),
            ("off-shell, b-only Asimov", model, model.expected_data(bonly.values))]


def sbottom() -> list[tuple[str, object, object]]:
    if not ARCHIVE.exists():
        return []
    with tarfile.open(ARCHIVE) as archive:
        spec = jsonpatch.apply_patch(json.load(archive.extractfile("RegionA/BkgOnly.json")),
                                     json.load(archive.extractfile("RegionA/patch.sbottom_1000_131_1.json")))
    ws = ratiofactory.Workspace(spec)
    model = ws.model()
    return [(f"sbottom RegionA ({model.config.npars} parameters)", model, ws.data(model))]


def best_time(fit, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fit()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["numpy", "jax"])
    args = parser.parse_args()
    for backend in args.backends:
        pyhf.set_backend(backend, precision="64b")
        for label, model, data in offshell() + sbottom():
            infer.fit(model, data, hesse=False, global_search=False)  # jit compilation on jax
            t_local, local = best_time(lambda m=model, d=data: infer.fit(m, d, hesse=False, global_search=False),
                                       args.repeat)
            t_global, full = best_time(lambda m=model, d=data: infer.fit(m, d, hesse=False), args.repeat)
            print(f"{backend:5s} {label:38s} local {t_local:7.3f} s ({local.nfev:5d} evals, -2lnL {local.twice_nll:.4f})"
                  f"  global {t_global:7.3f} s ({full.nfev:5d} evals, {full.local_fits} local fits,"
                  f" -2lnL {full.twice_nll:.4f})  ratio {t_global / t_local:5.2f}", flush=True)


if __name__ == "__main__":
    main()
