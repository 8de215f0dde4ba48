"""Interpolation of multiplicative factors between α = −1 (``lo``), 0 (1) and +1 (``hi``).

The conventions are pyhf's and ROOT HistFactory's with α₀ = 1:

- ``code0``, piecewise linear: 1 + α(hi − 1) for α ≥ 0, 1 + α(1 − lo) for α < 0;
- ``code1``, exponential: hi^α for α ≥ 0, lo^(−α) for α < 0;
- ``code4``, exponential for |α| ≥ 1 and, inside, the polynomial 1 + Σ_{i=1..6} a_i α^i
  whose a_i match value, first and second derivative of the exponential at α = ±1.

``alpha`` is a scalar (a jax tracer under ``jax.jit``/``jax.vmap``); ``hi`` and ``lo``
are scalars (normsys) or arrays of any shape (per-event ratiosys g^±(x_i)). Everything is
branch-free (``xp.where``), finite and differentiable at every α, including 0 and ±1.
For ``code1`` and ``code4``, ``hi`` and ``lo`` must be > 0: the caller checks that.
At α = 0 the one-sided derivatives of code0 and code1 differ when hi·lo ≠ 1 (code0:
hi ≠ 2 − lo); there the gradient is the one of the α ≥ 0 side.

>>> float(interpolate("code1", 0.5, 1.21, 0.8))
1.1
>>> float(interpolate("code4", -2.0, 1.1, 0.9))
0.81
>>> round(float(interpolate("code4", 0.5, 1.1, 0.9)), 12) == round(interpolate_reference("code4", 0.5, 1.1, 0.9), 12)
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import InvalidModel

__all__ = ["CODES", "code4_weights", "interpolate", "interpolate_reference"]

CODES = ("code0", "code1", "code4")
"""The interpolation codes understood here."""


def interpolate(code: str, alpha: Any, hi: Any, lo: Any, xp: Any = np) -> Any:
    """The factor at ``alpha`` interpolating between ``lo`` (α = −1), 1 and ``hi`` (α = +1).

    >>> float(interpolate("code0", -0.5, 1.2, 0.7))
    0.85
    """
    if code == "code0":
        return 1 + alpha * xp.where(alpha >= 0, hi - 1, 1 - lo)
    if code == "code1":
        return _exponential(alpha, xp.log(hi), xp.log(lo), xp)
    if code == "code4":
        return _polynomial_exponential(alpha, hi, lo, xp)
    raise InvalidModel(f"unknown interpolation code {code!r}; expected one of {', '.join(CODES)}")


def _exponential(alpha: Any, log_hi: Any, log_lo: Any, xp: Any) -> Any:
    """hi^α for α ≥ 0, lo^(−α) for α < 0, as one exp of a selected exponent."""
    return xp.exp(xp.where(alpha >= 0, alpha * log_hi, -alpha * log_lo))


def _polynomial_exponential(alpha: Any, hi: Any, lo: Any, xp: Any) -> Any:
    """code4: the exponential outside |α| < 1, the sixth-order polynomial inside.

    Inside, 1 + Σ_m c_m(α) b_m with the per-event basis b = (hi − 1, lo − 1, hi ln hi,
    lo ln lo, hi ln²hi, lo ln²lo) and six scalar weights c_m(α) (:func:`code4_weights`).
    Both branches are finite everywhere, so the gradient through ``where`` is finite too.
    """
    log_hi, log_lo = xp.log(hi), xp.log(lo)
    c = code4_weights(alpha)
    inside = (
        1
        + c[0] * (hi - 1)
        + c[1] * (lo - 1)
        + hi * log_hi * (c[2] + c[4] * log_hi)
        + lo * log_lo * (c[3] + c[5] * log_lo)
    )
    outside = _exponential(alpha, log_hi, log_lo, xp)
    return xp.where(xp.abs(alpha) >= 1, outside, inside)


def code4_weights(alpha: Any) -> tuple[Any, ...]:
    """The weights c_m(α), m = 0..5, of the code4 polynomial on the basis
    (hi − 1, lo − 1, hi ln hi, lo ln lo, hi ln²hi, lo ln²lo).

    Splitting the polynomial P(α) = Σ a_i α^i into even and odd parts, each is fixed by
    its value, slope and curvature at α = 1, i.e. by the symmetric (S) and antisymmetric
    (D) combinations of the conditions at ±1:

        P = S0 E0 + S1 E1 + S2 E2 + D0 O0 + D1 O1 + D2 O2
        E0 = 3α² − 3α⁴ + α⁶,          O0 = (15α − 10α³ + 3α⁵)/8,
        E1 = (−9α² + 14α⁴ − 5α⁶)/8,   O1 = (−7α + 10α³ − 3α⁵)/8,
        E2 = α²(1 − α²)²/8,           O2 = α(1 − α²)²/8,

    with S0, D0 = (b0 ± b1)/2, S1, D1 = (b2 ± b3)/2 and S2, D2 = (b4 ± b5)/2.

    >>> [round(float(w), 12) for w in code4_weights(1.0)]
    [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    a2 = alpha * alpha
    one_minus_a2_squared = (1 - a2) * (1 - a2)
    even0 = a2 * (3 + a2 * (-3 + a2))
    even1 = a2 * (-9 + a2 * (14 - 5 * a2)) / 8
    even2 = a2 * one_minus_a2_squared / 8
    odd0 = alpha * (15 + a2 * (-10 + 3 * a2)) / 8
    odd1 = alpha * (-7 + a2 * (10 - 3 * a2)) / 8
    odd2 = alpha * one_minus_a2_squared / 8
    return (
        (even0 + odd0) / 2,
        (even0 - odd0) / 2,
        (even1 + odd1) / 2,
        (even1 - odd1) / 2,
        (even2 + odd2) / 2,
        (even2 - odd2) / 2,
    )


# --- slow references -------------------------------------------------------------------


def interpolate_reference(code: str, alpha: float, hi: float, lo: float) -> float:
    """The same factor for one scalar (α, hi, lo), written for clarity, not speed.

    For code4 the polynomial coefficients come from solving the 6×6 system of matching
    conditions with :func:`numpy.linalg.solve` on every call.

    >>> interpolate_reference("code4", 1.0, 1.1, 0.9)
    1.1
    """
    alpha, hi, lo = float(alpha), float(hi), float(lo)
    if code not in CODES:
        raise InvalidModel(
            f"unknown interpolation code {code!r}; expected one of {', '.join(CODES)}"
        )
    if code == "code0":
        return 1 + alpha * (hi - 1) if alpha >= 0 else 1 + alpha * (1 - lo)
    if hi <= 0 or lo <= 0:
        raise ValueError(f"{code} needs hi > 0 and lo > 0, got hi={hi}, lo={lo}")
    if code == "code1" or abs(alpha) >= 1:
        return hi**alpha if alpha >= 0 else lo ** (-alpha)
    coefficients = _code4_coefficients_reference(hi, lo)
    return 1 + sum(a * alpha**i for i, a in enumerate(coefficients, start=1))


def _code4_coefficients_reference(hi: float, lo: float) -> list[float]:
    """a_1..a_6 with P(α) = Σ a_i α^i matching 1 + P to hi^α at α = 1 and to lo^(−α) at
    α = −1 in value, first and second derivative."""

    def derivative_of_power(i: int, order: int, at: float) -> float:
        # d^order/dα^order α^i at α = at
        if order > i:
            return 0.0
        return math.factorial(i) / math.factorial(i - order) * at ** (i - order)

    # (point, derivative order, target): targets are derivatives of hi^α − 1 and lo^(−α) − 1
    conditions = [
        (1.0, 0, hi - 1),
        (-1.0, 0, lo - 1),
        (1.0, 1, hi * math.log(hi)),
        (-1.0, 1, -lo * math.log(lo)),
        (1.0, 2, hi * math.log(hi) ** 2),
        (-1.0, 2, lo * math.log(lo) ** 2),
    ]
    matrix = [
        [derivative_of_power(i, order, at) for i in range(1, 7)] for at, order, _ in conditions
    ]
    targets = [target for _, _, target in conditions]
    return [float(a) for a in np.linalg.solve(np.array(matrix), np.array(targets))]
