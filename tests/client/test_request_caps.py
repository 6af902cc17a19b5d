"""A site answers a fit at no more coefficient vectors than its study lets the fit take:
an aggregator nudging beta to ask the same fit's sums again and again is refused past the
cap, through the real ClientApp, while asking the same vector again (a restart) is free."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import site_grid

from fedrad.client.data import SiteData
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.messages import REFUSED, Kind, Request, encode_request
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.stats.moments import Standardizer
from fedrad.server.federation import GridTransport
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3, secure_aggregation=False),
    harmonization={"method": "none"},
    validation={"scheme": "holdout"},
    model={"max_newton_iterations": 4},
)


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    (path,) = write_site_feature_tables(
        tmp_path_factory.mktemp("caps"), STUDY, sizes=(40,)
    ).values()
    return path


def _params(table: Path, beta: np.ndarray, scale: float = 2.0) -> PipelineParams:
    features = SiteData.load(table, "site01", STUDY).features
    return PipelineParams(
        features=features,
        selected=np.arange(3),
        standardizer=Standardizer(mean=np.full(3, 1000.0), scale=np.full(3, scale)),
        beta=beta,
    )


def _refusals(table: Path, params: list[PipelineParams]) -> list[str | None]:
    transport = GridTransport(site_grid({"site01": table}, STUDY), timeout_s=60)
    codes = []
    for pipeline in params:
        payload, _ = encode_request(Request(pipeline, Partition("holdout")), ())
        reply = transport.ask(Kind.NEWTON, {1: payload})[0][1]
        codes.append(reply.values.get(REFUSED))
    return codes


def test_a_fit_nudged_past_its_newton_iterations_is_refused(table):
    base = np.array([0.1, 0.2, -0.1, 0.05])
    nudged = [_params(table, base + i * 1e-15) for i in range(6)]
    assert _refusals(table, nudged) == [None] * 4 + ["requests-per-fit-exceeded"] * 2


def test_the_same_coefficients_asked_again_cost_nothing_and_other_fits_have_their_own_cap(table):
    base = np.array([0.1, 0.2, -0.1, 0.05])
    again = [_params(table, base)] * 6
    other_fit = [_params(table, base + i, scale=3.0) for i in range(4)]
    assert _refusals(table, again + other_fit) == [None] * 10


# -- what the caps do not stop (docs/privacy.md 7) --------------------------------------------
def test_half_space_coefficients_read_a_row_and_a_nudged_scaler_opens_a_new_cap_a_gap(table):
    """Coefficients within the bounds, beta = M (-t, u) with M = 1e4 on inputs scaled by the
    pooled means (about 1000 here) and 1, make p a step at the plane u'x = t: the gradient
    X'(y - p) at two thresholds differs by the rows between them, so a threshold with one
    case above it reads that case's row. Each threshold is a new coefficient vector; past a
    fit's cap, a scaler nudged by 1e-12 makes a new fit."""
    data = SiteData.load(table, "site01", STUDY)
    rows = data.columns(data.features)[data.rows(Partition("holdout"), "train", STUDY), :3]
    transport = GridTransport(site_grid({"site01": table}, STUDY), timeout_s=60)
    asked = []

    def gradient(t: float) -> np.ndarray:
        fit = len(asked) // STUDY.model.max_newton_iterations  # a fresh cap every 4 asks
        params = PipelineParams(
            features=data.features,
            selected=np.arange(3),
            standardizer=Standardizer(mean=np.full(3, 1000.0 + fit * 1e-12), scale=np.ones(3)),
            beta=1e4 * np.array([-t, 1.0, 0.0, 0.0]),
        )
        payload, _ = encode_request(Request(params, Partition("holdout")), ())
        reply = transport.ask(Kind.NEWTON, {1: payload})[0][1]
        assert REFUSED not in reply.values
        asked.append(t)
        return np.asarray(reply.arrays["gradient"])

    nobody = gradient(50.0)  # no case above: p = 0 for all
    low, high = -50.0, 50.0
    for _ in range(60):  # bisect to a threshold with exactly one case above it
        t = (low + high) / 2
        above = gradient(t) - nobody  # minus the rows above t, with the count first
        count = round(-above[0])
        if count == 1:
            break
        low, high = (t, high) if count > 1 else (low, t)
    assert len(asked) > STUDY.model.max_newton_iterations  # past one fit's cap
    top = rows[np.argmax(rows[:, 0])]
    np.testing.assert_allclose(-above[1:] + 1000.0, top, rtol=0, atol=1e-9)


TUNED = StudyConfig(
    federation=FederationSettings(min_cell_size=3, secure_aggregation=False),
    harmonization={"method": "none"},
    validation={"scheme": "kfold", "folds": 3},
    model={"max_newton_iterations": 3, "ridge_lambdas": [10.0, 1.0]},
)


def _round_refusals(table: Path, parts: list[Request]) -> list[str | None]:
    """The site's refusal code (or None) to each of `parts`, each asked as its own round."""
    transport = GridTransport(site_grid({"site01": table}, TUNED), timeout_s=60)
    codes = []
    for part in parts:
        payload, _ = encode_request(Request(parts=[part]), ())
        codes.append(transport.ask(Kind.LASSO_ROUND, {1: payload})[0][1].values.get(REFUSED))
    return codes


def test_a_tuned_ridge_site_answers_an_inner_fold_only_as_often_as_its_own_grid_allows(
    tmp_path,
):
    """The penalty never reaches the site (it adds nothing to the site's sums): the site
    bounds what an aggregator can ask of an inner fold by its own study's grid, one held-out
    loss per penalty and each penalty's Newton iterations, whatever penalties the aggregator
    claims to try or however it nudges beta."""
    (table,) = write_site_feature_tables(tmp_path, TUNED, sizes=(40,)).values()
    base = np.array([0.1, 0.2, -0.1, 0.05])
    inner = Partition("kfold", 0, inner=0)

    def part(beta, kind, role=None):
        values = {"kind": kind} | ({"role": role} if role else {})
        return Request(_params(table, beta), inner, values=values)

    grid, iterations = len(TUNED.model.ridge_lambdas), TUNED.model.max_newton_iterations
    held_out = [part(base + i * 1e-15, "loss", "test") for i in range(grid + 1)]
    assert _round_refusals(table, held_out) == [None] * grid + ["requests-per-fit-exceeded"]
    terms = [part(base + i * 1e-3, "newton") for i in range(grid * iterations + 1)]
    assert _round_refusals(table, terms) == [None] * grid * iterations + [
        "requests-per-fit-exceeded"
    ]
    # a training loss (an L1 line search) is not a ridge fit's to ask, at any penalty
    assert _round_refusals(table, [part(base, "loss", "train")]) == ["kind-outside-plan"]
    # a fixed penalty has no inner folds
    fixed = TUNED.updated(model={"ridge_lambda": 1.0})
    transport = GridTransport(site_grid({"site01": table}, fixed), timeout_s=60)
    payload, _ = encode_request(Request(parts=[part(base, "newton")]), ())
    reply = transport.ask(Kind.LASSO_ROUND, {1: payload})[0][1]
    assert reply.values.get(REFUSED) == "partition-outside-plan"
