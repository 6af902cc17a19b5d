"""Site feature extraction: QC then pyradiomics per case, in parallel, cached per case.

Each case's features are written to `<out>.cache/<case_id>.json` the moment the case is
done, keyed by the extraction hash, the case id and the content hash of its files. So an
interrupted run resumes where it stopped and an unchanged case is never recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import radiomics
import SimpleITK as sitk
import threadpoolctl
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

from fedrad.client.manifest import MASK_COLUMN, CaseEntry, read_manifest, row_problems
from fedrad.client.qc import check_case, missing_files, read_case
from fedrad.common.config import ExtractionSettings, StudyConfig
from fedrad.common.feature_table import META_COLUMNS, write_feature_table
from fedrad.common.radiomics_features import check_feature_classes, extract_case

CACHE_FORMAT = 1  # bump when the cache record layout changes, so old records are ignored
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class CaseTask:
    """Everything a worker needs for one case (picklable)."""

    entry: CaseEntry
    settings: ExtractionSettings
    extraction_hash: str
    cache_dir: Path


@dataclass(frozen=True)
class CaseResult:
    """Features of a case, or the stage (qc | extract) and reason it failed at."""

    case_id: str
    features: dict[str, float] | None = None
    stage: str = ""
    reason: str = ""
    from_cache: bool = False


@dataclass(frozen=True)
class ExtractionReport:
    """What `extract_site` did: extracted and failed case ids, and where it wrote."""

    ok: list[str]
    failed: dict[str, str]  # case id -> reason
    from_cache: int
    table_path: Path
    qc_path: Path


def _case_key(task: CaseTask) -> str:
    """Changes whenever the settings, the software versions or any file's content change."""
    entry = task.entry
    files = {**entry.images, MASK_COLUMN: entry.mask}
    digests = {}
    for name, path in files.items():
        with open(path, "rb") as stream:
            digests[name] = hashlib.file_digest(stream, "sha256").hexdigest()
    payload = {
        "format": CACHE_FORMAT,
        "extraction_hash": task.extraction_hash,
        "case_id": entry.case_id,
        "files": digests,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _cache_file(task: CaseTask) -> Path:
    return task.cache_dir / f"{quote(task.entry.case_id, safe='')}.json"


def _load_cached(path: Path, key: str) -> dict[str, float] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record.get("features") if record.get("key") == key else None


def _store(path: Path, key: str, features: dict[str, float]) -> None:
    """Write via a temp file + rename, so a crash never leaves a half-written record."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        json.dump({"key": key, "features": features}, tmp)
    os.replace(tmp.name, path)


def process_case(task: CaseTask) -> CaseResult:
    """QC, then cache lookup or extraction, of one case; never raises for a bad case."""
    case_id = task.entry.case_id
    reasons = missing_files(task.entry)
    if reasons:
        return CaseResult(case_id, stage="qc", reason="; ".join(reasons))
    try:
        key = _case_key(task)
    except OSError as exc:
        return CaseResult(case_id, stage="qc", reason=f"unreadable file: {exc}")
    path = _cache_file(task)
    cached = _load_cached(path, key)
    if cached is not None:
        return CaseResult(case_id, features=cached, from_cache=True)
    images, mask, reasons = read_case(task.entry)
    if not reasons:
        reasons = check_case(images, mask, task.settings)
    if reasons:
        return CaseResult(case_id, stage="qc", reason="; ".join(reasons))
    try:
        features = extract_case(images, mask, task.settings)
    except Exception as exc:  # pyradiomics raises many types; one case must not stop the site
        return CaseResult(case_id, stage="extract", reason=f"{type(exc).__name__}: {exc}")
    _store(path, key, features)
    return CaseResult(case_id, features=features)


def _init_worker() -> None:
    """One thread per worker: the pool already uses every core."""
    for variable in _THREAD_VARIABLES:
        os.environ[variable] = "1"  # for native libraries loaded after this point
    threadpoolctl.threadpool_limits(1)  # for BLAS/OpenMP already loaded with numpy
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _run(tasks: list[CaseTask], workers: int, progress: Progress) -> list[CaseResult]:
    """Results in task order; `workers == 1` runs in this process."""
    bar = progress.add_task("Extracting features", total=len(tasks))

    def advance() -> None:
        progress.advance(bar)

    if workers == 1:
        return _run_here(tasks, advance)
    return _run_pool(tasks, workers, advance)


def _run_here(tasks: list[CaseTask], advance: Callable[[], None]) -> list[CaseResult]:
    """With one ITK thread, as in a pool worker: ITK's parallel sums round differently per
    thread count, and features must not depend on `workers`."""
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        results = []
        for task in tasks:
            results.append(process_case(task))
            advance()
        return results
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _run_pool(tasks: list[CaseTask], workers: int, advance: Callable[[], None]) -> list[CaseResult]:
    with ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
        futures = [pool.submit(process_case, task) for task in tasks]
        try:
            for _ in as_completed(futures):
                advance()
        except KeyboardInterrupt:
            pool.shutdown(cancel_futures=True)
            raise
    return [_collect(future, task) for future, task in zip(futures, tasks, strict=True)]


def _collect(future: Future, task: CaseTask) -> CaseResult:
    try:
        return future.result()
    except BrokenProcessPool:
        reason = "extraction worker died (out of memory?); finished cases are cached, rerun"
        return CaseResult(task.entry.case_id, stage="extract", reason=reason)


def _feature_table(entries: list[CaseEntry], results: list[CaseResult]) -> pd.DataFrame:
    rows = [
        {"case_id": entry.case_id, "label": entry.label, **result.features}
        for entry, result in zip(entries, results, strict=True)
        if result.features is not None
    ]
    features = sorted({name for row in rows for name in row} - set(META_COLUMNS))
    table = pd.DataFrame(rows, columns=[*META_COLUMNS, *features])
    # string dtype keeps an all-unlabelled column a string column (not null-typed) in parquet
    return table.astype({"case_id": "string", "label": "string"})


def _qc_report(results: list[CaseResult]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "case_id": result.case_id,
                "status": "ok" if result.features is not None else "failed",
                "stage": result.stage,
                "reason": result.reason,
            }
            for result in results
        ],
        columns=["case_id", "status", "stage", "reason"],
    )


def extract_site(
    manifest: Path,
    out: Path,
    study: StudyConfig,
    workers: int | None = None,
    show_progress: bool = True,
) -> ExtractionReport:
    """QC and extract every manifest case into the feature table `out` and `<stem>.qc.csv`.

    Raises ManifestError / ConfigError when nothing can run; failing cases are reported.
    """
    settings = study.extraction
    check_feature_classes(settings)
    entries = read_manifest(manifest, settings.sequences)
    problems = row_problems(entries, study.federation.classes)
    cache_dir = out.with_name(out.name + ".cache")
    cache_dir.mkdir(parents=True, exist_ok=True)
    runnable = [entry for entry in entries if entry.line not in problems]
    tasks = [CaseTask(entry, settings, study.extraction_hash, cache_dir) for entry in runnable]
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    with Progress(
        *Progress.get_default_columns(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not show_progress,
    ) as progress:
        outcomes = _run(tasks, workers, progress)
    done = {entry.line: result for entry, result in zip(runnable, outcomes, strict=True)}
    results = [
        done.get(entry.line) or CaseResult(entry.case_id, stage="qc", reason=problems[entry.line])
        for entry in entries
    ]

    ok = [result for result in results if result.features is not None]
    provenance = {
        "extraction_hash": study.extraction_hash,
        "pyradiomics": radiomics.__version__,
        "SimpleITK": sitk.Version_VersionString(),
        "fedrad": version("fedrad"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "n_cases": len(ok),
        "n_failed": len(results) - len(ok),
    }
    write_feature_table(_feature_table(entries, results), out, provenance)
    qc_path = out.with_name(out.stem + ".qc.csv")
    _qc_report(results).to_csv(qc_path, index=False)
    return ExtractionReport(
        ok=[result.case_id for result in ok],
        failed={result.case_id: result.reason for result in results if result.features is None},
        from_cache=sum(result.from_cache for result in ok),
        table_path=out,
        qc_path=qc_path,
    )
