"""How a run ended, written from outside it: stopped by a coordinator from the dashboard,
or ended by Flower (failed, stopped) without its ServerApp living to say so. In both, the
run's own writer cannot record the end; once recorded, it leaves it (`RunWriter.failed`)."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fedrad.server.store.reasons import reason_code
from fedrad.server.store.schema import Event, Run, now


def record_stop(engine: Engine, run_id: int, by: str) -> None:
    """Status "stopped", with who stopped it in its reason and in the event log."""
    with Session(engine) as session, session.begin():
        _end(session, session.get(Run, run_id), "stopped", f"stopped by {by} from the dashboard")


# Flower's end states of a run whose ServerApp did not live to record its end itself.
_ENDED_UNRECORDED = {"finished:failed": "failed", "finished:stopped": "stopped"}


def record_ended_runs(engine: Engine, flower_statuses: dict[str, str]) -> list[int]:
    """Deployed runs the store still calls running although Flower (`flwr ls`: Flower run
    id -> status) has ended them, failed or stopped (an aggregator killed, a run stopped
    with `flwr stop`): recorded as Flower says, with why. Their store ids."""
    ended = []
    with Session(engine) as session, session.begin():
        running = session.scalars(
            select(Run).where(Run.status == "running", Run.mode == "deployment")
        )
        for run in running:
            flower_status = flower_statuses.get(str(run.flower_run_id), "")
            if flower_status not in _ENDED_UNRECORDED:
                continue
            reason = f"the aggregator ended without recording it (Flower: {flower_status})"
            _end(session, run, _ENDED_UNRECORDED[flower_status], reason, event="ended")
            ended.append(run.id)
    return ended


def _end(session: Session, run: Run, status: str, reason: str, event: str = "stopped") -> None:
    run.status, run.reason, run.ended_at = status, reason, now()
    session.add(
        Event(
            run_id=run.id, at=now(), event=event, site="", reason=reason,
            reason_code=reason_code(event, reason),
        )
    )  # fmt: skip
