"""What a coordinator writes into the store: a run stopped from the dashboard. The run's
ServerApp is ended by Flower, so it cannot record the stop itself; the run's writer then
leaves the status as it is (`RunWriter.failed`)."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from fedrad.server.store.reasons import reason_code
from fedrad.server.store.schema import Event, Run, now


def record_stop(engine: Engine, run_id: int, by: str) -> None:
    """Status "stopped", with who stopped it in its reason and in the event log."""
    reason = f"stopped by {by} from the dashboard"
    with Session(engine) as session, session.begin():
        run = session.get(Run, run_id)
        run.status, run.reason, run.ended_at = "stopped", reason, now()
        session.add(
            Event(
                run_id=run_id, at=now(), event="stopped", site="", reason=reason,
                reason_code=reason_code("stopped", reason),
            )
        )  # fmt: skip
