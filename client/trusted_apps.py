"""A site's ClientApp process: it runs FedRad's installed ClientApp, never code the
aggregator sent.

Flower installs the app (FAB) the aggregator submitted and imports the FAB's `clientapp`
component with the FAB's folder first on `sys.path`: a FAB naming a module of its own, or
shipping a module that shadows an installed one, would run at the hospital, next to its
data. This process replaces Flower's `flwr-clientapp` at a site (`trusted_supernode.py`
puts it there) and swaps Flower's loader for one that refuses any app that is not exactly
FedRad's study app for this FedRad version (`fedrad.common.study_app`), and otherwise
imports `fedrad.client.app:app` from the installed package, with nothing of the FAB on
the path. A refusal reaches the aggregator as the site's error for that request.

Run as `python -m fedrad.client.trusted_apps` with `flwr-clientapp`'s arguments.
"""

from __future__ import annotations

import sys
import tomllib
from functools import partial
from logging import ERROR
from pathlib import Path

import flwr.supernode.runtime.run_clientapp as flower_clientapp_process
from flwr.clientapp import ClientApp
from flwr.common.config import get_project_dir
from flwr.common.logger import log
from flwr.supercore.inflatable.inflatable_utils import pull_and_inflate_object_from_tree
from flwr.supernode.cli import flwr_clientapp

from fedrad.common.study_app import COMPONENTS, PROJECT_FILE, fedrad_version

INSTALL_FLAG = "--allow-runtime-dependency-installation"
FIRST_RETRY_S = 0.05
RETRY_CAP_S = 1.0


class AppRefused(Exception):
    """The aggregator's app is not FedRad's study app; the message says how it differs."""


def check_study_app(project_dir: Path, fab_version: str) -> None:
    """Refuse an installed FAB that carries anything but its `pyproject.toml`, names
    components other than FedRad's, or was submitted by another FedRad version."""
    extra = sorted(
        path.relative_to(project_dir).as_posix()
        for path in project_dir.rglob("*")
        if path != project_dir / PROJECT_FILE
    )
    if extra:
        raise AppRefused(
            f"the aggregator's app carries code or files ({', '.join(extra[:5])}); "
            "this site runs only the FedRad it installed"
        )
    config = tomllib.loads((project_dir / PROJECT_FILE).read_text(encoding="utf-8"))
    components = config.get("tool", {}).get("flwr", {}).get("app", {}).get("components")
    if components != COMPONENTS:
        raise AppRefused(
            f"the aggregator's app names components {components}, not FedRad's {COMPONENTS}"
        )
    if fab_version != fedrad_version():
        raise AppRefused(
            f"the study was submitted by FedRad {fab_version} and this site runs FedRad "
            f"{fedrad_version()}; ask the coordinator which version to install"
        )


def load_installed_client_app(fab_id: str, fab_version: str, fab_hash: str) -> ClientApp:
    """Flower's ClientApp loader at a site: check the app Flower installed for this run,
    then load FedRad's own ClientApp, whatever the app names."""
    try:
        check_study_app(get_project_dir(fab_id, fab_version, fab_hash), fab_version)
    except AppRefused as refusal:
        log(ERROR, "FedRad site: refused app %s (%s): %s", fab_id, fab_hash[:12], refusal)
        raise
    from fedrad.client.app import app  # after the check: a refusal costs no model imports

    return app


def main() -> None:
    """`flwr-clientapp` with FedRad's loader, and never installing the app's dependencies
    (that would run the aggregator's build code before any loader).

    Flower starts the app process before its SuperNode has received the whole message,
    and the process looks for the rest again only after 1 s, then 2, 4 ...: most of a
    deployed round. This one looks again after `FIRST_RETRY_S`, doubling to `RETRY_CAP_S`."""
    if INSTALL_FLAG in sys.argv:
        sys.exit(f"FedRad site: refusing {INSTALL_FLAG}; a site installs nothing at run time.")
    adapted = ("get_load_client_app_fn", "pull_and_inflate_object_from_tree")
    if not all(hasattr(flower_clientapp_process, name) for name in adapted):
        sys.exit(
            "FedRad site: this Flower loads apps in a way FedRad does not know; install "
            "the flwr version FedRad pins."
        )
    flower_clientapp_process.get_load_client_app_fn = lambda *_, **__: load_installed_client_app
    flower_clientapp_process.pull_and_inflate_object_from_tree = partial(
        pull_and_inflate_object_from_tree, initial_backoff=FIRST_RETRY_S, backoff_cap=RETRY_CAP_S
    )
    flwr_clientapp()


if __name__ == "__main__":
    main()
