"""Ridge logistic regression in few rounds: the k folds' and the final fit's Newton
iterations (and, with a tuned penalty, every inner fold's fit at every penalty) share
LASSO_ROUND messages, and every fit is the very fit it is alone."""

from __future__ import annotations

import numpy as np
import pytest

from fedrad.client.data import SiteData
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.messages import Kind
from fedrad.server.study import StudyProtocol
from fedrad.simulations.in_process import in_process_transport
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3),
    validation={"scheme": "kfold", "folds": 3},
    model={"ridge_lambda": 1.0},
)
TUNED = STUDY.updated(model={"ridge_lambda": None, "ridge_lambdas": [100.0, 10.0, 1.0]})


def _run(tables, monkeypatch, alone: bool, study=STUDY):
    """The study's results and every fit's coefficients, in fit order (folds, final);
    `alone`: every fit runs one at a time, as ridge fits did before they shared rounds."""
    with monkeypatch.context() as patch:
        if alone:
            patch.setattr("fedrad.server.study.STEPPED", ("lasso-logistic",))
        sites = [SiteData.load(path, name, study) for name, path in tables.items()]
        protocol = StudyProtocol(
            in_process_transport(sites, study), study, len(sites), log=lambda _: None
        )
        betas, rounds_at_end = [], []
        fitted = protocol._fitted

        def recording(params, *args):
            betas.append(params.beta)
            rounds_at_end.append(protocol.federation.transport.rounds[Kind.LASSO_ROUND])
            return fitted(params, *args)

        patch.setattr(protocol, "_fitted", recording)
        results = protocol.run()
        return results, betas, np.diff([0, *rounds_at_end]).tolist()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tables = write_site_feature_tables(tmp_path_factory.mktemp("ridge"), STUDY)
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _run(tables, monkeypatch, alone=False), _run(tables, monkeypatch, alone=True)


@pytest.fixture(scope="module")
def tuned_runs(tmp_path_factory):
    tables = write_site_feature_tables(tmp_path_factory.mktemp("tuned"), TUNED)
    with pytest.MonkeyPatch.context() as monkeypatch:
        return tuple(_run(tables, monkeypatch, alone, TUNED) for alone in (False, True))


def test_the_k_folds_ridge_fits_share_their_newton_rounds_and_each_equals_its_fit_alone(runs):
    (together, betas, _), (alone, alone_betas, _) = runs
    assert len(betas) == len(alone_betas) == STUDY.validation.folds + 1
    for beta, alone_beta in zip(betas, alone_betas, strict=True):
        np.testing.assert_allclose(beta, alone_beta, rtol=0, atol=1e-12)
    assert together["rounds"] == alone["rounds"]  # every iteration's deviance, in fit order
    assert together["model"]["coefficients"] == pytest.approx(
        alone["model"]["coefficients"], rel=0, abs=1e-12
    )

    iterations = [record["iteration"] for record in together["rounds"]]
    per_fit = [i for i, next_i in zip(iterations, [*iterations[1:], 1], strict=True) if next_i == 1]
    assert len(per_fit) == STUDY.validation.folds + 1
    counts, alone_counts = together["round_counts"], alone["round_counts"]
    assert Kind.NEWTON not in counts
    assert counts[Kind.LASSO_ROUND] == max(per_fit)  # the longest fit's iterations
    assert alone_counts[Kind.NEWTON] == sum(per_fit)


def test_tuned_ridge_fits_share_their_rounds_and_each_equals_its_fit_alone(tuned_runs):
    (together, betas, _), (alone, alone_betas, per_fit) = tuned_runs
    assert len(betas) == len(alone_betas) == TUNED.validation.folds + 1
    for beta, alone_beta in zip(betas, alone_betas, strict=True):
        np.testing.assert_allclose(beta, alone_beta, rtol=0, atol=1e-12)
    assert together["model"]["ridge_lambda"] == alone["model"]["ridge_lambda"]
    assert together["model"]["ridge_lambda"] in TUNED.model.ridge_lambdas
    # every fit's inner CV and final fit in the rounds of the longest fit, not their sum
    assert len(per_fit) == TUNED.validation.folds + 1 and min(per_fit) > 1
    assert together["round_counts"][Kind.LASSO_ROUND] == max(per_fit)
    assert alone["round_counts"][Kind.LASSO_ROUND] == sum(per_fit)
