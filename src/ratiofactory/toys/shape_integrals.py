"""Reference-sample integrals of per-event shape factors, precomputed once.

With ``shape_normalisation: "reference"`` the likelihood divides each sample's shape
systematics by ``N_j(α) = Σ_i w_i^ref r_j(x_i) Π_k g_jk(x_i, α_k)``, a sum over the whole
reference sample. It does not depend on the toy, only on α, and it is computed here
from moments of the reference sample so that its cost per evaluation does not grow with
the sample:

* every interpolation code is, on each of its α regions, a linear combination of
  α-functions ``φ_m(α)`` with per-event coefficients ``B_im``:

  - code4 inside ``|α| < 1``: ``1 + Σ_m c_m(α) b_im`` with the weights of
    :func:`~ratiofactory.interpolation.code4_weights` on the basis ``b`` = (hi − 1,
    lo − 1, hi ln hi, lo ln lo, hi ln²hi, lo ln²lo) — exact, seven terms;
  - code0 on either side of 0: ``1 + α (hi − 1)`` or ``1 + α (1 − lo)`` — exact;
  - exponential branches (code4 for ``|α| ≥ 1``, code1): ``hi^α = Σ_n (α − a)^n/n! ·
    hi^a ln^n hi``, the Taylor series about the middle ``a`` of the α range that the fit
    can reach on that side (the parameter's bounds), with as many terms as make the
    remainder below 1e-15 relative for every event (``|α − a| · max_i |ln hi_i|`` decides);

* the product over a sample's systematics is a tensor product, so
  ``N_j(α) = Σ T_{m1…mK} Π_k φ_{m_k}(α_k)`` with the moment tensor
  ``T = Σ_i w_i^ref r_ij ⊗_k B_ik`` summed once over the reference sample.

Every α-function is a polynomial in ``t = ±α − a`` on its region (``a`` = 0 but for the
Taylor series), so N_j(α) is, per combination of the systematics' regions, a polynomial
in the t_k: :func:`polynomial_pieces` gives its coefficients (the RooFit export writes
them as a formula of the α's).

The tensor has ``Π_k (number of α-functions of systematic k)`` entries: a few dozen for
one systematic, a few thousand for two. Where it would exceed :data:`MAX_TENSOR` (many
shape systematics on one sample, or an exponential branch needing more than
:data:`MAX_TERMS` terms) :func:`build` returns None and the caller sums over the
reference sample instead (still exact, cost proportional to the sample).

>>> rng = np.random.default_rng(0)
>>> hi, lo, w = rng.uniform(0.8, 1.3, 500), rng.uniform(0.7, 1.2, 500), rng.uniform(0, 1, 500)
>>> from ratiofactory.interpolation import interpolate, prepare_interpolation
>>> integral = build(w, [("code4", prepare_interpolation("code4", hi, lo).arrays, (-5.0, 5.0))], np)
>>> all(abs(float(integral([a])) - float(np.sum(w * interpolate("code4", a, hi, lo)))) < 1e-12 * np.sum(w)
...     for a in (-4.3, -1.0, -0.2, 0.0, 0.7, 1.0, 2.5, 5.0))
True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.polynomial import Polynomial

from ..interpolation import code4_weights

__all__ = ["MAX_TENSOR", "MAX_TERMS", "Interval", "PolynomialPiece", "ShapeIntegral", "build", "polynomial_pieces"]

MAX_TENSOR = 20_000
"""Largest moment tensor (entries) per sample; beyond it the integral is summed per event."""
MAX_TERMS = 60
"""Most Taylor terms of an exponential branch; beyond it the integral is summed per event."""
_RELATIVE_REMAINDER = 1e-15


@dataclass(frozen=True)
class Interval:
    """An α region: ``low < α < high``, ``≤`` on the sides marked closed; infinite ends open."""

    low: float = -math.inf
    high: float = math.inf
    closed_low: bool = False
    closed_high: bool = False

    def contains(self, alpha: Any, xp: Any = np) -> Any:
        """Whether α (a number or array) lies in the interval."""
        conditions = []
        if self.low > -math.inf:
            conditions.append(alpha >= self.low if self.closed_low else alpha > self.low)
        if self.high < math.inf:
            conditions.append(alpha <= self.high if self.closed_high else alpha < self.high)
        return conditions[0] if len(conditions) == 1 else conditions[0] & conditions[1]


@dataclass(frozen=True)
class _Piece:
    """One α region of a systematic: the α-functions ``functions(α)`` (an array of m
    values) where ``interval`` contains α, the per-event coefficients ``(N, m)``, and the
    same functions as polynomials in ``t = sign·α − centre``: ``polynomials`` (m, degree + 1)."""

    interval: Interval
    functions: Callable[[Any, Any], list[Any]]
    coefficients: np.ndarray
    polynomials: np.ndarray
    sign: float = 1.0
    centre: float = 0.0


def _taylor_terms(half_width: float, max_log: float) -> int | None:
    """Terms M + 1 of the series of e^(t ln h) about the centre, |t − centre| ≤ half_width,
    with remainder x^(M+1)/(M+1)! e^(2x) < 1e-15 for x = half_width · max |ln h| (the e^(2x):
    the remainder relative to the smallest term e^(−x)); None if more than MAX_TERMS."""
    x = half_width * max_log
    for m in range(MAX_TERMS):
        if x ** (m + 1) / math.factorial(m + 1) * math.exp(2 * x) < _RELATIVE_REMAINDER:
            return m + 1
    return None


def _exponential_piece(log_factor: np.ndarray, sign: float, start: float, end: float,
                       interval: Interval) -> _Piece | bool | None:
    """factor^(sign·α) for sign·α in [start, end] as a Taylor series about the middle.
    Returns False if the region cannot be reached (end ≤ start: nothing to integrate) and
    None if the series would need too many terms."""
    if end < start:
        return False
    centre, half = 0.5 * (start + end), 0.5 * (end - start)
    n_terms = _taylor_terms(half, float(np.max(np.abs(log_factor), initial=0.0)))
    if n_terms is None:
        return None
    base = np.exp(centre * log_factor)
    coefficients = np.stack([base * log_factor**n for n in range(n_terms)], axis=1)
    inverse_factorials = np.array([1.0 / math.factorial(n) for n in range(n_terms)])

    def functions(alpha: Any, xp: Any) -> Any:
        """(α − a)^n / n!, n = 0 … M (a few array operations, whatever M)."""
        t = sign * alpha - centre
        return _powers(t, n_terms, xp) * inverse_factorials

    return _Piece(interval, functions, coefficients, np.diag(inverse_factorials), sign, centre)


def _powers(t: Any, n: int, xp: Any) -> Any:
    """[1, t, t², …, t^(n−1)] by doubling ([1…t^(k−1)] then the same times t^k): a few
    products whatever n, smooth derivatives of any order (``t ** np.arange(n)`` has a NaN
    second derivative at t = 0 on jax; cumprod's reverse mode compiles slowly)."""
    powers, step = xp.ones(1), t
    while powers.shape[0] < n:
        powers = xp.concatenate([powers, powers * step])
        step = step * step
    return powers[:n]


def _code4_inside(hi: np.ndarray, lo: np.ndarray, log_hi: np.ndarray, log_lo: np.ndarray) -> _Piece:
    basis = np.stack([np.ones_like(hi), hi - 1, lo - 1, hi * log_hi, lo * log_lo, hi * log_hi**2, lo * log_lo**2],
                     axis=1)
    return _Piece(Interval(-1.0, 1.0), lambda a, xp: _stack(xp, [1.0, *code4_weights(a)]), basis,
                  _CODE4_POLYNOMIALS)


def _polynomial_rows(polynomials: Sequence[Polynomial], degree: int) -> np.ndarray:
    """The coefficients of ``polynomials`` (powers 0 … degree) as rows of a matrix."""
    rows = np.zeros((len(polynomials), degree + 1))
    for row, polynomial in zip(rows, polynomials, strict=True):
        row[: polynomial.coef.size] = polynomial.coef
    return rows


# the code4 α-functions [1, c_0(α) … c_5(α)] in powers of α: code4_weights evaluated on the
# polynomial α itself (its coefficients are multiples of 1/16, exact in floating point)
_CODE4_POLYNOMIALS = _polynomial_rows([Polynomial([1.0]), *code4_weights(Polynomial([0.0, 1.0]))], 6)
_LINEAR = np.eye(2)  # code0: [1, α]


def _stack(xp: Any, values: list[Any]) -> Any:
    """Scalars (numbers or 0-d arrays) as one float64 array."""
    return xp.stack([xp.asarray(v, dtype=xp.float64) * xp.ones(()) for v in values])


def _pieces(code: str, arrays: Sequence[np.ndarray], bounds: tuple[float, float]) -> list[_Piece] | None:
    """The α regions of one systematic over the reachable α range ``bounds``; ``arrays`` as
    :func:`~ratiofactory.interpolation.prepare_interpolation` keeps them (code0: hi − 1,
    1 − lo; code1: ln hi, ln lo; code4: hi, lo, ln hi, ln lo), so that the integral sees the
    very numbers the likelihood does."""
    a_lo, a_hi = float(bounds[0]), float(bounds[1])
    arrays = [np.asarray(a, float) for a in arrays]
    if code == "code0":
        up, down = arrays
        ones = np.ones_like(up)
        return [_Piece(Interval(0.0, closed_low=True), lambda a, xp: _stack(xp, [1.0, a]),
                       np.stack([ones, up], axis=1), _LINEAR),
                _Piece(Interval(high=0.0), lambda a, xp: _stack(xp, [1.0, a]), np.stack([ones, down], axis=1), _LINEAR)]
    log_hi, log_lo = arrays[-2:]
    if code == "code1":
        sides = [_exponential_piece(log_hi, 1.0, 0.0, max(a_hi, 0.0), Interval(0.0, closed_low=True)),
                 _exponential_piece(log_lo, -1.0, 0.0, max(-a_lo, 0.0), Interval(high=0.0))]
        pieces: list[_Piece] = []
    else:  # code4 (the codes are checked when the workspace is compiled)
        sides = [_exponential_piece(log_hi, 1.0, 1.0, a_hi, Interval(1.0, closed_low=True)),
                 _exponential_piece(log_lo, -1.0, 1.0, -a_lo, Interval(high=-1.0, closed_high=True))]
        pieces = [_code4_inside(*arrays)]
    if any(side is None for side in sides):
        return None
    return pieces + [side for side in sides if isinstance(side, _Piece)]


class ShapeIntegral:
    """``N(α) = Σ_i w_i Π_k g_k(x_i, α_k)`` from its moment tensor; call with the α of the
    systematics (in the order given to :func:`build`)."""

    def __init__(self, tensor: np.ndarray, systematics: list[list[_Piece]], xp: Any) -> None:
        self.tensor = xp.asarray(tensor)
        self.systematics = systematics
        self.xp = xp

    def functions(self, alpha: Any, pieces: list[_Piece]) -> Any:
        """The α-functions of one systematic, those of inactive regions set to 0."""
        xp = self.xp
        return xp.concatenate([xp.where(piece.interval.contains(alpha, xp), piece.functions(alpha, xp), 0.0)
                               for piece in pieces])

    def __call__(self, alphas: Sequence[Any], tensor: Any = None) -> Any:
        """N(α); ``tensor``: :attr:`tensor` passed as an argument (under jit: not a constant)."""
        xp = self.xp
        result = self.tensor if tensor is None else tensor
        for alpha, pieces in zip(reversed(list(alphas)), reversed(self.systematics), strict=True):
            result = xp.tensordot(result, self.functions(alpha, pieces), axes=1)
        return result


def build(weights: np.ndarray, systematics: Sequence[tuple[str, Sequence[np.ndarray], tuple[float, float]]],
          xp: Any, *, chunk: int = 4096) -> ShapeIntegral | None:
    """The integral ``Σ_i weights_i Π_k g_k(x_i, α_k)`` for ``systematics`` given as
    ``(code, arrays, (α_min, α_max))`` per systematic, ``arrays`` the per-event arrays of
    :func:`~ratiofactory.interpolation.prepare_interpolation`; None if its moment tensor
    would be too large (see the module docstring)."""
    all_pieces = []
    for code, arrays, bounds in systematics:
        pieces = _pieces(code, arrays, bounds)
        if pieces is None:
            return None
        all_pieces.append(pieces)
    bases = [np.concatenate([p.coefficients for p in pieces], axis=1) for pieces in all_pieces]
    sizes = [b.shape[1] for b in bases]
    if math.prod(sizes) > MAX_TENSOR:
        return None
    weights = np.asarray(weights, float)
    tensor = np.zeros(math.prod(sizes))
    for first in range(0, weights.size, chunk):
        rows = slice(first, first + chunk)
        outer = weights[rows, None]
        for basis in bases[:-1]:
            outer = (outer[:, :, None] * basis[rows, None, :]).reshape(outer.shape[0], -1)
        tensor += (outer.T @ bases[-1][rows]).reshape(-1)
    # the integral keeps the α-functions only, not the per-event coefficients (memory)
    light = [[replace(piece, coefficients=np.zeros((0, 0))) for piece in pieces] for pieces in all_pieces]
    return ShapeIntegral(tensor.reshape(sizes), light, xp)


@dataclass(frozen=True)
class PolynomialPiece:
    """N(α) where every α_k lies in ``intervals[k]``: ``Σ_p coefficients[p_1, …, p_K] Π_k t_k^p_k``
    with ``t_k = signs[k]·α_k − centres[k]``."""

    intervals: tuple[Interval, ...]
    signs: tuple[float, ...]
    centres: tuple[float, ...]
    coefficients: np.ndarray

    def __call__(self, alphas: Sequence[float]) -> float:
        """The polynomial at ``alphas`` (whether or not they lie in the intervals)."""
        result = self.coefficients
        for alpha, sign, centre in zip(reversed(list(alphas)), reversed(self.signs), reversed(self.centres),
                                       strict=True):
            result = np.polynomial.polynomial.polyval(sign * alpha - centre, result, tensor=False)
        return float(result)


def polynomial_pieces(integral: ShapeIntegral) -> list[PolynomialPiece]:
    """``integral`` as one polynomial per combination of its systematics' α regions: the
    moment tensor's block of those regions contracted with the α-functions' polynomial
    coefficients (no approximation beyond the Taylor series the integral already is).

    >>> rng = np.random.default_rng(1)
    >>> hi, lo, w = rng.uniform(0.8, 1.3, 200), rng.uniform(0.7, 1.2, 200), rng.uniform(0, 1, 200)
    >>> from ratiofactory.interpolation import prepare_interpolation
    >>> integral = build(w, [("code4", prepare_interpolation("code4", hi, lo).arrays, (-3.0, 3.0))], np)
    >>> pieces = polynomial_pieces(integral)
    >>> [(p.intervals[0].low, p.intervals[0].high, p.coefficients.size) for p in pieces]
    [(-1.0, 1.0, 7), (1.0, inf, 12), (-inf, -1.0, 13)]
    >>> all(abs(p([a]) - float(integral([a]))) < 1e-13 * float(integral([a]))
    ...     for a, p in ((0.4, pieces[0]), (2.2, pieces[1]), (-3.0, pieces[2])))
    True
    """
    offsets = [np.cumsum([0] + [piece.polynomials.shape[0] for piece in pieces]) for pieces in integral.systematics]
    tensor = np.asarray(integral.tensor)
    found = []
    for choice in itertools.product(*[range(len(pieces)) for pieces in integral.systematics]):
        chosen = [pieces[c] for pieces, c in zip(integral.systematics, choice, strict=True)]
        block = tensor[tuple(slice(o[c], o[c + 1]) for o, c in zip(offsets, choice, strict=True))]
        for axis, piece in enumerate(chosen):  # α-function index → power of t on this axis
            block = np.moveaxis(np.tensordot(block, piece.polynomials, axes=([axis], [0])), -1, axis)
        found.append(PolynomialPiece(tuple(p.interval for p in chosen), tuple(p.sign for p in chosen),
                                     tuple(p.centre for p in chosen), block))
    return found
