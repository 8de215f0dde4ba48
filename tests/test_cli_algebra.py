"""combine, prune, rename on the command line against ratiofactory.algebra; the written
workspaces load from their own directories (file paths rebased)."""

from __future__ import annotations

import json

import cli_toy
import pyhf
import pytest

import ratiofactory
from ratiofactory import algebra, infer


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    pyhf.set_backend("numpy", precision="64b")
    path, _ = cli_toy.make_toy(tmp_path_factory.mktemp("clialg") / "ws")
    return path


def _fit(path):
    ws = ratiofactory.Workspace.load(path)
    model = ws.model()
    return infer.fit(model, ws.data(model))


def test_rename_into_the_parent_directory(toy):
    out = toy.parent.parent / "renamed.json"
    result = cli_toy.run(["rename", toy, "--channel", "SR", "CR", "--modifier", "bkg_norm", "bkg_cr", "-o", out])
    assert result.exit_code == 0, result.output
    spec = json.loads(out.read_text())
    expected = algebra.rename(ratiofactory.Workspace.load(toy).spec, channels={"SR": "CR"},
                              modifiers={"bkg_norm": "bkg_cr"})
    assert spec["unbinned_channels"][0]["name"] == "CR"
    assert spec["measurements"] == expected["measurements"]
    assert spec["unbinned_channels"][0]["reference"]["events"]["path"] == "ws/data/reference.npz"
    original, renamed = _fit(toy), _fit(out)
    assert renamed.parameters == ("mu", "bkg_cr")
    assert renamed.twice_nll == pytest.approx(original.twice_nll, rel=1e-12)


def test_prune_to_stdout(toy, tmp_path, monkeypatch):
    monkeypatch.chdir(toy.parent)
    result = cli_toy.run(["prune", toy, "--modifier", "bkg_norm"])
    assert result.exit_code == 0, result.output
    spec = json.loads(result.stdout)
    assert spec == algebra.prune(ratiofactory.Workspace.load(toy).spec, modifiers=["bkg_norm"])
    ws = ratiofactory.Workspace(spec, base_dir=toy.parent)
    assert ws.model().config.par_order == ["mu"]


def test_rename_outside_the_files_directory_is_refused(toy, tmp_path):
    cli_toy.one_line_error(cli_toy.run(["rename", toy, "-c", "SR", "CR", "-o", tmp_path / "x.json"]),
                         "lies outside", "reference.npz")


def test_digest_rewrites_references_like_rename(toy, tmp_path):
    """digest -o elsewhere shares rename's path: references rewritten relative to the
    output (a parent directory: the same fit), or refused before anything is written
    (was: written with references that point nowhere)."""
    out = toy.parent.parent / "digested.json"
    result = cli_toy.run(["digest", toy, "-o", out])
    assert result.exit_code == 0, result.output
    assert f"5 file digest(s) in {out}: 5 added or updated, 0 already recorded" in result.stdout
    spec = json.loads(out.read_text())
    reference = spec["unbinned_channels"][0]["reference"]["events"]
    assert reference["path"] == "ws/data/reference.npz"
    assert len(reference["sha256"]) == 64
    assert _fit(out).twice_nll == pytest.approx(_fit(toy).twice_nll, rel=1e-12)
    again = cli_toy.run(["digest", out, "-o", toy.parent.parent / "again.json"])
    assert "5 file digest(s) in" in again.stdout
    assert "0 added or updated, 5 already recorded (checked against the files)" in again.stdout
    cli_toy.one_line_error(cli_toy.run(["digest", toy, "-o", tmp_path / "x.json"]),
                           "reference.npz lies outside", "the directory of the digested workspace")
    assert not (tmp_path / "x.json").exists()


def test_combine_matches_python_api(toy):
    root = toy.parent.parent
    other = root / "other.json"
    assert cli_toy.run(["rename", toy, "-c", "SR", "CR", "-m", "bkg_norm", "bkg_cr", "-o", other]).exit_code == 0
    combined = root / "combined.json"
    result = cli_toy.run(["combine", toy, other, "--join", "outer", "-o", combined])
    assert result.exit_code == 0, result.output
    one, two = ratiofactory.Workspace.load(toy), ratiofactory.Workspace.load(other)
    expected = algebra.combine(one.spec, two.spec, join="outer", left_base_dir=one.base_dir, right_base_dir=two.base_dir,
                               base_dir=root)
    assert json.loads(combined.read_text()) == expected
    fit = _fit(combined)
    assert fit.parameters == ("mu", "bkg_norm", "bkg_cr")
    # the same channel twice: the best-fit mu equals the single-channel one
    assert fit.value("mu") == pytest.approx(_fit(toy).value("mu"), abs=1e-4)
    cli_toy.one_line_error(cli_toy.run(["combine", toy, toy]), "both workspaces define")
