"""Upper limits: every crossing of CLs with the level (honest limits on a non-monotone CLs),
the same limits as the previous root finder where CLs is monotone, and fewer fits.

References: a brute-force scan of CLs on a fine grid (the same calculator, no root
finding), pyhf's CLs at our limits (tests/test_infer_hypotest.py), and the root finder
that ``infer.upper_limit`` used before (``_previous_root_limits`` below: copied from
src/ratiofactory/infer/limits.py at main a2bc315, which bracketed each band from σ_A and
took the first crossing it found).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyhf
import pytest
from click.testing import CliRunner
from scipy.optimize import toms748
from scipy.stats import norm

from ratiofactory import Workspace, infer
from ratiofactory.cli import cli
from ratiofactory.infer import BANDS
from ratiofactory.infer.fitting import minimize
from ratiofactory.infer.hypotests import AsymptoticCalculator, prepare_setup
from ratiofactory.testing import Exponential, Uniform, constant_model, ratio_model

# Σ w_ref r over a stratified reference sample has zero Monte Carlo spread, which the
# Asimov yield check (issue 11) reports as a pull: not what these tests are about
pytestmark = pytest.mark.filterwarnings("ignore::ratiofactory.infer.AsimovYieldWarning")

NU_S, NU_B, NU_I = 20.0, 100.0, -40.0  # ν(μ) = 20μ − 40√μ + 100: back to 100 at μ = 4


def write_interference_workspace(root: Path, n_observed: int = 100, slope: float = -0.5) -> Path:
    """One observable on [0, 1]; signal ∝ exp(0.5 x), background flat, destructive
    interference with the background's shape (coefficients μ − √μ, √μ, 1 − √μ) and a
    normsys on the background. The yield returns to the background-only one at μ = 4
    where only the mild signal shape tells them apart, so CLs(μ) falls, rises, falls.
    Observed events and the reference sample are evenly spaced (no randomness)."""
    root.mkdir(parents=True, exist_ok=True)
    signal = [(1.0, [Exponential(slope, 0.0, 1.0)])]
    flat = [(1.0, [Uniform(0.0, 1.0)])]
    sbi = [(NU_S, signal[0][1]), (NU_B + NU_I, flat[0][1])]
    (root / "S.onnx").write_bytes(ratio_model(signal, flat, output="ratio"))
    (root / "SBI.onnx").write_bytes(ratio_model(sbi, flat, output="ratio"))
    (root / "B.onnx").write_bytes(constant_model(1.0, 1))
    np.savez(root / "reference.npz", x=(np.arange(400) + 0.5) / 400)
    np.savez(root / "observed.npz", x=(np.arange(n_observed) + 0.5) / n_observed)
    ratio = lambda name: {"onnx": {"path": f"{name}.onnx"}, "output": "ratio"}
    formula = lambda name, text: {"name": name, "type": "formula", "data": {"expression": text}}
    spec = {
        "version": "1.0.0",
        "unbinned_channels": [{
            "name": "SR", "observables": [{"name": "x", "bounds": [0.0, 1.0]}],
            "reference": {"events": {"path": "reference.npz"}},
            "samples": [
                {"name": "S", "yield": NU_S, "ratio": ratio("S"), "modifiers": [formula("f_S", "mu - sqrt(mu)")]},
                {"name": "SBI", "yield": NU_S + NU_B + NU_I, "ratio": ratio("SBI"),
                 "modifiers": [formula("f_SBI", "sqrt(mu)")]},
                {"name": "B", "yield": NU_B, "ratio": ratio("B"),
                 "modifiers": [formula("f_B", "1 - sqrt(mu)"),
                               {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}}]},
            ],
        }],
        "observations": [{"name": "SR", "events": {"path": "observed.npz"}}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[0.0, 10.0]], "inits": [1.0]}]}}],
    }
    path = root / "workspace.json"
    path.write_text(json.dumps(spec, indent=1))
    return path


@pytest.fixture(scope="module")
def interference(tmp_path_factory):
    path = write_interference_workspace(tmp_path_factory.mktemp("interference"))
    pyhf.set_backend("numpy", precision="64b")
    model = Workspace.load(path).model()
    return path, model, Workspace.load(path).data(model)


def _brute_force(model, data, grid: np.ndarray) -> np.ndarray:
    """CLs (observed, then the five expected bands) at every grid value, no root finding."""
    setup = prepare_setup(model, "qtilde", poi=None, init=None, fixed=None, bounds=None)
    calc = AsymptoticCalculator(model, data, setup, "qtilde")
    return np.array([[calc.observed_cls(mu), *calc.expected_cls(mu)] for mu in grid])


def _sign_changes(grid: np.ndarray, cls: np.ndarray) -> list[tuple[float, float]]:
    below = cls < 0.05
    return [(grid[i], grid[i + 1]) for i in range(grid.size - 1) if below[i] != below[i + 1]]


def test_every_crossing_of_a_non_monotone_cls_is_found(interference):
    _, model, data = interference
    with pytest.warns(infer.NonMonotoneCLsWarning, match=r"not monotone.*observed \[.*\] ∪ \[") as caught:
        result = infer.upper_limit(model, data)
    assert sum(w.category is infer.NonMonotoneCLsWarning for w in caught) == 1
    grid = np.linspace(0.0, 10.0, 201)
    reference = _brute_force(model, data, grid)
    sets = (result.excluded, *result.expected_excluded)
    assert not result.monotone
    assert len(result.excluded) == 2  # observed: excluded around μ ≈ 1 and again above μ ≈ 5.5
    for k, pieces in enumerate(sets):
        edges = [edge for piece in pieces for edge in piece if 0.0 < edge < 10.0]
        brackets = _sign_changes(grid, reference[:, k])
        assert len(edges) == len(brackets), (k, pieces, brackets)
        for edge, (a, b) in zip(edges, brackets, strict=True):
            assert a <= edge <= b, (k, edge, a, b)
        # each edge is a root of CLs − 0.05 to the root finder's tolerance
        for edge in edges:
            test = infer.hypotest(model, data, edge)
            cls = test.cls if k == 0 else test.expected_cls[k - 1]
            assert cls == pytest.approx(0.05, abs=2e-6), (k, edge)
    limits = [result.observed, *result.expected]
    assert limits == [pieces[-1][0] for pieces in sets]  # where the exclusion reaches the end
    assert all(pieces[-1][1] == 10.0 for pieces in sets)


def test_local_refinement_between_single_basin_fits_changes_nothing(interference, monkeypatch):
    """Root refinement runs local fits between grid points whose global searches found one
    minimum; searching at every refinement point too gives the same crossings."""
    import contextlib

    _, model, data = interference
    searches = []
    plain = AsymptoticCalculator._options

    def options(self, what, mu):
        chosen = plain(self, what, mu)
        searches.append(chosen is None or chosen.global_search)
        return chosen

    monkeypatch.setattr(AsymptoticCalculator, "_options", options)
    with pytest.warns(infer.NonMonotoneCLsWarning):
        fast = infer.upper_limit(model, data)
    local = searches.count(False)
    monkeypatch.setattr(AsymptoticCalculator, "refining", lambda self: contextlib.nullcontext())
    searches.clear()
    with pytest.warns(infer.NonMonotoneCLsWarning):
        full = infer.upper_limit(model, data)
    assert local > 10
    assert searches.count(False) == 0
    for ours, theirs in zip((fast.excluded, *fast.expected_excluded), (full.excluded, *full.expected_excluded),
                            strict=True):
        np.testing.assert_allclose(np.ravel(ours), np.ravel(theirs), rtol=1e-7)


@pytest.mark.slow  # 7 s: the jax compilations
def test_jax_finds_the_same_crossings(interference):
    _, model, data = interference
    with pytest.warns(infer.NonMonotoneCLsWarning):
        on_numpy = infer.upper_limit(model, data)
    pyhf.set_backend("jax", precision="64b")
    try:
        with pytest.warns(infer.NonMonotoneCLsWarning):
            on_jax = infer.upper_limit(model, data)
    finally:
        pyhf.set_backend("numpy", precision="64b")
    for ours, theirs in zip((on_jax.excluded, *on_jax.expected_excluded),
                            (on_numpy.excluded, *on_numpy.expected_excluded), strict=True):
        np.testing.assert_allclose(np.ravel(ours), np.ravel(theirs), rtol=2e-5)


def test_scan_method_reports_every_interpolated_crossing(interference):
    _, model, data = interference
    grid = np.linspace(0.0, 10.0, 41)
    with pytest.warns(infer.NonMonotoneCLsWarning):
        result = infer.upper_limit(model, data, scan=grid)
    reference = _brute_force(model, data, grid)
    for k, pieces in enumerate((result.excluded, *result.expected_excluded)):
        brackets = _sign_changes(grid, reference[:, k])
        edges = [edge for piece in pieces for edge in piece if 0.0 < edge < 10.0]
        assert len(edges) == len(brackets)
        for edge, (a, b) in zip(edges, brackets, strict=True):
            i = int(np.flatnonzero(grid == a)[0])
            linear = a + (0.05 - reference[i, k]) * (b - a) / (reference[i + 1, k] - reference[i, k])
            assert edge == pytest.approx(linear, rel=1e-9)


# ------------------------------------------------------------------ the previous root finder


def _previous_solve(f: Callable[[float], float], guess: float, lo: float, hi: float,
                    rtol: float, atol: float) -> float:
    x = min(max(guess, lo), hi)
    if f(x) < 0:
        a = b = x
        for _ in range(60):
            assert b < hi
            a, b = b, (min(hi, lo + 1.5 * (b - lo)) if b > lo else lo + 0.01 * (hi - lo))
            if f(b) >= 0:
                break
    else:
        a = b = x
        for _ in range(60):
            assert a > lo
            b, a = a, (lo + (a - lo) / 1.5 if a - lo > 1e-9 * (hi - lo) else lo)
            if f(a) < 0:
                break
    if f(b) == 0.0:
        return float(b)
    return float(toms748(f, a, b, k=2, xtol=atol, rtol=rtol))


def _previous_root_limits(model, data, level=0.05, rtol=1e-5, atol=1e-12, options=None):
    """The limits (observed, expected −2σ…+2σ) as main a2bc315 found them, and the
    number of POI values it tested."""
    setup = prepare_setup(model, "qtilde", poi=None, init=None, fixed=None, bounds=None)
    calc = AsymptoticCalculator(model, data, setup, "qtilde", options)
    lo, hi = max(setup.bounds[setup.poi_index][0], 0.0), setup.bounds[setup.poi_index][1]
    # σ_A from HESSE on the Asimov free fit, as main a2bc315 computed it
    sigma = minimize(calc.asimov, setup.with_init(calc.asimov_fit.values), options).poi_error
    if sigma is None or not (np.isfinite(sigma) and sigma > 0):
        sigma = 0.1 * (hi - lo)
    expected = []
    for band in BANDS:
        target = band + float(norm.isf(level * norm.cdf(band)))
        f = lambda mu, t=target: float(np.sqrt(calc.asimov_value(mu))) - t
        expected.append(_previous_solve(f, lo + sigma * target, lo, hi, rtol, atol))
    observed = _previous_solve(lambda mu: level - calc.observed_cls(mu), expected[2], lo, hi, rtol, atol)
    return [observed, *expected], len({mu for _, mu in calc.cached_values()})


@pytest.fixture(scope="module")
def counting():
    model = pyhf.simplemodels.uncorrelated_background([5.0, 3.0], [50.0, 30.0], [5.0, 4.0], validate=False)
    return model, [52.0, 36.0, *model.config.auxdata]


def test_monotone_limits_equal_the_previous_root_finder(counting, backend):
    model, data = counting
    previous, _ = _previous_root_limits(model, data, rtol=1e-10)
    result = infer.upper_limit(model, data, rtol=1e-10)
    np.testing.assert_allclose([result.observed, *result.expected], previous, rtol=1e-8)
    assert result.monotone
    assert result.excluded == ((result.observed, 10.0),)
    assert list(result.expected_excluded) == [((v, 10.0),) for v in result.expected]


@pytest.mark.slow  # ~30 s on numpy
def test_offshell_example_limits_contain_the_previous_ones():
    """On the off-shell example the previous root finder returned one crossing per band;
    on the bands where CLs(μ) is not monotone that was the first crossing, not the limit.
    Every number it gave is one of the crossings found now."""
    root = Path(__file__).resolve().parents[1] / "examples" / "offshell" / "workspace" / "workspace.json"
    ws = Workspace.load(root)
    model = ws.model()
    data = ws.data(model)
    previous, _ = _previous_root_limits(model, data)
    with pytest.warns(infer.NonMonotoneCLsWarning):
        result = infer.upper_limit(model, data)
    for value, pieces in zip(previous, (result.excluded, *result.expected_excluded), strict=True):
        edges = [edge for piece in pieces for edge in piece]
        assert min(abs(edge - value) for edge in edges) <= 2e-5 * value, (value, pieces)


# ------------------------------------------------------------------ command line


def test_cli_prints_and_writes_every_excluded_interval(interference, tmp_path):
    path, model, data = interference
    out = tmp_path / "ul.json"
    result = CliRunner().invoke(cli, ["upper-limit", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    warning_lines = [line for line in result.stderr.splitlines() if "not monotone" in line]
    assert len(warning_lines) == 1
    assert warning_lines[0].startswith("warning: CLs(mu) is not monotone")
    content = json.loads(out.read_text())
    with pytest.warns(infer.NonMonotoneCLsWarning):
        expected = infer.upper_limit(model, data)
    np.testing.assert_allclose(np.ravel(content["excluded"]), np.ravel(expected.excluded), rtol=1e-9)
    assert len(content["expected_excluded"]) == 5
    assert content["monotone"] is False
    assert " ∪ " in result.stdout
    quiet = CliRunner().invoke(cli, ["upper-limit", str(path), "--quiet", "-o", str(tmp_path / "q.json")])
    assert quiet.exit_code == 0
    assert quiet.stdout == ""
    assert quiet.stderr.splitlines() == [x for x in result.stderr.splitlines() if x.startswith("warning: ")]
