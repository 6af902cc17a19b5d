"""Site feature extraction: QC then pyradiomics per case, in parallel, cached per case.

Each case's features are written to `<out>.cache/<case_id>.json` the moment the case is
done, keyed by the extraction hash, the case id, the site's label meanings and the content
hash of its files. So an interrupted run resumes where it stopped, an unchanged case is
never recomputed, and a changed file or study invalidates exactly what it affects. The last
cases of a run go to the workers one sequence at a time (`<case_id>@<sequence>.json`), so
that the workers finish together.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from fedrad.client.cases import CaseStatus, CaseVolumes, failed, load_case
from fedrad.client.manifest import MASK_COLUMN, CaseEntry, with_clinical
from fedrad.client.parallel import run_cases
from fedrad.client.qc import missing_files
from fedrad.client.qc_report import status_frame
from fedrad.client.site_config import SiteConfig, SiteLayout
from fedrad.client.site_plan import SitePlan, plan_site
from fedrad.common.config import ExtractionSettings, StudyConfig, extractor_versions
from fedrad.common.feature_table import write_feature_table
from fedrad.common.radiomics.features import expected_columns, extract_case

CACHE_FORMAT = 2  # bump when the cache record layout changes, so old records are ignored


@dataclass(frozen=True)
class CaseTask:
    """Everything a worker needs for one case, or for one of its sequences (picklable)."""

    entry: CaseEntry
    settings: ExtractionSettings
    layout: SiteLayout
    extraction_hash: str
    cache_dir: Path
    part: str | None = None  # the one sequence of the case this task extracts; None: all

    @property
    def with_shape(self) -> bool:
        """Shape depends on the mask alone: it comes with the case's first sequence."""
        return self.part is None or self.part == self.layout.sequences[0]

    def columns(self) -> set[str]:
        """The feature columns this task must yield."""
        sequences = self.layout.sequences if self.part is None else (self.part,)
        regions = list(self.layout.regions)
        return expected_columns(self.settings, sequences, regions, self.with_shape)

    def parts(self) -> list[CaseTask]:
        """One task per sequence (the case itself if it has only one)."""
        if len(self.layout.sequences) < 2:
            return [self]
        return [replace(self, part=sequence) for sequence in self.layout.sequences]

    def scoped(self) -> tuple[CaseEntry, SiteLayout]:
        """The manifest row and site layout narrowed to this task's sequences."""
        if self.part is None:
            return self.entry, self.layout
        entry = replace(self.entry, images={self.part: self.entry.images[self.part]})
        return entry, replace(self.layout, sequences=(self.part,))


@dataclass(frozen=True)
class CaseResult:
    """A case's status and, if it was extracted, its features."""

    status: CaseStatus
    features: dict[str, float] | None = None
    from_cache: bool = False


@dataclass(frozen=True)
class ExtractionReport:
    """What `extract_site` did: extracted and failed case ids, and where it wrote."""

    ok: list[str]
    failed: dict[str, str]  # case id -> reason
    from_cache: int
    table_path: Path
    qc_path: Path
    flagged: dict[str, str]  # extracted case id -> QC notes (e.g. mask resampled)


def _digest(path: Path) -> str:
    """Content hash of a file, or of every file of a DICOM folder with its name."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else "").encode())
        with open(file, "rb") as stream:
            digest.update(hashlib.file_digest(stream, "sha256").digest())
    return digest.hexdigest()


def _case_key(task: CaseTask) -> str:
    """Changes whenever the settings, versions, label meanings or any file's content change."""
    entry = task.entry
    files = {**entry.images, MASK_COLUMN: entry.mask}
    payload = {
        "format": CACHE_FORMAT,
        "extraction_hash": task.extraction_hash,
        "case_id": entry.case_id,
        "labels": {str(value): sorted(tissues) for value, tissues in task.layout.labels.items()},
        "files": {name: _digest(path) for name, path in files.items()},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _cache_file(task: CaseTask) -> Path:
    name = quote(task.entry.case_id, safe="")
    if task.part is not None:
        name += "@" + quote(task.part, safe="")
    return task.cache_dir / f"{name}.json"


def _load_cached(path: Path, key: str) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("key") == key else None


def _cached(task: CaseTask, key: str) -> tuple[dict[str, float], list[str]] | None:
    """The task's features and QC notes from the cache: its own record or, after a run that
    split the case differently, the whole case's record or every one of its parts'."""
    record = _load_cached(_cache_file(task), key)
    if record is not None:
        return record["features"], record["notes"]
    if task.part is not None:
        whole = _load_cached(_cache_file(replace(task, part=None)), key)
        if whole is None:
            return None
        return {name: whole["features"][name] for name in sorted(task.columns())}, whole["notes"]
    records = [_load_cached(_cache_file(part), key) for part in task.parts() if part.part]
    if not records or any(record is None for record in records):
        return None
    features = {name: value for record in records for name, value in record["features"].items()}
    return features, list(_unique(note for record in records for note in record["notes"]))


def _store(path: Path, record: dict) -> None:
    """Write via a temp file + rename, so a crash never leaves a half-written record.

    `json.dumps` encodes in one C call; `json.dump` to a file goes through the Python
    encoder chunk by chunk (0.07-0.12 s against 0.03 s for a case's 13k features)."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp.write(json.dumps(record))
    os.replace(tmp.name, path)


def process_case(task: CaseTask) -> CaseResult:
    """QC, then cache lookup or extraction, of a case or one of its sequences; never raises
    for a bad case."""
    entry = task.entry
    missing = missing_files(entry)
    if missing:
        return CaseResult(failed(entry, "qc", missing))
    try:
        key = _case_key(task)
    except OSError as exc:
        return CaseResult(failed(entry, "qc", [f"unreadable file: {exc}"]))
    cached = _cached(task, key)
    if cached is not None:
        features, notes = cached
        status = CaseStatus(entry.case_id, entry.label, notes=tuple(notes))
        return CaseResult(status, features, from_cache=True)
    scoped_entry, scoped_layout = task.scoped()
    loaded = load_case(scoped_entry, task.settings, scoped_layout)
    if isinstance(loaded, CaseStatus):
        return CaseResult(loaded)
    try:
        features = _extract(loaded, task)
    except Exception as exc:  # pyradiomics raises many types; one case must not stop the site
        reason = f"{type(exc).__name__}: {exc}"
        return CaseResult(failed(entry, "extract", [reason], loaded.notes))
    _store(_cache_file(task), {"key": key, "features": features, "notes": loaded.notes})
    return CaseResult(CaseStatus(entry.case_id, entry.label, notes=tuple(loaded.notes)), features)


def _extract(case: CaseVolumes, task: CaseTask) -> dict[str, float]:
    """pyradiomics on the task's sequences; raises ValueError if any of their study features
    is absent or not finite."""
    features = extract_case(
        case.images, case.masks, task.layout.regions, task.settings, task.with_shape
    )
    expected = task.columns()
    absent = sorted(expected - features.keys())
    if absent:
        raise ValueError(
            f"pyradiomics computed no value for {len(absent)} feature(s), e.g. {absent[0]} "
            "(a filter skipped because the region's image is too small?)"
        )
    bad = sorted(name for name in expected if not math.isfinite(features[name]))
    if bad:
        raise ValueError(f"{len(bad)} feature(s) are NaN/Inf, e.g. {bad[0]}")
    return {name: features[name] for name in sorted(expected)}


def _input_bytes(task: CaseTask) -> int:
    """Size on disk of the case's mask: a cheap proxy for its extraction time (compressed
    label maps grow with the regions' extent), used to start the longest cases first."""
    mask = task.entry.mask
    if mask is None or not mask.exists():
        return 0
    files = [path for path in mask.rglob("*") if path.is_file()] if mask.is_dir() else [mask]
    return sum(path.stat().st_size for path in files)


def _queue(tasks: list[CaseTask], workers: int) -> list[CaseTask]:
    """The cases as they come (largest first), the last `workers` of them split into one
    task per sequence: whole cases cost the least (mask, QC and region grids once), small
    parts at the end let the workers finish together instead of one waiting for another's
    last case (a few seconds of a small site's run)."""
    if workers < 2:
        return tasks
    cut = max(len(tasks) - workers, 0)
    return tasks[:cut] + [part for task in tasks[cut:] for part in task.parts()]


def _merged(results: list[CaseResult]) -> CaseResult:
    """A case's result from its parts' (a whole case is its own single part)."""
    if len(results) == 1:
        return results[0]
    statuses = [result.status for result in results]
    case_id, label = statuses[0].case_id, statuses[0].label
    notes = _unique(note for status in statuses for note in status.notes)
    problems = _unique(problem for status in statuses for problem in status.problems)
    if problems:
        stage = "qc" if any(status.stage == "qc" for status in statuses) else "extract"
        return CaseResult(CaseStatus(case_id, label, stage, problems, notes))
    features = {name: value for result in results for name, value in result.features.items()}
    from_cache = all(result.from_cache for result in results)
    return CaseResult(CaseStatus(case_id, label, notes=notes), features, from_cache)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    """The items in order, each once (the parts of a case share its mask's problems)."""
    return tuple(dict.fromkeys(items))


def _crashed(task: CaseTask) -> CaseResult:
    reason = "extraction worker died (out of memory?); finished cases are cached, rerun"
    return CaseResult(failed(task.entry, "extract", [reason]))


def _feature_table(
    results: list[CaseResult], layout: SiteLayout, settings: ExtractionSettings
) -> pd.DataFrame:
    """One float block for the features (built column by column, 13k columns took seconds)."""
    columns = sorted(expected_columns(settings, layout.sequences, list(layout.regions)))
    ok = [result for result in results if result.features is not None]
    values = np.array(
        [[result.features[column] for column in columns] for result in ok], dtype=float
    ).reshape(len(ok), len(columns))
    # string dtype keeps an all-unlabelled column a string column (not null-typed) in parquet
    meta = pd.DataFrame(
        {
            "case_id": pd.array([result.status.case_id for result in ok], dtype="string"),
            "label": pd.array([result.status.label for result in ok], dtype="string"),
        }
    )
    return pd.concat([meta, pd.DataFrame(values, columns=columns)], axis=1)


def _provenance(plan: SitePlan, study: StudyConfig, results: list[CaseResult]) -> dict:
    layout = plan.layout
    ok = [result for result in results if result.features is not None]
    return {
        "extraction_hash": study.extraction_hash,
        **extractor_versions(),
        "fedrad": version("fedrad"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "site": plan.site_name,
        "n_cases": len(ok),
        "n_failed": len(results) - len(ok),
        "sequences": list(layout.sequences),
        "missing_sequences": list(layout.missing_sequences),
        "regions": {name: list(values) for name, values in layout.regions.items()},
        "missing_regions": layout.missing_regions,
        "qc_flags": {r.status.case_id: list(r.status.notes) for r in ok if r.status.notes},
    }


def extract_site(
    manifest: Path,
    out: Path,
    study: StudyConfig,
    workers: int | None = None,
    show_progress: bool = True,
    site: SiteConfig | None = None,
) -> ExtractionReport:
    """QC and extract every manifest case into the feature table `out` and `<stem>.qc.csv`.

    Raises ManifestError / ConfigError when nothing can run; failing cases are reported.
    KeyboardInterrupt propagates after every finished case is cached.
    """
    plan = plan_site(manifest, study, site or SiteConfig())
    settings = study.extraction
    cache_dir = out.with_name(out.name + ".cache")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tasks = sorted(
        (
            CaseTask(entry, settings, plan.layout, study.extraction_hash, cache_dir)
            for entry in plan.runnable
        ),
        key=_input_bytes,
        reverse=True,  # longest first: the short cases, split by `_queue`, fill the end
    )
    requested = workers or os.cpu_count() or 1
    queue = _queue(tasks, requested)
    shares = [1 / len(task.layout.sequences) if task.part else 1.0 for task in queue]
    outcomes = run_cases(
        process_case,
        queue,
        _crashed,
        max(1, min(requested, len(queue))),
        "Extracting features",
        show_progress,
        shares,
    )
    by_case: dict[int, list[CaseResult]] = {}
    for task, outcome in zip(queue, outcomes, strict=True):
        by_case.setdefault(task.entry.line, []).append(outcome)
    done = {line: _merged(parts) for line, parts in by_case.items()}
    results = [
        done.get(entry.line) or CaseResult(plan.refused[entry.line]) for entry in plan.entries
    ]

    table = with_clinical(
        _feature_table(results, plan.layout, settings), plan.runnable, study.manifest_variables
    )
    write_feature_table(table, out, _provenance(plan, study, results))
    qc_path = out.with_name(out.stem + ".qc.csv")
    status_frame([result.status for result in results]).to_csv(qc_path, index=False)
    ok = [result for result in results if result.features is not None]
    return ExtractionReport(
        ok=[result.status.case_id for result in ok],
        failed={
            result.status.case_id: "; ".join(result.status.problems)
            for result in results
            if result.features is None
        },
        from_cache=sum(result.from_cache for result in ok),
        table_path=out,
        qc_path=qc_path,
        flagged={r.status.case_id: "; ".join(r.status.notes) for r in ok if r.status.notes},
    )
