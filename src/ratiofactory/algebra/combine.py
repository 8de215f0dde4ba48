"""Combining two workspace specifications (pyhf's join modes), rebasing file paths, sorting."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from ..files import file_references
from .checks import CHANNEL_LISTS, InvalidWorkspaceOperation, all_channels, checked

JOINS = ("none", "outer", "left outer", "right outer")



def _join_items(
    left: Sequence[Mapping], right: Sequence[Mapping], join: str, what: str, merge_key: str | None = None
) -> list[dict]:
    primary, secondary = (right, left) if join == "right outer" else (left, right)
    joined = [copy.deepcopy(dict(item)) for item in primary]
    position = {item["name"]: i for i, item in enumerate(joined)}
    for item in secondary:
        name = item["name"]
        if name not in position:
            joined.append(copy.deepcopy(dict(item)))
            continue
        if join == "none":
            raise InvalidWorkspaceOperation(
                f"combine (join='none'): both workspaces define {what} {name!r}; rename one of them "
                "or choose join='outer', 'left outer' or 'right outer'"
            )
        if merge_key is not None:
            target = joined[position[name]]
            target[merge_key] = _join_items(target[merge_key], item[merge_key], "left outer", "sample")
        elif join == "outer" and dict(item) != joined[position[name]]:
            raise InvalidWorkspaceOperation(
                f"combine (join='outer'): the two workspaces define {what} {name!r} differently; "
                "make them identical, rename one, or choose join='left outer' or 'right outer'"
            )
    return joined


def _join_measurements(left: Sequence[Mapping], right: Sequence[Mapping], join: str) -> list[dict]:
    if join != "outer":
        return _join_items(left, right, join, "measurement")
    joined = [copy.deepcopy(dict(m)) for m in left]
    position = {m["name"]: i for i, m in enumerate(joined)}
    for measurement in right:
        name = measurement["name"]
        if name not in position:
            joined.append(copy.deepcopy(dict(measurement)))
            continue
        target = joined[position[name]]["config"]
        if target["poi"] != measurement["config"]["poi"]:
            raise InvalidWorkspaceOperation(
                f"combine (join='outer'): measurement {name!r} has POI {target['poi']!r} on the left "
                f"and {measurement['config']['poi']!r} on the right"
            )
        target["parameters"] = _join_items(
            target.get("parameters", []), measurement["config"].get("parameters", []), "outer",
            f"parameter configuration of measurement {name!r}:",
        )
    return joined


def combine(
    left: Mapping[str, Any],
    right: Mapping[str, Any],
    *,
    join: str = "none",
    merge_channels: bool = False,
    left_base_dir: str | Path | None = None,
    right_base_dir: str | Path | None = None,
    base_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The combination of two workspace specifications (see the module docstring).

    With ``left_base_dir``/``right_base_dir`` (the directories the specs' relative file
    paths start from), the paths are rewritten relative to ``base_dir`` (default:
    ``left_base_dir``), the directory the combined workspace will live in.
    """
    if join not in JOINS:
        raise InvalidWorkspaceOperation(f"unknown join {join!r}; choose one of {', '.join(map(repr, JOINS))}")
    if merge_channels and join == "none":
        raise InvalidWorkspaceOperation("merge_channels needs join='outer', 'left outer' or 'right outer'")
    if left.get("version") != right.get("version"):
        raise InvalidWorkspaceOperation(
            f"combine: workspace versions differ ({left.get('version')!r} and {right.get('version')!r})"
        )
    if base_dir is None:
        base_dir = left_base_dir
    if base_dir is not None:
        if left_base_dir is not None:
            left = rebase_paths(left, left_base_dir, base_dir, what="the combined workspace")
        if right_base_dir is not None:
            right = rebase_paths(right, right_base_dir, base_dir, what="the combined workspace")
    spec: dict[str, Any] = {"version": left["version"]}
    merge_key = "samples" if merge_channels else None
    for key in CHANNEL_LISTS:
        if key in left or key in right:
            spec[key] = _join_items(left.get(key, []), right.get(key, []), join, "channel", merge_key)
    spec["observations"] = _join_items(left["observations"], right["observations"], join, "observation")
    spec["measurements"] = _join_measurements(left["measurements"], right["measurements"], join)
    return checked(spec, f"combine (join={join!r})")


# ----------------------------------------------------------------------------- file paths


def rebase_paths(spec: Mapping[str, Any], old_base: str | Path, new_base: str | Path, *,
                 what: str = "the new workspace") -> dict[str, Any]:
    """A copy of ``spec`` whose relative file paths, written for ``old_base``, point to the
    same files from ``new_base``. Refuses a file outside ``new_base`` (file references
    never leave a workspace's directory; ``what`` names the workspace written there in
    the error); digests are kept."""
    old_base, new_base = Path(old_base).resolve(), Path(new_base).resolve()
    out = copy.deepcopy(dict(spec))
    if old_base == new_base:
        return out
    for pointer, found in file_references(out):
        ref = cast(dict[str, Any], found)  # a dict of the deep copy (JSON objects are dicts)
        target = (old_base / ref["path"]).resolve()
        if not target.is_relative_to(new_base):
            raise InvalidWorkspaceOperation(
                f"{pointer}/path: {target} lies outside {new_base}, the directory of {what} (file"
                " references may not leave a workspace's directory); write it into a directory that"
                " contains the file, or copy the file under that directory first"
            )
        ref["path"] = Path(os.path.relpath(target, new_base)).as_posix()
    return out


def sorted_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with channels, samples, modifiers (by name, type), observations,
    measurements and parameter settings in alphabetical order. The order of an unbinned
    channel's observables is kept: it is the input order of its ONNX models."""
    out = copy.deepcopy(dict(spec))
    by_name = lambda item: item["name"]
    for key in CHANNEL_LISTS:
        if key in out:
            out[key].sort(key=by_name)
    for channel in all_channels(out):
        channel["samples"].sort(key=by_name)
        for sample in channel["samples"]:
            sample.get("modifiers", []).sort(key=lambda m: (m["name"], m["type"]))
    out["observations"].sort(key=by_name)
    out["measurements"].sort(key=by_name)
    for measurement in out["measurements"]:
        measurement["config"].get("parameters", []).sort(key=by_name)
    return checked(out, "sort")
