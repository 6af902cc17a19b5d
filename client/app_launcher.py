"""`flwr-clientapp` at a site: hands its arguments and standard streams to the site's
warm app server (`app_server.py`) and exits with the status of the process the server
forks for it. Without a reachable server it becomes FedRad's guarded ClientApp process
(`trusted_apps.py`) itself, as slow as Flower's own.

Flower's SuperExec starts this once per message, so it imports only the standard library
and runs as `python -I -S`: a bare interpreter starts in milliseconds.
"""

import json
import os
import socket
import sys

SERVER_VARIABLE = "FEDRAD_APP_SERVER"
STATUS_BYTES = 4


def connect(path: str | None) -> socket.socket | None:
    if not path:
        return None
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.connect(path)
    except OSError:
        server.close()
        return None
    return server


def exit_status(server: socket.socket) -> int:
    """The forked process's exit status; 1 if it ended without saying (it was killed)."""
    received = b""
    while len(received) < STATUS_BYTES:
        chunk = server.recv(STATUS_BYTES - len(received))
        if not chunk:
            return 1
        received += chunk
    return int.from_bytes(received, "big", signed=True)


def main() -> None:
    server = connect(os.environ.get(SERVER_VARIABLE))
    if server is None:
        python = sys.executable
        os.execv(python, [python, "-P", "-m", "fedrad.client.trusted_apps", *sys.argv[1:]])
    socket.send_fds(server, [json.dumps(sys.argv).encode()], [0, 1, 2])
    sys.exit(exit_status(server))


if __name__ == "__main__":
    main()
