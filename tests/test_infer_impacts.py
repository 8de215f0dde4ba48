"""Pulls and impacts against an exactly Gaussian likelihood solved by linear algebra,
and Hessian-vs-refit agreement on a high-statistics pyhf model."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pyhf
import pytest

from ratiofactory import infer

# ----------------------------------------------------------------------------- Gaussian toy
# Three measurements y = A θ + noise (σ_y) of θ = (mu, a1, a2), and unit-Gaussian
# auxiliary measurements of a1 and a2: −2 ln L is exactly quadratic, so every impact
# has a closed form from weighted least squares.
NAMES = ["mu", "a1", "a2"]
A_MAIN = np.array([[1.0, 0.5, 0.3], [0.2, 1.0, 0.0], [0.1, 0.0, 0.8]])
SIGMA_Y = np.array([0.3, 0.2, 0.25])
Y = np.array([1.2, 0.3, -0.1])
AUX = np.array([0.1, -0.2])


class _Constrained(SimpleNamespace):
    def width(self):
        return [1.0]


class GaussianModel:
    """The quadratic likelihood above with pyhf's model interface."""

    def __init__(self):
        paramsets = {
            "mu": SimpleNamespace(constrained=False, n_parameters=1, suggested_init=[0.0]),
            "a1": _Constrained(constrained=True, n_parameters=1, pdf_type="normal", suggested_init=[0.0]),
            "a2": _Constrained(constrained=True, n_parameters=1, pdf_type="normal", suggested_init=[0.0]),
        }
        self.config = SimpleNamespace(
            par_names=list(NAMES), par_order=list(NAMES), poi_index=0, poi_name="mu", npars=3,
            auxdata=[0.0, 0.0], auxdata_order=["a1", "a2"], nmaindata=3, nauxdata=2,
            par_slice=lambda name: slice(NAMES.index(name), NAMES.index(name) + 1),
            param_set=lambda name: paramsets[name],
            suggested_init=lambda: [0.0, 0.0, 0.0],
            suggested_bounds=lambda: [(-10.0, 10.0)] * 3,
            suggested_fixed=lambda: [False] * 3,
        )

    def logpdf(self, pars, data):
        tensorlib, _ = pyhf.get_backend()
        xp = np if tensorlib.name == "numpy" else __import__("jax.numpy", fromlist=["numpy"])
        pars, data = xp.asarray(pars), xp.asarray(data)
        main = (data[:3] - xp.asarray(A_MAIN) @ pars) / xp.asarray(SIGMA_Y)
        aux = data[3:] - pars[1:]
        return -0.5 * (xp.sum(main**2) + xp.sum(aux**2))

    def expected_data(self, pars, include_auxdata=True):
        pars = np.asarray(pars, dtype=float)
        return np.concatenate([A_MAIN @ pars, pars[1:]]) if include_auxdata else A_MAIN @ pars


def _least_squares(fixed_index=None, fixed_value=None):
    """Independent reference: weighted least squares with one parameter optionally fixed."""
    design = np.vstack([A_MAIN, np.eye(3)[1:]])
    target = np.concatenate([Y, AUX])
    weights = 1.0 / np.concatenate([SIGMA_Y, [1.0, 1.0]])
    if fixed_index is not None:
        target = target - design[:, fixed_index] * fixed_value
        design = np.delete(design, fixed_index, axis=1)
    theta, *_ = np.linalg.lstsq(design * weights[:, None], target * weights, rcond=None)
    if fixed_index is not None:
        theta = np.insert(theta, fixed_index, fixed_value)
    fisher = (design * weights[:, None] ** 2).T @ design
    return theta, fisher


@pytest.fixture(scope="module")
def gaussian():
    return GaussianModel(), np.concatenate([Y, AUX])


def test_gaussian_impacts_match_least_squares(backend, gaussian):
    model, data = gaussian
    theta, fisher = _least_squares()
    cov = np.linalg.inv(fisher)
    hess = 2.0 * fisher
    result = infer.impacts(model, data, options=infer.FitOptions(tolerance=1e-6))
    assert result.poi_value == pytest.approx(theta[0], abs=1e-5)
    assert result.poi_error == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-6)
    for k, name in ((1, "a1"), (2, "a2")):
        row = result.row(name)
        post = np.sqrt(cov[k, k])
        assert row.pull == pytest.approx(theta[k] - AUX[k - 1], abs=1e-5)
        assert row.constraint == pytest.approx(post, rel=1e-5)
        assert row.hessian == pytest.approx(-hess[0, k] / hess[0, 0] * post, abs=1e-5)
        assert row.hessian_profiled == pytest.approx(cov[0, k] / post, abs=1e-5)
        for label, sigma in (("prefit", 1.0), ("postfit", post)):
            for direction, sign in (("up", 1), ("down", -1)):
                refit, _ = _least_squares(k, theta[k] + sign * sigma)
                assert getattr(row, f"{label}_{direction}") == pytest.approx(refit[0] - theta[0], abs=1e-4)
    # parabolic likelihood: the profiled Hessian impact is the post-fit refit impact
    for row in result.rows:
        assert row.hessian_profiled == pytest.approx(row.postfit_up, abs=1e-4)
    ranks = [max(abs(r.postfit_up), abs(r.postfit_down)) for r in result.rows]
    assert ranks == sorted(ranks, reverse=True)


def _bounded_least_squares(bound_index, bound, fixed_index=None, fixed_value=None):
    """The Gaussian fit with parameter ``bound_index`` bounded below by ``bound`` (and one
    parameter optionally fixed): the profile is a convex parabola, so the bounded minimum is
    the free one or, below the bound, the fit with the parameter at the bound."""
    if fixed_index is None:
        theta, _ = _least_squares()
    else:
        theta, _ = _least_squares(fixed_index, fixed_value)
    if theta[bound_index] >= bound:
        return theta
    if fixed_index is None:
        return _least_squares(bound_index, bound)[0]
    design = np.vstack([A_MAIN, np.eye(3)[1:]])
    target = np.concatenate([Y, AUX]) - design[:, bound_index] * bound - design[:, fixed_index] * fixed_value
    keep = [i for i in range(3) if i not in (bound_index, fixed_index)]
    weights = 1.0 / np.concatenate([SIGMA_Y, [1.0, 1.0]])
    sub, *_ = np.linalg.lstsq(design[:, keep] * weights[:, None], target * weights, rcond=None)
    theta = np.empty(3)
    theta[keep], theta[bound_index], theta[fixed_index] = sub, bound, fixed_value
    return theta


def test_poi_on_its_bound(backend, gaussian):
    """μ̂ on its lower bound (a search without excess): numpy raised LinAlgError (singular
    HESSE covariance with the POI pinned), jax showed Hessian impacts of a parabola the
    bound cuts off. Now both backends: pulls and constraints with μ held at the bound, no
    Hessian impacts (None), refit impacts one-sided, against bounded least squares."""
    model, data = gaussian
    free, _ = _least_squares()
    bound = float(free[0]) + 0.3
    result = infer.impacts(model, data, bounds={"mu": (bound, 10.0)}, init={"mu": bound + 1.0},
                           options=infer.FitOptions(tolerance=1e-6))
    assert result.at_bound == {"mu": "lower"}
    assert result.poi_value == pytest.approx(bound, abs=1e-9)
    theta, fisher = _least_squares(0, bound)
    cov = np.linalg.inv(fisher)  # over (a1, a2), mu held at the bound
    for k, name in ((1, "a1"), (2, "a2")):
        row = result.row(name)
        post = np.sqrt(cov[k - 1, k - 1])
        assert row.pull == pytest.approx(theta[k] - AUX[k - 1], abs=1e-5)
        assert row.constraint == pytest.approx(post, rel=1e-5)
        assert row.postfit_error == pytest.approx(post, rel=1e-5)
        assert row.hessian is None
        assert row.hessian_profiled is None
        for label, sigma in (("prefit", 1.0), ("postfit", post)):
            for direction, sign in (("up", 1), ("down", -1)):
                refit = _bounded_least_squares(0, bound, k, theta[k] + sign * sigma)
                assert getattr(row, f"{label}_{direction}") == pytest.approx(refit[0] - bound, abs=1e-4)
    shifts = [v for r in result.rows for v in (r.prefit_up, r.prefit_down, r.postfit_up, r.postfit_down)]
    assert min(shifts) == pytest.approx(0.0, abs=1e-6)  # one-sided: never below the bound
    assert max(shifts) > 0.01
    text = str(result)
    assert f"mu = {bound:.6g} (on its lower bound)" in text
    assert "lies on its lower bound" in text
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["at_bound"] == {"mu": "lower"}
    assert payload["rows"][0]["hessian"] is None


def test_fit_errors_with_the_poi_on_its_bound(backend, gaussian):
    """The fit's own errors with μ̂ on its bound are those with μ held there on both
    backends: jax inverted the full Hessian (errors 22 % and 9 % larger here; k_factor's
    0.991 vs 0.935 on the off-shell example with μ ∈ [1.2, 4])."""
    model, data = gaussian
    free, _ = _least_squares()
    bound = float(free[0]) + 0.3
    best = infer.fit(model, data, bounds={"mu": (bound, 10.0)}, init={"mu": bound + 1.0}, tolerance=1e-6)
    _, fisher = _least_squares(0, bound)
    np.testing.assert_allclose(best.errors[1:], np.sqrt(np.diag(np.linalg.inv(fisher))), rtol=1e-5)
    assert np.isnan(best.errors[0])
    unbounded = np.sqrt(np.diag(np.linalg.inv(_least_squares()[1])))[1:]
    assert np.all(unbounded > best.errors[1:] * 1.001)  # what the full Hessian gives: larger


def test_nuisance_parameter_on_its_bound(backend, gaussian):
    """a1 on its upper bound: its row has a pull and pre-fit refits but no post-fit error,
    constraint, post-fit or Hessian impacts; a2's row uses the covariance with a1 held."""
    model, data = gaussian
    free, _ = _least_squares()
    bound = float(free[1]) - 0.2
    result = infer.impacts(model, data, bounds={"a1": (-10.0, bound)}, init={"a1": bound - 1.0},
                           options=infer.FitOptions(tolerance=1e-6))
    assert result.at_bound == {"a1": "upper"}
    theta, fisher = _least_squares(1, bound)
    row = result.row("a1")
    assert row.pull == pytest.approx(bound - AUX[0], abs=1e-6)
    assert (row.postfit_error, row.constraint, row.hessian, row.hessian_profiled) == (None,) * 4
    assert (row.postfit_up, row.postfit_down) == (None, None)
    assert row.prefit_up == pytest.approx(0.0, abs=1e-6)  # already at the upper bound
    assert row.prefit_down == pytest.approx(_least_squares(1, bound - 1.0)[0][0] - theta[0], abs=1e-4)
    cov = np.linalg.inv(fisher)  # over (mu, a2)
    other = result.row("a2")
    assert other.constraint == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-5)
    assert other.hessian_profiled == pytest.approx(cov[0, 1] / np.sqrt(cov[1, 1]), rel=1e-4)
    assert "a1 (upper)" in str(result)


def test_impacts_print_and_serialise(gaussian):
    model, data = gaussian
    result = infer.impacts(model, data, refit=False)
    assert result.rows[0].postfit_up is None
    text = str(result)
    assert "a1" in text
    assert "a2" in text
    assert "hessian" in text
    payload = json.loads(json.dumps(result.to_dict()))
    assert [r["name"] for r in payload["rows"]] == [r.name for r in result.rows]
    assert set(payload["rows"][0]) >= {"pull", "constraint", "hessian", "hessian_profiled", "postfit_up"}


def test_impacts_reject_poi_and_unknown(gaussian):
    model, data = gaussian
    with pytest.raises(infer.InvalidFitSetup, match="POI or fixed"):
        infer.impacts(model, data, parameters=["mu"])
    with pytest.raises(infer.InvalidFitSetup, match="unknown parameter 'nope'"):
        infer.impacts(model, data, parameters=["nope"])


def test_high_statistics_hessian_agrees_with_refits():
    """Near-Gaussian pyhf model (10⁴ events per bin): the profiled Hessian impact agrees
    with the symmetrised post-fit refit impact to ~1% (the code4 interpolation keeps the
    likelihood from being exactly parabolic over ±1σ); pulls use the auxiliary data."""
    spec = {"channels": [{"name": "sr", "samples": [
        {"name": "sig", "data": [500.0, 800.0],
         "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "bkg", "data": [10000.0, 12000.0],
         "modifiers": [{"name": "norm", "type": "normsys", "data": {"hi": 1.02, "lo": 0.98}},
                       {"name": "shape", "type": "histosys",
                        "data": {"hi_data": [10100.0, 11950.0], "lo_data": [9900.0, 12050.0]}}]}]}]}
    model = pyhf.Model(spec, poi_name="mu", validate=False)
    data = [10700.0, 12600.0, 0.3, -0.1]  # auxdata shifted off zero
    aux = dict(zip(model.config.auxdata_order, data[2:], strict=True))  # pyhf's order: shape, norm
    result = infer.impacts(model, data)
    for row in result.rows:
        assert row.postfit_up * row.postfit_down < 0
        symmetric = 0.5 * (row.postfit_up - row.postfit_down)
        assert row.hessian_profiled == pytest.approx(symmetric, rel=2e-2)
        assert row.pull == pytest.approx(row.bestfit - aux[row.name], abs=1e-12)
