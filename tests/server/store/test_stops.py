"""A coordinator's stop, as the store records it (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from fedrad.common.config import StudyConfig
from fedrad.server.store.reader import run_page
from fedrad.server.store.stops import record_ended_runs, record_stop
from fedrad.server.store.writer import RunWriter


def test_a_stopped_run_says_who_stopped_it_and_its_failing_serverapp_does_not_undo_it(store):
    writer = RunWriter(store, "deployment", log=lambda _: None)
    writer.start(StudyConfig(), flower_run_id=12)
    record_stop(store, writer.run_id, "cora")
    writer.failed("the run was stopped")  # what the ServerApp writes as Flower ends it
    page = run_page(store, writer.run_id)
    assert (page.run.status, page.run.reason) == ("stopped", "stopped by cora from the dashboard")
    assert page.run.ended_at is not None
    codes = [event["reason_code"] for event in page.events]
    assert codes == ["stopped_by_coordinator", "aggregator_error"]


def test_a_run_nobody_stopped_still_fails_with_its_reason(store):
    writer = RunWriter(store, "deployment", log=lambda _: None)
    writer.start(StudyConfig())
    writer.failed("the aggregator raised")
    assert run_page(store, writer.run_id).run.status == "failed"


def test_runs_flower_ended_without_a_word_to_the_store_are_recorded_as_flower_says(store):
    def started(mode: str, flower_run_id: int) -> RunWriter:
        writer = RunWriter(store, mode, log=lambda _: None)
        writer.start(StudyConfig(), flower_run_id=flower_run_id)
        return writer

    killed, stopped, alive, done, simulated = (
        started("deployment", 31), started("deployment", 32), started("deployment", 33),
        started("deployment", 34), started("simulation", 35),
    )  # fmt: skip
    flower = {
        "31": "finished:failed", "32": "finished:stopped", "33": "running",
        "34": "finished:completed", "35": "finished:failed",
    }  # fmt: skip
    assert record_ended_runs(store, flower) == [killed.run_id, stopped.run_id]
    page = run_page(store, killed.run_id)
    assert (page.run.status, page.run.reason) == (
        "failed",
        "the aggregator ended without recording it (Flower: finished:failed)",
    )
    assert [e["reason_code"] for e in page.events] == ["ended_unrecorded"]
    assert run_page(store, stopped.run_id).run.status == "stopped"
    for writer in (alive, done, simulated):  # running, or its own writer will say how it ended
        assert run_page(store, writer.run_id).run.status == "running"
    assert record_ended_runs(store, flower) == []  # recorded once
