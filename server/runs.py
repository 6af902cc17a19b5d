"""What `fedrad server start` records of each study it submits (STATE/runs/<run id>.json),
so that `fedrad server resume RUN` finds the study, its results folder and the SuperLink's
command line again."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from fedrad.server.certificates import FederationCertificates


@dataclass(frozen=True)
class RunRecord:
    run_id: int
    study: str  # the study YAML, absolute
    out_dir: str  # results.json and checkpoint/, absolute
    keys: str | None  # the folder of `fedrad keys init`; None: plain text (--insecure)
    port: int
    store: str | None = None  # the run store's URL (None in records made before it)

    @property
    def certificates(self) -> FederationCertificates | None:
        return None if self.keys is None else FederationCertificates(Path(self.keys))


def runs_folder(state: Path) -> Path:
    return state / "runs"


def record_run(state: Path, record: RunRecord) -> None:
    folder = runs_folder(state)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{record.run_id}.json").write_text(json.dumps(asdict(record), indent=1))


def read_run(state: Path, run_id: int) -> RunRecord | None:
    """The record of run `run_id`, or None if it was not submitted from `state`."""
    path = runs_folder(state) / f"{run_id}.json"
    if not path.is_file():
        return None
    return RunRecord(**json.loads(path.read_text()))


def known_runs(state: Path) -> list[str]:
    return sorted(path.stem for path in runs_folder(state).glob("*.json"))
