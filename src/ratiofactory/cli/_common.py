"""Shared pieces of the command line: options, workspace loading, output, errors."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from .. import jsontext
from ..errors import InvalidFile, InvalidSpecification
from ..files import atomic_write, decode_utf8
from ._outputs import STDOUT, protect_inputs, workspace_inputs
from ._patches import apply_patches

WORKSPACE = click.argument("workspace", metavar="WORKSPACE")


class Settings:
    """Per-invocation settings shared by the group and its commands (``ctx.obj``)."""

    def __init__(self) -> None:
        self.quiet = False
        self.verbose = False
        self.patches: list[str] = []
        self.patch_name: str | None = None
        self.starts: int | None = None
        self.global_search = True


def _set_flag(name: str) -> Callable[[click.Context, click.Parameter, bool], bool]:
    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            setattr(ctx.ensure_object(Settings), name, True)
        return value

    return callback


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--quiet`` and ``--verbose`` (also accepted before the subcommand)."""
    func = click.option("--verbose", "-v", is_flag=True, expose_value=False, is_eager=True,
                        callback=_set_flag("verbose"),
                        help="Show tracebacks on errors and, on jax, the number of XLA compilations.")(func)
    return click.option("--quiet", "-q", is_flag=True, expose_value=False, is_eager=True,
                        callback=_set_flag("quiet"), help="No tables or progress, only errors.")(func)


def _set_patches(ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    ctx.ensure_object(Settings).patches = list(value)
    return value


def _set_patch_name(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    ctx.ensure_object(Settings).patch_name = value
    return value


def patch_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--patch``/``-p`` (JSON patch files, or a patchset with ``--patch-name``), as pyhf's."""
    func = click.option("--patch-name", default=None, expose_value=False, callback=_set_patch_name,
                        help="With a patchset given to --patch: the patch (signal point) to apply.")(func)
    return click.option("--patch", "-p", multiple=True, expose_value=False, callback=_set_patches,
                        type=click.Path(dir_okay=False),
                        help="Apply this JSON patch (or, with --patch-name, a patch of this patchset) to "
                             "WORKSPACE first; repeatable, applied in order.")(func)


def _set_value(name: str, value: Any = None) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, given: Any) -> Any:
        if given is not None and given is not False:
            setattr(ctx.ensure_object(Settings), name, given if value is None else value)
        return given

    return callback


def global_search_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--starts N`` and ``--no-global``: the global minimum search of every fit."""
    func = click.option("--no-global", is_flag=True, expose_value=False, callback=_set_value("global_search", False),
                        help="One local fit from the start point (no global minimum search; faster).")(func)
    return click.option("--starts", type=click.IntRange(1), default=None, expose_value=False,
                        callback=_set_value("starts"), metavar="N",
                        help="Points of the coarse POI curve seeding the global search [default: 9].")(func)


def fit_settings() -> dict[str, Any]:
    """``global_search`` and ``starts`` for ``FitOptions``/``infer.fit`` from the command line
    (``--starts`` with ``--no-global`` is refused: it would be ignored)."""
    current = settings()
    if current.starts is not None and not current.global_search:
        raise click.UsageError("--starts seeds the global minimum search, which --no-global turns off: "
                               "give one of them")
    chosen: dict[str, Any] = {"global_search": current.global_search}
    if current.starts is not None:
        chosen["starts"] = current.starts
    return chosen


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--backend``, ``--measurement``, ``--optimizer``, ``--starts``, ``--no-global``,
    ``--fixed``, ``--output-file``."""
    func = global_search_options(func)
    options = [
        click.option("--backend", type=click.Choice(["numpy", "jax"]), default="numpy", show_default=True,
                     help="pyhf tensor backend (float64)."),
        click.option("--measurement", default=None, help="Measurement name (default: the first)."),
        click.option("--optimizer", type=click.Choice(["minuit", "scipy"]), default="minuit",
                     show_default=True, help="Minimiser."),
        click.option("--fixed", "fixed", multiple=True, metavar="NAME=VALUE",
                     help="Fix a parameter (expanded name, e.g. 'gamma[1]'); repeatable."),
        output_option,
    ]
    for option in reversed(options):
        func = option(func)
    return patch_options(common_options(func))


output_option = click.option("--output-file", "-o", default=None, type=click.Path(dir_okay=False, allow_dash=True),
                             help="Write the result as JSON (atomically); '-' writes it to stdout instead of the table.")


def parse_fixed(items: Sequence[str]) -> dict[str, float]:
    """``["lumi=1.0", ...]`` → ``{"lumi": 1.0}``; one-line errors for malformed items."""
    fixed: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--fixed")
        try:
            number = float(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: {value!r} is not a number", param_hint="--fixed") from None
        if not math.isfinite(number):
            raise click.BadParameter(f"{item!r}: {value.strip()} is not a finite number", param_hint="--fixed")
        if name.strip() in fixed:
            raise click.BadParameter(f"{name.strip()!r} is fixed twice ({fixed[name.strip()]:g} and {number:g})",
                                     param_hint="--fixed")
        fixed[name.strip()] = number
    return fixed


def _check_plot_path(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        from ..errors import InvalidOutput
        from ..plots import image_format

        try:
            image_format(value)
        except InvalidOutput as err:
            raise click.BadParameter(str(err), param_hint="--plot") from None
    return value


def plot_option(what: str, *, required: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--plot FILE``: write ``what`` in the format of FILE's extension (png, pdf, svg, ...),
    checked before any fitting."""
    extra: dict[str, Any] = {"required": True} if required else {"default": None}
    return click.option("--plot", type=click.Path(dir_okay=False), callback=_check_plot_path, **extra,
                        help=f"Write {what}; the extension picks the format (.png, .pdf, .svg, ...).")


def _check_poi_range(ctx: click.Context, param: click.Parameter, value: tuple[float, ...] | None) -> Any:
    """The one rule of every POI range (``--poi-range LO HI``, ``spurious-signal --grid LO HI N``):
    finite and ``LO < HI``; a reversed or empty range is refused, not reordered."""
    if value is None:
        return None
    lo, hi = float(value[0]), float(value[1])
    hint = f"--{param.name.replace('_', '-')}" if param.name else None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise click.BadParameter(f"LO and HI must be finite numbers, got {lo:g} {hi:g}", ctx, param, hint)
    if lo >= hi:
        raise click.BadParameter(f"LO must be below HI, got LO = {lo:g}, HI = {hi:g}", ctx, param, hint)
    return value


def poi_range_option(help: str, *, required: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--poi-range LO HI`` (``LO < HI``, :func:`_check_poi_range`)."""
    # no default=None with required=True: click 8.2 then passes None instead of "missing option"
    extra: dict[str, Any] = {"required": True} if required else {"default": None}
    return click.option("--poi-range", nargs=2, type=float, metavar="LO HI", callback=_check_poi_range,
                        help=help, **extra)


def poi_grid_option(default: tuple[float, float, int], help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--grid LO HI N``: N >= 2 points from LO to HI (``LO < HI``, :func:`_check_poi_range`)."""
    return click.option("--grid", nargs=3, type=(float, float, click.IntRange(2)), default=default,
                        show_default=True, metavar="LO HI N", callback=_check_poi_range, help=help)


def check_parameters(model: Any, names: Sequence[str], option: str) -> None:
    """Every name is a parameter or one of its expanded components ``name[i]`` of ``model``
    (a usage error, exit status 2, naming the option)."""
    from ..infer.setup import parameter_indices

    config = model.config
    known = parameter_indices(config)
    for name in names:
        if name in known:
            continue
        base = name.split("[", 1)[0]
        if base in config.par_order:
            size = len(known[base])
            components = (f"write {base!r}" if size == 1 else
                          f"components {base}[0] ... {base}[{size - 1}]")
            raise click.BadParameter(f"{name!r}: {base!r} has {size} component{'s' if size > 1 else ''}"
                                     f" ({components})", param_hint=option)
        raise click.BadParameter(
            f"unknown parameter {name!r}; the model's parameters are: {', '.join(config.par_order)}",
            param_hint=option)


def check_fixed_values(model: Any, fixed: Mapping[str, float]) -> None:
    """Every ``--fixed NAME=VALUE`` lies within the parameter's bounds (from the workspace's
    measurement; a ``-p`` patch changes them)."""
    from ..infer.setup import parameter_indices

    indices = parameter_indices(model.config)
    bounds = model.config.suggested_bounds()
    for name, value in fixed.items():
        for index in indices[name]:
            lo, hi = (float(b) for b in bounds[index])
            if not lo <= value <= hi:
                raise click.BadParameter(
                    f"{name}={value:g} lies outside the parameter's bounds [{lo:g}, {hi:g}] (set in the"
                    " workspace's measurement; a -p JSON patch changes them)", param_hint="--fixed")


def load_workspace(source: str) -> Any:
    """A workspace from a path, or from stdin with ``-`` (file paths then relative to the cwd).

    The current command's outputs may not overwrite the workspace or its files
    (:func:`protect_inputs`).
    """
    ws = _read_workspace(source)
    if click.get_current_context(silent=True) is not None:
        chosen = settings()
        inputs = workspace_inputs(ws, source)
        inputs.update({Path(path): "a --patch file" for path in chosen.patches})
        if chosen.patches:
            ws = apply_patches(ws, chosen.patches, chosen.patch_name)
            inputs.update({p: w for p, w in workspace_inputs(ws, source).items() if p not in inputs})
        protect_inputs(inputs)
    return ws


def _read_workspace(source: str) -> Any:
    from ..workspace import Workspace

    if source != "-":
        return Workspace.load(source)
    from ..files import default_max_bytes

    limit = default_max_bytes()
    stream = getattr(sys.stdin, "buffer", None)
    content = stream.read(limit + 1) if stream is not None else sys.stdin.read(limit + 1).encode("utf-8")
    if len(content) > limit:
        raise InvalidFile(f"<stdin>: more than {limit} bytes (raise $RATIOFACTORY_MAX_FILE_BYTES if it is intended)")
    spec = jsontext.loads(decode_utf8(content, "<stdin>"), "<stdin>")
    if not isinstance(spec, dict):
        raise InvalidSpecification(f"a workspace is a JSON object, got {type(spec).__name__}", source="<stdin>")
    return Workspace(spec, base_dir=Path.cwd())


def set_backend(name: str) -> None:
    import pyhf

    pyhf.set_backend(name, precision="64b")
    if name == "jax":
        from .. import compilations

        compilations.watch()  # counted for --verbose


def load_model(source: str, backend: str, measurement: str | None, poi: str | None = None) -> tuple[Any, Any, Any]:
    """Workspace, model and observed data, with a spinner while the ONNX models are evaluated."""
    set_backend(backend)
    with progress("loading workspace and evaluating ratio models"):
        ws = load_workspace(source)
        model = ws.model(measurement) if poi is None else ws.model(measurement, poi_name=poi)
        data = ws.data(model)
    return ws, model, data


def settings() -> Settings:
    return click.get_current_context().ensure_object(Settings)


def interactive() -> bool:
    return not settings().quiet and sys.stdout.isatty()


def console() -> Any:
    from rich.console import Console

    # off a terminal (pipes, files, tests) do not wrap tables at rich's default 80 columns
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def show_progress() -> bool:
    """Progress goes to stderr when both stdout and stderr are terminals and not ``--quiet``."""
    return interactive() and sys.stderr.isatty()


@contextmanager
def reporting() -> Iterator[None]:
    """Progress of toys, scans and limits on stderr: a bar on a terminal, otherwise a line
    every few seconds (done/total, rate); nothing with ``--quiet``."""
    from ..progress import reporting as mode

    with mode("off" if settings().quiet else "lines"):
        yield


@contextmanager
def progress(description: str) -> Iterator[None]:
    """A transient rich progress line (spinner, pulsing bar, elapsed time) on stderr, on a
    terminal unless ``--quiet``; silent otherwise. The inference functions report no
    partial progress, so the bar is indeterminate."""
    if not show_progress():
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        bar.add_task(description, total=None)
        yield


def show(text: Any) -> None:
    """Print a table or text unless ``--quiet``."""
    if not settings().quiet:
        out = console()
        if isinstance(text, str):
            out.print(text, markup=False, soft_wrap=True)
        else:
            out.print(text)


def warn(line: str) -> None:
    """One ``warning: ...`` line on stderr (also with ``--quiet``): diagnostics the user must
    see, without a Python warning's source line."""
    click.echo(f"warning: {line}", err=True)


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented, key-sorted JSON, atomically; to stdout for ``-``."""
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def emit(payload: dict[str, Any], output_file: str | None, table: Any) -> None:
    """Show the table and write ``payload`` to ``output_file`` when given; with ``-o -``
    the JSON takes stdout's place and the table is not shown."""
    if output_file != STDOUT:
        show(table)
    if output_file:
        from ..infer._format import jsonable

        write_json_atomic(output_file, jsonable(payload))
