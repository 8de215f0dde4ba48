"""The toy subcommands (toys, neyman) against ratiofactory.toys with the same seeds."""

from __future__ import annotations

import json

import cli_toy
import numpy as np
import pyhf
import pytest

import ratiofactory
from ratiofactory import toys


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    pyhf.set_backend("numpy", precision="64b")
    path, _ = cli_toy.make_toy(tmp_path_factory.mktemp("clitoys"))
    ws = ratiofactory.Workspace.load(path)
    model = ws.model()
    return path, model, ws.data(model)


@pytest.mark.slow  # two toy runs on the CLI and the API: ~4 s
def test_toys_matches_python_api(toy, tmp_path):
    path, model, data = toy
    got = cli_toy.run_json(["toys", path, "--test-poi", 1.0, "--ntoys", 40, "--seed", 3], tmp_path)
    expected = toys.toybased_hypotest(model, data, 1.0, 40, 3)
    assert 0.0 < expected.cls < 1.0
    assert got["cls"] == pytest.approx(expected.cls, rel=1e-12)
    assert got["clb"] == pytest.approx(expected.clb, rel=1e-12)
    assert got["teststat"] == pytest.approx(expected.teststat, rel=1e-6, abs=1e-8)
    np.testing.assert_allclose(got["expected_cls"], expected.expected_cls, rtol=1e-12)
    assert got["n_toys"] == 40
    assert got["seed"] == 3


@pytest.mark.slow  # 9 s on a loaded 2-core machine (full-suite run, 01:55 UTC)
def test_neyman_matches_python_api_and_plots(toy, tmp_path):
    path, model, data = toy
    args = ["neyman", path, "--poi-range", 0.2, 2.0, "--points", 4, "--ntoys", 40, "--seed", 1,
            "--plot", tmp_path / "belt.png", "--directory", tmp_path / "points"]
    got = cli_toy.run_json(args, tmp_path)
    expected = toys.neyman_construction(model, data, np.linspace(0.2, 2.0, 4), 40, 1)
    assert set(got["intervals"]) == set(expected.intervals)
    for key, pieces in expected.intervals.items():
        np.testing.assert_allclose(got["intervals"][key], pieces, rtol=1e-6)
    np.testing.assert_allclose(got["t_observed"], expected.t_observed, rtol=1e-6, atol=1e-8)
    assert (tmp_path / "belt.png").stat().st_size > 5000
    assert len(list((tmp_path / "points").glob("*.json"))) == 4
    # a rerun resumes from the stored points and gives the same answer
    again = cli_toy.run_json(args, tmp_path, "again.json")
    assert again["intervals"] == got["intervals"]
    assert json.loads((tmp_path / "again.json").read_text())["critical"] == got["critical"]


@pytest.mark.slow  # 7 s on a loaded 2-core machine (full-suite run, 01:55 UTC)
def test_toys_on_a_local_dask_cluster_equal_the_local_run(toy, tmp_path):
    path, _, _ = toy
    common = ["toys", path, "--test-poi", 1.0, "--ntoys", 16, "--seed", 4, "--batch-size", 4]
    local = cli_toy.run_json(common, tmp_path, "local.json")
    on_dask = cli_toy.run_json([*common, "--dask-workers", 2], tmp_path, "dask.json")
    for key in ("cls", "clsb", "clb", "expected_cls"):
        np.testing.assert_allclose(on_dask[key], local[key], rtol=1e-12)


def test_dask_workers_and_scheduler_exclude_each_other(toy):
    path, _, _ = toy
    result = cli_toy.run(["toys", path, "--dask-workers", 2, "--scheduler", "tcp://localhost:1"])
    assert result.exit_code != 0
    assert "not both" in result.output


def test_a_long_numpy_toy_run_points_to_jax(toy, tmp_path, monkeypatch):
    import importlib

    monkeypatch.setattr(importlib.import_module("ratiofactory.cli.toys"), "NUMPY_NOTE_TOYS", 8)
    path, _, _ = toy
    common = ["toys", path, "--test-poi", 1.0, "-o", tmp_path / "out.json"]
    noted = cli_toy.run([*common, "--ntoys", 4])  # 4 signal + 4 background toys
    assert noted.exit_code == 0, noted.output
    assert "on numpy the 8 toys are fitted one by one" in noted.stderr
    assert "--backend jax" in noted.stderr
    for args in ([*common, "--ntoys", 3], ["--quiet", *common, "--ntoys", 4]):
        result = cli_toy.run(args)
        assert result.exit_code == 0, result.output
        assert "note:" not in result.stderr
