"""Toy gg → (h*) → ZZ → 4ℓ in the off-shell region: amplitudes, smearing, exact densities.

The model, at the level of the true four-lepton mass m and the Z production angle
c = cos θ* in the 4ℓ rest frame (all masses in GeV):

* signal (spin 0, flat in c): A_S(m) = g_S · T(τ) · ŝ / (ŝ − m_H² + i m_H Γ_H), with
  ŝ = m², τ = ŝ / 4m_t² and T(τ) = τ F(τ) the top-loop factor (F → 1 for τ → 0; complex
  above the tt̄ threshold, growing like ln² τ at high mass);
* continuum, J = 0 part that interferes with the signal:
  A_B0(m) = −g_S · T(τ) · ŝ / (ŝ + Λ²) + g_q e^{iφ} (the top-loop box cancels the
  growth of the signal at high mass, as unitarity demands in the Standard Model; g_q is a
  light-quark piece with its own phase); flat in c;
* continuum, transverse part that does not interfere: |A_B2|² = g_2² (300 GeV / m)²,
  with angular density (1 + b c²) / (2 (1 + b/3)), b(m) = b_∞ ŝ / (ŝ + Λ_b²);
* the rate is dσ/dm dc ∝ L_gg(m) β_Z(m) |A|², with the falling gluon luminosity
  L_gg(m) = (1 − m/√s)^a (m / 220 GeV)^(−p) and the ZZ threshold factor
  β_Z = √(1 − 4 m_Z²/ŝ);
* the detector smears m with a Gaussian of relative width 2 %; c is measured exactly.

With signal strength μ the J = 0 amplitude is √μ A_S + A_B0, so the rate is
μ S + √μ I + B with I = 2 Re(A_S* A_B0) < 0 at high mass. Every observed-level density is
U(m₄ℓ) + V(m₄ℓ) c²; U and V are convolutions of the true-level rates with the resolution,
tabulated on a fine grid uniform in ln m₄ℓ and interpolated linearly in ln m₄ℓ. These
interpolated tables ARE the exact densities of the example: they are normalised exactly
(closed-form integral of the interpolant) and the exact-ratio ONNX models use the same
tables, so closure tests compare like with like.

>>> model = offshell_model()
>>> round(model.yields["B"]), model.yields["I"] < 0 < model.yields["S"]
(1000, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

M_H, GAMMA_H, M_Z, M_T, SQRT_S = 125.0, 4.1e-3, 91.1876, 172.5, 13000.0
M4L_BOUNDS = (220.0, 2000.0)
COS_BOUNDS = (-1.0, 1.0)
OBSERVABLES = ("m4l", "cos_theta")


@dataclass(frozen=True)
class Parameters:
    """Constants of the toy (couplings are dimensionless, masses in GeV)."""

    g_signal: float = 1.0
    lambda_box: float = 300.0
    g_light: float = 0.5
    phase_light: float = 2.0
    g_transverse: float = 11.5
    b_inf: float = 6.0
    lambda_angle: float = 250.0
    lumi_power_a: float = 10.0
    lumi_power_p: float = 4.0
    resolution: float = 0.02
    background_yield: float = 1000.0  # fixes the integrated luminosity
    k_factor_norm: tuple[float, float] = (1.1, 0.9)  # (hi, lo) signal K-factor
    k_factor_tilt: float = 0.15  # shape part: ±0.15 per TeV of m4l around <m4l>_S
    true_mass_max: float = 2600.0
    true_step: float = 2e-4  # grid step in ln m (true level)
    obs_step: float = 5e-4  # grid step in ln m4l (observed level)


def top_loop_factor(tau: np.ndarray) -> np.ndarray:
    """T(τ) = τ F(τ), F(τ) = 3[τ + (τ−1) f(τ)] / (2τ²), the gg → H top-loop form factor.

    >>> bool(abs(top_loop_factor(np.array([1e-4]))[0] / 1e-4 - 1) < 1e-3)  # F(0) = 1
    True
    """
    tau = np.asarray(tau, dtype=float)
    below = np.arcsin(np.sqrt(np.minimum(tau, 1.0))) ** 2 + 0j
    root = np.sqrt(np.maximum(1.0 - 1.0 / tau, 0.0))
    with np.errstate(divide="ignore"):
        above = -0.25 * (np.log((1 + root) / (1 - root)) - 1j * np.pi) ** 2
    f = np.where(tau <= 1.0, below, above)
    return 1.5 * (tau + (tau - 1.0) * f) / tau


def amplitudes(m: np.ndarray, par: Parameters) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A_S, A_B0, |A_B2|²) at true mass m."""
    s = np.asarray(m, dtype=float) ** 2
    top = top_loop_factor(s / (4 * M_T**2))
    propagator = s / (s - M_H**2 + 1j * M_H * GAMMA_H)
    a_s = par.g_signal * top * propagator
    a_b0 = (-par.g_signal * top * s / (s + par.lambda_box**2)
            + par.g_light * np.exp(1j * par.phase_light))
    b2 = par.g_transverse**2 * (300.0 / np.asarray(m)) ** 2
    return a_s, a_b0, b2


def luminosity(m: np.ndarray, par: Parameters) -> np.ndarray:
    """Falling gluon-luminosity factor times the ZZ threshold factor β_Z."""
    m = np.asarray(m, dtype=float)
    beta = np.sqrt(np.clip(1 - 4 * M_Z**2 / m**2, 0, None))
    return (1 - m / SQRT_S) ** par.lumi_power_a * (m / 220.0) ** (-par.lumi_power_p) * beta


def true_components(m: np.ndarray, par: Parameters) -> dict[str, np.ndarray]:
    """Rates (arbitrary units) per dm dc at true level: name → (flat, c²) coefficients.

    Names: S, I (interference, signed), B, and for reference B0/B2 pieces. The rate of a
    process is ``flat + c2 * c**2``; the μ-dependent rate is μ S + √μ I + B.
    """
    a_s, a_b0, b2 = amplitudes(m, par)
    lum = luminosity(m, par)
    s = np.asarray(m, dtype=float) ** 2
    b = par.b_inf * s / (s + par.lambda_angle**2)
    norm_angle = 2 * (1 + b / 3)
    zero = np.zeros_like(lum)
    return {
        "S": np.stack([lum * np.abs(a_s) ** 2 / 2, zero]),
        "I": np.stack([lum * (a_s.conj() * a_b0).real, zero]),  # 2 Re(.)/2
        "B": np.stack([lum * (np.abs(a_b0) ** 2 / 2 + b2 / norm_angle),
                       lum * b2 * b / norm_angle]),
    }


def log_grid_weights(u: np.ndarray) -> np.ndarray:
    """Weights w with Σ w_k f_k = ∫ f dm for f linear in u = ln m between the nodes u_k.

    >>> w = log_grid_weights(np.linspace(0.0, np.log(3.0), 400))
    >>> round(float(w.sum()), 12)  # ∫_1^3 dm
    2.0
    """
    delta = np.diff(u)
    grow = np.expm1(delta)  # e^Δ − 1
    # ∫_0^1 t e^{Δt} Δ dt = (e^Δ(Δ − 1) + 1) / Δ
    moment = (np.exp(delta) * (delta - 1) + 1) / delta
    start = np.exp(u[:-1])
    w = np.zeros_like(u)
    w[:-1] += start * (grow - moment)
    w[1:] += start * moment
    return w


@dataclass
class OffshellModel:
    """Exact observed-level densities p_j(m4l, c), yields ν_j and ratios to p_ref.

    Tables: ``tables[name]`` is a (2, n) array of (U, V) in events per GeV per unit c on
    the grid ``u_grid`` (ln m4l); ``yields[name]`` its integral over the observable bounds.
    Names: S, B, I, SBI, ref (p_ref = (p_S + p_B + p_SBI)/3, yield 1) and the K-factor
    variations S_kf_up/dn and SBI_kf_up/dn (normalised shapes with their own yields).
    """

    par: Parameters = field(default_factory=Parameters)

    @cached_property
    def true_grid(self) -> np.ndarray:
        lo, hi = np.log(2 * M_Z + 1e-6), np.log(self.par.true_mass_max)
        return np.exp(np.linspace(lo, hi, round((hi - lo) / self.par.true_step) + 1))

    @cached_property
    def u_grid(self) -> np.ndarray:
        lo, hi = np.log(M4L_BOUNDS[0]), np.log(M4L_BOUNDS[1])
        return np.linspace(lo, hi, round((hi - lo) / self.par.obs_step) + 1)

    @cached_property
    def rate_scale(self) -> float:
        """Integrated luminosity × constants, fixed so that ν_B = background_yield."""
        return self.par.background_yield / self._integral(self._smeared_raw["B"])

    @cached_property
    def _smeared_raw(self) -> dict[str, np.ndarray]:
        m = self.true_grid
        comps = true_components(m, self.par)
        names = list(comps)
        stacked = np.concatenate([comps[k] for k in names])  # (2·n_comp, n_true)
        smeared = smear(m, stacked, np.exp(self.u_grid), self.par.resolution)
        return {k: smeared[2 * i: 2 * i + 2] for i, k in enumerate(names)}

    def _integral(self, table: np.ndarray) -> float:
        """∫∫ (U + V c²) dc dm over the bounds (exact for the interpolant)."""
        w = log_grid_weights(self.u_grid)
        return float(w @ (2 * table[0] + 2 / 3 * table[1]))

    @cached_property
    def rates(self) -> dict[str, np.ndarray]:
        """Unnormalised observed rates (events per GeV per unit c), before K variations."""
        raw = {k: v * self.rate_scale for k, v in self._smeared_raw.items()}
        raw["SBI"] = raw["S"] + raw["I"] + raw["B"]
        return raw

    @cached_property
    def k_factor_mean_mass(self) -> float:
        """<m4l> under p_S, the pivot of the K-factor tilt."""
        w = log_grid_weights(self.u_grid)
        s = self.rates["S"]
        return float(w @ (np.exp(self.u_grid) * (2 * s[0])) / (w @ (2 * s[0])))

    def k_factor_tilt(self, m4l: np.ndarray, direction: int) -> np.ndarray:
        """g^±(m4l) = p_S(x | α = ±1) / p_S(x) = 1 ± tilt (m4l − <m4l>_S) / 1 TeV."""
        return 1 + direction * self.par.k_factor_tilt * (
            np.asarray(m4l, dtype=float) - self.k_factor_mean_mass) / 1000.0

    def _varied_rates(self, direction: int) -> dict[str, np.ndarray]:
        """S and SBI rates with the signal K-factor at α = ±1: S → k S, I → √k I."""
        norm = self.par.k_factor_norm[0 if direction > 0 else 1]
        k = norm * self.k_factor_tilt(np.exp(self.u_grid), direction)
        r = self.rates
        return {"S": k * r["S"], "SBI": k * r["S"] + np.sqrt(k) * r["I"] + r["B"]}

    @cached_property
    def all_rates(self) -> dict[str, np.ndarray]:
        out = dict(self.rates)
        for direction, tag in ((1, "up"), (-1, "dn")):
            for name, rate in self._varied_rates(direction).items():
                out[f"{name}_kf_{tag}"] = rate
        return out

    @cached_property
    def yields(self) -> dict[str, float]:
        """ν_j: expected events inside the observable bounds (I is signed, ref is 1)."""
        out = {k: self._integral(v) for k, v in self.all_rates.items()}
        out["ref"] = 1.0
        return out

    @cached_property
    def tables(self) -> dict[str, np.ndarray]:
        """Normalised (U, V) tables of the densities (the signed I is not a density)."""
        out = {k: v / self.yields[k] for k, v in self.all_rates.items() if k != "I"}
        out["ref"] = (out["S"] + out["B"] + out["SBI"]) / 3
        return out

    def density(self, name: str, x: np.ndarray) -> np.ndarray:
        """p_name(x) for x (N, 2) = (m4l, cos θ*); zero outside the bounds."""
        x = np.asarray(x, dtype=float)
        u, v = interpolate_table(self.u_grid, self.tables[name], x[:, 0])
        inside = ((x[:, 0] >= M4L_BOUNDS[0]) & (x[:, 0] <= M4L_BOUNDS[1])
                  & (np.abs(x[:, 1]) <= 1))
        return np.where(inside, u + v * x[:, 1] ** 2, 0.0)

    def ratio(self, numerator: str, x: np.ndarray, denominator: str = "ref") -> np.ndarray:
        """Exact r(x) = p_numerator(x) / p_denominator(x) (tables clamped at the bounds)."""
        x = np.asarray(x, dtype=float)
        un, vn = interpolate_table(self.u_grid, self.tables[numerator], x[:, 0])
        ud, vd = interpolate_table(self.u_grid, self.tables[denominator], x[:, 0])
        c2 = x[:, 1] ** 2
        return (un + vn * c2) / (ud + vd * c2)

    def expected_yield(self, mu: float) -> float:
        """ν(μ) = (μ − √μ) ν_S + √μ ν_SBI + (1 − √μ) ν_B."""
        y, root = self.yields, np.sqrt(mu)
        return (mu - root) * y["S"] + root * y["SBI"] + (1 - root) * y["B"]

    def normsys(self, name: str) -> tuple[float, float]:
        """(hi, lo) normalisation factors of the K-factor for sample S or SBI."""
        y = self.yields
        return y[f"{name}_kf_up"] / y[name], y[f"{name}_kf_dn"] / y[name]


def interpolate_table(u_grid: np.ndarray, table: np.ndarray,
                      m4l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U, V) at m4l: linear in ln m4l, clamped to the grid ends."""
    u = np.log(np.asarray(m4l, dtype=float))
    return np.interp(u, u_grid, table[0]), np.interp(u, u_grid, table[1])


def smear(m_true: np.ndarray, rates: np.ndarray, m_obs: np.ndarray,
          resolution: float, chunk: int = 256) -> np.ndarray:
    """∫ dm rate(m) N(m_obs; m, resolution·m), trapezoid in ln m on the true grid.

    >>> m = np.exp(np.linspace(np.log(50), np.log(400), 8001))
    >>> out = smear(m, np.ones((1, m.size)), np.array([200.0]), 0.02)
    >>> bool(abs(out[0, 0] - 1) < 1e-3)  # a flat rate stays flat
    True
    """
    u = np.log(m_true)
    w = np.full(u.size, u[1] - u[0])
    w[[0, -1]] /= 2
    w = w * m_true  # dm = m du
    sigma = resolution * m_true
    out = np.empty((rates.shape[0], m_obs.size))
    for start in range(0, m_obs.size, chunk):
        obs = m_obs[start:start + chunk, None]
        kernel = np.exp(-0.5 * ((obs - m_true) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)
        out[:, start:start + chunk] = (rates * w) @ kernel.T
    return out


_MODEL_CACHE: dict[Parameters, OffshellModel] = {}


def offshell_model(par: Parameters | None = None) -> OffshellModel:
    """The (cached) model for the given constants (default: the shipped example)."""
    par = par or Parameters()
    if par not in _MODEL_CACHE:
        _MODEL_CACHE[par] = OffshellModel(par)
    return _MODEL_CACHE[par]
