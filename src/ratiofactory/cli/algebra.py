"""Workspace algebra subcommands (ratiofactory.algebra): combine, prune, rename.

Each writes the new workspace JSON to ``--output-file`` (atomically) or to stdout. With
``--output-file``, file references are rewritten relative to the output's directory, which
must contain the files (file references never leave a workspace's directory); on stdout,
the paths are relative to the (first) input's directory.
"""

from __future__ import annotations

from typing import Any

import click

from ._common import (
    WORKSPACE,
    common_options,
    load_workspace,
    output_option,
    show,
    write_json_atomic,
)
from ._outputs import STDOUT, output_directory, relocated


def _write(spec: dict[str, Any], output_file: str | None, what: str) -> None:
    write_json_atomic(output_file or STDOUT, spec)
    if output_file and output_file != STDOUT:
        show(f"{what} written to {output_file}")


@click.command()
@click.argument("left", metavar="WORKSPACE_ONE")
@click.argument("right", metavar="WORKSPACE_TWO")
@click.option("--join", type=click.Choice(["none", "outer", "left outer", "right outer"]), default="none",
              show_default=True, help="How shared channel, observation and measurement names are joined.")
@click.option("--merge-channels", is_flag=True, help="Merge same-named channels sample by sample (outer joins).")
@output_option
@common_options
def combine(left: str, right: str, join: str, merge_channels: bool, output_file: str | None) -> None:
    """Combine two workspaces (pyhf's join modes)."""
    from .. import algebra

    if left == "-" and right == "-":
        raise click.UsageError("only one workspace can come from stdin")
    one, two = load_workspace(left), load_workspace(right)
    spec = algebra.combine(one.spec, two.spec, join=join, merge_channels=merge_channels,
                           left_base_dir=one.base_dir, right_base_dir=two.base_dir,
                           base_dir=output_directory(output_file, one.base_dir))
    _write(spec, output_file, "combined workspace")


@click.command()
@WORKSPACE
@click.option("--modifier", "-m", "modifiers", multiple=True, help="Modifier (parameter) to remove; repeatable.")
@click.option("--modifier-type", "-t", "modifier_types", multiple=True, help="Modifier type to remove; repeatable.")
@click.option("--sample", "-s", "samples", multiple=True, help="Sample to remove; repeatable.")
@click.option("--channel", "-c", "channels", multiple=True, help="Channel to remove; repeatable.")
@click.option("--measurement", "measurements", multiple=True, help="Measurement to remove; repeatable.")
@output_option
@common_options
def prune(workspace: str, modifiers: tuple[str, ...], modifier_types: tuple[str, ...], samples: tuple[str, ...],
          channels: tuple[str, ...], measurements: tuple[str, ...], output_file: str | None) -> None:
    """Remove modifiers, modifier types, samples, channels or measurements."""
    from .. import algebra

    ws = load_workspace(workspace)
    spec = algebra.prune(ws.spec, modifiers=modifiers, modifier_types=modifier_types, samples=samples,
                         channels=channels, measurements=measurements)
    _write(relocated(spec, ws.base_dir, output_file, "the pruned workspace"), output_file, "pruned workspace")


def _pairs(items: tuple[tuple[str, str], ...], option: str) -> dict[str, str]:
    """``OLD NEW`` pairs as a map; an OLD given twice, or two OLDs given one NEW, is refused."""
    pairs: dict[str, str] = {}
    for old, new in items:
        if old in pairs:
            raise click.BadParameter(f"{old!r} is renamed twice ({pairs[old]!r} and {new!r})", param_hint=option)
        if new in pairs.values():
            first = next(o for o, n in pairs.items() if n == new)
            raise click.BadParameter(f"{first!r} and {old!r} are both renamed to {new!r}", param_hint=option)
        pairs[old] = new
    return pairs


@click.command()
@WORKSPACE
@click.option("--modifier", "-m", "modifiers", nargs=2, multiple=True, metavar="OLD NEW",
              help="Rename a modifier/parameter (also in formulas and settings); repeatable.")
@click.option("--sample", "-s", "samples", nargs=2, multiple=True, metavar="OLD NEW", help="Rename a sample.")
@click.option("--channel", "-c", "channels", nargs=2, multiple=True, metavar="OLD NEW", help="Rename a channel.")
@click.option("--measurement", "measurements", nargs=2, multiple=True, metavar="OLD NEW",
              help="Rename a measurement.")
@output_option
@common_options
def rename(workspace: str, modifiers: tuple[tuple[str, str], ...], samples: tuple[tuple[str, str], ...],
           channels: tuple[tuple[str, str], ...], measurements: tuple[tuple[str, str], ...],
           output_file: str | None) -> None:
    """Rename modifiers, samples, channels or measurements."""
    from .. import algebra

    ws = load_workspace(workspace)
    spec = algebra.rename(ws.spec, modifiers=_pairs(modifiers, "--modifier"), samples=_pairs(samples, "--sample"),
                          channels=_pairs(channels, "--channel"), measurements=_pairs(measurements, "--measurement"))
    _write(relocated(spec, ws.base_dir, output_file, "the renamed workspace"), output_file, "renamed workspace")


COMMANDS = [combine, prune, rename]
