"""Result objects of :mod:`ratiofactory.infer`.

All are frozen dataclasses that print as a plain-text table (``str(result)``) and
serialise with ``to_dict()`` to plain JSON types under stable keys (NaN → ``None``,
±∞ → ``"inf"``/``"-inf"``). Arrays are read-only numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import chi2

from ._format import fmt, jsonable, table
from .errors import InvalidFitSetup

__all__ = [
    "FitResult",
    "ImpactRow",
    "ImpactsResult",
    "IntervalResult",
    "LocalMinimum",
    "ScanResult",
    "ScanResult2D",
]


def _frozen(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            array = np.array(value, dtype=float if name != "fixed" else bool)
            array.flags.writeable = False
            object.__setattr__(obj, name, array)


@dataclass(frozen=True, eq=False)
class LocalMinimum:
    """Another local minimum found by the global search: its parameter values and
    ``−2 ln L`` (``delta_twice_nll`` above the best fit)."""

    values: np.ndarray
    twice_nll: float
    delta_twice_nll: float

    def __post_init__(self) -> None:
        _frozen(self, "values")

    def to_dict(self, parameters: tuple[str, ...]) -> dict[str, Any]:
        """Plain JSON: ``values`` by parameter name, ``twice_nll``, ``delta_twice_nll``."""
        return {"values": dict(zip(parameters, self.values.tolist(), strict=True)),
                "twice_nll": self.twice_nll, "delta_twice_nll": self.delta_twice_nll}


@dataclass(frozen=True, eq=False)
class FitResult:
    """A maximum-likelihood fit. ``twice_nll`` is ``−2 ln L`` at the minimum;
    ``errors``/``covariance`` are zero for fixed parameters and None without Hesse;
    ``minos`` maps names to (lower, upper) errors (lower is negative).

    ``other_minima`` lists the other distinct local minima the global search found
    (lowest first), ``local_fits`` how many local minimisations it ran, and ``at_bound``
    maps each free parameter whose best-fit value lies on one of its bounds to
    ``"lower"`` or ``"upper"``. ``warnings`` says both in one line each.
    """

    parameters: tuple[str, ...]
    values: np.ndarray
    errors: np.ndarray | None
    covariance: np.ndarray | None
    twice_nll: float
    valid: bool
    fixed: np.ndarray
    poi: str | None
    edm: float | None
    nfev: int
    message: str
    method: str
    backend: str
    covariance_valid: bool = False
    minos: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    other_minima: tuple[LocalMinimum, ...] = ()
    at_bound: Mapping[str, str] = field(default_factory=dict)
    local_fits: int = 1

    def __post_init__(self) -> None:
        _frozen(self, "values", "errors", "covariance", "fixed")

    @property
    def warnings(self) -> tuple[str, ...]:
        """One line per thing a physicist must know: a best fit on a bound, other minima."""
        lines = []
        if self.at_bound:
            where = ", ".join(f"{name} = {fmt(self.value(name))} ({side} bound)"
                              for name, side in self.at_bound.items())
            lines.append(f"the best fit lies on a bound: {where}; the minimum may lie outside"
                         " (widen the bounds); its Hesse error is NaN (not a parabolic minimum)")
        if self.other_minima:
            shown = "; ".join(self._describe(m) for m in self.other_minima[:3])
            more = f" (and {len(self.other_minima) - 3} more)" if len(self.other_minima) > 3 else ""
            lines.append(f"{len(self.other_minima)} other local minim{'um' if len(self.other_minima) == 1 else 'a'}"
                         f" found: {shown}{more}")
        return tuple(lines)

    def _describe(self, minimum: LocalMinimum) -> str:
        changed = np.argsort(-np.abs(minimum.values - self.values))[:3]
        names = [self.poi] if self.poi is not None else []
        names += [self.parameters[i] for i in changed if self.parameters[i] not in names][: 3 - len(names)]
        where = ", ".join(f"{n}={fmt(minimum.values[self.index(n)], 4)}" for n in names)
        return f"{where} at -2lnL +{fmt(minimum.delta_twice_nll, 4)}"

    def index(self, name: str) -> int:
        """Position of parameter ``name`` (expanded name, e.g. ``'uncorr[0]'``)."""
        if name not in self.parameters:
            raise InvalidFitSetup(f"unknown parameter {name!r}; known: {', '.join(self.parameters)}")
        return self.parameters.index(name)

    def value(self, name: str) -> float:
        """Best-fit value of parameter ``name``."""
        return float(self.values[self.index(name)])

    def error(self, name: str) -> float:
        """Hesse error of parameter ``name`` (NaN when Hesse was not run)."""
        return float("nan") if self.errors is None else float(self.errors[self.index(name)])

    @property
    def poi_value(self) -> float:
        """Best-fit value of the parameter of interest."""
        return self.value(self._poi())

    @property
    def poi_error(self) -> float:
        """Hesse error of the parameter of interest."""
        return self.error(self._poi())

    def _poi(self) -> str:
        if self.poi is None:
            raise InvalidFitSetup("this fit has no parameter of interest")
        return self.poi

    @property
    def correlation(self) -> np.ndarray | None:
        """Correlation matrix (zero rows/columns for fixed parameters)."""
        if self.covariance is None:
            return None
        sigma = np.sqrt(np.clip(np.diag(self.covariance), 0.0, None))
        scale = np.outer(sigma, sigma)
        return np.divide(self.covariance, scale, out=np.zeros_like(self.covariance), where=scale > 0)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary with stable keys."""
        return jsonable({
            "parameters": list(self.parameters),
            "values": self.values,
            "errors": self.errors,
            "covariance": self.covariance,
            "fixed": self.fixed,
            "poi": self.poi,
            "twice_nll": self.twice_nll,
            "valid": self.valid,
            "covariance_valid": self.covariance_valid,
            "edm": self.edm,
            "nfev": self.nfev,
            "message": self.message,
            "method": self.method,
            "backend": self.backend,
            "minos": {k: list(v) for k, v in self.minos.items()},
            "other_minima": [m.to_dict(self.parameters) for m in self.other_minima],
            "at_bound": dict(self.at_bound),
            "local_fits": self.local_fits,
            "warnings": list(self.warnings),
        })

    def __str__(self) -> str:
        return "\n".join([self.table(), *(f"warning: {line}" for line in self.warnings)])

    def table(self) -> str:
        """The parameter table alone (``str(result)`` adds the :attr:`warnings`)."""
        rows = []
        for i, name in enumerate(self.parameters):
            err = None if self.errors is None or self.fixed[i] else self.errors[i]
            lo, hi = self.minos.get(name, (None, None))
            rows.append([name, self.values[i], err, lo, hi, bool(self.fixed[i]), self.at_bound.get(name, "")])
        title = (f"FitResult ({self.method}, {self.backend}): valid={fmt(self.valid)}, "
                 f"-2lnL={fmt(self.twice_nll, 10)}, edm={fmt(self.edm, 3)}, nfev={self.nfev}, "
                 f"local fits={self.local_fits}")
        return table(["parameter", "value", "error", "minos-", "minos+", "fixed", "at bound"], rows, title)


@dataclass(frozen=True, eq=False)
class ScanResult:
    """A one-POI profile-likelihood scan: ``tmu = −2 ln[L(μ, θ̂̂)/L(μ̂, θ̂)]`` at ``poi_values``.

    ``profiled[i]`` is the full conditional best-fit vector at ``poi_values[i]``.
    ``profile`` (not serialised) re-evaluates ``t_μ`` at any μ, warm-started, and is what
    :func:`~ratiofactory.infer.interval` uses to refine crossings. ``bounds`` are the
    scanned parameter's (lower, upper) bounds: an interval that reaches the end of the
    scan there ends at the bound, not beyond the scan.
    """

    poi: str
    poi_values: np.ndarray
    tmu: np.ndarray
    twice_nll: np.ndarray
    profiled: np.ndarray
    bestfit: FitResult
    profile: Callable[[float], float] | None = field(default=None, repr=False)
    bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _frozen(self, "poi_values", "tmu", "twice_nll", "profiled")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary with stable keys."""
        return jsonable({
            "poi": self.poi,
            "poi_values": self.poi_values,
            "tmu": self.tmu,
            "twice_nll": self.twice_nll,
            "bestfit_poi": self.bestfit.poi_value,
            "twice_nll_min": self.bestfit.twice_nll,
            "profiled": {n: self.profiled[:, i] for i, n in enumerate(self.bestfit.parameters)},
            "poi_bounds": self.bounds,
        })

    def __str__(self) -> str:
        rows = list(zip(self.poi_values, self.tmu, strict=True))
        title = f"Profile scan of {self.poi} (best fit {fmt(self.bestfit.poi_value)})"
        return table([self.poi, "t_mu"], rows, title)


@dataclass(frozen=True, eq=False)
class ScanResult2D:
    """A two-POI grid scan: ``tmu[i, j]`` at ``(x_values[i], y_values[j])``."""

    pois: tuple[str, str]
    x_values: np.ndarray
    y_values: np.ndarray
    tmu: np.ndarray
    twice_nll: np.ndarray
    bestfit: FitResult

    def __post_init__(self) -> None:
        _frozen(self, "x_values", "y_values", "tmu", "twice_nll")

    def inside(self, cl: float = 0.6827) -> np.ndarray:
        """Grid points inside the ``cl`` confidence region (Wilks, 2 degrees of freedom)."""
        return self.tmu <= chi2.ppf(cl, 2)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary with stable keys."""
        return jsonable({
            "pois": list(self.pois),
            "x_values": self.x_values,
            "y_values": self.y_values,
            "tmu": self.tmu,
            "twice_nll": self.twice_nll,
            "bestfit": [self.bestfit.value(p) for p in self.pois],
            "twice_nll_min": self.bestfit.twice_nll,
        })

    def __str__(self) -> str:
        x, y = self.pois
        rows = [[self.x_values[i], self.y_values[j], self.tmu[i, j]]
                for i in range(self.x_values.size) for j in range(self.y_values.size)]
        return table([x, y, "t"], rows, f"Profile scan of ({x}, {y})")


@dataclass(frozen=True)
class IntervalResult:
    """Confidence intervals ``{μ : t_μ < threshold}`` from a profile scan (Wilks).

    ``intervals`` lists every disjoint piece; ``open_ends[k]`` says whether the lower or
    upper end of piece ``k`` is the edge of the scan rather than a crossing of the
    threshold or the parameter's bound: the interval then continues beyond the scan
    (``scan_range``), the end shown is only where the scan stopped, and :attr:`errors`
    is NaN on that side. Widen the scan to find it.
    """

    poi: str
    cl: float
    threshold: float
    bestfit: float
    intervals: tuple[tuple[float, float], ...]
    open_ends: tuple[tuple[bool, bool], ...]
    refined: bool
    scan_range: tuple[float, float] | None = None

    @property
    def lower(self) -> float:
        """Lowest end of all pieces."""
        return min(lo for lo, _ in self.intervals)

    @property
    def upper(self) -> float:
        """Highest end of all pieces."""
        return max(hi for _, hi in self.intervals)

    @property
    def open_below(self) -> bool:
        """Whether the lowest end is the start of the scan, not the interval's end."""
        return self.open_ends[0][0]

    @property
    def open_above(self) -> bool:
        """Whether the highest end is the end of the scan, not the interval's end."""
        return self.open_ends[-1][1]

    @property
    def errors(self) -> tuple[float, float]:
        """(lower − best fit, upper − best fit): asymmetric errors, the first ≤ 0; NaN on a
        side where the interval is open (its end lies beyond the scan)."""
        down = float("nan") if self.open_below else self.lower - self.bestfit
        up = float("nan") if self.open_above else self.upper - self.bestfit
        return (down, up)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary with stable keys (``errors`` null on an open side)."""
        return jsonable({
            "poi": self.poi, "cl": self.cl, "threshold": self.threshold,
            "bestfit": self.bestfit, "intervals": self.intervals,
            "open_ends": self.open_ends, "refined": self.refined,
            "errors": self.errors, "scan_range": self.scan_range,
        })

    def pieces_text(self) -> str:
        """The pieces as ``[lo, hi] ∪ ...``, an open end as ``< lo`` or ``> hi``."""
        return " ∪ ".join(f"[{'< ' if a else ''}{fmt(lo)}, {'> ' if b else ''}{fmt(hi)}]"
                          for (lo, hi), (a, b) in zip(self.intervals, self.open_ends, strict=True))

    def headline(self) -> str:
        """``mu = 1.2 +0.3 / -0.2 (68.27% CL, t_mu < 1)``, or with an open end the
        pieces and where the scan stopped, never a signed error to the scan's end."""
        level = f"{100 * self.cl:.2f}% CL"
        if not (self.open_below or self.open_above):
            down, up = self.errors
            return f"{self.poi} = {fmt(self.bestfit)} +{fmt(up)} / {fmt(down)}  ({level}, t_mu < {fmt(self.threshold)})"
        sides = [side for side, is_open in (("below", self.open_below), ("above", self.open_above)) if is_open]
        where = ""
        if self.scan_range is not None and not self.scan_range[0] <= self.bestfit <= self.scan_range[1]:
            where = f"; the best fit lies outside the scan [{fmt(self.scan_range[0])}, {fmt(self.scan_range[1])}]"
        return (f"{self.poi} = {fmt(self.bestfit)}, {level}: {self.pieces_text()} (t_mu < {fmt(self.threshold)});"
                f" open {' and '.join(sides)}: t_mu is below {fmt(self.threshold)} at the scan's edge{where},"
                " widen it")

    def __str__(self) -> str:
        rows = [[k, lo, hi, "yes" if a else "no", "yes" if b else "no"]
                for k, ((lo, hi), (a, b)) in enumerate(zip(self.intervals, self.open_ends, strict=True))]
        return table(["piece", "lower", "upper", "open below", "open above"], rows, self.headline())


@dataclass(frozen=True)
class ImpactRow:
    """One parameter's pull and impacts on the POI (Δμ̂ values; None where undefined)."""

    name: str
    bestfit: float
    postfit_error: float | None
    prefit_center: float | None
    prefit_error: float | None
    pull: float | None
    constraint: float | None
    hessian: float | None
    hessian_profiled: float | None
    prefit_up: float | None
    prefit_down: float | None
    postfit_up: float | None
    postfit_down: float | None


@dataclass(frozen=True)
class ImpactsResult:
    """Pulls and impacts on the POI, ranked by the largest |post-fit refit impact|.

    ``at_bound`` maps each parameter whose best fit lies on a bound to ``"lower"`` or
    ``"upper"``: its Hesse error is NaN, and the impacts that assume a parabolic minimum
    there are None (:mod:`ratiofactory.infer.nuisance`)."""

    poi: str
    poi_value: float
    poi_error: float
    rows: tuple[ImpactRow, ...]
    at_bound: Mapping[str, str] = field(default_factory=dict)

    def row(self, name: str) -> ImpactRow:
        """The row of parameter ``name``."""
        for row in self.rows:
            if row.name == name:
                return row
        raise InvalidFitSetup(f"no impact computed for {name!r}; have: {', '.join(r.name for r in self.rows)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary with stable keys."""
        return jsonable({
            "poi": self.poi, "poi_value": self.poi_value, "poi_error": self.poi_error,
            "rows": [dict(row.__dict__) for row in self.rows], "at_bound": dict(self.at_bound),
        })

    def notes(self) -> list[str]:
        """One line per parameter on a bound: which impacts are not given, and why."""
        lines = []
        side = self.at_bound.get(self.poi)
        if side:
            lines.append(f"{self.poi} = {fmt(self.poi_value)} lies on its {side} bound: no Hesse error, and the"
                         " Hessian impacts (hessian, hess.prof) are not defined there ('-'); the refit impacts"
                         f" are one-sided (0 where a shift pushes {self.poi} into its bound)")
        others = [f"{name} ({where})" for name, where in self.at_bound.items() if name != self.poi]
        if others:
            lines.append(f"on a bound: {', '.join(others)}: no post-fit error, so no constraint, post-fit or"
                         " Hessian impacts ('-'); the pre-fit refits are one-sided")
        return lines

    def __str__(self) -> str:
        rows = [[r.name, r.pull, r.constraint, r.hessian, r.hessian_profiled,
                 r.prefit_up, r.prefit_down, r.postfit_up, r.postfit_down] for r in self.rows]
        side = self.at_bound.get(self.poi)
        shown = f"(on its {side} bound)" if side else f"± {fmt(self.poi_error)}"
        title = f"Impacts on {self.poi} = {fmt(self.poi_value)} {shown}"
        headers = ["parameter", "pull", "constraint", "hessian", "hess.prof",
                   "pre+", "pre-", "post+", "post-"]
        return "\n".join([table(headers, rows, title), *self.notes()])
