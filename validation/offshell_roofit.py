"""The off-shell exact-density model fitted with RooFit, compared with ratiofactory.

Same likelihood as validation/offshell_independent_fitter.py (whose helpers this script
imports, so the per-event inputs are computed once, by the same code),

    −2 ln L = 2 [ν(θ) − Σ_i ln Σ_j f_j(μ) ν_j lumi N_j(α) p_j(x_i) g_j(x_i, α)]
              + ((lumi − 1)/0.017)² + α²,

but built, minimised and profiled by RooFit: the exact densities p_j(x_i) of physics.py
and the K-factor shape ratios g_j^±(x_i) are columns of a RooDataSet; f_j(μ) are
RooFormulaVars, N_j(α) FlexibleInterpVars (code 4), g_j(x, α) PiecewiseInterpolations
(code 5: polynomial inside |α| < 1, exponential outside — HistFactory's code 4 for a
multiplicative factor); s = RooAddition of RooProducts, the pdf s/ν a self-normalised
RooWrapperPdf, extended by RooExtendPdf with ν(θ), RooGaussian constraints on lumi and α.
The NLL is RooFit's (createNLL), minimised by RooMinimizer (Minuit2, MIGRAD, strategy 2);
the interval edges are MINOS crossings at ΔNLL = 0.5 and 2.0 (lower edge clipped at μ = 0
when t_0 is below the threshold), re-checked on RooFit's profile at fixed μ.
Before fitting, RooFit's NLL minus (−2 ln L)/2 of the scipy script is printed at random
(μ, lumi, α): it must be one constant.

    python3 -m venv /tmp/rootvenv
    /tmp/rootvenv/bin/pip install root numpy scipy && /tmp/rootvenv/bin/pip install -e .
    /tmp/rootvenv/bin/python validation/offshell_roofit.py

Agreement required: μ̂ and the 68.27 % and 95.45 % interval edges within 1e-3 of
ratiofactory on examples/offshell/workspace/exact.json with the raw exact ratios
(``ratio_normalisation: "none"``, ``shape_normalisation: "nominal"``: the likelihood
above; the defaults normalise on the reference sample, docs/schema.md). ROOT is not a
dependency of ratiofactory.
"""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

import numpy as np
import ROOT

_spec = importlib.util.spec_from_file_location(
    "offshell_independent_fitter", Path(__file__).with_name("offshell_independent_fitter.py"))
scipy_fitter = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scipy_fitter)

LEVELS = (("68.27%", 1.0, 0.682689492137), ("95.45%", 4.0, 0.954499736104))
FORMULAS = {"S": "@0 - sqrt(@0)", "SBI": "sqrt(@0)", "B": "1 - sqrt(@0)"}
RAW = {"ratio_normalisation": "none", "shape_normalisation": "nominal"}


class RooFitModel:
    """RooFit's NLL of the exact-density model on events x; keeps its objects alive."""

    def __init__(self, exact: scipy_fitter.ExactLikelihood):
        columns = {f"p_{name}": exact.densities[name] for name in FORMULAS}
        for name, (hi, lo, _) in exact.shape_ratios.items():
            columns[f"g_{name}_hi"], columns[f"g_{name}_lo"] = hi, lo
        obs = {key: ROOT.RooRealVar(key, key, 0.0, 1.01 * col.max()) for key, col in columns.items()}
        self.data = ROOT.RooDataSet.from_numpy(columns, list(obs.values()), name="observed")
        self.mu = ROOT.RooRealVar("mu", "mu", 1.0, 0.0, 10.0)
        self.lumi = ROOT.RooRealVar("lumi", "lumi", 1.0, 0.5, 1.5)
        self.alpha = ROOT.RooRealVar("alpha", "k_factor", 0.0, -5.0, 5.0)
        keep, rates, terms = [obs], ROOT.RooArgList(), ROOT.RooArgList()
        for name, formula in FORMULAS.items():
            rate = [ROOT.RooFormulaVar(f"f_{name}", formula, ROOT.RooArgList(self.mu)),
                    ROOT.RooConstVar(f"nu_{name}", "", exact.physics.yields[name]), self.lumi]
            event = [obs[f"p_{name}"]]
            if name in exact.normsys:
                hi, lo, _ = exact.normsys[name]
                rate.append(ROOT.RooStats.HistFactory.FlexibleInterpVar(
                    f"N_{name}", "", ROOT.RooArgList(self.alpha), 1.0, [lo[0]], [hi[0]], [4]))
                one = ROOT.RooConstVar(f"one_{name}", "", 1.0)
                shape = ROOT.PiecewiseInterpolation(
                    f"g_{name}", "", one, ROOT.RooArgList(obs[f"g_{name}_lo"]),
                    ROOT.RooArgList(obs[f"g_{name}_hi"]), ROOT.RooArgList(self.alpha))
                shape.setInterpCode(self.alpha, 5, True)
                event.append(shape)
                keep.append(one)
            rate_j = ROOT.RooProduct(f"rate_{name}", "", rate)
            term_j = ROOT.RooProduct(f"term_{name}", "", [rate_j, *event])
            rates.add(rate_j)
            terms.add(term_j)
            keep += [rate, event, rate_j, term_j]
        self.nu = ROOT.RooAddition("nu", "nu(theta)", rates)
        self.s = ROOT.RooAddition("s", "s(x; theta)", terms)
        self.ratio = ROOT.RooRatio("s_over_nu", "", self.s, self.nu)
        self.shape = ROOT.RooWrapperPdf("shape", "", self.ratio, True)
        self.model = ROOT.RooExtendPdf("model", "", self.shape, self.nu)
        self.constraints = [
            ROOT.RooGaussian("lumi_constraint", "", self.lumi, ROOT.RooFit.RooConst(1.0),
                             ROOT.RooFit.RooConst(scipy_fitter.LUMI_SIGMA)),
            ROOT.RooGaussian("alpha_constraint", "", self.alpha, ROOT.RooFit.RooConst(0.0),
                             ROOT.RooFit.RooConst(1.0))]
        self._keep = keep
        self.nll = self.model.createNLL(self.data, Extended=True,
                                        ExternalConstraints=ROOT.RooArgSet(*self.constraints))

    def set(self, mu: float, lumi: float = 1.0, alpha: float = 0.0) -> None:
        for var, value in ((self.mu, mu), (self.lumi, lumi), (self.alpha, alpha)):
            var.setVal(value)

    def minimizer(self, error_level: float = 0.5) -> ROOT.RooMinimizer:
        m = ROOT.RooMinimizer(self.nll)
        m.setMinimizerType("Minuit2")
        m.setStrategy(2)
        m.setEps(1e-4)  # Minuit2 stops at EDM < 0.002 × tolerance × errordef
        m.setPrintLevel(-1)
        m.setErrorLevel(error_level)
        return m

    def profile(self, mu: float) -> float:
        """RooFit's NLL minimised over (lumi, α) at fixed μ."""
        self.set(mu)
        self.mu.setConstant(True)
        self.minimizer().migrad()
        self.mu.setConstant(False)
        return self.nll.getVal()

    def interval(self, threshold: float) -> tuple[float, float, float, float, float]:
        """(μ̂, lower, upper, t at lower, t at upper): MINOS at ΔNLL = threshold/2."""
        self.set(1.0)
        m = self.minimizer(threshold / 2)
        m.migrad()
        m.hesse()
        mu_hat, minimum = self.mu.getVal(), self.nll.getVal()
        m.minos(ROOT.RooArgSet(self.mu))
        lower, upper = mu_hat + self.mu.getErrorLo(), mu_hat + self.mu.getErrorHi()
        if 2 * (self.profile(0.0) - minimum) < threshold:
            lower = 0.0
        t_lower = 2 * (self.profile(lower) - minimum)
        return mu_hat, lower, upper, t_lower, 2 * (self.profile(upper) - minimum)


def main() -> int:
    ROOT.RooMsgService.instance().setGlobalKillBelow(ROOT.RooFit.WARNING)
    exact = scipy_fitter.ExactLikelihood(scipy_fitter.observed_events())
    start = time.perf_counter()
    roofit = RooFitModel(exact)
    print("RooFit NLL − (scipy −2 ln L)/2 at random (mu, lumi, alpha):")
    offsets = []
    for point in np.random.default_rng(7).uniform([0.05, 0.95, -1.8], [3, 1.05, 1.8], (6, 3)):
        roofit.set(*point)
        offsets.append(roofit.nll.getVal() - exact(*point) / 2)
        print("  mu {:.3f} lumi {:.3f} alpha {:+.3f}: {:.10f}".format(*point, offsets[-1]))
    # RooFit normalises the Gaussians on the parameters' ranges (α ∈ [−5, 5], lumi ±29σ)
    expected = np.log(scipy_fitter.LUMI_SIGMA * 2 * np.pi * math.erf(5 / math.sqrt(2)))
    print(f"  spread {np.ptp(offsets):.1e}; expected ln(0.017 · 2π · P(|α| < 5)) = {expected:.10f}")
    fits = {label: roofit.interval(threshold) for label, threshold, _ in LEVELS}
    elapsed = time.perf_counter() - start
    for label, threshold, _ in LEVELS:
        print(f"{label}: t_mu at the MINOS edges {fits[label][3]:.5f}, {fits[label][4]:.5f} "
              f"(target {threshold:g}, or below it at a lower edge clipped to 0)")
    print(f"ROOT {ROOT.gROOT.GetVersion()}, RooFit build + fits: {elapsed:.1f} s")
    print("off-shell toy, observed data, exact densities: RooFit vs ratiofactory on exact.json")
    rows = [(label, fits[label][:3],
             scipy_fitter.ratiofactory_interval(scipy_fitter.EXAMPLE / "workspace" / "exact.json", cl,
                                                settings=RAW))
            for label, _, cl in LEVELS]
    return scipy_fitter.compare(rows, "RooFit")


if __name__ == "__main__":
    raise SystemExit(main())
