"""The evaluation-error wall of the minimiser (ratiofactory.infer.wall): where −2 ln L is
+inf (an event with s(x;θ) ≤ 0) MIGRAD sees a finite wall, so it steps back instead of
wandering; a fit that ends on or at the foot of the wall fails; reported values keep +inf.

References: analytic minima of small functions with a forbidden region, and the conditional
fit to the background-only Asimov data at μ = 10 on the off-shell example, which took ~100 000
MIGRAD calls (two thirds at +inf, ~18 min) on numpy without the wall and must agree with jax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyhf
import pytest

from ratiofactory.infer.errors import FitFailed
from ratiofactory.infer.fitting import FitOptions, minimize
from ratiofactory.infer.objective import FitSetup, Objective

LOCAL = FitOptions(global_search=False)


class Function(Objective):
    """−2 ln L given as a Python function (and optionally its gradient)."""

    def __init__(self, f, grad=None) -> None:
        self.model, self.data, self.backend, self.has_grad = None, None, "numpy", grad is not None
        self.calls = self.nonfinite_calls = 0
        self._last = None
        self.f, self.g = f, grad

    def __call__(self, pars):
        self.calls += 1
        return self._count(float(self.f(np.asarray(pars, dtype=float))))

    def grad(self, pars):
        return np.asarray(self.g(np.asarray(pars, dtype=float)), dtype=float)


def _setup() -> FitSetup:
    return FitSetup(("x", "y"), np.zeros(2), np.array([[-5.0, 5.0], [-5.0, 5.0]]), np.zeros(2, dtype=bool), 0, "x",
                    np.zeros(2))


def _barrier(p):  # minimum just inside the forbidden region x ≥ 1, held by a log barrier
    return (p[0] - 2) ** 2 + (p[1] - 0.5) ** 2 - 0.02 * np.log(1 - p[0]) if p[0] < 1 else np.inf


def _barrier_grad(p):
    if p[0] >= 1:
        return np.array([np.nan, np.nan])
    return np.array([2 * (p[0] - 2) + 0.02 / (1 - p[0]), 2 * (p[1] - 0.5)])


BARRIER_MINIMUM = 1.5 - np.sqrt(0.25 + 0.01)  # 2(x − 2) + 0.02/(1 − x) = 0


@pytest.mark.parametrize("method", ["minuit", "scipy"])
@pytest.mark.parametrize("exact_gradient", [False, True])
def test_a_minimum_next_to_the_forbidden_region_is_found(method, exact_gradient):
    objective = Function(_barrier, _barrier_grad if exact_gradient else None)
    result = minimize(objective, _setup(), FitOptions(method=method, global_search=False), hesse=False)
    assert result.valid
    np.testing.assert_allclose(result.values, [BARRIER_MINIMUM, 0.5], atol=2e-4)
    assert objective.nonfinite_calls > 0  # the fit did meet the forbidden region
    assert np.isfinite(result.twice_nll)
    assert result.twice_nll == pytest.approx(_barrier(result.values), abs=1e-12)  # the objective's value


@pytest.mark.parametrize("method", ["minuit", "scipy"])
def test_a_fit_ending_at_the_foot_of_the_wall_fails_clearly(method):
    """(x − 2)² cut off at x = 1: −2 ln L falls all the way into the forbidden region, so
    there is no minimum; MIGRAD alone stopped at x = 0.999998 with valid=True."""
    cliff = Function(lambda p: (p[0] - 2) ** 2 + p[1] ** 2 if p[0] < 1 else np.inf)
    with pytest.raises(FitFailed, match="foot of\\) the wall") as failed:
        minimize(cliff, _setup(), FitOptions(method=method, global_search=False), hesse=False)
    assert failed.value.result.valid is False


EXACT = Path(__file__).resolve().parents[1] / "examples" / "offshell" / "workspace" / "exact.json"


@pytest.mark.slow  # ~30 s: numpy fits on 100 000 reference events
def test_offshell_conditional_asimov_fit_at_the_poi_bound():
    """The fit that made numpy `upper-limit` on exact.json take many minutes: with the wall
    it needs a few hundred calls, and numpy and jax agree."""
    import ratiofactory
    from ratiofactory.infer import asimov_data
    from ratiofactory.infer.objective import make_setup

    pyhf.set_backend("numpy", precision="64b")
    ws = ratiofactory.Workspace.load(EXACT)
    model = ws.model()
    asimov = np.asarray(asimov_data(model, [0.0, 0.99278826, 0.0]))
    setup = make_setup(model, init={"lumi": 0.99278826, "k_factor": 0.0}).with_poi_fixed(10.0)
    results = {}
    for backend in ("numpy", "jax"):
        pyhf.set_backend(backend, precision="64b")
        try:
            objective = Objective(model, asimov)
            results[backend] = minimize(objective, setup, LOCAL, hesse=False)
            assert objective.calls < 2000, backend  # ~100 000 without the wall
            assert objective.nonfinite_calls > 0  # the minimum lies next to the forbidden region
        finally:
            pyhf.set_backend("numpy", precision="64b")
    numpy_fit, jax_fit = results["numpy"], results["jax"]
    assert numpy_fit.valid
    assert jax_fit.valid
    assert numpy_fit.twice_nll == pytest.approx(jax_fit.twice_nll, abs=1e-5)
    np.testing.assert_allclose(numpy_fit.values, jax_fit.values, atol=1e-4)
    # the minimum: k_factor = −3.864, within 1e-3 of a point where an event has s ≤ 0,
    # and what users see there is still +inf
    beyond = numpy_fit.values.copy()
    beyond[2] -= 1e-2
    assert model.nonpositive_events(beyond, asimov)
    assert not np.isfinite(Objective(model, asimov)(beyond))
