"""Bundles: pack → verify → unpack elsewhere → identical fit; tampering and unsafe members."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import cli_toy
import pyhf
import pytest

import ratiofactory
from ratiofactory import infer, publish
from ratiofactory.errors import DigestMismatch, InvalidONNXModel, UnsafePath


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """(workspace path, bundle path) of the toy."""
    pyhf.set_backend("numpy", precision="64b")
    root = tmp_path_factory.mktemp("publish")
    path, _ = cli_toy.make_toy(root / "ws")
    target = root / "toy.tar.gz"
    publish.pack(path, target)
    return path, target


def _fit(path):
    ws = ratiofactory.Workspace.load(path)
    model = ws.model(cache=False)
    return infer.fit(model, ws.data(model))


def test_pack_manifest_lists_every_file_with_its_digest(bundle):
    path, target = bundle
    with tarfile.open(target) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile(publish.MANIFEST).read())
    expected = {"workspace.json", "models/S_a.onnx", "models/S_b.onnx", "models/B.onnx",
                "data/observed.npz", "data/reference.npz"}
    assert set(manifest["files"]) == expected
    assert names == expected | {publish.MANIFEST}
    from ratiofactory.files import sha256_file

    for name, digest in manifest["files"].items():
        assert digest == sha256_file(path.parent / name)


def test_pack_verify_unpack_fit_identical(bundle, tmp_path):
    path, target = bundle
    report = publish.verify(target)
    assert report["valid"] is True
    assert report["onnx_checked"] == 2  # the ensemble counts once, as one ratio spec
    assert report["digest"] == ratiofactory.Workspace.load(path).digest()
    unpacked = publish.unpack(target, tmp_path / "elsewhere")
    assert publish.verify(unpacked)["digest"] == report["digest"]
    original, copy = _fit(path), _fit(unpacked / "workspace.json")
    assert list(copy.values) == list(original.values)
    assert copy.twice_nll == original.twice_nll


def test_cli_pack_verify_unpack_fit(bundle, tmp_path):
    path, _ = bundle
    target = tmp_path / "cli.tar.gz"
    assert cli_toy.run(["pack", path, target]).exit_code == 0
    result = cli_toy.run(["verify", target, "--output-file", tmp_path / "verify.json"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "verify.json").read_text())["files"] == 6
    assert cli_toy.run(["unpack", target, tmp_path / "out"]).exit_code == 0
    fits = [cli_toy.run_json(["fit", p], tmp_path, f"fit{i}.json")
            for i, p in enumerate([path, tmp_path / "out" / "workspace.json"])]
    assert fits[0]["values"] == fits[1]["values"]
    assert fits[0]["twice_nll"] == fits[1]["twice_nll"]


def test_tampered_file_fails_verify_naming_it(bundle, tmp_path):
    _, target = bundle
    directory = publish.unpack(target, tmp_path / "tampered")
    onnx = directory / "models" / "B.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with pytest.raises(DigestMismatch, match=r"^models/B\.onnx: sha256 is"):
        publish.verify(directory)
    result = cli_toy.run(["verify", directory])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: models/B.onnx: sha256")


def test_broken_onnx_with_consistent_digests_fails_the_onnx_check(bundle, tmp_path):
    """A bundle repacked around a broken model passes the digests but not the ONNX check."""
    from ratiofactory.testing import broken_model

    path, _ = bundle
    work = tmp_path / "ws"
    for name in ("workspace.json", "models/S_a.onnx", "models/S_b.onnx", "models/B.onnx",
                 "data/observed.npz", "data/reference.npz"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes((path.parent / name).read_bytes())
    (work / "models" / "B.onnx").write_bytes(broken_model("wrong_width", n_observables=1))
    publish.pack(work / "workspace.json", tmp_path / "broken.tar.gz")
    with pytest.raises(InvalidONNXModel, match=r"B\.onnx"):
        publish.verify(tmp_path / "broken.tar.gz")


def test_digest_recorded_in_workspace_is_checked(bundle, tmp_path):
    path, _ = bundle
    spec, added = publish.record_digests(path)
    assert added == 5
    spec["observations"][0]["events"]["sha256"] = "0" * 64
    (path.parent / "bad_digest.json").write_text(json.dumps(spec))
    try:
        with pytest.raises(DigestMismatch, match=r"observed\.npz"):
            publish.pack(path.parent / "bad_digest.json", tmp_path / "x.tar.gz")
        assert not (tmp_path / "x.tar.gz").exists()
    finally:
        (path.parent / "bad_digest.json").unlink()


def _evil_bundle(path: Path, member: tarfile.TarInfo, content: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        if member.isfile():
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
        else:
            tar.addfile(member)
    return path


@pytest.mark.parametrize(("name", "message"), [
    ("../escape.txt", "outside the target directory"),
    ("data/../../escape.txt", "outside the target directory"),
    ("/etc/evil.txt", "absolute path"),
])
def test_unsafe_paths_are_refused(tmp_path, name, message):
    bundle = _evil_bundle(tmp_path / "evil.tar.gz", tarfile.TarInfo(name))
    with pytest.raises(UnsafePath, match=message):
        publish.unpack(bundle, tmp_path / "target")
    assert not (tmp_path / "target").exists()
    assert not (tmp_path / "escape.txt").exists()
    result = cli_toy.run(["unpack", bundle, tmp_path / "target2"])
    assert result.exit_code == 1
    assert message in result.stderr


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_links_and_devices_are_refused(tmp_path, kind):
    member = tarfile.TarInfo("models/B.onnx")
    member.type = kind
    member.linkname = "/etc/passwd"
    bundle = _evil_bundle(tmp_path / "evil.tar.gz", member)
    with pytest.raises(UnsafePath, match=r"models/B\.onnx"):
        publish.unpack(bundle, tmp_path / "target")
    with pytest.raises(UnsafePath):
        publish.verify(bundle)


def test_unpack_refuses_a_non_empty_target(bundle, tmp_path):
    _, target = bundle
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ratiofactory.RatiofactoryError, match="not empty"):
        publish.unpack(target, tmp_path / "full")
