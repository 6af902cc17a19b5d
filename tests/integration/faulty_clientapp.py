"""A test-only ClientApp process for the process tests: the faulty site's own
`flwr-clientapp`, FedRad's guarded one (`fedrad.client.trusted_apps`) except that the site
named by the run config's `faulty-site` answers messages of type `faulty-message` with
every number of its reply made NaN (a site whose software or memory went wrong).

Sites run only the FedRad they installed, so the fault is installed at that site
(`app_commands_folder`), not sent in the study's app; nothing of it is in FedRad itself.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import numpy as np
from flwr.app import Array, Context, Message
from flwr.clientapp import ClientApp

from fedrad.client import trusted_apps
from fedrad.client.trusted_supernode import CLIENT_APP, app_commands
from fedrad.common.messages import MESSAGE_TYPES


def corrupted(honest: ClientApp) -> ClientApp:
    app = ClientApp()

    def corrupting(message: Message, context: Context) -> Message:
        reply = honest(message, context)
        faulty = context.node_config.get("site-name") == context.run_config.get("faulty-site")
        if faulty and message.metadata.message_type == context.run_config.get("faulty-message"):
            arrays = reply.content["arrays"]
            for name in list(arrays):
                value = arrays[name].numpy()
                if value.dtype.kind == "f":
                    arrays[name] = Array(np.full_like(value, np.nan))
        return reply

    for message_type in MESSAGE_TYPES.values():
        category, _, action = message_type.partition(".")
        register = {"query": app.query, "train": app.train, "evaluate": app.evaluate}[category]
        (register(action) if action else register())(corrupting)
    return app


def app_commands_folder(folder: Path) -> Path:
    """FedRad's app commands (`trusted_supernode.app_commands`) with this module as the
    ClientApp process: the folder for the faulty site's $FEDRAD_APP_COMMANDS."""
    app_commands(folder)
    here = shlex.quote(str(Path(__file__).parent))
    python = shlex.quote(sys.executable)
    (folder / CLIENT_APP).write_text(
        f'#!/bin/sh\nPYTHONPATH={here} exec {python} -P -m faulty_clientapp "$@"\n'
    )
    return folder


def main() -> None:
    """FedRad's guarded ClientApp process, its loader's app wrapped (the same checks run)."""
    guarded = trusted_apps.load_installed_client_app
    trusted_apps.load_installed_client_app = lambda *args: corrupted(guarded(*args))
    trusted_apps.main()


if __name__ == "__main__":
    main()
