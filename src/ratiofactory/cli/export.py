"""``ratiofactory export``: write a workspace in another tool's format."""

from __future__ import annotations

import click

from ._common import WORKSPACE, common_options, load_workspace, patch_options, progress, show


@click.group()
def export() -> None:
    """Write the likelihood for RooFit (a RooWorkspace in the layout CMS Combine reads)."""


@export.command()
@WORKSPACE
@click.option("--output", "-o", "output", required=True, type=click.Path(dir_okay=False),
              help="ROOT file to write (atomically).")
@click.option("--measurement", default=None, help="Measurement name (default: the first).")
@click.option("--name", default="w", show_default=True, help="Name of the RooWorkspace.")
@click.option("--no-reference", is_flag=True, help="Leave out the datasets of reference events.")
@patch_options
@common_options
def roofit(workspace: str, output: str, measurement: str | None, name: str, no_reference: bool) -> None:
    """Write WORKSPACE as a RooWorkspace (simPdf, data_obs, ModelConfig) to a ROOT file.

    Needs ROOT (pip install 'ratiofactory[roofit]'). See docs/export.md.
    """
    from ..export.roofit import export_roofit

    with progress("building the RooFit workspace"):
        ws = load_workspace(workspace)
        result = export_roofit(ws, output, measurement=measurement, name=name, reference=not no_reference)
    meta = result.metadata
    show(f"wrote RooWorkspace '{name}' to {output}: {len(meta['binned_channels'])} binned and "
         f"{len(meta['unbinned_channels'])} unbinned channel(s), POI {meta['poi']}, "
         f"{sum(len(v) for v in meta['parameters'].values())} parameters")


COMMANDS = [export]
