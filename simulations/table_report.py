"""Tell the user what became of their feature table: columns, label coding, excluded rows.

Printed before the federation starts, so that a dropped column or an unexpected label
coding is seen while it can still be fixed; the full column list goes to a CSV beside
the results, as a table of pyradiomics output has a thousand columns.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fedrad.common.table_import import ImportedTable

_NAMES_SHOWN = 8


def write_column_report(imported: ImportedTable, path: Path) -> Path:
    """Every column of the table, what it was used as, and why (CSV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [(use.name, use.use, use.reason, use.detail) for use in imported.columns]
    pd.DataFrame(rows, columns=["column", "use", "reason", "detail"]).to_csv(path, index=False)
    return path


def print_table_report(imported: ImportedTable, source: Path, columns_csv: Path, console: Console):
    """Column counts by use, dropped columns by reason, the label coding, excluded rows."""
    features = [use.name for use in imported.columns if use.use == "feature"]
    console.print(
        f"feature table {escape(str(source))}: {len(imported.rows)} case(s), "
        f"{len(features)} feature column(s) used ({escape(_some(features))})",
        highlight=False,
    )
    for use in imported.columns:
        if use.use not in ("feature", "dropped"):
            console.print(f"  column {escape(repr(use.name))}: the {use.use}", highlight=False)
    by_reason: dict[str, list[str]] = {}
    for use in imported.columns:
        if use.use == "dropped":
            by_reason.setdefault(use.reason, []).append(use.name)
    for reason, names in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        console.print(
            f"  dropped {len(names)} column(s), {escape(reason)}: {escape(_some(names))}",
            highlight=False,
        )
    console.print(f"  every column and why: {escape(str(columns_csv))}", highlight=False)
    counts = Counter(imported.labels)
    coding = ", ".join(
        f"{written!r} -> {label}" for written, label in sorted(imported.label_mapping.items())
    )
    tally = ", ".join(f"{label} {count}" for label, count in sorted(counts.items()))
    console.print(f"  labels: {escape(coding)} ({tally} cases)", highlight=False)
    if imported.imputed:
        cells = sum(imported.imputed.values())
        console.print(
            f"  {cells} missing value(s) of {len(imported.imputed)} feature(s) kept for each fit "
            f"to fill with its pooled training mean (missing values: impute-mean): "
            f"{escape(_some(sorted(imported.imputed)))}",
            highlight=False,
        )
    if imported.excluded:
        table = Table("row", "why", title=f"{len(imported.excluded)} row(s) excluded")
        for row, why in imported.excluded.items():
            table.add_row(Text(row), Text(why))
        console.print(table)


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown + (f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else "")
