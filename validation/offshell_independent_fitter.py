"""The off-shell model fitted by an independent fitter, compared with ratiofactory.

The independent route shares nothing with ratiofactory's code path: no ONNX, no
workspace, no ratiofactory model or infer. It writes the extended unbinned likelihood
with the example's exact numpy densities (examples/offshell/physics.py),

    −2 ln L = 2 [ν(θ) − Σ_i ln Σ_j f_j(μ) ν_j G_j(θ) p_j(x_i) g_j(x_i, α)]
              + ((lumi − 1)/0.017)² + α²,

with its own code4 interpolation (polynomial coefficients from a 6×6 linear solve),
minimises it with scipy (Nelder–Mead, tight tolerances), profiles μ and finds the
t_μ = 1 and 4 crossings with Brent's method. ratiofactory runs on exact.json.

exact.json uses the default normalisations on its reference sample (x_k, weights w_k,
docs/schema.md): each sample's density is divided by N_j = Σ_k w_k p_j(x_k)/p_ref(x_k),
each g^± by K_j^± = Σ_k w_k p_j g^±/p_ref / N_j, and the S and SBI terms by
I_j(α) = Σ_k w_k (p_j/p_ref)(x_k) g_j(x_k, α) / N_j; here p_j/p_ref on the reference
events come from physics.py too (``ExactLikelihood(x, reference=reference_events())``).

    python validation/offshell_independent_fitter.py

Agreement required: μ̂ and both 68.27 % interval edges within 1e-3.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy import optimize

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "offshell"
sys.path.insert(0, str(EXAMPLE))

from physics import offshell_model

LUMI_SIGMA = 0.017
COEFFICIENTS = {"S": lambda mu: mu - np.sqrt(mu), "SBI": np.sqrt, "B": lambda mu: 1 - np.sqrt(mu)}
TOLERANCE = 1e-3


def code4_coefficients(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """a_1..a_6 of 1 + Σ a_i α^i matching value, slope and curvature of hi^α, lo^−α at ±1.

    >>> a = code4_coefficients(np.array([1.2]), np.array([0.8]))
    >>> bool(abs(1 + a[:, 0].sum() - 1.2) < 1e-12)
    True
    """
    hi, lo = np.atleast_1d(np.asarray(hi, float)), np.atleast_1d(np.asarray(lo, float))
    powers = np.arange(1, 7)
    rows = []
    for at in (1.0, -1.0):
        rows.append(at ** powers)
        rows.append(powers * at ** (powers - 1))
        rows.append(powers * (powers - 1) * at ** (powers - 2.0))
    matrix = np.array(rows)
    lh, ll = np.log(hi), np.log(lo)
    rhs = np.stack([hi - 1, hi * lh, hi * lh ** 2, lo - 1, -lo * ll, lo * ll ** 2])
    return np.linalg.solve(matrix, rhs)


def code4(alpha: float, hi: np.ndarray, lo: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """The code4 factor at α (exponential outside |α| ≥ 1, polynomial inside)."""
    if alpha >= 1:
        return hi ** alpha
    if alpha <= -1:
        return lo ** (-alpha)
    return 1 + sum(coefficients[i] * alpha ** (i + 1) for i in range(6))


@dataclass
class ExactLikelihood:
    """−2 ln L(μ, lumi, α) of events x (N, 2) with the exact densities of physics.py."""

    x: np.ndarray
    reference: tuple[np.ndarray, np.ndarray] | None = None
    """(events, weights summing to one) to normalise on, or None for the raw densities."""

    @cached_property
    def physics(self):
        return offshell_model()

    @cached_property
    def densities(self) -> dict[str, np.ndarray]:
        return {name: self.physics.density(name, self.x) for name in COEFFICIENTS}

    @cached_property
    def shape_ratios(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per-event (g⁺, g⁻, code4 coefficients) of the K-factor for S and SBI."""
        out = {}
        for name in ("S", "SBI"):
            hi = self.physics.ratio(f"{name}_kf_up", self.x, name)
            lo = self.physics.ratio(f"{name}_kf_dn", self.x, name)
            out[name] = (hi, lo, code4_coefficients(hi, lo))
        return out

    @cached_property
    def normsys(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        out = {}
        for name in ("S", "SBI"):
            hi, lo = self.physics.normsys(name)
            hi, lo = np.array([hi]), np.array([lo])
            out[name] = (hi, lo, code4_coefficients(hi, lo))
        return out

    @cached_property
    def normalisation(self) -> dict[str, tuple[float, float, float, np.ndarray, tuple]]:
        """Per sample (N_j, K_j^+, K_j^-, w_k r_j(x_k)/N_j, (g^+/K^+, g^-/K^-, code4 coefficients)
        on the reference events); N = K = 1 and no reference arrays without a reference."""
        if self.reference is None:
            return {name: (1.0, 1.0, 1.0, np.zeros(0), ()) for name in COEFFICIENTS}
        events, weights = self.reference
        out = {}
        for name in COEFFICIENTS:
            weighted = weights * self.physics.ratio(name, events)
            norm = float(np.sum(weighted))
            if name not in self.shape_ratios:
                out[name] = (norm, 1.0, 1.0, weighted / norm, ())
                continue
            hi = self.physics.ratio(f"{name}_kf_up", events, name)
            lo = self.physics.ratio(f"{name}_kf_dn", events, name)
            k_hi, k_lo = float(np.sum(weighted * hi)) / norm, float(np.sum(weighted * lo)) / norm
            hi, lo = hi / k_hi, lo / k_lo
            out[name] = (norm, k_hi, k_lo, weighted / norm, (hi, lo, code4_coefficients(hi, lo)))
        return out

    @cached_property
    def normalised_shape_ratios(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The observed events' (g⁺/K⁺, g⁻/K⁻, code4 coefficients)."""
        out = {}
        for name, (hi, lo, _) in self.shape_ratios.items():
            _, k_hi, k_lo, _, _ = self.normalisation[name]
            out[name] = (hi / k_hi, lo / k_lo, code4_coefficients(hi / k_hi, lo / k_lo))
        return out

    def __call__(self, mu: float, lumi: float, alpha: float) -> float:
        if mu < 0 or lumi <= 0:
            return np.inf
        total, s = 0.0, np.zeros(len(self.x))
        for name, coefficient in COEFFICIENTS.items():
            scale = coefficient(mu) * self.physics.yields[name] * lumi
            norm, _, _, reference_weights, reference_shapes = self.normalisation[name]
            if name in self.normsys:
                scale = scale * float(code4(alpha, *self.normsys[name])[0])
                shape = 1.0
                if reference_shapes:  # shape normalisation: I_j(α) over the reference events
                    shape = float(np.sum(reference_weights * code4(alpha, *reference_shapes)))
                s = s + scale / (norm * shape) * self.densities[name] * code4(
                    alpha, *self.normalised_shape_ratios[name])
            else:
                s = s + scale / norm * self.densities[name]
            total += scale
        if np.any(s <= 0):
            return np.inf
        constraints = ((lumi - 1) / LUMI_SIGMA) ** 2 + alpha ** 2
        return float(2 * (total - np.sum(np.log(s))) + constraints)


def _minimise(function, start: np.ndarray) -> optimize.OptimizeResult:
    result = optimize.minimize(function, start, method="Nelder-Mead",
                               options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 20000,
                                        "maxfev": 40000, "adaptive": True})
    return optimize.minimize(function, result.x, method="Nelder-Mead",
                             options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})


def best_fit(nll: ExactLikelihood, starts: tuple[float, ...] = (0.5, 1.0, 2.0)) -> tuple[float, float]:
    """(μ̂, min −2 ln L) of the free fit, the best of fits started at μ = ``starts``."""
    best = None
    for mu0 in starts:
        result = _minimise(lambda p: nll(*p), np.array([mu0, 1.0, 0.0]))
        if best is None or result.fun < best.fun:
            best = result
    return float(best.x[0]), float(best.fun)


def profile(nll: ExactLikelihood, mu: float) -> float:
    """min over (lumi, α) of −2 ln L at fixed μ."""
    return float(_minimise(lambda p: nll(mu, *p), np.array([1.0, 0.0])).fun)


def interval(nll: ExactLikelihood, threshold: float = 1.0) -> tuple[float, float, float]:
    """(μ̂, lower, upper) where t_μ crosses ``threshold`` (lower clipped at μ = 0)."""
    mu_hat, minimum = best_fit(nll)

    def excess(mu: float) -> float:
        return profile(nll, mu) - minimum - threshold

    lower = 0.0 if excess(0.0) < 0 else optimize.brentq(excess, 0.0, mu_hat, xtol=1e-8)
    upper = optimize.brentq(excess, mu_hat, 10.0, xtol=1e-8)
    return mu_hat, lower, upper


def observed_events() -> np.ndarray:
    with np.load(EXAMPLE / "workspace" / "data" / "observed.npz") as f:
        return np.column_stack([f["m4l"], f["cos_theta"]])


def reference_events() -> tuple[np.ndarray, np.ndarray]:
    """The workspace's reference sample: (events, weights normalised to sum one)."""
    with np.load(EXAMPLE / "workspace" / "data" / "reference.npz") as f:
        return np.column_stack([f["m4l"], f["cos_theta"]]), f["weight"] / np.sum(f["weight"])


def ratiofactory_interval(workspace: Path, threshold_cl: float, backend: str = "jax",
                          settings: dict | None = None) -> tuple[float, float, float]:
    """ratiofactory's (μ̂, lower, upper) on a workspace (jax: exact gradients); ``settings``
    (e.g. ``{"ratio_normalisation": "none"}``) override the unbinned channels' keys."""
    import json

    import pyhf

    import ratiofactory
    from ratiofactory import infer

    pyhf.set_backend(backend)
    spec = json.loads(Path(workspace).read_text())
    for channel in spec.get("unbinned_channels", []):
        channel.update(settings or {})
    ws = ratiofactory.Workspace(spec, base_dir=Path(workspace).parent)
    model = ws.model()
    data = ws.data(model)
    scan = infer.profile_scan(model, data, np.linspace(0.0, 3.0, 16))
    result = infer.interval(scan, threshold_cl)
    return result.bestfit, result.intervals[0][0], result.intervals[-1][1]


def main() -> int:
    nll = ExactLikelihood(observed_events(), reference=reference_events())
    rows = []
    for label, threshold, cl in (("68.27%", 1.0, 0.682689492137), ("95.45%", 4.0, 0.954499736104)):
        independent = interval(nll, threshold)
        library = ratiofactory_interval(EXAMPLE / "workspace" / "exact.json", cl)
        rows.append((label, independent, library))
    print("off-shell toy, observed data, exact densities: independent scipy fitter vs "
          "ratiofactory on exact.json")
    return compare(rows, "independent")


def compare(rows, reference: str) -> int:
    """Print (CL label, reference (μ̂, lower, upper), ratiofactory's) rows; 0 when every
    difference is below TOLERANCE, else 1."""
    print(f"{'CL':<8} {'quantity':<8} {reference:>12} {'ratiofactory':>13} {'difference':>11}")
    worst = 0.0
    for label, independent, library in rows:
        for name, a, b in zip(("mu_hat", "lower", "upper"), independent, library, strict=True):
            worst = max(worst, abs(a - b))
            print(f"{label:<8} {name:<8} {a:12.5f} {b:13.5f} {a - b:11.2e}")
    verdict = "PASS" if worst < TOLERANCE else "FAIL"
    print(f"largest difference {worst:.2e} (tolerance {TOLERANCE:g}): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
