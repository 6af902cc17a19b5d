"""Missing feature values at a site: `exclude-case` leaves cases out and names them in the
site's own log; under `impute-mean` the site's sums must not show a few observed values (or,
released alone, a few missing ones), which a curious aggregator tries here."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from fedrad.client import handlers
from fedrad.client.data import SiteData
from fedrad.client.handlers import handle
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.feature_table import read_feature_table, write_feature_table
from fedrad.common.messages import REFUSED, SKIPPED, Kind, Request, decode_reply
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3, secure_aggregation=False),
    validation={"scheme": "kfold", "folds": 3},
    missing_values="impute-mean",
)
F = "t1c_enhancing_original_firstorder_F{}".format


def _rule(missing_values: str | None) -> StudyConfig:
    return StudyConfig.model_validate(
        STUDY.model_dump(mode="json") | {"missing_values": missing_values}
    )


def _site(tmp_path, blank, study=STUDY, n=40) -> SiteData:
    """A one-site table with the cells `blank(data)` names (row mask, feature) made NaN."""
    ((name, path),) = write_site_feature_tables(tmp_path, study, sizes=(n,)).items()
    table, provenance = read_feature_table(path)
    for rows, feature in blank(SiteData.load(path, name, study)):
        table.loc[rows, feature] = np.nan
    write_feature_table(table, path, provenance)
    return SiteData.load(path, name, study)


def _sums(data: SiteData, partition: Partition, study=STUDY):
    request = Request(PipelineParams(list(data.features)), partition)
    release = (lambda reply: reply) if study.federation.secure_aggregation else None
    payload = handle(Kind.IMPUTATION, data, study, request, release)
    return payload.values.get(SKIPPED) or decode_reply(Kind.IMPUTATION, payload)


def test_a_fold_whose_test_part_holds_one_observed_value_sends_no_sum(tmp_path, monkeypatch):
    """The final fit's sum minus fold 1's is the sum over fold 1's test part: with one value
    of a feature observed there, it is that case's value."""
    fold = Partition("kfold", 0)

    def blank(data):
        test = np.flatnonzero(data.rows(fold, "test", STUDY))
        return [(test[1:], F(1))]  # the first test case keeps its value

    data = _site(tmp_path, blank)
    test = np.flatnonzero(data.rows(fold, "test", STUDY))
    target = data.columns([F(1)])[test[0], 0]
    assert np.isfinite(target) and np.isnan(data.columns([F(1)])[test[1:], 0]).all()
    column = data.features.index(F(1))

    monkeypatch.setattr(handlers, "check_missing_values", lambda *args, **kwargs: None)
    whole, part = _sums(data, Partition("all")), _sums(data, fold)
    assert whole.s1[column] - part.s1[column] == pytest.approx(target, abs=1e-9)  # the attack
    assert whole.observed[column] - part.observed[column] == 1

    monkeypatch.undo()
    assert not isinstance(_sums(data, Partition("all")), str)  # 27 values beside 12 missing
    refused = _sums(data, fold)
    assert refused == (
        "site01 has fewer than 3 test values of a feature in a batch beside missing ones: "
        "their sum would show them"
    )


@pytest.mark.parametrize("secure", [False, True])
def test_one_missing_value_is_a_count_a_site_sends_only_inside_a_total(tmp_path, secure):
    study = STUDY.updated(federation={"secure_aggregation": secure})
    data = _site(tmp_path, lambda data: [(np.arange(len(data.case_ids)) == 0, F(2))], study)
    reply = _sums(data, Partition("all"), study)
    if secure:  # the count of missing values is hidden among the other sites'
        assert reply.observed[data.features.index(F(2))] == len(data.case_ids) - 1
    else:
        assert reply == (
            "site01 has fewer than 3 training cases missing a feature in a batch: a count it "
            "would release alone"
        )


def test_a_feature_missing_in_every_case_of_a_site_sends_a_zero_count(tmp_path):
    data = _site(tmp_path, lambda data: [(slice(None), F(0))])
    sums = _sums(data, Partition("all"))
    assert sums.observed[data.features.index(F(0))] == 0
    assert sums.s1[data.features.index(F(0))] == 0.0
    assert np.all(np.delete(sums.observed, data.features.index(F(0))) == len(data.case_ids))


@pytest.mark.parametrize(
    ("study", "means", "code"),
    [
        (_rule(None), None, "kind-outside-plan"),  # the step itself
        (STUDY, "missing", "value-outside-plan"),  # a later step without the means
        (_rule("exclude-case"), "given", "value-outside-plan"),
        (STUDY, "short", "value-out-of-bounds"),
        (STUDY, "nan", "value-out-of-bounds"),
    ],
)
def test_the_site_derives_the_step_from_its_own_study(tmp_path, study, means, code, caplog):
    data = _site(tmp_path, lambda data: [], study)
    features = list(data.features)
    values = {
        None: None,
        "missing": None,
        "given": np.zeros(len(features)),
        "short": np.zeros(2),
        "nan": np.full(len(features), np.nan),
    }[means]
    kind = Kind.IMPUTATION if means is None else Kind.COMBAT_OLS
    request = Request(
        PipelineParams(features, imputation=values),
        Partition("all"),
        values={} if kind is Kind.IMPUTATION else {"combat.levels": ["site01"]},
    )
    with caplog.at_level(logging.WARNING, logger="fedrad.site"):
        reply = handle(kind, data, study, request)
    assert reply.values == {REFUSED: code}


def test_exclude_case_names_each_case_left_out_in_the_site_log(tmp_path, caplog):
    study = _rule("exclude-case")

    def blank(data):
        rows = np.isin(np.arange(len(data.case_ids)), [3, 7])
        return [(rows, F(1)), (np.arange(len(data.case_ids)) == 7, F(4)), (slice(None), F(5))]

    with caplog.at_level(logging.WARNING, logger="fedrad.site"):
        data = _site(tmp_path, blank, study)
    assert data.excluded == {"s0-003": f"no {F(1)}", "s0-007": f"no {F(1)}, {F(4)}"}
    assert len(data.case_ids) == 38 and "s0-003" not in data.case_ids
    assert F(5) not in data.features and np.isfinite(data.x).all()
    log = (tmp_path / "site01" / "site.log").read_text()
    assert f"case s0-007 left out (missing_values: exclude-case): no {F(1)}, {F(4)}" in log
    assert (
        f"1 feature(s) missing in every case left out (missing_values: exclude-case): {F(5)}" in log
    )
