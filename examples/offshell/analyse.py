"""The off-shell Higgs measurement: fit, profile scan of μ, intervals, impacts and plots.

The README's main job::

    python examples/offshell/analyse.py [--workspace examples/offshell/workspace/workspace.json]
                                        [--output results/offshell] [--backend jax|numpy]

writes ``results.json``, ``scan.png`` and ``impacts.png`` to the output directory and
prints μ̂ with its 68.27 % interval. The scan runs over μ ∈ [0, 3] so that the
flat-bottomed, non-parabolic t_μ of the interference term (the yield is smallest near
μ ≈ 0.47) is visible.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyhf

import ratiofactory
from ratiofactory import infer, plots

HERE = Path(__file__).resolve().parent
DEFAULT_WORKSPACE = HERE / "workspace" / "workspace.json"
DEFAULT_OUTPUT = Path("results") / "offshell"
SCAN_RANGE = (0.0, 3.0)


def load(workspace: Path) -> tuple[Any, Any]:
    """(model, observed data) of a workspace file."""
    ws = ratiofactory.Workspace.load(workspace)
    model = ws.model()
    return model, ws.data(model)


def analyse(workspace: Path = DEFAULT_WORKSPACE, output: Path = DEFAULT_OUTPUT,
            backend: str = "jax", n_scan: int = 31, do_impacts: bool = True,
            plots: bool = True) -> dict[str, Any]:
    """Run the measurement and write ``results.json`` (and the plots) to ``output``.

    Returns the content of ``results.json``: the best fit, the scan, the 68.27 % and
    95.45 % intervals, the impacts and the wall time.
    """
    start = time.perf_counter()
    pyhf.set_backend(backend)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model, data = load(Path(workspace))
    best = infer.fit(model, data)
    scan = infer.profile_scan(model, data, np.linspace(*SCAN_RANGE, n_scan))
    one_sigma = infer.interval(scan, infer.CL_1SIGMA)
    two_sigma = infer.interval(scan, infer.CL_2SIGMA)
    ranked = infer.impacts(model, data) if do_impacts else None
    results = {
        "workspace": str(workspace),
        "backend": backend,
        "mu_hat": best.poi_value,
        "interval_68": [list(piece) for piece in one_sigma.intervals],
        "interval_95": [list(piece) for piece in two_sigma.intervals],
        "fit": best.to_dict(),
        "scan": scan.to_dict(),
        "impacts": ranked.to_dict() if ranked is not None else None,
    }
    if plots:
        results["plots"] = write_plots(scan, one_sigma, two_sigma, ranked, output)
    results["wall_time_s"] = time.perf_counter() - start
    (output / "results.json").write_text(json.dumps(_jsonable(results), indent=1))
    return results


def _jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars and arrays, NaN → None)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_plots(scan: infer.ScanResult, one_sigma: infer.IntervalResult,
                two_sigma: infer.IntervalResult, ranked: infer.ImpactsResult | None,
                output: Path) -> dict[str, str]:
    """scan.png (t_μ with the 1σ/2σ thresholds) and impacts.png; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    paths = {"scan": str(output / "scan.png")}
    _plot_scan(scan, one_sigma, two_sigma, paths["scan"])
    if ranked is not None and ranked.rows:
        paths["impacts"] = str(output / "impacts.png")
        plots.plot_impacts(ranked, paths["impacts"])
    return paths


def _plot_scan(scan, one_sigma, two_sigma, path: str) -> None:
    """The library's scan plot plus the two half-parabolae through the 68 % edges."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.3))
    plots.plot_scan(scan, ax=ax, intervals=[one_sigma, two_sigma])
    mu = np.linspace(scan.poi_values[0], scan.poi_values[-1], 301)
    hat, lo, hi = one_sigma.bestfit, one_sigma.lower, one_sigma.upper
    half_width = np.where(mu < hat, hat - lo, hi - hat)
    ax.plot(mu, ((mu - hat) / half_width) ** 2, ls="-.", color="grey", lw=1,
            label="parabolae through the 68% edges")
    ax.set_xlabel(r"$\mu$")
    ax.set_title(rf"$\hat\mu$ = {hat:.3f}, 68% CL [{lo:.3f}, {hi:.3f}]", fontsize=10)
    ax.legend(loc="upper center", fontsize=8)
    fig.tight_layout()
    plots.save_figure(fig, path, dpi=80)
    plt.close(fig)


def summary(results: dict[str, Any]) -> str:
    """One line per result: μ̂ with its 68.27 % (and 95.45 %) interval."""
    pieces = " ∪ ".join(f"[{a:.3f}, {b:.3f}]" for a, b in results["interval_68"])
    hat = results["mu_hat"]
    lines = [f"mu_hat = {hat:.3f}, 68.27% CL interval {pieces}"]
    if len(results["interval_68"]) == 1:
        lo, hi = results["interval_68"][0]
        lines[0] += f"  (mu = {hat:.3f} -{hat - lo:.3f} +{hi - hat:.3f})"
    lines.append("95.45% CL: " + " ∪ ".join(f"[{a:.3f}, {b:.3f}]" for a, b in results["interval_95"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, default=DEFAULT_WORKSPACE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--backend", choices=("jax", "numpy"), default="jax")
    parser.add_argument("--scan-points", type=int, default=31)
    parser.add_argument("--no-impacts", action="store_true")
    args = parser.parse_args(argv)
    results = analyse(args.workspace, args.output, args.backend, args.scan_points,
                      do_impacts=not args.no_impacts)
    if results["impacts"] is not None:
        print(_impacts_table(results["impacts"]))
    print(summary(results))
    print(f"results in {args.output} ({results['wall_time_s']:.1f} s)")
    return results


def _impacts_table(impacts: dict[str, Any]) -> str:
    rows = impacts.get("rows", [])
    lines = [f"{'parameter':<12} {'pull':>7} {'constr':>7} {'post-fit +':>10} {'post-fit -':>10}"]
    for r in rows:
        lines.append(f"{r['name']:<12} {r['pull']:7.3f} {r['constraint']:7.3f} "
                     f"{r['postfit_up']:10.4f} {r['postfit_down']:10.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
