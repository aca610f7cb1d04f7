"""The ``sampleweight`` command line: a thin typer layer over the library functions.

Every command parses and validates its options and calls the same function a notebook would. Errors
caused by user input (`SampleWeightError`) print one red line on stderr and exit with code 2.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from sampleweight.errors import SampleWeightError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="sampleweight",
    help="Sample-weighting strategies (CB, ES, SPL, OHEM, ...) for training timm image classifiers on imbalanced data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def user_errors(command: F) -> F:
    """Turn a `SampleWeightError` into one red line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SampleWeightError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        from sampleweight import __version__

        console.print(f"sampleweight {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Train, evaluate and compare sample-weighting strategies."""


@app.command()
@user_errors
def plugins(
    as_json: bool = typer.Option(False, "--json", help="Print the plugins as JSON instead of a table."),
) -> None:
    """List every plugin (built-in and third-party): what it registers, and why it failed to load."""
    from sampleweight.plugins import list_plugins

    infos = list_plugins()
    if as_json:
        print(json.dumps([{**asdict(i)} for i in infos], indent=2))
        return
    table = Table(title="sampleweight plugins", show_lines=False)
    for column in ("plugin", "distribution", "version", "weighters", "losses", "models", "status"):
        table.add_column(column, overflow="fold")
    for info in infos:
        if info.disabled:
            status = "[yellow]disabled[/]"
        elif info.error:
            status = f"[red]failed: {info.error}[/]"
        else:
            status = "[green]ok[/]"
        table.add_row(
            info.name,
            info.distribution or "-",
            info.version or "-",
            ", ".join(info.weighters) or "-",
            ", ".join(info.losses) or "-",
            ", ".join(info.models) or "-",
            status,
        )
    console.print(table)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
