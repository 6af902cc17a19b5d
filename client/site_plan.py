"""A site's work list: the manifest's cases, read against the study and the site config.

Everything here is decided before any image is opened; an error raised here (ConfigError,
ManifestError) means nothing can run and the command exits 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedrad.client.cases import CaseStatus
from fedrad.client.manifest import (
    CaseEntry,
    ManifestError,
    manifest_delimiter,
    read_manifest,
    row_problems,
)
from fedrad.client.site_config import SiteConfig, SiteLayout, site_layout
from fedrad.common.config import StudyConfig
from fedrad.common.text_files import located


@dataclass(frozen=True)
class SitePlan:
    """The cases to process, those refused from their manifest row alone, and the layout."""

    manifest: Path
    site_name: str
    layout: SiteLayout
    runnable: list[CaseEntry]
    refused: dict[int, CaseStatus]  # manifest line -> status
    entries: list[CaseEntry]  # every row, in manifest order
    delimiter: str = ","  # the manifest's, as read_manifest found it


def manifest_path(manifest: Path | None, site: SiteConfig) -> Path:
    """`--manifest` wins over the site config's `manifest`; one of them must be given."""
    path = manifest or site.manifest
    if path is None:
        raise ManifestError("no manifest: pass --manifest or set `manifest` in the site config")
    if manifest is None and not path.exists():
        raise ManifestError(
            f"there is no manifest {located(path)}, which the `manifest` of {site.described} "
            "names (a relative path there is relative to the site config's folder)"
        )
    return path


def plan_site(manifest: Path, study: StudyConfig, site: SiteConfig) -> SitePlan:
    layout = site_layout(site, study.extraction)
    variables = study.manifest_variables
    entries = read_manifest(manifest, layout.sequences, layout.missing_sequences, list(variables))
    problems = row_problems(entries, study.federation.classes, variables)
    refused = {
        entry.line: CaseStatus(entry.case_id, entry.label, "qc", (problems[entry.line],))
        for entry in entries
        if entry.line in problems
    }
    return SitePlan(
        manifest=manifest,
        site_name=site.name or manifest.parent.name,
        layout=layout,
        runnable=[entry for entry in entries if entry.line not in problems],
        refused=refused,
        entries=entries,
        delimiter=manifest_delimiter(manifest),
    )
