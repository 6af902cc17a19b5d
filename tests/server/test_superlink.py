"""The aggregator's command lines: TLS, node authentication, state, no installs at run time."""

from __future__ import annotations

import tomllib
from pathlib import Path

from fedrad.server.certificates import FederationCertificates
from fedrad.server.superlink import (
    connection_config,
    register_command,
    study_app_project,
    superlink_command,
)


def _after(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_the_superlink_serves_tls_admits_registered_nodes_and_keeps_its_state(tmp_path):
    keys = FederationCertificates(tmp_path / "keys")
    command = superlink_command(keys, tmp_path / "state", port=8443)
    assert command[0] == "flower-superlink"
    assert _after(command, "--ssl-ca-certfile") == str(keys.ca_certificate.resolve())
    assert _after(command, "--ssl-certfile") == str(keys.server_certificate.resolve())
    assert _after(command, "--ssl-keyfile") == str(keys.server_key.resolve())
    assert "--enable-supernode-auth" in command and "--insecure" not in command
    assert _after(command, "--database") == str((tmp_path / "state" / "state.db").resolve())
    assert "--disable-runtime-dependency-installation" in command
    assert (_after(command, "--host"), _after(command, "--port")) == ("127.0.0.1", "8443")


def test_an_insecure_superlink_says_so_and_still_installs_nothing(tmp_path):
    command = superlink_command(None, tmp_path)
    assert "--insecure" in command and "--enable-supernode-auth" not in command
    assert "--disable-runtime-dependency-installation" in command


def test_the_study_app_points_at_the_study_and_an_absolute_results_folder(tmp_path):
    project = tomllib.loads(study_app_project(Path("study.yaml"), Path("out")))
    assert project["project"]["dependencies"] == []
    assert project["tool"]["flwr"]["app"]["components"] == {
        "serverapp": "fedrad.server.app:app",
        "clientapp": "fedrad.client.app:app",
    }
    config = project["tool"]["flwr"]["app"]["config"]
    assert Path(config["study-path"]).is_absolute() and Path(config["out-dir"]).is_absolute()


def test_the_study_app_names_its_run_store_and_who_started_it_when_given():
    def config(**given):
        project = tomllib.loads(study_app_project(Path("study.yaml"), Path("out"), **given))
        return project["tool"]["flwr"]["app"]["config"]

    given = config(store="sqlite:////srv/state/runs.db", started_by="ana")
    assert (given["store-url"], given["started-by"]) == ("sqlite:////srv/state/runs.db", "ana")
    assert "store-url" not in config() and "started-by" not in config()


def test_the_flwr_connection_trusts_the_federation_ca(tmp_path):
    keys = FederationCertificates(tmp_path)
    config = tomllib.loads(connection_config("127.0.0.1:8000", keys))
    connection = config["superlink"][config["superlink"]["default"]]
    assert connection == {
        "address": "127.0.0.1:8000",
        "root-certificates": str(keys.ca_certificate.resolve()),
    }
    assert register_command(tmp_path / "node.pub", "site01")[-4:-2] == ["--name", "site01"]
