"""A real federation on loopback: SuperLink + 3 SuperNodes as processes, TLS and node keys,
the sites connecting through the gateway (nginx) as in a real deployment.

The results must equal the in-process federation's on the same feature tables, and a
SuperNode whose key was never registered must be refused. Every process started here is
killed at the end, with all its children (Flower starts one per run and per message).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest
from loopback import LoopbackFederation
from typer.testing import CliRunner

from fedrad.client.data import SiteData
from fedrad.client.node_key import make_node_key
from fedrad.common.cli import app
from fedrad.common.config import StudyConfig
from fedrad.common.feature_table import read_feature_table, write_feature_table
from fedrad.server.gateway import nginx_path
from fedrad.server.registration import register_site
from fedrad.server.study import StudyProtocol
from fedrad.simulations.in_process import in_process_transport

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("flower-superlink") is None, reason="flower-superlink is not on PATH"
    ),
]


def _study() -> StudyConfig:
    """Small, so each of Flower's per-message process starts counts: few features, one
    holdout split, ComBat, no screening, sums in the clear (masking adds reveal rounds)."""
    return StudyConfig().updated(
        federation={"min_sites": 3, "secure_aggregation": False},
        selection={"screen": "none"},
        validation={"scheme": "holdout"},
    )


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    loopback = LoopbackFederation(
        # through the gateway wherever nginx is (CI installs it), else to the SuperLink
        tmp_path_factory.mktemp("deployment"),
        _study(),
        gateway=nginx_path() is not None,
    )
    table, provenance = read_feature_table(loopback.tables["site03"])
    stale = loopback.root / "sites" / "site04" / "features.parquet"
    write_feature_table(table, stale, {**provenance, "extraction_hash": "0" * 16})
    loopback.tables["site04"] = stale  # joined by hand, past `site join`'s own check
    try:
        loopback.start()
        loopback.wait_until("online", list(loopback.tables))
        started = time.monotonic()
        loopback.submit(loopback.root / "out")
        loopback.results_json = loopback.results(loopback.root / "out")
        print(f"deployed study: {time.monotonic() - started:.0f} s")
        yield loopback
    finally:
        loopback.stop_all()


def test_a_deployed_study_equals_the_in_process_federation(federation):
    study, tables = federation.study, federation.tables
    sites = [SiteData.load(path, name, study) for name, path in tables.items() if name != "site04"]
    reference = StudyProtocol(in_process_transport(sites, study), study, expected_sites=3).run()
    deployed = federation.results_json
    assert [site["status"] for site in deployed["sites"]] == ["included"] * 3 + ["refused"]
    model, expected = deployed["model"]["coefficients"], reference["model"]["coefficients"]
    assert list(model) == list(expected)
    assert max(abs(model[name] - expected[name]) for name in model) <= 1e-9
    for key in ("auc", "sensitivity", "specificity"):
        assert deployed["metrics"]["federated"][key] == pytest.approx(
            reference["metrics"]["federated"][key], abs=1e-9
        )


def test_a_deployed_study_writes_the_report_a_simulation_writes(federation):
    page = (federation.root / "out" / "report.html").read_text()
    assert "Per site, on its held-out cases" in page
    assert (federation.root / "out" / "plotly.min.js").is_file()


def test_a_site_extracted_with_other_settings_is_refused_by_name(federation):
    stale = next(site for site in federation.results_json["sites"] if site["name"] == "site04")
    assert stale["status"] == "refused"
    assert "extraction hash" in stale["reason"]


def test_a_supernode_with_an_unregistered_key_is_refused(federation):
    stranger = make_node_key(federation.root / "node-keys" / "stranger", "stranger")
    name = next(iter(federation.tables))
    process = federation.start_process(federation.site_command(name, stranger.private), "stranger")
    try:
        status = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("a SuperNode with an unregistered key was let in (it kept running)")
    assert status != 0
    assert "Failed to activate SuperNode" in federation.log("stranger")
    assert "No SuperNode found with the given public key" in federation.log("superlink")


def test_registering_a_known_site_again_is_not_an_error(federation):
    name = next(iter(federation.tables))
    assert register_site(federation.node_keys[name].public, name, federation.state) is False


def test_an_unregistered_site_is_refused_when_it_joins_again(federation):
    name = next(iter(federation.tables))
    leaver = make_node_key(federation.root / "node-keys" / "leaver", "leaver")
    register_site(leaver.public, "leaver", federation.state)
    assert "leaver" in federation.site_status()
    result = CliRunner().invoke(
        app, ["keys", "unregister", "leaver", "--state", str(federation.state)]
    )
    assert result.exit_code == 0, result.output
    assert "leaver unregistered" in result.output
    assert "leaver" not in federation.site_status()
    process = federation.start_process(federation.site_command(name, leaver.private), "leaver")
    try:
        status = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("a SuperNode with an unregistered key was let in (it kept running)")
    assert status != 0
    assert "Failed to activate SuperNode" in federation.log("leaver")


def test_server_status_names_every_site_and_the_finished_run(federation):
    result = CliRunner().invoke(app, ["server", "status", "--state", str(federation.state)])
    assert result.exit_code == 0, result.output
    for name in federation.tables:
        assert re.search(rf"{name} .* online", result.output), result.output
    assert "finished" in result.output
