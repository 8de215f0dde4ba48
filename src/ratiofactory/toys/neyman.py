"""The Neyman construction over a grid of the POI, with toys at the profiled point.

For each grid value μ_k: θ̂̂(μ_k) is fitted to the observed data, ``n_toys`` toys are
generated at (μ_k, θ̂̂(μ_k)), ``t_μ`` is computed on each (vectorised fits), and its
quantiles at the confidence levels are the critical values. The confidence set is
``{μ : t_μ^obs ≤ t_μ^crit(μ)}``; its edges are interpolated linearly in
``t_μ^obs − t_μ^crit`` between grid points. The expected band comes from toys at the
nominal point: each toy's own interval from the same belt, whose edges' quantiles give the
median and ±1σ/±2σ expectations.

With ``directory``, each grid point is saved as ``point_<k>.json`` (written atomically)
and reused on the next call with the same settings, so an interrupted construction resumes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm

from ..files import atomic_write
from ..infer.errors import InvalidFitSetup
from ..infer.fitting import FitOptions, minimize
from ..infer.hypotests import _check_kind, prepare_setup
from ..infer.objective import FitSetup, Objective
from .executors import Executor, progress
from .toybased import conditional_mle, sample_teststats, statistic_from_fits, toy_teststats
from .vfit import fit_toys, generate_and_fit

__all__ = [
    "CONFIDENCE_LEVELS", "CoverageResult", "NeymanPoint", "NeymanResult", "confidence_set", "critical_point",
    "neyman_construction", "neyman_coverage", "point_seed",
]

CONFIDENCE_LEVELS = (float(norm.cdf(1) - norm.cdf(-1)), float(norm.cdf(2) - norm.cdf(-2)))


def point_seed(seed: int, index: int) -> int:
    """The toy seed of grid point ``index`` (independent of the other points)."""
    return int(np.random.SeedSequence([int(seed), 1_000_003, int(index)]).generate_state(1)[0])


@dataclass(frozen=True)
class NeymanPoint:
    """One grid point: generating parameters, observed t_μ, critical values per CL, the toys' t_μ."""

    poi_value: float
    generating: tuple[float, ...]
    t_observed: float
    critical: dict[str, float]
    teststats: tuple[float, ...]
    n_failed: int
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"poi_value": self.poi_value, "generating": list(self.generating), "t_observed": self.t_observed,
                "critical": dict(self.critical), "teststats": [None if not np.isfinite(t) else t for t in self.teststats],
                "n_failed": self.n_failed, "settings": self.settings}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NeymanPoint:
        stats = tuple(float("nan") if t is None else float(t) for t in d["teststats"])
        return cls(float(d["poi_value"]), tuple(d["generating"]), float(d["t_observed"]),
                   {k: float(v) for k, v in d["critical"].items()}, stats, int(d["n_failed"]), d["settings"])


def _key(cl: float) -> str:
    return f"{cl:.6g}"


def confidence_set(poi_values: np.ndarray, t_observed: np.ndarray, critical: np.ndarray) -> list[list[float]]:
    """Pieces ``[lo, hi]`` of ``{μ : t_obs ≤ t_crit}``, edges interpolated between grid points.

    >>> confidence_set(np.array([0.0, 1.0, 2.0, 3.0]), np.array([3.0, 0.0, 0.5, 3.0]), np.ones(4))
    [[0.6666666666666666, 2.2]]
    """
    d = np.asarray(t_observed, float) - np.asarray(critical, float)
    x = np.asarray(poi_values, float)
    inside = d <= 0
    pieces, k = [], 0
    while k < len(x):
        if not inside[k]:
            k += 1
            continue
        start = k
        while k + 1 < len(x) and inside[k + 1]:
            k += 1
        lo = x[0] if start == 0 else x[start - 1] + (x[start] - x[start - 1]) * d[start - 1] / (d[start - 1] - d[start])
        hi = x[-1] if k == len(x) - 1 else x[k] + (x[k + 1] - x[k]) * d[k] / (d[k] - d[k + 1])
        pieces.append([float(lo), float(hi)])
        k += 1
    return pieces


@dataclass(frozen=True)
class NeymanResult:
    """The belt (critical values per CL on the grid), observed t_μ, observed intervals per
    CL, and the expected band of the interval edges (quantiles at −2σ … +2σ)."""

    poi_name: str
    test_stat: str
    poi_values: np.ndarray
    t_observed: np.ndarray
    critical: dict[str, np.ndarray]
    intervals: dict[str, list[list[float]]]
    expected: dict[str, dict[str, list[float]]]
    points: tuple[NeymanPoint, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: the belt as data."""
        return {"poi": self.poi_name, "test_stat": self.test_stat, "poi_values": self.poi_values.tolist(),
                "t_observed": self.t_observed.tolist(),
                "critical": {k: v.tolist() for k, v in self.critical.items()},
                "intervals": self.intervals, "expected": self.expected,
                "n_failed": [p.n_failed for p in self.points]}

    def plot(self, cl: float = CONFIDENCE_LEVELS[0], path: Any = None, ax: Any = None) -> Any:
        """The belt at ``cl`` with :func:`ratiofactory.plots.plot_belt`."""
        from ..plots import plot_belt

        return plot_belt(self.poi_values, self.critical[_key(cl)], self.t_observed, cl=cl, path=path, ax=ax)


def _write_atomically(path: Path, content: dict[str, Any]) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(content))


def _load(path: Path, settings: dict[str, Any]) -> NeymanPoint | None:
    if not path.is_file():
        return None
    try:
        point = NeymanPoint.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError):
        return None
    return point if point.settings == settings else None


def critical_point(model: Any, data: Any, setup: FitSetup, free_nll: float, free_poi: float, poi_value: float,
                   n_toys: int, seed: int, test_stat: str, cls: tuple[float, ...], *,
                   executor: Executor | None = None, batch_size: int = 64,
                   options: FitOptions | None = None, settings: dict[str, Any] | None = None) -> NeymanPoint:
    """One grid point of the construction (θ̂̂(μ), observed t_μ, toys, critical values).

    >>> import pyhf
    >>> from ratiofactory.infer import fit
    >>> from ratiofactory.infer.objective import make_setup
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> best = fit(model, data)
    >>> point = critical_point(model, data, make_setup(model), best.twice_nll, best.poi_value, 2.4, 50, 1,
    ...                        "tmu", (0.6827,))
    >>> point.t_observed, abs(point.critical["0.6827"] - 1.0) < 0.5   # near Wilks' t = 1
    (0.0, True)
    """
    generating = conditional_mle(model, data, setup.with_init(setup.init), poi_value, options)
    cond_nll = float(Objective(model, data)(generating))
    t_obs = float(statistic_from_fits(test_stat, poi_value, free_nll, free_poi, cond_nll))
    stats = sample_teststats(model, generating, n_toys, seed, poi_value, setup, test_stat,
                             executor=executor, batch_size=batch_size, desc=f"toys at {poi_value:g}")
    finite = stats[np.isfinite(stats)]
    critical = {_key(cl): float(np.quantile(finite, cl)) if finite.size else float("nan") for cl in cls}
    return NeymanPoint(float(poi_value), tuple(map(float, generating)), t_obs, critical,
                       tuple(map(float, stats)), int(stats.size - finite.size), settings or {})


def _expected_band(model, setup, nominal, poi_values, critical, n_toys, seed, test_stat, batch_size):
    """Quantiles of the toys' interval edges (lowest and highest edge) per CL."""
    toys, free = generate_and_fit(model, nominal, n_toys, seed, setup, batch_size=batch_size)
    t = np.column_stack([toy_teststats(model, toys, mu, setup, test_stat, batch_size=batch_size, free=free)
                         for mu in poi_values])
    band = {}
    for key, crit in critical.items():
        edges = [confidence_set(poi_values, row, crit) for row in t if np.all(np.isfinite(row))]
        lo = np.array([e[0][0] for e in edges if e])
        hi = np.array([e[-1][1] for e in edges if e])
        q = 100 * norm.cdf([-2.0, -1.0, 0.0, 1.0, 2.0])
        band[key] = {"lower": np.percentile(lo, q).tolist() if lo.size else [],
                     "upper": np.percentile(hi, q).tolist() if hi.size else []}
    return band


def _grid(poi_values: Any, name: str) -> np.ndarray:
    """The grid in increasing order without repeats, as the scans take it (the confidence
    set's pieces are read off it left to right)."""
    values = np.asarray(poi_values, dtype=float).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise InvalidFitSetup(f"Neyman construction of {name!r}: poi_values must be finite numbers, at least one")
    return np.unique(values)


def neyman_construction(model: Any, data: Any, poi_values: Any, n_toys: int, seed: int, *,
                        test_stat: str = "tmu", cls: tuple[float, ...] = CONFIDENCE_LEVELS,
                        directory: str | os.PathLike[str] | None = None, expected_toys: int = 0,
                        nominal: float | None = None, poi: str | None = None, init=None, fixed=None,
                        bounds=None, executor: Executor | None = None, batch_size: int = 64,
                        options: FitOptions | None = None) -> NeymanResult:
    """Neyman construction of ``poi`` over ``poi_values`` (sorted, repeats dropped) with
    ``n_toys`` toys per point.

    ``expected_toys`` > 0 adds the expected band from toys at ``(nominal, θ̂̂(nominal))``
    (``nominal`` defaults to the POI's init).

    >>> import pyhf
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> belt = neyman_construction(model, data, [1.0, 2.4, 4.0], 50, seed=1)
    >>> belt.poi_values.tolist(), float(belt.t_observed[1]) < 1e-6     # t_mu = 0 at the best fit
    ([1.0, 2.4, 4.0], True)
    """
    _check_kind(test_stat, ("tmu", "tmu_tilde"))
    setup = prepare_setup(model, test_stat, poi=poi, init=init, fixed=fixed, bounds=bounds)
    data = np.asarray(data, dtype=float)
    poi_values = _grid(poi_values, str(setup.poi_name))
    free = minimize(Objective(model, data), setup, options, hesse=False, context="free fit to data: ")
    free_poi = float(free.values[setup.poi_index])
    setup = setup.with_init(free.values)
    folder = Path(directory) if directory is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    points = []
    for k, mu in enumerate(progress(poi_values, len(poi_values), "grid points")):
        settings = {"poi_value": float(mu), "n_toys": int(n_toys), "seed": int(seed), "test_stat": test_stat,
                    "cls": [float(c) for c in cls]}
        path = folder / f"point_{k:04d}.json" if folder is not None else None
        point = _load(path, settings) if path is not None else None
        if point is None:
            point = critical_point(model, data, setup, free.twice_nll, free_poi, float(mu), n_toys,
                                   point_seed(seed, k), test_stat, cls, executor=executor,
                                   batch_size=batch_size, options=options, settings=settings)
            if path is not None:
                _write_atomically(path, point.to_dict())
        points.append(point)
    t_obs = np.array([p.t_observed for p in points])
    critical = {_key(cl): np.array([p.critical[_key(cl)] for p in points]) for cl in cls}
    intervals = {key: confidence_set(poi_values, t_obs, crit) for key, crit in critical.items()}
    expected: dict[str, dict[str, list[float]]] = {}
    if expected_toys > 0:
        mu_nominal = float(setup.init[setup.poi_index] if nominal is None else nominal)
        nominal_pars = conditional_mle(model, data, setup, mu_nominal, options)
        expected = _expected_band(model, setup, nominal_pars, poi_values, critical, expected_toys,
                                  point_seed(seed, -1 % 2**31), test_stat, batch_size)
    return NeymanResult(str(setup.poi_name), test_stat, poi_values, t_obs, critical, intervals, expected,
                        tuple(points))


@dataclass(frozen=True)
class CoverageResult:
    """How often the Neyman interval covered the true POI value, per CL."""

    poi_value: float
    n_experiments: int
    covered: dict[str, float]
    standard_error: dict[str, float]
    n_failed: int

    def table(self) -> str:
        """One line per CL: nominal, observed coverage ± standard error, pull."""
        lines = []
        for key, rate in self.covered.items():
            nominal, error = float(key), self.standard_error[key]
            lines.append(f"{self.poi_value:8.3g} {self.n_experiments:6d} {100 * nominal:8.2f}% "
                         f"{100 * rate:8.2f}% ± {100 * error:5.2f}%  {(rate - nominal) / error:+6.2f} σ")
        return "\n".join(lines)


def neyman_coverage(model: Any, truth: Any, n_experiments: int, n_toys: int, seed: int, *,
                    test_stat: str = "tmu", cls: tuple[float, ...] = CONFIDENCE_LEVELS, batch_size: int = 64,
                    executor: Executor | None = None, init=None, fixed=None, bounds=None) -> CoverageResult:
    """Coverage of the Neyman construction at the true parameters ``truth``.

    The interval of a pseudo-experiment covers μ_true exactly when ``t_obs(μ_true) ≤
    t_crit(μ_true)``, with the critical value from toys at (μ_true, θ̂̂(μ_true)) fitted to
    that pseudo-experiment — so only the grid point at the truth is needed per experiment.

    >>> import pyhf
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> coverage = neyman_coverage(model, [2.0, 1.0], 5, 20, seed=1)
    >>> coverage.n_experiments, coverage.n_failed, sorted(coverage.covered) == ["0.682689", "0.9545"]
    (5, 0, True)
    """
    _check_kind(test_stat, ("tmu", "tmu_tilde"))
    setup = prepare_setup(model, test_stat, poi=None, init=init, fixed=fixed, bounds=bounds)
    mu = float(np.asarray(truth, dtype=float)[setup.poi_index])
    experiments, free = generate_and_fit(model, truth, n_experiments, seed, setup, batch_size=batch_size)
    cond = fit_toys(model, experiments, setup.with_poi_fixed(mu), init=free.values, batch_size=batch_size)
    t_obs = statistic_from_fits(test_stat, mu, free.twice_nll, free.values[:, setup.poi_index], cond.twice_nll)
    hits: dict[str, list[bool]] = {_key(cl): [] for cl in cls}
    failed = int((~np.isfinite(t_obs)).sum())
    for e in progress(range(n_experiments), n_experiments, "pseudo-experiments"):
        if not np.isfinite(t_obs[e]):
            continue
        stats = sample_teststats(model, cond.values[e], n_toys, point_seed(seed, e), mu, setup, test_stat,
                                 executor=executor, batch_size=batch_size, desc="toys")
        finite = stats[np.isfinite(stats)]
        failed += stats.size - finite.size
        for cl in cls:
            hits[_key(cl)].append(bool(t_obs[e] <= np.quantile(finite, cl)))
    rates = {k: float(np.mean(v)) for k, v in hits.items()}
    errors = {k: float(np.sqrt(float(k) * (1 - float(k)) / max(len(v), 1))) for k, v in hits.items()}
    return CoverageResult(mu, n_experiments, rates, errors, failed)
