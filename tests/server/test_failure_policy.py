"""One failure policy in every phase: a site that errs, falls silent, or sends a malformed
or non-finite reply is named, set aside, recorded once, and the study goes on without it;
a study that cannot go on says why in a sentence, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_study, site_grid
from flwr.app import Array, Context, Error, Message, RecordDict
from typer.testing import CliRunner

from fedrad.common.cli import app
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.feature_table import read_feature_table
from fedrad.server.app import make_server_app
from fedrad.server.federation import StudyCannotRun
from fedrad.simulations.pooled import pooled_reference
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3),
    validation={"scheme": "kfold", "folds": 3},
)
# every message type a k-fold ridge study with ComBat sends, and a reply field each carries
# (a summed quantity travels as masked fixed-point words under secure aggregation; the
# folds' and the final fit's Newton iterations share LASSO_ROUND messages)
PHASES = {
    "query.census": "cases",
    "query.secagg_keys": "public_key",
    "query.combat_ols": "words",
    "query.combat_ssr": "words",
    "query.screen": "words",
    "query.comoments": "words",
    "train.lasso_round": "words",
    "query.secagg_reveal": "self_seed",
    "evaluate.scores": "words",
    "evaluate.calibration": "words",
    "evaluate.site_metrics": "auc",
    "query.site_effect": "raw_mean",
}
# what the site's reason says of a non-finite value: masked words are integers, so a float
# array where words belong is malformed; key material is bytes, so a float one is too
NON_FINITE = {"words": "words are float64", "public_key": "malformed"}


def _corrupt(fault: str, field: str):
    """A tamper hook: site 2's first reply to the targeted message type goes wrong."""
    done = []

    def tamper(node: int, message_type: str, reply: Message) -> Message:
        if node != 2 or done:
            return reply
        done.append(message_type)
        if fault == "error":
            request = Message(RecordDict(), dst_node_id=node, message_type=message_type)
            return Message(Error(code=0, reason="disk full"), reply_to=request)
        content = reply.content
        if fault == "missing":
            for record in content.values():
                if field in record:
                    del record[field]
        elif fault == "non-finite":
            if field in content["arrays"]:
                array = content["arrays"][field].numpy().astype(np.float64)
                content["arrays"][field] = Array(np.full_like(array, np.nan))
            else:
                content["values"][field] = float("nan")
        return reply

    return tamper, done


@pytest.fixture
def tables(tmp_path_factory) -> dict[str, Path]:
    """Fresh site folders for each test: each test runs the study again with other sites,
    which a site's ledger of the study, kept in its folder, refuses (docs/privacy.md 5)."""
    return write_site_feature_tables(tmp_path_factory.mktemp("sites"), STUDY)


@pytest.mark.parametrize("fault", ["error", "missing", "non-finite"])
@pytest.mark.parametrize("message_type", sorted(PHASES))
def test_a_faulty_reply_in_any_phase_sets_the_site_aside_once_and_the_study_goes_on(
    tables, message_type, fault
):
    if message_type == "query.census" and fault == "non-finite":
        pytest.skip("a census reply holds no number")
    grid = site_grid(tables, STUDY)
    hook, done = _corrupt(fault, PHASES[message_type])
    grid.tamper = lambda node, reply: (
        hook(node, message_type, reply) if reply.metadata.message_type == message_type else reply
    )
    results = run_study(grid, STUDY)
    assert done, f"no {message_type} reached site 2"
    name = "node 2" if message_type == "query.census" else "site02"  # not yet named
    site = {s["name"]: s for s in results["sites"]}[name]
    assert site["status"] in {"dropped", "failed"}
    field = PHASES[message_type]
    non_finite = NON_FINITE.get(field, "non-finite")
    expected = {"error": "disk full", "missing": "lacks", "non-finite": non_finite}[fault]
    assert expected in site["reason"]
    events = [event for event in results["events"] if event["site"] == name]
    assert len(events) == 1, events
    # the final model is fitted with the folds, before the evaluation
    after_the_model = message_type.startswith("evaluate.") or message_type == "query.site_effect"
    trained = ["site01", "site02", "site03"] if after_the_model else ["site01", "site03"]
    assert results["model"]["training_sites"] == trained
    assert np.isfinite(results["metrics"]["federated"]["auc"])


@pytest.mark.parametrize("secure", [True, False])
def test_a_faulty_mlp_round_sets_the_site_aside_and_training_restarts_without_it(tmp_path, secure):
    study = STUDY.updated(
        model={"kind": "mlp", "rounds": 2},
        validation={"scheme": "holdout"},
        federation={"secure_aggregation": secure},
    )
    tables = write_site_feature_tables(tmp_path, study)
    grid = site_grid(tables, study)
    field = "words" if secure else "hidden.weight"  # masked, or each site's own weights
    hook, done = _corrupt("non-finite", field)
    grid.tamper = lambda node, reply: (
        hook(node, "train", reply) if reply.metadata.message_type == "train" else reply
    )
    results = run_study(grid, study)
    assert done
    site = {s["name"]: s for s in results["sites"]}["site02"]
    assert site["status"] == "dropped"
    assert NON_FINITE.get(field, "non-finite") in site["reason"]
    assert results["model"]["training_sites"] == ["site01", "site03"]


def test_an_mlp_site_too_small_to_train_is_left_out_not_counted_as_training(tmp_path):
    study = STUDY.updated(
        model={"kind": "mlp", "rounds": 2},
        validation={"scheme": "holdout"},
        federation={"min_cell_size": 12},
    )
    tables = write_site_feature_tables(tmp_path, study, sizes=(60, 14, 80))
    results = run_study(site_grid(tables, study), study)
    assert results["model"]["training_sites"] == ["site01", "site03"]
    assert "site02" in results["selection"]["excluded_sites"]
    assert {s["name"]: s["status"] for s in results["sites"]}["site02"] == "included"


def test_faults_in_one_fit_leave_the_model_equal_to_the_pooled_fit_of_the_rest(tables):
    grid = site_grid(tables, STUDY)
    hook, _ = _corrupt("error", "dtd")
    grid.tamper = lambda node, reply: (
        hook(node, "query.combat_ols", reply)
        if reply.metadata.message_type == "query.combat_ols"
        else reply
    )
    results = run_study(grid, STUDY)
    rest = {name: path for name, path in tables.items() if name != "site02"}
    reference = pooled_reference(rest, STUDY)
    for name, value in reference["model"]["coefficients"].items():
        assert results["model"]["coefficients"][name] == pytest.approx(value, abs=1e-10)


def test_when_no_site_can_train_the_study_stops_naming_each_site_and_rule(tmp_path):
    # in the clear: under secure aggregation the aggregator's rule on the folds' pooled test
    # parts stops this study first (tests/server/test_fold_differencing.py)
    study = STUDY.updated(federation={"min_cell_size": 30, "secure_aggregation": False})
    tables = write_site_feature_tables(tmp_path, study, sizes=(40, 36, 44))
    with pytest.raises(StudyCannotRun) as stop:
        run_study(site_grid(tables, study), study)
    message = str(stop.value)
    assert "no site can contribute" in message
    for site in ("site01", "site02", "site03"):
        assert site in message
    assert "fewer than 30" in message


def test_the_server_app_hands_over_why_a_study_stopped_instead_of_raising(tmp_path):
    study = STUDY.updated(federation={"min_cell_size": 30})
    tables = write_site_feature_tables(tmp_path, study, sizes=(40, 36, 44))
    handed = []
    server = make_server_app(study, on_results=handed.append, expected_sites=3, log=lambda _: 0)
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    server(site_grid(tables, study), context)
    (results,) = handed
    assert results["status"] == "stopped"
    # 3 folds of 120 cases hold about 18 of a class each, fewer than 30, over all the sites
    assert "test part may hold as few as" in results["reason"]
    assert "site01, site02, site03" in results["reason"]
    assert "federation.min_cell_size" in results["reason"]
    assert [s["name"] for s in results["sites"]] == ["site01", "site02", "site03"]


def test_simulate_on_a_study_that_cannot_run_exits_1_with_a_sentence(tmp_path):
    csv = tmp_path / "table.csv"
    tables = write_site_feature_tables(tmp_path / "t", STUDY, sizes=(20, 20, 20))
    pd.concat([read_feature_table(p)[0] for p in tables.values()]).to_csv(csv, index=False)
    study = tmp_path / "study.yaml"
    study.write_text("federation: {min_cell_size: 18}\n")  # 16 training cases per site
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--out",
            str(out),
            "--features-table",
            str(csv),
            "--split-sites",
            "3",
            "--study",
            str(study),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "The study cannot run" in result.output
    assert "Traceback" not in result.output
    assert json.loads((out / "results.json").read_text())["status"] == "stopped"


def test_a_site_failing_while_l1_fits_share_rounds_is_set_aside_and_the_fits_rerun(tmp_path):
    study = STUDY.updated(model={"kind": "lasso-logistic"})
    tables = write_site_feature_tables(tmp_path, study)
    grid = site_grid(tables, study)
    hook, done = _corrupt("non-finite", "words")
    grid.tamper = lambda node, reply: (
        hook(node, "train.lasso_round", reply)
        if reply.metadata.message_type == "train.lasso_round"
        else reply
    )
    results = run_study(grid, study)
    assert done
    site = {s["name"]: s for s in results["sites"]}["site02"]
    assert site["status"] == "dropped" and "words are float64" in site["reason"]
    assert results["model"]["training_sites"] == ["site01", "site03"]
    rest = {name: path for name, path in tables.items() if name != "site02"}
    reference = pooled_reference(rest, study)
    assert results["model"]["lasso_lambda"] == pytest.approx(
        reference["model"]["lasso_lambda"], rel=1e-10
    )
    for name, value in reference["model"]["coefficients"].items():
        assert results["model"]["coefficients"][name] == pytest.approx(value, abs=1e-10)


def test_sites_that_sit_out_the_same_round_leave_the_fit_together_in_one_restart(
    tmp_path, monkeypatch
):
    from fedrad.client import handlers
    from fedrad.client.data import SiteSkipped

    def sitting_out(data, study, request):
        if data.name in ("site01", "site02"):
            raise SiteSkipped(f"{data.name} sits this out")
        return handlers.screen(data, study, request)

    monkeypatch.setitem(handlers.HANDLERS, handlers.Kind.SCREEN, sitting_out)
    study = STUDY.updated(harmonization={"method": "none"}, federation={"min_sites": 2})
    tables = write_site_feature_tables(tmp_path, study, sizes=(40, 40, 40, 40))
    grid = site_grid(tables, study)
    results = run_study(grid, study)
    screens = [kind for node, kind, _ in grid.sent if node == 3 and kind == "query.screen"]
    fits = study.validation.folds + 1
    # per fit: one round all four sites answer (two sit out), then the two passes without them
    assert len(screens) == 3 * fits
    left_out = [e["site"] for e in results["events"] if e["event"] == "left out"]
    assert sorted(left_out) == sorted(["site01", "site02"] * fits)


def test_sites_silent_in_the_same_round_are_set_aside_at_once_naming_the_fit(tmp_path):
    study = STUDY.updated(  # a fixed penalty: in the clear, inner folds are too small here
        validation={"scheme": "holdout"},
        federation={"secure_aggregation": False},
        model={"ridge_lambda": 1.0},
    )
    tables = write_site_feature_tables(tmp_path, study, sizes=(40, 40, 40, 40))
    grid = site_grid(tables, study)
    grid.drop_after |= {2: 2, 3: 2}  # the census and ComBat's first sums; then both silent
    results = run_study(grid, study)
    sites = {s["name"]: s for s in results["sites"]}
    for name in ("site02", "site03"):
        assert sites[name]["status"] == "dropped"
        assert sites[name]["reason"] == "holdout: no reply to combat-ssr within 60 s"
    # the fit waited out one silent round for both, not one per site
    assert grid._received[2] == grid._received[3] == 3
    assert results["model"]["training_sites"] == ["site01", "site04"]


def test_a_node_gone_offline_is_named_as_offline_not_as_silent_for_the_whole_timeout():
    """A deployed SuperLink answers for a node whose heartbeats stopped: an error reply from
    its own node id, at once. It counts as that site's reply, and says why."""
    from flwr.server.superlink.linkstate.utils import create_message_error_unavailable_res_message
    from flwr.superlink.grid.http_grid import HttpGrid

    from fedrad.common.messages import Kind, Payload
    from fedrad.server.federation import GridTransport

    class OfflineNodes(HttpGrid):
        def __init__(self):
            self.pushed = {}

        def push_messages(self, messages):
            for number, message in enumerate(messages):
                message.metadata.__dict__["_message_id"] = f"m{number}"
                self.pushed[f"m{number}"] = message
            return list(self.pushed)

        def pull_messages(self, message_ids):
            return [
                create_message_error_unavailable_res_message(
                    self.pushed[i].metadata, "node_unavail"
                )
                for i in message_ids
            ]

    transport = GridTransport(OfflineNodes(), timeout_s=600)
    replies, failed = transport.ask(Kind.CENSUS, {7: Payload(), 9: Payload()})
    assert replies == {}
    assert failed == {
        node: "no reply to census: the site went offline (no heartbeat)" for node in (7, 9)
    }
