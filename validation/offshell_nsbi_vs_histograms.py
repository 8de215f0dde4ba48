"""Expected 68.27 % interval on μ: unbinned NSBI vs a pyhf histogram of m4l.

Both analyses come from the same generator output (examples/offshell/generate.py):
the histogram templates are the weighted S, B and SBI samples of ``_generated/``
(regenerated when missing) binned in m4l; the NSBI analysis is the shipped
ratiofactory workspace (exact ratios and trained ensembles).

The histogram model is a pyhf workspace with three samples S, SBI, B, each with a free
normfactor (f_S, f_SBI, f_B) that this script ties to μ as (μ − √μ, √μ, 1 − √μ) (pyhf
has no formula modifier), ``lumi`` on every sample and the K-factor on S and SBI as a
normsys plus a histosys (the same variation as the workspace's normsys + ratiosys:
S → k S, I → √k I per bin). The likelihood is pyhf's ``logpdf``; the fit profiles lumi
and k_factor with scipy. Both intervals are Asimov (expected) at μ = 1, α = 0.

    python validation/offshell_nsbi_vs_histograms.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pyhf
from scipy import optimize

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "offshell"
sys.path.insert(0, str(EXAMPLE))

import generate
from physics import M4L_BOUNDS, offshell_model

BIN_COUNTS = (5, 10, 20, 40)
LUMI_SIGMA = 0.017


def templates(n_bins: int) -> dict[str, np.ndarray]:
    """Per-bin expected yields in log-spaced m4l bins: S, B, SBI and the K-factor variations."""
    if not (generate.GENERATED / "train_SBI.npz").exists():
        generate.generate_all(generate.GENERATED, 1_000_000, 100_000, 1.0)
    physics = offshell_model()
    edges = np.geomspace(*M4L_BOUNDS, n_bins + 1)
    out, k_bar = {}, {}
    for name in ("S", "B", "SBI"):
        x, w = generate.load_weighted_events(generate.GENERATED / f"train_{name}.npz")
        scale = physics.yields[name] / w.sum()
        out[name] = np.histogram(x[:, 0], edges, weights=w * scale)[0]
        if name == "S":
            for direction, tag in ((1, "up"), (-1, "dn")):
                norm = physics.par.k_factor_norm[0 if direction > 0 else 1]
                k = norm * physics.k_factor_tilt(x[:, 0], direction)
                out[f"S_kf_{tag}"] = np.histogram(x[:, 0], edges, weights=w * scale * k)[0]
                k_bar[tag] = out[f"S_kf_{tag}"] / out["S"]
    interference = out["SBI"] - out["S"] - out["B"]
    for tag in ("up", "dn"):
        out[f"SBI_kf_{tag}"] = out[f"S_kf_{tag}"] + np.sqrt(k_bar[tag]) * interference + out["B"]
    return out


def _k_factor(nominal: np.ndarray, up: np.ndarray, dn: np.ndarray) -> list[dict]:
    """normsys (total) + histosys (shape at fixed total) of one sample."""
    hi, lo = up.sum() / nominal.sum(), dn.sum() / nominal.sum()
    return [{"name": "k_factor", "type": "normsys", "data": {"hi": hi, "lo": lo}},
            {"name": "k_factor", "type": "histosys",
             "data": {"hi_data": list(up / hi), "lo_data": list(dn / lo)}}]


def histogram_workspace(t: dict[str, np.ndarray]) -> dict:
    """The pyhf workspace of the m4l histograms (observations: Asimov at μ = 1)."""
    samples = []
    for name in ("S", "SBI", "B"):
        modifiers = [{"name": f"f_{name}", "type": "normfactor", "data": None},
                     {"name": "lumi", "type": "lumi", "data": None}]
        if name != "B":
            modifiers += _k_factor(t[name], t[f"{name}_kf_up"], t[f"{name}_kf_dn"])
        samples.append({"name": name, "data": list(t[name]), "modifiers": modifiers})
    parameters = [{"name": f"f_{n}", "bounds": [[-10.0, 10.0]], "inits": [1.0]} for n in ("S", "SBI", "B")]
    parameters.append({"name": "lumi", "auxdata": [1.0], "sigmas": [LUMI_SIGMA],
                       "bounds": [[0.9, 1.1]], "inits": [1.0]})
    return {"channels": [{"name": "m4l", "samples": samples}],
            "observations": [{"name": "m4l", "data": list(t["SBI"])}],
            "measurements": [{"name": "m4l_histograms",
                              "config": {"poi": "f_S", "parameters": parameters}}],
            "version": "1.0.0"}


class HistogramLikelihood:
    """−2 ln L(μ, lumi, α) of the pyhf histogram model with f_j tied to μ."""

    def __init__(self, spec: dict) -> None:
        pyhf.set_backend("numpy")
        self.model = pyhf.Workspace(spec).model()
        self.index = {name: self.model.config.par_slice(name).start
                      for name in ("f_S", "f_SBI", "f_B", "lumi", "k_factor")}
        self.data = self.asimov(1.0)

    def pars(self, mu: float, lumi: float, alpha: float) -> np.ndarray:
        pars = np.array(self.model.config.suggested_init(), dtype=float)
        root = np.sqrt(mu)
        for name, value in (("f_S", mu - root), ("f_SBI", root), ("f_B", 1 - root),
                            ("lumi", lumi), ("k_factor", alpha)):
            pars[self.index[name]] = value
        return pars

    def asimov(self, mu: float) -> np.ndarray:
        return np.asarray(self.model.expected_data(self.pars(mu, 1.0, 0.0)))

    def __call__(self, mu: float, lumi: float, alpha: float) -> float:
        if mu < 0 or lumi <= 0:
            return np.inf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = -2 * float(self.model.logpdf(self.pars(mu, lumi, alpha), self.data)[0])
        return value if np.isfinite(value) else np.inf


def _minimise(function, start) -> optimize.OptimizeResult:
    return optimize.minimize(function, start, method="Nelder-Mead",
                             options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 20000, "adaptive": True})


def histogram_interval(nll: HistogramLikelihood, threshold: float = 1.0,
                       stat_only: bool = False) -> tuple[float, float]:
    """Asimov 68.27 % interval: t_μ crossings of ``threshold`` (μ̂ = 1 by construction).

    ``stat_only`` fixes lumi = 1 and k_factor = 0 instead of profiling them.
    """
    if stat_only:
        minimum = nll(1.0, 1.0, 0.0)

        def excess(mu: float) -> float:
            return nll(mu, 1.0, 0.0) - minimum - threshold
    else:
        minimum = _minimise(lambda p: nll(*p), np.array([1.0, 1.0, 0.0])).fun

        def excess(mu: float) -> float:
            return _minimise(lambda p: nll(mu, *p), np.array([1.0, 0.0])).fun - minimum - threshold

    lower = 0.0 if excess(0.0) < 0 else optimize.brentq(excess, 0.0, 1.0, xtol=1e-7)
    return lower, optimize.brentq(excess, 1.0, 10.0, xtol=1e-7)


def nsbi_interval(workspace: Path, fixed: dict | None = None) -> tuple[float, float]:
    """ratiofactory's Asimov 68.27 % interval at μ = 1 (nuisance parameters nominal)."""
    import ratiofactory
    from ratiofactory import infer

    pyhf.set_backend("jax")
    model = ratiofactory.Workspace.load(workspace).model()
    pars = list(model.config.suggested_init())
    pars[model.config.poi_index] = 1.0
    data = infer.asimov_data(model, pars)
    scan = infer.profile_scan(model, data, np.linspace(0.0, 3.0, 13), fixed=fixed)
    result = infer.interval(scan)
    return result.intervals[0][0], result.intervals[-1][1]


def main() -> None:
    fixed = {"lumi": 1.0, "k_factor": 0.0}
    rows: list[tuple[str, str, float, float]] = []
    for label, path in (("NSBI exact ratios", "exact.json"), ("NSBI trained ensembles", "workspace.json")):
        for syst, fix in (("with systematics", None), ("stat. only", fixed)):
            rows.append((label, syst, *nsbi_interval(EXAMPLE / "workspace" / path, fix)))
    for n_bins in BIN_COUNTS:
        nll = HistogramLikelihood(histogram_workspace(templates(n_bins)))
        for syst, stat_only in (("with systematics", False), ("stat. only", True)):
            rows.append((f"pyhf m4l histogram, {n_bins} bins", syst,
                         *histogram_interval(nll, stat_only=stat_only)))
    widths = {(name, syst): upper - lower for name, syst, lower, upper in rows}
    print("expected (Asimov, mu = 1) 68.27% intervals on mu; last column: width of the exact-ratio "
          "NSBI interval (same systematics) / width of this row")
    print(f"{'analysis':<36} {'':<17} {'lower':>7} {'upper':>7} {'width':>7} {'NSBI/this':>9}")
    for name, syst, lower, upper in rows:
        ratio = widths[("NSBI exact ratios", syst)] / (upper - lower)
        print(f"{name:<36} {syst:<17} {lower:7.3f} {upper:7.3f} {upper - lower:7.3f} {ratio:9.3f}")


if __name__ == "__main__":
    main()
