"""A site answers a fit at no more coefficient vectors than its study lets the fit take,
and only at coefficients an honest fit can reach: an aggregator nudging beta (or the
scaler) to ask the same partition's sums again and again is refused past the cap, and one
asking at half-space steps that read a case's row is refused outright, through the real
ClientApp, while asking the same vector again (a restart) is free."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import site_grid

from fedrad.client import coefficient_bounds
from fedrad.client.data import SiteData
from fedrad.client.plan import Refused
from fedrad.client.request_caps import UNPINNED_DROP_OUTS, fits_sharing, pipelines
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.messages import REFUSED, Kind, Payload, Request, decode_reply, encode_request
from fedrad.common.models.logistic import NewtonTerms, fit_newton, newton_terms, with_intercept
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


# -- half-space coefficients (docs/privacy.md 3 and 7) ----------------------------------------
ATTACKED = STUDY.updated(federation={"max_cases": 40}, model={"max_newton_iterations": 50})


def _half_space_attack(table: Path, study: StudyConfig, asks_per_scaler: int) -> dict:
    """The aggregator's attack on a site's training rows, through the real ClientApp:
    beta = M (-t, u) with M = 1e4 on inputs scaled by the pooled means (about 1000 here) and
    1 makes p a step at the plane u'x = t, so the gradient X'(y - p) at two thresholds
    differs by the rows between them, and a threshold with one case above it reads that
    case's row. Each threshold is a new coefficient vector; every `asks_per_scaler` asks
    the scaler is nudged by 1e-12, a new pipeline. Returns the answers it got, the refusal
    that stopped it (if one did) and the row it read (if it isolated one)."""
    data = SiteData.load(table, "site01", study)
    rows = data.columns(data.features)[data.rows(Partition("holdout"), "train", study), :3]
    transport = GridTransport(site_grid({"site01": table}, study), timeout_s=60)
    answered = []

    def gradient(t: float) -> np.ndarray | str:
        nudge = len(answered) // asks_per_scaler
        params = PipelineParams(
            features=data.features,
            selected=np.arange(3),
            standardizer=Standardizer(mean=np.full(3, 1000.0 + nudge * 1e-12), scale=np.ones(3)),
            beta=1e4 * np.array([-t, 1.0, 0.0, 0.0]),
        )
        payload, _ = encode_request(Request(params, Partition("holdout")), ())
        reply = transport.ask(Kind.NEWTON, {1: payload})[0][1]
        if REFUSED in reply.values:
            return str(reply.values[REFUSED])
        answered.append(t)
        return np.asarray(reply.arrays["gradient"])

    outcome = {"top": rows[np.argmax(rows[:, 0])], "answered": answered, "refused": None}
    nobody = gradient(50.0)  # no case above: p = 0 for all
    if isinstance(nobody, str):
        return outcome | {"refused": nobody}
    low, high = -50.0, 50.0
    for _ in range(60):  # bisect to a threshold with exactly one case above it
        t = (low + high) / 2
        at = gradient(t)
        if isinstance(at, str):
            return outcome | {"refused": at}
        above = at - nobody  # minus the rows above t, with the count first
        count = round(-above[0])
        if count == 1:
            return outcome | {"read": -above[1:] + 1000.0}
        low, high = (t, high) if count > 1 else (low, t)
    return outcome


def _without_bounds(monkeypatch) -> None:
    monkeypatch.setattr(coefficient_bounds, "slope_bound", lambda study: None)
    monkeypatch.setattr(coefficient_bounds, "check_deviance", lambda deviance, study: None)


def test_half_space_coefficients_are_refused_by_the_bound_an_honest_fit_keeps(tmp_path):
    (table,) = write_site_feature_tables(tmp_path, ATTACKED, sizes=(40,)).values()
    attack = _half_space_attack(table, ATTACKED, ATTACKED.model.max_newton_iterations)
    assert attack["refused"] == "coefficients-beyond-bound"
    assert attack["answered"] == [] and "read" not in attack


def _sharpest_readings(table: Path) -> tuple[list[float], float]:
    """The attack at its best within the slope bound: the pooled scaler, steps as sharp as
    the site answers (M from the slope bound down), planes either side of the top case,
    placed by an oracle that knows where it lies. Two answered gradients differ by the rows
    between their planes, weighted by how far p moved. Returns each reading's largest error
    on the top row (in standard deviations), and the gap from the top case to the next."""
    data = SiteData.load(table, "site01", ATTACKED)
    rows = data.columns(data.features)[data.rows(Partition("holdout"), "train", ATTACKED), :3]
    scaler = Standardizer(mean=rows.mean(axis=0), scale=rows.std(axis=0))
    z = np.sort(scaler.transform(rows)[:, 0])
    top, gap = rows[np.argmax(rows[:, 0])], z[-1] - z[-2]
    transport = GridTransport(site_grid({"site01": table}, ATTACKED), timeout_s=60)
    _, most = coefficient_bounds.slope_bound(ATTACKED)

    def gradient(m: float, t: float) -> np.ndarray | None:
        params = PipelineParams(
            features=data.features,
            selected=np.arange(3),
            standardizer=scaler,
            beta=m * np.array([-t, 1.0, 0.0, 0.0]),
        )
        payload, _ = encode_request(Request(params, Partition("holdout")), ())
        reply = transport.ask(Kind.NEWTON, {1: payload})[0][1]
        return None if REFUSED in reply.values else np.asarray(reply.arrays["gradient"])

    errors = []
    for m in (most, 8.0, 4.0, 2.0, 1.0):
        below, above = gradient(m, z[-1] - gap / 2), gradient(m, z[-1] + gap / 2)
        if below is not None and above is not None:
            between = above - below  # count first
            read = between[1:] / between[0] * scaler.scale + scaler.mean
            errors.append(float(np.max(np.abs(read - top) / scaler.scale)))
    return errors, gap


def test_the_sharpest_half_spaces_a_site_answers_do_not_tell_its_top_case_from_the_next(
    tmp_path,
):
    """Within the slope bound a step still costs deviance: planes that leave the site's
    positive cases behind them are refused unless p is shallow (M <= 2 here), and no
    answered pair reads the top row within twice the gap to its neighbour."""
    (table,) = write_site_feature_tables(tmp_path, ATTACKED, sizes=(40,)).values()
    errors, gap = _sharpest_readings(table)
    assert errors and min(errors) > 2 * gap


def test_without_the_deviance_bound_the_slope_bound_alone_lets_the_top_row_through(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(coefficient_bounds, "check_deviance", lambda deviance, study: None)
    (table,) = write_site_feature_tables(tmp_path, ATTACKED, sizes=(40,)).values()
    errors, gap = _sharpest_readings(table)
    assert min(errors) < gap


def test_without_the_bound_the_same_attack_reads_a_training_row_within_one_fits_cap(
    tmp_path, monkeypatch
):
    """The defence is the bound: with it patched out, the site answers the steps, and one
    fit's own cap (50 Newton iterations) holds enough asks to read its top row exactly."""
    _without_bounds(monkeypatch)
    (table,) = write_site_feature_tables(tmp_path, ATTACKED, sizes=(40,)).values()
    attack = _half_space_attack(table, ATTACKED, ATTACKED.model.max_newton_iterations)
    assert attack["refused"] is None
    assert len(attack["answered"]) <= ATTACKED.model.max_newton_iterations
    np.testing.assert_allclose(attack["read"], attack["top"], rtol=0, atol=1e-9)


def test_a_nudged_scaler_buys_no_new_cap_past_the_pipelines_drop_outs_explain(
    tmp_path, monkeypatch
):
    """Caps are per partition and role: a new pipeline (a scaler nudged by 1e-12) counts
    against the same partition, which an honest study fits under one pipeline and one more
    per site that can drop out. With the bound patched out, the attack nudging its scaler
    at every ask is refused once those pipelines are spent, before it isolates a case."""
    _without_bounds(monkeypatch)
    (table,) = write_site_feature_tables(tmp_path, STUDY, sizes=(40,)).values()
    attack = _half_space_attack(table, STUDY, asks_per_scaler=1)
    assert attack["refused"] == "requests-per-fit-exceeded"
    assert len(attack["answered"]) == pipelines(STUDY) and "read" not in attack


def test_a_partition_is_fitted_under_one_pipeline_and_one_more_per_site_that_can_drop():
    keys = {f"site0{i}": f"{i:064x}" for i in range(1, 6)}
    pinned = STUDY.updated(federation={"site_keys": keys, "min_sites": 3})
    assert pipelines(pinned) == 1 + 5 - 3
    masked = pinned.updated(federation={"secure_aggregation": True, "min_sites": 1})
    assert pipelines(masked) == 1 + 5 - 2  # a total needs two sites
    assert pipelines(STUDY) == 1 + UNPINNED_DROP_OUTS  # the site cannot count the sites


def test_under_leave_one_site_out_a_training_sites_all_partition_serves_one_fit_per_site():
    """A training site's `all` is that of every fold it trains in and of the final fit:
    each of them, and its drop-out restarts, may come under a pipeline of its own."""
    keys = {f"site0{i}": f"{i:064x}" for i in range(1, 4)}
    loso = STUDY.updated(
        federation={"site_keys": keys}, validation={"scheme": "leave-one-site-out"}
    )
    assert fits_sharing(loso, [Partition("all")]) == 3
    assert fits_sharing(loso, [Partition("all", inner=1)]) == 3
    assert fits_sharing(loso, [Partition("unseen")]) == 1
    assert fits_sharing(STUDY, [Partition("all")]) == 1  # holdout: the final fit alone
    kfold = STUDY.updated(validation={"scheme": "kfold"})
    assert fits_sharing(kfold, [Partition("all")]) == 1
    assert fits_sharing(kfold, [Partition("kfold", 2)]) == 1


def test_an_honest_ridge_fit_at_the_edge_of_the_bound_is_answered(tmp_path):
    """A site whose own training cases are all the study's (`max_cases`) is asked first at
    beta = 0, where its deviance is the bound itself; the whole honest fit at the grid's
    smallest penalty, each iterate asked of the real ClientApp, is answered and equals the
    pooled fit. Slopes at the bound are answered, past it refused."""
    (table,) = write_site_feature_tables(tmp_path, STUDY, sizes=(40,)).values()
    data = SiteData.load(table, "site01", STUDY)
    train = data.rows(Partition("holdout"), "train", STUDY)
    smallest = min(STUDY.model.ridge_lambdas)
    edge = STUDY.updated(
        federation={"max_cases": int(train.sum())},
        model={"ridge_lambda": smallest, "max_newton_iterations": 50},
    )
    rows = data.columns(data.features)[train, :3]
    scaler = Standardizer(mean=rows.mean(axis=0), scale=rows.std(axis=0))
    transport = GridTransport(site_grid({"site01": table}, edge), timeout_s=60)

    def ask(beta: np.ndarray) -> Payload:
        params = PipelineParams(
            features=data.features, selected=np.arange(3), standardizer=scaler, beta=beta
        )
        payload, _ = encode_request(Request(params, Partition("holdout")), ())
        return transport.ask(Kind.NEWTON, {1: payload})[0][1]

    def terms(beta: np.ndarray) -> NewtonTerms:
        reply = ask(beta)
        assert REFUSED not in reply.values
        return decode_reply(Kind.NEWTON, reply)

    fitted = fit_newton(terms, 4, ridge_lambda=smallest)
    x = with_intercept(scaler.transform(rows))
    pooled = fit_newton(lambda b: newton_terms(x, data.y[train], b), 4, ridge_lambda=smallest)
    np.testing.assert_allclose(fitted.beta, pooled.beta, rtol=0, atol=1e-9)
    assert newton_terms(x, data.y[train], np.zeros(4)).deviance == pytest.approx(
        2 * edge.federation.max_cases * np.log(2), rel=1e-12
    )
    order, most = coefficient_bounds.slope_bound(edge)
    assert order == 2 and most == pytest.approx(np.sqrt(2 * train.sum() * np.log(2) / smallest))
    direction = fitted.beta[1:] / np.linalg.norm(fitted.beta[1:])
    at_edge = np.concatenate([[fitted.beta[0]], most * direction])
    past = np.concatenate([[fitted.beta[0]], 1.001 * most * direction])
    bounds = Request(PipelineParams(features=data.features, beta=at_edge))
    coefficient_bounds.check_slopes(Kind.NEWTON, bounds, edge)  # answered
    with pytest.raises(Refused, match="past"):
        coefficient_bounds.check_slopes(
            Kind.NEWTON, Request(PipelineParams(features=data.features, beta=past)), edge
        )


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
