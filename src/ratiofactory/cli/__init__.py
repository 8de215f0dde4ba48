"""The ``ratiofactory`` command line (click), modelled on pyhf's.

Every subcommand prints a table (rich) unless ``--quiet``, writes its result as JSON with
``--output-file`` and exits non-zero with one line on stderr on error (``--verbose``
adds the traceback). See docs/cli.md.
"""

from __future__ import annotations

import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from .. import __version__
from ..errors import RatiofactoryError
from ._common import Settings, common_options, warn

__all__ = ["cli", "main"]


class _Group(click.Group):
    """Turns user errors into one line on stderr; click usage errors too."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            from .. import compilations

            before = compilations.total()
            with _one_line_warnings():
                result = super().invoke(ctx)
            _report_compilations(ctx, before)
            return result
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (RatiofactoryError, OSError) as err:
            if ctx.ensure_object(Settings).verbose:
                traceback.print_exc()
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise click.ClickException(message) from None
        except Exception as err:
            if ctx.ensure_object(Settings).verbose:
                raise
            raise click.ClickException(
                f"internal error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
                "(run with --verbose for the traceback)") from None

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
            click.echo(f"Error: {err.format_message()}{hint}", err=True)
            sys.exit(err.exit_code)
        except click.ClickException as err:
            err.show()
            sys.exit(err.exit_code)
        except (click.Abort, KeyboardInterrupt, EOFError):
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _report_compilations(ctx: click.Context, before: tuple[int, float]) -> None:
    """With ``--verbose`` on the jax backend: the command's XLA compilations on stderr."""
    from .. import compilations

    settings = ctx.ensure_object(Settings)
    import pyhf

    on_jax = pyhf.get_backend()[0].name == "jax"
    if settings.verbose and not settings.quiet and on_jax and compilations.watching():
        count, seconds = compilations.total()
        click.echo(f"jax: {count - before[0]} XLA compilations ({seconds - before[1]:.2f} s compiling)",
                   err=True)


@contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Python warnings of the library (``UserWarning``: non-monotone CLs, Asimov yields, ...)
    shown as one ``warning: ...`` line each on stderr (:func:`._common.warn`, also with
    ``--quiet``), without a Python warning's source line."""

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        text = str(message).strip().splitlines()
        warn(text[0] if text else category.__name__)

    with warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)
        warnings.showwarning = show
        yield


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ratiofactory")
@common_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """ratiofactory: declarative unbinned NSBI likelihoods (pyhf-like command line)."""
    ctx.ensure_object(Settings)


from . import algebra, analysis, ensembles, export, patchsets, publishing, toys

for _module in (analysis, publishing, toys, algebra, export, patchsets, ensembles):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return cli.main(args=argv, prog_name="ratiofactory")
