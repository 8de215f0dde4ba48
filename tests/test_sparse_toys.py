"""Sparse toys on every kind of unbinned model: per-event shape systematics (codes 0, 1, 4,
one and two per sample) in both shape-normalisation modes, an ensemble, two unbinned
channels and a binned one. The sparse −2 ln L must equal the dense one to 1e-10 (relative)
and give the same fits, on numpy and jax."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pyhf
import pytest

import ratiofactory
from ratiofactory.infer.objective import make_setup
from ratiofactory.interpolation import interpolate, prepare_interpolation
from ratiofactory.toys import fit_toys, generate_toys
from ratiofactory.toys.shape_integrals import build
from ratiofactory.toys.sparse import SparseLikelihood

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "offshell" / "workspace"


def _variant() -> dict:
    """exact.json with more of everything: a code1 and a code0 shape systematic beside the
    code4 one (two on sample S), an ensemble, a second unbinned channel in ``reference``
    normalisation and a binned channel sharing the lumi."""
    spec = json.loads((EXAMPLE / "exact.json").read_text())
    first = spec["unbinned_channels"][0]
    s_sample = first["samples"][0]
    kf = next(m for m in s_sample["modifiers"] if m["type"] == "ratiosys")
    s_sample["modifiers"].append({"name": "shape_c1", "type": "ratiosys",
                                  "data": {**copy.deepcopy(kf["data"]), "interpolation": "code1"}})
    kf["data"]["lo"] = {"ensemble": [kf["data"]["lo"], copy.deepcopy(kf["data"]["lo"])], "aggregate": "mean"}
    second = copy.deepcopy(first)
    second["name"] = "SR_copy"
    second["shape_normalisation"] = "reference"
    sbi = second["samples"][1]
    for m in sbi["modifiers"]:
        if m["type"] == "ratiosys":
            m["data"]["interpolation"] = "code0"
    spec["unbinned_channels"].append(second)
    spec["channels"] = [{"name": "CR", "samples": [
        {"name": "bkg", "data": [50.0, 40.0], "modifiers": [{"name": "lumi", "type": "lumi", "data": None}]},
        {"name": "sig", "data": [5.0, 8.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]}]}]
    spec["observations"] += [{"name": "SR_copy", "events": spec["observations"][0]["events"]},
                             {"name": "CR", "data": [53.0, 49.0]}]
    return spec


def _small_copy(root: Path, n_reference: int = 4000) -> None:
    """The example's exact models with a 4000-event reference sample (fast tests)."""
    (root / "models").mkdir()
    shutil.copytree(EXAMPLE / "models" / "exact", root / "models" / "exact")
    (root / "data").mkdir()
    with np.load(EXAMPLE / "data" / "reference.npz") as reference:
        keep = {k: reference[k][:n_reference] for k in reference.files}
    np.savez(root / "data" / "reference.npz", **keep)
    shutil.copy(EXAMPLE / "data" / "observed.npz", root / "data" / "observed.npz")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    pyhf.set_backend("numpy", precision="64b")
    root = tmp_path_factory.mktemp("sparse")
    _small_copy(root)
    spec = _variant()
    for channel in spec["unbinned_channels"]:
        channel["reference"]["events"].pop("sha256", None)
    both = ratiofactory.Workspace(spec, base_dir=root).model()
    spec["unbinned_channels"][0]["shape_normalisation"] = "reference"
    spec["unbinned_channels"][1]["shape_normalisation"] = "nominal"
    swapped = ratiofactory.Workspace(spec, base_dir=root).model()
    return both, swapped


def _dense_twice_nll(model, xp):
    if xp is np:
        return lambda pars, toy: -2.0 * float(np.reshape(model.logpdf(pars, toy), -1)[0])
    import jax

    return jax.jit(lambda pars, toy: -2.0 * jax.numpy.reshape(model.logpdf(pars, toy), -1)[0])


def _sparse_twice_nll(sparse, xp):
    if xp is np:
        return lambda pars, packed: sparse.twice_nll(pars, packed, sparse.arrays)
    import jax

    return jax.jit(lambda pars, packed, arrays: sparse.twice_nll(pars, packed, arrays)), sparse.arrays


def _points(model, n, seed):
    rng = np.random.default_rng(seed)
    names = model.config.par_order
    points = []
    for k in range(n):
        pars = np.array(model.config.suggested_init(), float)
        for i, name in enumerate(names):
            lo, hi = model.config.suggested_bounds()[i]
            if name == "mu":
                pars[i] = rng.uniform(0.0, 4.0)
            elif name == "lumi":
                pars[i] = rng.uniform(0.97, 1.03)
            else:  # shape parameters: inside, on and beyond ±1, up to the bounds
                pars[i] = [-5.0, -1.0, -0.3, 0.0, 0.6, 1.0, 2.7, 5.0][(k + i) % 8] if k < 8 else rng.uniform(lo, hi)
        points.append(pars)
    return points


def test_reference_integrals_are_exact_for_every_code():
    rng = np.random.default_rng(3)
    n = 5000
    hi, lo = rng.uniform(0.5, 2.0, (2, n)), rng.uniform(0.5, 2.0, (2, n))
    w = rng.uniform(0.0, 1.0, n)
    for codes in (("code4", "code4"), ("code1", "code0"), ("code0", "code4")):
        arrays = [prepare_interpolation(c, hi[k], lo[k]).arrays for k, c in enumerate(codes)]
        integral = build(w, [(codes[0], arrays[0], (-5.0, 5.0)), (codes[1], arrays[1], (-3.0, 4.0))], np)
        for a in (-5.0, -1.0, -0.999, 0.0, 0.3, 1.0, 3.3, 5.0):
            for b in (-3.0, -0.5, 1.0, 4.0):
                dense = np.sum(w * interpolate(codes[0], a, hi[0], lo[0]) * interpolate(codes[1], b, hi[1], lo[1]))
                assert float(integral([a, b])) == pytest.approx(dense, rel=1e-13)


@pytest.mark.slow_when(backend="jax")
def test_sparse_likelihood_equals_dense(models, backend):
    xp = np if backend == "numpy" else pytest.importorskip("jax.numpy")
    for model in models:
        sparse = SparseLikelihood(model, xp)
        assert any(i is not None for per_channel in sparse.integrals for i in per_channel)
        dense_nll = _dense_twice_nll(model, xp)
        sparse_nll = jax_arrays = None
        if xp is np:
            sparse_nll = _sparse_twice_nll(sparse, xp)
        else:
            sparse_nll, jax_arrays = _sparse_twice_nll(sparse, xp)
        toys = generate_toys(model, model.config.suggested_init(), 3, seed=4)
        for toy in toys:
            packed = sparse.pack_one(toy)
            for pars in _points(model, 12, 1):
                args = (xp.asarray(pars), packed) if xp is np else (xp.asarray(pars), packed, jax_arrays)
                value = float(sparse_nll(*args))
                dense = float(dense_nll(xp.asarray(pars), xp.asarray(toy)))
                assert value == pytest.approx(dense, rel=1e-10, abs=1e-10)


@pytest.mark.slow
def test_sparse_gradient_equals_dense(models):
    jax = pytest.importorskip("jax")
    pyhf.set_backend("jax", precision="64b")
    try:
        model = models[0]
        sparse = SparseLikelihood(model)
        toy = generate_toys(model, model.config.suggested_init(), 1, seed=8)[0]
        packed = sparse.pack_one(toy)
        sparse_grad = jax.jit(jax.grad(lambda p, a: sparse.twice_nll(p, packed, a)))
        dense_grad = jax.jit(jax.grad(lambda p: 2.0 * model.nll(p, jax.numpy.asarray(toy))))
        for pars in _points(model, 4, 2):
            np.testing.assert_allclose(sparse_grad(pars, sparse.arrays), dense_grad(pars), rtol=1e-9, atol=1e-8)
    finally:
        pyhf.set_backend("numpy", precision="64b")


@pytest.mark.slow_when(backend="jax")
def test_sparse_toy_fits_equal_dense_fits(models, backend):
    model = models[0]
    setup = make_setup(model)
    toys = generate_toys(model, model.config.suggested_init(), 2, seed=6)
    sparse = fit_toys(model, toys, setup, starts="off")
    dense = fit_toys(model, toys, setup, starts="off", sparse=False)
    assert sparse.converged.all()
    assert dense.converged.all()
    np.testing.assert_allclose(sparse.twice_nll, dense.twice_nll, rtol=1e-10)
    np.testing.assert_allclose(sparse.values, dense.values, atol=2e-4 if backend == "numpy" else 1e-7)


@pytest.mark.slow
def test_hand_written_derivatives_equal_autodiff(models):
    """The toy Newton fits' value, gradient and Hessian (per-event sums, sparse_derivatives)
    against jax autodiff of the dense likelihood, on every variant model (codes 0, 1, 4, two
    systematics on one sample, both normalisation modes, binned channel) and at α inside, on
    and beyond ±1."""
    jax = pytest.importorskip("jax")
    from ratiofactory.toys.sparse_derivatives import value_grad_hess

    pyhf.set_backend("jax", precision="64b")
    try:
        for model in models:
            sparse = SparseLikelihood(model)
            toy = generate_toys(model, model.config.suggested_init(), 1, seed=9)[0]
            gathered = sparse.gather(sparse.pack_one(toy), sparse.arrays)
            ours = jax.jit(lambda p, g, a, s=sparse: value_grad_hess(s, p, g, a))
            toy_array = jax.numpy.asarray(toy)

            def dense(p, m=model, t=toy_array):
                return 2.0 * m.nll(p, t)

            dense_grad, dense_hess = jax.jit(jax.grad(dense)), jax.jit(jax.hessian(dense))
            for pars in _points(model, 8, 5):
                value, grad, hess = ours(jax.numpy.asarray(pars), gathered, sparse.arrays)
                assert float(value) == pytest.approx(float(dense(pars)), rel=1e-10)
                np.testing.assert_allclose(grad, dense_grad(pars), rtol=1e-8, atol=1e-7)
                np.testing.assert_allclose(hess, dense_hess(pars), rtol=1e-8, atol=1e-6 * np.abs(hess).max())
    finally:
        pyhf.set_backend("numpy", precision="64b")
