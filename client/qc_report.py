"""The QC report of a site's cases, three ways: terminal table, CSV, and a small HTML page.

The HTML page is self-contained (no scripts, no external files) so a site operator can
attach it to a ticket or open it on a machine without network access.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

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


def write_html(plan: SitePlan, statuses: Sequence[CaseStatus], path: Path, study_hash: str) -> None:
    """A one-page report: site summary, then every case with its status and reasons."""
    rows = "\n".join(
        f'<tr class="{status.status}"><td>{_e(status.case_id)}</td><td>{_e(status.label or "")}'
        f"</td><td>{status.status}</td><td>{_e(status.stage)}</td><td>"
        + "<br>".join(_e(line) for line in [*status.problems, *status.notes])
        + "</td></tr>"
        for status in statuses
    )
    created = datetime.now(UTC).isoformat(timespec="seconds")
    about = "".join(f"<li>{_e(line)}</li>" for line in site_lines(plan))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>FedRad QC: {_e(plan.site_name)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
tr.failed td {{ background: #fde2e2; }}
tr.warning td {{ background: #fff4d6; }}
</style></head><body>
<h1>QC report: site {_e(plan.site_name)}</h1>
<p>{_e(summary(statuses))}. Extraction hash {_e(study_hash)}; written {created}.</p>
<ul>{about}</ul>
<table><thead><tr><th>case id</th><th>label</th><th>status</th><th>stage</th>
<th>problems / notes</th></tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)


def _e(text: str) -> str:
    return html.escape(str(text))
