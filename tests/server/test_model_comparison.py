"""Model kinds compared under one validation (`model.compare`): each kind fitted on the same
folds with the same harmonization and selection, and DeLong's test of each pair from the
summed joint score histograms equal to DeLong on the pooled binned scores of the same fits."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import RecordDict
from rich.console import Console

from fedrad.client.data import SiteData
from fedrad.client.handlers import handle
from fedrad.client.local_pipeline import model_inputs, predict
from fedrad.common.config import JOINT_BINS, ConfigError, StudyConfig
from fedrad.common.messages import REFUSED, SKIPPED, Kind, Request
from fedrad.common.stats.delong import pooled_delong, site_joint
from fedrad.common.stats.metrics import histogram_auc, score_histograms
from fedrad.server.report.card import card_html
from fedrad.server.report.text import print_results
from fedrad.server.study import StudyProtocol
from fedrad.simulations.in_process import in_process_transport
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig().updated(
    federation={"min_cell_size": 3},
    model={
        "ridge_lambda": 1.0,
        "lasso_lambda": 0.05,
        "compare": ["lasso-logistic", "mlp"],
        "rounds": 5,
    },
    validation={"scheme": "kfold", "folds": 3},
)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """The study run under secure aggregation, its sites, and the fits of every kind."""
    tables = write_site_feature_tables(tmp_path_factory.mktemp("compare"), STUDY)
    sites = [SiteData.load(path, name, STUDY) for name, path in tables.items()]
    protocol = StudyProtocol(
        in_process_transport(sites, STUDY), STUDY, len(sites), log=lambda _: None
    )
    results = protocol.run()
    return results, sites, protocol.arms


def _pooled_scores(sites, study, fits):
    """Outcomes and scores of every fold's test cases, pooled over the sites."""
    y, scores = [], []
    for site in sites:
        for fitted, partitions in fits:
            partition = partitions[1 + sites.index(site)]
            rows = site.rows(partition, "test", study)
            y.append(site.y[rows])
            scores.append(
                predict(fitted.params, model_inputs(site, fitted.params, partition, rows, study))
            )
    return np.concatenate(y), np.concatenate(scores)


def test_delong_from_summed_joint_histograms_is_delong_on_the_pooled_binned_scores(compared):
    results, sites, arms = compared
    scores = {}
    for kind in STUDY.model_kinds:
        y, scores[kind] = _pooled_scores(sites, STUDY, arms[kind])
    pairs = results["model_comparison"]["pairs"]
    assert [(p["a"], p["b"]) for p in pairs] == [
        ("ridge-logistic", "lasso-logistic"),
        ("ridge-logistic", "mlp"),
        ("lasso-logistic", "mlp"),
    ]
    for pair in pairs:
        expected = pooled_delong(site_joint(y, scores[pair["a"]], scores[pair["b"]], JOINT_BINS))
        assert pair["n_positive"] + pair["n_negative"] == len(y)
        for key, value in (
            ("auc_a", expected.auc_a),
            ("auc_b", expected.auc_b),
            ("difference", expected.difference),
            ("standard_error", expected.standard_error),
            ("p_value", expected.p_value),
            ("z", expected.difference / expected.standard_error),
        ):
            assert abs(pair[key] - value) <= 1e-12, (pair["a"], pair["b"], key)
        assert np.allclose(pair["difference_ci"], expected.confidence_interval(), atol=1e-12)
        assert expected.standard_error > 0 and 0 < expected.p_value < 1  # not degenerate
    # each kind's table row is its own pooled evaluation on the study's score grid
    for kind in STUDY.model_kinds:
        auc = histogram_auc(*score_histograms(y, scores[kind], STUDY.score_bins)).auc
        assert abs(results["model_comparison"]["kinds"][kind]["auc"] - auc) <= 1e-12
    assert results["model_comparison"]["kinds"]["ridge-logistic"]["auc"] == pytest.approx(
        results["metrics"]["federated"]["auc"], abs=1e-12
    )


def test_every_kind_is_fitted_on_the_same_folds_harmonization_and_selection(compared):
    _, _, arms = compared
    for ridge, lasso, mlp in zip(*(arms[kind] for kind in STUDY.model_kinds), strict=True):
        for (fitted, partitions), name in ((lasso, "lasso"), (mlp, "mlp")):
            assert partitions == ridge[1], name
            assert np.array_equal(fitted.params.selected, ridge[0].params.selected), name
            scaler = fitted.params.standardizer
            assert np.array_equal(scaler.mean, ridge[0].params.standardizer.mean), name
        assert not np.allclose(ridge[0].params.beta, lasso[0].params.beta)  # two models
        assert mlp[0].params.network is not None and mlp[0].params.beta is None


def test_the_report_and_the_terminal_show_the_comparison(compared):
    results, _, _ = compared
    page = card_html(results, plotly_src="plotly.js")
    assert "id='models-compared'" in page
    assert "lasso-logistic" in page and "DeLong" in page
    console = Console(record=True, width=1000)
    print_results(results, console)
    line = next(t for t in console.export_text().splitlines() if t.startswith("models compared"))
    p_value = results["model_comparison"]["pairs"][0]["p_value"]
    assert "ridge-logistic vs lasso-logistic" in line and f"p = {p_value:.3g}" in line
    assert "lasso-logistic vs mlp" in line


def test_compare_is_off_by_default_and_refuses_what_it_cannot_compare():
    # an unset option leaves every earlier study's hash as it was; a set one changes it
    assert StudyConfig().updated(model={"compare": []}).study_hash == StudyConfig().study_hash
    assert STUDY.updated(model={"compare": []}).study_hash != STUDY.study_hash
    with pytest.raises((ConfigError, ValueError), match="model.compare"):
        StudyConfig().updated(model={"compare": ["ridge-logistic"]})  # the study's own kind
    with pytest.raises((ConfigError, ValueError), match="model.compare"):
        STUDY.updated(differential_privacy={})
    with pytest.raises((ConfigError, ValueError), match="model.compare"):
        STUDY.updated(federation={"histogram_bins": 150})


def _joint_request(fits_a, fits_b, a, b, node=1):
    parts = []
    for (fitted_a, partitions), (fitted_b, _) in zip(fits_a, fits_b, strict=True):
        parts.append(Request(fitted_a.params, partitions[node], values={"model": a}))
        parts.append(Request(fitted_b.params, partitions[node], values={"model": b}))
    return Request(parts=parts)


def _scored(site, study, fits, state):
    """The site answers SCORES for `fits` (so it has evaluated them)."""
    parts = [
        Request(f.params, partitions[1], values={"threshold": f.threshold})
        for f, partitions in fits
    ]
    reply = handle(Kind.SCORES, site, study, Request(parts=parts), state=state)
    assert REFUSED not in reply.values and SKIPPED not in reply.values


def test_a_site_answers_joint_scores_only_for_kinds_of_its_study_and_fits_it_scored(compared):
    _, sites, arms = compared
    site = sites[0]
    clear = STUDY.updated(federation={"secure_aggregation": False})
    ridge, lasso = arms["ridge-logistic"], arms["lasso-logistic"]
    state = RecordDict()
    asked = _joint_request(ridge, lasso, "ridge-logistic", "lasso-logistic")
    # not yet scored: a curious aggregator's cross-tabulation of models it never evaluated
    assert handle(Kind.JOINT_SCORES, site, clear, asked, state=state).values[REFUSED] == (
        "pipeline-not-evaluated"
    )
    _scored(site, clear, ridge, state)
    _scored(site, clear, lasso, state)
    answered = handle(Kind.JOINT_SCORES, site, clear, asked, state=state)
    assert answered.arrays["positives"].shape == (JOINT_BINS, JOINT_BINS)
    again = handle(Kind.JOINT_SCORES, site, clear, asked, state=state)  # a retry: answered
    assert np.array_equal(again.arrays["positives"], answered.arrays["positives"])
    # one joint histogram per pair of kinds: another cross-tabulation of the pair is refused
    other = _joint_request(lasso, ridge, "lasso-logistic", "ridge-logistic")
    assert handle(Kind.JOINT_SCORES, site, clear, other, state=state).values[REFUSED] == (
        "requests-per-fit-exceeded"
    )
    # a kind the site's own study does not list is refused, whatever it has scored
    alone = clear.updated(model={"compare": []})
    assert handle(Kind.JOINT_SCORES, site, alone, asked, state=state).values[REFUSED] == (
        "kind-outside-plan"
    )
    two = clear.updated(model={"compare": ["lasso-logistic"]})  # ridge and L1 only
    mlp = _joint_request(ridge, arms["mlp"], "ridge-logistic", "mlp")
    assert handle(Kind.JOINT_SCORES, site, two, mlp, state=state).values[REFUSED] == (
        "kind-outside-plan"
    )


def test_the_model_without_its_clinical_inputs_is_compared_on_the_same_radiomics(tmp_path):
    study = StudyConfig().updated(
        federation={"min_cell_size": 3},
        clinical={"age": None, "sex": ["F", "M"]},
        harmonization={"method": "none"},
        model={
            "ridge_lambda": 1.0,
            "clinical_inputs": ["sex", "age"],
            "compare_without_clinical": True,
        },
        validation={"scheme": "kfold", "folds": 3},
    )
    tables = write_site_feature_tables(tmp_path, study, clinical=True)
    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    protocol = StudyProtocol(
        in_process_transport(sites, study), study, len(sites), log=lambda _: None
    )
    results = protocol.run()
    without = "ridge-logistic without clinical inputs"
    assert list(results["model_comparison"]["kinds"]) == ["ridge-logistic", without]
    for (full, _), (bare, _) in zip(*protocol.arms.values(), strict=True):
        assert full.params.clinical_inputs and not bare.params.clinical_inputs
        assert np.array_equal(full.params.selected, bare.params.selected)
        width = len(bare.params.model_features)
        assert np.array_equal(full.params.standardizer.mean[:width], bare.params.standardizer.mean)
    y, with_clinical = _pooled_scores(sites, study, protocol.arms["ridge-logistic"])
    _, radiomics_only = _pooled_scores(sites, study, protocol.arms[without])
    expected = pooled_delong(site_joint(y, with_clinical, radiomics_only, JOINT_BINS))
    (pair,) = results["model_comparison"]["pairs"]
    assert abs(pair["p_value"] - expected.p_value) <= 1e-12
    assert abs(pair["difference"] - expected.difference) <= 1e-12
    # a site whose study does not compare it refuses the model without clinical inputs
    asked = _joint_request(
        protocol.arms["ridge-logistic"], protocol.arms[without], "ridge-logistic", without
    )
    alone = study.updated(model={"compare_without_clinical": False})
    assert handle(Kind.JOINT_SCORES, sites[0], alone, asked).values[REFUSED] == "kind-outside-plan"
