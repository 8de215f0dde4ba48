"""A mixed workspace: an exact-ratio unbinned channel plus a pyhf binned channel sharing
the POI ``mu`` and a normsys ``bkg_xs``.

The reference NLL is pyhf's logpdf of the binned channel alone plus an independent
unbinned computation from scipy.stats densities; pyhf.infer runs on the mixed model
directly (the model has pyhf.Model's interface).
"""

from __future__ import annotations

import json

import numpy as np
import pyhf
import pytest
from scipy import stats

import ratiofactory
import ratiofactory.infer
from ratiofactory.errors import InvalidModel, InvalidSpecification
from ratiofactory.testing import Exponential, Normal, ratio_model, sample_mixture

NU_S, NU_B = 30.0, 300.0
XS_HI, XS_LO = 1.1, 0.9
P_S = [(1.0, [Normal(5.0, 0.5)])]
P_B = [(1.0, [Exponential(0.3, 0.0, 10.0)])]
P_REF = [(0.5, P_S[0][1]), (0.5, P_B[0][1])]

BINNED = [{"name": "SR_2l2v", "samples": [
    {"name": "signal", "data": [3.0, 6.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
    {"name": "background", "data": [40.0, 30.0], "modifiers": [
        {"name": "bkg_xs", "type": "normsys", "data": {"hi": 1.05, "lo": 0.93}},
        {"name": "stat", "type": "staterror", "data": [3.0, 2.5]}]}]}]


def _unbinned(bkg_modifier: dict | None = None) -> dict:
    onnx = lambda name: {"onnx": {"path": f"models/{name}.onnx"}, "output": "ratio"}
    return {
        "name": "SR_4l",
        "observables": [{"name": "x", "bounds": [0.0, 10.0]}],
        "reference": {"events": {"path": "data/reference.npz", "weight": "weight"}},
        "samples": [
            {"name": "S", "yield": NU_S, "ratio": onnx("S"),
             "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "B", "yield": NU_B, "ratio": onnx("B"),
             "modifiers": [bkg_modifier or {"name": "bkg_xs", "type": "normsys", "data": {"hi": XS_HI, "lo": XS_LO}}]},
        ],
    }


def _spec(**overrides) -> dict:
    spec = {
        "version": "1.0.0",
        "channels": BINNED,
        "unbinned_channels": [_unbinned()],
        "observations": [{"name": "SR_2l2v", "data": [47.0, 33.0]},
                         {"name": "SR_4l", "events": {"path": "data/observed.npz"}}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[0, 10]]}]}}],
    }
    spec.update(overrides)
    return spec


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    (root / "models").mkdir()
    (root / "data").mkdir()
    ratio_model(P_S, P_REF, path=root / "models" / "S.onnx")
    ratio_model(P_B, P_REF, path=root / "models" / "B.onnx")
    rng = np.random.default_rng(5)
    observed = sample_mixture([(NU_S, P_S[0][1]), (NU_B, P_B[0][1])], rng.poisson(NU_S + NU_B), rng)
    observed = observed[(observed[:, 0] >= 0) & (observed[:, 0] <= 10)]
    np.savez(root / "data" / "observed.npz", x=observed[:, 0])
    reference = sample_mixture(P_REF, 2000, rng)
    np.savez(root / "data" / "reference.npz", x=reference[:, 0], weight=np.full(len(reference), 1 / len(reference)))
    (root / "workspace.json").write_text(json.dumps(_spec()))
    return root, observed[:, 0]


def _code4(alpha: float, hi: float, lo: float) -> float:
    prev = pyhf.get_backend()
    pyhf.set_backend("numpy")
    try:
        interp = pyhf.interpolators.code4([[[[lo], [1.0], [hi]]]], alpha0=1)
        return float(np.asarray(interp(pyhf.tensorlib.astensor([[alpha]])))[0, 0, 0, 0])
    finally:
        pyhf.set_backend(*prev)


def _exact_ratios(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p_s = stats.norm.pdf(x, 5.0, 0.5)
    p_b = stats.truncexpon(b=3.0, scale=1 / 0.3).pdf(x)
    p_ref = 0.5 * p_s + 0.5 * p_b
    return p_s / p_ref, p_b / p_ref


def _reference_logpdf(pars: dict, x: np.ndarray, binned_model: pyhf.Model, binned_data,
                      reference: np.ndarray) -> float:
    """pyhf's logpdf of the binned channel + the exact unbinned extended likelihood, each
    ratio divided by its mean over the (equal-weight) ``reference`` events, as
    ``ratio_normalisation: "reference"`` (the default) prescribes."""
    binned_pars = [v for n in binned_model.config.par_order for v in np.atleast_1d(pars[n])]
    binned = float(binned_model.logpdf(pyhf.tensorlib.astensor(binned_pars), binned_data)[0])
    r_s, r_b = _exact_ratios(x)
    n_s, n_b = (float(np.mean(r)) for r in _exact_ratios(reference))
    c_s, c_b = pars["mu"] * NU_S, NU_B * _code4(pars["bkg_xs"], XS_HI, XS_LO)
    unbinned_nll = c_s + c_b - np.sum(np.log(c_s * r_s / n_s + c_b * r_b / n_b))
    return binned - unbinned_nll


@pytest.mark.slow_when(backend="jax")  # eager jax evaluation of pyhf: ~4 s; numpy runs in the fast suite
def test_nll_is_pyhf_plus_exact_unbinned(mixed, backend):
    root, x = mixed
    ws = ratiofactory.Workspace.load(root / "workspace.json")
    model = ws.model()
    data = ws.data(model)
    reference_events = np.load(root / "data" / "reference.npz")["x"]
    binned_only = {k: v for k, v in _spec().items() if k != "unbinned_channels"}
    reference = pyhf.Workspace({**binned_only, "observations": [_spec()["observations"][0]]})
    binned_model = reference.model()
    binned_data = reference.data(binned_model)
    # one parameter per name, one constraint for the shared normsys (pyhf's)
    assert sorted(model.config.par_order) == ["bkg_xs", "mu", "stat"]
    assert model.config.nauxdata == binned_model.config.nauxdata
    rng = np.random.default_rng(2)
    for _ in range(8 if backend == "numpy" else 3):
        pars = {"mu": rng.uniform(0.2, 3.0), "bkg_xs": rng.uniform(-2.0, 2.0), "stat": rng.uniform(0.9, 1.1, 2)}
        vector = [v for n in model.config.par_order for v in np.atleast_1d(pars[n])]
        expected = _reference_logpdf(pars, x, binned_model, binned_data, reference_events)
        assert float(model.logpdf(vector, data)[0]) == pytest.approx(expected, rel=1e-10)


def test_pyhf_infer_runs_on_mixed_model(mixed):
    root, _ = mixed
    ws = ratiofactory.Workspace.load(root / "workspace.json")
    model = ws.model()
    data = ws.data(model)
    pdf = model  # a pyhf.Model stand-in as it is
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(strategy=1, tolerance=1e-4))
    try:
        bestfit = np.asarray(pyhf.infer.mle.fit(data, pdf))
        cls, expected = pyhf.infer.hypotest(2.0, data, pdf, return_expected=True)
        limit = pyhf.infer.intervals.upper_limits.upper_limit(data, pdf, scan=np.linspace(0, 5, 11))
    finally:
        pyhf.set_backend("numpy")
    assert 0 < float(cls) < 1
    assert 0 < float(expected) < 1
    ours = ratiofactory.infer.hypotest(model, data, 2.0)
    assert float(cls) == pytest.approx(ours.cls, rel=1e-4)
    assert float(expected) == pytest.approx(ours.expected_cls[2], rel=1e-4)
    assert bestfit == pytest.approx(ratiofactory.infer.fit(model, data, hesse=False).values, abs=1e-3)
    assert 0 < float(limit[0]) < 5


def test_toys_are_poisson_around_asimov(mixed):
    root, _ = mixed
    ws = ratiofactory.Workspace.load(root / "workspace.json")
    model = ws.model()
    pars = np.asarray(model.config.suggested_init())
    expected = np.asarray(model.expected_data(pars))
    np.random.seed(3)  # noqa: NPY002 (pyhf's toys draw from numpy's global state)
    toys = np.asarray(model.make_pdf(pars).sample((4000,)))
    assert toys.shape == (4000, expected.size)
    n_binned, n_obs = 2, len(ws.model().unbinned_channels[0].observed_weights)
    assert np.all(toys[:, n_binned:n_binned + n_obs] == 0)  # observed-event slots have rate 0
    main = slice(0, model.config.nmaindata)
    assert np.all(toys[:, main] == np.round(toys[:, main]))
    # the total unbinned count is Poisson(ν): mean and variance within 4 standard errors
    total = toys[:, n_binned:model.config.nmaindata].sum(axis=1)
    nu = expected[n_binned:model.config.nmaindata].sum()
    assert abs(total.mean() - nu) < 4 * np.sqrt(nu / 4000)
    np.testing.assert_allclose(toys[:, :n_binned].mean(axis=0), expected[:n_binned], rtol=0.05)
    # auxdata: the staterror constraints (Normal) and the normsys (Normal around 0)
    np.testing.assert_allclose(toys[:, main.stop:].mean(axis=0), expected[main.stop:], atol=0.1)
    assert float(model.make_pdf(pars).log_prob(expected)) == pytest.approx(float(model.logpdf(pars, expected)[0]))


# ----------------------------------------------------------------------------- bad input


def test_normfactor_versus_normsys_names_both_places():
    bad = _unbinned({"name": "bkg_xs", "type": "normfactor", "data": None})
    ws = ratiofactory.Workspace(_spec(unbinned_channels=[bad]))
    with pytest.raises(InvalidModel, match=r"'bkg_xs'.*/channels/0/samples/1/modifiers/0.*/unbinned_channels/0"):
        ws.model()


def test_lumi_versus_normsys_names_both_places():
    """lumi's σ comes from the one measurement config, so two lumi modifiers always agree;
    what can conflict is the name 'lumi' used as a lumi in one channel and a normsys in another."""
    channels = [{"name": "CR", "samples": [{"name": "b", "data": [100.0], "modifiers": [
        {"name": "lumi", "type": "lumi", "data": None}]}]}]
    bad = _unbinned({"name": "lumi", "type": "normsys", "data": {"hi": 1.02, "lo": 0.98}})
    spec = _spec(channels=channels, unbinned_channels=[bad],
                 observations=[{"name": "CR", "data": [100.0]}, {"name": "SR_4l", "events": {"path": "o.npz"}}])
    spec["measurements"][0]["config"]["parameters"].append(
        {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.5, 1.5]], "inits": [1.0]})
    with pytest.raises(InvalidModel, match=r"'lumi'.*/channels/0/samples/0/modifiers/0.*/unbinned_channels/0"):
        ratiofactory.Workspace(spec).model()


def test_missing_observation_is_an_error():
    spec = _spec(observations=[{"name": "SR_2l2v", "data": [47.0, 33.0]}])
    with pytest.raises(InvalidSpecification, match="no observation of channel 'SR_4l'"):
        ratiofactory.Workspace(spec)


def test_binned_and_unbinned_channel_with_one_name():
    unbinned = {**_unbinned(), "name": "SR_2l2v"}
    spec = _spec(unbinned_channels=[unbinned], observations=[{"name": "SR_2l2v", "data": [47.0, 33.0]}])
    with pytest.raises(InvalidSpecification, match="duplicate channel name 'SR_2l2v'"):
        ratiofactory.Workspace(spec)


@pytest.mark.slow  # 5.5 s
def test_sparse_toys_are_the_dense_toys_and_fit_the_same(mixed):
    """Toys kept as non-zero entries (binned counts, event weights, auxdata of both kinds)
    are the dense toys, pack to the same arrays and fit to the same values."""
    from ratiofactory.infer.objective import make_setup
    from ratiofactory.toys import fit_toys, generate_toys
    from ratiofactory.toys.sparse import SparseLikelihood

    root, _ = mixed
    pyhf.set_backend("numpy", precision="64b")
    model = ratiofactory.Workspace.load(root / "workspace.json").model()
    pars = model.config.suggested_init()
    dense = generate_toys(model, pars, 6, seed=9)
    sparse = generate_toys(model, pars, 6, seed=9, sparse=True)
    np.testing.assert_array_equal(sparse.dense(), dense)
    np.testing.assert_array_equal(sparse[2:4].dense(), dense[2:4])
    np.testing.assert_array_equal(sparse[np.array([5, 0])].dense(), dense[[5, 0]])
    assert dense[:, :2].sum() > 0
    assert sparse.offsets[1] < dense.shape[1] / 5
    packer = SparseLikelihood(model)
    (rest_s, idx_s, w_s), (rest_d, idx_d, w_d) = packer.pack(sparse), packer.pack(dense)
    np.testing.assert_array_equal(rest_s, rest_d)
    for channel, events in enumerate(packer.slices):  # the same weight on each event (in any order)
        n_events = events.stop - events.start
        for toy in range(len(dense)):
            weights = [np.bincount(i[toy], v[toy], minlength=n_events)
                       for i, v in ((idx_s[channel], w_s[channel]), (idx_d[channel], w_d[channel]))]
            np.testing.assert_array_equal(weights[0], weights[1])
            np.testing.assert_array_equal(weights[1], dense[toy, events])
    pyhf.set_backend("jax", precision="64b")
    try:
        setup = make_setup(model)
        from_sparse, from_dense = fit_toys(model, sparse, setup), fit_toys(model, dense, setup)
    finally:
        pyhf.set_backend("numpy", precision="64b")
    assert from_sparse.converged.all()
    # the events are summed in another order: the minimum moves by round-off only
    np.testing.assert_allclose(from_sparse.values, from_dense.values, rtol=1e-9, atol=1e-9)
