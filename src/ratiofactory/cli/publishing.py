"""Subcommands on files: digest, pack, verify, unpack."""

from __future__ import annotations

import json
import sys

import click

from ._common import (
    WORKSPACE,
    common_options,
    emit,
    load_workspace,
    output_option,
    progress,
    protect_inputs,
    show,
    write_json_atomic,
)


@click.command()
@WORKSPACE
@click.option("--in-place", is_flag=True, help="Rewrite WORKSPACE itself.")
@click.option("--update", is_flag=True, help="Overwrite recorded digests that differ from the files.")
@output_option
@common_options
def digest(workspace: str, in_place: bool, update: bool, output_file: str | None) -> None:
    """Record the sha256 of every referenced file in the workspace JSON.

    Writes to --output-file, or rewrites WORKSPACE with --in-place, or prints the JSON.
    """
    from ..publish import record_digests

    if in_place and output_file:
        raise click.UsageError("give either --in-place or --output-file, not both")
    load_workspace(workspace)  # an --output-file may not overwrite the workspace or its files
    spec, added = record_digests(workspace, update=update)
    target = workspace if in_place else output_file
    if target:
        write_json_atomic(target, spec)
        show(f"{added} digest(s) recorded in {target}")
    else:
        sys.stdout.write(json.dumps(spec, indent=2, sort_keys=True) + "\n")


@click.command()
@WORKSPACE
@click.argument("bundle", type=click.Path(dir_okay=False))
@output_option
@common_options
def pack(workspace: str, bundle: str, output_file: str | None) -> None:
    """Write BUNDLE (.tar.gz): WORKSPACE, every referenced file and a sha256 manifest."""
    from .. import publish

    load_workspace(workspace)  # BUNDLE and --output-file may not overwrite an input
    with progress("packing"):
        files = publish.pack(workspace, bundle)
    emit({"bundle": bundle, "files": files}, output_file, f"packed {len(files)} files into {bundle}")


@click.command()
@click.argument("path")
@output_option
@common_options
def verify(path: str, output_file: str | None) -> None:
    """Verify a bundle or unpacked directory: digests, schema, ONNX models (no fit)."""
    from pathlib import Path

    from .. import publish

    root = Path(path)
    inputs = {p: "a file of the bundle" for p in root.rglob("*") if p.is_file()} if root.is_dir() else {}
    protect_inputs({root: "the bundle", **inputs})
    with progress("verifying"):
        report = publish.verify(path)
    emit(report, output_file, f"verified {path}: {report['files']} files, "
                              f"{report['onnx_checked']} ONNX ratio models; digest {report['digest']}")


@click.command()
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.argument("target", type=click.Path(file_okay=False))
@common_options
def unpack(bundle: str, target: str) -> None:
    """Extract BUNDLE into the empty or new directory TARGET (unsafe members refused)."""
    from .. import publish

    publish.unpack(bundle, target)
    show(f"unpacked {bundle} into {target}")


COMMANDS = [digest, pack, verify, unpack]
