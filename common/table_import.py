"""A radiomics table a site brings instead of images, read with every decision said.

Spreadsheets hold more than features: file paths, pyradiomics diagnostics, Excel errors
(`#VALUE!`), blank cells, labels coded 1/0. Each column is used or dropped with its reason,
each label value's meaning is stated, and a case missing a value of a used feature (or a
label, or a clinical value the study reads) is excluded and named by its row: the study's
`missing_values: exclude-case`. Under `impute-mean` a missing feature value stays missing
(NaN) for each fit to fill with its pooled training mean (`common/stats/imputation.py`);
a missing label or clinical value still excludes its row. Rows are numbered as a
spreadsheet shows them: the header is row 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fedrad.common.config import ConfigError

DIAGNOSTICS_PREFIX = "diagnostics_"  # pyradiomics' provenance columns, not features
CASE_ID = "case_id"
_SHOWN = 10  # problems listed before "and N more"


@dataclass(frozen=True)
class ColumnUse:
    """What became of one column of the table, and why."""

    name: str
    use: str  # feature | label | site | clinical | case id | dropped
    reason: str = ""  # why dropped: text, constant, all missing, pyradiomics diagnostics
    detail: str = ""  # e.g. the text found, the constant value


@dataclass(frozen=True)
class ImportedTable:
    """The rows a study can use, their features and labels, and the account of the rest."""

    rows: pd.DataFrame  # the kept rows of the source table, re-indexed from 0
    features: pd.DataFrame  # kept rows x used feature columns, float64
    labels: pd.Series  # study class of each kept row
    columns: list[ColumnUse]
    label_mapping: dict[str, str]  # value as written -> study class
    excluded: dict[str, str]  # "row N" (with its case id, if any) -> why
    imputed: dict[str, int] = field(default_factory=dict)  # feature -> missing cells kept


def import_table(
    table: pd.DataFrame,
    label_column: str,
    classes: Sequence[str],
    roles: Mapping[str, str],
    clinical: Mapping[str, Sequence[str] | None],
    missing_values: str | None = None,
) -> ImportedTable:
    """Sort the columns, map the labels and exclude incomplete rows; ConfigError when the
    table cannot be used at all (unknown label values, by row; no feature column; no
    complete row). `roles` names other non-feature columns (site column -> "site");
    `clinical` the study's clinical/batch columns -> their levels (None: a number);
    `missing_values` the study's rule (`impute-mean` keeps rows missing a feature value)."""
    if label_column not in table.columns:
        raise ConfigError(f"label column {label_column!r} is not in the table")
    rows = pd.Series([f"row {index + 2}" for index in range(len(table))], index=table.index)
    if CASE_ID in table.columns:
        rows = rows + " (" + table[CASE_ID].astype(str) + ")"
    labels, mapping, why = _labels(table[label_column], classes, rows)
    columns = [ColumnUse(label_column, "label")]
    columns += [ColumnUse(name, role) for name, role in roles.items()]
    columns += [ColumnUse(name, "clinical") for name in clinical]
    for name, levels in clinical.items():
        _add(why, _clinical_problems(table[name], name, levels))
    features, missing = {}, {}
    for name in table.columns:
        if name == label_column or name in roles or name in clinical:
            continue
        use, values, problems = _feature_column(name, table[name])
        columns.append(use)
        if values is not None:
            features[name] = values.where(np.isfinite(values))  # inf is no value either
            missing[name] = problems
            if missing_values != "impute-mean":
                _add(why, problems)
    if not features:
        raise ConfigError(
            "the table has no numeric feature column; dropped: "
            + "; ".join(
                f"{use.name} ({use.reason} {use.detail})".replace(" )", ")")
                for use in columns
                if use.use == "dropped"
            )
        )
    keep = ~table.index.isin(list(why))
    if not keep.any():
        row, reasons = _listed(why, rows)[0]
        raise ConfigError(f"no row of the table is complete, e.g. {row}: {reasons}")
    frame = pd.DataFrame(features).loc[keep].reset_index(drop=True)
    kept = set(table.index[keep])
    imputed = {name: len(set(rows_missing) & kept) for name, rows_missing in missing.items()}
    return ImportedTable(
        rows=table.loc[keep].reset_index(drop=True),
        features=frame,
        labels=labels[keep].reset_index(drop=True),
        columns=columns,
        label_mapping=mapping,
        excluded=dict(_listed(why, rows)),
        imputed={name: count for name, count in imputed.items() if count},
    )


def _add(why: dict[int, list[str]], problems: Mapping[int, str]) -> None:
    for index, problem in problems.items():
        why.setdefault(index, []).append(problem)


def _listed(why: Mapping[int, list[str]], rows: pd.Series) -> list[tuple[str, str]]:
    return [(rows[index], "; ".join(reasons)) for index, reasons in sorted(why.items())]


def _labels(
    column: pd.Series, classes: Sequence[str], rows: pd.Series
) -> tuple[pd.Series, dict[str, str], dict[int, list[str]]]:
    """Study classes; the class names (any case), 1/0 and true/false stand for the positive
    and negative class. A blank label excludes its row; any other unknown value stops the
    import, naming every row that holds one."""
    positive, negative = classes
    codes = {"1": positive, "true": positive, "0": negative, "false": negative}
    codes |= {positive.lower(): positive, negative.lower(): negative}
    written = column.astype("string").str.strip()
    labels = written.str.lower().map(codes)
    blank = written.isna() | (written == "")
    unknown = labels.isna() & ~blank
    if unknown.any():
        shown = [f"{rows[i]} {written[i]!r}" for i in column.index[unknown][:_SHOWN]]
        more = f" and {int(unknown.sum()) - _SHOWN} more" if unknown.sum() > _SHOWN else ""
        raise ConfigError(
            f"label column {column.name!r} has values that are neither {positive}/{negative}, "
            f"1/0 nor true/false: {', '.join(shown)}{more}"
        )
    mapping = {str(value): codes[str(value).lower()] for value in written[~blank].unique()}
    return labels, mapping, {index: ["no label"] for index in column.index[blank]}


def _feature_column(
    name: str, column: pd.Series
) -> tuple[ColumnUse, pd.Series | None, dict[int, str]]:
    """(what the column is, its float values if it is a feature, row -> missing value).

    A column of numbers with a few cells that are not (`#VALUE!`, `#DIV/0!`) stays a
    feature, those cells missing; a column mostly of text is dropped."""
    if name.startswith(DIAGNOSTICS_PREFIX):
        return ColumnUse(name, "dropped", "pyradiomics diagnostics"), None, {}
    if name == CASE_ID:
        return ColumnUse(name, "case id", "names the rows in messages"), None, {}
    if pd.api.types.is_bool_dtype(column):
        return ColumnUse(name, "dropped", "text", "true/false"), None, {}
    values = pd.to_numeric(column, errors="coerce").astype(float)
    text = column.notna() & values.isna()
    numbers = int(values.notna().sum())
    if text.sum() > numbers:
        example = column[text].iloc[0]
        return ColumnUse(name, "dropped", "text", f"e.g. {example!r}"), None, {}
    finite = values[np.isfinite(values)]
    if finite.empty:
        return ColumnUse(name, "dropped", "all missing"), None, {}
    if finite.nunique() == 1:
        return ColumnUse(name, "dropped", "constant", f"{finite.iloc[0]:g} in every row"), None, {}
    problems = {
        index: f"{name}: {column[index]!r} is not a number" if text[index] else f"no {name}"
        for index in column.index[~np.isfinite(values)]
    }
    return ColumnUse(name, "feature"), values, problems


def _clinical_problems(
    column: pd.Series, name: str, levels: Sequence[str] | None
) -> dict[int, str]:
    """Rows whose clinical value the study cannot read: blank, not a number where a number
    is declared, or outside the declared levels (none declared: any text, e.g. a scanner)."""
    written = column.astype("string").str.strip()
    problems = {index: f"no {name}" for index in column.index[written.isna() | (written == "")]}
    for index, value in written.dropna().items():
        if index in problems:
            continue
        if levels is None and not np.isfinite(pd.to_numeric(value, errors="coerce")):
            problems[index] = f"{name}: {value!r} is not a number"
        elif levels and value not in levels:
            problems[index] = f"{name}: {value!r} is not one of the study's levels {list(levels)}"
    return problems
