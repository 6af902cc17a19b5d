"""A store for the dashboard's tests: one run of a small in-process study recorded to its
end, and a second run of it left running with its census and first phase, to which a test
can add the phases the first run finished (live progress). In the running run's census
site03 sent its HGG count suppressed ("<3") and so its BM count as a bound (">=3"), as a
site with too few cases would. Tokens:
one per role."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from conftest import site_grid
from flwr.app import Context, RecordDict

from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.server.app import make_server_app
from fedrad.server.dashboard.tokens import Role, add_token
from fedrad.server.store.engine import open_store
from fedrad.server.store.reader import run_results
from fedrad.server.store.writer import RunWriter
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3),
    validation={"scheme": "kfold", "folds": 3},
)


class _KeepingWriter(RunWriter):
    """A writer that also keeps what it was told, to replay it into a running run."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sites, self.phases = [], []

    def census(self, sites):
        self.sites = list(sites)
        super().census(self.sites)

    def phase(self, phase, loaded=False):
        self.phases.append(phase)
        super().phase(phase, loaded)


@dataclass
class RecordedStore:
    url: str
    engine: object
    finished_run: int
    running: RunWriter
    phases_to_come: list = field(default_factory=list)
    viewer: str = ""
    coordinator: str = ""

    def advance(self) -> None:
        """The running run finishes one more phase."""
        self.running.phase(self.phases_to_come.pop(0))

    def finish(self) -> None:
        """The running run finishes its other phases and ends with the first run's results."""
        while self.phases_to_come:
            self.advance()
        self.running.finished(run_results(self.engine, self.finished_run))


def recorded_store(folder) -> RecordedStore:
    url = f"sqlite:///{folder / 'runs.db'}"
    engine = open_store(url)
    tables = write_site_feature_tables(folder / "sites", STUDY, sizes=(40, 36, 44))
    recorder = _KeepingWriter(engine, "simulation", started_by="coordinator", log=lambda _: None)
    server = make_server_app(
        STUDY, on_results=lambda _: None, expected_sites=3, log=lambda _: None, store=recorder
    )
    context = Context(run_id=7, node_id=0, node_config={}, state=RecordDict(), run_config={})
    server(site_grid(tables, STUDY), context)
    running = RunWriter(engine, "simulation", started_by="coordinator", log=lambda _: None)
    running.start(STUDY, flower_run_id=8)
    *others, last = recorder.sites
    running.census([*others, replace(last, cases={"HGG": "<3", "BM": ">=3"})])
    running.phase(recorder.phases[0])
    return RecordedStore(
        url=url,
        engine=engine,
        finished_run=recorder.run_id,
        running=running,
        phases_to_come=recorder.phases[1:],
        viewer=add_token(engine, "vera", Role.viewer),
        coordinator=add_token(engine, "cora", Role.coordinator),
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A recorded store per test module that imports this fixture."""
    recorded = recorded_store(tmp_path_factory.mktemp("store"))
    yield recorded
    recorded.engine.dispose()
