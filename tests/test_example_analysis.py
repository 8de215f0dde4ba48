"""The off-shell example's main job (examples/offshell/analyse.py) on the exact-ratio workspace.

The reference μ̂ comes from an independent likelihood: the example's exact numpy
densities and scipy (validation/offshell_independent_fitter.py), no ratiofactory code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyhf
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "offshell"
sys.path.insert(0, str(EXAMPLE))
sys.path.insert(0, str(ROOT / "validation"))

import analyse
import offshell_independent_fitter as independent


@pytest.fixture(scope="module")
def reference_mu_hat() -> float:
    nll = independent.ExactLikelihood(independent.observed_events(), reference=independent.reference_events())
    return independent.best_fit(nll, starts=(1.0,))[0]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("offshell")
    argv = ["--workspace", str(EXAMPLE / "workspace" / "exact.json"), "--output", str(out),
            "--backend", "jax", "--scan-points", "7"]
    tensorlib, optimizer = pyhf.get_backend()
    try:
        analyse.main(argv)
    finally:
        pyhf.set_backend(tensorlib, optimizer)  # analyse sets pyhf's global backend
    return out, json.loads((out / "results.json").read_text())


def test_results_json_has_the_measurement(results):
    _, content = results
    for key in ("mu_hat", "interval_68", "interval_95", "fit", "scan", "impacts", "plots",
                "wall_time_s"):
        assert key in content
    assert len(content["scan"]["poi_values"]) == 7
    assert {row["name"] for row in content["impacts"]["rows"]} == {"k_factor", "lumi"}


def test_mu_hat_matches_the_independent_fitter(results, reference_mu_hat):
    _, content = results
    assert content["mu_hat"] == pytest.approx(reference_mu_hat, abs=1e-3)
    (lower, upper), = content["interval_68"]
    assert lower < content["mu_hat"] < upper
    # the interference makes t_mu asymmetric: the lower side is longer (README numbers)
    assert lower == pytest.approx(0.252, abs=2e-3)
    assert upper == pytest.approx(1.681, abs=2e-3)


def test_plots_are_written(results):
    out, content = results
    for name in ("scan", "impacts"):
        path = Path(content["plots"][name])
        assert path.parent == out
        assert path.stat().st_size > 5000
