"""``shape_normalisation: "reference"`` in RooFit: N_j(0)/N_j(α) as a formula of the α's.

With ``"reference"`` each sample's coefficient in s(x;θ) is multiplied by N_j(0)/N_j(α),
N_j(α) = Σ_i w_i^ref r_j(x_i) Π_k g_jk(x_i, α_k) summed over the reference sample. That sum
is not written per event: :mod:`ratiofactory.toys.shape_integrals` has it, to ~1e-15
relative over the parameters' bounds, as one polynomial per combination of the
systematics' α regions (code4 inside |α| < 1: degree 6 in α; the exponential branches:
Taylor series in ±α − a about the middle a of the reachable range). The export writes
those polynomials (Horner form, coefficients as ``repr`` of the float64 values) into one
RooFormulaVar ``<channel>_<sample>_reference_integral`` with a region selector per piece;
outside the α bounds of the export (the model's, which the RooRealVars get) it is NaN
(RooFit flags the evaluation): a RooFit user who widens an α range must export again with
those bounds in the workspace's measurement.

>>> import numpy as np
>>> from ratiofactory.toys.shape_integrals import Interval, PolynomialPiece
>>> inside = PolynomialPiece((Interval(-1.0, 1.0),), (1.0,), (0.0,), np.array([1.0, 0.5, 0.25]))
>>> integral_formula([inside])
'(((@0 > -1.0) && (@0 < 1.0)) ? (1.0 + @0*(0.5 + @0*0.25)) : TMath::QuietNaN())'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..compile import CompiledSample, UnbinnedChannel
from ..interpolation import prepare_interpolation
from ..toys import shape_integrals
from ..toys.shape_integrals import Interval, PolynomialPiece
from ._root import ExportError
from .parameters import RooParameters

__all__ = ["integral_formula", "reference_integral", "shape_renormalisation"]


def reference_integral(channel: UnbinnedChannel, sample: CompiledSample, ratio: np.ndarray,
                       shapes: Sequence[tuple[np.ndarray, np.ndarray]],
                       bounds: Sequence[tuple[float, float]]) -> shape_integrals.ShapeIntegral:
    """N_j(α) of ``sample`` from the likelihood's own arrays (``ratio`` and ``shapes`` = (g⁺, g⁻)
    per systematic, on observed then reference events) over the α ``bounds``."""
    ref = slice(channel.n_observed, channel.n_events)
    systematics = [(m.code, prepare_interpolation(m.code, hi[ref], lo[ref]).arrays, (float(b[0]), float(b[1])))
                   for m, (hi, lo), b in zip(sample.shapesys, shapes, bounds, strict=True)]
    integral = shape_integrals.build(np.asarray(channel.reference_weights, float) * ratio[ref], systematics, np)
    if integral is None:
        raise ExportError(
            f"unbinned channel '{channel.name}', sample '{sample.name}': shape_normalisation 'reference' "
            "needs the reference-sample integral N(α) as a formula, and its series over the α bounds "
            f"({', '.join(f'{m.parameter} {tuple(map(float, b))}' for m, b in zip(sample.shapesys, bounds, strict=True))}) "
            f"would exceed {shape_integrals.MAX_TENSOR} terms or {shape_integrals.MAX_TERMS} Taylor terms per "
            "branch; narrow the bounds of these parameters, use fewer shape systematics on the sample, or "
            "export with shape_normalisation 'nominal'")
    return integral


def integral_formula(pieces: Sequence[PolynomialPiece], bounds: Sequence[tuple[float, float]] = ()) -> str:
    """TFormula text of the piecewise polynomial ``pieces`` of α_k = ``@k``: a chain of
    ``region ? polynomial : …`` ending in NaN (no region applies), NaN as well outside the
    closed intervals ``bounds`` (per α, if given) over which the series were made."""
    text = "TMath::QuietNaN()"
    for piece in reversed(pieces):
        conditions = [c for k, interval in enumerate(piece.intervals) for c in _conditions(interval, f"@{k}")]
        variables = [_variable(f"@{k}", sign, centre) for k, (sign, centre)
                     in enumerate(zip(piece.signs, piece.centres, strict=True))]
        polynomial = _horner(piece.coefficients, variables)
        text = f"(({' && '.join(conditions)}) ? {polynomial} : {text})" if conditions else polynomial
    inside = [c for k, (lo, hi) in enumerate(bounds) for c in _conditions(Interval(lo, hi, True, True), f"@{k}")]
    return f"(({' && '.join(inside)}) ? {text} : TMath::QuietNaN())" if inside else text


def _conditions(interval: Interval, alpha: str) -> list[str]:
    found = []
    if interval.low > -np.inf:
        found.append(f"({alpha} {'>=' if interval.closed_low else '>'} {float(interval.low)!r})")
    if interval.high < np.inf:
        found.append(f"({alpha} {'<=' if interval.closed_high else '<'} {float(interval.high)!r})")
    return found


def _variable(alpha: str, sign: float, centre: float) -> str:
    """t = sign·α − centre as text."""
    t = alpha if sign > 0 else f"(-{alpha})"
    return t if centre == 0 else f"({t} - {float(centre)!r})"


def _horner(coefficients: np.ndarray, variables: Sequence[str]) -> str:
    """Σ_p c[p_1, …] Π_k t_k^p_k nested in Horner form: in t_1, with coefficients that are
    polynomials in t_2, …"""
    if not variables:
        return repr(float(coefficients))
    terms = [_horner(c, variables[1:]) for c in coefficients]
    text = terms[-1]
    for term in reversed(terms[:-1]):
        text = f"({term} + {variables[0]}*{text})"
    return text


def shape_renormalisation(root: Any, prefix: str, channel: UnbinnedChannel, sample: CompiledSample,
                          ratio: np.ndarray, shapes: Sequence[tuple[np.ndarray, np.ndarray]],
                          params: RooParameters, keep: list[Any]) -> tuple[Any, dict[str, Any]]:
    """The RooFormulaVar N_j(0)/N_j(α) of ``sample`` (its ``_reference_integral`` N_j(α) a
    server of it) and its metadata entry."""
    names = [m.parameter for m in sample.shapesys]
    bounds = [params.settings(name)[1] for name in names]
    integral = reference_integral(channel, sample, ratio, shapes, bounds)
    ref = slice(channel.n_observed, channel.n_events)
    nominal = float(np.dot(channel.reference_weights, ratio[ref]))  # N_j(0), as the likelihood has it
    alphas = root.RooArgList(*[params.var(name) for name in names])
    formula = integral_formula(shape_integrals.polynomial_pieces(integral), bounds)
    n_alpha = root.RooFormulaVar(f"{prefix}reference_integral", f"N_{sample.name}(alpha) on the reference sample",
                                 formula, alphas)
    factor = root.RooFormulaVar(f"{prefix}shape_norm", f"N_{sample.name}(0)/N_{sample.name}(alpha)",
                                f"{nominal!r} / @0", root.RooArgList(n_alpha))
    keep += [alphas, n_alpha, factor]
    meaning = {"sample": sample.name, "reference_integral": n_alpha.GetName(), "factor": factor.GetName(),
               "nominal": nominal, "parameters": names, "alpha_bounds": [list(b) for b in bounds]}
    return factor, meaning
