"""validation/offshell_coverage.py: pseudo-experiments from the exact densities of the
off-shell example, pooled into one workspace and fitted as sparse toys.

References: physics.py's expected yield ν(μ) (the generator's mean count), the constraint
widths of the workspace (the auxiliary measurements), and a standalone fit (infer.fit on a
workspace holding only one experiment's events, dense likelihood) for the pooled t_μ."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pyhf
import pytest

import ratiofactory
from ratiofactory import infer

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def coverage():
    spec = importlib.util.spec_from_file_location("offshell_coverage", ROOT / "validation" / "offshell_coverage.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["offshell_coverage"] = module
    spec.loader.exec_module(module)
    pyhf.set_backend("numpy", precision="64b")
    return module, ratiofactory.Workspace.load(module.EXACT).model()


def test_experiments_follow_the_exact_model(coverage):
    module, model = coverage
    n = 60
    drawn = module.draw_experiments(model, 1.0, n, seed=3)
    expected = module.offshell_model().expected_yield(1.0)  # 988.7
    assert abs(drawn.counts.mean() - expected) < 4 * np.sqrt(expected / n)
    assert drawn.counts.std() > 0.5 * np.sqrt(expected)  # Poisson-fluctuated, not fixed
    events = np.concatenate(drawn.events)
    assert events[:, 0].min() >= 220.0
    assert events[:, 0].max() <= 2000.0
    assert np.abs(events[:, 1]).max() <= 1.0
    lumi, k_factor = drawn.aux.T  # auxdata order: lumi, k_factor
    assert model.config.auxdata_order == ["lumi", "k_factor"]
    assert abs(lumi.mean() - 1.0) < 4 * 0.017 / np.sqrt(n)
    assert 0.5 * 0.017 < lumi.std() < 1.5 * 0.017
    assert abs(k_factor.mean()) < 4 / np.sqrt(n)
    # the same seed gives the same experiments
    again = module.draw_experiments(model, 1.0, 2, seed=3)
    np.testing.assert_array_equal(again.events[1], drawn.events[1])


def test_pooled_experiments_give_the_standalone_statistic(coverage, tmp_path):
    module, model = coverage
    sets = [module.draw_experiments(model, mu, 3, seed=5) for mu in (0.0, 2.0)]
    pooled, toys = module.pooled_model(sets, tmp_path / "pool")
    assert [len(t) for t in toys] == [3, 3]
    assert pooled.config.nmaindata == sum(s.counts.sum() for s in sets) + 100_000
    setup = module.prepare_setup(model, "tmu", poi=None, init=None, fixed=None, bounds=None)
    t, muhat, failed = module.experiment_statistics(pooled, toys[1], 2.0, setup, batch_size=8)
    assert failed == 0
    assert np.all(t >= 0.0)
    # experiment 2 of mu = 2 alone, in its own workspace, fitted by infer.fit (dense)
    events = sets[1].events[2]
    folder = tmp_path / "alone"
    alone, _ = module.pooled_model([module.Experiments(2.0, [events], sets[1].aux[2:3])], folder)
    data = np.concatenate([np.ones(len(events)), np.zeros(100_000), sets[1].aux[2]])
    free = infer.fit(alone, data, hesse=False)
    conditional = infer.fit(alone, data, fixed={"mu": 2.0}, hesse=False)
    assert free.poi_value == pytest.approx(muhat[2], abs=2e-3)
    assert t[2] == pytest.approx(max(conditional.twice_nll - free.twice_nll, 0.0), abs=1e-3)
    rows = module.coverage_rows(2.0, t, {"critical": {"0.682689": 1.0, "0.9545": 4.0},
                                         "teststats": [0.5] * 100})
    assert [r["n"] for r in rows] == [3] * 4
    assert rows[0]["coverage"] == rows[1]["coverage"]  # critical values equal to Wilks' here
