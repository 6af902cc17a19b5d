"""What a study tells its observer as it runs: every round of a fit before the phase that
holds it ends, so a long fit shows progress; the rounds told are the results' rounds."""

from __future__ import annotations

from fedrad.client.data import SiteData
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.server.observer import StudyObserver
from fedrad.server.study import StudyProtocol
from fedrad.simulations.in_process import in_process_transport
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3, secure_aggregation=False),
    validation={"scheme": "kfold", "folds": 3},
    model={"ridge_lambda": 1.0},
)


class _Told(StudyObserver):
    def __init__(self):
        self.told: list[tuple[str, object]] = []

    def round(self, entry):
        self.told.append(("round", entry))

    def phase(self, phase, loaded=False):
        self.told.append(("phase", phase))


def test_each_round_is_told_as_it_ends_before_the_phase_that_holds_it(tmp_path):
    tables = write_site_feature_tables(tmp_path, STUDY, sizes=(40, 36, 44))
    sites = [SiteData.load(path, name, STUDY) for name, path in tables.items()]
    observer = _Told()
    results = StudyProtocol(
        in_process_transport(sites, STUDY), STUDY, log=lambda _: None, observer=observer
    ).run()
    rounds = [entry for what, entry in observer.told if what == "round"]

    def order(entry):  # lockstep tells the fits' rounds interleaved; results keep fit order
        return entry["fit"], entry.get("iteration", entry.get("round"))

    assert sorted(rounds, key=order) == sorted(results["rounds"], key=order) and rounds
    for position, (what, phase) in enumerate(observer.told):
        if what == "phase":  # its rounds were all told before it
            earlier = [entry for kind, entry in observer.told[:position] if kind == "round"]
            assert all(entry in earlier for entry in phase.rounds)
    first_fitted = next(
        i for i, (w, p) in enumerate(observer.told) if w == "phase" and p.kind == "fitted"
    )
    assert any(w == "round" for w, _ in observer.told[:first_fitted])  # progress before it
