"""Signal grids: ``patchset`` (inspect, verify, apply, make) and ``grid`` (a limit per patch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._common import (
    WORKSPACE,
    common_options,
    emit,
    load_workspace,
    output_option,
    plot_option,
    progress,
    set_backend,
    show,
    show_progress,
    write_json_atomic,
)
from ._outputs import protect_inputs
from .toys import executor

PATCHSET = click.argument("patchset_file", metavar="PATCHSET", type=click.Path(dir_okay=False))


def _load_patchset(path: str) -> Any:
    from ..patchset import PatchSet

    protect_inputs({Path(path): "the patchset"})
    return PatchSet.load(path)


@click.group()
def patchset() -> None:
    """pyhf patchsets on ratiofactory workspaces (signal grids)."""


@patchset.command("inspect")
@PATCHSET
@output_option
@common_options
def inspect_patchset(patchset_file: str, output_file: str | None) -> None:
    """Labels, digests and the patches (names, values) of PATCHSET."""
    from ..infer._format import table

    patches = _load_patchset(patchset_file)
    payload = {"labels": patches.labels, "digests": patches.digests, "description": patches.description,
               "patches": [{"name": p.name, "values": list(p.values), "operations": len(p.operations)}
                           for p in patches]}
    rows = [[p.name, *p.values, len(p.operations)] for p in patches]
    emit(payload, output_file, table(["patch", *patches.labels, "operations"], rows,
                                     f"{patches.description} ({len(patches)} patches)"))


@patchset.command()
@WORKSPACE
@PATCHSET
@common_options
def verify(workspace: str, patchset_file: str) -> None:
    """Check that PATCHSET was made for WORKSPACE (its digest) and that every patch applies."""
    patches = _load_patchset(patchset_file)
    ws = load_workspace(workspace)
    patches.verify(ws, hint="'patchset apply --no-verify' applies a patch anyway")
    with progress("applying every patch"):
        for patch in patches:
            patches.apply(ws, patch.name, verify=False)
    show(f"{patchset_file}: {len(patches)} patches apply to {workspace} (digest verified)")


@patchset.command()
@WORKSPACE
@PATCHSET
@click.option("--name", "name", required=True, help="The patch (signal point) to apply.")
@click.option("--output-file", "-o", required=True, type=click.Path(dir_okay=False),
              help="Patched workspace JSON; in WORKSPACE's directory when it references files.")
@click.option("--no-verify", is_flag=True, help="Apply even if the digest of WORKSPACE differs.")
@common_options
def apply(workspace: str, patchset_file: str, name: str, output_file: str, no_verify: bool) -> None:
    """Write WORKSPACE with one patch of PATCHSET applied (validated)."""
    from ..files import file_references

    patches = _load_patchset(patchset_file)
    ws = load_workspace(workspace)
    if not no_verify:
        patches.verify(ws, hint="--no-verify applies it anyway")
    patched = patches.apply(ws, name, verify=False)
    if list(file_references(patched.spec)) and Path(output_file).resolve().parent != ws.base_dir:
        raise click.BadParameter(f"the workspace references files relative to {ws.base_dir}: write the patched "
                                 "workspace into that directory (or use --patch on the analysis commands)",
                                 param_hint="--output-file")
    write_json_atomic(output_file, patched.spec)
    show(f"wrote {output_file}: {workspace} with patch {name}")


@patchset.command()
@WORKSPACE
@click.argument("patch_files", metavar="PATCH...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--labels", required=True, help="Comma-separated names of the grid coordinates (e.g. m_sb,m_n2,m_n1).")
@click.option("--description", default="", help="What the patches are.")
@click.option("--hepdata", default=None, help="HEPData record (insNNNNNNN), for pyhf's references.")
@click.option("--output-file", "-o", required=True, type=click.Path(dir_okay=False), help="Patchset JSON.")
@common_options
def make(workspace: str, patch_files: tuple[str, ...], labels: str, description: str, hepdata: str | None,
         output_file: str) -> None:
    """A patchset from JSON-patch files (one per point; values: the numbers in each file name,
    e.g. patch.sbottom_1300_850_60.json → 1300, 850, 60)."""
    from ..patchset import PatchSet, load_patch_operations

    protect_inputs({Path(p): "a PATCH file" for p in patch_files})
    ws = load_workspace(workspace)
    patches = {}
    for path in patch_files:
        stem = Path(path).name.removesuffix(".json").removeprefix("patch.")
        patches[stem] = load_patch_operations(path)
    result = PatchSet.from_patches(ws.spec, patches, labels=[s.strip() for s in labels.split(",")],
                                   description=description, references={"hepdata": hepdata} if hepdata else None)
    write_json_atomic(output_file, result.to_dict())
    show(f"wrote {output_file}: {len(result)} patches, labels {', '.join(result.labels)}")


def _parse_select(items: tuple[str, ...]) -> dict[str, float]:
    selected = {}
    for item in items:
        label, sep, value = item.partition("=")
        try:
            selected[label.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(f"expected LABEL=VALUE, got {item!r}", param_hint="--select") from None
        if not sep:
            raise click.BadParameter(f"expected LABEL=VALUE, got {item!r}", param_hint="--select")
    return selected


@click.command()
@WORKSPACE
@PATCHSET
@click.option("--backend", type=click.Choice(["numpy", "jax"]), default="numpy", show_default=True)
@click.option("--measurement", default=None, help="Measurement name (default: the first).")
@click.option("--test-poi", type=float, default=1.0, show_default=True, help="POI value tested at every point.")
@click.option("--test-stat", type=click.Choice(["qtilde", "q"]), default="qtilde", show_default=True)
@click.option("--optimizer", type=click.Choice(["minuit", "scipy"]), default="minuit", show_default=True)
@click.option("--strategy", type=click.IntRange(0, 2), default=None,
              help="MINUIT strategy (default: 0 with exact gradients, 1 without; 2 for the most precise bands).")
@click.option("--level", type=float, default=0.05, show_default=True, help="CLs level of the exclusion.")
@click.option("--upper-limit", is_flag=True, help="Also compute the CLs upper limit on the POI at every point.")
@click.option("--name", "names", multiple=True, help="Only this patch; repeatable.")
@click.option("--select", "select", multiple=True, metavar="LABEL=VALUE",
              help="Only the points with this value of a label (e.g. m_n1=60); repeatable.")
@click.option("--dask-workers", type=click.IntRange(1), default=None,
              help="Run the points on a local Dask cluster of this many worker processes.")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Run the points on an existing Dask cluster.")
@click.option("--no-verify", is_flag=True, help="Run even if the patchset's digest of WORKSPACE differs.")
@plot_option("the exclusion-contour plot")
@click.option("--x", "x_label", default=None, help="Label on the plot's x axis (default: the first).")
@click.option("--y", "y_label", default=None, help="Label on the plot's y axis (default: the second).")
@click.option("--table", default=None, type=click.Path(dir_okay=False), help="Write the table as CSV.")
@output_option
@common_options
def grid(workspace: str, patchset_file: str, backend: str, measurement: str | None, test_poi: float,
         test_stat: str, optimizer: str, strategy: int | None, level: float, upper_limit: bool, names: tuple[str, ...], select: tuple[str, ...],
         dask_workers: int | None, scheduler: str | None, no_verify: bool, plot: str | None,
         x_label: str | None, y_label: str | None, table: str | None, output_file: str | None) -> None:
    """CLs at POI = --test-poi (and upper limits) for every patch of PATCHSET applied to
    WORKSPACE: a table, and an exclusion-contour plot with --plot."""
    from .. import grid as signal_grid
    from ..infer import FitOptions
    from ..toys import executors

    patches = _load_patchset(patchset_file)
    set_backend(backend)
    ws = load_workspace(workspace)
    if not no_verify:
        patches.verify(ws, hint="--no-verify runs the grid anyway")
    with executors.progress_bars(show_progress()), executor(dask_workers, scheduler) as runner:
        result = signal_grid.run_grid(ws, patches, test_poi=test_poi, test_stat=test_stat, level=level,
                                      upper_limit=upper_limit, measurement=measurement,
                                      names=list(names) or None, select=_parse_select(select),
                                      executor=runner, verify=False, backend=backend,
                                      options=FitOptions(method=optimizer, strategy=strategy))
    emit(result.to_dict(), output_file, str(result))
    if table:
        result.write_csv(table)
    if plot:
        from .. import plots

        plots.plot_exclusion(result, x=x_label, y=y_label, path=plot)
    if result.failed:
        raise click.ClickException(f"{len(result.failed)} of {len(result.points)} points failed; "
                                   f"first: {result.failed[0].name}: {result.failed[0].error}")


COMMANDS = [patchset, grid]
