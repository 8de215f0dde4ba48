"""Subcommands that compile a model: validate, inspect, fit, scan, cls, upper-limit,
significance, impacts."""

from __future__ import annotations

from typing import Any

import click
import numpy as np

from ._common import (
    WORKSPACE,
    check_fixed_values,
    check_parameters,
    common_options,
    emit,
    fit_settings,
    load_model,
    model_options,
    output_option,
    parse_fixed,
    patch_options,
    plot_option,
    poi_range_option,
    progress,
    reporting,
    show,
    warn,
)


def _setup(workspace: str, backend: str, measurement: str | None, fixed: tuple[str, ...],
           poi: str | None = None) -> tuple[Any, Any, Any, dict[str, float]]:
    fixed_values = parse_fixed(fixed)
    fit_settings()  # contradictory fit options (--starts with --no-global) refused before any work
    ws, model, data = load_model(workspace, backend, measurement, poi)
    check_parameters(model, list(fixed_values), "--fixed")
    check_fixed_values(model, fixed_values)
    return ws, model, data, fixed_values


def _options(optimizer: str) -> Any:
    from ..infer import FitOptions

    return FitOptions(method=optimizer, **fit_settings())


def _plot(kind: str, path: str | None, *args: Any, **kwargs: Any) -> None:
    if path:
        from .. import plots

        getattr(plots, kind)(*args, path=path, **kwargs)


@click.command()
@WORKSPACE
@click.option("--measurement", default=None, help="Also compile this measurement's model (ONNX checks).")
@output_option
@patch_options
@common_options
def validate(workspace: str, measurement: str | None, output_file: str | None) -> None:
    """Check the schema, the files (paths, sha256 digests) and the ONNX models of WORKSPACE."""
    from ..files import file_references, open_file_ref
    from ._common import load_workspace

    with progress("validating"):
        ws = load_workspace(workspace)
        refs = list(file_references(ws.spec))
        for pointer, ref in refs:
            open_file_ref(ws.base_dir, ref, pointer=pointer)
        names = [measurement] if measurement else ws.measurement_names
        models = {name: ws.model(name) for name in names}
    payload = {"valid": True, "digest": ws.digest(), "files": len(refs), "measurements": names,
               "parameters": {n: list(m.config.par_names) for n, m in models.items()}}
    emit(payload, output_file, f"valid: {len(ws.channels)} channels, {len(refs)} files, "
                               f"measurements {', '.join(names)}; digest {payload['digest']}")


def describe(ws: Any, model: Any) -> dict[str, Any]:
    """Channels, samples, modifiers, event counts and parameters as plain JSON."""
    spec = ws.spec
    unbinned = {c.name: c for c in model.unbinned_channels}
    channels = []
    for kind, key in (("binned", "channels"), ("unbinned", "unbinned_channels")):
        for channel in spec.get(key, []):
            entry = {"name": channel["name"], "kind": kind, "samples": [
                {"name": s["name"], "modifiers": [f"{m['name']} ({m['type']})" for m in s.get("modifiers", [])]}
                for s in channel["samples"]]}
            if kind == "binned":
                entry["bins"] = len(channel["samples"][0]["data"])
            else:
                entry["observables"] = [o["name"] for o in channel["observables"]]
                entry["observed_events"] = unbinned[channel["name"]].n_observed
                entry["reference_events"] = unbinned[channel["name"]].n_reference
            channels.append(entry)
    config = model.config
    parameters = []
    for name in config.par_order:
        pslice = config.par_slice(name)
        parameters.append({"name": name, "size": pslice.stop - pslice.start,
                           "init": config.suggested_init()[pslice],
                           "bounds": [list(b) for b in config.suggested_bounds()[pslice]],
                           "fixed": config.suggested_fixed()[pslice]})
    from ..ensemble_uncertainty import ratio_spreads

    spreads = [s.to_dict() for s in ratio_spreads(model) if s.members > 1]
    return {"channels": channels, "parameters": parameters, "poi": config.poi_name,
            "measurements": ws.measurement_names, "normalisation": model.normalisation().to_dict(),
            "ratio_spreads": spreads}


def _inspect_tables(info: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.table import Table

    chans = Table(title="Channels and samples")
    for column in ("channel", "kind", "bins / observables", "observed", "reference", "sample", "modifiers"):
        chans.add_column(column)
    for c in info["channels"]:
        dims = str(c["bins"]) if c["kind"] == "binned" else ", ".join(c["observables"])
        for i, s in enumerate(c["samples"]):
            head = [c["name"], c["kind"], dims, str(c.get("observed_events", "")),
                    str(c.get("reference_events", ""))] if i == 0 else [""] * 5
            chans.add_row(*head, s["name"], ", ".join(s["modifiers"]))
    pars = Table(title=f"Parameters (POI: {info['poi']})")
    for column in ("parameter", "size", "init", "bounds", "fixed"):
        pars.add_column(column)
    for p in info["parameters"]:
        pars.add_row(p["name"], str(p["size"]), ", ".join(f"{v:g}" for v in p["init"]),
                     ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in p["bounds"]), str(any(p["fixed"])))
    tables = [chans, pars]
    if info["normalisation"]["channels"]:
        tables.append(_normalisation_table(info["normalisation"]))
    if info.get("ratio_spreads"):
        tables.append(_spread_table(info["ratio_spreads"]))
    return Group(*tables)


def _spread_table(spreads: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="Ensemble spread of the ratios: std_k(r_k) / mean per event")
    for column in ("channel", "sample", "members", "median", "95% quantile", "of the mean (median/√K)"):
        table.add_column(column)
    for s in spreads:
        table.add_row(s["channel"], s["sample"], str(s["members"]), f"{s['median']:.2%}",
                      f"{s['quantile_95']:.2%}", f"{s['of_mean_median']:.2%}")
    return table


def _normalisation_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="Ratios over the reference sample: N = Σ w_ref r ± MC error, Kish effective size")
    for column in ("channel", "sample", "N", "± error", "pull", "ESS", "normalisation (ratio, shape)"):
        table.add_column(column)
    for c in report["channels"]:
        modes = f"{c['ratio_normalisation']}, {c['shape_normalisation']}"
        table.add_row(c["channel"], "(reference)", "", "", "", f"{c['effective_events']:.1f}", modes)
        for s in c["samples"]:
            table.add_row("", s["sample"], f"{s['factor']:.6f}", f"{s['standard_error']:.2g}",
                          f"{s['pull']:+.2f}", f"{s['effective_events']:.1f}", "")
    return table


@click.command()
@WORKSPACE
@click.option("--measurement", default=None, help="Measurement name (default: the first).")
@output_option
@patch_options
@common_options
def inspect(workspace: str, measurement: str | None, output_file: str | None) -> None:
    """Channels, samples, modifiers, parameters and event counts of WORKSPACE, and each
    sample's ratio integrated over the reference sample (with its Monte Carlo error and the
    Kish effective sample size); a warning on stderr where one is off."""
    ws, model, _ = load_model(workspace, "numpy", measurement)
    info = describe(ws, model)
    emit(info, output_file, _inspect_tables(info))
    for line in info["normalisation"]["warnings"]:
        warn(line)


@click.command()
@WORKSPACE
@model_options
@click.option("--minos", is_flag=True, help="Also run MINOS on the POI.")
def fit(workspace: str, backend: str, measurement: str | None, optimizer: str, fixed: tuple[str, ...],
        output_file: str | None, minos: bool) -> None:
    """Maximum-likelihood fit to the observed data."""
    from .. import infer

    _, model, data, fixed_values = _setup(workspace, backend, measurement, fixed)
    with progress("fitting"):
        result = infer.fit(model, data, fixed=fixed_values or None, method=optimizer,
                           minos=[model.config.poi_name] if minos and model.config.poi_name else False,
                           **fit_settings())
    payload = result.to_dict()
    drift = model.shape_drift(result.values) if hasattr(model, "shape_drift") else {}
    if drift:
        payload["shape_drift"] = drift
    emit(payload, output_file, result.table() + _drift_text(drift))
    from ..normalisation import drift_warnings

    for line in [*result.warnings, *drift_warnings(model, drift)]:
        warn(line)


def _drift_text(drift: dict[str, dict[str, float]]) -> str:
    if not drift:
        return ""
    items = ", ".join(f"{c}/{s} {v:.4f}" for c, samples in drift.items() for s, v in samples.items())
    return f"\nshape drift at the best fit (Σ w_ref r Π g(α̂) / Σ w_ref r): {items}"


@click.command()
@WORKSPACE
@model_options
@click.option("--poi", "poi", default=None, help="Scan this parameter instead of the POI.")
@poi_range_option("Scan range (LO < HI).", required=True)
@click.option("--points", type=click.IntRange(2), default=21, show_default=True, help="Grid points.")
@plot_option("the t_mu plot")
def scan(workspace: str, backend: str, measurement: str | None, optimizer: str, fixed: tuple[str, ...],
         output_file: str | None, poi: str | None, poi_range: tuple[float, float], points: int,
         plot: str | None) -> None:
    """Profile-likelihood scan of the POI with 68.27 % and 95.45 % intervals."""
    from .. import infer

    _, model, data, fixed_values = _setup(workspace, backend, measurement, fixed)
    if poi is not None:
        check_parameters(model, [poi], "--poi")
    grid = np.linspace(poi_range[0], poi_range[1], points)
    with reporting():
        result = infer.profile_scan(model, data, grid, poi=poi, fixed=fixed_values or None,
                                    options=_options(optimizer))
        intervals, missing = [], []
        for cl in (infer.CL_1SIGMA, infer.CL_2SIGMA):
            try:
                intervals.append(infer.interval(result, cl))
            except infer.InvalidFitSetup as err:  # no point inside: the scan itself is still shown
                missing.append(f"no {100 * cl:.2f}% CL interval: {err}")
    payload = result.to_dict()
    payload["intervals"] = [i.to_dict() for i in intervals]
    if missing:
        payload["interval_errors"] = missing
    emit(payload, output_file, "\n\n".join([str(result), *map(str, intervals)]))
    for line in [*result.bestfit.warnings, *missing]:
        warn(line)
    for piece in intervals:
        if piece.open_below or piece.open_above:
            warn(f"the {100 * piece.cl:.2f}% CL interval {piece.pieces_text()} is open: it reaches the end of"
                 " the scan, widen --poi-range")
    _plot("plot_scan", plot, result, intervals=intervals)


@click.command()
@WORKSPACE
@model_options
@click.option("--test-poi", type=float, default=1.0, show_default=True, help="POI value tested.")
@click.option("--test-stat", type=click.Choice(["qtilde", "q"]), default="qtilde", show_default=True)
def cls(workspace: str, backend: str, measurement: str | None, optimizer: str, fixed: tuple[str, ...],
        output_file: str | None, test_poi: float, test_stat: str) -> None:
    """Asymptotic CLs of POI = --test-poi (observed and expected bands)."""
    from .. import infer

    _, model, data, fixed_values = _setup(workspace, backend, measurement, fixed)
    with progress("hypothesis test"):
        result = infer.hypotest(model, data, test_poi, test_stat=test_stat, fixed=fixed_values or None,
                                options=_options(optimizer))
    emit(result.to_dict(), output_file, str(result))


@click.command("upper-limit")
@WORKSPACE
@model_options
@click.option("--level", type=float, default=0.05, show_default=True, help="CLs level.")
@click.option("--test-stat", type=click.Choice(["qtilde", "q"]), default="qtilde", show_default=True)
@poi_range_option("Grid scan in this range (LO < HI) instead of root finding.")
@click.option("--points", type=click.IntRange(2), default=21, show_default=True)
def upper_limit(workspace: str, backend: str, measurement: str | None, optimizer: str,
                fixed: tuple[str, ...], output_file: str | None, level: float, test_stat: str,
                poi_range: tuple[float, float] | None, points: int) -> None:
    """Observed and expected CLs upper limits on the POI.

    A line whose CLs does not cross the level within the range (the POI's bounds, or
    --poi-range) is reported as beyond it ('> HI'; null in the JSON, with
    outside_range "above"), with a warning naming it."""
    import warnings

    from .. import infer

    _, model, data, fixed_values = _setup(workspace, backend, measurement, fixed)
    grid = None if poi_range is None else np.linspace(poi_range[0], poi_range[1], points)
    with reporting(), warnings.catch_warnings():
        warnings.simplefilter("ignore", infer.LimitOutsideRangeWarning)  # said below in CLI terms
        result = infer.upper_limit(model, data, scan=grid, level=level, test_stat=test_stat,
                                   fixed=fixed_values or None, options=_options(optimizer))
    emit(result.to_dict(), output_file, str(result))
    message = result.outside_range_message(_range_hint(result, grid is not None))
    if message:
        warn(message)


def _range_hint(result: Any, scanned: bool) -> str:
    """What to change on the command line when a limit lies outside the range."""
    ends = [where for where in result.outside_range if where]
    if scanned:
        return "extend --poi-range"
    bound = "upper" if "above" in ends else "lower"
    return (f"{'raise' if bound == 'upper' else 'lower'} the POI's {bound} bound in the measurement's"
            " parameters, e.g. with a -p JSON patch")


@click.command()
@WORKSPACE
@model_options
@click.option("--poi-alt", type=float, default=1.0, show_default=True,
              help="POI value of the expected significance.")
def significance(workspace: str, backend: str, measurement: str | None, optimizer: str,
                 fixed: tuple[str, ...], output_file: str | None, poi_alt: float) -> None:
    """Discovery significance (q0): observed and expected."""
    from .. import infer

    _, model, data, fixed_values = _setup(workspace, backend, measurement, fixed)
    with progress("discovery test"):
        result = infer.significance(model, data, poi_alt=poi_alt, fixed=fixed_values or None,
                                    options=_options(optimizer))
    emit(result.to_dict(), output_file, str(result))


@click.command()
@WORKSPACE
@model_options
@click.option("--parameter", "parameters", multiple=True, help="Only these nuisance parameters; repeatable.")
@click.option("--no-refit", is_flag=True, help="Hessian impacts only (no refits).")
@plot_option("the ranking plot")
def impacts(workspace: str, backend: str, measurement: str | None, optimizer: str, fixed: tuple[str, ...],
            output_file: str | None, parameters: tuple[str, ...], no_refit: bool, plot: str | None) -> None:
    """Pulls, constraints and impacts of the nuisance parameters on the POI."""
    from .. import infer

    _, model, data, fixed_values = _setup(workspace, backend, measurement, fixed)
    check_parameters(model, list(parameters), "--parameter")
    with progress("impacts"):
        result = infer.impacts(model, data, parameters=list(parameters) or None, refit=not no_refit,
                               fixed=fixed_values or None, options=_options(optimizer))
    emit(result.to_dict(), output_file, str(result))
    _plot("plot_impacts", plot, result)


@click.command()
@WORKSPACE
@click.option("--measurement", default=None, help="Measurement name (default: the first).")
@click.option("--channel", required=True, help="Unbinned channel.")
@click.option("--sample", required=True, help="Sample whose ratio reweights the reference.")
@click.option("--events", "events_file", default=None, type=click.Path(dir_okay=False),
              help="The sample's own events (npz/npy/csv with the observable columns).")
@click.option("--weight", default=None, help="Weight column of --events.")
@click.option("--bins", type=click.IntRange(2), default=30, show_default=True)
@plot_option("the closure plot", required=True)
@common_options
def reweighting(workspace: str, measurement: str | None, channel: str, sample: str, events_file: str | None,
                weight: str | None, bins: int, plot: str) -> None:
    """Ratio closure plot: the reference reweighted by a sample's ratio, per observable."""
    from pathlib import Path

    from ..events import load_events
    from ._outputs import protect_inputs

    if events_file:
        protect_inputs({Path(events_file): "the --events file"})
    _, model, _ = load_model(workspace, "numpy", measurement)
    events = None
    if events_file:
        chans = {c.name: c for c in model.unbinned_channels}
        observables = chans[channel].observables if channel in chans else ()
        source = {"path": Path(events_file).name, **({"weight": weight} if weight else {})}
        events = load_events(Path(events_file).resolve().parent, source, observables, pointer="--events")
    _plot("plot_reweighting", plot, model, channel, sample, events, bins=bins)
    show(f"wrote {plot}")


COMMANDS = [validate, inspect, fit, scan, cls, upper_limit, significance, impacts, reweighting]
