"""A study whose aggregator dies continues from its last finished phase: the resumed
results equal an uninterrupted run's (k-fold ridge with ComBat under secure aggregation),
and a checkpoint of another study, or a damaged one, is refused in a sentence."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from fedrad.client.data import SiteData
from fedrad.common.cli import app
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.server.checkpoint import Checkpoint, CheckpointUnusable, read_checkpoint
from fedrad.server.federation import GridTransport
from fedrad.server.runs import RunRecord, record_run
from fedrad.server.study import StudyProtocol
from fedrad.simulations.in_process import in_process_transport
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3),
    harmonization={"method": "combat"},
    validation={"scheme": "kfold", "folds": 3},
)
# how the numbers travelled, which a resumed run repeats in part (census, keys, the phase
# the aggregator died in): not results
NOT_RESULTS = {"traffic_bytes_from_sites", "traffic_bytes_to_sites", "round_counts"}


class AggregatorDied(Exception):
    """The aggregator's process is gone: nothing after this message is asked."""


class DyingTransport(GridTransport):
    """Asks as the in-process federation does, then dies at its `after`-th round."""

    def __init__(self, transport: GridTransport, after: int):
        super().__init__(transport.grid, transport.timeout_s)
        self.after = after

    def ask(self, kind, requests):
        if sum(self.rounds.values()) >= self.after:
            raise AggregatorDied(f"died before round {self.after + 1} ({kind})")
        return super().ask(kind, requests)


def _transport(tables) -> GridTransport:
    """A new run at the sites: fresh contexts (their keys and ledgers start anew)."""
    sites = [SiteData.load(path, name, STUDY) for name, path in tables.items()]
    return in_process_transport(sites, STUDY)


def _run(transport, checkpoint: Checkpoint | None, log=lambda _: None) -> dict:
    results = StudyProtocol(transport, STUDY, 3, log=log, checkpoint=checkpoint).run()
    return json.loads(json.dumps(results))  # as results.json holds it


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return write_site_feature_tables(tmp_path_factory.mktemp("sites"), STUDY)


@pytest.fixture(scope="module")
def uninterrupted(tables, tmp_path_factory):
    """The reference, its saved phases, and the rounds asked when each was saved."""
    transport = _transport(tables)
    checkpoint = Checkpoint.fresh(tmp_path_factory.mktemp("whole") / "checkpoint", STUDY, 1)
    saved_at, save = [], checkpoint.save

    def counting(phase):
        saved_at.append(sum(transport.rounds.values()))
        save(phase)

    checkpoint.save = counting
    results = _run(transport, checkpoint)
    return results, read_checkpoint(checkpoint.folder, STUDY)[1], saved_at


def test_an_uninterrupted_run_saves_every_fit_and_the_evaluation(uninterrupted):
    results, phases, _ = uninterrupted
    saved = [(phase.kind, phase.tag) for phase in phases]
    fits = ["fold 1", "fold 2", "fold 3", "final"]
    assert saved == [
        *(("prepared", tag) for tag in fits),
        *(("fitted", tag) for tag in fits),
        ("evaluation", "evaluation"),
    ]
    final = next(phase for phase in phases if phase.kind == "fitted" and phase.tag == "final")
    # the saved final fit is the fit itself; results hold it recalibrated on the evaluation
    before = results["model"]["recalibration"]["before"]["coefficients"]
    assert final.fitted().model["coefficients"] == before
    assert results["privacy"]["secure_aggregation"] is True


# the aggregator dies one round after the n-th saved phase: in a fit's preparation, in the
# fits' shared Newton rounds, in the evaluation, and in persist / site effects
@pytest.mark.parametrize("after", [1, 4, 8, 9])
def test_a_resumed_study_equals_the_uninterrupted_one(tables, uninterrupted, tmp_path, after):
    reference, _, saved_at = uninterrupted
    folder = tmp_path / "checkpoint"
    with pytest.raises(AggregatorDied):
        dying = DyingTransport(_transport(tables), saved_at[after - 1] + 1)
        _run(dying, Checkpoint.fresh(folder, STUDY, 1))
    _, left = read_checkpoint(folder, STUDY)
    assert len(left) == after
    lines: list[str] = []
    resumed = _run(_transport(tables), Checkpoint.resume(folder, STUDY, run_id=2), lines.append)
    kinds = [phase.kind for phase in left]
    # the fits saved whole are loaded, else those saved prepared; and the evaluation
    loaded = (kinds.count("fitted") or kinds.count("prepared")) + kinds.count("evaluation")
    assert sum("loaded from the checkpoint" in line for line in lines) == loaded
    model, expected = resumed["model"]["coefficients"], reference["model"]["coefficients"]
    assert list(model) == list(expected)
    assert max(abs(model[name] - expected[name]) for name in model) <= 1e-9
    for key in set(reference) - NOT_RESULTS:
        assert resumed[key] == reference[key], key
    # the traffic is both runs': the census was asked twice
    census = reference["traffic_bytes_to_sites"]["census"]
    assert resumed["traffic_bytes_to_sites"]["census"] == {
        site: 2 * size for site, size in census.items()
    }
    assert json.loads((folder / "run.json").read_text())["runs"] == [1, 2]


def test_a_checkpoint_of_another_study_is_refused(uninterrupted, tmp_path):
    folder = tmp_path / "checkpoint"
    Checkpoint.fresh(folder, STUDY, run_id=1)
    other = STUDY.updated(validation={"folds": 4})
    with pytest.raises(CheckpointUnusable, match=r"is of study .* not of this study .* resume it"):
        Checkpoint.resume(folder, other, run_id=2)


def test_a_finished_study_is_not_resumed(tmp_path):
    folder = tmp_path / "checkpoint"
    Checkpoint.fresh(folder, STUDY, run_id=1).finish()
    finished = r"finished \(its results are in .*results.json\); there is nothing to resume"
    with pytest.raises(CheckpointUnusable, match=finished):
        Checkpoint.resume(folder, STUDY, run_id=2)


@pytest.mark.parametrize("damage", ["json", "npz"])
def test_a_damaged_checkpoint_file_is_a_sentence(uninterrupted, tmp_path, damage):
    folder = tmp_path / "checkpoint"
    checkpoint = Checkpoint.fresh(folder, STUDY, run_id=1)
    for phase in uninterrupted[1][:2]:
        checkpoint.save(phase)
    saved = sorted(folder.glob(f"001-*.{damage}"))[0]
    raw = bytearray(saved.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    saved.write_bytes(bytes(raw))
    with pytest.raises(CheckpointUnusable, match=f"{saved.name}.*remove it to redo that phase"):
        Checkpoint.resume(folder, STUDY, run_id=2)


def test_the_privacy_budget_counts_every_release_of_the_dead_run(tmp_path):
    """Charged as asked, so a phase the dead run had not finished counts too."""
    folder = tmp_path / "checkpoint"
    noised = STUDY.updated(differential_privacy={"noise_multiplier": 2.0})
    budget = Checkpoint.fresh(folder, noised, run_id=1).budget(noised.differential_privacy)
    budget.spend(3)
    resumed = Checkpoint.resume(folder, noised, run_id=2).budget(noised.differential_privacy)
    assert resumed.releases == 3
    assert resumed.epsilon == pytest.approx(budget.epsilon)
    (folder / "budget.json").write_text('{"releases": "many"}')
    with pytest.raises(CheckpointUnusable, match="budget.json holds no count of releases"):
        Checkpoint.resume(folder, noised, run_id=3)


def _resume(tmp_path, run: int, checkpoint=None):
    """`fedrad server resume RUN` on a state that recorded run 7 of STUDY, whose results
    folder holds what `checkpoint(folder)` leaves there."""
    study_path = tmp_path / "study.yaml"
    study_path.write_text(yaml.safe_dump(STUDY.model_dump(mode="json")))
    state, out = tmp_path / "state", tmp_path / "results"
    record_run(state, RunRecord(7, str(study_path), str(out), None, 8000))
    if checkpoint is not None:
        checkpoint(out / "checkpoint", StudyConfig.from_yaml(str(study_path)))
    result = CliRunner().invoke(app, ["server", "resume", str(run), "--state", str(state)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return " ".join(result.output.split())


def test_resume_names_an_unknown_run_and_the_runs_it_knows(tmp_path):
    assert "no run 8 was submitted from" in _resume(tmp_path, 8)
    assert "(runs recorded there: 7)" in _resume(tmp_path, 8)


def test_resume_says_a_run_without_a_checkpoint_cannot_resume(tmp_path):
    assert "run 7 cannot be resumed: there is no checkpoint in" in _resume(tmp_path, 7)


def test_resume_says_a_run_that_saved_no_phase_must_start_again(tmp_path):
    output = _resume(tmp_path, 7, lambda folder, study: Checkpoint.fresh(folder, study, 7))
    assert "stopped before it finished a phase" in output and "fedrad server start" in output


def test_resume_says_a_finished_run_is_over(tmp_path):
    output = _resume(tmp_path, 7, lambda f, study: Checkpoint.fresh(f, study, 7).finish())
    assert "run 7 finished; its results are in" in output and "results.json" in output
