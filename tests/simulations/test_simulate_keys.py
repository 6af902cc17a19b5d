"""The simulation pins its sites' identity keys, as a coordinator pins real sites' keys."""

from __future__ import annotations

import stat

import pytest

from fedrad.client.data import SiteData
from fedrad.client.identity import load_or_create_identity, public_hex
from fedrad.common.config import FederationSettings, StudyConfig, ValidationSettings
from fedrad.server.study import StudyProtocol
from fedrad.simulations.in_process import in_process_transport
from fedrad.simulations.simulate import pin_site_keys, run_federation
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3),
    validation=ValidationSettings(scheme="holdout"),
)


@pytest.fixture
def tables(tmp_path):
    return write_site_feature_tables(tmp_path, STUDY, sizes=(30, 24, 36), n_features=4)


def test_each_site_gets_a_private_key_beside_its_table_and_the_study_pins_it(tables):
    study = pin_site_keys(tables, STUDY)
    for site, path in tables.items():
        key_file = path.parent / "identity.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert study.federation.site_keys[site] == public_hex(load_or_create_identity(path.parent))
    assert set(study.federation.site_keys) == set(tables)
    unpinned = study.updated(federation={"site_keys": {}})
    assert unpinned.model_dump() == STUDY.model_dump()  # nothing else changes


def test_a_rerun_pins_the_same_keys_and_replaces_the_studys_own_pins(tables):
    first = pin_site_keys(tables, STUDY)
    stale = STUDY.updated(federation={"site_keys": {"elsewhere": "ab" * 32}})
    again = pin_site_keys(tables, stale)
    assert again.federation.site_keys == first.federation.site_keys
    assert again.study_hash == first.study_hash


def test_sites_and_aggregator_run_the_pinned_study_together(tables):
    study = pin_site_keys(tables, STUDY)
    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    results = StudyProtocol(in_process_transport(sites, study), study, log=lambda _: None).run()
    assert results["study"]["config"]["federation"]["site_keys"] == study.federation.site_keys
    assert [s["status"] for s in results["sites"]] == ["included"] * 3
    assert results["round_counts"]["secagg-keys"] == 1


def test_a_site_whose_key_is_not_the_pinned_one_is_set_aside_by_name(tables):
    study = pin_site_keys(tables, STUDY)
    impostor = tables["site02"].parent / "identity.key"
    impostor.unlink()  # the site's key changed after the study pinned the old one
    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    results = StudyProtocol(in_process_transport(sites, study), study, log=lambda _: None).run()
    status = {s["name"]: (s["status"], s["reason"]) for s in results["sites"]}
    assert status["site01"][0] == status["site03"][0] == "included"
    assert status["site02"][0] == "dropped"
    assert "federation.site_keys" in status["site02"][1]


@pytest.mark.slow
def test_run_federation_pins_the_keys_it_runs_with(tables):
    results = run_federation(tables, STUDY, log=lambda _: None, cpus=2)
    pinned = results["study"]["config"]["federation"]["site_keys"]
    assert pinned == {
        site: public_hex(load_or_create_identity(path.parent)) for site, path in tables.items()
    }
    assert all(site["status"] == "included" for site in results["sites"])
