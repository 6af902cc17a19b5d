"""The end of `fedrad site check`: can this site take part, and if not, why, in sentences,
on the terminal and at the top of qc.html."""

from __future__ import annotations

from fedrad.client.site_check import CheckReport
from fedrad.common.csv_delimiter import delimiter_name

# How each kind of line reads: on the terminal (a rich style) and in qc.html (a CSS class).
STYLES = {"fact": "", "problem": "red", "note": "yellow", "ready": "green"}


def readiness_lines(report: CheckReport) -> list[tuple[str, str]]:
    """(kind, sentence): how the manifest was read, the study's demand, the site's usable
    cases, then one line per reason or note, and the verdict."""
    plan, feasible = report.plan, report.feasibility
    counts = ", ".join(f"{name} {count}" for name, count in feasible.cases.items())
    lines = [
        (
            "fact",
            f"manifest {plan.manifest}: {len(plan.entries)} row(s), read as "
            f"{delimiter_name(plan.delimiter)}-separated",
        ),
        ("fact", feasible.asks),
        ("fact", f"usable labelled cases: {counts}"),
    ]
    lines += [("problem", f"duplicate: {sentence}") for sentence in report.duplicates]
    lines += [("problem", f"cannot take part: {sentence}") for sentence in feasible.refusals]
    lines += [("note", f"note: {sentence}") for sentence in feasible.notes]
    if report.ready:
        lines.append(("ready", "This site can take part in the study."))
    elif feasible.can_take_part:
        lines.append(("fact", "This site can take part once the cases named above are fixed."))
    else:
        lines.append(("problem", "This site cannot take part as it is: see the reasons above."))
    return lines
