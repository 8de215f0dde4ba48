"""Toy-based subcommands: toys (CLs from pseudo-experiments) and neyman (the construction)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import numpy as np

from ._common import (
    WORKSPACE,
    emit,
    model_options,
    plot_option,
    poi_range_option,
    reporting,
    settings,
)
from .analysis import _options, _setup

_TOY_OPTIONS = [
    click.option("--ntoys", type=click.IntRange(1), default=1000, show_default=True, help="Toys per hypothesis."),
    click.option("--seed", type=int, default=0, show_default=True, help="Random seed (toys are reproducible)."),
    click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True, help="Toys per batch."),
    click.option("--dask-workers", type=click.IntRange(1), default=None,
                 help="Run the batches on a local Dask cluster of this many worker processes."),
    click.option("--scheduler", default=None, metavar="ADDRESS",
                 help="Run the batches on an existing Dask cluster (e.g. tcp://host:8786 from dask-jobqueue)."),
]


def toy_options(func):
    for option in reversed(_TOY_OPTIONS):
        func = option(func)
    return func


NUMPY_NOTE_TOYS = 500
"""From this many toys, a numpy run says on stderr that jax fits them far faster."""


def numpy_note(backend: str, n_toys: int) -> None:
    """Before a long numpy run: numpy fits one toy at a time, jax fits compiled batches.

    >>> numpy_note("numpy", 2000)  # doctest: +SKIP
    note: on numpy the 2000 toys are fitted one by one with MIGRAD ...
    """
    if backend == "numpy" and n_toys >= NUMPY_NOTE_TOYS and not settings().quiet:
        click.echo(f"note: on numpy the {n_toys} toys are fitted one by one with MIGRAD (~10 toys/s on "
                   "the off-shell example); --backend jax fits them in compiled batches (~800 toys/s there)",
                   err=True)


@contextmanager
def executor(dask_workers: int | None, scheduler: str | None) -> Iterator[Any]:
    """None (batches run in this process), or a Dask executor closed afterwards."""
    if dask_workers is None and scheduler is None:
        yield None
        return
    if dask_workers is not None and scheduler is not None:
        raise click.UsageError("give --dask-workers (a new local cluster) or --scheduler, not both")
    try:
        from ..toys import DaskExecutor

        runner = DaskExecutor(address=scheduler, n_workers=dask_workers)
    except ImportError as err:
        raise click.ClickException(f"the Dask executor needs dask.distributed ({err}); "
                                   "pip install 'ratiofactory[dask]'") from None
    with runner:
        yield runner


@click.command()
@WORKSPACE
@model_options
@toy_options
@click.option("--test-poi", type=float, default=1.0, show_default=True, help="POI value tested.")
@click.option("--test-stat", type=click.Choice(["qtilde", "q", "tmu", "tmu_tilde", "q0"]), default="qtilde",
              show_default=True)
def toys(workspace: str, backend: str, measurement: str | None, optimizer: str, fixed: tuple[str, ...],
         output_file: str | None, ntoys: int, seed: int, batch_size: int, dask_workers: int | None,
         scheduler: str | None, test_poi: float, test_stat: str) -> None:
    """Toy-based CLs of POI = --test-poi (signal toys seeded with SEED, background SEED+1)."""
    from .. import toys as toy_module

    _, model, data, fixed_values = _setup(workspace, backend, measurement, fixed)
    numpy_note(backend, 2 * ntoys)
    with toy_module.progress_bars(not settings().quiet), reporting(), executor(dask_workers, scheduler) as runner:
        result = toy_module.toybased_hypotest(model, data, test_poi, ntoys, seed, test_stat=test_stat,
                                              fixed=fixed_values or None, batch_size=batch_size,
                                              executor=runner, options=_options(optimizer))
    payload, table = _toy_summary(result, model.config.poi_name, ntoys, seed)
    emit(payload, output_file, table)


def _fraction(value: float, error: float, bound: float, beyond: int, valid: int) -> tuple[str, float | None]:
    """``= v ± e`` or, where no toy passed, ``< bound`` (68 % CL) with the counts."""
    if beyond == 0 and valid > 0:
        return f"< {bound:.3g} (0 of {valid} toys at or beyond the observed; 68 % CL bound)", bound
    return f"= {value:.6g} ± {error:.2g} ({beyond} of {valid} toys)", None


def _toy_summary(result: Any, poi: str, ntoys: int, seed: int) -> tuple[dict[str, Any], str]:
    """The JSON payload and the table of ``toys``: CLs, or for q0 the discovery p-value and Z."""
    from scipy.stats import norm

    from ..toys.toybased import UPPER_BOUND_CL

    counts = result.counts()
    clsb_bound = result.clsb_upper_bound()
    payload: dict[str, Any] = {
        "poi_value": result.poi_value, "test_stat": result.test_stat, "teststat": result.teststat,
        "clsb": result.clsb, "clb": result.clb, "n_toys": ntoys, "seed": seed, "n_failed": result.n_failed,
        **counts, "upper_bound_cl": UPPER_BOUND_CL}
    head = f"({result.test_stat}, {ntoys} toys, seed {seed}): observed {result.teststat:.6g}"
    failed = f"failed toy fits: {result.n_failed}"
    if result.test_stat == "q0":
        p0, shown_bound = _fraction(result.clsb, result.pvalue_error(), clsb_bound, counts["signal_beyond"],
                                    counts["signal_valid"])
        z = float(norm.isf(result.clsb)) if result.clsb > 0 else float("nan")
        payload.update(pvalue=result.clsb, pvalue_error=result.pvalue_error() if shown_bound is None else None,
                       pvalue_upper=shown_bound, significance=z,
                       significance_lower=None if shown_bound is None else float(norm.isf(shown_bound)))
        significance = (f"Z = {z:.3g}" if shown_bound is None else f"Z > {norm.isf(shown_bound):.3g}")
        table = (f"Toy-based discovery test of {poi} = 0 {head}\n"
                 f"p0 {p0}, {significance}\n"
                 "no expected band: CLs has no meaning for q0 (`significance` gives the expected p0)\n" + failed)
        return payload, table
    cls_bound = result.cls_upper_bound() if counts["signal_beyond"] == 0 else None
    payload.update(cls=result.cls, cls_error=None if cls_bound is not None else result.cls_error(),
                   cls_upper=cls_bound, expected_cls=list(result.expected_cls))
    if cls_bound is not None and result.clb > 0:
        cls = (f"CLs < {cls_bound:.3g} (68 % CL bound: 0 of {counts['signal_valid']} signal-like toys at or "
               f"beyond the observed), CLs+b < {clsb_bound:.3g}")
    elif result.clb > 0:
        cls = f"CLs = {result.cls:.6g} ± {result.cls_error():.2g}, CLs+b = {result.clsb:.6g}"
    else:
        cls = (f"CLs undefined: no background-like toy (of {counts['background_valid']}) at or beyond the"
               f" observed (CLb = 0); CLs+b = {result.clsb:.6g}")
    table = (f"Toy-based test {poi} = {result.poi_value:g} {head}\n{cls}, CLb = {result.clb:.6g}\n"
             f"expected CLs (-2..+2 sigma): {', '.join(f'{v:.4g}' for v in result.expected_cls)}\n{failed}")
    return payload, table


@click.command()
@WORKSPACE
@model_options
@toy_options
@poi_range_option("Grid range (LO < HI).", required=True)
@click.option("--points", type=click.IntRange(2), default=11, show_default=True, help="Grid points.")
@click.option("--test-stat", type=click.Choice(["tmu", "tmu_tilde"]), default="tmu", show_default=True)
@click.option("--expected-toys", type=click.IntRange(0), default=0, show_default=True,
              help="Toys for the expected band (0: none).")
@click.option("--directory", type=click.Path(file_okay=False), default=None,
              help="Keep one JSON per grid point here; a rerun resumes from them.")
@plot_option("the 68 % belt")
def neyman(workspace: str, backend: str, measurement: str | None, optimizer: str, fixed: tuple[str, ...],
           output_file: str | None, ntoys: int, seed: int, batch_size: int, dask_workers: int | None,
           scheduler: str | None, poi_range: tuple[float, float],
           points: int, test_stat: str, expected_toys: int, directory: str | None, plot: str | None) -> None:
    """Neyman construction of the POI on a grid: critical values from toys, intervals."""
    from .. import toys as toy_module

    _, model, data, fixed_values = _setup(workspace, backend, measurement, fixed)
    grid = np.linspace(poi_range[0], poi_range[1], points)
    numpy_note(backend, points * (ntoys + expected_toys))
    with toy_module.progress_bars(not settings().quiet), reporting(), executor(dask_workers, scheduler) as runner:
        result = toy_module.neyman_construction(model, data, grid, ntoys, seed, test_stat=test_stat,
                                                directory=directory, expected_toys=expected_toys,
                                                fixed=fixed_values or None, batch_size=batch_size,
                                                executor=runner, options=_options(optimizer))
    lines = [f"Neyman construction of {result.poi_name} ({test_stat}, {ntoys} toys per point, seed {seed})"]
    for cl, pieces in result.intervals.items():
        text = ", ".join(f"[{lo:.6g}, {hi:.6g}]" for lo, hi in pieces) or "empty"
        lines.append(f"  {100 * float(cl):.2f}% CL: {text}")
    emit(result.to_dict(), output_file, "\n".join(lines))
    if plot:
        result.plot(path=plot)


COMMANDS = [toys, neyman]
