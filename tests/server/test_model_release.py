"""The released model: a bundle written at the end of a small in-process study predicts
exactly what the study's final model predicts, for a training site (with the ComBat
estimates it kept) and for a site the model never saw (label-free, as leave-one-site-out)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import site_grid
from flwr.app import Context, RecordDict
from typer.testing import CliRunner

from fedrad.client import local_pipeline
from fedrad.client.data import SiteData
from fedrad.client.predict import model_inputs
from fedrad.client.predict_harmonize import harmonize
from fedrad.common.cli import app
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.model_bundle import BUNDLE_FILE, load_bundle
from fedrad.common.model_signing import (
    SIGNING_KEY,
    SIGNING_PUBLIC_KEY,
    make_signing_key,
    trusted_key,
)
from fedrad.common.pipeline import Partition
from fedrad.server.app import make_server_app
from fedrad.server.federation import GridTransport
from fedrad.server.model_release import bundle_payload, release_bundle
from fedrad.server.study import StudyProtocol
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3), validation={"scheme": "kfold", "folds": 3}
)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """(study, final fit, loaded bundle, training tables, a fourth site's table)."""
    root = tmp_path_factory.mktemp("study")
    tables = write_site_feature_tables(root, STUDY, sizes=(40, 36, 44, 30), n_features=5)
    *training, unseen = tables.items()
    training = dict(training)
    protocol = StudyProtocol(
        GridTransport(site_grid(training, STUDY), 60), STUDY, 3, log=lambda _: None
    )
    results = protocol.run()
    key = make_signing_key(root / "keys")
    release_bundle(bundle_payload(results, protocol.final, 7), key, root)
    trust = trusted_key(str(root / "keys" / SIGNING_PUBLIC_KEY))
    return protocol.final, load_bundle(root / BUNDLE_FILE, trust), training, unseen


def _bundle_probabilities(bundle, data: SiteData, site_dir: Path | None, rows=slice(None)):
    x = data.columns(bundle.params.features)[rows]
    minimum = bundle.payload["harmonization"]["new_site"]["minimum_cases"]
    harmonized = harmonize(x, data.batch[rows], bundle.params, bundle.study, minimum, site_dir)
    assert harmonized.usable.all()
    return local_pipeline.predict(
        bundle.params, model_inputs(bundle.params, harmonized.values, bundle.study)
    )


def test_a_training_site_gets_exactly_the_study_models_predictions(released):
    final, bundle, training, _ = released
    assert bundle.trusted and bundle.training_sites == sorted(training)
    for name, path in training.items():
        data = SiteData.load(path, name, STUDY)
        rows = np.ones(len(data.case_ids), dtype=bool)
        z = local_pipeline.model_inputs(data, final.params, Partition("all"), rows, STUDY)
        expected = local_pipeline.predict(final.params, z)
        # a few of its cases (new patients of the site), with the estimates it kept
        got = _bundle_probabilities(bundle, data, path.parent, slice(0, 12))
        assert np.max(np.abs(got - expected[:12])) <= 1e-12
        label_free = _bundle_probabilities(bundle, data, None, slice(0, 12))
        assert np.max(np.abs(label_free - expected[:12])) > 1e-6  # estimates do matter
    assert bundle.threshold == final.threshold


def test_a_site_not_in_training_harmonizes_label_free_as_an_unseen_site(released):
    final, bundle, _, unseen = released
    data = SiteData.load(unseen[1], unseen[0], STUDY)
    rows = np.ones(len(data.case_ids), dtype=bool)
    z = local_pipeline.model_inputs(data, final.params, Partition("unseen"), rows, STUDY)
    expected = local_pipeline.predict(final.params, z)
    assert np.max(np.abs(_bundle_probabilities(bundle, data, None) - expected)) <= 1e-12


def test_a_new_site_below_the_minimum_is_refused_per_case_by_sentence(released):
    _, bundle, _, unseen = released
    data = SiteData.load(unseen[1], unseen[0], STUDY)
    minimum = bundle.payload["harmonization"]["new_site"]["minimum_cases"]
    x = data.columns(bundle.params.features)[: minimum - 1]
    harmonized = harmonize(x, data.batch[: minimum - 1], bundle.params, bundle.study, minimum, None)
    assert not harmonized.usable.any()
    assert f"needs at least {minimum}" in harmonized.how[0]


def test_estimates_of_another_model_are_refused(released, tmp_path):
    _, bundle, training, _ = released
    name, path = next(iter(training.items()))
    kept = dict(np.load(path.parent / "combat_estimates.npz"))
    kept["alpha"] = kept["alpha"] + 1e-9
    np.savez(tmp_path / "combat_estimates.npz", **kept)
    data = SiteData.load(path, name, STUDY)
    with pytest.raises(ValueError, match="another model"):
        _bundle_probabilities(bundle, data, tmp_path)


def test_the_bundle_records_provenance_as_released(released):
    _, bundle, training, _ = released
    payload = bundle.payload
    provenance = payload["provenance"]
    assert [site["name"] for site in provenance["sites"]] == sorted(training)
    assert provenance["validation"]["design"]["scheme"] == "kfold"
    assert provenance["software"]["fedrad"] and payload["run_id"] == "7"
    assert "auc_ci" in payload["metrics"]["federated"]
    assert payload["study"]["extraction_hash"] == STUDY.extraction_hash


def test_a_deployed_study_signs_model_fedrad_with_the_keys_init_key(tmp_path):
    keys = tmp_path / "keys"
    init = CliRunner().invoke(app, ["keys", "init", "--out", str(keys), "--host", "agg.test"])
    assert init.exit_code == 0, init.output
    assert (keys / SIGNING_KEY).stat().st_mode & 0o777 == 0o600
    tables = write_site_feature_tables(tmp_path, STUDY, sizes=(40, 36, 44), n_features=5)
    out = tmp_path / "results"
    run_config = {"out-dir": str(out), "signing-key": str(keys / SIGNING_KEY)}
    context = Context(
        run_id=5, node_id=0, node_config={}, state=RecordDict(), run_config=run_config
    )
    make_server_app(STUDY, expected_sites=3, log=lambda _: None)(site_grid(tables, STUDY), context)
    bundle = load_bundle(out / BUNDLE_FILE, trusted_key(str(keys / SIGNING_PUBLIC_KEY)))
    results = json.loads((out / "results.json").read_text())
    assert bundle.payload["run_id"] == "5"
    assert bundle.payload["model"]["coefficients"] == results["model"]["coefficients"]
    assert bundle.payload["provenance"]["sites"] == results["sites"]


def test_an_mlp_bundle_predicts_exactly_as_the_study(tmp_path):
    study = STUDY.updated(model={"kind": "mlp", "rounds": 2}, validation={"scheme": "holdout"})
    tables = write_site_feature_tables(tmp_path, study, sizes=(40, 36, 44), n_features=5)
    protocol = StudyProtocol(
        GridTransport(site_grid(tables, study), 60), study, 3, log=lambda _: None
    )
    results = protocol.run()
    release_bundle(bundle_payload(results, protocol.final, 3), make_signing_key(tmp_path), tmp_path)
    bundle = load_bundle(tmp_path / BUNDLE_FILE, None)
    assert bundle.params.network is not None and bundle.params.beta is None
    name, path = next(iter(tables.items()))
    data = SiteData.load(path, name, study)
    rows = np.ones(len(data.case_ids), dtype=bool)
    z = local_pipeline.model_inputs(data, protocol.final.params, Partition("holdout"), rows, study)
    expected = local_pipeline.predict(protocol.final.params, z)
    got = _bundle_probabilities(bundle, data, path.parent, slice(0, 12))
    assert np.max(np.abs(got - expected[:12])) <= 1e-12


def test_server_start_hands_the_keys_init_signing_key_to_the_study_app(tmp_path):
    import tomllib

    from fedrad.server.certificates import FederationCertificates, signing_key_of
    from fedrad.server.superlink import study_app_project

    keys = FederationCertificates(tmp_path / "keys")
    assert signing_key_of(keys) is None  # a keys folder from before: the aggregator makes one
    make_signing_key(keys.folder)
    project = study_app_project(
        tmp_path / "study.yaml", tmp_path / "results", signing_key=signing_key_of(keys)
    )
    config = tomllib.loads(project)["tool"]["flwr"]["app"]["config"]
    assert config["signing-key"] == str((keys.folder / SIGNING_KEY).resolve())
