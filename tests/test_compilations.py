"""Compile once: a fit (with MINOS), a profile scan, intervals and impacts of one model
compile −2 ln L twice: its value and gradient (MIGRAD), and its value vectorised over
parameter points in buckets of ``BATCH_POINTS`` (the global-minimum search); the Hessian
goes through the compiled gradient. The bound below is the design: it fails if someone adds a jit per call
site, per data vector or per scan point, or an eager pass of jax operations over the
likelihood. Fits to observed data compile the sparse likelihood's (infer/sparse_data.py)
instead of the dense one; Asimov datasets are computed on numpy (no eager jax pass)."""

from __future__ import annotations

import numpy as np
import pyhf
import pytest
from cli_toy import make_toy

import ratiofactory
from ratiofactory import infer
from ratiofactory.compilations import CompilationCounter
from ratiofactory.infer.objective import Objective, difference_hessian

#: two programs of −2 ln L, plus at most five one-off transfers ("stage" programs) when
#: the per-event arrays and the data vectors are first put on the device
MAX_COMPILATIONS = 7


@pytest.fixture
def toy_jax(tmp_path):
    path, _ = make_toy(tmp_path)
    pyhf.set_backend("jax", precision="64b")
    try:
        yield ratiofactory.Workspace.load(path)
    finally:
        pyhf.set_backend("numpy", precision="64b")


def test_fit_scan_and_impacts_compile_once(toy_jax):
    ws = toy_jax
    with CompilationCounter() as counter:
        model = ws.model()
        data = ws.data(model)
        best = infer.fit(model, data, minos=["mu"])
        scan = infer.profile_scan(model, data, np.linspace(0.0, 2.5, 11))
        infer.interval(scan)
        infer.impacts(model, data)
    assert best.valid
    assert counter.names["jit(twice_nll)"] <= 2, counter.names
    assert counter.count <= MAX_COMPILATIONS, counter.names
    shifted = data.at[0].set(0.0)
    with CompilationCounter() as again:  # the same model, other data of the same length: nothing new
        infer.fit(model, shifted)
        infer.profile_scan(model, shifted, [0.5, 1.0])
    assert again.count == 0, again.names


def test_asimov_data_compile_nothing(toy_jax):
    import jax

    model = toy_jax.model()
    jax.clear_caches()  # eager operations would compile again (~40 small programs)
    with CompilationCounter() as counter:
        asimov = infer.asimov_data(model, np.array(model.config.suggested_init()) * 1.1)
    assert counter.count <= 1, counter.names  # the transfer of the data vector
    pyhf.set_backend("numpy", precision="64b")
    expected = infer.asimov_data(model, np.array(model.config.suggested_init()) * 1.1)
    pyhf.set_backend("jax", precision="64b")
    np.testing.assert_allclose(np.asarray(asimov), expected, rtol=1e-13)


def test_difference_hessian_equals_the_exact_one(toy_jax):
    import jax

    model = toy_jax.model()
    data = toy_jax.data(model)
    best = infer.fit(model, data)
    objective = Objective(model, data)
    logpdf, arrays = ratiofactory.model.traceable_logpdf(model)
    exact = jax.jit(jax.hessian(lambda p, a: -2.0 * logpdf(p, data, a)[0]))(best.values, arrays)
    np.testing.assert_allclose(objective.hessian(best.values), np.asarray(exact), rtol=1e-7, atol=1e-9)
    # the covariance the fit reports is 2 H⁻¹ of the exact Hessian
    np.testing.assert_allclose(best.covariance, 2.0 * np.linalg.inv(np.asarray(exact)), rtol=1e-6)


def test_difference_hessian_on_a_pyhf_model_and_a_curved_function(backend):
    model = pyhf.simplemodels.uncorrelated_background([5.0, 3.0], [50.0, 30.0], [5.0, 4.0], validate=False)
    data = np.array([57.0, 30.0, *model.config.auxdata])
    result = infer.fit(model, data)
    if backend == "jax":
        import jax

        exact = jax.jit(jax.hessian(lambda p: -2.0 * model.logpdf(p, data)[0]))(result.values)
        np.testing.assert_allclose(Objective(model, data).hessian(result.values), exact, rtol=1e-7)
    # exp(3x) + x²y⁴ at (0.4, -1.3): every entry of the Hessian known in closed form
    grad = lambda v: np.array([3 * np.exp(3 * v[0]) + 2 * v[0] * v[1] ** 4, 4 * v[0] ** 2 * v[1] ** 3])
    x, y = 0.4, -1.3
    expected = [[9 * np.exp(3 * x) + 2 * y**4, 8 * x * y**3], [8 * x * y**3, 12 * x**2 * y**2]]
    np.testing.assert_allclose(difference_hessian(grad, np.array([x, y])), expected, rtol=1e-9)
    # on a bound where the function ends: the one-sided difference on the inside
    log_grad = lambda v: np.array([1.0 / v[0] + v[1], v[0] + 3 * v[1] ** 2]) if v[0] > 0 else np.full(2, np.nan)
    np.testing.assert_allclose(difference_hessian(log_grad, np.array([1.0, 0.5])), [[-1.0, 1.0], [1.0, 3.0]],
                               rtol=1e-6)
    with np.errstate(invalid="ignore", divide="ignore"):
        assert difference_hessian(lambda v: np.array([0.5 / np.sqrt(v[0])]), np.array([0.0])) is None


def test_verbose_cli_reports_the_compilations(tmp_path):
    from cli_toy import run

    path, _ = make_toy(tmp_path)
    result = run(["fit", str(path), "--backend", "jax", "--verbose"])
    assert result.exit_code == 0, result.output
    line, = [x for x in result.stderr.splitlines() if x.startswith("jax: ")]
    count = int(line.split()[1])
    assert 1 <= count <= MAX_COMPILATIONS
    assert "XLA compilations" in line
    quiet = run(["fit", str(path), "--backend", "jax", "--verbose", "--quiet"])
    assert "XLA" not in quiet.stderr
    numpy = run(["fit", str(path), "--verbose"])
    assert "XLA" not in numpy.stderr
