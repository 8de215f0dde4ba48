"""The spurious-signal nuisance parameter of a channel's ratio-model uncertainty.

A trained density ratio is an estimate: an ensemble of networks trained on
Poisson(1)-bootstrapped copies of the training data gives its mean (used) and the
spread of that mean. The ATLAS NSBI method propagates the spread as a *spurious
signal*: every coefficient f_j(μ) of the channel becomes

    f_j(μ) → f_j(μ + α · Δμ̂(μ)),     α ~ Gauss(0, 1),

where Δμ̂(μ) is the spread of the best-fit μ̂ on Asimov data of μ when the ratio models
vary within their ensemble (:mod:`ratiofactory.ensemble_uncertainty` computes it). An
unbinned channel declares it with

    "spurious_signal": {"name": "alpha_ss", "parameter": "mu",
                        "grid": [0.0, 0.5, 1.0, 2.0], "delta": [0.08, 0.09, 0.1, 0.12],
                        "interpolation": "pchip"}

``name`` is the nuisance parameter α (standard normal, like a ``normsys``), ``parameter``
the one whose value the channel's ``formula`` and ``normfactor`` coefficients see
shifted, ``grid``/``delta`` the table of Δμ̂. Between grid points Δμ̂ is the
piecewise-cubic Hermite interpolant with Fritsch–Carlson (Fritsch–Butland) slopes
("pchip"): continuous with a continuous first derivative, monotone wherever the table
is, never overshooting it (so never negative); outside the grid it is the end value.

>>> table = SpuriousSignal("alpha_ss", "mu", [0.0, 1.0, 2.0, 4.0], [0.1, 0.2, 0.2, 0.5])
>>> tuple(round(float(table.delta_at(m)), 6) for m in (-1.0, 0.5, 1.0, 1.5, 3.0, 9.0))
(0.1, 0.16875, 0.2, 0.2, 0.2875, 0.5)
>>> float(table.shifted(1.0, 2.0))   # mu + alpha * delta(mu)
1.4
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidSpecification

__all__ = ["INTERPOLATIONS", "SpuriousSignal", "pchip_slopes", "spurious_signal_of"]

INTERPOLATIONS = ("pchip",)
"""Interpolations of the Δμ̂ table (monotone piecewise-cubic Hermite)."""


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The node derivatives of the monotone piecewise-cubic Hermite interpolant.

    Interior nodes: 0 where the secants on both sides differ in sign or one is zero,
    else the weighted harmonic mean of the secants (weights 2h_k + h_{k−1} and
    h_k + 2h_{k−1}); end nodes: the three-point one-sided estimate, set to 0 if its sign
    differs from the end secant's and to 3× the end secant if it exceeds that in size
    while the secants change sign (Fritsch & Butland 1984; Moler, *Numerical Computing
    with MATLAB*, ch. 3). Two nodes: both slopes are the secant.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    h = np.diff(x)
    secant = np.diff(y) / h
    if len(x) == 2:
        return np.array([secant[0], secant[0]])
    slopes = np.zeros(len(x))
    left, right = secant[:-1], secant[1:]
    w_left, w_right = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
    same_sign = (np.sign(left) == np.sign(right)) & (left != 0) & (right != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w_left + w_right) / (w_left / left + w_right / right)
    slopes[1:-1] = np.where(same_sign, harmonic, 0.0)
    slopes[0] = _end_slope(h[0], h[1], secant[0], secant[1])
    slopes[-1] = _end_slope(h[-1], h[-2], secant[-1], secant[-2])
    return slopes


def _end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > 3 * abs(m0):
        return 3 * m0
    return float(d)


@dataclass(frozen=True)
class SpuriousSignal:
    """A channel's spurious-signal table and nuisance parameter (see the module doc)."""

    name: str
    parameter: str
    grid: Sequence[float]
    delta: Sequence[float]
    interpolation: str = "pchip"
    slopes: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        grid, delta = np.asarray(self.grid, float), np.asarray(self.delta, float)
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "delta", delta)
        object.__setattr__(self, "slopes", pchip_slopes(grid, delta))

    def delta_at(self, mu: Any, xp: Any = np) -> Any:
        """Δμ̂(μ), interpolated (constant beyond the grid); differentiable on jax."""
        grid, delta, slopes = (xp.asarray(a) for a in (self.grid, self.delta, self.slopes))
        inside = xp.clip(mu, grid[0], grid[-1])
        k = xp.clip(xp.searchsorted(grid, inside, side="right") - 1, 0, len(self.grid) - 2)
        h = grid[k + 1] - grid[k]
        t = (inside - grid[k]) / h
        t2, t3 = t * t, t * t * t
        return (
            (2 * t3 - 3 * t2 + 1) * delta[k]
            + (t3 - 2 * t2 + t) * h * slopes[k]
            + (-2 * t3 + 3 * t2) * delta[k + 1]
            + (t3 - t2) * h * slopes[k + 1]
        )

    def shifted(self, mu: Any, alpha: Any, xp: Any = np) -> Any:
        """μ + α · Δμ̂(μ): the value the channel's coefficients see for ``parameter``."""
        return mu + alpha * self.delta_at(mu, xp)

    def to_spec(self) -> dict[str, Any]:
        """The workspace entry (``unbinned_channels[i]["spurious_signal"]``)."""
        return {"name": self.name, "parameter": self.parameter, "grid": [float(v) for v in self.grid],
                "delta": [float(v) for v in self.delta], "interpolation": self.interpolation}


def spurious_signal_of(channel: Mapping[str, Any], pointer: str) -> SpuriousSignal | None:
    """The channel's ``spurious_signal`` entry, checked (grid strictly increasing, one
    finite Δμ̂ ≥ 0 per grid point), or None."""
    entry = channel.get("spurious_signal")
    if entry is None:
        return None
    where = f"{pointer}/spurious_signal"
    grid, delta = entry["grid"], entry["delta"]
    if len(grid) != len(delta):
        raise InvalidSpecification(f"{len(delta)} values of delta for {len(grid)} grid points", f"{where}/delta")
    steps = np.diff(np.asarray(grid, float))
    if np.any(steps <= 0):
        first = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise InvalidSpecification("the grid must be strictly increasing", f"{where}/grid/{first}")
    return SpuriousSignal(entry["name"], entry["parameter"], grid, delta, entry.get("interpolation", "pchip"))
