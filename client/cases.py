"""One case's way through QC: manifest row -> files -> readable, consistent volumes.

Shared by `fedrad site check` (which stops here) and `fedrad site extract` (which goes on
to pyradiomics), so both commands judge a case by the same rules and the same words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import SimpleITK as sitk

from fedrad.client.manifest import CaseEntry
from fedrad.client.qc import check_case, missing_files, read_case
from fedrad.client.site_config import SiteLayout
from fedrad.common.config import ExtractionSettings

OK, WARNING, FAILED = "ok", "warning", "failed"


@dataclass(frozen=True)
class CaseStatus:
    """How a case fared: the stage it failed at (qc | extract), its problems and QC notes."""

    case_id: str
    label: str | None
    stage: str = ""
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        return not self.problems

    @property
    def status(self) -> str:
        if self.problems:
            return FAILED
        return WARNING if self.notes else OK


@dataclass
class CaseVolumes:
    """A case that passed QC: its images and its label map on each image's grid."""

    images: dict[str, sitk.Image]
    masks: dict[str, sitk.Image]
    notes: list[str] = field(default_factory=list)


def load_case(
    entry: CaseEntry, settings: ExtractionSettings, layout: SiteLayout
) -> CaseVolumes | CaseStatus:
    """The case's volumes, or its failed status with every QC problem found."""
    problems = missing_files(entry)
    if problems:
        return failed(entry, "qc", problems)
    images, mask, problems = read_case(entry)
    if problems:
        return failed(entry, "qc", problems)
    check = check_case(images, mask, settings, layout)
    if check.problems:
        return failed(entry, "qc", check.problems, check.notes)
    ordered = {name: images[name] for name in layout.sequences}
    return CaseVolumes(ordered, check.masks, check.notes)


def failed(
    entry: CaseEntry, stage: str, problems: list[str], notes: list[str] | tuple[str, ...] = ()
) -> CaseStatus:
    return CaseStatus(entry.case_id, entry.label, stage, tuple(problems), tuple(notes))
