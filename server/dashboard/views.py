"""What each page and its API show, read through the store's reader (server/store/reader.py).

One thin adapter reaches past the reader: the overview compares each site's extraction hash
with the one its newest run's study expects, and the reader does not expose a study's
extraction hash, so `_expected_extraction_hash` reads the store's `studies` table itself.
The routes reach the store only through this module."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fedrad.server.report.privacy import privacy_sentence
from fedrad.server.store.reader import (
    RunSummary,
    SitePage,
    SiteSummary,
    overview,
    run_page,
    run_results,
    site_page,
)
from fedrad.server.store.schema import Run, Study


class SiteRow(BaseModel):
    site: SiteSummary
    extraction_hash_matches: bool | None  # None: the site or the study has no hash yet


class OverviewView(BaseModel):
    sites: list[SiteRow]
    runs: list[RunSummary]  # newest first
    expected_extraction_hash: str | None  # the newest run's study's


class PhaseStep(BaseModel):
    position: int
    kind: str
    tag: str
    loaded: bool
    finished_at: datetime
    rounds: int


class Progress(BaseModel):
    """How far a run has got: the phases it has finished, in order."""

    run: int
    status: str
    reason: str
    phases: list[PhaseStep]
    live_rounds: int = 0  # rounds of fits whose phase has not ended yet


class FitRow(BaseModel):
    """One fit (a fold, the final model) and which sites trained it; a site of the run that
    did not is listed as left out, never dropped from view."""

    fit: str
    training_sites: list[str]
    left_out: list[str]
    figures: dict


class Stability(BaseModel):
    """How often the validation's fits (folds, held-out sites) kept a feature."""

    feature: str
    kept_by: int
    of_fits: int
    in_final: bool


class RunView(BaseModel):
    run: RunSummary
    phases: list[dict]
    live_rounds: list[dict]  # of fits whose phase has not ended
    metrics: dict
    selected_features: dict[str, list[dict]]
    harmonization: dict | None
    census: dict[str, dict[str, str]]
    suppressed_cells: int  # census cells a site sent as a bound ("<k", ">=k"), not a count
    privacy: str  # one sentence, as the report says it; "" before results
    bytes_from_sites: dict[str, dict[str, int]]  # message kind -> site -> bytes; {} before
    # "from"/"to" -> site -> bytes exchanged after the last phase (the final model kept,
    # site effects); None before results or without per-phase bytes
    bytes_after_phases: dict[str, dict[str, int]] | None
    fits: list[FitRow]
    selection_stability: list[Stability]
    comparison: dict | None  # results.json's, from `fedrad simulate --compare`
    events: list[dict]
    artifacts: list[dict]
    has_results: bool


def overview_view(engine: Engine) -> OverviewView:
    page = overview(engine)
    expected = _expected_extraction_hash(engine)
    return OverviewView(
        sites=[
            SiteRow(site=site, extraction_hash_matches=_matches(site, expected))
            for site in page.sites
        ],
        runs=page.runs,
        expected_extraction_hash=expected,
    )


def site_view(engine: Engine, name: str) -> SitePage | None:
    return site_page(engine, name)


def run_view(engine: Engine, run_id: int) -> RunView | None:
    page = run_page(engine, run_id)
    if page is None:
        return None
    results = run_results(engine, run_id)
    return RunView(
        **asdict(page),
        suppressed_cells=sum(
            not count.isdigit() for cases in page.census.values() for count in cases.values()
        ),
        privacy=privacy_sentence(results) if results else "",
        bytes_from_sites=(results or {}).get("traffic_bytes_from_sites", {}),
        bytes_after_phases=_after_phases(page.phases, results),
        selection_stability=_stability(page.selected_features),
        comparison=(results or {}).get("comparison"),
        fits=[
            _fit_row(fit, figures, sorted(page.census))
            for fit, figures in page.metrics["fits"].items()
        ],
        has_results=results is not None,
    )


def progress_view(engine: Engine, run_id: int) -> Progress | None:
    page = run_page(engine, run_id)
    return None if page is None else progress_of(page.run, page.phases, page.live_rounds)


def progress_of(run: RunSummary, phases: list[dict], live_rounds: list[dict]) -> Progress:
    return Progress(
        run=run.id,
        status=run.status,
        reason=run.reason,
        live_rounds=len(live_rounds),
        phases=[
            PhaseStep(
                position=p["position"],
                kind=p["kind"],
                tag=p["tag"],
                loaded=p["loaded"],
                finished_at=p["finished_at"],
                rounds=len(p["rounds"]),
            )
            for p in phases
        ],
    )


def results_of(engine: Engine, run_id: int) -> dict | None:
    return run_results(engine, run_id)


def _fit_row(fit: str, figures: dict, sites: list[str]) -> FitRow:
    trained = list(figures.get("training_sites", []))
    return FitRow(
        fit=fit,
        training_sites=trained,
        left_out=[site for site in sites if site not in trained],
        figures={k: v for k, v in figures.items() if k != "training_sites"},
    )


def _stability(selected: dict[str, list[dict]]) -> list[Stability]:
    """Each feature any fit kept, most often kept first; the final model's fit is not one
    of the validation's, so it is marked rather than counted."""
    final = {f["feature"] for f in selected.get("final", [])}
    validation = [fit for fit in selected if fit != "final"]
    kept: dict[str, int] = {}
    for fit in validation:
        for entry in selected[fit]:
            kept[entry["feature"]] = kept.get(entry["feature"], 0) + 1
    for feature in final:
        kept.setdefault(feature, 0)
    return [
        Stability(feature=f, kept_by=n, of_fits=len(validation), in_final=f in final)
        for f, n in sorted(kept.items(), key=lambda item: (-item[1], item[0]))
    ]


def _matches(site: SiteSummary, expected: str | None) -> bool | None:
    if site.extraction_hash is None or expected is None:
        return None
    return site.extraction_hash == expected


def _expected_extraction_hash(engine: Engine) -> str | None:
    with Session(engine) as session:
        return session.scalar(
            select(Study.extraction_hash)
            .join(Run, Run.study_id == Study.id)
            .order_by(Run.id.desc())
            .limit(1)
        )


def _after_phases(phases: list[dict], results: dict | None) -> dict[str, dict[str, int]] | None:
    """The run's bytes per site (results.json) less those of its phases: what was exchanged
    after the last phase ended."""
    measured = [phase["bytes"] for phase in phases if phase["bytes"]]
    if not results or not measured or any(phase["loaded"] for phase in phases):
        return None
    after = {}
    for direction, key in (("from", "traffic_bytes_from_sites"), ("to", "traffic_bytes_to_sites")):
        total: dict[str, int] = {}
        for sizes in results.get(key, {}).values():
            for site, size in sizes.items():
                total[site] = total.get(site, 0) + size
        after[direction] = {
            site: size - sum(phase[direction].get(site, 0) for phase in measured)
            for site, size in total.items()
        }
    return after
