"""Event generation for the off-shell toy: unweighted S, B, SBI, reference and observed.

Events are drawn at true level (mass by accept-reject under a piecewise-constant envelope,
angle exactly), smeared with the detector resolution and kept inside the observable
bounds, so every sample is an exact draw of the densities in physics.py: unweighted, or
(for training) drawn with high masses enhanced by (m/220 GeV)^k and weighted by the
inverse factor, like generator-level weights.

Run ``python examples/offshell/generate.py`` to write the training samples, the
reference sample and the observed dataset to ``examples/offshell/_generated/``.

>>> rng = np.random.default_rng(1)
>>> x = sample_events(offshell_model(), PROCESSES["S"], 1000, rng)
>>> x.shape, bool(x[:, 0].min() >= 220), bool(np.abs(x[:, 1]).max() <= 1)
((1000, 2), True, True)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from physics import COS_BOUNDS, M4L_BOUNDS, OBSERVABLES, OffshellModel, offshell_model
from physics import true_components as _true_components

HERE = Path(__file__).resolve().parent
GENERATED = HERE / "_generated"

# coefficients (c_S, c_I, c_B) of the true-level rate c_S S + c_I I + c_B B
PROCESSES = {"S": (1.0, 0.0, 0.0), "B": (0.0, 0.0, 1.0), "SBI": (1.0, 1.0, 1.0)}
# the observed seed was picked among 15..34 as a typical pseudo-dataset (its exact-ratio
# mu-hat, 1.02, is near the median 0.9 of those 20); seed 15 gives mu-hat = 0.21
SEEDS = {"S": 11, "B": 12, "SBI": 13, "ref": 14, "observed": 20}
# training samples of B and SBI enhance high masses by (m/220)^2 and carry weights
TRAINING_BIAS = {"S": 0.0, "B": 2.0, "SBI": 2.0}
ENVELOPE_MARGIN = 1.05


def process_at(mu: float) -> tuple[float, float, float]:
    """Coefficients of the full model at signal strength μ: (μ, √μ, 1)."""
    return (mu, float(np.sqrt(mu)), 1.0)


def true_rate(model: OffshellModel, coefficients: tuple[float, float, float],
              m: np.ndarray) -> np.ndarray:
    """(flat, c²) true-level rate coefficients of a process at masses m."""
    comps = _true_components(m, model.par)
    c_s, c_i, c_b = coefficients
    return c_s * comps["S"] + c_i * comps["I"] + c_b * comps["B"]


def mass_bias(m: np.ndarray, power: float) -> np.ndarray:
    """Factor (m / 220 GeV)^power by which weighted samples enhance high masses."""
    return (np.asarray(m) / M4L_BOUNDS[0]) ** power


def _marginal(model: OffshellModel, coefficients, m: np.ndarray, power: float) -> np.ndarray:
    rate = true_rate(model, coefficients, m)
    return (2 * rate[0] + 2 / 3 * rate[1]) * mass_bias(m, power)


def _envelope(model: OffshellModel, coefficients: tuple[float, float, float], power: float):
    """Piecewise-constant envelope of the (biased) mass marginal on the true grid cells."""
    grid = model.true_grid
    marginal = _marginal(model, coefficients, grid, power)
    height = ENVELOPE_MARGIN * np.maximum(marginal[:-1], marginal[1:])
    mass = height * np.diff(grid)
    return grid, height, mass / mass.sum()


def sample_true_mass(model: OffshellModel, coefficients: tuple[float, float, float],
                     n: int, rng: np.random.Generator, bias_power: float = 0.0) -> np.ndarray:
    """n true masses from the mass marginal of the process times mass_bias (accept-reject)."""
    grid, height, prob = _envelope(model, coefficients, bias_power)
    out: list[np.ndarray] = []
    have = 0
    while have < n:
        trial = max(1000, int(1.3 * (n - have)))
        cell = rng.choice(prob.size, size=trial, p=prob)
        m = grid[cell] + rng.random(trial) * (grid[cell + 1] - grid[cell])
        ratio = _marginal(model, coefficients, m, bias_power) / height[cell]
        if np.any(ratio > 1):
            raise RuntimeError("envelope too low: raise ENVELOPE_MARGIN")
        keep = m[rng.random(trial) < ratio]
        out.append(keep)
        have += keep.size
    return np.concatenate(out)[:n]


def sample_angle(model: OffshellModel, coefficients: tuple[float, float, float],
                 m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """cos θ* given the true masses: flat part, or density 3c²/2 by inversion."""
    flat, c2 = true_rate(model, coefficients, m)
    p_flat = 2 * flat / (2 * flat + 2 / 3 * c2)
    uniform = rng.uniform(-1, 1, m.size)
    quadratic = np.cbrt(rng.uniform(-1, 1, m.size))
    return np.where(rng.random(m.size) < p_flat, uniform, quadratic)


def sample_weighted_events(model: OffshellModel, coefficients: tuple[float, float, float],
                           n: int, rng: np.random.Generator,
                           bias_power: float) -> tuple[np.ndarray, np.ndarray]:
    """n weighted events (x, w): true masses drawn with the factor mass_bias(m) and
    weighted by 1 / mass_bias(m) (mean weight 1), so Σ w δ(x − x_i) follows p(x)."""
    batches: list[np.ndarray] = []
    have = 0
    while have < n:
        trial = int(1.2 * (n - have)) + 100
        m = sample_true_mass(model, coefficients, trial, rng, bias_power)
        c = sample_angle(model, coefficients, m, rng)
        m_obs = m * (1 + model.par.resolution * rng.standard_normal(trial))
        inside = (m_obs >= M4L_BOUNDS[0]) & (m_obs <= M4L_BOUNDS[1])
        inside &= (c >= COS_BOUNDS[0]) & (c <= COS_BOUNDS[1])
        weight = 1 / mass_bias(m[inside], bias_power)
        batches.append(np.column_stack([m_obs[inside], c[inside], weight]))
        have += int(inside.sum())
    events = np.concatenate(batches)[:n]
    return events[:, :2], events[:, 2] / events[:, 2].mean()


def sample_events(model: OffshellModel, coefficients: tuple[float, float, float], n: int,
                  rng: np.random.Generator) -> np.ndarray:
    """n unweighted observed events (m4l, cos θ*) of a process, inside the bounds."""
    return sample_weighted_events(model, coefficients, n, rng, bias_power=0.0)[0]


def sample_reference(model: OffshellModel, n: int, rng: np.random.Generator) -> np.ndarray:
    """n events of p_ref = (p_S + p_B + p_SBI)/3, shuffled."""
    counts = rng.multinomial(n, [1 / 3] * 3)
    parts = [sample_events(model, PROCESSES[k], c, rng)
             for k, c in zip(("S", "B", "SBI"), counts, strict=True)]
    x = np.concatenate(parts)
    return x[rng.permutation(n)]


def sample_observed(model: OffshellModel, mu: float, rng: np.random.Generator) -> np.ndarray:
    """A pseudo-dataset at signal strength μ: N ~ Poisson(ν(μ)) events of p(x|μ)."""
    n = rng.poisson(model.expected_yield(mu))
    return sample_events(model, process_at(mu), n, rng)


def save_events(path: Path, x: np.ndarray, weight: np.ndarray | None = None) -> None:
    """Write an .npz with one float64 column per observable (and optional weights)."""
    columns = {name: np.ascontiguousarray(x[:, i], dtype=np.float64)
               for i, name in enumerate(OBSERVABLES)}
    if weight is not None:
        columns["weight"] = np.asarray(weight, dtype=np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **columns)


def load_events(path: Path) -> np.ndarray:
    """Read an .npz written by :func:`save_events` as an (N, 2) array."""
    return load_weighted_events(path)[0]


def load_weighted_events(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(x, w) from an .npz written by :func:`save_events` (w = 1 when absent)."""
    with np.load(path, allow_pickle=False) as f:
        x = np.column_stack([f[name] for name in OBSERVABLES])
        w = f["weight"] if "weight" in f.files else np.ones(len(x))
    return x, w


def generate_all(out: Path, n_train: int, n_reference: int, mu_observed: float) -> None:
    """Training samples (S, B, SBI weighted; ref), the reference sample and observed data."""
    model = offshell_model()
    for name in ("S", "B", "SBI"):
        x, w = sample_weighted_events(model, PROCESSES[name], n_train,
                                      np.random.default_rng(SEEDS[name]), TRAINING_BIAS[name])
        save_events(out / f"train_{name}.npz", x, w)
    ref_rng = np.random.default_rng(SEEDS["ref"])
    save_events(out / "train_ref.npz", sample_reference(model, n_train, ref_rng))
    x_ref = sample_reference(model, n_reference, ref_rng)
    save_events(out / "reference.npz", x_ref, np.full(n_reference, 1.0 / n_reference))
    x_obs = sample_observed(model, mu_observed, np.random.default_rng(SEEDS["observed"]))
    save_events(out / "observed.npz", x_obs)
    print(f"wrote {out}: {n_train} training events per sample, {n_reference} reference "
          f"events, {len(x_obs)} observed events at mu = {mu_observed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=GENERATED)
    parser.add_argument("--n-train", type=int, default=1_000_000)
    parser.add_argument("--n-reference", type=int, default=100_000)
    parser.add_argument("--mu", type=float, default=1.0, help="mu of the observed data")
    args = parser.parse_args()
    generate_all(args.out, args.n_train, args.n_reference, args.mu)


if __name__ == "__main__":
    main()
