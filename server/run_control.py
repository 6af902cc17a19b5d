"""A coordinator's start and stop of a deployed run from outside `fedrad server start` (the
dashboard). Both go to the aggregator's SuperLink through the connection in its state
folder, as `fedrad server status` does. A run is started only as a new run of a study this
aggregator has already run (its record in STATE/runs): a browser names a run, never a path.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from fedrad.common.flower_processes import flower_env
from fedrad.server.certificates import signing_key_of
from fedrad.server.flwr_cli import StatusUnavailable, ask
from fedrad.server.runs import read_run, record_run
from fedrad.server.superlink import flower_home, stop_command, study_app_project, submit_command


class RunControlFailed(Exception):
    """The aggregator would not start or stop the run; the message says why in a sentence."""


@dataclass(frozen=True)
class RunControl:
    """Start and stop runs on the aggregator whose state folder is `state`."""

    state: Path

    @property
    def _env(self) -> dict[str, str]:
        return flower_env(FLWR_HOME=str(flower_home(self.state)))

    def stop(self, flower_run_id: int) -> None:
        """Ask the SuperLink to stop the run; its ServerApp is ended by Flower."""
        try:
            ask(stop_command(flower_run_id), self._env)
        except StatusUnavailable as exc:
            raise RunControlFailed(f"run {flower_run_id} was not stopped: {exc}") from exc

    def start_like(self, flower_run_id: int, started_by: str) -> int:
        """Submit the study of run `flower_run_id` again, as a new run with a results folder
        of its own (named by when it started); recorded for `fedrad server resume`. The new
        run's Flower run id."""
        record = read_run(self.state, flower_run_id)
        if record is None:
            raise RunControlFailed(
                f"run {flower_run_id} was not submitted from {self.state}: only a study this "
                "aggregator has run can be started again here"
            )
        out_dir = Path(f"{record.out_dir}-{datetime.now(UTC):%Y%m%d-%H%M%S}")
        app_dir = out_dir / "study-app"
        try:
            app_dir.mkdir(parents=True)
            (app_dir / "pyproject.toml").write_text(
                study_app_project(
                    Path(record.study),
                    out_dir,
                    store=record.store,
                    started_by=started_by,
                    signing_key=signing_key_of(record.certificates),
                ),
                encoding="utf-8",
            )
            answer = ask(submit_command(app_dir), self._env)
        except OSError as exc:
            raise RunControlFailed(f"cannot write the new run's folder {out_dir}: {exc}") from exc
        except StatusUnavailable as exc:
            raise RunControlFailed(f"the study was not submitted: {exc}") from exc
        new_id = int(answer["run-id"])
        record_run(self.state, replace(record, run_id=new_id, out_dir=str(out_dir)))
        return new_id
