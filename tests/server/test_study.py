"""Study-level behaviour: ComBat inside the pipeline, leakage, external tables, comparisons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA

from fedrad.client.data import SiteData
from fedrad.common.config import ConfigError, FederationSettings, StudyConfig
from fedrad.common.feature_table import read_feature_table, write_feature_table
from fedrad.common.harmonization.combat import combat, covariate_matrix
from fedrad.common.pipeline import Partition
from fedrad.server.study import StudyProtocol
from fedrad.simulations.compare import compare
from fedrad.simulations.feature_tables import split_feature_table
from fedrad.simulations.in_process import in_process_transport
from fedrad.simulations.pooled import pooled_reference
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3, histogram_bins=200),
    validation={"scheme": "holdout"},
)


def _run(tables, study=STUDY) -> dict:
    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    return StudyProtocol(in_process_transport(sites, study), study, log=lambda _: None).run()


def test_sites_keep_harmonized_tables_equal_to_centralized_combat(tmp_path):
    tables = write_site_feature_tables(tmp_path, STUDY, site_shift=3.0)
    _run(tables)
    sites = [SiteData.load(path, name, STUDY) for name, path in tables.items()]
    features = sites[0].features
    train = [site.rows(Partition("holdout"), "train", STUDY) for site in sites]
    y = np.vstack([site.columns(features)[rows] for site, rows in zip(sites, train, strict=True)])
    batch = np.concatenate([site.batch[rows] for site, rows in zip(sites, train, strict=True)])
    expected, _ = combat(y, batch)
    kept = []
    for site, rows in zip(sites, train, strict=True):
        table, provenance = read_feature_table(tables[site.name].parent / "harmonized.parquet")
        assert provenance["harmonized"] is True
        kept.append(table[features].to_numpy()[rows])
    assert np.max(np.abs(np.vstack(kept) - expected)) <= 1e-10 * np.max(np.abs(y))


def test_site_centroids_on_pooled_principal_axes_equal_pca_of_the_pooled_cases(tmp_path):
    tables = write_site_feature_tables(tmp_path, STUDY, site_shift=3.0)
    results = _run(tables)
    found = results["harmonization"]["centroids"]
    sites = [SiteData.load(path, name, STUDY) for name, path in tables.items()]
    names = results["selection"]["principal_axes"]["features"]
    train = [site.rows(Partition("holdout"), "train", STUDY) for site in sites]
    raw = np.vstack(
        [site.columns(sites[0].features)[rows] for site, rows in zip(sites, train, strict=True)]
    )
    batch = np.concatenate([site.batch[rows] for site, rows in zip(sites, train, strict=True)])
    harmonized, _ = combat(raw, batch)
    columns = [sites[0].features.index(name) for name in names]
    raw, harmonized = raw[:, columns], harmonized[:, columns]
    mean, sd = harmonized.mean(axis=0), harmonized.std(axis=0, ddof=1)
    pca = PCA(n_components=2).fit((harmonized - mean) / sd)
    signs = np.sign(pca.components_[[0, 1], np.abs(pca.components_).argmax(axis=1)])
    for stage, values in (("before", raw), ("after", harmonized)):
        for b in sorted(set(batch)):
            expected = (((values[batch == b] - mean) / sd) @ pca.components_.T).mean(axis=0)
            assert np.max(np.abs(np.array(found[stage][str(b)]) - expected * signs)) <= 1e-9
    spread = {
        stage: np.abs(np.array(list(found[stage].values()))).max()
        for stage in found
        if stage != "explained"
    }
    assert spread["after"] < spread["before"] / 10  # ComBat takes the sites' locations out
    assert np.allclose(found["explained"], pca.explained_variance_ratio_)


def test_option_b_keeps_the_federated_fit_equal_to_pooled(tmp_path):
    study = STUDY.updated(
        harmonization={"preserve_diagnosis": True}, validation={"scheme": "kfold"}
    )
    tables = write_site_feature_tables(tmp_path, study, site_shift=2.0)
    federated, pooled = _run(tables, study), pooled_reference(tables, study)
    coefficients = federated["model"]["coefficients"]
    reference = pooled["model"]["coefficients"]
    assert max(abs(coefficients[k] - reference[k]) for k in coefficients) <= 1e-10
    ours, theirs = federated["metrics"]["federated"], pooled["metrics"]["federated"]
    assert abs(ours["auc"] - theirs["auc"]) <= ours["auc_error_bound"] + theirs["auc_error_bound"]
    assert ours["sensitivity"] == theirs["sensitivity"]


def test_shuffled_labels_give_chance_level_cross_validated_auc(tmp_path):
    """The whole pipeline (ComBat fit, screening, model, evaluation) inside every fold."""
    study = STUDY.updated(validation={"scheme": "kfold", "folds": 3})
    tables = write_site_feature_tables(tmp_path, study, site_shift=2.0)
    rng = np.random.default_rng(0)
    originals = {name: read_feature_table(path) for name, path in tables.items()}
    aucs = []
    for _ in range(12):
        for name, (table, provenance) in originals.items():
            shuffled = table.assign(label=rng.permutation(table["label"].to_numpy()))
            write_feature_table(shuffled, tables[name], provenance)
        aucs.append(_run(tables, study)["metrics"]["federated"]["auc"])
    standard_error = np.std(aucs, ddof=1) / np.sqrt(len(aucs))
    assert abs(np.mean(aucs) - 0.5) <= max(2 * standard_error, 0.03)
    for name, (table, provenance) in originals.items():
        write_feature_table(table, tables[name], provenance)
    assert _run(tables, study)["metrics"]["federated"]["auc"] > 0.75


def test_traffic_is_counted_per_site_and_request(tmp_path):
    study = STUDY.updated(model={"ridge_lambda": 1.0})  # a fit alone: a NEWTON per step
    tables = write_site_feature_tables(tmp_path, study)
    traffic = _run(tables, study)["traffic_bytes_from_sites"]
    assert set(traffic["newton"]) == {"site01", "site02", "site03"}
    assert all(size > 0 for size in traffic["newton"].values())
    # a site's Newton replies (gradient + Hessian) outweigh its census-free ComBat SSR reply
    assert traffic["newton"]["site01"] > traffic["combat-ssr"]["site01"]


def _csv(tmp_path, n=90, labels=("HGG", "BM")):
    rng = np.random.default_rng(5)
    y = rng.random(n) < 0.5
    table = pd.DataFrame(rng.normal(size=(n, 4)) + 1.2 * y[:, None], columns=list("abcd"))
    table["diagnostics_Versions_PyRadiomics"] = "3.1.4"
    table["dx"] = np.where(y, *labels)
    table["hospital"] = rng.choice(["A", "B", "C"], n)
    path = tmp_path / "table.csv"
    table.to_csv(path, index=False)
    return path, table


def test_external_table_split_by_site_column(tmp_path):
    path, table = _csv(tmp_path)
    tables = split_feature_table(path, "dx", tmp_path / "sites", STUDY, site_column="hospital")
    assert sorted(tables) == ["A", "B", "C"]
    part, _ = read_feature_table(tables["A"])
    assert list(part.columns) == ["case_id", "label", "a", "b", "c", "d"]
    assert len(part) == int((table["hospital"] == "A").sum())
    assert _run(tables)["metrics"]["federated"]["auc"] > 0.7


def test_external_table_split_into_stratified_sites_with_site_effects(tmp_path):
    path, table = _csv(tmp_path, labels=("1", "0"))
    tables = split_feature_table(
        path, "dx", tmp_path / "sites", STUDY, split_sites=3, site_effects=1.0
    )
    parts = [read_feature_table(p)[0] for p in tables.values()]
    assert sum(len(p) for p in parts) == len(table)
    shares = [np.mean(p["label"] == "HGG") for p in parts]
    assert max(shares) - min(shares) < 0.1
    means = np.array([p["a"].mean() for p in parts])
    assert np.ptp(means) > 0.3  # the added site effects are there


def test_external_table_with_unknown_labels_is_refused_by_name(tmp_path):
    path, _ = _csv(tmp_path, labels=("glioma", "met"))
    with pytest.raises(ConfigError, match="label column"):
        split_feature_table(path, "dx", tmp_path / "sites", STUDY, split_sites=2)
    with pytest.raises(ConfigError, match="'nope'"):
        split_feature_table(path, "nope", tmp_path / "sites", STUDY, split_sites=2)


def test_compare_reports_agreement_and_every_arm(tmp_path):
    tables = write_site_feature_tables(tmp_path, STUDY, site_shift=2.0)
    results = _run(tables)
    reference = pooled_reference(tables, STUDY)
    results["metrics"]["pooled_reference"] = reference["metrics"]["federated"] | {
        "model": reference["model"]
    }
    comparison = compare(results, tables, STUDY)
    check = comparison["federated_vs_pooled"]
    assert check["max_coefficient_difference"] <= 1e-10
    assert check["within_certified_bound"]
    assert set(comparison["on_unseen_sites"]) == {
        "federated + ComBat",
        "federated, no harmonization",
        "each site alone + ComBat",
        "each site alone, no harmonization",
        "federated + ComBat, differential privacy",
    }
    for figures in comparison["on_unseen_sites"].values():
        assert 0.0 <= figures["auc"] <= 1.0
    arms, worth = comparison["on_unseen_sites"], comparison["worth"]
    best = arms["federated + ComBat"]["balanced_accuracy"]
    assert worth["federation"]["balanced_accuracy"] == pytest.approx(
        best - arms["each site alone + ComBat"]["balanced_accuracy"], abs=1e-15
    )
    noised = arms["federated + ComBat, differential privacy"]
    assert noised["epsilon"] > 0 and "epsilon" not in arms["federated + ComBat"]
    assert worth["differential privacy"]["auc"] == pytest.approx(
        noised["auc"] - arms["federated + ComBat"]["auc"], abs=1e-15
    )


def test_lasso_with_federated_inner_cv_equals_the_pooled_fit(tmp_path):
    study = STUDY.updated(
        model={"kind": "lasso-logistic", "lasso_path_length": 8}, selection={"screen": "none"}
    )
    tables = write_site_feature_tables(tmp_path, study, n_features=12, signal_strength=1.0)
    federated, pooled = _run(tables, study), pooled_reference(tables, study)
    model, reference = federated["model"], pooled["model"]
    assert model["lasso_lambda"] == pytest.approx(reference["lasso_lambda"], rel=1e-12)
    assert model["cross_validation"]["lambdas"][0] > model["lasso_lambda"]
    assert (
        max(
            abs(model["coefficients"][k] - reference["coefficients"][k])
            for k in model["coefficients"]
        )
        <= 1e-9
    )
    assert federated["metrics"]["federated"]["auc"] > 0.7


def test_combat_with_clinical_covariates_equals_centralized_combat(tmp_path):
    study = STUDY.updated(
        clinical={"age": None, "sex": ["F", "M"]}, harmonization={"covariates": ["age", "sex"]}
    )
    tables = write_site_feature_tables(tmp_path, study, site_shift=3.0, clinical=True)
    federated, pooled = _run(tables, study), pooled_reference(tables, study)
    coefficients, reference = federated["model"]["coefficients"], pooled["model"]["coefficients"]
    assert max(abs(coefficients[k] - reference[k]) for k in coefficients) <= 1e-10

    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    features = sites[0].features
    assert not any(name.startswith("clinical_") for name in features)
    train = [site.rows(Partition("holdout"), "train", study) for site in sites]
    y = np.vstack([s.columns(features)[rows] for s, rows in zip(sites, train, strict=True)])
    batch = np.concatenate([s.batch[rows] for s, rows in zip(sites, train, strict=True)])
    age = np.concatenate([s.clinical["age"][rows] for s, rows in zip(sites, train, strict=True)])
    sex = np.concatenate([s.clinical["sex"][rows] for s, rows in zip(sites, train, strict=True)])
    x = covariate_matrix({"sex": sex}, {"age": age}, {"sex": ["F", "M"]})
    expected, _ = combat(y, batch, x)
    kept = []
    for site, rows in zip(sites, train, strict=True):
        table, _ = read_feature_table(tables[site.name].parent / "harmonized.parquet")
        kept.append(table[features].to_numpy()[rows])
    assert np.max(np.abs(np.vstack(kept) - expected)) <= 1e-10 * np.max(np.abs(y))


def test_site_without_a_required_covariate_is_left_out_by_name(tmp_path):
    study = STUDY.updated(clinical={"age": None}, harmonization={"covariates": ["age"]})
    tables = write_site_feature_tables(tmp_path, study, clinical=True)
    table, provenance = read_feature_table(tables["site02"])
    write_feature_table(table.drop(columns=["clinical_age"]), tables["site02"], provenance)
    results = _run(tables, study)
    assert "lacks clinical variable(s) ['age']" in results["selection"]["excluded_sites"]["site02"]
    assert results["model"]["training_sites"] == ["site01", "site03"]
