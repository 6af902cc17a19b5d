"""`fedrad site check`: QC every case of a site without extracting anything.

Reads each case once (in parallel) and reports what extraction would refuse and why, so
a site operator can fix files before spending hours on pyradiomics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fedrad.client.cases import CaseStatus, failed, load_case
from fedrad.client.manifest import CaseEntry
from fedrad.client.parallel import run_cases
from fedrad.client.site_config import SiteConfig, SiteLayout
from fedrad.client.site_plan import SitePlan, plan_site
from fedrad.common.config import ExtractionSettings, StudyConfig


@dataclass(frozen=True)
class CheckTask:
    entry: CaseEntry
    settings: ExtractionSettings
    layout: SiteLayout


@dataclass(frozen=True)
class CheckReport:
    plan: SitePlan
    statuses: list[CaseStatus]  # manifest order

    @property
    def all_usable(self) -> bool:
        return all(status.usable for status in self.statuses)


def check_one(task: CheckTask) -> CaseStatus:
    loaded = load_case(task.entry, task.settings, task.layout)
    if isinstance(loaded, CaseStatus):
        return loaded
    return CaseStatus(task.entry.case_id, task.entry.label, notes=tuple(loaded.notes))


def _crashed(task: CheckTask) -> CaseStatus:
    return failed(task.entry, "qc", ["QC worker died reading this case (out of memory?)"])


def check_site(
    manifest: Path,
    study: StudyConfig,
    site: SiteConfig | None = None,
    workers: int | None = None,
    show_progress: bool = True,
) -> CheckReport:
    """QC of every manifest row; raises ManifestError / ConfigError when nothing can run."""
    plan = plan_site(manifest, study, site or SiteConfig())
    tasks = [CheckTask(entry, study.extraction, plan.layout) for entry in plan.runnable]
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    outcomes = run_cases(check_one, tasks, _crashed, workers, "Checking cases", show_progress)
    done = {task.entry.line: status for task, status in zip(tasks, outcomes, strict=True)}
    return CheckReport(plan, [done.get(e.line) or plan.refused[e.line] for e in plan.entries])
