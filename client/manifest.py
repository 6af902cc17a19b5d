"""The site manifest: one CSV row per case, naming its label, images and mask.

Problems with the file as a whole (missing, unreadable, required columns absent) stop the
run; problems of single rows (duplicate case id, unknown label) only fail those cases.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fedrad.common.csv_delimiter import delimiter_name, sniff_delimiter
from fedrad.common.did_you_mean import did_you_mean_each
from fedrad.common.feature_table import insert_clinical
from fedrad.common.text_files import UnreadableFile, read_text
from fedrad.common.user_error import UserError

MASK_COLUMN = "mask"


class ManifestError(UserError):
    """The manifest cannot be used at all; the message names the file and what to fix."""


@dataclass(frozen=True)
class CaseEntry:
    """One manifest row, with paths resolved against the manifest's folder (None if blank)."""

    line: int
    case_id: str
    label: str | None
    images: dict[str, Path | None]
    mask: Path | None
    clinical: dict[str, str] = field(default_factory=dict)  # study's clinical/batch columns


def read_manifest(
    path: Path, sequences: Sequence[str], missing: Sequence[str] = (), clinical: Sequence[str] = ()
) -> list[CaseEntry]:
    """Read the manifest: a column per sequence the site has, none for those it lacks, and
    the `clinical` columns the study reads (e.g. age, sex, scanner).

    A sequence the site lacks altogether is declared in the site config (`missing_sequences`)
    rather than inferred from an absent column, so a misspelt column header stops the run
    instead of silently dropping a sequence from the site's features.
    """
    text = manifest_text(path)
    delimiter = sniff_delimiter(text)
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ManifestError(f"cannot read manifest {path} as CSV: {exc}") from exc
    frame.columns = [str(column).strip() for column in frame.columns]
    required = ["case_id", "label", *sequences, MASK_COLUMN, *clinical]
    absent = [column for column in required if column not in frame.columns]
    if absent:
        raise ManifestError(
            f"manifest {path} lacks column(s) {absent}"
            f"{did_you_mean_each(absent, frame.columns)}; read as "
            f"{delimiter_name(delimiter)}-separated, its columns are {list(frame.columns)}; it "
            "needs case_id, label, one path column per study sequence, mask, and the study's "
            "clinical columns (declare a sequence the site does not have under "
            "missing_sequences in the site config)"
        )
    contradicted = [name for name in missing if name in frame.columns]
    if contradicted:
        raise ManifestError(
            f"manifest {path} has column(s) {contradicted} that the site config declares "
            "missing_sequences; remove one or the other"
        )
    frame = frame.apply(lambda column: column.str.strip())
    blank_ids = [index + 2 for index, case_id in enumerate(frame["case_id"]) if not case_id]
    if blank_ids:
        raise ManifestError(f"manifest {path}: empty case_id on line(s) {blank_ids}")

    folder = path.parent

    def resolve(cell: str) -> Path | None:
        return folder / cell if cell else None

    return [
        CaseEntry(
            line=index + 2,  # header is line 1
            case_id=row["case_id"],
            label=row["label"] or None,
            images={sequence: resolve(row[sequence]) for sequence in sequences},
            mask=resolve(row[MASK_COLUMN]),
            clinical={name: row[name] for name in clinical},
        )
        for index, row in enumerate(frame.to_dict("records"))
    ]


def manifest_text(path: Path) -> str:
    """The manifest's text; ManifestError names the file and why it cannot be one."""
    try:
        return read_text(path, "manifest")
    except UnreadableFile as exc:
        raise ManifestError(str(exc)) from exc


def manifest_delimiter(path: Path) -> str:
    """The delimiter `read_manifest` reads the manifest with: comma, semicolon or tab."""
    return sniff_delimiter(manifest_text(path))


def row_problems(
    entries: Sequence[CaseEntry],
    classes: Sequence[str],
    variables: Mapping[str, Sequence[str] | None] | None = None,
) -> dict[int, str]:
    """Manifest line -> reason, for rows that fail before any file is opened.

    `variables` says what each clinical column must hold: None a number, a list one of
    those levels, an empty list any non-empty text (e.g. a scanner name).
    """
    counts = Counter(entry.case_id for entry in entries)
    problems: dict[int, str] = {}
    for entry in entries:
        reasons = []
        if counts[entry.case_id] > 1:
            lines = [other.line for other in entries if other.case_id == entry.case_id]
            reasons.append(f"duplicate case id on manifest lines {lines}")
        if entry.label is not None and entry.label not in classes:
            reasons.append(
                f"label {entry.label!r} is not a study class ({', '.join(classes)}); "
                "leave it empty for unlabelled cases"
            )
        reasons += [
            f"{name}: {reason}"
            for name, levels in (variables or {}).items()
            if (reason := _clinical_problem(entry.clinical.get(name, ""), levels))
        ]
        if reasons:
            problems[entry.line] = "; ".join(reasons)
    return problems


def _clinical_problem(value: str, levels: Sequence[str] | None) -> str | None:
    if not value:
        return "no value (ComBat and the model cannot use a case without it)"
    if levels is None:
        try:
            number = float(value)
        except ValueError:
            return f"{value!r} is not a number"
        return None if math.isfinite(number) else f"{value!r} is not a finite number"
    if levels and value not in levels:
        return f"{value!r} is not one of the study's levels {list(levels)}"
    return None


def with_clinical(
    table: pd.DataFrame,
    entries: Sequence[CaseEntry],
    variables: Mapping[str, Sequence[str] | None],
) -> pd.DataFrame:
    """The feature table with the study's clinical columns of its cases from `entries`."""
    by_case = {entry.case_id: entry.clinical for entry in entries}
    values = {name: [by_case[case][name] for case in table["case_id"]] for name in variables}
    return insert_clinical(table, values, variables)
