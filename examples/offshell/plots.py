"""Figures of the off-shell example for the tutorial: physics, calibration, closure.

``python examples/offshell/plots.py`` (after build_workspace.py) writes into
``examples/offshell/figures/``:

* ``physics.png``: m4l spectra of S, B, SBI and −I, the ratios I/S and S/B, and the
  cos θ* shapes;
* ``calibration.png``: calibration curves of every trained ratio (diagnostics JSON);
* ``closure.png``: reweighting closure: the reference sample weighted by the trained and
  by the exact r_j, against an independent sample of process j, in m4l and cos θ*.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import onnxruntime as ort
from generate import PROCESSES, load_weighted_events, sample_events
from physics import M4L_BOUNDS, log_grid_weights, offshell_model

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "figures"
WORKSPACE = HERE / "workspace"
COLOURS = {"S": "tab:red", "B": "tab:blue", "SBI": "tab:green", "I": "tab:purple"}


def physics_figure(path: Path) -> None:
    model = offshell_model()
    m4l = np.exp(model.u_grid)
    rates = {k: 2 * v[0] + 2 / 3 * v[1] for k, v in model.rates.items()}
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    for name in ("S", "B", "SBI"):
        ax[0].plot(m4l, rates[name], color=COLOURS[name], label=f"{name} ({model.yields[name]:.1f})")
    ax[0].plot(m4l, -rates["I"], color=COLOURS["I"], ls="--",
               label=f"−I ({-model.yields['I']:.1f})")
    ax[0].set(xscale="log", yscale="log", xlabel="m4l [GeV]", ylabel="events / GeV",
              title="expected spectra (yield)")
    ax[0].legend()
    ax[1].plot(m4l, rates["I"] / rates["S"], color=COLOURS["I"], label="I / S")
    ax[1].plot(m4l, rates["S"] / rates["B"], color=COLOURS["S"], label="S / B")
    ax[1].axhline(0, color="k", lw=0.5)
    ax[1].set(xscale="log", xlabel="m4l [GeV]", title="interference and signal fractions")
    ax[1].legend()
    c = np.linspace(-1, 1, 101)
    w = log_grid_weights(model.u_grid)
    for name in ("S", "B", "SBI"):
        table = model.tables[name]
        shape = (w @ table[0]) + (w @ table[1]) * c**2
        ax[2].plot(c, shape, color=COLOURS[name], label=name)
    ax[2].set(xlabel="cos θ*", ylabel="density", title="angular shapes (all m4l)", ylim=(0, None))
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def calibration_figure(path: Path, diagnostics: dict) -> None:
    names = list(diagnostics["ratios"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for name in names:
        cal = diagnostics["ratios"][name]["calibration"]
        ax = axes[1] if "_kf_" in name else axes[0]
        ax.errorbar(cal["predicted"], np.array(cal["observed"]) - cal["predicted"],
                    yerr=cal["error"], fmt="o-", ms=3,
                    label=f"{name}: χ² = {cal['chi2']:.1f} / {len(cal['predicted'])}")
    for ax, title in zip(axes, ("sample classifiers", "K-factor shape classifiers"),
                         strict=True):
        ax.axhline(0, color="k", lw=0.5)
        ax.set(xlabel="predicted s (ensemble)", ylabel="observed − predicted", title=title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def trained_ratio(name: str, x: np.ndarray, members: int = 5) -> np.ndarray:
    """Ensemble-mean ratio of the shipped log-ratio models."""
    out = [np.exp(ort.InferenceSession(WORKSPACE / "models" / f"{name}_{k}.onnx")
                  .run(None, {"x": x.astype(np.float32)})[0].astype(float))
           for k in range(members)]
    return np.mean(out, axis=0)


def closure_figure(path: Path) -> None:
    model = offshell_model()
    x_ref, w_ref = load_weighted_events(WORKSPACE / "data" / "reference.npz")
    m_edges, c_edges = np.geomspace(*M4L_BOUNDS, 31), np.linspace(-1, 1, 21)
    panels = [("S", 0, m_edges), ("B", 0, m_edges), ("SBI", 0, m_edges), ("SBI", 1, c_edges)]
    fig, axes = plt.subplots(2, len(panels), figsize=(17, 6),
                             gridspec_kw={"height_ratios": [3, 1]})
    ratios = {name: {"trained": trained_ratio(name, x_ref), "exact": model.ratio(name, x_ref)}
              for name in ("S", "B", "SBI")}
    for col, (name, k, edges) in enumerate(panels):
        seed = 90 + ("S", "B", "SBI").index(name)
        x_j = sample_events(model, PROCESSES[name], 100_000, np.random.default_rng(seed))
        sample = np.histogram(x_j[:, k], edges)[0] / len(x_j)
        top, bottom = axes[0, col], axes[1, col]
        for label, style in (("trained", "-"), ("exact", ":")):
            weights = w_ref * ratios[name][label]
            reweighted = np.histogram(x_ref[:, k], edges, weights=weights)[0]
            top.stairs(reweighted, edges, ls=style, label=f"reference × r_{name} ({label})")
            with np.errstate(divide="ignore", invalid="ignore"):
                bottom.stairs(reweighted / sample, edges, ls=style)
        centres = 0.5 * (edges[1:] + edges[:-1])
        top.errorbar(centres, sample, yerr=np.sqrt(sample / len(x_j)), fmt="k.",
                     label=f"{name} sample")
        top.set(yscale="log" if k == 0 else "linear", xscale="log" if k == 0 else "linear",
                title=f"{name}: {'m4l' if k == 0 else 'cos θ*'}", ylabel="fraction")
        top.legend(fontsize=7)
        bottom.set(xlabel="m4l [GeV]" if k == 0 else "cos θ*", ylim=(0.8, 1.2),
                   ylabel="reweighted / sample", xscale="log" if k == 0 else "linear")
        bottom.axhline(1, color="k", lw=0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    FIGURES.mkdir(exist_ok=True)
    diagnostics = json.loads((HERE / "diagnostics" / "training.json").read_text())
    physics_figure(FIGURES / "physics.png")
    calibration_figure(FIGURES / "calibration.png", diagnostics)
    closure_figure(FIGURES / "closure.png")
    print(f"wrote {FIGURES}")


if __name__ == "__main__":
    main()
