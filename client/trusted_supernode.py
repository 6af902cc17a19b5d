"""`flower-supernode` whose app processes are FedRad's, paced by the study:
`python -m fedrad.client.trusted_supernode` followed by `flower-supernode`'s arguments.

Flower's SuperNode starts each app process it runs by its name on PATH (`flwr-clientapp`
for a ClientApp, `flwr-agentapp` for an AgentApp, ...), whatever app the aggregator sent.
This puts first on PATH a folder in which `flwr-clientapp` is FedRad's guarded ClientApp
process (`trusted_apps.py`) and every other kind of app process refuses to run. The
folder is a fresh private one, or the one named by $FEDRAD_APP_COMMANDS, written by
`app_commands` when the site was installed (the site image: its /tmp is mounted noexec).
Then it runs `flower-supernode` in this process, its loop paced by the study
(`supernode_pacing.py`), answering a message whose app process died unread
(`supernode_guard.py`).
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

from flwr.supercore.constant import TASK_TYPE_TO_COMMAND, TaskType
from flwr.supernode.cli import flower_supernode

from fedrad.client.supernode_guard import answer_unread_messages
from fedrad.client.supernode_pacing import pace

CLIENT_APP = TASK_TYPE_TO_COMMAND[TaskType.CLIENT_APP]
FOLDER_VARIABLE = "FEDRAD_APP_COMMANDS"


def app_commands(folder: Path) -> Path:
    """Write into `folder` an executable per Flower app process: FedRad's ClientApp
    process for `flwr-clientapp`, a refusal for the others. Returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for command in set(TASK_TYPE_TO_COMMAND.values()):
        if command == CLIENT_APP:
            body = f'exec {shlex.quote(sys.executable)} -P -m fedrad.client.trusted_apps "$@"'
        else:
            refusal = (
                f"FedRad site: refused to run {command}: the site runs only FedRad's ClientApp"
            )
            body = f"echo {shlex.quote(refusal)} >&2\nexit 1"
        path = folder / command
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return folder


def main() -> None:
    installed = os.environ.get(FOLDER_VARIABLE)
    if installed is None:
        folder = app_commands(Path(tempfile.mkdtemp(prefix="fedrad-apps-")))
    elif (Path(installed) / CLIENT_APP).is_file():
        folder = Path(installed)
    else:
        sys.exit(f"FedRad site: ${FOLDER_VARIABLE} ({installed}) has no {CLIENT_APP}.")
    os.environ["PATH"] = os.pathsep.join([str(folder), os.environ.get("PATH", "")])
    pace()
    answer_unread_messages()
    sys.argv = ["flower-supernode", *sys.argv[1:]]
    flower_supernode()


if __name__ == "__main__":
    main()
