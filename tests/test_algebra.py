"""Workspace algebra: combine (join modes), prune, rename, sorted.

On pure pyhf workspaces pyhf's own ``Workspace.combine/prune/rename/sorted`` are the
reference; with unbinned channels the checks are that file references still resolve
(and digests still verify) and that the combined likelihood is the sum of the parts.
"""

from __future__ import annotations

import json

import numpy as np
import pyhf
import pytest

import ratiofactory
from ratiofactory import algebra
from ratiofactory.algebra import InvalidWorkspaceOperation
from ratiofactory.files import sha256_file
from ratiofactory.testing import constant_model


def _binned(channel: str = "SR_2l2v", poi: str = "mu", lumi_sigma: float = 0.02) -> dict:
    return {
        "version": "1.0.0",
        "channels": [{"name": channel, "samples": [
            {"name": "signal", "data": [3.0, 6.0], "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None},
                {"name": "lumi", "type": "lumi", "data": None}]},
            {"name": "background", "data": [40.0, 30.0], "modifiers": [
                {"name": "bkg_xs", "type": "normsys", "data": {"hi": 1.05, "lo": 0.93}},
                {"name": "lumi", "type": "lumi", "data": None}]}]}],
        "observations": [{"name": channel, "data": [47.0, 33.0]}],
        "measurements": [{"name": "meas", "config": {"poi": poi, "parameters": [
            {"name": "lumi", "auxdata": [1.0], "sigmas": [lumi_sigma], "bounds": [[0.5, 1.5]], "inits": [1.0]}]}}],
    }


def _unbinned_dir(root, digest: bool = True) -> ratiofactory.Workspace:
    """An unbinned workspace in ``root`` with constant ratios (S: 2, B: 0.5) and 4 events."""
    (root / "models").mkdir(parents=True)
    constant_model(2.0, 1, path=root / "models" / "S.onnx")
    constant_model(0.5, 1, path=root / "models" / "B.onnx")
    np.savez(root / "observed.npz", x=np.array([1.0, 2.0, 3.0, 4.0]))
    ref = lambda path: {"path": path, **({"sha256": sha256_file(root / path)} if digest else {})}
    spec = {
        "version": "1.0.0",
        "unbinned_channels": [{"name": "SR_4l", "observables": [{"name": "x"}], "samples": [
            {"name": "S", "yield": 10.0, "ratio": {"onnx": ref("models/S.onnx"), "output": "ratio"}, "modifiers": [
                {"name": "f_S", "type": "formula", "data": {"expression": "mu * (1 + 0 * mu)"}}]},
            {"name": "B", "yield": 20.0, "ratio": {"onnx": ref("models/B.onnx"), "output": "ratio"}, "modifiers": [
                {"name": "bkg_4l", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]}]}],
        "observations": [{"name": "SR_4l", "events": ref("observed.npz")}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
    }
    (root / "workspace.json").write_text(json.dumps(spec))
    return ratiofactory.Workspace.load(root / "workspace.json")


def _same(ours: dict, theirs) -> None:
    assert json.loads(json.dumps(ours, sort_keys=True)) == json.loads(json.dumps(dict(theirs), sort_keys=True))


# ----------------------------------------------------------------------------- against pyhf


@pytest.mark.parametrize("join", ["outer", "left outer", "right outer"])
def test_combine_equals_pyhf(join, caplog):
    left = _binned()
    right = algebra.rename(_binned(lumi_sigma=0.02), channels={"SR_2l2v": "CR"})
    right["measurements"][0]["config"]["parameters"].append({"name": "bkg_xs", "bounds": [[-4.0, 4.0]]})
    right["observations"].append({"name": "SR_2l2v", "data": [47.0, 33.0]})
    expected = pyhf.Workspace.combine(pyhf.Workspace(left), pyhf.Workspace(right), join=join)
    _same(algebra.combine(left, right, join=join), expected)


def test_merge_channels_equals_pyhf(caplog):
    left = _binned()
    right = algebra.prune(_binned(), samples=["signal"])
    right["channels"][0]["samples"][0]["name"] = "other"
    right["observations"] = [{"name": "SR_2l2v", "data": [47.0, 33.0]}]
    expected = pyhf.Workspace.combine(pyhf.Workspace(left), pyhf.Workspace(right), join="left outer",
                                      merge_channels=True)
    _same(algebra.combine(left, right, join="left outer", merge_channels=True), expected)


def test_prune_rename_sorted_equal_pyhf():
    spec = algebra.combine(_binned(), algebra.rename(_binned(), channels={"SR_2l2v": "CR"}), join="outer")
    theirs = pyhf.Workspace(spec)
    _same(algebra.prune(spec, modifiers=["lumi"], samples=["signal"]), theirs.prune(modifiers=["lumi"], samples=["signal"]))
    _same(algebra.prune(spec, channels=["CR"]), theirs.prune(channels=["CR"]))
    _same(algebra.prune(spec, modifier_types=["normsys"]), theirs.prune(modifier_types=["normsys"]))
    renames = {"modifiers": {"mu": "mu_SM", "bkg_xs": "bkg_xsec"}, "samples": {"signal": "ggH"},
               "channels": {"CR": "ZZ_CR"}, "measurements": {"meas": "fit"}}
    _same(algebra.rename(spec, **renames), theirs.rename(**renames))
    _same(algebra.sorted_spec(spec), pyhf.Workspace.sorted(theirs))


# ----------------------------------------------------------------------------- join rules and errors


def test_combine_same_channel_without_join_is_an_error():
    with pytest.raises(InvalidWorkspaceOperation, match=r"join='none'.*channel 'SR_2l2v'"):
        algebra.combine(_binned(), _binned())


def test_outer_join_rules():
    same = algebra.combine(_binned(), _binned(), join="outer")
    assert [c["name"] for c in same["channels"]] == ["SR_2l2v"]
    changed = _binned()
    changed["channels"][0]["samples"][0]["data"] = [3.0, 7.0]
    with pytest.raises(InvalidWorkspaceOperation, match=r"channel 'SR_2l2v' differently"):
        algebra.combine(_binned(), changed, join="outer")
    assert algebra.combine(_binned(), changed, join="right outer")["channels"][0]["samples"][0]["data"] == [3.0, 7.0]
    assert algebra.combine(_binned(), changed, join="left outer")["channels"][0]["samples"][0]["data"] == [3.0, 6.0]
    with pytest.raises(InvalidWorkspaceOperation, match=r"parameter configuration of measurement 'meas'.*'lumi'"):
        algebra.combine(_binned(), algebra.rename(_binned(lumi_sigma=0.05), channels={"SR_2l2v": "CR"}), join="outer")
    other_poi = algebra.rename(_binned(), channels={"SR_2l2v": "CR"}, modifiers={"mu": "mu2"})
    with pytest.raises(InvalidWorkspaceOperation, match=r"measurement 'meas' has POI 'mu' on the left and 'mu2'"):
        algebra.combine(_binned(), other_poi, join="outer")
    with pytest.raises(InvalidWorkspaceOperation, match="unknown join 'inner'"):
        algebra.combine(_binned(), _binned(), join="inner")


def test_unknown_names_are_errors():
    with pytest.raises(InvalidWorkspaceOperation, match="no channel 'CR'"):
        algebra.prune(_binned(), channels=["CR"])
    with pytest.raises(InvalidWorkspaceOperation, match="no modifier 'jes'"):
        algebra.rename(_binned(), modifiers={"jes": "JES"})


def test_inputs_are_not_modified():
    left, right = _binned(), algebra.rename(_binned(), channels={"SR_2l2v": "CR"})
    before = json.dumps([left, right])
    algebra.combine(left, right, join="outer")
    algebra.sorted_spec(left)
    algebra.prune(left, modifiers=["lumi"])
    assert json.dumps([left, right]) == before


# ----------------------------------------------------------------------------- unbinned channels and files


def test_combine_unbinned_from_another_directory(tmp_path):
    unbinned = _unbinned_dir(tmp_path / "nsbi")
    (tmp_path / "binned.json").write_text(json.dumps(_binned()))
    binned = ratiofactory.Workspace.load(tmp_path / "binned.json")
    combined = ratiofactory.Workspace.combine(binned, unbinned, join="outer")
    assert combined.base_dir == tmp_path.resolve()
    refs = dict(ratiofactory.workspace.file_references(combined.spec))
    assert refs["/unbinned_channels/0/samples/0/ratio/onnx"]["path"] == "nsbi/models/S.onnx"
    assert refs["/observations/1/events"]["path"] == "nsbi/observed.npz"
    assert refs["/observations/1/events"]["sha256"] == sha256_file(tmp_path / "nsbi" / "observed.npz")
    assert len(combined.digest()) == 64  # every file resolves and its digest verifies
    # the combined likelihood is the sum of the parts (mu shared, no constraint on it)
    model, parts = combined.model(), [binned.model(), unbinned.model()]
    data = combined.data(model)
    rng = np.random.default_rng(1)
    for _ in range(3):
        values = {"mu": rng.uniform(0.5, 2), "lumi": rng.uniform(0.95, 1.05),
                  "bkg_xs": rng.uniform(-1, 1), "bkg_4l": rng.uniform(-1, 1)}
        total = sum(float(p.logpdf([values[n] for n in p.config.par_order], ws.data(p))[0])
                    for p, ws in zip(parts, [binned, unbinned], strict=True))
        assert float(model.logpdf([values[n] for n in model.config.par_order], data)[0]) == pytest.approx(total, rel=1e-12)


def test_combine_refuses_files_outside_the_combined_directory(tmp_path):
    unbinned = _unbinned_dir(tmp_path / "a" / "nsbi")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "binned.json").write_text(json.dumps(_binned()))
    binned = ratiofactory.Workspace.load(tmp_path / "b" / "binned.json")
    with pytest.raises(InvalidWorkspaceOperation, match=r"/unbinned_channels/0/samples/0/ratio/onnx/path: .* lies outside"):
        ratiofactory.Workspace.combine(binned, unbinned, join="outer")
    assert ratiofactory.Workspace.combine(unbinned, binned, join="outer").base_dir == (tmp_path / "a" / "nsbi").resolve()


def test_combine_with_plain_pyhf_file(tmp_path):
    unbinned = _unbinned_dir(tmp_path)
    pyhf_spec = dict(pyhf.Workspace(_binned()))
    combined = ratiofactory.Workspace.combine(unbinned, pyhf_spec, join="outer")
    assert combined.channels == ["SR_2l2v", "SR_4l"]
    assert combined.model().config.npars == 4


def test_unbinned_rename_prune_sorted(tmp_path):
    ws = _unbinned_dir(tmp_path)
    renamed = ws.rename(modifiers={"mu": "mu_offshell"}, samples={"B": "qqZZ"})
    sample = renamed.spec["unbinned_channels"][0]["samples"][0]
    assert sample["modifiers"][0]["data"]["expression"] == "mu_offshell * (1 + 0 * mu_offshell)"
    assert renamed.spec["measurements"][0]["config"]["poi"] == "mu_offshell"
    assert renamed.model().config.par_order == ["mu_offshell", "bkg_4l"]
    assert renamed.digest() != ws.digest()
    pruned = ws.prune(modifiers=["bkg_4l"])
    assert pruned.model().config.par_order == ["mu"]
    ordered = renamed.sorted()
    assert [s["name"] for s in ordered.spec["unbinned_channels"][0]["samples"]] == ["S", "qqZZ"]
    assert ordered.base_dir == ws.base_dir
    assert len(ordered.digest()) == 64


def test_doctests_of_docs_and_modules():
    import doctest
    from pathlib import Path

    import ratiofactory.pyhf_compat
    import ratiofactory.sampling

    for module in (algebra, ratiofactory.pyhf_compat, ratiofactory.sampling):
        assert doctest.testmod(module, raise_on_error=False).failed == 0, module.__name__
    docs = Path(__file__).resolve().parents[1] / "docs" / "combining.md"
    result = doctest.testfile(str(docs), module_relative=False, raise_on_error=False, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
