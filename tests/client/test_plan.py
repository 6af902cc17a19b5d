"""A curious aggregator chooses requests: the site computes only what its own study implies
and refuses the rest with a reason code, the detail staying in its own log."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest
from conftest import run_study, site_grid

from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.messages import REFUSED, Kind, Request, encode_request
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.stats.moments import Standardizer
from fedrad.server.federation import GridTransport
from fedrad.simulations.synth.features import write_site_feature_tables

# The plan is checked before anything is computed, masked or not: these requests are in the
# clear, which only a study without secure aggregation answers (see the last test).
STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3, secure_aggregation=False),
    harmonization={"method": "none"},
    validation={"scheme": "kfold", "folds": 3},
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tables = write_site_feature_tables(tmp_path_factory.mktemp("site"), STUDY, sizes=(40,))
    return tables


def _ask(tables, kind: Kind, request: Request, study: StudyConfig = STUDY):
    """The site's reply values to one chosen request, through its real ClientApp."""
    transport = GridTransport(site_grid(tables, study), timeout_s=30)
    payload, _ = encode_request(request, ())
    replies, failed = transport.ask(kind, {1: payload})
    assert not failed, failed
    return replies[1]


def _pipeline(tables, beta: float = 0.1, study: StudyConfig = STUDY) -> PipelineParams:
    from fedrad.client.data import SiteData

    ((name, path),) = tables.items()
    features = SiteData.load(path, name, study).features
    return PipelineParams(
        features=features,
        selected=np.arange(3),
        # about the synthetic features' centre: an honest fit's inputs are standardized
        standardizer=Standardizer(mean=np.full(3, 1000.0), scale=np.ones(3)),
        beta=np.full(4, beta),
    )


def test_a_plan_request_is_answered(site):
    # fold 0's test part holds >= k of each class (the site has 7 HGG of 40)
    reply = _ask(site, Kind.NEWTON, Request(_pipeline(site), Partition("kfold", 0)))
    assert REFUSED not in reply.values and "gradient" in reply.arrays


def test_a_sum_asked_in_the_clear_is_refused_under_secure_aggregation(site):
    study = STUDY.updated(federation={"secure_aggregation": True})
    request = Request(_pipeline(site, study=study), Partition("kfold", 1))
    reply = _ask(site, Kind.NEWTON, request, study)
    assert reply.values == {REFUSED: "unmasked-sum-outside-plan"}
    assert not reply.arrays


@pytest.mark.parametrize(
    ("kind", "change", "code"),
    [
        ("newton", {"partition": Partition("unseen")}, "partition-outside-plan"),
        ("newton", {"partition": Partition("holdout")}, "partition-outside-plan"),
        ("newton", {"partition": Partition("kfold", 3)}, "partition-outside-plan"),
        ("newton", {"partition": Partition("kfold", 0, inner=3)}, "partition-outside-plan"),
        ("loss", {}, "kind-outside-plan"),
        ("lasso-round", {}, "kind-outside-plan"),
        ("newton", {"beta": np.array([0.1, np.nan, 0.0, 0.0])}, "value-out-of-bounds"),
        ("newton", {"beta": np.full(4, 1e9)}, "value-out-of-bounds"),
        ("newton", {"beta": np.zeros(7)}, "value-out-of-bounds"),
        ("newton", {"selected": np.array([0, 0, 1])}, "value-out-of-bounds"),
        ("newton", {"selected": np.arange(21)}, "value-out-of-bounds"),
        ("newton", {"scale": np.zeros(3)}, "value-out-of-bounds"),
    ],
)
def test_a_chosen_request_outside_the_plan_is_refused_by_code(site, kind, change, code, caplog):
    pipeline = _pipeline(site)
    if "beta" in change:
        pipeline = replace(pipeline, beta=change["beta"])
    if "selected" in change:
        n = len(change["selected"])
        pipeline = replace(
            pipeline,
            selected=change["selected"],
            standardizer=Standardizer(np.zeros(n), np.ones(n)),
            beta=np.zeros(n + 1),
        )
    if "scale" in change:
        pipeline = replace(pipeline, standardizer=Standardizer(np.zeros(3), change["scale"]))
    partition = change.get("partition", Partition("kfold", 1))
    with caplog.at_level(logging.WARNING, logger="fedrad.site"):
        reply = _ask(site, Kind(kind), Request(pipeline, partition))
    assert reply.values == {REFUSED: code}
    assert not reply.arrays
    assert code in caplog.text  # the detail stays in the site's log


def test_a_ridge_site_answers_newton_parts_of_a_shared_round_and_refuses_any_other(site):
    """Ridge fits share their Newton rounds as LASSO_ROUND parts; an L1 part is not a
    ridge study's to answer."""
    pipeline, partition = _pipeline(site), Partition("kfold", 0)
    newton = Request(pipeline, partition, values={"kind": "newton"})
    reply = _ask(site, Kind.LASSO_ROUND, Request(parts=[newton, newton]))
    assert REFUSED not in reply.values and reply.arrays["gradient"].shape == (8,)
    loss = Request(pipeline, partition, values={"kind": "loss", "role": "train"})
    reply = _ask(site, Kind.LASSO_ROUND, Request(parts=[newton, loss]))
    assert reply.values == {REFUSED: "kind-outside-plan"}
    noised = STUDY.updated(differential_privacy={})  # each noised step is its own release
    reply = _ask(site, Kind.LASSO_ROUND, Request(parts=[newton, newton]), noised)
    assert reply.values == {REFUSED: "kind-outside-plan"}


def test_scores_at_a_chosen_threshold_are_refused(site):
    part = Request(_pipeline(site), Partition("kfold", 1), values={"threshold": 0.0})
    reply = _ask(site, Kind.SCORES, Request(parts=[part]))
    assert reply.values == {REFUSED: "value-out-of-bounds"}


def test_held_out_sums_outside_an_inner_fold_are_refused(site):
    study = STUDY.updated(model={"kind": "lasso-logistic"})
    pipeline = _pipeline(site, study=study)
    outer_test = Request(pipeline, Partition("kfold", 1), values={"role": "test"})
    reply = _ask(site, Kind.LOSS, outer_test, study)
    assert reply.values == {REFUSED: "role-outside-plan"}
    inner_test = Request(pipeline, Partition("kfold", 1, inner=0), values={"role": "test"})
    assert REFUSED not in _ask(site, Kind.LOSS, inner_test, study).values


def test_too_many_or_repeated_candidates_are_refused(site):
    pipeline = PipelineParams(features=_pipeline(site).features)
    for candidates in (np.arange(61), np.array([1, 1, 2])):
        request = Request(pipeline, Partition("kfold", 0), arrays={"candidates": candidates})
        assert _ask(site, Kind.COMOMENTS, request).values == {REFUSED: "value-out-of-bounds"}


def test_error_text_stays_in_the_site_log_and_the_aggregator_gets_a_code(tmp_path, monkeypatch):
    from fedrad.client import handlers

    tables = write_site_feature_tables(tmp_path, STUDY)
    secret = "/hospital/pacs/patient-0007/t1c.nii.gz"

    def failing(data, study, request):
        if data.name == "site02":
            raise ValueError(f"cannot read {secret}")
        return handlers.screen(data, study, request)

    monkeypatch.setitem(handlers.HANDLERS, Kind.SCREEN, failing)
    results = run_study(site_grid(tables, STUDY), STUDY)
    site = {s["name"]: s for s in results["sites"]}["site02"]
    assert site["status"] == "dropped"
    assert "site-error" in site["reason"]
    assert secret not in json.dumps(results)
    assert secret in (tables["site02"].parent / "site.log").read_text()


def test_a_suppressed_class_cannot_be_recovered_from_the_sites_total(tmp_path):
    from fedrad.client.handlers import class_counts

    counts = class_counts(["HGG"] * 22 + ["BM"] * 3, ("HGG", "BM"), 5)
    assert counts == [">=5", "<5"]  # 22 would give BM = 25 - 22 with ComBat's batch counts
    assert class_counts(["HGG"] * 22 + ["BM"] * 9, ("HGG", "BM"), 5) == ["22", "9"]
    tables = write_site_feature_tables(tmp_path, STUDY, sizes=(40, 12, 60))
    study = STUDY.updated(federation={"min_cell_size": 5})
    results = run_study(site_grid(tables, study), study)
    for site in results["sites"]:
        shown = list(site["cases"].values())
        assert all(value.isdigit() for value in shown) or not any(v.isdigit() for v in shown)


def test_a_scaler_of_radiomic_magnitude_is_within_the_plan(site):
    pipeline = _pipeline(site)
    large = Standardizer(mean=np.array([3e9, -2e7, 1e3]), scale=np.array([1e9, 4e6, 1.0]))
    reply = _ask(
        site, Kind.NEWTON, Request(replace(pipeline, standardizer=large), Partition("all"))
    )
    assert REFUSED not in reply.values and "gradient" in reply.arrays


def test_a_site_with_too_few_of_a_class_sends_no_training_sum_not_even_combats(tmp_path):
    from fedrad.client.data import SiteData

    study = STUDY.updated(  # a fixed penalty: inner folds would leave site01 too few cases
        harmonization={"method": "combat"},
        validation={"scheme": "holdout"},
        model={"ridge_lambda": 1.0},
    )
    tables = write_site_feature_tables(tmp_path, study, sizes=(40, 14, 50))
    data = SiteData.load(tables["site02"], "site02", study)
    k = study.federation.min_cell_size
    training = data.rows(Partition("holdout"), "train", study)
    assert min(data.y[training].sum(), (1 - data.y[training]).sum()) < k, "precondition"
    grid = site_grid(tables, study)
    results = run_study(grid, study)
    training_kinds = {"query.combat_ols", "query.combat_ssr", "query.screen", "train.newton"}
    answered = {
        kind
        for node, kind, reply in grid.sent
        if node == 2 and not reply.has_error() and "skipped" not in reply.content["values"]
    }
    assert not answered & training_kinds
    assert "site02" in results["selection"]["excluded_sites"]


@pytest.mark.parametrize("secure", [False, True])
def test_a_fold_whose_test_part_is_below_k_gets_no_training_sum_from_the_site(tmp_path, secure):
    """The fold's sums would differ from the whole's by its few test cases: in the clear the
    rule is per class and batch, inside a masked total per batch (ComBat's rows)."""
    from fedrad.client.data import SiteData
    from fedrad.client.handlers import handle
    from fedrad.common.messages import SKIPPED

    study = STUDY.updated(
        federation={"min_cell_size": 5, "secure_aggregation": secure}, validation={"folds": 5}
    )
    tables = write_site_feature_tables(tmp_path, study, sizes=(23,))
    data = SiteData.load(tables["site01"], "site01", study)
    release = (lambda reply: reply) if secure else None
    skipped = []
    for fold in range(5):
        partition = Partition("kfold", fold)
        test = data.rows(partition, "test", study)
        per_class = [int(data.y[test].sum()), int((1 - data.y[test]).sum())]
        small = test.sum() < 5 or (not secure and min(per_class) < 5)
        reply = handle(
            Kind.SCREEN, data, study, Request(_pipeline(tables, study=study), partition), release
        )
        assert (SKIPPED in reply.values) == small, (fold, per_class)
        if small:
            assert "differ from the whole's" in reply.values[SKIPPED]
        skipped.append(small)
    assert any(skipped) and (secure != all(skipped))  # masked: only the folds of 4 cases
