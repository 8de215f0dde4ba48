"""Subcommand ``spurious-signal``: the ratio-model uncertainty of an ensemble workspace
as a spurious-signal nuisance parameter written into a new workspace."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ._common import (
    WORKSPACE,
    common_options,
    emit,
    load_workspace,
    output_option,
    plot_option,
    poi_grid_option,
    progress,
    write_json_atomic,
)
from ._outputs import relocated


@click.command("spurious-signal")
@WORKSPACE
@click.option("--output", "output", required=True, type=click.Path(dir_okay=False),
              help="The new workspace file (WORKSPACE itself is never modified).")
@poi_grid_option((0.0, 3.0, 7), "POI grid: N >= 2 points from LO to HI (LO < HI).")
@click.option("--bootstrap", "n_bootstrap", type=click.IntRange(2), default=40, show_default=True,
              help="Bootstrap resamples of the ensemble members per grid point.")
@click.option("--estimator", type=click.Choice(["mean", "members"]), default="mean", show_default=True,
              help="Spread of the ensemble mean (bootstrap) or of single members.")
@click.option("--spread", type=click.Choice(["central68", "std"]), default="central68", show_default=True,
              help="Half-width of the central 68.27%% of the fitted values, or their standard deviation.")
@click.option("--channel", default=None, help="Unbinned channel whose ensembles vary (default: the only one).")
@click.option("--measurement", default=None, help="Measurement name (default: the first).")
@click.option("--name", default="alpha_ss", show_default=True, help="Name of the nuisance parameter.")
@click.option("--seed", type=int, default=0, show_default=True)
@plot_option("the plot of delta mu_hat")
@output_option
@common_options
def spurious_signal(workspace: str, output: str, grid: tuple[float, float, int], n_bootstrap: int,
                    estimator: str, spread: str, channel: str | None, measurement: str | None, name: str, seed: int,
                    plot: str | None, output_file: str | None) -> None:
    """Compute delta mu_hat(mu) from the ratio-model ensembles of WORKSPACE (Asimov fits
    with bootstrap resamples of the members) and write a new workspace with it as a
    Gauss(0,1)-constrained spurious-signal nuisance parameter."""
    from ..ensemble_uncertainty import add_spurious_signal, spurious_signal_table
    from ..workspace import Workspace

    ws = load_workspace(workspace)
    target = Path(output)  # load_workspace refused an --output that is an input
    what = "the --output workspace"
    relocated(ws.spec, ws.base_dir, output, what)  # before the fits: its file references must reach the files
    lo, hi, points = grid
    with progress("Asimov fits"):
        table = spurious_signal_table(ws, np.linspace(lo, hi, points).tolist(), channel=channel, measurement=measurement,
                                      n_bootstrap=n_bootstrap, estimator=estimator, seed=seed, spread=spread)
    spec = relocated(add_spurious_signal(ws.spec, table, name=name), ws.base_dir, output, what)
    Workspace(spec, base_dir=target.parent.resolve())  # checked before it is written
    write_json_atomic(target, spec)
    if plot:
        from ..plots import plot_spurious_signal

        plot_spurious_signal(table, plot)
    payload = {**table.to_dict(), "name": name, "workspace": str(target)}
    emit(json.loads(json.dumps(payload)), output_file, str(table) + f"\nwritten: {target} (nuisance parameter {name})")


COMMANDS = [spurious_signal]
