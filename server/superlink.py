"""The aggregator's Flower processes as command lines: the SuperLink, and the study's
submission to it.

Pure functions of their inputs, so the tests, `fedrad server start` and the containers in
deploy/ all run the very same command lines.
"""

from __future__ import annotations

from pathlib import Path

from fedrad.common.flower_processes import toml_string
from fedrad.common.study_app import COMPONENTS, NAME, PUBLISHER, fedrad_version
from fedrad.server.certificates import FederationCertificates

CONNECTION = "fedrad"
"""The name of the SuperLink connection `fedrad` writes into its own FLWR_HOME."""


def superlink_command(
    keys: FederationCertificates | None, state: Path, host: str = "127.0.0.1", port: int = 8000
) -> list[str]:
    """`flower-superlink` with TLS from `keys` (None: plain text), node authentication,
    its database in `state`, and no package installation at run time. On loopback by
    default: its Control API has no authentication, so sites come through the gateway
    (server/gateway.py)."""
    security = (
        ["--insecure"]
        if keys is None
        else [
            "--ssl-ca-certfile", str(keys.ca_certificate.resolve()),
            "--ssl-certfile", str(keys.server_certificate.resolve()),
            "--ssl-keyfile", str(keys.server_key.resolve()),
            "--enable-supernode-auth",
        ]
    )  # fmt: skip
    return [
        "flower-superlink",
        *security,
        "--database", str((state / "state.db").resolve()),
        "--disable-runtime-dependency-installation",
        "--host", host,
        "--port", str(port),
    ]  # fmt: skip


def flower_home(state: Path) -> Path:
    """FLWR_HOME for the `flwr` commands run against this aggregator (not ~/.flwr)."""
    return (state / "flwr-home").resolve()


def connection_config(address: str, keys: FederationCertificates | None) -> str:
    """`config.toml` for FLWR_HOME: the one connection the `flwr` CLI uses."""
    trust = (
        "insecure = true"
        if keys is None
        else f"root-certificates = {toml_string(str(keys.ca_certificate.resolve()))}"
    )
    return (
        f'[superlink]\ndefault = "{CONNECTION}"\n\n'
        f"[superlink.{CONNECTION}]\naddress = {toml_string(address)}\n{trust}\n"
    )


def study_app_project(
    study: Path,
    out_dir: Path,
    resume: bool = False,
    store: str | None = None,
    started_by: str | None = None,
    signing_key: Path | None = None,
) -> str:
    """`pyproject.toml` of the app submitted for a study: only FedRad's installed apps
    (no code: sites refuse an app that carries any, `fedrad.common.study_app`), versioned
    as the FedRad that submits it, pointed at the study and an absolute results folder (a
    ServerApp's working directory is the SuperLink's). Nothing to install. `resume`: the
    study continues from the checkpoint in its results folder. `store`: the run store's
    URL (docs/store.md); `started_by`: who submitted it, as the store records;
    `signing_key`: the key that signs its model bundle (docs/model-bundle.md)."""
    extra = {
        "store-url": store,
        "started-by": started_by,
        "signing-key": signing_key and str(signing_key.resolve()),
    }
    components = "".join(f"{kind} = {toml_string(ref)}\n" for kind, ref in COMPONENTS.items())
    return (
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f"[project]\nname = {toml_string(NAME)}\nversion = {toml_string(fedrad_version())}\n"
        "dependencies = []\n\n"
        f"[tool.flwr.app]\npublisher = {toml_string(PUBLISHER)}\n\n"
        f"[tool.flwr.app.components]\n{components}\n"
        "[tool.flwr.app.config]\n"
        f"study-path = {toml_string(str(study.resolve()))}\n"
        f"out-dir = {toml_string(str(out_dir.resolve()))}\n"
        + ("resume = true\n" if resume else "")
        + "".join(f"{key} = {toml_string(value)}\n" for key, value in extra.items() if value)
    )


def submit_command(app_dir: Path) -> list[str]:
    """`flwr run` of the study app against this aggregator's connection (FLWR_HOME set)."""
    return ["flwr", "run", str(app_dir.resolve()), CONNECTION, "--format", "json"]


def register_command(public_key: Path, name: str) -> list[str]:
    """`flwr supernode register`: allow-list a site's node key under its name."""
    return [
        "flwr", "supernode", "register", str(public_key.resolve()), CONNECTION,
        "--name", name, "--format", "json",
    ]  # fmt: skip


def unregister_command(node_id: str) -> list[str]:
    """`flwr supernode unregister`: remove a site's node key; its SuperNode is refused."""
    return ["flwr", "supernode", "unregister", node_id, CONNECTION, "--format", "json"]


def nodes_command() -> list[str]:
    """`flwr supernode ls`: every registered node and whether it is online, as JSON."""
    return ["flwr", "supernode", "ls", CONNECTION, "--format", "json"]


def stop_command(run_id: int) -> list[str]:
    """`flwr stop`: end a run; Flower stops its ServerApp."""
    return ["flwr", "stop", str(run_id), CONNECTION, "--format", "json"]


def runs_command() -> list[str]:
    """`flwr ls`: the runs (studies) submitted and their status, as JSON."""
    return ["flwr", "ls", CONNECTION, "--format", "json"]
