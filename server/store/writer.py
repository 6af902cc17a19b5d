"""Recording one run as it goes: the ServerApp hands a `RunWriter` to the study as its
observer, so the census, every event and every finished phase is in the store the moment it
happens, and a run that crashes still shows how far it got.

Each write is its own short transaction. A write the database refuses is logged and the study
goes on: results.json stays the run's record of last resort. The writer only adds events;
it offers no way to change or remove one (and the database refuses it too)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from fedrad.common.config import StudyConfig
from fedrad.server.checkpoint import Phase
from fedrad.server.federation import SiteRecord
from fedrad.server.observer import StudyObserver
from fedrad.server.results import finite_or_null
from fedrad.server.store.reasons import reason_code
from fedrad.server.store.schema import (
    Artifact,
    CensusCount,
    Event,
    HarmonizationDiagnostic,
    Metric,
    PhaseRow,
    QcSummary,
    RoundRow,
    Run,
    SelectedFeature,
    Site,
    Study,
    now,
)

SILENT = ("timeout", "offline")  # the reason codes of a site that stopped answering


def _kept_going(write):
    """A write that fails is logged, once per call, and does not stop the study."""

    @functools.wraps(write)
    def guarded(self: RunWriter, *args, **kwargs):
        try:
            return write(self, *args, **kwargs)
        except SQLAlchemyError as exc:
            self.log(f"run store: {write.__name__} not recorded ({type(exc).__name__}: {exc})")
            return None

    return guarded


class RunWriter(StudyObserver):
    """Writes one run of a study into the store."""

    def __init__(
        self,
        engine: Engine,
        mode: str,
        started_by: str | None = None,
        log: Callable[[str], None] = print,
    ):
        self.engine = engine
        self.mode = mode  # simulation or deployment
        self.started_by = started_by
        self.log = log
        self.run_id: int | None = None  # once started

    def start(self, study: StudyConfig, flower_run_id: int | None = None) -> int:
        """A new run of `study`, status "running" (its study row made on its first run).
        Raises if the store cannot take it: the ServerApp then runs without a store."""
        with Session(self.engine) as session, session.begin():
            row = session.scalar(select(Study).where(Study.study_hash == study.study_hash))
            if row is None:
                row = Study(
                    name=study.name,
                    study_hash=study.study_hash,
                    extraction_hash=study.extraction_hash,
                    config=study.model_dump(mode="json"),
                    created_at=now(),
                )
                session.add(row)
                session.flush()
            run = Run(
                study_id=row.id,
                flower_run_id=None if flower_run_id is None else str(flower_run_id),
                mode=self.mode,
                status="running",
                reason="",
                started_at=now(),
                started_by=self.started_by,
            )
            session.add(run)
            session.flush()
            self.run_id = run.id
        return self.run_id

    # -- as the study runs (StudyObserver) ------------------------------------------------------
    @_kept_going
    def census(self, sites: Iterable[SiteRecord]) -> None:
        """Each named site as its census reply described it; unnamed ones (no reply) are
        known only by their events."""
        with Session(self.engine) as session, session.begin():
            for record in sites:
                if not record.name:
                    continue
                site = self._site(session, record)
                for class_name, count in record.cases.items():
                    session.add(
                        CensusCount(
                            run_id=self.run_id,
                            site_id=site.id,
                            class_name=class_name,
                            count=str(count),
                        )
                    )
                session.add(
                    QcSummary(
                        run_id=self.run_id,
                        site_id=site.id,
                        status=record.status,
                        reason=record.reason,
                        features=len(record.features),
                        batches=len(record.batches),
                        sequences_missing=list(record.sequences_missing),
                    )
                )
                if record.status == "included":
                    session.add(self._event("joined", record.name, "census: matches the study"))

    def _site(self, session: Session, record: SiteRecord) -> Site:
        site = session.scalar(select(Site).where(Site.name == record.name))
        if site is None:
            site = Site(name=record.name, registered_at=now())
            session.add(site)
        site.node_id = str(record.node_id)
        site.online = True
        site.last_seen = now()
        site.software_version = "; ".join(record.versions) or None
        site.extraction_hash = record.extraction_hash or None
        site.status, site.reason = record.status, record.reason
        session.flush()
        return site

    @_kept_going
    def event(self, entry: dict) -> None:
        """The event, appended; a site set aside is marked dropped, and offline if it went
        silent (a site that erred or refused still answers)."""
        event = self._event(entry["event"], entry["site"], entry["reason"])
        with Session(self.engine) as session, session.begin():
            session.add(event)
            if entry["event"] == "set aside":
                session.execute(
                    update(Site)
                    .where(Site.name == entry["site"])
                    .values(
                        status="dropped",
                        reason=entry["reason"],
                        online=event.reason_code not in SILENT,
                    )
                )

    def _event(self, event: str, site: str, reason: str) -> Event:
        return Event(
            run_id=self.run_id,
            at=now(),
            event=event,
            site=site,
            reason=reason,
            reason_code=reason_code(event, reason),
        )

    @_kept_going
    def round(self, entry: dict) -> None:
        """A round as it ends: the run's, in no phase yet (live progress)."""
        with Session(self.engine) as session, session.begin():
            (row,) = _rounds(None, [entry])
            row.run_id = self.run_id
            session.add(row)

    @_kept_going
    def phase(self, phase: Phase, loaded: bool = False) -> None:
        """The phase, its rounds (replacing those written live), selection and metrics."""
        with Session(self.engine) as session, session.begin():
            fits = {entry["fit"] for entry in phase.rounds}
            if fits and not loaded:
                session.execute(
                    delete(RoundRow).where(
                        RoundRow.run_id == self.run_id,
                        RoundRow.phase_id.is_(None),
                        RoundRow.fit.in_(fits),
                    )
                )
            position = session.scalar(
                select(func.count()).select_from(PhaseRow).where(PhaseRow.run_id == self.run_id)
            )
            row = PhaseRow(
                run_id=self.run_id,
                position=position + 1,
                kind=phase.kind,
                tag=phase.tag,
                candidates=list(phase.candidates),
                set_aside=dict(phase.set_aside),
                loaded=loaded,
                finished_at=now(),
                traffic=None if loaded else _bytes_by_site(phase.traffic),
            )
            session.add(row)
            session.flush()
            session.add_all(_rounds(row.id, phase.rounds, self.run_id))
            if phase.kind == "fitted":
                session.add_all(_selected(row.id, phase.tag, phase.content))
            if phase.kind == "evaluation":
                session.add_all(self._metrics(phase.content))
            session.execute(
                update(Site).where(Site.name.in_(phase.candidates)).values(last_seen=now())
            )

    def _metrics(self, content: dict) -> list[Metric]:
        def rows(scope: str, subject: str, figures: dict) -> list[Metric]:
            return [
                Metric(
                    run_id=self.run_id,
                    scope=scope,
                    subject=subject,
                    name=name,
                    value=finite_or_null(value),
                )
                for name, value in figures.items()
            ]

        metrics = rows("pooled", "", content["metrics"])
        for site, figures in content["per_site"].items():
            metrics += rows("site", site, figures)
        for fold in content["folds"]:
            metrics += rows("fit", fold["fit"], {k: v for k, v in fold.items() if k != "fit"})
        return metrics

    # -- how the run ended ----------------------------------------------------------------------
    @_kept_going
    def finished(self, results: dict) -> None:
        """The run ran to its results (status "finished"), or stopped as the protocol
        anticipates (results.json's "stopped" form: status "stopped" and its reason)."""
        with Session(self.engine) as session, session.begin():
            run = session.get(Run, self.run_id)
            run.status = results.get("status", "finished")
            run.reason = results.get("reason", "")
            run.ended_at = now()
            run.results = finite_or_null(results)
            harmonization = results.get("harmonization")
            if harmonization and "method" in harmonization:
                session.add(
                    HarmonizationDiagnostic(
                        run_id=self.run_id,
                        method=harmonization["method"],
                        summary=finite_or_null(harmonization),
                    )
                )

    @_kept_going
    def failed(self, reason: str) -> None:
        """The aggregator raised: status "failed", the reason in the run and its event log.
        A run a coordinator stopped stays stopped (its ServerApp fails as Flower ends it)."""
        with Session(self.engine) as session, session.begin():
            run = session.get(Run, self.run_id)
            if run.status == "running":
                run.status, run.reason, run.ended_at = "failed", reason, now()
            session.add(self._event("error", "", reason))

    @_kept_going
    def published(self, results: dict, files: dict[str, Path]) -> None:
        """The results as finally written (a simulation adds its comparisons after the
        ServerApp ends), and the files written, each with its sha256."""
        with Session(self.engine) as session, session.begin():
            session.get(Run, self.run_id).results = finite_or_null(results)
            for kind, path in files.items():
                content = Path(path).read_bytes()
                session.add(
                    Artifact(
                        run_id=self.run_id,
                        kind=kind,
                        path=str(Path(path).resolve()),
                        sha256=hashlib.sha256(content).hexdigest(),
                        size_bytes=len(content),
                        created_at=now(),
                    )
                )


def record_registration(engine: Engine, name: str, node_id: str | None) -> None:
    """A site whose node key the coordinator registered: known (status "registered", not
    yet online) before it ever joins; a site registered again keeps its history."""
    with Session(engine) as session, session.begin():
        site = session.scalar(select(Site).where(Site.name == name))
        if site is None:
            site = Site(name=name, registered_at=now(), online=False, status="registered")
            session.add(site)
        elif site.status == "unregistered":
            site.status = "registered"
        if node_id is not None:
            site.node_id = node_id


def record_unregistration(engine: Engine, name: str) -> None:
    """A site whose node key the coordinator removed: kept with its history, marked
    "unregistered" and offline; registering it again makes it "registered" anew."""
    with Session(engine) as session, session.begin():
        site = session.scalar(select(Site).where(Site.name == name))
        if site is not None:
            site.status, site.online, site.node_id = "unregistered", False, None


def _bytes_by_site(traffic: dict) -> dict | None:
    """Each site's bytes from and to it over every message kind (`Federation.traffic`)."""
    if not traffic:
        return None
    totals: dict[str, dict[str, int]] = {"from": {}, "to": {}}
    for direction, key in (("from", "traffic_bytes_from_sites"), ("to", "traffic_bytes_to_sites")):
        for sizes in traffic.get(key, {}).values():
            for site, size in sizes.items():
                totals[direction][site] = totals[direction].get(site, 0) + size
    return totals


def _rounds(phase_id: int | None, rounds: list[dict], run_id: int | None = None) -> list[RoundRow]:
    return [
        RoundRow(
            phase_id=phase_id,
            run_id=run_id,
            fit=entry["fit"],
            step=entry["phase"],
            number=entry.get("iteration", entry.get("round", 0)),
            measure="deviance" if "deviance" in entry else "train_loss",
            value=finite_or_null(entry.get("deviance", entry.get("train_loss"))),
        )
        for entry in rounds
    ]


def _selected(phase_id: int, fit: str, content: dict) -> list[SelectedFeature]:
    coefficients = content["model"].get("coefficients", {})
    return [
        SelectedFeature(
            phase_id=phase_id,
            fit=fit,
            rank=rank,
            feature=feature,
            coefficient=finite_or_null(coefficients.get(feature)),
        )
        for rank, feature in enumerate(content["selection"].get("kept", []), start=1)
    ]
