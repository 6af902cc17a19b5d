"""The study protocol over Flower messages (in-process grid): exact, private and robust."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_study, site_grid
from flwr.app import Array, ArrayRecord, ConfigRecord, Message

from fedrad.client.data import SiteData
from fedrad.common.config import FederationSettings, StudyConfig, extractor_versions
from fedrad.common.feature_table import read_feature_table, write_feature_table
from fedrad.common.pipeline import Partition
from fedrad.simulations.pooled import pooled_reference
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(  # a fixed penalty: the tuned one's protocol is test_recalibration.py's
    federation=FederationSettings(min_cell_size=3),
    validation={"scheme": "holdout"},
    model={"ridge_lambda": 1.0},
)


def _max_difference(a: dict, b: dict) -> float:
    assert list(a) == list(b)
    return max(abs(a[name] - b[name]) for name in a)


@pytest.mark.parametrize("scheme", ["holdout", "kfold"])
def test_federated_study_equals_the_pooled_study(tmp_path, scheme):
    study = STUDY.updated(validation={"scheme": scheme, "folds": 3})
    tables = write_site_feature_tables(tmp_path, study)
    results = run_study(site_grid(tables, study), study)
    reference = pooled_reference(tables, study)

    assert [s["status"] for s in results["sites"]] == ["included"] * 3
    model, pooled_model = results["model"], reference["model"]
    assert model["iterations"] == pooled_model["iterations"]
    assert abs(model["intercept"] - pooled_model["intercept"]) <= 1e-10
    assert _max_difference(model["coefficients"], pooled_model["coefficients"]) <= 1e-10
    assert results["selection"]["kept"] == reference["selection"]["kept"]
    federated, pooled = results["metrics"]["federated"], reference["metrics"]["federated"]
    for key in ("sensitivity", "specificity", "balanced_accuracy"):
        assert federated[key] == pytest.approx(pooled[key], abs=1e-12)
    # Sites send k-merged score blocks, the central analysis every score: the federated AUC
    # is certified to lie within its bound of the exact AUC of the same model.
    assert pooled["auc_error_bound"] < 1e-3
    assert (
        abs(federated["auc"] - pooled["auc"])
        <= federated["auc_error_bound"] + pooled["auc_error_bound"]
    )
    assert federated["auc"] > 0.7
    for key in ("intercept", "slope"):
        assert federated["calibration"][key] == pytest.approx(pooled["calibration"][key], abs=1e-10)
    assert federated["calibration"]["slope"] > 0
    fits = results["validation"]["fits"]
    assert len(fits) == (1 if scheme == "holdout" else 3)
    assert sum(fit["n_positive"] + fit["n_negative"] for fit in fits) == (
        federated["n_positive"] + federated["n_negative"]
    )


def test_harmonization_removes_the_site_effect(tmp_path):
    tables = write_site_feature_tables(tmp_path, STUDY, site_shift=2.0)
    results = run_study(site_grid(tables, STUDY), STUDY)
    effect = results["harmonization"]
    assert effect["before"]["share_of_features_with_site_effect_p_lt_0.05"] == 1.0
    assert effect["after"]["median_f"] < 0.01 * effect["before"]["median_f"]
    for name, path in tables.items():
        harmonized, _ = read_feature_table(path.parent / "harmonized.parquet")
        raw, _ = read_feature_table(path)
        assert list(harmonized.columns) == list(raw.columns)
        assert (path.parent / "combat_estimates.npz").exists(), name


def test_leave_one_site_out_harmonizes_the_held_out_site_label_free(tmp_path):
    study = STUDY.updated(validation={"scheme": "leave-one-site-out"})
    tables = write_site_feature_tables(tmp_path, study, site_shift=2.0)
    results = run_study(site_grid(tables, study), study)
    fits = results["validation"]["fits"]
    assert [fit["fit"] for fit in fits] == [f"held-out site0{i}" for i in (1, 2, 3)]
    for fit in fits:
        held_out = fit["fit"].removeprefix("held-out ")
        assert held_out not in fit["training_sites"] and len(fit["training_sites"]) == 2
        assert results["metrics"]["per_site"][held_out]["auc"] > 0.7
    assert results["model"]["training_sites"] == ["site01", "site02", "site03"]


def test_nothing_per_case_leaves_a_site(tmp_path):
    tables = write_site_feature_tables(tmp_path, STUDY, sizes=(41, 13, 53))
    grid = site_grid(tables, STUDY)
    run_study(grid, STUDY)
    case_ids, case_counts = set(), set()
    for name, path in tables.items():
        site = SiteData.load(path, name, STUDY)
        case_ids |= set(site.case_ids)
        test = site.rows(Partition("holdout"), "test", STUDY)
        case_counts |= {len(test), int(test.sum()), int((~test).sum())}
    protocol_sizes = {1, 3, 6, 7, 10, 1000}  # batches, features, parameters, bins
    assert not case_counts & protocol_sizes, "test precondition: pick other cohort sizes"
    k = STUDY.federation.min_cell_size
    for node, message_type, reply in grid.sent:
        for record in reply.content.values():
            if isinstance(record, ArrayRecord):
                arrays = {name: array.numpy() for name, array in record.items()}
                if "blocks_positives" in arrays:  # score blocks: each holds >= k cases
                    assert np.all(arrays["blocks_positives"] + arrays["blocks_negatives"] >= k)
                for name, values in arrays.items():
                    if not name.startswith("blocks_"):
                        shape = values.shape
                        assert not set(shape) & case_counts, f"{message_type} from {node}: {name}"
            if isinstance(record, ConfigRecord):
                assert not any(case_id in repr(dict(record)) for case_id in case_ids)


def test_site_with_wrong_extraction_hash_is_refused_by_name(tmp_path):
    tables = write_site_feature_tables(tmp_path, STUDY)
    table, provenance = read_feature_table(tables["site02"])
    write_feature_table(table, tables["site02"], {**provenance, "extraction_hash": "0" * 16})
    results = run_study(site_grid(tables, STUDY), STUDY)
    status = {s["name"]: s for s in results["sites"]}
    assert status["site02"]["status"] == "refused"
    assert "extraction hash" in status["site02"]["reason"]
    assert status["site01"]["status"] == status["site03"]["status"] == "included"
    assert "site02" not in results["metrics"]["per_site"]


def test_site_on_another_numpy_release_is_told_which_library_differs(tmp_path):
    tables = write_site_feature_tables(tmp_path, STUDY)
    table, provenance = read_feature_table(tables["site02"])
    stale = {**provenance, **extractor_versions(), "numpy": "1.26.4", "extraction_hash": "1" * 16}
    write_feature_table(table, tables["site02"], stale)
    status = {s["name"]: s for s in run_study(site_grid(tables, STUDY), STUDY)["sites"]}
    assert status["site02"]["status"] == "refused"
    reason = status["site02"]["reason"]
    assert f"numpy 1.26.4 (study: {extractor_versions()['numpy']})" in reason
    assert "SimpleITK" not in reason and "pyradiomics" not in reason


def test_site_dropping_out_mid_fit_is_named_and_the_fit_equals_pooled_without_it(tmp_path):
    tables = write_site_feature_tables(tmp_path, STUDY)
    grid = site_grid(tables, STUDY)
    grid.drop_after[2] = 4  # census, ComBat sums, SSR, screening; then silence
    results = run_study(grid, STUDY)
    status = {s["name"]: s for s in results["sites"]}
    assert status["site02"]["status"] == "dropped"
    assert "no reply" in status["site02"]["reason"]
    remaining = {name: path for name, path in tables.items() if name != "site02"}
    reference = pooled_reference(remaining, STUDY)
    assert results["model"]["training_sites"] == ["site01", "site03"]
    difference = _max_difference(
        results["model"]["coefficients"], reference["model"]["coefficients"]
    )
    assert difference <= 1e-10


@pytest.mark.parametrize("corruption", ["nan", "shape"])
def test_malformed_update_sets_the_site_aside(tmp_path, corruption):
    study = STUDY.updated(federation={"secure_aggregation": False})  # values in the clear
    tables = write_site_feature_tables(tmp_path, study)
    grid = site_grid(tables, study)

    def tamper(node: int, reply: Message) -> Message:
        arrays = reply.content["arrays"]
        if node == 3 and "gradient" in arrays:
            gradient = arrays["gradient"].numpy()
            bad = np.append(gradient, 1.0) if corruption == "shape" else gradient * np.nan
            arrays["gradient"] = Array(bad)
        return reply

    grid.tamper = tamper
    results = run_study(grid, study)
    status = {s["name"]: s for s in results["sites"]}
    assert status["site03"]["status"] == "dropped"
    assert ("non-finite" if corruption == "nan" else "malformed") in status["site03"]["reason"]
    assert results["model"]["converged"]
    assert results["model"]["training_sites"] == ["site01", "site02"]


@pytest.mark.parametrize("corruption", ["length", "floats"])
def test_malformed_masked_words_set_the_site_aside(tmp_path, corruption):
    tables = write_site_feature_tables(tmp_path, STUDY)
    grid = site_grid(tables, STUDY)

    def tamper(node: int, reply: Message) -> Message:
        arrays = reply.content["arrays"]
        if node == 3 and "words" in arrays and reply.metadata.message_type == "train.newton":
            words = arrays["words"].numpy()
            bad = np.append(words, words[:1]) if corruption == "length" else words.astype(float)
            arrays["words"] = Array(bad)
        return reply

    grid.tamper = tamper
    results = run_study(grid, STUDY)
    status = {s["name"]: s for s in results["sites"]}
    assert status["site03"]["status"] == "dropped"
    assert "malformed" in status["site03"]["reason"]
    assert results["model"]["converged"]
    assert results["model"]["training_sites"] == ["site01", "site02"]


def test_site_below_min_cell_size_contributes_nothing(tmp_path):
    study = STUDY.updated(federation={"min_cell_size": 10})
    tables = write_site_feature_tables(tmp_path, study, sizes=(60, 12, 80))
    grid = site_grid(tables, study)
    results = run_study(grid, study)
    answered = {
        kind for node, kind, r in grid.sent if node == 2 and "skipped" not in r.content["values"]
    }
    keys = {"query.secagg_keys", "query.secagg_peers"}  # key material: no data of its cases
    assert answered <= {"query.census", "query.persist", *keys}
    assert results["metrics"]["per_site"]["site02"]["status"] == "skipped"
    assert "site02" in results["selection"]["excluded_sites"]
    census = next(
        r.content["values"] for n, kind, r in grid.sent if n == 2 and kind == "query.census"
    )
    counts = list(census["cases"])
    assert "<10" in counts and all(value == "<10" or int(value) >= 10 for value in counts)


def test_a_site_missing_a_sequence_shrinks_the_study_to_shared_features(tmp_path):
    tables = write_site_feature_tables(tmp_path, STUDY, n_features=6)
    table, provenance = read_feature_table(tables["site02"])
    renamed = {c: c.replace("t1c_", "flair_") for c in table.columns if c.endswith(("F4", "F5"))}
    for name in ("site01", "site03"):
        other, other_provenance = read_feature_table(tables[name])
        write_feature_table(
            other.assign(**{new: other[old] for old, new in renamed.items()}),
            tables[name],
            other_provenance,
        )
    results = run_study(site_grid(tables, STUDY), STUDY)
    assert all(site["status"] == "included" for site in results["sites"])
    used = set(results["selection"]["kept"])
    assert not any(name.startswith("flair_") for name in used)


@pytest.mark.parametrize("secure", [True, False])
def test_the_model_keeps_its_parameters_within_the_ratio_of_the_cases_its_sums_cover(
    tmp_path, secure
):
    study = STUDY.updated(
        federation={"secure_aggregation": secure}, validation={"scheme": "kfold", "folds": 3}
    )
    sizes = (40, 30, 50)
    tables = write_site_feature_tables(tmp_path, study, sizes=sizes, n_features=30)
    results = run_study(site_grid(tables, study), study)
    assert results["model"]["training_sites"] == ["site01", "site02", "site03"]
    # the final fit trains on every case: its sums leave as one total, or per site alone
    covered = sum(sizes) if secure else min(sizes)
    parameters = len(results["model"]["coefficients"]) + 1
    assert parameters <= 0.33 * covered
    assert len(results["model"]["coefficients"]) < 20 or secure


def test_a_study_waits_for_its_sites_as_long_as_its_round_timeout(tmp_path):
    from fedrad.server.federation import GridTransport, StudyCannotRun
    from fedrad.server.study import StudyProtocol

    study = STUDY.updated(federation={"min_sites": 4, "round_timeout_s": 0.3})
    waited = []

    class Counting(GridTransport):
        def wait_for_nodes(self, expected, timeout_s):
            waited.append(timeout_s)
            return super().wait_for_nodes(expected, timeout_s)

    grid = site_grid(write_site_feature_tables(tmp_path, study), study)
    with pytest.raises(StudyCannotRun, match="only 3 site"):
        StudyProtocol(Counting(grid, 60), study, log=lambda _: None).run()
    assert waited == [0.3]
