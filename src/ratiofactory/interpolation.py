"""Interpolation of multiplicative factors between α = −1 (``lo``), 0 (1) and +1 (``hi``).

The conventions are pyhf's and ROOT HistFactory's with α₀ = 1:

- ``code0``, piecewise linear: 1 + α(hi − 1) for α ≥ 0, 1 + α(1 − lo) for α < 0;
- ``code1``, exponential: hi^α for α ≥ 0, lo^(−α) for α < 0;
- ``code4``, exponential for |α| ≥ 1 and, inside, the polynomial 1 + Σ_{i=1..6} a_i α^i
  whose a_i match value, first and second derivative of the exponential at α = ±1.

``alpha`` is a scalar (a jax tracer under ``jax.jit``/``jax.vmap``); ``hi`` and ``lo``
are scalars (normsys) or arrays of any shape (per-event ratiosys g^±(x_i)). Everything is
branch-free (``xp.where``), finite and differentiable at every α, including 0 and ±1.
For ``code1`` and ``code4``, ``hi`` and ``lo`` must be > 0 (checked where the values
are concrete; the workspace checks them with their JSON pointers first).
At α = 0 the one-sided derivatives of code0 and code1 differ when hi·lo ≠ 1 (code0:
hi ≠ 2 − lo); there the gradient is the one of the α ≥ 0 side.

>>> float(interpolate("code1", 0.5, 1.21, 0.8))
1.1
>>> float(interpolate("code4", -2.0, 1.1, 0.9))
0.81
>>> abs(float(interpolate("code4", 0.5, 1.1, 0.9)) - interpolate_reference("code4", 0.5, 1.1, 0.9)) < 1e-15
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidModel

__all__ = [
    "CODES",
    "PreparedInterpolation",
    "code4_weight_slopes",
    "code4_weights",
    "interpolate",
    "interpolate_reference",
    "prepare_interpolation",
]

CODES = ("code0", "code1", "code4")
"""The interpolation codes understood here."""


def interpolate(code: str, alpha: Any, hi: Any, lo: Any, xp: Any = np) -> Any:
    """The factor at ``alpha`` interpolating between ``lo`` (α = −1), 1 and ``hi`` (α = +1).

    >>> float(interpolate("code0", -0.5, 1.2, 0.7))
    0.85

    To evaluate the same ``hi``, ``lo`` at many α (a fit), prepare them once with
    :func:`prepare_interpolation`: that computes their logarithms only once.
    """
    if xp is np and isinstance(hi, float) and isinstance(lo, float):  # a normsys, in every evaluation
        return _prepared_floats(code, hi, lo)(alpha)
    return prepare_interpolation(code, hi, lo, xp)(alpha)


@functools.lru_cache(maxsize=4096)
def _prepared_floats(code: str, hi: float, lo: float) -> PreparedInterpolation:
    return prepare_interpolation(code, hi, lo, np)


@dataclass(frozen=True, eq=False)
class PreparedInterpolation:
    """An interpolation code with the α-independent arrays it needs, ready for any α.

    Calling it with α gives the factor. On jax the derivative in α is one fused
    per-event expression (a custom JVP) rather than the autodiff of the formula, which
    makes reverse-mode gradients several times faster; the factor is differentiable in
    α only (not in hi, lo).

    >>> prepared = prepare_interpolation("code4", np.array([1.1, 0.8]), np.array([0.9, 1.3]))
    >>> prepared(-2.0)
    array([0.81, 1.69])
    """

    code: str
    arrays: tuple[Any, ...]
    xp: Any

    def __call__(self, alpha: Any) -> Any:
        if self.xp.__name__.startswith("jax"):
            return _jax_factor(self.code)(alpha, self.arrays)
        return _CODES[self.code].value(alpha, self.arrays, self.xp)


def prepare_interpolation(code: str, hi: Any, lo: Any, xp: Any = np) -> PreparedInterpolation:
    """Prepare ``code`` for the factors ``hi`` (α = +1) and ``lo`` (α = −1), scalars or
    arrays of any shape (broadcast together). Code1 and code4 need hi, lo > 0: where the
    values are concrete (not jax tracers) a violation raises :class:`InvalidModel`.

    Per systematic this keeps hi − 1, 1 − lo (code0); ln hi, ln lo (code1); or hi, lo,
    ln hi, ln lo (code4).
    """
    if code not in _CODES:
        raise InvalidModel(
            f"unknown interpolation code {code!r}; expected one of {', '.join(CODES)}"
        )
    hi, lo = xp.asarray(hi), xp.asarray(lo)
    if code != "code0":
        _check_positive(code, hi, "hi")
        _check_positive(code, lo, "lo")
    return PreparedInterpolation(code, _CODES[code].arrays(hi, lo, xp), xp)


def _check_positive(code: str, values: Any, name: str) -> None:
    try:
        concrete = np.asarray(values)
    except TypeError:  # a jax tracer: the caller has checked the values
        return
    bad = ~(concrete > 0) | ~np.isfinite(concrete)
    if np.any(bad):
        first = np.flatnonzero(bad)[0]
        raise InvalidModel(
            f"{code} interpolation needs finite {name} > 0; {name}[{first}] = {concrete.ravel()[first]}"
        )


# --- the codes: α-independent arrays, value and slope d(value)/dα -----------------------


@dataclass(frozen=True)
class _Code:
    arrays: Callable[[Any, Any, Any], tuple[Any, ...]]
    value: Callable[[Any, tuple[Any, ...], Any], Any]
    slope: Callable[[Any, tuple[Any, ...], Any, Any], Any]


def _code0_slope(alpha: Any, arrays: tuple[Any, ...], value: Any, xp: Any) -> Any:
    hi_minus_1, one_minus_lo = arrays
    return xp.where(alpha >= 0, hi_minus_1, one_minus_lo)


def _code0_value(alpha: Any, arrays: tuple[Any, ...], xp: Any) -> Any:
    """1 + α(hi − 1) for α ≥ 0, 1 + α(1 − lo) for α < 0."""
    return 1 + alpha * _code0_slope(alpha, arrays, None, xp)


def _code1_value(alpha: Any, arrays: tuple[Any, ...], xp: Any) -> Any:
    """hi^α for α ≥ 0, lo^(−α) for α < 0, as one exp of a selected exponent."""
    log_hi, log_lo = arrays[-2:]
    return xp.exp(xp.where(alpha >= 0, alpha * log_hi, -alpha * log_lo))


def _code1_slope(alpha: Any, arrays: tuple[Any, ...], value: Any, xp: Any) -> Any:
    log_hi, log_lo = arrays[-2:]
    return value * xp.where(alpha >= 0, log_hi, -log_lo)


def _code4_polynomial(weights: tuple[Any, ...], arrays: tuple[Any, ...]) -> Any:
    """Σ_m w_m b_m on the basis b = (hi − 1, lo − 1, hi ln hi, lo ln lo, hi ln²hi, lo ln²lo)."""
    hi, lo, log_hi, log_lo = arrays
    w = weights
    return (
        w[0] * (hi - 1)
        + w[1] * (lo - 1)
        + hi * log_hi * (w[2] + w[4] * log_hi)
        + lo * log_lo * (w[3] + w[5] * log_lo)
    )


def _outside(alpha: Any, xp: Any) -> bool | None:
    """Whether a concrete numpy α is in code4's exponential branch (|α| ≥ 1); None where
    both branches must be computed (jax, or several α at once)."""
    if xp is np and np.ndim(alpha) == 0:
        return bool(abs(alpha) >= 1)
    return None


def _code4_value(alpha: Any, arrays: tuple[Any, ...], xp: Any) -> Any:
    """code4: the exponential for |α| ≥ 1, 1 + Σ_m c_m(α) b_m inside (both branches are
    finite everywhere, so the gradient through ``where`` is finite too; a scalar α on
    numpy computes only its own branch)."""
    outside = _outside(alpha, xp)
    if outside is None:
        inside = 1 + _code4_polynomial(code4_weights(alpha), arrays)
        return xp.where(xp.abs(alpha) >= 1, _code1_value(alpha, arrays, xp), inside)
    if outside:
        return _code1_value(alpha, arrays, xp)
    return 1 + _code4_polynomial(code4_weights(alpha), arrays)


def _code4_slope(alpha: Any, arrays: tuple[Any, ...], value: Any, xp: Any) -> Any:
    outside = _outside(alpha, xp)
    if outside is None:
        inside = _code4_polynomial(code4_weight_slopes(alpha), arrays)
        return xp.where(xp.abs(alpha) >= 1, _code1_slope(alpha, arrays, value, xp), inside)
    if outside:
        return _code1_slope(alpha, arrays, value, xp)
    return _code4_polynomial(code4_weight_slopes(alpha), arrays)


_CODES = {
    "code0": _Code(lambda hi, lo, xp: (hi - 1, 1 - lo), _code0_value, _code0_slope),
    "code1": _Code(lambda hi, lo, xp: (xp.log(hi), xp.log(lo)), _code1_value, _code1_slope),
    "code4": _Code(lambda hi, lo, xp: (hi, lo, xp.log(hi), xp.log(lo)), _code4_value, _code4_slope),
}


@functools.cache
def _jax_factor(code: str) -> Callable[[Any, tuple[Any, ...]], Any]:
    """``code``'s value as a jax function of (α, arrays) whose JVP in α is its slope."""
    import jax
    import jax.numpy as jnp
    from jax.custom_derivatives import SymbolicZero

    spec = _CODES[code]

    @jax.custom_jvp
    def factor(alpha: Any, arrays: tuple[Any, ...]) -> Any:
        return spec.value(alpha, arrays, jnp)

    def factor_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[Any, Any]:
        alpha, arrays = primals
        alpha_dot, arrays_dot = tangents
        if not all(isinstance(t, SymbolicZero) for t in arrays_dot):
            raise NotImplementedError("interpolation factors are differentiable in alpha only")
        value = factor(alpha, arrays)
        if isinstance(alpha_dot, SymbolicZero):
            return value, jnp.zeros_like(value)
        return value, spec.slope(alpha, arrays, value, jnp) * alpha_dot

    factor.defjvp(factor_jvp, symbolic_zeros=True)
    return factor


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
    return _hi_lo_weights((even0, even1, even2), (odd0, odd1, odd2))


def _hi_lo_weights(even: tuple[Any, ...], odd: tuple[Any, ...]) -> tuple[Any, ...]:
    """Weights of (hi − 1, lo − 1, hi ln hi, lo ln lo, hi ln²hi, lo ln²lo) from the even and
    odd basis polynomials: hi terms (e + o)/2, lo terms (e − o)/2."""
    return tuple(w for e, o in zip(even, odd, strict=True) for w in ((e + o) / 2, (e - o) / 2))


def code4_weight_slopes(alpha: Any) -> tuple[Any, ...]:
    """The derivatives dc_m/dα of :func:`code4_weights`.

    >>> [round(float(w), 12) for w in code4_weight_slopes(1.0)]
    [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    """
    a2 = alpha * alpha
    even0 = alpha * (6 + a2 * (-12 + 6 * a2))
    even1 = alpha * (-18 + a2 * (56 - 30 * a2)) / 8
    even2 = alpha * (2 + a2 * (-8 + 6 * a2)) / 8
    odd0 = (15 + a2 * (-30 + 15 * a2)) / 8
    odd1 = (-7 + a2 * (30 - 15 * a2)) / 8
    odd2 = (1 + a2 * (-6 + 5 * a2)) / 8
    return _hi_lo_weights((even0, even1, even2), (odd0, odd1, odd2))


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
