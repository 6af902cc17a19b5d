"""deploy/compose.yaml: a valid Compose file whose containers run FedRad's own commands,
with TLS material as secrets, read-only site data, the CA key left out, the dashboard
over the aggregator's store, and only the gateway's port open to sites: the SuperLink's
own port (its Control API has no authentication) is neither published nor on the sites'
network."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import typer
import yaml

from fedrad.common.cli import app
from fedrad.server.certificates import FederationCertificates
from fedrad.server.gateway import Upstream, gateway_config

DEPLOY = Path(__file__).parents[2] / "deploy"
SITES = ("site01", "site02", "site03")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _parsed(command: list[str]) -> dict:
    """The options `fedrad` parses from a container's command (fails on unknown ones)."""
    group = typer.main.get_command(app)
    *path, leaf = command[: next(i for i, arg in enumerate(command) if arg.startswith("--"))]
    for name in path:
        group = group.commands[name]
    context = group.commands[leaf].make_context(leaf, list(command[len(path) + 1 :]))
    return context.params


def _secret_targets(service: dict) -> dict[str, str]:
    return {f"/run/secrets/{s['target']}": s["source"] for s in service["secrets"]}


def test_the_compose_file_follows_the_compose_specification(compose):
    schema = json.loads((Path(__file__).parent / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(compose)


def test_the_aggregator_runs_fedrad_server_start_with_its_tls_secrets(compose):
    aggregator = compose["services"]["aggregator"]
    options = _parsed(aggregator["command"])
    keys = str(options["keys"])
    targets = _secret_targets(aggregator)
    for name in ("ca.crt", "server.pem", "server.key"):
        assert f"{keys}/{name}" in targets
    assert not any("ca.key" in compose["secrets"][s]["file"] for s in compose["secrets"])
    assert [pair.split("=")[0] for pair in options["site"]] == list(SITES)
    assert all(pair.split("=")[1] in targets for pair in options["site"])
    assert options["insecure"] is False


def test_the_superlinks_port_is_not_published_nor_on_the_sites_network(compose):
    aggregator = compose["services"]["aggregator"]
    port = _parsed(aggregator["command"])["port"]
    assert not any(mapping.split(":")[-1] == str(port) for mapping in aggregator["ports"])
    assert all(mapping.startswith("127.0.0.1:") for mapping in aggregator["ports"])
    for site in SITES:
        assert "backend" not in compose["services"][site]["networks"]
    assert aggregator["networks"] == ["backend"]


def test_the_gateway_is_published_and_runs_the_config_fedrad_writes(compose):
    """deploy/gateway.conf is `gateway_config` for this file's ports, secrets and names, so
    the container passes exactly what `fedrad server start --public` passes."""
    gateway, aggregator = compose["services"]["gateway"], compose["services"]["aggregator"]
    (published,) = gateway["ports"]
    public_port = int(published.split(":")[-1])
    assert published == f"{public_port}:{public_port}"
    assert gateway["image"].startswith("nginx:1.") and gateway["image"].count(".") == 2
    assert set(gateway["networks"]) == {"backend", "sites"}
    config_mount = next(v for v in gateway["volumes"] if v.startswith("./gateway.conf:"))
    command = gateway["command"]
    assert command == [
        "nginx",
        "-e",
        "stderr",
        "-c",
        config_mount.split(":")[1],
        "-g",
        "daemon off;",
    ]
    targets = _secret_targets(gateway)
    folder = Path(next(iter(targets))).parent
    assert targets == {
        f"{folder}/ca.crt": "ca-certificate",
        f"{folder}/server.pem": "server-certificate",
        f"{folder}/server.key": "server-key",
    }
    upstream_port = _parsed(aggregator["command"])["port"]
    expected = gateway_config(
        FederationCertificates(folder),
        f"0.0.0.0:{public_port}",
        Upstream("aggregator", upstream_port),
        Path("/tmp"),
    )
    assert (DEPLOY / "gateway.conf").read_text() == expected, "regenerate deploy/gateway.conf"
    assert "/tmp" in gateway["tmpfs"] and gateway["read_only"] is True


@pytest.mark.parametrize("site", SITES)
def test_each_site_joins_with_its_own_key_over_tls_and_reads_its_data_read_only(compose, site):
    service = compose["services"][site]
    options = _parsed(service["command"])
    (published,) = compose["services"]["gateway"]["ports"]
    assert options["server"] == f"gateway:{published.split(':')[-1]}"
    assert options["insecure"] is False and service["networks"] == ["sites"]
    targets = _secret_targets(service)
    assert targets[f"{options['keys']}/node.key"] == f"{site}-node-key"
    assert targets[f"{options['keys']}/ca.crt"] == "ca-certificate"
    data = [v for v in service["volumes"] if v.split(":")[1] == str(options["site_dir"])]
    assert data == [f"./demo/sites/{site}:/data:ro"]
    assert service["read_only"] is True
    assert service["environment"]["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] == "1"


def test_the_schema_rejects_a_misspelt_service_key(compose):
    schema = json.loads((Path(__file__).parent / "compose-spec.json").read_text())
    broken = {**compose, "services": {"aggregator": {"comand": ["server", "start"]}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_the_dashboard_reads_the_aggregators_store_and_controls_its_runs_from_its_network(
    compose,
):
    aggregator, dashboard = compose["services"]["aggregator"], compose["services"]["dashboard"]
    served = _parsed(aggregator["command"])
    options = _parsed(dashboard["command"])
    state = str(served["state"])
    assert str(options["state"]) == state
    assert options["db"] == f"sqlite:///{state}/runs.db"  # STATE/runs.db: server start's store
    volume = f"aggregator-state:{state}"
    assert volume in aggregator["volumes"] and volume in dashboard["volumes"]
    # flwr reaches the SuperLink at 127.0.0.1 (server start's connection) with its CA there
    assert dashboard["network_mode"] == "service:aggregator"
    assert f"{served['keys']}/ca.crt" in _secret_targets(dashboard)
    assert f"127.0.0.1:{options['port']}:{options['port']}" in aggregator["ports"]
    assert dashboard["image"] == aggregator["image"] and dashboard["read_only"] is True
    assert "8080/login" in " ".join(dashboard["healthcheck"]["test"])
