"""The command line: every subcommand through click's CliRunner, JSON outputs checked
against the Python API, one run of the installed console script, and bad input.

The workspace is tests/cli_toy.py's ``make_toy``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyhf
import pytest
from cli_toy import make_toy, one_line_error, run, run_json

import ratiofactory
from ratiofactory import infer


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(workspace path, model, data) on numpy."""
    pyhf.set_backend("numpy", precision="64b")
    path, _ = make_toy(tmp_path_factory.mktemp("cli"))
    ws = ratiofactory.Workspace.load(path)
    model = ws.model()
    return path, model, ws.data(model)


def test_fit_matches_python_api(toy, tmp_path):
    path, model, data = toy
    got = run_json(["fit", path], tmp_path)
    expected = infer.fit(model, data)
    assert got["parameters"] == list(expected.parameters)
    np.testing.assert_allclose(got["values"], expected.values, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got["errors"], expected.errors, rtol=1e-5)
    assert got["twice_nll"] == pytest.approx(expected.twice_nll, rel=1e-10)
    assert got["valid"] is True
    assert 0.3 < got["values"][got["parameters"].index("mu")] < 2.0


def test_fit_fixed_scipy_and_table(toy, tmp_path):
    path, model, data = toy
    got = run_json(["fit", path, "--fixed", "bkg_norm=0.5", "--optimizer", "scipy"], tmp_path)
    expected = infer.fit(model, data, fixed={"bkg_norm": 0.5}, method="scipy")
    assert got["values"][got["parameters"].index("bkg_norm")] == 0.5
    assert got["method"] == "scipy"
    assert got["twice_nll"] == pytest.approx(expected.twice_nll, rel=1e-9)
    table = run(["fit", path]).output
    assert "bkg_norm" in table
    assert "mu" in table


def test_output_dash_writes_json_to_stdout(toy, tmp_path, monkeypatch):
    """``-o -`` puts the JSON on stdout in place of the table and creates no file "-"."""
    path, model, data = toy
    monkeypatch.chdir(tmp_path)
    result = run(["fit", path, "-o", "-"])
    got = json.loads(result.stdout)
    assert got["twice_nll"] == pytest.approx(infer.fit(model, data).twice_nll, rel=1e-10)
    digested = json.loads(run(["digest", path, "-o", "-"]).stdout)
    assert digested["measurements"] == json.loads(Path(path).read_text())["measurements"]
    assert not (tmp_path / "-").exists()


def test_fit_on_jax_agrees(toy, tmp_path):
    path, _, _ = toy
    numpy_fit = run_json(["fit", path], tmp_path, "np.json")
    jax_fit = run_json(["fit", path, "--backend", "jax"], tmp_path, "jax.json")
    pyhf.set_backend("numpy", precision="64b")
    assert jax_fit["backend"] == "jax"
    np.testing.assert_allclose(jax_fit["values"], numpy_fit["values"], rtol=1e-4, atol=1e-5)
    assert jax_fit["twice_nll"] == pytest.approx(numpy_fit["twice_nll"], abs=1e-6)


def test_scan_with_intervals_and_plot(toy, tmp_path):
    path, model, data = toy
    got = run_json(["scan", path, "--poi-range", 0, 3, "--points", 7, "--plot", tmp_path / "scan.png"], tmp_path)
    expected = infer.profile_scan(model, data, np.linspace(0, 3, 7))
    np.testing.assert_allclose(got["poi_values"], np.linspace(0, 3, 7))
    np.testing.assert_allclose(got["tmu"], expected.tmu, atol=2e-6)
    one_sigma = infer.interval(expected)
    np.testing.assert_allclose(got["intervals"][0]["intervals"], [list(i) for i in one_sigma.intervals], atol=1e-5)
    assert got["intervals"][1]["threshold"] == pytest.approx(4.0)
    assert (tmp_path / "scan.png").stat().st_size > 5000


@pytest.mark.parametrize("command", [["scan", "--poi-range", 0, 1], ["impacts"], ["neyman", "--poi-range", 0, 1],
                                     ["reweighting", "--channel", "SR", "--sample", "signal"],
                                     ["spurious-signal", "--output", "new.json"], ["grid", "patchset.json"]])
def test_plot_extension_checked_before_anything_runs(tmp_path, command):
    """An unknown --plot extension is one line naming --plot before the workspace is read
    (here it does not even exist) and no fit runs; every command's --plot shares the rule."""
    name, *rest = command
    result = run([name, tmp_path / "missing.json", *rest, "--plot", tmp_path / "plot.txt"])
    one_line_error(result, "--plot", "cannot write a plot as '.txt'", ".pdf")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["scan", "--poi-range"], ["upper-limit", "--poi-range"],
                                     ["neyman", "--poi-range"], ["spurious-signal", "--output", "n.json", "--grid"]])
@pytest.mark.parametrize(("lo", "hi"), [(2, 1), (1, 1), (0, "inf")])
def test_reversed_or_empty_poi_range_is_refused(tmp_path, command, lo, hi):
    """One rule for every POI range: LO < HI, checked before the workspace is read
    (``neyman --poi-range 2 1`` printed the interval [2, 1])."""
    name, *rest = command
    extra = [3] if name == "spurious-signal" else []
    result = run([name, tmp_path / "missing.json", *rest, lo, hi, *extra])
    option = "--grid" if name == "spurious-signal" else "--poi-range"
    expected = "LO must be below HI" if hi != "inf" else "must be finite"
    one_line_error(result, f"Invalid value for {option}", expected)


@pytest.mark.parametrize(("command", "option"), [(["scan"], "--poi-range"), (["neyman"], "--poi-range"),
                                                 (["reweighting", "--channel", "SR", "--sample", "s"], "--plot")])
def test_required_range_and_plot_options_are_required(tmp_path, command, option):
    name, *rest = command
    one_line_error(run([name, tmp_path / "missing.json", *rest]), f"Missing option '{option}'")


@pytest.mark.parametrize("command", ["validate", "fit"])
def test_constraint_width_zero_is_refused_without_numpy_warnings(toy, tmp_path, command):
    """A measurement's sigmas of 0 on a constraint only the unbinned channel uses passed
    validate, and fit printed numpy's divide-by-zero warnings and blamed s(x;θ) <= 0."""
    path, _, _ = toy
    patch = tmp_path / "s0.json"
    patch.write_text(json.dumps([{"op": "add", "path": "/measurements/0/config/parameters/-",
                                  "value": {"name": "bkg_norm", "auxdata": [0.0], "sigmas": [0.0]}}]))
    result = run([command, path, "-p", patch])
    one_line_error(result, "/measurements/0/config/parameters/1/sigmas/0", "sigma 0.0 of parameter 'bkg_norm'",
                   "must be positive")
    assert "warning" not in result.stderr


def test_scan_beyond_the_interval_is_reported_open(toy, tmp_path):
    """--poi-range below the best fit: the headline shows '> HI' and no signed error (it
    printed '+-0.54'), the JSON has a null error on the open side, a warning says so; a
    range where no point is inside the 68 % interval keeps the scan and says why."""
    path, model, data = toy
    best = infer.fit(model, data).poi_value
    hi = round(0.8 * best, 3)
    result = run(["scan", path, "--poi-range", 0, hi, "--points", 3])
    assert result.exit_code == 0, result.output
    assert f", > {hi:g}]" in result.stdout
    assert "open above" in result.stdout
    assert " +-" not in result.stdout
    assert "is open: it reaches the end of the scan, widen --poi-range" in result.stderr
    got = run_json(["scan", path, "--poi-range", 0, hi, "--points", 3], tmp_path)
    assert got["intervals"][0]["open_ends"] == [[False, True]]
    assert got["intervals"][0]["errors"][1] is None
    far = run_json(["scan", path, "--poi-range", 3 * best, 4 * best, "--points", 3], tmp_path, "far.json")
    assert len(far["tmu"]) == 3
    assert "lies below the scan" in far["interval_errors"][0]


def test_scan_plot_pdf_is_pdf(toy, tmp_path):
    path, _, _ = toy
    result = run(["scan", path, "--poi-range", 0, 3, "--points", 4, "--plot", tmp_path / "scan.pdf"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "scan.pdf").read_bytes()[:4] == b"%PDF"


def test_cls_upper_limit_significance(toy, tmp_path):
    path, model, data = toy
    got = run_json(["cls", path, "--test-poi", 2.0], tmp_path, "cls.json")
    expected = infer.hypotest(model, data, 2.0)
    assert got["cls"] == pytest.approx(expected.cls, rel=1e-5)
    np.testing.assert_allclose(got["expected_cls"], expected.expected_cls, rtol=1e-5)
    got = run_json(["upper-limit", path], tmp_path, "ul.json")
    limit = infer.upper_limit(model, data)
    assert got["observed"] == pytest.approx(limit.observed, rel=1e-4)
    np.testing.assert_allclose(got["expected"], limit.expected, rtol=1e-4)
    got = run_json(["significance", path], tmp_path, "z.json")
    z = infer.significance(model, data)
    assert got["significance"] == pytest.approx(z.significance, rel=1e-5)
    assert got["pvalue"] == pytest.approx(z.pvalue, rel=1e-4)


def test_upper_limit_reports_lines_beyond_the_range(toy, tmp_path):
    """POI bounds [-1, 1] (a -p patch): the observed (1.37) and +2 sigma (1.17) limits lie
    beyond the search range and are reported as '> 1' (null, outside_range "above") with a
    warning in command-line terms; the other bands keep their numbers."""
    path, model, data = toy
    patch = tmp_path / "bounds.json"
    patch.write_text(json.dumps([{"op": "replace", "path": "/measurements/0/config/parameters/0/bounds",
                                  "value": [[-1.0, 1.0]]}]))
    result = run(["upper-limit", path, "-p", patch, "-o", tmp_path / "ul.json"])
    assert result.exit_code == 0, result.output
    got = json.loads((tmp_path / "ul.json").read_text())
    limit = infer.upper_limit(model, data)
    assert got["observed"] is None
    assert got["expected"][4] is None
    np.testing.assert_allclose(got["expected"][:4], limit.expected[:4], rtol=1e-4)
    assert got["outside_range"] == ["above", None, None, None, None, "above"]
    assert got["search_range"] == [0.0, 1.0]
    assert "> 1" in result.stdout
    assert ("warning: CLs of observed, expected +2 sigma is still above 0.05 at mu=1, the end of the search"
            " range: limit > 1 (raise the POI's upper bound in the measurement's parameters, e.g. with a -p"
            " JSON patch)") in result.stderr
    assert "bounds=" not in result.stderr
    scanned = run(["upper-limit", path, "--poi-range", 0, 1, "--points", 3])
    assert scanned.exit_code == 0, scanned.output
    assert "limit > 1 (extend --poi-range)" in scanned.stderr


def test_cli_option_errors_are_usage_errors_in_cli_terms(toy, tmp_path):
    """--fixed with a component beyond the parameter's size or a value outside its bounds
    fails like an unknown name (exit 2, 'Invalid value for --fixed'), in command-line
    terms; --starts with --no-global is refused (it was ignored)."""
    path, _, _ = toy
    for item, words in (("bkg_norm[1]=1", "'bkg_norm[1]': 'bkg_norm' has 1 component (write 'bkg_norm')"),
                        ("foo=1", "unknown parameter 'foo'"),
                        ("mu=20", ("mu=20 lies outside the parameter's bounds [-1, 10] (set in the workspace's"
                                  " measurement; a -p JSON patch changes them)"))):
        result = run(["fit", path, "--fixed", item])
        assert result.exit_code == 2, result.output
        assert f"Invalid value for --fixed: {words}" in result.stderr
        assert "bounds=" not in result.stderr
    result = run(["fit", path, "--starts", 3, "--no-global"])
    assert result.exit_code == 2
    assert "--starts seeds the global minimum search, which --no-global turns off" in result.stderr


def test_check_parameters_knows_the_components():
    import click

    from ratiofactory.cli._common import check_parameters

    model = pyhf.simplemodels.uncorrelated_background([5.0, 5.0], [50.0, 50.0], [5.0, 5.0], validate=False)
    check_parameters(model, ["uncorr_bkguncrt", "uncorr_bkguncrt[1]", "mu"], "--fixed")
    with pytest.raises(click.BadParameter, match=r"'uncorr_bkguncrt\[7\]': 'uncorr_bkguncrt' has 2 components"
                                                 r" \(components uncorr_bkguncrt\[0\] ... uncorr_bkguncrt\[1\]\)"):
        check_parameters(model, ["uncorr_bkguncrt[7]"], "--fixed")


def test_cls_outside_the_background_only_hypothesis_says_so(toy, tmp_path):
    path, model, data = toy
    patch = tmp_path / "bounds.json"
    patch.write_text(json.dumps([{"op": "replace", "path": "/measurements/0/config/parameters/0/bounds",
                                  "value": [[1.2, 4.0]]},
                                 {"op": "replace", "path": "/measurements/0/config/parameters/0/inits",
                                  "value": [2.0]}]))
    one_line_error(run(["cls", path, "-p", patch, "--test-poi", 3]),
                   "the background-only hypothesis mu = 0 lies outside the POI's bounds [1.2, 4]")
    with pytest.raises(infer.InvalidFitSetup, match="background-only hypothesis mu = 0 lies outside"):
        infer.significance(model, data, bounds={"mu": (0.5, 5.0)}, init={"mu": 1.0})


def test_impacts_and_plot(toy, tmp_path):
    path, model, data = toy
    got = run_json(["impacts", path, "--plot", tmp_path / "impacts.png"], tmp_path)
    expected = infer.impacts(model, data).row("bkg_norm")
    row = got["rows"][0]
    assert row["name"] == "bkg_norm"
    assert row["postfit_up"] == pytest.approx(expected.postfit_up, rel=1e-4, abs=1e-6)
    assert row["pull"] == pytest.approx(expected.pull, rel=1e-4, abs=1e-6)
    assert (tmp_path / "impacts.png").stat().st_size > 5000


def test_inspect_and_validate(toy, tmp_path):
    path, model, _ = toy
    info = run_json(["inspect", path], tmp_path, "inspect.json")
    channel = info["channels"][0]
    assert channel["observed_events"] == model.unbinned_channels[0].n_observed
    assert channel["reference_events"] == 2000
    assert [p["name"] for p in info["parameters"]] == list(model.config.par_order)
    assert info["poi"] == "mu"
    table = run(["inspect", path]).output
    assert "background" in table
    assert "bkg_norm (normsys)" in table
    report = run_json(["validate", path], tmp_path, "validate.json")
    assert report["digest"] == ratiofactory.Workspace.load(path).digest()
    assert report["files"] == 5


def test_digest_writes_sha256_and_keeps_input(toy, tmp_path):
    import hashlib

    path, _, _ = toy
    before = path.read_text()
    out = path.parent / "digested_keeps_input.json"  # beside the workspace: the references stay valid
    copy = path.parent / "copy.json"
    try:
        assert run(["digest", path, "--output-file", out]).exit_code == 0
        assert path.read_text() == before
        spec = json.loads(out.read_text())
        ref = spec["unbinned_channels"][0]["samples"][1]["ratio"]["onnx"]
        assert ref["sha256"] == hashlib.sha256((path.parent / ref["path"]).read_bytes()).hexdigest()
        copy.write_text(before)
        assert run(["digest", copy, "--in-place"]).exit_code == 0
        assert json.loads(copy.read_text()) == spec
        assert run(["validate", copy]).exit_code == 0
    finally:
        copy.unlink(missing_ok=True)
        out.unlink(missing_ok=True)


def test_workspace_from_stdin(toy, tmp_path, monkeypatch):
    path, model, data = toy
    monkeypatch.chdir(path.parent)
    result = run(["fit", "-", "--output-file", tmp_path / "stdin.json"], input=path.read_text())
    assert result.exit_code == 0, result.output
    got = json.loads((tmp_path / "stdin.json").read_text())
    assert got["twice_nll"] == pytest.approx(infer.fit(model, data).twice_nll, rel=1e-10)


def test_console_script_subprocess(toy, tmp_path):
    path, model, data = toy
    exe = shutil.which("ratiofactory") or str(Path(sys.executable).with_name("ratiofactory"))
    out = tmp_path / "fit.json"
    proc = subprocess.run([exe, "fit", str(path), "--output-file", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # --quiet
    assert json.loads(out.read_text())["twice_nll"] == pytest.approx(infer.fit(model, data).twice_nll, rel=1e-10)
    bad = subprocess.run([exe, "fit", str(tmp_path / "missing.json")], capture_output=True, text=True,
                         timeout=120, check=False)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1
    assert "missing.json" in bad.stderr


def test_bad_input_one_line(toy, tmp_path):
    path, _, _ = toy
    one_line_error(run(["fit", tmp_path / "nope.json"]), "nope.json", "cannot read")
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "version": "1.0.0",\n  "channels": [\n')
    one_line_error(run(["fit", broken]), "line 4, column 1")
    one_line_error(run(["fit", path, "--measurement", "other"]), "no measurement named 'other'", "meas")
    one_line_error(run(["fit", path, "--fixed", "lumi=1"]), "unknown parameter 'lumi'", "bkg_norm")
    one_line_error(run(["fit", path, "--fixed", "mu"]), "NAME=VALUE")
    one_line_error(run(["scan", path]), "--poi-range")
    verbose = run(["fit", tmp_path / "nope.json", "--verbose"])
    assert verbose.exit_code == 1
    assert "Traceback" in verbose.stderr


def test_validate_names_a_file_whose_recorded_digest_differs(toy, tmp_path):
    path, _, _ = toy
    digested = path.parent / "digested.json"
    assert run(["digest", path, "-o", digested]).exit_code == 0
    spec = json.loads(digested.read_text())
    spec["unbinned_channels"][0]["reference"]["events"]["sha256"] = "f" * 64
    digested.write_text(json.dumps(spec))
    try:
        one_line_error(run(["validate", digested]), "data/reference.npz", "sha256")
        one_line_error(run(["digest", digested, "-o", path.parent / "x.json"]), "use --update")
        assert run(["digest", digested, "-o", path.parent / "x.json", "--update"]).exit_code == 0
    finally:
        digested.unlink()
        (path.parent / "x.json").unlink(missing_ok=True)


def test_quiet_before_or_after_the_subcommand(toy, tmp_path):
    path, _, _ = toy
    for args in (["--quiet", "validate", path], ["validate", path, "-q"]):
        result = run(args)
        assert result.exit_code == 0
        assert result.output == ""
    assert "valid:" in run(["validate", path]).output


def test_progress_path_on_a_terminal(toy, tmp_path, monkeypatch):
    """With a terminal (faked) the progress line runs and the results are unchanged."""
    from ratiofactory.cli import _common

    path, model, data = toy
    monkeypatch.setattr(_common, "show_progress", lambda: True)
    got = run_json(["fit", path], tmp_path)
    assert got["twice_nll"] == pytest.approx(infer.fit(model, data).twice_nll, rel=1e-10)


def test_reweighting_plot_command(toy, tmp_path):
    import matplotlib.image

    path, _, _ = toy
    _, signal_events = make_toy(tmp_path / "again")
    np.savez(tmp_path / "signal.npz", x=signal_events[:, 0])
    out = tmp_path / "rew.png"
    result = run(["reweighting", path, "--channel", "SR", "--sample", "signal",
                  "--events", tmp_path / "signal.npz", "--plot", out])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 5000
    assert float(np.std(matplotlib.image.imread(out)[..., :3])) > 0.01
    one_line_error(run(["reweighting", path, "--channel", "SR", "--sample", "S", "--plot", out]),
                    "no sample 'S'", "signal, background")
