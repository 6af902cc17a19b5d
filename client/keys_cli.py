"""`fedrad keys site`: the site's node key pair for the federation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from fedrad.client.node_key import make_node_key
from fedrad.common.cli_errors import fail
from fedrad.common.keyfiles import KeyFilesExist
from fedrad.common.text_files import path_problem


def keys_site(
    name: Annotated[str, typer.Argument(help="This site's name in the study, e.g. site01.")],
    out: Annotated[Path, typer.Option(help="Folder for node.key and node.pub.")],
) -> None:
    """Site IT: make this site's node key pair, with which its SuperNode signs in.

    Writes OUT/node.key (secret, mode 0600: it never leaves this machine) and OUT/node.pub.
    Send node.pub and the site's name to the coordinator, who registers it with
    `fedrad keys register`. Existing keys are never overwritten.

    Exit status: 0 written, 2 a key is already there or the folder cannot be written.
    """
    try:
        files = make_node_key(out, name)
    except KeyFilesExist as exc:
        raise fail(str(exc)) from exc
    except OSError as exc:
        raise fail(f"cannot write keys into {out}: {path_problem(exc)}.") from exc
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"secret, never send: {escape(str(files.private))}")
    console.print(
        f"send to the coordinator: {escape(str(files.public))} and the site name {escape(name)}"
    )
