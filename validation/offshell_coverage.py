"""Validation on the interference model: coverage, Neyman belt, toy vs asymptotic CLs.

On ``examples/offshell/workspace/exact.json`` (exact ratios, μ ∈ [0, 10], lumi and
k_factor constrained):

1. **Pseudo-experiments from the exact densities.** At μ_true = 0, 1, 2 this script draws
   its own experiments with the generator of ``examples/offshell`` (``generate.
   sample_observed``: N ~ Poisson(ν(μ)) events of p(m4l, cos θ* | μ) drawn at true level and
   smeared, the way the workspace's observed data were made) — not from the workspace's
   reference sample. The nuisance parameters are at their nominal values (lumi = 1,
   k_factor = 0) and each experiment's auxiliary measurements are drawn from their
   constraints (lumi: N(1, 0.017), k_factor: N(0, 1)). The experiments of one μ_true are
   pooled into one workspace's observed events; experiment k is the data vector weighing its
   own events 1 and all others 0, fitted through the sparse likelihood and the vectorised
   global toy fits (``ratiofactory.toys.fit_toys``), so the ratios are evaluated once.
2. **(a) profile-likelihood intervals**: μ_true lies in the 68.27 % (95.45 %) interval iff
   ``t_μtrue = −2 ln λ(μ_true) ≤ 1`` (4), with global fits.
3. **(b) Neyman construction** over a μ grid in [0, 4]: the critical values of ``t_μ`` are
   the 68.27 %/95.45 % quantiles of the tool's own toys (``toys.critical_point``: Poisson
   weights on the reference sample) at (μ, θ̂̂(μ)), θ̂̂(μ) fitted to the Asimov data of
   (μ, lumi = 1, k_factor = 0) — i.e. at the true nuisance parameters (Asimov closure);
   an experiment covers iff ``t_obs(μ_true) ≤ t_crit(μ_true)``. Values of t below
   ``ZERO_T`` (the fits' precision) count as 0, in toys and experiments alike.
4. **CLs**: q̃_μ on the observed data; toy-based CLs (toys at (μ, θ̂̂(μ)) and (0, θ̂̂(0))
   fitted to the observed data, as ``toys.toybased_hypotest``; the background toys are
   generated and fitted freely once and reused for every μ) against the asymptotic CLs, on a
   μ grid, and the expected limits (the excluded sets where CLs < 0.05: asymptotic
   ``infer.upper_limit`` vs the toy band interpolated on the grid).

Writes a JSON file and three figures, prints the tables. Progress goes to stderr.

    python validation/offshell_coverage.py                     # the documented run
    python validation/offshell_coverage.py --experiments 20 --toys 50 --cls-toys 40   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyhf
from scipy.stats import chi2, norm

import ratiofactory
from ratiofactory import infer
from ratiofactory.errors import NegativeAsimovWeights
from ratiofactory.infer.fitting import minimize
from ratiofactory.infer.hypotests import AsymptoticCalculator, prepare_setup
from ratiofactory.infer.objective import Objective, make_setup
from ratiofactory.progress import reporting
from ratiofactory.toys import (
    CONFIDENCE_LEVELS,
    SparseToys,
    ToyGenerationError,
    conditional_mle,
    confidence_set,
    critical_point,
    fit_toys,
    generate_and_fit,
    sample_teststats,
    toy_teststats,
)
from ratiofactory.toys.neyman import point_seed

ROOT = Path(__file__).resolve().parents[1]
OFFSHELL = ROOT / "examples" / "offshell"
EXACT = OFFSHELL / "workspace" / "exact.json"
sys.path.insert(0, str(OFFSHELL))
from generate import sample_observed  # examples/offshell is not a package
from physics import offshell_model

NOMINAL = {"lumi": 1.0, "k_factor": 0.0}
TRUTHS = (0.0, 1.0, 2.0)
GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
CLS_GRID = (0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0)
CLS_POINTS = (0.5, 1.0, 2.0)
LEVEL = 0.05
ZERO_T = 1e-4
WILKS = {f"{cl:.6g}": float(chi2.ppf(cl, 1)) for cl in CONFIDENCE_LEVELS}  # 1 and 4
BAND_PERCENTILES = 100 * norm.cdf([-2.0, -1.0, 0.0, 1.0, 2.0])


def say(message: str) -> None:
    """A progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- experiments


@dataclass
class Experiments:
    """Pseudo-experiments of one μ_true drawn from the exact densities: their events, the
    auxiliary measurements (one row each, in the model's auxdata order)."""

    mu: float
    events: list[np.ndarray]
    aux: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        return np.array([len(e) for e in self.events])


def truth_vector(model: Any, mu: float) -> np.ndarray:
    """(μ, nominal nuisance parameters) in the model's parameter order."""
    names = list(make_setup(model).names)
    pars = np.array(model.config.suggested_init(), dtype=float)
    pars[names.index("mu")] = mu
    for name, value in NOMINAL.items():
        pars[names.index(name)] = value
    return pars


def draw_experiments(model: Any, mu: float, n: int, seed: int) -> Experiments:
    """``n`` experiments at ``mu``: events from the exact densities (physics.py), auxiliary
    data from the constraints at the nominal nuisance parameters. Experiment k uses its own
    generator ``SeedSequence([seed, round(1000 μ), k])``."""
    physics = offshell_model()
    truth = truth_vector(model, mu)
    config = model.config
    events, aux = [], np.empty((n, config.nauxdata))
    for k in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, round(1000 * mu), k]))
        events.append(sample_observed(physics, mu, rng))
        at = 0
        for name in config.auxdata_order:
            paramset = config.param_set(name)
            if paramset.pdf_type != "normal":
                raise ValueError(f"{name}: only Gaussian constraints are drawn here, not {paramset.pdf_type}")
            mean = truth[config.par_slice(name)]
            aux[k, at:at + mean.size] = mean + np.asarray(paramset.width(), float) * rng.standard_normal(mean.size)
            at += mean.size
    return Experiments(mu, events, aux)


def pooled_model(sets: list[Experiments], folder: Path) -> tuple[Any, list[SparseToys]]:
    """exact.json with the events of all experiments as its observed events (files copied
    into ``folder``: workspaces read only files inside their directory), and each set of
    experiments as :class:`SparseToys` on that model (one model: the ratios are evaluated and
    the toy fits compiled once)."""
    base = EXACT.parent
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(base / "models" / "exact", folder / "models" / "exact")
    (folder / "data").mkdir()
    shutil.copy(base / "data" / "reference.npz", folder / "data" / "reference.npz")
    pooled = np.concatenate([e for experiments in sets for e in experiments.events])
    name = "data/experiments.npz"
    np.savez(folder / name, m4l=pooled[:, 0], cos_theta=pooled[:, 1])
    spec = ratiofactory.Workspace.load(EXACT).spec
    spec["observations"][0]["events"] = {"path": name}
    workspace = ratiofactory.Workspace(spec, base_dir=folder)
    model = workspace.model()
    data = np.asarray(workspace.data(model), dtype=float)
    n_obs = len(pooled)
    main = data[:model.config.nmaindata]
    if not (np.all(main[:n_obs] == 1.0) and np.all(main[n_obs:] == 0.0)):
        raise RuntimeError("unexpected data layout: observed events first, then the reference sample")
    toys, first = [], 0
    for experiments in sets:
        offsets = np.append(0, np.cumsum(experiments.counts))
        entries = first + np.arange(offsets[-1])
        toys.append(SparseToys(model.config.nmaindata, offsets, entries, np.ones(entries.size), experiments.aux))
        first += int(offsets[-1])
    return model, toys


def experiment_statistics(model: Any, toys: SparseToys, mu: float, setup: Any,
                          batch_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(t_μ at μ_true, μ̂, failed fits) of every experiment, with global fits."""
    free = fit_toys(model, toys, setup, batch_size=batch_size)
    t = toy_teststats(model, toys, mu, setup, "tmu", batch_size=batch_size, free=free)
    return zeroed(t), free.values[:, setup.poi_index], int(free.n_failed + np.sum(~np.isfinite(t)))


def zeroed(t: np.ndarray) -> np.ndarray:
    """t with values below the fits' precision set to 0 (NaN kept)."""
    t = np.asarray(t, dtype=float)
    return np.where(np.isfinite(t) & (t < ZERO_T), 0.0, t)


# ----------------------------------------------------------------------------- Neyman belt


def neyman_belt(model: Any, setup: Any, grid: tuple[float, ...], n_toys: int, seed: int,
                batch_size: int) -> list[dict[str, Any]]:
    """Critical values of t_μ per grid point from the tool's toys at (μ, θ̂̂(μ)), θ̂̂ fitted
    to the Asimov data of (μ, nominal nuisance parameters)."""
    points = []
    for k, mu in enumerate(grid):
        start = time.perf_counter()
        truth = truth_vector(model, mu)
        asimov = np.asarray(infer.asimov_data(model, truth), dtype=float)
        free = minimize(Objective(model, asimov), setup, hesse=False, context=f"free fit to the Asimov data of mu={mu}: ")
        point = critical_point(model, asimov, setup, free.twice_nll, float(free.values[setup.poi_index]), mu,
                               n_toys, point_seed(seed, k), "tmu", CONFIDENCE_LEVELS, batch_size=batch_size)
        t = zeroed(np.array(point.teststats))
        finite = t[np.isfinite(t)]
        critical = {key: float(np.quantile(finite, float(key))) for key in point.critical}
        points.append({"mu": mu, "generating": list(point.generating), "closure": float(np.max(np.abs(
            np.array(point.generating) - truth))), "critical": critical, "n_failed": point.n_failed,
            "fraction_zero": float(np.mean(finite == 0.0)), "teststats": t.tolist(),
            "seconds": time.perf_counter() - start})
        say(f"belt mu={mu:g}: critical {critical} ({n_toys} toys, {points[-1]['seconds']:.0f} s)")
    return points


# ----------------------------------------------------------------------------- coverage


def binomial(hits: np.ndarray, nominal: float, n_toys: int = 0) -> dict[str, float]:
    """Coverage, its binomial standard error at the nominal rate (``error``, ``pull``), at
    the observed rate, and with the Monte Carlo error of a critical value from ``n_toys``
    toys added (``error_with_toys``, ``pull_with_toys``: the toys' quantile moves the
    coverage by ~√(p(1−p)/n_toys))."""
    n = hits.size
    if not n:
        return {"n": 0, "coverage": float("nan"), "error": float("nan"), "pull": float("nan")}
    rate = float(np.mean(hits))
    error = float(np.sqrt(nominal * (1 - nominal) / n))
    both = float(np.sqrt(nominal * (1 - nominal) * (1 / n + (1 / n_toys if n_toys else 0.0))))
    return {"n": int(n), "coverage": rate, "error": error, "pull": (rate - nominal) / error,
            "error_observed": float(np.sqrt(rate * (1 - rate) / n)),
            "error_with_toys": both, "pull_with_toys": (rate - nominal) / both}


def coverage_rows(mu: float, t: np.ndarray, belt_point: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows (method, CL) of the coverage table for the experiments of one μ_true."""
    ok = np.isfinite(t)
    n_toys = int(np.isfinite(np.array(belt_point["teststats"])).sum())
    rows = []
    for key, wilks in WILKS.items():
        nominal = float(key)
        rows.append({"mu": mu, "method": f"profile likelihood (t <= {wilks:g})", "cl": nominal,
                     **binomial(t[ok] <= wilks, nominal)})
        crit = belt_point["critical"][key]
        rows.append({"mu": mu, "method": f"Neyman (t <= t_crit = {crit:.3f})", "cl": nominal,
                     **binomial(t[ok] <= crit, nominal, n_toys)})
    return rows


# ----------------------------------------------------------------------------- CLs


def cls_comparison(model: Any, data: np.ndarray, grid: tuple[float, ...], n_toys: int, seed: int,
                   batch_size: int) -> dict[str, Any]:
    """Toy-based and asymptotic CLs (q̃_μ) on ``grid``, and both expected-limit bands."""
    setup = prepare_setup(model, "qtilde", poi=None, init=None, fixed=None, bounds=None)
    calc = AsymptoticCalculator(model, data, setup, "qtilde")
    warm = setup.with_init(calc.free.values)
    background_pars = conditional_mle(model, data, warm, 0.0)
    say(f"CLs: background-only toys at {np.round(background_pars, 4).tolist()}")
    toys_b, free_b = generate_and_fit(model, background_pars, n_toys, seed + 1, setup, batch_size=batch_size)
    rows = []
    for mu in grid:
        start = time.perf_counter()
        q_obs = calc.observed(mu)
        asymptotic = calc.hypotest(mu)
        generating = conditional_mle(model, data, warm, mu)
        asymptotic_row = {"cls": asymptotic.cls, "clsb": asymptotic.clsb, "clb": asymptotic.clb,
                          "expected_cls": list(asymptotic.expected_cls)}
        try:
            q_s = sample_teststats(model, generating, n_toys, seed, mu, setup, "qtilde", batch_size=batch_size,
                                   desc=f"signal toys at {mu:g}")
        except (ToyGenerationError, NegativeAsimovWeights) as err:  # no valid density at θ̂̂(μ)
            reason = str(err).split(" (first")[0]
            rows.append({"mu": mu, "q_observed": q_obs, "generating": generating.tolist(),
                         "asymptotic": asymptotic_row, "toys": None, "no_toys": reason})
            say(f"CLs mu={mu:g}: no toys at {np.round(generating, 4).tolist()}: {reason}")
            continue
        q_b = toy_teststats(model, toys_b, mu, setup, "qtilde", batch_size=batch_size, free=free_b)
        s_ok, b_ok = q_s[np.isfinite(q_s)], q_b[np.isfinite(q_b)]
        clsb, clb = float(np.mean(s_ok >= q_obs)), float(np.mean(b_ok >= q_obs))
        cls = clsb / clb if clb > 0 else float("nan")
        var = clsb * (1 - clsb) / s_ok.size + (cls**2 * clb * (1 - clb) / b_ok.size if clb > 0 else 0.0)
        per_toy = np.array([np.mean(s_ok >= q) / max(np.mean(b_ok >= q), 1e-300) for q in b_ok])
        rows.append({"mu": mu, "q_observed": q_obs, "generating": generating.tolist(), "asymptotic": asymptotic_row,
                     "toys": {"cls": cls, "cls_error": float(np.sqrt(var) / clb) if clb > 0 else float("nan"),
                     "clsb": clsb, "clb": clb, "expected_cls": np.percentile(per_toy, BAND_PERCENTILES).tolist(),
                     "n_signal": int(s_ok.size), "n_background": int(b_ok.size),
                     "n_failed": int(q_s.size - s_ok.size + q_b.size - b_ok.size)},
            "seconds": time.perf_counter() - start})
        r = rows[-1]
        say(f"CLs mu={mu:g}: toys {cls:.4f} ± {r['toys']['cls_error']:.4f}, asymptotic {asymptotic.cls:.4f}"
            f" ({r['seconds']:.0f} s)")
    with warnings.catch_warnings():  # the non-monotone CLs is reported below, with the toys'
        warnings.simplefilter("ignore", infer.NonMonotoneCLsWarning)
        limits = infer.upper_limit(model, data)
    with_toys = [r for r in rows if r["toys"] is not None]
    mus = np.array([r["mu"] for r in with_toys])

    def excluded(values: np.ndarray) -> list[list[float]]:
        return confidence_set(mus, values, np.full(mus.size, LEVEL))

    toy_expected = np.array([r["toys"]["expected_cls"] for r in with_toys])
    return {
        "grid": list(grid), "rows": rows, "background_generating": background_pars.tolist(),
        "asymptotic_limits": {"observed": limits.observed, "expected": list(limits.expected),
                              "excluded": [list(p) for p in limits.excluded],
                              "expected_excluded": [[list(p) for p in band] for band in limits.expected_excluded]},
        "toy_limits": {"excluded": excluded(np.array([r["toys"]["cls"] for r in with_toys])),
                       "expected_excluded": [excluded(toy_expected[:, b]) for b in range(5)],
                       "note": f"CLs < {LEVEL} interpolated linearly between the grid points with toys; the"
                               f" set is open at its end ({mus[-1]:g})"},
    }


# ----------------------------------------------------------------------------- figures


def figure_teststats(belt: list[dict[str, Any]], experiments: dict[float, np.ndarray], path: Path) -> None:
    """t_μ at μ_true: the tool's toys, the exact-density experiments and χ²₁, with the critical values."""
    from ratiofactory.plots import _pyplot

    plt = _pyplot()
    truths = sorted(experiments)
    fig, axes = plt.subplots(1, len(truths) + 1, figsize=(3.2 * (len(truths) + 1), 3.0))
    bins = np.linspace(0.0, 9.0, 37)
    for ax, mu in zip(axes, truths, strict=False):
        point = next(p for p in belt if p["mu"] == mu)
        toys = np.array(point["teststats"])
        exp = experiments[mu]
        width = bins[1] - bins[0]
        ax.hist(np.clip(toys[np.isfinite(toys)], 0, bins[-1] - 1e-9), bins, density=True, histtype="stepfilled",
                color="tab:green", alpha=0.35, label="toys (reference sample)")
        ax.hist(np.clip(exp[np.isfinite(exp)], 0, bins[-1] - 1e-9), bins, density=True, histtype="step",
                color="black", label="experiments (exact)")
        x = np.linspace(width / 4, bins[-1], 200)
        ax.plot(x, chi2.pdf(x, 1), color="grey", linestyle="--", linewidth=1, label=r"$\chi^2_1$")
        for key, style in zip(point["critical"], ("-", ":"), strict=True):
            ax.axvline(point["critical"][key], color="tab:green", linestyle=style, linewidth=1)
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 10)
        ax.set_xlabel(rf"$t_\mu$ at $\mu$ = {mu:g}")
        ax.set_title(rf"$\mu_{{true}}$ = {mu:g}", fontsize=10)
    axes[0].legend(fontsize=7, loc="upper right")
    ax = axes[-1]
    mus = [p["mu"] for p in belt]
    for key, style, label in zip(WILKS, ("-", ":"), ("68.27 %", "95.45 %"), strict=True):
        ax.plot(mus, [p["critical"][key] for p in belt], "o" + style, color="tab:green", markersize=3,
                label=f"toys {label}")
        ax.axhline(WILKS[key], color="grey", linestyle=style, linewidth=1)
    ax.set_xlabel(r"$\mu$")
    ax.set_ylabel(r"critical $t_\mu$")
    ax.set_title("belt (grey: Wilks)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def figure_cls(cls: dict[str, Any], path: Path) -> None:
    """CLs(μ): toys (points, band) against the asymptotic formulae (lines, band)."""
    from ratiofactory.plots import _pyplot

    plt = _pyplot()
    rows = cls["rows"]
    mu = np.array([r["mu"] for r in rows])
    asym = np.array([r["asymptotic"]["expected_cls"] for r in rows])
    rows_t = [r for r in rows if r["toys"] is not None]
    mu_t = np.array([r["mu"] for r in rows_t])
    toys = np.array([r["toys"]["expected_cls"] for r in rows_t])
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    ax.fill_between(mu, asym[:, 0], asym[:, 4], color="yellow", alpha=0.6, label=r"asymptotic expected $\pm 2\sigma$")
    ax.fill_between(mu, asym[:, 1], asym[:, 3], color="limegreen", alpha=0.6, label=r"$\pm 1\sigma$")
    ax.plot(mu, asym[:, 2], "k--", linewidth=1, label="asymptotic expected")
    ax.plot(mu, [r["asymptotic"]["cls"] for r in rows], "k-", linewidth=1.2, label="asymptotic observed")
    shown = np.maximum(toys, 5e-4)  # CLs = 0 (no signal toy beyond the background toy) at the frame's edge
    for b, style in ((0, ":"), (1, "-."), (2, "--"), (3, "-."), (4, ":")):
        ax.plot(mu_t, shown[:, b], style, color="tab:blue", linewidth=1,
                label="toys expected (median, ±1σ, ±2σ)" if b == 2 else None)
    observed = np.array([r["toys"]["cls"] for r in rows_t])
    zero = observed == 0
    ax.errorbar(mu_t[~zero], observed[~zero], np.array([r["toys"]["cls_error"] for r in rows_t])[~zero], fmt="o",
                color="tab:blue", markersize=3, label="toys observed")
    ax.plot(mu_t[zero], [1.0 / r["toys"]["n_signal"] for r, z in zip(rows_t, zero, strict=True) if z], "v",
            color="tab:blue", markersize=4, label="toys observed: 0 (below 1/n)")
    ax.axhline(LEVEL, color="red", linewidth=1)
    ax.set_yscale("log")
    ax.set_ylim(1e-3, 1.2)
    ax.set_xlabel(r"$\mu$")
    ax.set_ylabel(r"CL$_s$")
    ax.legend(fontsize=6.5, ncol=2, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ----------------------------------------------------------------------------- main


def save(payload: dict[str, Any], path: Path) -> None:
    """Write the JSON atomically (also after each stage, so a failure keeps what is done)."""
    tmp_path = path.with_suffix(path.suffix + ".tmp")
    tmp_path.write_text(json.dumps(payload, indent=1))
    os.replace(tmp_path, path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Everything; returns the JSON payload."""
    pyhf.set_backend(args.backend, precision="64b")
    start = time.perf_counter()
    model = ratiofactory.Workspace.load(EXACT).model()
    setup = prepare_setup(model, "tmu", poi=None, init=None, fixed=None, bounds=None)
    timings: dict[str, float] = {}
    payload: dict[str, Any] = {"workspace": str(EXACT.relative_to(ROOT)), "backend": args.backend,
                               "seed": args.seed, "experiments_per_mu": args.experiments,
                               "toys_per_grid_point": args.toys, "cls_toys": args.cls_toys, "zero_t": ZERO_T}
    experiments_info = []
    sets = []
    for mu in args.truths:
        t0 = time.perf_counter()
        sets.append(draw_experiments(model, mu, args.experiments, args.seed))
        say(f"mu_true={mu:g}: {args.experiments} experiments, {sets[-1].counts.sum()} events "
            f"(mean {sets[-1].counts.mean():.1f}, expected {offshell_model().expected_yield(mu):.1f}),"
            f" {time.perf_counter() - t0:.0f} s")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        pooled, pooled_toys = pooled_model(sets, Path(tmp))
        say(f"pooled workspace: {pooled.config.nmaindata} events, {time.perf_counter() - t0:.0f} s")
        for mu, drawn, toys in zip(args.truths, sets, pooled_toys, strict=True):
            t0 = time.perf_counter()
            t, muhat, failed = experiment_statistics(pooled, toys, mu, setup, args.batch_size)
            experiments_info.append({"mu": mu, "mean_events": float(drawn.counts.mean()),
                                     "expected_events": float(offshell_model().expected_yield(mu)),
                                     "n_failed": failed, "fraction_zero": float(np.mean(t[np.isfinite(t)] == 0)),
                                     "muhat_median": float(np.nanmedian(muhat)), "t": t.tolist(),
                                     "muhat": muhat.tolist(), "seconds": time.perf_counter() - t0})
            say(f"mu_true={mu:g}: fitted, {failed} failed, median mu-hat {np.nanmedian(muhat):.3f},"
                f" {experiments_info[-1]['seconds']:.0f} s")
    timings["experiments"] = time.perf_counter() - start
    t0 = time.perf_counter()
    grid = tuple(sorted(set(args.grid) | set(args.truths)))
    belt = neyman_belt(model, setup, grid, args.toys, args.seed, args.batch_size)
    timings["belt"] = time.perf_counter() - t0
    rows = [row for info in experiments_info for row in coverage_rows(
        info["mu"], np.array(info["t"]), next(p for p in belt if p["mu"] == info["mu"]))]
    payload.update(experiments=experiments_info, belt=belt, coverage=rows, seconds=timings)
    save(payload, args.json)
    if args.cls_toys > 0:
        t0 = time.perf_counter()
        data = np.asarray(ratiofactory.Workspace.load(EXACT).data(model), dtype=float)
        payload["cls"] = cls_comparison(model, data, tuple(args.cls_grid), args.cls_toys, args.seed + 7,
                                        args.batch_size)
        timings["cls"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    payload["seconds"] = timings
    if args.figures is not None:
        figures(payload, args.figures)
    return payload


def print_tables(payload: dict[str, Any]) -> None:
    print(f"coverage on {payload['workspace']} ({payload['backend']}; {payload['experiments_per_mu']} experiments"
          f" per mu from the exact densities, {payload['toys_per_grid_point']} toys per belt point)")
    print(f"{'mu_true':>7} {'method':<34} {'nominal':>8} {'coverage':>9} {'± s.e.':>7} {'pull':>6}"
          "   (Neyman: s.e. and pull with the critical value's toy error)")
    for r in payload["coverage"]:
        extra = (f"   {100 * r['error_with_toys']:5.2f}% {r['pull_with_toys']:+6.2f}"
                 if "error_with_toys" in r and r["method"].startswith("Neyman") else "")
        print(f"{r['mu']:7g} {r['method']:<34} {100 * r['cl']:7.2f}% {100 * r['coverage']:8.2f}% "
              f"{100 * r['error']:6.2f}% {r['pull']:+6.2f}{extra}")
    print("belt: mu, critical t (68.27 %, 95.45 %), fraction of toys with t = 0, max |theta-hat-hat - truth|")
    for p in payload["belt"]:
        crit = list(p["critical"].values())
        print(f"  {p['mu']:4g}  {crit[0]:7.3f} {crit[1]:7.3f}   {p['fraction_zero']:.3f}   {p['closure']:.1e}")
    if "cls" in payload:
        cls = payload["cls"]
        print(f"{'mu':>5} {'q~obs':>7} {'CLs toys':>17} {'CLs asym':>9} | expected CLs toys / asymptotic (-2..+2 sigma)")
        for r in cls["rows"]:
            toys, asym = r["toys"], r["asymptotic"]
            if toys is None:
                print(f"{r['mu']:5g} {r['q_observed']:7.3f} {'no toys':>17} {asym['cls']:9.4f} | {r['no_toys']}")
                continue
            band = " ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(toys["expected_cls"], asym["expected_cls"], strict=True))
            print(f"{r['mu']:5g} {r['q_observed']:7.3f} {toys['cls']:8.4f} ± {toys['cls_error']:.4f} "
                  f"{asym['cls']:9.4f} | {band}")
        limits = cls["asymptotic_limits"]
        print(f"asymptotic: observed limit {limits['observed']:.3f}, expected {np.round(limits['expected'], 3).tolist()}")
        print(f"  excluded (observed) {np.round(limits['excluded'], 3).tolist()}")
        for b, pieces in enumerate(limits["expected_excluded"]):
            print(f"  excluded (expected {b - 2:+d} sigma) {np.round(pieces, 3).tolist()}")
        toy_limits = cls["toy_limits"]
        print(f"toys ({toy_limits['note']}): excluded (observed) {np.round(toy_limits['excluded'], 3).tolist()}")
        for b, pieces in enumerate(toy_limits["expected_excluded"]):
            print(f"  excluded (expected {b - 2:+d} sigma) {np.round(pieces, 3).tolist()}")
    print("seconds:", {k: round(v) for k, v in payload["seconds"].items()})


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])

    def floats(text: str) -> list[float]:
        return [float(v) for v in text.split(",")]

    parser.add_argument("--experiments", type=int, default=1000, help="per mu_true")
    parser.add_argument("--toys", type=int, default=3000, help="tool toys per belt grid point")
    parser.add_argument("--cls-toys", type=int, default=1000, help="signal and background toys per CLs point (0: skip)")
    parser.add_argument("--truths", type=floats, default=list(TRUTHS))
    parser.add_argument("--grid", type=floats, default=list(GRID), help="belt grid (the truths are added)")
    parser.add_argument("--cls-grid", type=floats, default=list(CLS_GRID))
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--backend", choices=["jax", "numpy"], default="jax")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--json", type=Path, default=Path("offshell_coverage.json"))
    parser.add_argument("--figures", type=Path, default=None, help="folder for the PNG figures (e.g. docs/img)")
    parser.add_argument("--replot", type=Path, default=None, help="only redraw the figures and tables from this JSON")
    return parser.parse_args(argv)


def figures(payload: dict[str, Any], folder: Path) -> None:
    """The figures from a payload (also from a saved JSON: ``--replot``)."""
    folder.mkdir(parents=True, exist_ok=True)
    experiments_t = {e["mu"]: np.array(e["t"], dtype=float) for e in payload["experiments"]}
    figure_teststats(payload["belt"], experiments_t, folder / "offshell_coverage_tmu.png")
    if "cls" in payload:
        figure_cls(payload["cls"], folder / "offshell_cls_toys.png")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.replot is not None:
        payload = json.loads(args.replot.read_text())
        figures(payload, args.figures or Path("."))
        print_tables(payload)
        return 0
    with reporting("lines", interval=15.0):
        payload = run(args)
    print_tables(payload)
    save(payload, args.json)
    neyman = [r for r in payload["coverage"] if r["method"].startswith("Neyman")]
    return 0 if all(abs(r["pull"]) <= 2 for r in neyman) else 1


if __name__ == "__main__":
    sys.exit(main())
