"""The end of `fedrad site check`: can this site take part, and if not, why, in sentences."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from fedrad.client.site_check import CheckReport
from fedrad.common.csv_delimiter import delimiter_name


def print_readiness(report: CheckReport, console: Console) -> None:
    """How the manifest was read, the study's demand, the site's usable cases, then one line
    per reason or note."""
    plan, feasible = report.plan, report.feasibility
    console.print(
        Text(
            f"manifest {plan.manifest}: {len(plan.entries)} row(s), read as "
            f"{delimiter_name(plan.delimiter)}-separated"
        )
    )
    console.print(Text(feasible.asks))
    counts = ", ".join(f"{name} {count}" for name, count in feasible.cases.items())
    console.print(Text(f"usable labelled cases: {counts}"))
    for sentence in report.duplicates:
        console.print(Text(f"duplicate: {sentence}", style="red"))
    for sentence in feasible.refusals:
        console.print(Text(f"cannot take part: {sentence}", style="red"))
    for sentence in feasible.notes:
        console.print(Text(f"note: {sentence}", style="yellow"))
    if report.ready:
        console.print(Text("This site can take part in the study.", style="green"))
    elif feasible.can_take_part:
        console.print(Text("This site can take part once the cases named above are fixed."))
    else:
        console.print(Text("This site cannot take part as it is: see the reasons above."))
