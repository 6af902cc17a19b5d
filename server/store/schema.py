"""The run store's tables (SQLAlchemy 2 ORM): the aggregator's sites, studies and runs, each
run's census, phases, rounds, metrics, selection, harmonization and artifacts, and its
append-only event log. They hold only what the aggregator already receives and writes to
results.json (docs/store.md, docs/privacy.md), so the store never widens what leaves a site.

The migrations in migrations/versions/ build exactly these tables (a test compares them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        Any: JSON,
        datetime: DateTime(timezone=True),
        str: String(500),
    }


class Site(Base):
    """A site the aggregator has met, by the name its census gave; its latest state."""

    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    node_id: Mapped[str | None]  # Flower's node id: an unsigned 64-bit number, kept as text
    registered_at: Mapped[datetime]
    online: Mapped[bool]
    last_seen: Mapped[datetime | None]
    software_version: Mapped[str | None]  # the extractor versions its census reported
    extraction_hash: Mapped[str | None]
    status: Mapped[str]  # in its latest run: included, refused, failed, dropped
    reason: Mapped[str] = mapped_column(Text, default="")


class Study(Base):
    """A study config, by its hash: every run of the same study shares one row."""

    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    study_hash: Mapped[str] = mapped_column(String(128), unique=True)
    extraction_hash: Mapped[str]
    config: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class Run(Base):
    """One run of a study: running, then finished, stopped (the protocol could not go on)
    or failed (the aggregator raised); `results` is its results.json once it has one."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    flower_run_id: Mapped[str | None]
    mode: Mapped[str]  # simulation or deployment
    status: Mapped[str]
    reason: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    started_by: Mapped[str | None]  # added by migration 0002
    results: Mapped[dict[str, Any] | None]


class CensusCount(Base):
    """A site's case count of one class in one run, exactly as it sent it ("12" or "<5")."""

    __tablename__ = "census_counts"
    __table_args__ = (UniqueConstraint("run_id", "site_id", "class_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    class_name: Mapped[str]
    count: Mapped[str] = mapped_column(String(32))  # text: a suppressed cell is never a number


class QcSummary(Base):
    """What a site's census says of its table's quality: its status in the run, why, how many
    features and batches it offers, the sequences it lacks. Per-case QC stays at the site."""

    __tablename__ = "qc_summaries"
    __table_args__ = (UniqueConstraint("run_id", "site_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    status: Mapped[str]
    reason: Mapped[str] = mapped_column(Text, default="")
    features: Mapped[int]
    batches: Mapped[int]
    sequences_missing: Mapped[list[Any]]


class PhaseRow(Base):
    """A finished phase of a run, in order: "prepared", "fitted" or "evaluation" and its fit."""

    __tablename__ = "phases"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    position: Mapped[int]
    kind: Mapped[str]
    tag: Mapped[str]
    candidates: Mapped[list[Any]]  # the sites it started from
    set_aside: Mapped[dict[str, Any]]  # site -> why, during the phase
    loaded: Mapped[bool]  # from an earlier run's checkpoint, not computed in this run
    finished_at: Mapped[datetime]
    # {"from": {site: bytes}, "to": {...}} this run had exchanged by the phase's end (0003)
    traffic: Mapped[dict[str, Any] | None]


class RoundRow(Base):
    """One round of a fit: a Newton iteration's deviance or an MLP round's training loss.
    Written as it ends, with its run and no phase; its phase's rows replace it when the
    phase ends (0004)."""

    __tablename__ = "rounds"
    id: Mapped[int] = mapped_column(primary_key=True)
    phase_id: Mapped[int | None] = mapped_column(ForeignKey("phases.id"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", name="fk_rounds_run_id_runs"))
    fit: Mapped[str]
    step: Mapped[str]  # newton or mlp
    number: Mapped[int]
    measure: Mapped[str]  # deviance or train_loss
    value: Mapped[Any]  # JSON: null where not finite


class Metric(Base):
    """A pooled, per-site or per-fit figure of a run's evaluation, as results.json holds it
    (a number, an interval, or the calibration's fields)."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "scope", "subject", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    scope: Mapped[str]  # pooled, site or fit
    subject: Mapped[str]  # the site's name or the fit's tag; "" when pooled
    name: Mapped[str]
    value: Mapped[Any]


class SelectedFeature(Base):
    """A feature a fit kept, in selection order, and its model coefficient (None for a model
    without one per feature, e.g. an MLP)."""

    __tablename__ = "selected_features"
    id: Mapped[int] = mapped_column(primary_key=True)
    phase_id: Mapped[int] = mapped_column(ForeignKey("phases.id"))
    fit: Mapped[str]
    rank: Mapped[int]
    feature: Mapped[str]
    coefficient: Mapped[Any]


class HarmonizationDiagnostic(Base):
    """The final model's site effects before and after harmonization (results.json's)."""

    __tablename__ = "harmonization_diagnostics"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), unique=True)
    method: Mapped[str]
    summary: Mapped[dict[str, Any]]


class Artifact(Base):
    """A file a run wrote (results.json, report.html): where, and its sha256."""

    __tablename__ = "artifacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    kind: Mapped[str]
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int]
    created_at: Mapped[datetime]


class Event(Base):
    """One entry of the event log: joins, refusals, drops, skips and errors, each with its
    reason and a reason code. Append-only: the database refuses an update or a delete
    (a trigger made by the baseline migration)."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    at: Mapped[datetime]
    event: Mapped[str]
    site: Mapped[str]
    reason: Mapped[str] = mapped_column(Text)
    reason_code: Mapped[str] = mapped_column(String(64))
