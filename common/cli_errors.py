"""One sentence on stderr and an exit status: how every command reports a user's error."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from fedrad.common.text_files import path_problem
from fedrad.common.user_error import UserError


def fail(sentence: str, status: int = 2) -> typer.Exit:
    """Print `sentence` on one line (a terminal may wrap it, Rich won't) and exit `status`."""
    Console(stderr=True, soft_wrap=True).print(
        f"[red]error:[/red] {escape(sentence)}", highlight=False
    )
    return typer.Exit(status)


class ReportsUserErrors(TyperGroup):
    """The `fedrad` command group: a UserError (a bad file or option), or an OSError on a
    path the user gave (a file where an output folder belongs, a read-only folder), that
    reaches it from any command ends the command with a sentence and exit status 2, never
    a traceback. An OSError without a path is no user's input, and is raised."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise fail(str(exc)) from exc
        except OSError as exc:
            if exc.filename is None:
                raise
            raise fail(f"cannot use {exc.filename}: {path_problem(exc)}") from exc


def warn_insecure(text: str) -> None:
    """The loud warning of a plain-text federation, on stderr."""
    Console(stderr=True, soft_wrap=True).print(
        f"[bold red]{escape(text)}[/bold red]", highlight=False
    )
