"""An unbinned channel as a RooFit pdf over per-event columns of a RooDataSet.

The networks never run inside RooFit: like the ratiofactory model, the export evaluates
them once and stores, per observed event, the columns the likelihood needs, taken from
the compiled model itself (so they are the exact per-event numbers ratiofactory fits):

- ``<channel>_r_<sample>``: the ratio r_j(x_i),
- ``<channel>_g_<sample>_<parameter>_hi`` / ``_lo``: the shape-systematic ratios g^±(x_i),

both as the likelihood uses them (divided by their reference-sample integrals with
``ratio_normalisation: "reference"``, :func:`ratiofactory.normalisation.likelihood_arrays`),
- ``<channel>_<observable>``: the observables themselves (spectators, for plots).

With ``shape_normalisation: "reference"`` the per-event factor of a sample with shape
systematics is also multiplied by N_j(0)/N_j(α), a RooFormulaVar of the α's
(:mod:`.shape_normalisation`).

With c_j(θ) = ν_j f_j(θ) Π normfactors · lumi · Π FlexibleInterpVar(normsys) and the
per-event factor r_j Π PiecewiseInterpolation(g^±) (codes 0/1/4 of ratiofactory are
ROOT's 0/1/5 for per-event factors and 0/1/4 for FlexibleInterpVar),

    s(x;θ) = Σ_j c_j(θ) r_j(x) Π_k g_jk(x, α_k),     ν(θ) = Σ_j c_j(θ),
    pdf    = RooExtendPdf(RooWrapperPdf(s/ν, self-normalised), ν)

so RooFit's extended NLL, ν − Σ_i w_i ln(s_i/ν) − (Σ w_i) ln ν, is ratiofactory's
ν − Σ_i w_i ln s_i. The channel pdf is the product of that with the Gaussian
constraints of its constrained parameters (RooFit counts a shared one once).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..compile import UnbinnedChannel
from ..expressions import Expression
from ..normalisation import likelihood_arrays
from ._root import ExportError
from .formula import roofit_formula
from .parameters import RooParameters
from .shape_normalisation import shape_renormalisation

__all__ = ["UnbinnedExport", "build_unbinned_channel", "formula_var", "safe_name"]

_CODES = {"code0": (0, 0), "code1": (1, 1), "code4": (4, 5)}  # ours → (FlexibleInterpVar, PiecewiseInterpolation)


def safe_name(text: str) -> str:
    """``text`` with every character other than letters, digits and ``_`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


@dataclass
class UnbinnedExport:
    """The pdf of one unbinned channel, the RooRealVars of its columns and their values."""

    name: str
    pdf: Any
    columns: dict[str, np.ndarray]
    column_vars: dict[str, Any]
    reference_weights: np.ndarray
    n_observed: int
    weights: np.ndarray
    metadata: dict[str, Any]
    keep: list[Any] = field(default_factory=list)

    def dataset(self, root: Any, rows: str = "observed") -> Any:
        """The RooDataSet of the observed events (``rows="observed"``, weights as in the
        data) or of the reference events (``"reference"``, weights w_ref summing to 1)."""
        part = slice(0, self.n_observed) if rows == "observed" else slice(self.n_observed, None)
        weights = self.weights if rows == "observed" else self.reference_weights
        arrays = {key: np.ascontiguousarray(values[part]) for key, values in self.columns.items()}
        arrays["weightVar"] = np.ascontiguousarray(weights, dtype=float)
        variables = list(self.column_vars.values())
        weight = root.RooRealVar("weightVar", "event weight", 1.0, -1e30, 1e30)
        self.keep.append(weight)
        return root.RooDataSet.from_numpy(
            arrays, [*variables, weight], name=f"{rows}_{self.name}", weight_name="weightVar"
        )


def _column(root: Any, name: str, title: str, values: np.ndarray, keep: dict[str, Any]) -> Any:
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    pad = 1.0 + max(abs(lo), abs(hi))
    var = root.RooRealVar(name, title, 0.5 * (lo + hi), lo - pad, hi + pad)
    keep[name] = var
    return var


def _coefficient(root: Any, prefix: str, sample: Any, params: RooParameters, keep: list[Any]) -> Any:
    """c_j(θ) as a RooProduct."""
    factors = [root.RooConstVar(f"{prefix}nu", "nominal yield", sample.nominal_yield)]
    for k, expr in enumerate(sample.formulas):
        factors.append(formula_var(root, f"{prefix}f{k}", expr, params))
    factors += [params.var(name) for name in sample.normfactors]
    if sample.lumi is not None:
        factors.append(params.var(sample.lumi))
    if sample.normsys:
        alphas = root.RooArgList(*[params.var(m.parameter) for m in sample.normsys])
        factors.append(root.RooStats.HistFactory.FlexibleInterpVar(
            f"{prefix}normsys", "normalisation systematics", alphas, 1.0,
            [m.lo for m in sample.normsys], [m.hi for m in sample.normsys],
            [_CODES[m.code][0] for m in sample.normsys]))
    keep += factors
    product = root.RooProduct(f"{prefix}coefficient", "c_j(theta)", root.RooArgList(*factors))
    keep.append(product)
    return product


def formula_var(root: Any, name: str, expr: Expression, params: RooParameters) -> Any:
    """The RooFormulaVar ``name`` of a formula expression over the parameters' RooRealVars."""
    names = sorted(expr.parameters)
    variables = root.RooArgList(*[params.var(n) for n in names])
    return root.RooFormulaVar(name, expr.text, roofit_formula(expr, names), variables)


def build_unbinned_channel(
    root: Any,
    channel: UnbinnedChannel,
    ratios: list[np.ndarray],
    params: RooParameters,
    channel_spec: Mapping[str, Any],
) -> UnbinnedExport:
    """The RooFit pdf of ``channel``; ``ratios[j]`` is sample j's per-event ratio as the
    model uses it (observed events, then reference events)."""
    R = root
    pointer_name = channel.name
    if channel.spurious_signal is not None:
        raise ExportError(
            f"unbinned channel '{pointer_name}': its spurious_signal (mu -> mu + alpha * delta(mu), delta "
            "interpolated by pchip) is not exported to RooFit yet; export the workspace without it"
        )
    for sample in channel.samples:
        parameterised = getattr(sample, "parameterised", None)
        if parameterised is not None:
            raise ExportError(
                f"unbinned channel '{pointer_name}', sample '{sample.name}': its ratio r(x | θ) is a network of "
                f"the parameters {', '.join(parameterised.parameters)}, evaluated at every θ; RooFit "
                "cannot run it (the pip wheel's RooONNXFunc lacks the SOFIE parser), so it cannot be exported")
    ch = safe_name(channel.name)
    keep: list[Any] = []
    column_vars: dict[str, Any] = {}
    columns: dict[str, np.ndarray] = {}
    metadata: dict[str, Any] = {"channel": channel.name, "columns": {}, "samples": [], "shape_normalisation": []}

    def add_column(key: str, title: str, values: np.ndarray, meaning: dict[str, Any]) -> Any:
        columns[key] = np.asarray(values, dtype=float)
        metadata["columns"][key] = meaning
        return _column(R, key, title, columns[key], column_vars)

    for i, observable in enumerate(channel.observables):
        key = f"{ch}_{safe_name(observable)}"
        values = np.concatenate([channel.observed.values[:, i],
                                 channel.reference.values[:, i] if channel.reference is not None else []])
        add_column(key, observable, values, {"observable": observable})

    coefficients, terms = [], []
    shape_arrays = [shapes for _, shapes in likelihood_arrays(channel)]  # g^± as the likelihood uses them
    for j, (sample, ratio) in enumerate(zip(channel.samples, ratios, strict=True)):
        spec = channel_spec["samples"][j]
        prefix = f"{ch}_{safe_name(sample.name)}_"
        r_var = add_column(f"{ch}_r_{safe_name(sample.name)}", f"r_{sample.name}(x)", ratio,
                           {"sample": sample.name, "ratio": spec["ratio"]})
        factors = [r_var]
        if sample.shapesys:
            lows, highs, alphas = R.RooArgList(), R.RooArgList(), R.RooArgList()
            for m, (g_hi, g_lo) in zip(sample.shapesys, shape_arrays[j], strict=True):
                base = f"{ch}_g_{safe_name(sample.name)}_{safe_name(m.parameter)}"
                ratiosys = next(mod for mod in spec.get("modifiers", [])
                            if mod["type"] == "ratiosys" and mod["name"] == m.parameter)
                highs.add(add_column(f"{base}_hi", f"g+_{sample.name}_{m.parameter}(x)", g_hi,
                                     {"sample": sample.name, "ratiosys": m.parameter, "side": "hi",
                                      "ratio": ratiosys["data"]["hi"]}))
                lows.add(add_column(f"{base}_lo", f"g-_{sample.name}_{m.parameter}(x)", g_lo,
                                    {"sample": sample.name, "ratiosys": m.parameter, "side": "lo",
                                     "ratio": ratiosys["data"]["lo"]}))
                alphas.add(params.var(m.parameter))
            one = R.RooConstVar(f"{prefix}one", "1", 1.0)
            shape = R.PiecewiseInterpolation(f"{prefix}shapesys", "per-event shape systematics",
                                             one, lows, highs, alphas)
            for m in sample.shapesys:
                shape.setInterpCode(params.var(m.parameter), _CODES[m.code][1], True)
            keep += [one, shape, lows, highs, alphas]
            factors.append(shape)
            if channel.shape_normalisation == "reference":
                renormalisation, meaning = shape_renormalisation(R, prefix, channel, sample, ratio, shape_arrays[j],
                                                                 params, keep)
                factors.append(renormalisation)
                metadata["shape_normalisation"].append(meaning)
        coefficient = _coefficient(R, prefix, sample, params, keep)
        term = R.RooProduct(f"{prefix}term", f"{sample.name} term of s(x)",
                            R.RooArgList(coefficient, *factors))
        keep.append(term)
        coefficients.append(coefficient)
        terms.append(term)
        metadata["samples"].append({"name": sample.name, "yield": sample.nominal_yield})

    nu = R.RooAddition(f"{ch}_nu", "nu(theta)", R.RooArgList(*coefficients))
    s = R.RooAddition(f"{ch}_s", "s(x; theta)", R.RooArgList(*terms))
    ratio = R.RooRatio(f"{ch}_s_over_nu", "s/nu", s, nu)
    shape_pdf = R.RooWrapperPdf(f"{ch}_shape", "p(x|theta)/p_ref(x)", ratio, True)
    extended = R.RooExtendPdf(f"{ch}_extended", "extended", shape_pdf, nu)
    keep += [nu, s, ratio, shape_pdf, extended]
    constraints = [c for name in sorted(channel.parameters) if (c := params.constraint(name)) is not None]
    pdf = R.RooProdPdf(f"model_{ch}", f"unbinned channel {channel.name}", R.RooArgList(extended, *constraints))
    weights = np.asarray(channel.observed_weights, dtype=float)
    return UnbinnedExport(ch, pdf, columns, column_vars, np.asarray(channel.reference_weights, dtype=float),
                          channel.n_observed, weights, metadata, keep)
