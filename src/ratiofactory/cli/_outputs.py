"""Where commands write: output paths checked against the inputs (never overwrite what the
user gave) and workspaces written elsewhere with their file references rewritten."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

STDOUT = "-"
"""The ``-o`` value that means standard output (as for pyhf and most Unix tools)."""

_OUTPUT_PARAMETERS = {"output_file": "--output-file", "output": "--output", "plot": "--plot", "bundle": "BUNDLE",
                      "table": "--table"}
"""The parameters through which commands write files, with the name shown in errors
(tests/test_bad_input.py checks that every file-path parameter is here or a known input)."""


def workspace_inputs(ws: Any, source: str) -> dict[Path, str]:
    """The workspace file and every file it references (resolved), with what each is."""
    from ..errors import RatiofactoryError
    from ..files import file_references, resolve_path

    inputs = {} if source == "-" else {Path(source): "the workspace"}
    for pointer, ref in file_references(ws.spec):
        try:
            path = resolve_path(ws.base_dir, ref["path"], pointer=pointer)
        except RatiofactoryError:
            continue  # reported with its pointer when the file is read
        inputs.setdefault(path, f"the file the workspace references at {pointer}")
    return inputs


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def protect_inputs(inputs: Mapping[Path, str], outputs: Mapping[str, Any] | None = None) -> None:
    """Refuse an output path that is one of ``inputs`` (after resolving links; hard links
    too) or that another output of the same command also names.

    ``outputs`` maps the option shown in errors to the path; by default the current
    click command's ``--output-file``, ``--plot`` and ``BUNDLE`` parameters.
    """
    if outputs is None:
        params = click.get_current_context().params
        outputs = {shown: params.get(name) for name, shown in _OUTPUT_PARAMETERS.items()}
    by_path = {Path(path).resolve(): what for path, what in inputs.items()}
    by_identity = {key: what for path, what in inputs.items() if (key := _identity(Path(path)))}
    written: dict[Path, str] = {}
    for option, output in outputs.items():
        if not output:
            continue
        target = Path(output).resolve()
        what = by_path.get(target) or by_identity.get(_identity(target) or (-1, -1))
        if what is not None:
            raise click.BadParameter(f"{output} is {what}; refusing to overwrite an input, write elsewhere",
                                     param_hint=option)
        if target in written:
            raise click.BadParameter(f"{output} is also given to {written[target]}; give each output its own path",
                                     param_hint=option)
        written[target] = option


def output_directory(output_file: str | None, default: Path) -> Path:
    """The directory a workspace written to ``output_file`` lives in (``default``, the
    input's directory, for stdout)."""
    return Path(output_file).resolve().parent if output_file and output_file != STDOUT else default


def relocated(spec: dict[str, Any], base_dir: Path, output_file: str | None, what: str) -> dict[str, Any]:
    """``spec`` (file references relative to ``base_dir``) with its references rewritten
    relative to the directory of ``output_file``; refused where a file lies outside it
    (:func:`ratiofactory.algebra.rebase_paths`). The workspace-writing commands (combine,
    prune, rename, digest, spurious-signal) all go through here, before any long work."""
    from ..algebra import rebase_paths

    return rebase_paths(spec, base_dir, output_directory(output_file, base_dir), what=what)
