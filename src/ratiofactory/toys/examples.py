"""A small exact-ratio unbinned workspace for toy studies, tests and benchmarks:
a Gaussian signal (yield ``n_signal · mu``) on an exponential background (yield
``n_background``, one normsys ``bkg_syst``), one observable ``x`` in [0, 10].

The ratios are exact ONNX graphs (:mod:`ratiofactory.testing`), so the likelihood is the
true one and toys test the statistics alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..testing import Exponential, Mixture, Normal, ratio_model, sample_mixture

__all__ = ["gaussian_on_exponential"]

SIGNAL: Mixture = [(1.0, [Normal(5.0, 0.5)])]
BACKGROUND: Mixture = [(1.0, [Exponential(0.3, 0.0, 10.0)])]


def gaussian_on_exponential(directory: str | Path, *, n_signal: float = 30.0, n_background: float = 70.0,
                            n_reference: int = 2000, normsys: tuple[float, float] = (1.1, 0.9),
                            mu_observed: float = 1.0, seed: int = 0) -> Path:
    """Write the workspace (and its ONNX models and event files) under ``directory``;
    return the path of ``workspace.json``. The reference density is the 50/50 mixture of
    signal and background; the observed events are drawn at ``mu_observed``."""
    root = Path(directory)
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    reference_pdf: Mixture = [(0.5, SIGNAL[0][1]), (0.5, BACKGROUND[0][1])]
    (root / "models" / "S.onnx").write_bytes(ratio_model(SIGNAL, reference_pdf, output="ratio"))
    (root / "models" / "B.onnx").write_bytes(ratio_model(BACKGROUND, reference_pdf, output="ratio"))
    rng = np.random.default_rng(seed)
    reference = sample_mixture(reference_pdf, n_reference, rng)
    reference = reference[(reference[:, 0] >= 0) & (reference[:, 0] <= 10)]
    np.savez(root / "data" / "reference.npz", x=reference[:, 0], weight=np.full(len(reference), 1.0 / len(reference)))
    n_s, n_b = rng.poisson(n_signal * mu_observed), rng.poisson(n_background)
    observed = np.concatenate([sample_mixture(SIGNAL, n_s, rng), sample_mixture(BACKGROUND, n_b, rng)])
    observed = observed[(observed[:, 0] >= 0) & (observed[:, 0] <= 10)]
    np.savez(root / "data" / "observed.npz", x=observed[:, 0])
    spec = {
        "version": "1.0.0",
        "unbinned_channels": [{
            "name": "SR",
            "observables": [{"name": "x", "bounds": [0.0, 10.0]}],
            "reference": {"events": {"path": "data/reference.npz", "weight": "weight"}},
            "samples": [
                {"name": "signal", "yield": n_signal,
                 "ratio": {"onnx": {"path": "models/S.onnx"}, "output": "ratio"},
                 "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                {"name": "background", "yield": n_background,
                 "ratio": {"onnx": {"path": "models/B.onnx"}, "output": "ratio"},
                 "modifiers": [{"name": "bkg_syst", "type": "normsys",
                                "data": {"hi": normsys[0], "lo": normsys[1]}}]},
            ],
        }],
        "observations": [{"name": "SR", "events": {"path": "data/observed.npz"}}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[0.0, 10.0]], "inits": [1.0]}]}}],
    }
    path = root / "workspace.json"
    path.write_text(json.dumps(spec, indent=1))
    return path
