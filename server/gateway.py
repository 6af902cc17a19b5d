"""The aggregator's public face: nginx in front of the SuperLink, passing sites' Fleet API
and nothing else.

Flower 1.42's SuperLink serves the Fleet, Control and ServerAppIo APIs on one port, and
its Control API (list, submit and stop runs, register node keys) has no authentication in
the open-source build: anyone who reaches that port with the public ca.crt could register
a node key of their own. So the SuperLink listens on loopback (or a private container
network) and this gateway, on the public address, terminates TLS with the aggregator's
certificate, forwards `POST /v1/fleet/...` to the SuperLink over TLS checked against the
federation's CA, and answers everything else 403. The node-authentication headers
(flwr-public-key, flwr-timestamp, flwr-signature) pass unchanged.

Pure functions, so `fedrad server start --public`, the tests and deploy/gateway.conf
(the compose gateway) use the very same configuration.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from fedrad.server.certificates import FederationCertificates

FLEET_PREFIX = "/v1/fleet/"
"""The only API sites use (flwr/supernode/fleet_http_client.py)."""

REFUSED_BODY = "FedRad gateway: only the Fleet API (/v1/fleet/) is served here.\n"

MAX_BODY = "64m"
"""Larger than any one Fleet request: Flower sends arrays in 5 MB chunks, apps up to 10 MB."""

NGINX_MISSING = (
    "nginx is not installed, and sites may reach the aggregator only through it "
    "(the SuperLink's Control API has no authentication): install it "
    "(Debian/Ubuntu: `apt-get install nginx-light`), or run without --public and put "
    "another gateway that passes only /v1/fleet/ in front of the SuperLink."
)


@dataclass(frozen=True)
class Upstream:
    """Where the gateway finds the SuperLink, and the name its certificate is checked for:
    localhost, which `keys init` always adds, wherever the SuperLink is (only the
    federation's CA signs for it)."""

    host: str = "127.0.0.1"
    port: int = 8000
    tls_name: str = "localhost"


def gateway_config(
    keys: FederationCertificates | None,
    listen: str,
    upstream: Upstream,
    runtime: Path,
) -> str:
    """nginx.conf for the gateway: listen on `listen` (HOST:PORT), pass POST /v1/fleet/...
    to `upstream`, 403 for the rest. `keys` None: plain text on both sides (--insecure).
    `runtime`: the folder for its pid and temporary files (writable by nginx)."""
    folder = keys.folder.resolve() if keys else None
    scheme = "http" if keys is None else "https"
    tls_listen = (
        ""
        if keys is None
        else f"""
        ssl_certificate {folder / keys.server_certificate.name};
        ssl_certificate_key {folder / keys.server_key.name};
        ssl_protocols TLSv1.2 TLSv1.3;"""
    )
    tls_upstream = (
        ""
        if keys is None
        else f"""
            proxy_ssl_trusted_certificate {folder / keys.ca_certificate.name};
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_name {upstream.tls_name};
            proxy_ssl_server_name on;"""
    )
    ssl = "" if keys is None else " ssl"
    refusal = REFUSED_BODY.replace("\n", "\\n")
    return f"""# FedRad's gateway (fedrad.server.gateway): only the Fleet API reaches the SuperLink.
worker_processes 1;
pid {runtime}/nginx.pid;
error_log stderr warn;

events {{
    worker_connections 512;
}}

http {{
    client_body_temp_path {runtime}/client-body;
    proxy_temp_path {runtime}/proxy;
    fastcgi_temp_path {runtime}/fastcgi;
    uwsgi_temp_path {runtime}/uwsgi;
    scgi_temp_path {runtime}/scgi;
    server_tokens off;
    access_log off;

    upstream superlink {{
        server {upstream.host}:{upstream.port};
        keepalive 8;
    }}

    server {{
        listen {listen}{ssl};{tls_listen}
        client_max_body_size {MAX_BODY};
        default_type text/plain;
        # every refusal ("access forbidden by rule", with the request) goes to the error
        # log, stderr, whichever user runs nginx
        error_page 403 @refused;

        location {FLEET_PREFIX} {{
            limit_except POST {{
                deny all;
            }}
            # the URI part makes nginx send its normalised path, the one it matched
            proxy_pass {scheme}://superlink{FLEET_PREFIX};{tls_upstream}
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 120s;
        }}

        # without it nginx would redirect /v1/fleet to /v1/fleet/
        location = {FLEET_PREFIX.rstrip("/")} {{
            deny all;
        }}

        location / {{
            deny all;
        }}

        location @refused {{
            return 403 "{refusal}";
        }}
    }}
}}
"""


def gateway_command(config: Path) -> list[str]:
    """nginx in the foreground with `config` (its own master process, stopped with it),
    logging to stderr from the start (not to a system log file a user cannot write)."""
    return [
        nginx_path() or "nginx",
        "-e",
        "stderr",
        "-c",
        str(config.resolve()),
        "-g",
        "daemon off;",
    ]


def nginx_path() -> str | None:
    """nginx on PATH, or in sbin (not on a non-root user's PATH on Debian)."""
    return shutil.which("nginx") or next(
        (str(p) for p in (Path("/usr/sbin/nginx"), Path("/usr/local/sbin/nginx")) if p.is_file()),
        None,
    )


def write_gateway_config(
    keys: FederationCertificates | None, listen: str, upstream: Upstream, folder: Path
) -> Path:
    """The gateway's config and runtime folder under `folder`; the config's path."""
    runtime = folder.resolve()
    runtime.mkdir(parents=True, exist_ok=True)
    config = runtime / "nginx.conf"
    config.write_text(gateway_config(keys, listen, upstream, runtime), encoding="utf-8")
    return config
