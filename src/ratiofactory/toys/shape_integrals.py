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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..interpolation import code4_weights

__all__ = ["MAX_TENSOR", "MAX_TERMS", "ShapeIntegral", "build"]

MAX_TENSOR = 20_000
"""Largest moment tensor (entries) per sample; beyond it the integral is summed per event."""
MAX_TERMS = 60
"""Most Taylor terms of an exponential branch; beyond it the integral is summed per event."""
_RELATIVE_REMAINDER = 1e-15


@dataclass(frozen=True)
class _Piece:
    """One α region of a systematic: ``region(α)`` True where it applies, the α-functions
    ``functions(α)`` (an array of m values) and the per-event coefficients ``(N, m)``."""

    region: Callable[[Any, Any], Any]
    functions: Callable[[Any, Any], list[Any]]
    coefficients: np.ndarray


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
                       region: Callable[[Any, Any], Any]) -> _Piece | bool | None:
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

    return _Piece(region, functions, coefficients)


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
    return _Piece(lambda a, xp: xp.abs(a) < 1, lambda a, xp: _stack(xp, [1.0, *code4_weights(a)]), basis)


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
        return [_Piece(lambda a, xp: a >= 0, lambda a, xp: _stack(xp, [1.0, a]), np.stack([ones, up], axis=1)),
                _Piece(lambda a, xp: a < 0, lambda a, xp: _stack(xp, [1.0, a]), np.stack([ones, down], axis=1))]
    log_hi, log_lo = arrays[-2:]
    if code == "code1":
        sides = [_exponential_piece(log_hi, 1.0, 0.0, max(a_hi, 0.0), lambda a, xp: a >= 0),
                 _exponential_piece(log_lo, -1.0, 0.0, max(-a_lo, 0.0), lambda a, xp: a < 0)]
        pieces: list[_Piece] = []
    else:  # code4 (the codes are checked when the workspace is compiled)
        sides = [_exponential_piece(log_hi, 1.0, 1.0, a_hi, lambda a, xp: a >= 1),
                 _exponential_piece(log_lo, -1.0, 1.0, -a_lo, lambda a, xp: a <= -1)]
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
        return xp.concatenate([xp.where(piece.region(alpha, xp), piece.functions(alpha, xp), 0.0) for piece in pieces])

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
