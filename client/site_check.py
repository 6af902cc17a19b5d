"""`fedrad site check`: QC every case of a site without extracting anything.

Reads each case once (in parallel) and reports what extraction would refuse and why, so
a site operator can fix files before spending hours on pyradiomics; then whether the site,
with its usable cases, can take part in the study at all (`feasibility`), and which
images appear under two case ids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fedrad.client.cases import CaseStatus, failed, load_case
from fedrad.client.duplicate_images import duplicate_images
from fedrad.client.feasibility import Feasibility, feasibility
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
    feasibility: Feasibility
    duplicates: list[str]  # one sentence per image found under several case ids

    @property
    def all_usable(self) -> bool:
        return all(status.usable for status in self.statuses)

    @property
    def ready(self) -> bool:
        """Every case usable, no image twice, and the site can take part in the study."""
        return self.all_usable and not self.duplicates and self.feasibility.can_take_part


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
    statuses = [done.get(e.line) or plan.refused[e.line] for e in plan.entries]
    return CheckReport(
        plan, statuses, feasibility(plan, statuses, study), duplicate_images(plan.entries)
    )
