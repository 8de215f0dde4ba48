"""``--patch``/``-p`` applied: JSON patches or one patch of a patchset, in order, with every
file reference a patch adds checked (the error names the patch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

from .. import jsontext
from ..files import read_text


def apply_patches(ws: Any, patches: Sequence[str], patch_name: str | None) -> Any:
    """``ws`` with the ``--patch`` files applied in order (file references stay relative to
    the workspace's directory)."""
    from ..patchset import PatchSet, apply_patch, load_patch_operations

    if patch_name is not None and len(patches) != 1:
        raise click.UsageError("--patch-name selects a patch of one patchset: give exactly one --patch")
    for path in patches:
        text = jsontext.loads(read_text(path, "the patch file"), path)
        before = _file_paths(ws)
        if isinstance(text, dict):
            if patch_name is None:
                names = PatchSet(text, source=path).names
                raise click.UsageError(f"{path} is a patchset: choose a patch with --patch-name "
                                       f"({', '.join(names[:5])}{' ...' if len(names) > 5 else ''})")
            patchset = PatchSet(text, source=path)
            patchset.verify(ws, hint="'ratiofactory patchset apply --no-verify' writes the patched workspace anyway")
            ws = patchset.apply(ws, patch_name, verify=False)
        else:
            if patch_name is not None:
                raise click.UsageError(f"--patch-name {patch_name!r} selects a patch of a patchset, but {path} is a"
                                       " plain JSON patch: drop --patch-name (or give the patchset)")
            ws = apply_patch(ws, load_patch_operations(path), name=path)
        _check_new_files(ws, before, path)
    return ws


def _file_paths(ws: Any) -> dict[str, str]:
    from ..files import file_references

    return {pointer: str(ref.get("path")) for pointer, ref in file_references(ws.spec)}


def _check_new_files(ws: Any, before: Mapping[str, str], patch: str) -> None:
    """Every file reference the patch ``patch`` added or changed exists (the error names
    the patch: the workspace did not write that path)."""
    from ..errors import InvalidFile, RatiofactoryError
    from ..files import resolve_path

    for pointer, path in _file_paths(ws).items():
        if before.get(pointer) == path:
            continue
        try:
            exists = resolve_path(ws.base_dir, path, pointer=pointer).is_file()
        except RatiofactoryError as err:
            raise InvalidFile(f"the patch {patch}: {err}") from None
        if not exists:
            raise InvalidFile(f"the patch {patch} sets {pointer}/path to {path!r}, which does not exist in"
                              f" {ws.base_dir} (paths are relative to the workspace's directory)")
