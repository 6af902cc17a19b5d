"""A coordinator's stop, as the store records it (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from fedrad.common.config import StudyConfig
from fedrad.server.store.reader import run_page
from fedrad.server.store.stops import record_stop
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
