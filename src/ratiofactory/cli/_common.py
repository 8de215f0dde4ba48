"""Shared pieces of the command line: options, workspace loading, output, errors."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidSpecification
from ..files import atomic_write

WORKSPACE = click.argument("workspace", metavar="WORKSPACE")


class Settings:
    """Per-invocation settings shared by the group and its commands (``ctx.obj``)."""

    def __init__(self) -> None:
        self.quiet = False
        self.verbose = False
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
                        callback=_set_flag("verbose"), help="Show tracebacks on errors.")(func)
    return click.option("--quiet", "-q", is_flag=True, expose_value=False, is_eager=True,
                        callback=_set_flag("quiet"), help="No tables or progress, only errors.")(func)


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
    """``global_search`` and ``starts`` for ``FitOptions``/``infer.fit`` from the command line."""
    current = settings()
    chosen: dict[str, Any] = {"global_search": current.global_search}
    if current.starts is not None:
        chosen["starts"] = current.starts
    return chosen


def warn(lines: Sequence[str]) -> None:
    """One ``warning: ...`` line per item on stderr (unless ``--quiet``)."""
    if not settings().quiet:
        for line in lines:
            click.echo(f"warning: {line}", err=True)


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
    return common_options(func)


output_option = click.option("--output-file", "-o", default=None, type=click.Path(dir_okay=False),
                             help="Write the result as JSON (atomically).")


def parse_fixed(items: Sequence[str]) -> dict[str, float]:
    """``["lumi=1.0", ...]`` → ``{"lumi": 1.0}``; one-line errors for malformed items."""
    fixed: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--fixed")
        try:
            fixed[name.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: {value!r} is not a number", param_hint="--fixed") from None
    return fixed


def check_parameters(model: Any, names: Sequence[str], option: str) -> None:
    """Every name is a parameter (or an expanded ``name[i]``) of ``model``."""
    known = set(model.config.par_order)
    for name in names:
        base = name.split("[", 1)[0]
        if base not in known:
            raise click.BadParameter(
                f"unknown parameter {name!r}; the model's parameters are: {', '.join(model.config.par_order)}",
                param_hint=option)


def load_workspace(source: str) -> Any:
    """A workspace from a path, or from stdin with ``-`` (file paths then relative to the cwd)."""
    from ..workspace import Workspace

    if source != "-":
        return Workspace.load(source)
    text = sys.stdin.read()
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidSpecification(
            f"<stdin> is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    if not isinstance(spec, dict):
        raise InvalidSpecification(f"<stdin>: a workspace is a JSON object, got {type(spec).__name__}")
    return Workspace(spec, base_dir=Path.cwd())


def set_backend(name: str) -> None:
    import pyhf

    pyhf.set_backend(name, precision="64b")


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


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented, key-sorted JSON, atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    return Path(path)


def emit(payload: dict[str, Any], output_file: str | None, table: Any) -> None:
    """Show the table and write ``payload`` to ``output_file`` when given."""
    show(table)
    if output_file:
        from ..infer._format import jsonable

        write_json_atomic(output_file, jsonable(payload))
