"""`fedrad site join`: this site's SuperNode, started only when the site is ready."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated

import typer

from fedrad.client.node_key import NodeKeyFiles
from fedrad.client.supernode import FEATURES_FILE, SiteNotReady, check_ready, supernode_command
from fedrad.common.cli_errors import fail, warn_insecure
from fedrad.common.cli_support import load_study
from fedrad.common.flower_processes import (
    INSECURE_WARNING,
    flower_env,
    stop_on_sigterm,
    stop_tree,
)
from fedrad.common.option_conflicts import refuse_pairs

CA_FILE = "ca.crt"


def join(
    ctx: typer.Context,
    site_dir: Annotated[
        Path, typer.Option(help="The site's folder, holding features.parquet (and identity.key).")
    ],
    server: Annotated[
        str,
        typer.Option(
            help="The aggregator's public address, HOST:PORT (its gateway, e.g. "
            "fedrad.hospital.org:8443), as the coordinator said."
        ),
    ],
    keys: Annotated[
        Path | None,
        typer.Option(
            help="Folder with node.key (`fedrad keys site`) and the coordinator's ca.crt."
        ),
    ] = None,
    study: Annotated[
        Path | None, typer.Option(help="The study YAML the coordinator sent; default: built-in.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="The site's name in the study; default: the folder's name.")
    ] = None,
    port: Annotated[
        int, typer.Option(help="Local port for Flower's app runtime (only this machine uses it).")
    ] = 9094,
    insecure: Annotated[
        bool, typer.Option(help="Plain text, no node key: for a test machine only.")
    ] = False,
) -> None:
    """Site IT: connect this site to the federation (a Flower SuperNode) until Ctrl-C.

    Only an outbound connection to the aggregator's public port (--server) is needed.
    The site answers the study's requests from its feature table; nothing else leaves it.
    Refuses to start when the feature table is missing or was extracted with settings
    other than the study's.

    The site runs only code installed here: every request is answered by this machine's
    FedRad ClientApp, and an app the aggregator sends is refused (and logged, with why)
    if it carries any code of its own, names other components than FedRad's, or was
    submitted by another FedRad version. Nothing is installed at run time.

    Exit status: 0 stopped, 1 the connection ended with an error, 2 not ready or bad usage.
    """
    refuse_pairs(ctx, {("keys", "insecure"): "--insecure uses no node key nor certificate"})
    study_config = load_study(study)
    features = site_dir / FEATURES_FILE
    try:
        check_ready(features, study_config, study)
    except SiteNotReady as exc:
        raise fail(str(exc)) from exc
    if insecure:
        warn_insecure(INSECURE_WARNING)
        root_certificate = node_key = None
    else:
        root_certificate, node_key = _keys(keys)
    command = supernode_command(
        server, features, name or site_dir.resolve().name, study, root_certificate, node_key, port
    )
    stop_on_sigterm()
    supernode = subprocess.Popen(command, env=flower_env())
    try:
        status = supernode.wait()
    except KeyboardInterrupt:
        status = 0
    finally:
        stop_tree([supernode])
    if status != 0:
        raise fail(
            f"the SuperNode stopped with status {status}: if its log says it failed to activate, "
            f"the aggregator at {server} refused this site's node key or could not be reached "
            "(check --server, and ask the coordinator whether node.pub is registered).",
            1,
        )


def _keys(keys: Path | None) -> tuple[Path, Path]:
    if keys is None:
        raise fail(
            "give --keys (node.key and the coordinator's ca.crt), or --insecure on a test box."
        )
    root_certificate, node_key = keys / CA_FILE, NodeKeyFiles(keys).private
    for path, fix in (
        (node_key, f"run `fedrad keys site NAME --out {keys}`"),
        (root_certificate, "copy the ca.crt the coordinator sent into that folder"),
    ):
        if not path.is_file():
            raise fail(f"there is no {path}; {fix}.")
    return root_certificate, node_key
