"""Each finished phase of a deployed study, kept in its results folder, so that a study
whose aggregator died continues from there (`fedrad server resume`, docs/protocol.md 8).

A phase is one JSON file (what it found, the sites it started with, the events, set-asides
and Newton rounds it caused, the traffic so far) and, for a fitted pipeline, one npz of
its arrays; no pickle, so reading a checkpoint never runs code. Files are written whole
(temp file + rename), the npz before the JSON that names its digest. `run.json` names the
study (by hash: another study's checkpoint is refused) and the runs that wrote here.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedrad.common.config import DifferentialPrivacySettings, StudyConfig
from fedrad.common.differential_privacy import Budget
from fedrad.common.pipeline import PipelineParams
from fedrad.server.phases.evaluation import FittedPipeline

RUN_FILE = "run.json"
BUDGET_FILE = "budget.json"


class CheckpointUnusable(Exception):
    """A checkpoint that cannot be continued from; the message says why, in one sentence."""


@dataclass
class Phase:
    """One finished phase: `kind` is "prepared" (a fit's harmonization, selection and
    scaling, before its model), "fitted" (a whole fit) or "evaluation"."""

    kind: str
    tag: str
    candidates: list[str]  # the sites it started with, by name
    content: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    set_aside: dict[str, str] = field(default_factory=dict)  # site -> why, during the phase
    rounds: list[dict] = field(default_factory=list)
    traffic: dict = field(default_factory=dict)  # every run's bytes and rounds so far

    def params(self) -> PipelineParams:
        return PipelineParams.from_fields(self.arrays, self.content["values"])

    def fitted(self) -> FittedPipeline:
        content = self.content
        return FittedPipeline(
            params=self.params(),
            model=content["model"],
            sites=content["sites"],
            selection=content["selection"],
            threshold=content["threshold"],
        )


def fitted_content(fitted: FittedPipeline) -> tuple[dict, dict[str, np.ndarray]]:
    arrays, values = fitted.params.to_fields()
    content = {
        "values": values,
        "model": fitted.model,
        "sites": fitted.sites,
        "selection": fitted.selection,
        "threshold": fitted.threshold,
    }
    return content, arrays


class Checkpoint:
    """The checkpoint folder of one study's results: phases saved as they finish, and on
    resume the phases an earlier run of the same study finished."""

    def __init__(self, folder: Path, study: StudyConfig, phases: list[Phase], resumed: bool):
        self.folder = folder
        self.study = study
        self.phases = phases
        self.resumed = resumed
        # the bytes and rounds of the earlier runs, as of their last saved phase
        self.earlier_traffic: dict = phases[-1].traffic if phases else {}
        # the noised releases the earlier runs charged (differential privacy)
        self.earlier_releases = 0

    @classmethod
    def fresh(cls, folder: Path, study: StudyConfig, run_id: int) -> Checkpoint:
        """A new study's checkpoint: what an earlier study left in the folder goes."""
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if old.is_file():
                old.unlink()
        _write(folder / RUN_FILE, _run_record(study, [run_id]))
        return cls(folder, study, [], resumed=False)

    @classmethod
    def resume(cls, folder: Path, study: StudyConfig, run_id: int) -> Checkpoint:
        """The checkpoint of an interrupted run of `study`, continued by run `run_id`.
        Raises CheckpointUnusable (a sentence) for another study's, a finished or
        corrupt one."""
        record, phases = read_checkpoint(folder, study)
        if record["finished"]:
            raise CheckpointUnusable(
                f"the study in {folder.parent} finished (its results are in "
                f"{folder.parent / 'results.json'}); there is nothing to resume"
            )
        checkpoint = cls(folder, study, phases, resumed=True)
        if (folder / BUDGET_FILE).exists():
            releases = _read_json(folder / BUDGET_FILE).get("releases")
            if not isinstance(releases, int) or releases < 0:
                raise CheckpointUnusable(f"{folder / BUDGET_FILE} holds no count of releases")
            checkpoint.earlier_releases = releases
        record["runs"].append(run_id)
        _write(folder / RUN_FILE, record)
        return checkpoint

    # -- reading --------------------------------------------------------------------------------
    def find(self, kind: str, tag: str) -> Phase | None:
        """The latest saved phase of this kind and fit (a resumed run may have redone it)."""
        found = [phase for phase in self.phases if phase.kind == kind and phase.tag == tag]
        return found[-1] if found else None

    def budget(self, settings: DifferentialPrivacySettings) -> Budget:
        """The study's privacy budget, with every release the earlier runs charged."""
        return RecordedBudget(settings, self.folder / BUDGET_FILE, self.earlier_releases)

    # -- writing --------------------------------------------------------------------------------
    def save(self, phase: Phase) -> None:
        numbers = [int(path.name[:3]) for path in self.folder.glob("[0-9][0-9][0-9]-*.json")]
        stem = f"{max(numbers, default=-1) + 1:03d}-{phase.kind}-{_slug(phase.tag)}"
        digest = ""
        if phase.arrays:
            buffer = io.BytesIO()
            np.savez(buffer, **phase.arrays)
            raw = buffer.getvalue()
            _write_bytes(self.folder / f"{stem}.npz", raw)
            digest = hashlib.sha256(raw).hexdigest()
        record = {
            "study_hash": self.study.study_hash,
            "kind": phase.kind,
            "tag": phase.tag,
            "candidates": phase.candidates,
            "content": phase.content,
            "arrays_sha256": digest,
            "events": phase.events,
            "set_aside": phase.set_aside,
            "rounds": phase.rounds,
            "traffic": phase.traffic,
        }
        _write(self.folder / f"{stem}.json", record)
        self.phases.append(phase)

    def finish(self) -> None:
        """Mark the study complete, its results written: it is not resumed again."""
        record = _read_json(self.folder / RUN_FILE)
        record["finished"] = True
        _write(self.folder / RUN_FILE, record)


class RecordedBudget(Budget):
    """A budget that writes its release count at every charge, so a resumed run counts
    the releases of a phase the dead run had not finished too."""

    def __init__(self, settings: DifferentialPrivacySettings, path: Path, releases: int):
        self.path = path
        super().__init__(settings, releases)

    def spend(self, releases: int = 1) -> None:
        super().spend(releases)
        _write(self.path, {"releases": self.releases})


def read_checkpoint(folder: Path, study: StudyConfig) -> tuple[dict, list[Phase]]:
    """(run record, saved phases in order) of the checkpoint in `folder`, checked to be
    `study`'s and whole. Raises CheckpointUnusable with a sentence otherwise."""
    run_path = folder / RUN_FILE
    if not run_path.is_file():
        raise CheckpointUnusable(
            f"there is no checkpoint in {folder}: the study was not started by this "
            "version of FedRad, or its results folder was emptied"
        )
    record = _read_json(run_path)
    if record.get("study_hash") != study.study_hash:
        raise CheckpointUnusable(
            f"the checkpoint in {folder} is of study {record.get('study')!r} "
            f"(hash {str(record.get('study_hash'))[:12]}), not of this study {study.name!r} "
            f"(hash {study.study_hash[:12]}); resume it with the study it was started with"
        )
    phases = []
    for path in sorted(folder.glob("[0-9][0-9][0-9]-*.json")):
        saved = _read_json(path)
        if saved.get("study_hash") != study.study_hash:
            raise CheckpointUnusable(f"{path} is of another study; remove it to go on")
        try:
            phases.append(_phase(saved, path))
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise CheckpointUnusable(
                f"{path} is damaged ({type(exc).__name__}: {exc}); remove it to redo that phase"
            ) from exc
    return record, phases


def _phase(saved: dict, path: Path) -> Phase:
    arrays = {}
    if saved["arrays_sha256"]:
        raw = path.with_suffix(".npz").read_bytes()
        if hashlib.sha256(raw).hexdigest() != saved["arrays_sha256"]:
            raise ValueError(f"{path.with_suffix('.npz').name} is not the file saved with it")
        with np.load(io.BytesIO(raw), allow_pickle=False) as loaded:
            arrays = {name: loaded[name] for name in loaded.files}
    phase = Phase(
        kind=str(saved["kind"]),
        tag=str(saved["tag"]),
        candidates=list(saved["candidates"]),
        content=dict(saved["content"]),
        arrays=arrays,
        events=list(saved["events"]),
        set_aside=dict(saved["set_aside"]),
        rounds=list(saved["rounds"]),
        traffic=dict(saved["traffic"]),
    )
    if phase.kind == "fitted":
        phase.fitted()
    elif phase.kind == "prepared":
        phase.params()
    return phase


def merged_traffic(earlier: dict, now: dict) -> dict:
    """Bytes per kind and site (and rounds per kind) of earlier runs added to this run's."""
    merged = json.loads(json.dumps(now))
    for key, table in earlier.items():
        into = merged.setdefault(key, {})
        for kind, value in table.items():
            if isinstance(value, dict):
                sizes = into.setdefault(kind, {})
                for site, size in value.items():
                    sizes[site] = sizes.get(site, 0) + size
            else:
                into[kind] = into.get(kind, 0) + value
    return merged


def _run_record(study: StudyConfig, runs: list[int]) -> dict:
    return {"study": study.name, "study_hash": study.study_hash, "runs": runs, "finished": False}


def _slug(tag: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", tag.lower()).strip("-")


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointUnusable(
            f"{path} cannot be read ({exc}); if it is a phase's file, remove it to redo that phase"
        ) from exc
    if not isinstance(content, dict):
        raise CheckpointUnusable(f"{path} holds no checkpoint (not a JSON object)")
    return content


def _write(path: Path, content: dict) -> None:
    _write_bytes(path, json.dumps(content, indent=1).encode())


def _write_bytes(path: Path, raw: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(raw)
    partial.replace(path)
