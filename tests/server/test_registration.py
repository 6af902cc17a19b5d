"""A site registered on the aggregator is in its run store at once: registered, not yet
online; when it joins, the census fills in the rest and keeps when it was registered."""

from __future__ import annotations

import subprocess

import pytest

from fedrad.common.config import StudyConfig
from fedrad.server.federation import SiteRecord
from fedrad.server.registration import (
    RegistrationFailed,
    register_site,
    site_names,
    unregister_site,
)
from fedrad.server.store.engine import STORE_FILE, open_store, state_store_url
from fedrad.server.store.reader import site_page
from fedrad.server.store.writer import RunWriter


@pytest.fixture
def flwr_registers(monkeypatch):
    """`flwr supernode register` answering as the SuperLink does: node 123, or in use."""
    answers = []

    def run(command, **_):
        stdout = answers.pop(0) if answers else '{"node-id": 123}'
        return subprocess.CompletedProcess(command, 0, stdout=stdout, stderr="")

    monkeypatch.setattr("fedrad.server.registration.subprocess.run", run)
    return answers


def test_a_registered_site_is_in_the_store_before_it_joins(tmp_path, flwr_registers):
    (tmp_path / "node.pub").write_text("ecdsa-sha2-nistp384 AAAA site01\n")
    (tmp_path / "state").mkdir()
    assert register_site(tmp_path / "node.pub", "site01", tmp_path / "state")
    engine = open_store(state_store_url(tmp_path / "state"))
    registered = site_page(engine, "site01").site
    assert (registered.status, registered.online, registered.node_id) == (
        "registered", False, "123",
    )  # fmt: skip
    writer = RunWriter(engine, "deployment", log=print)
    writer.start(StudyConfig())
    writer.census([SiteRecord(node_id=123, name="site01", status="included", cases={})])
    joined = site_page(engine, "site01").site
    engine.dispose()
    assert (joined.status, joined.online) == ("included", True)
    assert joined.registered_at == registered.registered_at


def test_registering_again_keeps_the_site_as_it_is(tmp_path, flwr_registers):
    (tmp_path / "node.pub").write_text("ecdsa-sha2-nistp384 AAAA site01\n")
    register_site(tmp_path / "node.pub", "site01", tmp_path)
    flwr_registers.append("the public key is already in use")
    assert not register_site(tmp_path / "node.pub", "site01", tmp_path)
    engine = open_store(state_store_url(tmp_path))
    assert site_page(engine, "site01").site.node_id == "123"
    engine.dispose()


def test_a_store_that_cannot_record_the_site_is_named_and_the_site_stays_registered(
    tmp_path, flwr_registers
):
    (tmp_path / "node.pub").write_text("ecdsa-sha2-nistp384 AAAA site01\n")
    (tmp_path / "taken").write_text("a file where the store's folder would go")
    (tmp_path / STORE_FILE).write_text(f"sqlite:///{tmp_path / 'taken' / 'runs.db'}\n")
    with pytest.raises(RegistrationFailed, match="site01 is registered, but the run store"):
        register_site(tmp_path / "node.pub", "site01", tmp_path)
    assert "site01" in (tmp_path / "sites.json").read_text()


@pytest.fixture
def flwr_unregisters(monkeypatch, flwr_registers):
    """`flwr supernode unregister` answering as the SuperLink does (other `flwr` commands
    as `flwr_registers` answers them); the node ids asked."""
    asked, answers = [], []
    register = subprocess.run  # the same module object: `flwr_registers`' answer

    def run(command, **options):
        if command[:3] != ["flwr", "supernode", "unregister"]:
            return register(command, **options)
        asked.append(command[3])
        stdout = answers.pop(0) if answers else '{"success": true}'
        return subprocess.CompletedProcess(command, 0, stdout=stdout, stderr="")

    monkeypatch.setattr("fedrad.server.flwr_cli.subprocess.run", run)
    return asked, answers


def test_an_unregistered_site_is_forgotten_by_node_id_and_kept_in_the_store_as_unregistered(
    tmp_path, flwr_registers, flwr_unregisters
):
    (tmp_path / "node.pub").write_text("ecdsa-sha2-nistp384 AAAA site01\n")
    register_site(tmp_path / "node.pub", "site01", tmp_path)
    flwr_registers.append('{"node-id": 456}')
    register_site(tmp_path / "node.pub", "site02", tmp_path)
    asked, _ = flwr_unregisters
    assert unregister_site("site01", tmp_path) == ["123"]
    assert asked == ["123"]
    assert site_names(tmp_path) == {"456": "site02"}
    engine = open_store(state_store_url(tmp_path))
    gone = site_page(engine, "site01").site
    assert (gone.status, gone.online, gone.node_id) == ("unregistered", False, None)
    assert site_page(engine, "site02").site.status == "registered"
    engine.dispose()
    flwr_registers.append('{"node-id": 789}')
    register_site(tmp_path / "node.pub", "site01", tmp_path)
    engine = open_store(state_store_url(tmp_path))
    back = site_page(engine, "site01").site
    engine.dispose()
    assert (back.status, back.node_id) == ("registered", "789")


def test_unregistering_an_unknown_site_names_the_registered_ones(tmp_path, flwr_registers):
    (tmp_path / "node.pub").write_text("ecdsa-sha2-nistp384 AAAA site01\n")
    register_site(tmp_path / "node.pub", "site01", tmp_path)
    with pytest.raises(RegistrationFailed, match=r"no site 'site9'.*registered: site01"):
        unregister_site("site9", tmp_path)


def test_a_refused_unregistration_keeps_the_site_registered_and_says_why(
    tmp_path, flwr_registers, flwr_unregisters
):
    (tmp_path / "node.pub").write_text("ecdsa-sha2-nistp384 AAAA site01\n")
    register_site(tmp_path / "node.pub", "site01", tmp_path)
    _, answers = flwr_unregisters
    answers.append('{"success": false, "error-message": "Node ID not found"}')
    with pytest.raises(RegistrationFailed, match="site01 is still registered: .*Node ID not found"):
        unregister_site("site01", tmp_path)
    assert site_names(tmp_path) == {"123": "site01"}
