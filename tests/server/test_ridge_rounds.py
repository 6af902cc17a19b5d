"""Ridge logistic regression in few rounds: the k folds' and the final fit's Newton
iterations share LASSO_ROUND messages, and every fit is the very fit it is alone."""

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
)


def _run(tables, monkeypatch, alone: bool):
    """The study's results and every fit's coefficients, in fit order (folds, final);
    `alone`: every fit runs one at a time, as ridge fits did before they shared rounds."""
    with monkeypatch.context() as patch:
        if alone:
            patch.setattr("fedrad.server.study.STEPPED", ("lasso-logistic",))
        sites = [SiteData.load(path, name, STUDY) for name, path in tables.items()]
        protocol = StudyProtocol(
            in_process_transport(sites, STUDY), STUDY, len(sites), log=lambda _: None
        )
        betas = []
        fitted = protocol._fitted

        def recording(params, *args):
            betas.append(params.beta)
            return fitted(params, *args)

        patch.setattr(protocol, "_fitted", recording)
        return protocol.run(), betas


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tables = write_site_feature_tables(tmp_path_factory.mktemp("ridge"), STUDY)
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _run(tables, monkeypatch, alone=False), _run(tables, monkeypatch, alone=True)


def test_the_k_folds_ridge_fits_share_their_newton_rounds_and_each_equals_its_fit_alone(runs):
    (together, betas), (alone, alone_betas) = runs
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
