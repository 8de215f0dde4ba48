"""The spurious-signal nuisance parameter: f_j(mu) -> f_j(mu + alpha * delta(mu)).

The reference is the exact extended likelihood of a Gaussian signal on an exponential
background (scipy.stats densities) with mu replaced by mu + alpha * delta(mu), delta
from scipy's PchipInterpolator (clamped at the grid ends), plus Gauss(alpha | 0, 1).
"""

from __future__ import annotations

import json

import numpy as np
import pyhf
import pytest
from scipy import stats
from scipy.interpolate import PchipInterpolator

import ratiofactory
import ratiofactory.infer
from ratiofactory.ensemble_uncertainty import (
    add_spurious_signal,
    ratio_spreads,
    spurious_signal_table,
)
from ratiofactory.errors import InvalidModel, InvalidSpecification
from ratiofactory.spurious_signal import SpuriousSignal
from ratiofactory.testing import Exponential, Normal, ratio_model, sample_mixture

NU_S, NU_B = 40.0, 400.0
P_S = [(1.0, [Normal(5.0, 0.5)])]
P_B = [(1.0, [Exponential(0.3, 0.0, 10.0)])]
P_REF = [(0.5, P_S[0][1]), (0.5, P_B[0][1])]
GRID = [0.0, 0.5, 1.0, 2.0, 4.0]
DELTA = [0.05, 0.08, 0.2, 0.25, 0.6]


def _spec(spurious: bool = True, ensemble: int = 1) -> dict:
    def ratio(name: str) -> dict:
        single = lambda k: {"onnx": {"path": f"models/{name}_{k}.onnx"}, "output": "ratio"}
        return single(0) if ensemble == 1 else {"ensemble": [single(k) for k in range(ensemble)]}

    channel = {
        "name": "SR",
        "observables": [{"name": "x", "bounds": [0.0, 10.0]}],
        "reference": {"events": {"path": "data/reference.npz", "weight": "weight"}},
        "ratio_normalisation": "none",  # the exact ratios, as the reference likelihood uses them
        "samples": [
            {"name": "S", "yield": NU_S, "ratio": ratio("S"),
             "modifiers": [{"name": "f_S", "type": "formula", "data": {"expression": "mu"}}]},
            {"name": "B", "yield": NU_B, "ratio": ratio("B"), "modifiers": []},
        ],
    }
    if spurious:
        channel["spurious_signal"] = {"name": "alpha_ss", "parameter": "mu", "grid": list(GRID), "delta": list(DELTA)}
    return {
        "version": "1.0.0",
        "unbinned_channels": [channel],
        "observations": [{"name": "SR", "events": {"path": "data/observed.npz"}}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[0, 10]]}]}}],
    }


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("spurious")
    (root / "models").mkdir()
    (root / "data").mkdir()
    rng = np.random.default_rng(3)
    for k in range(4):  # members: the exact ratio times 1 + a small smooth distortion
        ratio_model(P_S, P_REF, path=root / "models" / f"S_{k}.onnx")
        ratio_model(P_B, P_REF, path=root / "models" / f"B_{k}.onnx")
    observed = sample_mixture([(NU_S, P_S[0][1]), (NU_B, P_B[0][1])], rng.poisson(NU_S + NU_B), rng)
    observed = observed[(observed[:, 0] >= 0) & (observed[:, 0] <= 10)]
    np.savez(root / "data" / "observed.npz", x=observed[:, 0])
    reference = sample_mixture(P_REF, 3000, rng)
    np.savez(root / "data" / "reference.npz", x=reference[:, 0], weight=np.full(len(reference), 1 / len(reference)))
    (root / "workspace.json").write_text(json.dumps(_spec()))
    return root, observed[:, 0]


def _delta(mu: float) -> float:
    return float(PchipInterpolator(GRID, DELTA)(np.clip(mu, GRID[0], GRID[-1])))


def _reference_logpdf(x: np.ndarray, mu: float, alpha: float) -> float:
    shifted = mu + alpha * _delta(mu)
    p_s, p_b = stats.norm.pdf(x, 5.0, 0.5), stats.truncexpon(b=3.0, scale=1 / 0.3).pdf(x)
    p_ref = 0.5 * p_s + 0.5 * p_b
    nll = shifted * NU_S + NU_B - np.sum(np.log((shifted * NU_S * p_s + NU_B * p_b) / p_ref))
    return float(-nll + stats.norm.logpdf(0.0, alpha, 1.0))


@pytest.mark.parametrize(("mu", "alpha"), [(0.3, 0.0), (0.7, 1.2), (1.5, -0.8), (3.0, 2.0), (6.0, -1.5)])
def test_logpdf_is_the_shifted_exact_likelihood(toy, backend, mu, alpha):
    root, x = toy
    ws = ratiofactory.Workspace.load(root / "workspace.json")
    model = ws.model()
    assert sorted(model.config.par_order) == ["alpha_ss", "mu"]
    assert model.config.param_set("alpha_ss").constrained
    pars = np.zeros(2)
    pars[model.config.par_slice("mu")] = mu
    pars[model.config.par_slice("alpha_ss")] = alpha
    value = float(model.logpdf(pars, ws.data(model))[0])
    assert value == pytest.approx(_reference_logpdf(x, mu, alpha), rel=1e-10)


def test_jax_gradient_of_the_shift(toy):
    import jax

    root, x = toy
    pyhf.set_backend("jax", precision="64b")
    try:
        ws = ratiofactory.Workspace.load(root / "workspace.json")
        model = ws.model()
        data = ws.data(model)
        grad = jax.jit(jax.grad(lambda p: model.logpdf(p, data)[0]))
        i_mu, i_a = model.config.par_slice("mu").start, model.config.par_slice("alpha_ss").start
        for mu, alpha in [(0.7, 1.2), (1.5, -0.8)]:
            pars = np.zeros(2)
            pars[i_mu], pars[i_a] = mu, alpha
            g = np.asarray(grad(pars))
            for i, (dm, da) in ((i_mu, (1e-6, 0)), (i_a, (0, 1e-6))):
                numeric = (_reference_logpdf(x, mu + dm, alpha + da) - _reference_logpdf(x, mu - dm, alpha - da)) / 2e-6
                assert g[i] == pytest.approx(numeric, rel=1e-6)
    finally:
        pyhf.set_backend("numpy", precision="64b")


def test_pchip_matches_scipy_and_is_clamped():
    table = SpuriousSignal("a", "mu", GRID, DELTA)
    mus = np.linspace(-1.0, 5.0, 601)
    np.testing.assert_allclose(table.delta_at(mus), [_delta(m) for m in mus], rtol=1e-13, atol=1e-15)
    assert np.all(table.delta_at(mus) >= min(DELTA))  # monotone data: no overshoot


def test_profiling_alpha_widens_the_interval(toy):
    root, _ = toy
    with_np = ratiofactory.Workspace.load(root / "workspace.json")
    (root / "plain.json").write_text(json.dumps(_spec(spurious=False)))
    without = ratiofactory.Workspace.load(root / "plain.json")
    widths = []
    for ws in (without, with_np):
        model = ws.model()
        scan = ratiofactory.infer.profile_scan(model, ws.data(model), np.linspace(0.0, 3.0, 31))
        ci = ratiofactory.infer.interval(scan)
        widths.append(ci.intervals[-1][1] - ci.intervals[0][0])
    assert widths[1] > widths[0]
    impacts = ratiofactory.infer.impacts(with_np.model(), with_np.data(with_np.model()))
    assert "alpha_ss" in json.dumps(impacts.to_dict())


def test_bad_tables_name_their_place():
    spec = _spec()
    spec["unbinned_channels"][0]["spurious_signal"]["grid"] = [0.0, 1.0, 1.0, 2.0, 4.0]
    with pytest.raises(InvalidSpecification, match="/unbinned_channels/0/spurious_signal/grid/2"):
        ratiofactory.Workspace(spec)
    spec = _spec()
    spec["unbinned_channels"][0]["spurious_signal"]["delta"] = [0.1, 0.2]
    with pytest.raises(InvalidSpecification, match="2 values of delta for 5 grid points"):
        ratiofactory.Workspace(spec)
    spec = _spec()
    spec["unbinned_channels"][0]["spurious_signal"]["delta"][1] = -0.1
    with pytest.raises(InvalidSpecification, match="/spurious_signal/delta/1"):
        ratiofactory.Workspace(spec)


def test_parameter_that_no_coefficient_uses_is_an_error(toy):
    root, _ = toy
    spec = _spec()
    spec["unbinned_channels"][0]["spurious_signal"]["parameter"] = "nu"
    ws = ratiofactory.Workspace(spec, base_dir=root)
    with pytest.raises(InvalidModel, match="no formula or normfactor of the channel uses 'nu'"):
        ws.model()


def test_table_of_identical_members_is_zero_and_written_into_a_new_spec(toy):
    """Members that are all the same network have no spread: Δμ̂ = 0 exactly; the input
    spec is untouched and the new one compiles."""
    root, _ = toy
    (root / "ensemble.json").write_text(json.dumps(_spec(spurious=False, ensemble=4)))
    ws = ratiofactory.Workspace.load(root / "ensemble.json")
    table = spurious_signal_table(ws, [0.5, 1.0, 2.0], n_bootstrap=4, seed=1)
    assert table.delta == (0.0, 0.0, 0.0)
    assert len(table.closure) == 3
    assert all(np.isfinite(table.closure))
    original = ws.spec
    new = add_spurious_signal(original, table, name="alpha_ens")
    assert "spurious_signal" not in original["unbinned_channels"][0]
    assert new["unbinned_channels"][0]["spurious_signal"]["name"] == "alpha_ens"
    ratiofactory.Workspace(new, base_dir=root).model()
    spreads = ratio_spreads(ws.model())
    assert [(s.sample, s.members, s.median) for s in spreads] == [("S", 4, 0.0), ("B", 4, 0.0)]


def test_command_writes_a_new_workspace_and_impacts_show_the_parameter(tmp_path):
    from cli_toy import make_toy, run, run_json

    path, _ = make_toy(tmp_path)
    before = path.read_bytes()
    new = tmp_path / "with_ss.json"
    table = run_json(["spurious-signal", path, "--output", new, "--grid", "0.5", "2", "3", "--bootstrap", "4",
                      "--plot", tmp_path / "dmu.png"], tmp_path)
    assert path.read_bytes() == before  # the input is untouched
    assert (tmp_path / "dmu.png").stat().st_size > 0
    assert table["grid"] == [0.5, 1.25, 2.0]
    assert all(d > 0 for d in table["delta"])
    entry = json.loads(new.read_text())["unbinned_channels"][0]["spurious_signal"]
    assert entry["name"] == "alpha_ss"
    assert entry["delta"] == table["delta"]
    info = run_json(["inspect", path], tmp_path, "inspect.json")
    (signal,) = info["ratio_spreads"]  # the one sample with an ensemble
    assert signal["sample"] == "signal"
    assert signal["members"] == 2
    assert signal["median"] > 0
    impacts = run_json(["impacts", new], tmp_path, "impacts.json")
    assert "alpha_ss" in json.dumps(impacts)
    result = run(["spurious-signal", path, "--output", path])
    assert result.exit_code != 0


def test_command_checks_the_output_before_any_fit(tmp_path, monkeypatch):
    """An --output whose directory does not contain the workspace's files is refused
    before the (long) fits, in spurious-signal's words."""
    from cli_toy import make_toy, one_line_error, run

    from ratiofactory import ensemble_uncertainty

    path, _ = make_toy(tmp_path / "ws")

    def no_fits(*args, **kwargs):
        raise AssertionError("fits started before the output was checked")

    monkeypatch.setattr(ensemble_uncertainty, "spurious_signal_table", no_fits)
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    one_line_error(run(["spurious-signal", path, "--output", elsewhere / "ss.json"]),
                   "reference.npz lies outside", "the directory of the --output workspace")


def test_a_workspace_without_ensembles_is_named_as_such(tmp_path):
    from cli_toy import make_toy

    path, _ = make_toy(tmp_path)
    spec = json.loads(path.read_text())
    spec["unbinned_channels"][0]["samples"][0]["ratio"] = {"onnx": {"path": "models/S_a.onnx"}, "output": "log_ratio"}
    ws = ratiofactory.Workspace(spec, base_dir=tmp_path)
    with pytest.raises(InvalidModel, match="the workspace has no ensemble ratio models"):
        spurious_signal_table(ws, [1.0])
