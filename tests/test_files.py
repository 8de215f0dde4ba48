"""Safe file resolution inside the workspace directory and sha256 digests."""

from __future__ import annotations

import hashlib
import os

import pytest

from ratiofactory.errors import DigestMismatch, InvalidFile, InvalidSpecification, UnsafePath
from ratiofactory.files import open_file_ref, read_file_ref, resolve_path, sha256_file

POINTER = "/unbinned_channels/0/reference/events"


@pytest.fixture
def workspace(tmp_path):
    base = tmp_path / "ws"
    (base / "data").mkdir(parents=True)
    (base / "data" / "ref.npz").write_bytes(b"reference events")
    (tmp_path / "secret.txt").write_bytes(b"outside")
    return base


def test_resolves_relative_path_inside(workspace):
    path = resolve_path(workspace, "data/ref.npz", pointer=POINTER)
    assert path == (workspace / "data" / "ref.npz").resolve()


def test_dotdot_that_stays_inside_is_allowed(workspace):
    path = resolve_path(workspace, "data/../data/ref.npz", pointer=POINTER)
    assert path.read_bytes() == b"reference events"


@pytest.mark.parametrize("relative", ["/etc/passwd", "C:/Windows/system.ini"])
def test_absolute_path_refused(workspace, relative):
    with pytest.raises(UnsafePath, match=f"^{POINTER}: path '{relative}' is absolute"):
        resolve_path(workspace, relative, pointer=POINTER)


def test_dotdot_escape_refused(workspace):
    with pytest.raises(UnsafePath, match=rf"^{POINTER}: path '\.\./secret\.txt' escapes"):
        resolve_path(workspace, "../secret.txt", pointer=POINTER)
    with pytest.raises(UnsafePath, match="escapes the workspace directory"):
        resolve_path(workspace, "data/../../secret.txt", pointer=POINTER)


def test_symlink_out_refused(workspace, tmp_path):
    os.symlink(tmp_path / "secret.txt", workspace / "data" / "link.npz")
    with pytest.raises(
        UnsafePath,
        match=rf"^{POINTER}: path 'data/link\.npz' is a symlink "
        "resolving to .*secret.txt, outside",
    ):
        resolve_path(workspace, "data/link.npz", pointer=POINTER)


def test_symlinked_directory_out_refused(workspace, tmp_path):
    os.symlink(tmp_path, workspace / "up")
    with pytest.raises(UnsafePath, match="outside the workspace directory"):
        resolve_path(workspace, "up/secret.txt", pointer=POINTER)


def test_symlink_inside_is_allowed(workspace):
    os.symlink("ref.npz", workspace / "data" / "alias.npz")
    path = resolve_path(workspace, "data/alias.npz", pointer=POINTER)
    assert path == (workspace / "data" / "ref.npz").resolve()


def test_missing_file(workspace):
    with pytest.raises(InvalidFile, match=rf"^{POINTER}: file 'data/none\.npz' does not exist"):
        resolve_path(workspace, "data/none.npz", pointer=POINTER)


def test_directory_is_not_a_file(workspace):
    with pytest.raises(InvalidFile, match="'data' is not a regular file"):
        resolve_path(workspace, "data", pointer=POINTER)


def test_non_string_path_is_a_spec_error(workspace):
    with pytest.raises(InvalidSpecification, match=f"^{POINTER}: expected a relative file path"):
        resolve_path(workspace, "", pointer=POINTER)


def test_size_limit(workspace, monkeypatch):
    with pytest.raises(InvalidFile, match="has 16 bytes, above the limit of 10"):
        resolve_path(workspace, "data/ref.npz", pointer=POINTER, max_bytes=10)
    monkeypatch.setenv("RATIOFACTORY_MAX_FILE_BYTES", "15")
    with pytest.raises(InvalidFile, match="above the limit of 15"):
        resolve_path(workspace, "data/ref.npz", pointer=POINTER)
    monkeypatch.setenv("RATIOFACTORY_MAX_FILE_BYTES", "16")
    assert resolve_path(workspace, "data/ref.npz", pointer=POINTER).name == "ref.npz"


def test_sha256_matches_hashlib(workspace, tmp_path):
    big = tmp_path / "big.bin"
    content = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    big.write_bytes(content)
    assert sha256_file(big) == hashlib.sha256(content).hexdigest()
    assert (
        sha256_file(workspace / "data" / "ref.npz")
        == hashlib.sha256(b"reference events").hexdigest()
    )


def test_sha256_sees_a_rewritten_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    first = sha256_file(path)
    path.write_bytes(b"two, longer")
    assert first != sha256_file(path) == hashlib.sha256(b"two, longer").hexdigest()


def test_open_file_ref_checks_digest(workspace):
    good = hashlib.sha256(b"reference events").hexdigest()
    ref = {"path": "data/ref.npz", "sha256": good.upper()}
    assert open_file_ref(workspace, ref, pointer=POINTER).name == "ref.npz"
    assert open_file_ref(workspace, {"path": "data/ref.npz"}, pointer=POINTER).is_file()
    recorded = "cd34" + "0" * 60
    with pytest.raises(DigestMismatch) as info:
        open_file_ref(workspace, {"path": "data/ref.npz", "sha256": recorded}, pointer=POINTER)
    message = str(info.value)
    assert message.startswith(
        f"{POINTER}: sha256 of data/ref.npz is {good}, the workspace records {recorded}"
    )
    assert "\n" not in message


def test_read_file_ref_returns_verified_bytes(workspace):
    content, digest = read_file_ref(workspace, {"path": "data/ref.npz"}, pointer=POINTER)
    assert content == b"reference events"
    assert digest == hashlib.sha256(content).hexdigest()
    with pytest.raises(DigestMismatch, match=r"sha256 of data/ref\.npz is"):
        read_file_ref(workspace, {"path": "data/ref.npz", "sha256": "a" * 64}, pointer=POINTER)


def test_malformed_digest_is_a_spec_error(workspace):
    with pytest.raises(InvalidSpecification, match=f"^{POINTER}/sha256: sha256 must be 64"):
        open_file_ref(workspace, {"path": "data/ref.npz", "sha256": "xyz"}, pointer=POINTER)
