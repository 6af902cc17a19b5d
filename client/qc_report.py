"""The QC report of a site's cases in the terminal and as CSV (qc_page.py writes qc.html)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fedrad.client.cases import FAILED, WARNING, CaseStatus
from fedrad.client.site_plan import SitePlan

COLUMNS = ["case_id", "label", "status", "stage", "reason", "notes"]
_STYLES = {FAILED: "red", WARNING: "yellow"}


def status_frame(statuses: Sequence[CaseStatus]) -> pd.DataFrame:
    """One row per manifest row: status ok | warning | failed, problems and notes in words."""
    return pd.DataFrame(
        [
            {
                "case_id": status.case_id,
                "label": status.label or "",
                "status": status.status,
                "stage": status.stage,
                "reason": "; ".join(status.problems),
                "notes": "; ".join(status.notes),
            }
            for status in statuses
        ],
        columns=COLUMNS,
    )


def site_lines(plan: SitePlan) -> list[str]:
    """What the site can provide for the study, in plain sentences."""
    layout = plan.layout
    lines = [f"site {plan.site_name}: manifest {plan.manifest}"]
    lines.append(f"sequences: {', '.join(layout.sequences)}")
    if layout.missing_sequences:
        lines.append(f"missing sequences (declared): {', '.join(layout.missing_sequences)}")
    lines.append(f"regions: {', '.join(layout.regions) or 'none'}")
    lines += [f"missing region {region}: {why}" for region, why in layout.missing_regions.items()]
    return lines


def summary(statuses: Sequence[CaseStatus]) -> str:
    usable = sum(status.usable for status in statuses)
    flagged = sum(status.status == WARNING for status in statuses)
    return f"{usable} of {len(statuses)} case(s) usable, {flagged} with warnings"


def print_report(plan: SitePlan, statuses: Sequence[CaseStatus], console: Console) -> None:
    for line in site_lines(plan):
        console.print(Text(line))
    table = Table("case id", "status", "problems / notes", title="QC", title_justify="left")
    for status in statuses:
        if status.status == "ok":
            continue
        style = _STYLES[status.status]
        details = "\n".join([*status.problems, *status.notes])
        table.add_row(Text(status.case_id), Text(status.status, style=style), Text(details))
    if table.row_count:
        console.print(table)
    console.print(Text(summary(statuses)))
