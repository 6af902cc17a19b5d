"""The ServerApp's protocol over an in-process grid: exact, private and robust."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import InProcessGrid, make_site_tables
from flwr.app import Array, ArrayRecord, ConfigRecord, Message
from simulations_helpers import features_of

from fedrad.client.app import make_client_app
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.feature_table import read_feature_table, write_feature_table
from fedrad.server.protocol import StudyProtocol

STUDY = StudyConfig(federation=FederationSettings(min_cell_size=3, ridge_lambda=0.5))


def _grid(tables: dict[str, Path], study: StudyConfig = STUDY) -> InProcessGrid:
    app = make_client_app(
        locate=lambda ctx: (str(ctx.node_config["site-name"]), Path(ctx.node_config["path"])),
        load_study=lambda ctx: study,
    )
    return InProcessGrid(app, [{"site-name": n, "path": str(p)} for n, p in tables.items()])


def _run(grid: InProcessGrid, study: StudyConfig = STUDY) -> dict:
    return StudyProtocol(grid, study, expected_sites=len(grid.contexts), log=lambda _: None).run()


def _beta(results: dict) -> np.ndarray:
    model = results["model"]
    return np.array([model["intercept"], *model["coefficients"].values()])


def test_federated_fit_equals_pooled_fit(tmp_path):
    from fedrad.simulations.pooled import pooled_reference

    tables = make_site_tables(tmp_path, STUDY)
    results = _run(_grid(tables))
    reference = pooled_reference(tables, features_of(tables), STUDY)

    assert [s["status"] for s in results["sites"]] == ["included"] * 3
    assert np.max(np.abs(_beta(results) - np.array(reference["coefficients"]))) <= 1e-10
    assert results["model"]["iterations"] == reference["iterations"]
    federated = results["metrics"]["federated"]
    assert abs(federated["auc"] - reference["auc"]) <= federated["auc_error_bound"]
    for key in ("sensitivity", "specificity", "balanced_accuracy"):
        assert federated[key] == pytest.approx(reference[key], abs=1e-12)
    assert federated["auc"] > 0.7


def test_nothing_per_case_leaves_a_site(tmp_path):
    tables = make_site_tables(tmp_path, STUDY, sizes=(40, 12, 50))
    grid = _grid(tables)
    _run(grid)
    n_features = len(features_of(tables))
    bins = STUDY.federation.histogram_bins
    allowed_shapes = {
        (),
        (n_features,),
        (n_features + 1,),
        (n_features + 1, n_features + 1),
        (bins,),
    }
    case_ids = set()
    for path in tables.values():
        table, _ = read_feature_table(path)
        case_ids |= set(table["case_id"])
        assert len(table) > n_features + 1  # a per-case array could not hide among the shapes
    for node, message_type, reply in grid.sent:
        for record in reply.content.values():
            if isinstance(record, ArrayRecord):
                for name, array in record.items():
                    shape = array.numpy().shape
                    assert shape in allowed_shapes, f"{message_type} from {node}: {name} {shape}"
            if isinstance(record, ConfigRecord):
                assert not case_ids & {str(value) for value in record.values()}
                assert not any(case_id in repr(dict(record)) for case_id in case_ids)
    census = [reply.content["census"] for _, kind, reply in grid.sent if kind == "query.census"]
    small_site = next(record for record in census if record["site"] == "site02")
    test_counts = [value for key, value in small_site.items() if key.startswith("test.")]
    assert test_counts and all(value.startswith("<") for value in test_counts)


def test_site_with_wrong_extraction_hash_is_refused_by_name(tmp_path):
    tables = make_site_tables(tmp_path, STUDY)
    table, provenance = read_feature_table(tables["site02"])
    write_feature_table(table, tables["site02"], {**provenance, "extraction_hash": "0" * 16})
    results = _run(_grid(tables))
    status = {s["name"]: s for s in results["sites"]}
    assert status["site02"]["status"] == "refused"
    assert "extraction hash" in status["site02"]["reason"]
    assert status["site01"]["status"] == status["site03"]["status"] == "included"
    assert "site02" not in results["metrics"]["per_site"]


def test_site_dropping_out_mid_fit_is_named_and_fit_equals_pooled_without_it(tmp_path):
    from fedrad.simulations.pooled import pooled_reference

    tables = make_site_tables(tmp_path, STUDY)
    grid = _grid(tables)
    grid.drop_after[102] = 3  # census, moments, first Newton step, then silence
    results = _run(grid)
    status = {s["name"]: s for s in results["sites"]}
    assert status["site02"]["status"] == "dropped"
    assert "no reply" in status["site02"]["reason"]
    remaining = {name: path for name, path in tables.items() if name != "site02"}
    reference = pooled_reference(remaining, features_of(tables), STUDY)
    assert np.max(np.abs(_beta(results) - np.array(reference["coefficients"]))) <= 1e-10


@pytest.mark.parametrize("corruption", ["nan", "shape"])
def test_malformed_update_sets_the_site_aside(tmp_path, corruption):
    tables = make_site_tables(tmp_path, STUDY)
    grid = _grid(tables)

    def tamper(node: int, reply: Message) -> Message:
        if node == 103 and "terms" in reply.content:
            gradient = reply.content["terms"]["gradient"].numpy()
            bad = np.append(gradient, 1.0) if corruption == "shape" else gradient * np.nan
            reply.content["terms"]["gradient"] = Array(bad)
        return reply

    grid.tamper = tamper
    results = _run(grid)
    status = {s["name"]: s for s in results["sites"]}
    assert status["site03"]["status"] == "dropped"
    expected = "non-finite" if corruption == "nan" else "malformed"
    assert expected in status["site03"]["reason"]
    assert results["model"]["converged"]


def test_site_below_min_cell_size_contributes_nothing(tmp_path):
    study = StudyConfig(federation=FederationSettings(min_cell_size=10, ridge_lambda=0.5))
    tables = make_site_tables(tmp_path, study, sizes=(60, 12, 80))
    grid = _grid(tables, study)
    results = _run(grid, study)
    phases = {
        kind for node, kind, reply in grid.sent if node == 102 and "skipped" not in reply.content
    }
    assert phases == {"query.census"}
    assert results["metrics"]["per_site"]["site02"]["status"] == "skipped"
