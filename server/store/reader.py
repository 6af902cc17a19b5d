"""Reading the store page by page: what a dashboard's overview, site and run pages show, as
plain dataclasses (dicts and lists inside), so any front end or `fedrad show` can render them
without SQL. Metrics come back in results.json's shape, so a page and the file agree."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

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
)


@dataclass(frozen=True)
class SiteSummary:
    name: str
    node_id: str | None
    registered_at: datetime
    online: bool
    last_seen: datetime | None
    software_version: str | None
    extraction_hash: str | None
    status: str
    reason: str


@dataclass(frozen=True)
class RunSummary:
    id: int
    study: str
    study_hash: str
    flower_run_id: str | None
    mode: str
    status: str
    reason: str
    started_at: datetime
    ended_at: datetime | None
    started_by: str | None


@dataclass(frozen=True)
class Overview:
    sites: list[SiteSummary]
    runs: list[RunSummary]  # newest first


@dataclass(frozen=True)
class SitePage:
    site: SiteSummary
    census: list[dict]  # per run: {"run", "cases": {class: count as sent}}
    qc: list[dict]  # per run: status, reason, features, batches, sequences_missing
    events: list[dict]


@dataclass(frozen=True)
class RunPage:
    run: RunSummary
    phases: list[dict]  # in order, each with its rounds
    metrics: dict  # {"federated": pooled, "per_site": {site: figures}, "fits": {tag: figures}}
    selected_features: dict[str, list[dict]]  # fit -> [{"feature", "coefficient"}] in order
    harmonization: dict | None
    events: list[dict]
    artifacts: list[dict]
    census: dict[str, dict[str, str]] = field(default_factory=dict)  # site -> class -> count
    live_rounds: list[dict] = field(default_factory=list)  # of fits whose phase has not ended


def overview(engine: Engine) -> Overview:
    with Session(engine) as session:
        sites = session.scalars(select(Site).order_by(Site.name))
        runs = session.execute(
            select(Run, Study).join(Study, Run.study_id == Study.id).order_by(Run.id.desc())
        )
        return Overview(
            sites=[_site(site) for site in sites],
            runs=[_run(run, study) for run, study in runs],
        )


def site_page(engine: Engine, name: str) -> SitePage | None:
    with Session(engine) as session:
        site = session.scalar(select(Site).where(Site.name == name))
        if site is None:
            return None
        census: dict[int, dict[str, str]] = {}
        for row in session.scalars(
            select(CensusCount).where(CensusCount.site_id == site.id).order_by(CensusCount.id)
        ):
            census.setdefault(row.run_id, {})[row.class_name] = row.count
        qc = session.scalars(
            select(QcSummary).where(QcSummary.site_id == site.id).order_by(QcSummary.run_id)
        )
        events = session.scalars(select(Event).where(Event.site == name).order_by(Event.id))
        return SitePage(
            site=_site(site),
            census=[{"run": run, "cases": cases} for run, cases in census.items()],
            qc=[
                {
                    "run": row.run_id,
                    "status": row.status,
                    "reason": row.reason,
                    "features": row.features,
                    "batches": row.batches,
                    "sequences_missing": row.sequences_missing,
                }
                for row in qc
            ],
            events=[_event(event) for event in events],
        )


def run_summary(engine: Engine, run_id: int) -> RunSummary | None:
    """One run's row (no phases nor results): what starting or stopping it needs."""
    with Session(engine) as session:
        found = session.execute(
            select(Run, Study).join(Study, Run.study_id == Study.id).where(Run.id == run_id)
        ).first()
        return None if found is None else _run(*found)


def run_page(engine: Engine, run_id: int) -> RunPage | None:
    with Session(engine) as session:
        found = session.execute(
            select(Run, Study).join(Study, Run.study_id == Study.id).where(Run.id == run_id)
        ).first()
        if found is None:
            return None
        phases = list(
            session.scalars(
                select(PhaseRow).where(PhaseRow.run_id == run_id).order_by(PhaseRow.position)
            )
        )
        phase_ids = [phase.id for phase in phases]
        rounds = session.scalars(
            select(RoundRow).where(RoundRow.phase_id.in_(phase_ids)).order_by(RoundRow.id)
        )
        by_phase: dict[int, list[dict]] = {}
        for row in rounds:
            by_phase.setdefault(row.phase_id, []).append(_round(row))
        live = session.scalars(
            select(RoundRow)
            .where(RoundRow.run_id == run_id, RoundRow.phase_id.is_(None))
            .order_by(RoundRow.id)
        )
        live_rounds = [_round(row) for row in live]
        selected: dict[str, list[dict]] = {}
        for row in session.scalars(
            select(SelectedFeature)
            .where(SelectedFeature.phase_id.in_(phase_ids))
            .order_by(SelectedFeature.phase_id, SelectedFeature.rank)
        ):
            selected.setdefault(row.fit, []).append(
                {"feature": row.feature, "coefficient": row.coefficient}
            )
        harmonization = session.scalar(
            select(HarmonizationDiagnostic).where(HarmonizationDiagnostic.run_id == run_id)
        )
        census: dict[str, dict[str, str]] = {}
        for count, site in session.execute(
            select(CensusCount, Site)
            .join(Site, CensusCount.site_id == Site.id)
            .where(CensusCount.run_id == run_id)
            .order_by(Site.name, CensusCount.id)
        ):
            census.setdefault(site.name, {})[count.class_name] = count.count
        return RunPage(
            run=_run(*found),
            phases=_with_bytes(
                [_phase(phase, by_phase.get(phase.id, [])) for phase in phases], phases
            ),
            metrics=_metrics(session, run_id),
            selected_features=selected,
            harmonization=None if harmonization is None else harmonization.summary,
            events=[
                _event(e)
                for e in session.scalars(
                    select(Event).where(Event.run_id == run_id).order_by(Event.id)
                )
            ],
            artifacts=[
                {"kind": a.kind, "path": a.path, "sha256": a.sha256, "size_bytes": a.size_bytes}
                for a in session.scalars(
                    select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.id)
                )
            ],
            census=census,
            live_rounds=live_rounds,
        )


def run_results(engine: Engine, run_id: int | None = None) -> dict | None:
    """The results.json of a run (the newest finished or stopped one by default), or None."""
    with Session(engine) as session:
        query = select(Run.results).where(Run.results.is_not(None))
        if run_id is not None:
            query = query.where(Run.id == run_id)
        return session.scalar(query.order_by(Run.id.desc()).limit(1))


def _metrics(session: Session, run_id: int) -> dict:
    metrics: dict = {"federated": {}, "per_site": {}, "fits": {}}
    for row in session.scalars(select(Metric).where(Metric.run_id == run_id).order_by(Metric.id)):
        if row.scope == "pooled":
            metrics["federated"][row.name] = row.value
        else:
            group = metrics["per_site" if row.scope == "site" else "fits"]
            group.setdefault(row.subject, {})[row.name] = row.value
    return metrics


def _site(site: Site) -> SiteSummary:
    return SiteSummary(
        name=site.name,
        node_id=site.node_id,
        registered_at=site.registered_at,
        online=site.online,
        last_seen=site.last_seen,
        software_version=site.software_version,
        extraction_hash=site.extraction_hash,
        status=site.status,
        reason=site.reason,
    )


def _run(run: Run, study: Study) -> RunSummary:
    return RunSummary(
        id=run.id,
        study=study.name,
        study_hash=study.study_hash,
        flower_run_id=run.flower_run_id,
        mode=run.mode,
        status=run.status,
        reason=run.reason,
        started_at=run.started_at,
        ended_at=run.ended_at,
        started_by=run.started_by,
    )


def _phase(phase: PhaseRow, rounds: list[dict]) -> dict:
    return {
        "position": phase.position,
        "kind": phase.kind,
        "tag": phase.tag,
        "candidates": phase.candidates,
        "set_aside": phase.set_aside,
        "loaded": phase.loaded,
        "finished_at": phase.finished_at,
        "rounds": rounds,
    }


def _with_bytes(views: list[dict], phases: list[PhaseRow]) -> list[dict]:
    """Each phase with the bytes each site sent ("from") and received ("to") during it: the
    difference from the phase before (the first phase's include the census). A phase
    loaded from a checkpoint, or recorded before the store kept bytes, has none."""
    before: dict[str, dict[str, int]] = {"from": {}, "to": {}}
    for view, phase in zip(views, phases, strict=True):
        view["bytes"] = None
        if phase.traffic is None:
            continue
        view["bytes"] = {
            direction: {
                site: size - before[direction].get(site, 0)
                for site, size in phase.traffic[direction].items()
            }
            for direction in ("from", "to")
        }
        before = phase.traffic
    return views


def _round(row: RoundRow) -> dict:
    number = "iteration" if row.step == "newton" else "round"
    return {"fit": row.fit, "phase": row.step, number: row.number, row.measure: row.value}


def _event(event: Event) -> dict:
    return {
        "at": event.at,
        "run": event.run_id,
        "event": event.event,
        "site": event.site,
        "reason": event.reason,
        "reason_code": event.reason_code,
    }
