"""Subcommands on files: digest, pack, verify, unpack."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import (
    WORKSPACE,
    common_options,
    emit,
    load_workspace,
    output_option,
    progress,
    show,
    write_json_atomic,
)
from ._outputs import STDOUT, protect_inputs, relocated


@click.command()
@WORKSPACE
@click.option("--in-place", is_flag=True, help="Rewrite WORKSPACE itself.")
@click.option("--update", is_flag=True, help="Overwrite recorded digests that differ from the files.")
@output_option
@common_options
def digest(workspace: str, in_place: bool, update: bool, output_file: str | None) -> None:
    """Record the sha256 of every referenced file in the workspace JSON.

    Writes to --output-file, or rewrites WORKSPACE with --in-place, or prints the JSON.
    Written elsewhere, the file references are rewritten relative to the output's
    directory, which must contain the files (as combine, prune and rename do).
    """
    from ..files import file_references
    from ..publish import record_digests

    if in_place and output_file:
        raise click.UsageError("give either --in-place or --output-file, not both")
    if in_place and workspace == "-":
        raise click.UsageError("--in-place needs a workspace file, not stdin")
    ws = load_workspace(workspace)  # an --output-file may not overwrite the workspace or its files
    target = workspace if in_place else (output_file or STDOUT)
    relocated(ws.spec, ws.base_dir, target, "the digested workspace")  # refused before any file is hashed
    spec, added = record_digests(workspace, update=update)
    spec = relocated(spec, ws.base_dir, target, "the digested workspace")
    write_json_atomic(target, spec)
    if target != STDOUT:
        total = len(list(file_references(spec)))
        show(f"{total} file digest(s) in {target}: {added} added or updated, {total - added} already"
             " recorded (checked against the files)")


@click.command()
@WORKSPACE
@click.argument("bundle", type=click.Path(dir_okay=False), required=False)
@click.option("--hepdata", "hepdata_dir", default=None, type=click.Path(file_okay=False),
              help="Write a HEPData submission into this new or empty directory (the bundle is "
                   "one of its resources).")
@click.option("--result", "results", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="With --hepdata: a result JSON (fit/scan/cls/upper-limit/significance/impacts -o) "
                   "to tabulate; repeatable. Default: a fit and a profile scan computed here.")
@click.option("--measurement", default=None, help="With --hepdata and no --result: the measurement.")
@output_option
@common_options
def pack(workspace: str, bundle: str | None, hepdata_dir: str | None, results: tuple[str, ...],
         measurement: str | None, output_file: str | None) -> None:
    """Write BUNDLE (.tar.gz): WORKSPACE, every referenced file and a sha256 manifest.

    With --hepdata DIR, write a HEPData submission instead: submission.yaml, one table per
    result and the bundle as an additional resource with its sha256.
    """
    from .. import publish

    load_workspace(workspace)  # BUNDLE and --output-file may not overwrite an input
    if hepdata_dir is None:
        if bundle is None:
            raise click.UsageError("give BUNDLE, or --hepdata DIR")
        with progress("packing"):
            files = publish.pack(workspace, bundle)
        emit({"bundle": bundle, "files": files}, output_file, f"packed {len(files)} files into {bundle}")
        return
    if bundle is not None:
        raise click.UsageError("with --hepdata the bundle is written into DIR: give no BUNDLE")
    from .. import hepdata

    payloads = [_read_result(path) for path in results]
    with progress("writing the HEPData submission"):
        summary = hepdata.write_submission(workspace, hepdata_dir, payloads, measurement=measurement)
    checked = "validated by hepdata-validator" if summary["validated"] else "hepdata-validator not installed"
    emit(summary, output_file, f"HEPData submission in {hepdata_dir}: {len(summary['tables'])} tables,"
                               f" bundle {summary['bundle']} (sha256 {summary['sha256']}); {checked}")


def _read_result(path: str) -> dict:
    from .. import jsontext
    from ..errors import InvalidFile
    from ..files import read_text

    payload = jsontext.loads(read_text(path, "a result JSON"), path)
    if not isinstance(payload, dict):
        raise InvalidFile(f"{path}: a result JSON is an object")
    return payload


@click.command()
@click.argument("path")
@output_option
@common_options
def verify(path: str, output_file: str | None) -> None:
    """Verify a bundle, an unpacked bundle directory or an unpacked HEPData submission:
    digests, schema, ONNX models (no fit)."""
    from .. import hepdata, publish

    root = Path(path)
    inputs = {p: "a file of the bundle" for p in root.rglob("*") if p.is_file()} if root.is_dir() else {}
    protect_inputs({root: "the bundle", **inputs})
    if (root / hepdata.SUBMISSION).is_file():
        with progress("verifying"):
            report = hepdata.verify_submission(path)
        emit(report, output_file, f"verified HEPData submission {path}: "
                                  + ", ".join(f"{b['files']} files, digest {b['digest']}" for b in report["bundles"]))
        return
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
