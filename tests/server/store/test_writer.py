"""The ServerApp writes its run into the store as the study runs: a finished study's store
equals its results.json; a crashed one keeps the phases it finished and says why it failed;
the census keeps suppressed counts as sent; the event log only grows. On SQLite and
PostgreSQL alike (the `store` fixture)."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import site_grid
from flwr.app import Context, RecordDict
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.server.app import make_server_app
from fedrad.server.checkpoint import Phase
from fedrad.server.dashboard.views import run_view
from fedrad.server.federation import SiteRecord
from fedrad.server.results import finite_or_null
from fedrad.server.store.engine import open_store
from fedrad.server.store.reader import overview, run_page, run_results, site_page
from fedrad.server.store.schema import CensusCount, Event
from fedrad.server.store.writer import RunWriter
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3),
    validation={"scheme": "kfold", "folds": 3},
)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return write_site_feature_tables(tmp_path_factory.mktemp("sites"), STUDY, sizes=(40, 36, 44))


def _context(run_config: dict | None = None) -> Context:
    return Context(
        run_id=42, node_id=0, node_config={}, state=RecordDict(), run_config=run_config or {}
    )


def _run(store, tables, grid=None) -> tuple[RunWriter, list[dict]]:
    """The study over the in-process grid, recorded by a writer to `store`."""
    handed: list[dict] = []
    writer = RunWriter(store, "simulation", started_by="coordinator", log=lambda _: None)
    server = make_server_app(
        STUDY, on_results=handed.append, expected_sites=3, log=lambda _: None, store=writer
    )
    server(grid or site_grid(tables, STUDY), _context())
    return writer, handed


def _as_json(value):
    return json.loads(json.dumps(finite_or_null(value)))


def test_a_finished_study_stores_runs_phases_and_metrics_equal_to_its_results(store, tables):
    writer, (results,) = _run(store, tables)
    results = _as_json(results)
    page = run_page(store, writer.run_id)
    assert (page.run.status, page.run.mode, page.run.started_by) == (
        "finished", "simulation", "coordinator",
    )  # fmt: skip
    assert page.run.flower_run_id == "42"
    assert page.metrics["federated"] == results["metrics"]["federated"]
    assert page.metrics["per_site"] == results["metrics"]["per_site"]
    assert [{"fit": tag, **figures} for tag, figures in page.metrics["fits"].items()] == results[
        "validation"
    ]["fits"]
    assert [r for phase in page.phases for r in phase["rounds"]] == results["rounds"]
    assert [p["kind"] for p in page.phases][-1] == "evaluation"
    final = page.selected_features["final"]
    assert [f["feature"] for f in final] == results["selection"]["kept"]
    # the final fit's phase holds the fit itself; results, the model recalibrated after it
    fit = results["model"]["recalibration"]["before"]["coefficients"]
    assert {f["feature"]: f["coefficient"] for f in final} == fit
    assert page.harmonization == results["harmonization"]
    assert page.census == {site["name"]: site["cases"] for site in results["sites"]}
    assert run_results(store, writer.run_id) == results


def test_each_phase_keeps_the_bytes_each_site_exchanged_during_it(store, tables):
    writer, (results,) = _run(store, tables)
    phases = run_page(store, writer.run_id).phases
    after = run_view(store, writer.run_id).bytes_after_phases
    for direction, key in (("from", "traffic_bytes_from_sites"), ("to", "traffic_bytes_to_sites")):
        run_total = {
            site: sum(sizes.get(site, 0) for sizes in results[key].values())
            for site in ("site01", "site02", "site03")
        }
        per_phase = [phase["bytes"][direction] for phase in phases]
        summed = {site: sum(sizes.get(site, 0) for sizes in per_phase) for site in run_total}
        assert {site: summed[site] + after[direction][site] for site in run_total} == run_total
        assert all(size > 0 for size in per_phase[0].values())  # the census, ComBat's sums
        assert all(size > 0 for size in after[direction].values())  # final model, site effects


def test_the_overview_and_site_pages_show_each_site_as_its_census_described_it(store, tables):
    writer, (results,) = _run(store, tables)
    sites = overview(store).sites
    assert [s.name for s in sites] == ["site01", "site02", "site03"]
    assert all(s.online and s.status == "included" and s.extraction_hash for s in sites)
    assert [run.id for run in overview(store).runs] == [writer.run_id]
    page = site_page(store, "site02")
    assert page.census == [{"run": writer.run_id, "cases": results["sites"][1]["cases"]}]
    assert page.qc[0]["sequences_missing"] == results["sites"][1]["sequences_missing"]
    assert [e["event"] for e in page.events] == ["joined"]
    assert site_page(store, "nowhere") is None


def test_a_run_that_raises_midway_keeps_its_finished_phases_and_fails_with_the_reason(
    store, tables
):
    grid = site_grid(tables, STUDY)
    delivered = grid.deliver

    def crash_at_evaluation(message):
        if message.metadata.message_type.startswith("evaluate."):
            raise RuntimeError("the aggregator's disk is full")
        return delivered(message)

    grid.deliver = crash_at_evaluation
    writer = RunWriter(store, "simulation", log=lambda _: None)
    server = make_server_app(STUDY, on_results=lambda _: None, expected_sites=3, store=writer)
    with pytest.raises(RuntimeError, match="disk is full"):
        server(grid, _context())
    page = run_page(store, writer.run_id)
    assert page.run.status == "failed"
    assert page.run.reason == "RuntimeError: the aggregator's disk is full"
    assert page.run.ended_at is not None
    kinds = {phase["kind"] for phase in page.phases}
    assert "fitted" in kinds and "evaluation" not in kinds
    assert page.metrics["federated"] == {}
    assert page.events[-1]["event"] == "error"
    assert page.events[-1]["reason_code"] == "aggregator_error"
    assert run_results(store, writer.run_id) is None


def test_a_site_set_aside_is_logged_with_its_reason_code_and_shown_dropped(store, tables):
    grid = site_grid(tables, STUDY)
    grid.drop_after = {2: 4}  # site02 falls silent after its fourth message
    writer, (results,) = _run(store, tables, grid)
    page = run_page(store, writer.run_id)
    dropped = [e for e in page.events if e["event"] == "set aside"]
    assert [(e["site"], e["reason_code"]) for e in dropped] == [("site02", "timeout")]
    logged = [{k: e[k] for k in ("event", "site", "reason")} for e in page.events]
    assert [e for e in logged if e["event"] != "joined"] == results["events"]
    site02 = site_page(store, "site02").site
    assert (site02.status, site02.online) == ("dropped", False)
    assert site_page(store, "site01").site.online


def test_rounds_show_as_they_end_and_belong_to_their_phase_once_it_ends(store):
    writer = RunWriter(store, "deployment", log=lambda _: None)
    writer.start(STUDY)
    rounds = [
        {"fit": "fold 1", "phase": "newton", "iteration": i, "deviance": 10.0 / i} for i in (1, 2)
    ]
    for entry in rounds:
        writer.round(entry)
    page = run_page(store, writer.run_id)
    assert (page.live_rounds, page.phases) == (rounds, [])
    writer.round({"fit": "fold 2", "phase": "newton", "iteration": 1, "deviance": 9.0})
    writer.phase(Phase("prepared", "fold 1", ["site01"], {}, rounds=rounds))
    page = run_page(store, writer.run_id)
    assert page.phases[0]["rounds"] == rounds  # once, in its phase
    assert [entry["fit"] for entry in page.live_rounds] == ["fold 2"]  # still going


def test_census_rows_keep_suppressed_counts_as_sent_and_never_a_number(store):
    writer = RunWriter(store, "deployment", log=lambda _: None)
    writer.start(STUDY)
    site = SiteRecord(node_id=9, name="small", status="included", cases={"HGG": "<5", "BM": "31"})
    writer.census([site])
    with Session(store) as session:
        counts = {row.class_name: row.count for row in session.scalars(select(CensusCount))}
    assert counts == {"HGG": "<5", "BM": "31"}
    assert run_page(store, writer.run_id).census == {"small": {"HGG": "<5", "BM": "31"}}


def test_the_event_log_refuses_updates_and_deletes(store):
    writer = RunWriter(store, "deployment", log=lambda _: None)
    writer.start(STUDY)
    writer.event({"event": "refused", "site": "site01", "reason": "study settings differ"})
    assert not hasattr(writer, "delete_event") and not hasattr(writer, "update_event")
    for change in (
        update(Event).values(reason="nothing happened"),
        delete(Event),
        text("DELETE FROM events"),
    ):
        with pytest.raises(DBAPIError, match="append-only"), Session(store) as session:
            session.execute(change)
            session.commit()
    (event,) = run_page(store, writer.run_id).events
    assert (event["reason"], event["reason_code"]) == (
        "study settings differ", "study_hash_mismatch",
    )  # fmt: skip


def test_a_store_that_fails_a_write_logs_it_and_the_study_goes_on(store):
    said: list[str] = []
    writer = RunWriter(store, "deployment", log=said.append)
    writer.start(STUDY)
    writer.run_id = 10_000  # no such run: every write breaks a foreign key
    writer.event({"event": "refused", "site": "site01", "reason": "no reply"})
    assert said and said[0].startswith("run store: event not recorded")


def test_a_deployed_study_writes_runs_db_in_its_out_dir_with_its_files(tmp_path, tables):
    out = tmp_path / "out"
    server = make_server_app(STUDY, expected_sites=3, log=lambda _: None)
    server(site_grid(tables, STUDY), _context({"out-dir": str(out), "started-by": "ana"}))
    engine = open_store(f"sqlite:///{out / 'runs.db'}")
    (run,) = overview(engine).runs
    page = run_page(engine, run.id)
    engine.dispose()
    assert (run.status, run.mode, run.started_by) == ("finished", "deployment", "ana")
    files = {a["kind"]: a for a in page.artifacts}
    written = (out / "results.json").read_bytes()
    assert files["results"]["sha256"] == hashlib.sha256(written).hexdigest()
    assert set(files) == {"results", "report"}


def test_a_resumed_run_records_the_phases_it_loaded_from_the_checkpoint(tmp_path, tables):
    out = tmp_path / "out"
    grid = site_grid(tables, STUDY)
    delivered = grid.deliver

    def crash_at_evaluation(message):
        if message.metadata.message_type.startswith("evaluate."):
            raise RuntimeError("the aggregator was stopped")
        return delivered(message)

    grid.deliver = crash_at_evaluation
    server = make_server_app(STUDY, expected_sites=3, log=lambda _: None)
    with pytest.raises(RuntimeError):
        server(grid, _context({"out-dir": str(out)}))
    resumed = Context(
        run_id=43,
        node_id=0,
        node_config={},
        state=RecordDict(),
        run_config={"out-dir": str(out), "resume": True},
    )
    server(site_grid(tables, STUDY), resumed)
    engine = open_store(f"sqlite:///{out / 'runs.db'}")
    second, first = overview(engine).runs
    crashed, finished = run_page(engine, first.id), run_page(engine, second.id)
    engine.dispose()
    assert (first.status, second.status) == ("failed", "finished")
    done_before = [(p["kind"], p["tag"]) for p in crashed.phases]
    loaded = [(p["kind"], p["tag"]) for p in finished.phases if p["loaded"]]
    assert loaded and set(loaded) <= set(done_before)
    assert finished.phases[-1]["kind"] == "evaluation" and not finished.phases[-1]["loaded"]


def test_a_study_that_cannot_run_is_stored_as_stopped_with_its_reason(store, tables):
    study = STUDY.updated(federation={"min_cell_size": 30})
    writer = RunWriter(store, "simulation", log=lambda _: None)
    handed: list[dict] = []
    server = make_server_app(
        study, on_results=handed.append, expected_sites=3, log=lambda _: None, store=writer
    )
    server(site_grid(tables, study), _context())
    (run,) = overview(store).runs
    assert (run.status, run.reason) == ("stopped", handed[0]["reason"])
    assert "federation.min_cell_size" in run.reason  # no fold holds 30 of a class
    assert run_results(store, run.id)["status"] == "stopped"
