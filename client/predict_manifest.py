"""The manifest `site predict` extracts from: the user's, with every label blanked (a
prediction reads none, and a new patient has none yet) and every path made absolute, so it
can live in the prediction's work folder. A manifest without a label column is accepted."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from fedrad.client.manifest import MASK_COLUMN, manifest_delimiter, manifest_text


def unlabelled_copy(manifest: Path, sequences: tuple[str, ...], work: Path) -> tuple[Path, dict]:
    """(the copy's path, case id -> the label the user's manifest gave, "" if none), the
    cases in the manifest's order."""
    frame = pd.read_csv(
        io.StringIO(manifest_text(manifest)),
        sep=manifest_delimiter(manifest),
        dtype=str,
        keep_default_na=False,
        skipinitialspace=True,
    )
    frame.columns = [str(column).strip() for column in frame.columns]
    cases = [str(case).strip() for case in frame.get("case_id", [])]
    labels = frame["label"] if "label" in frame.columns else [""] * len(cases)
    given = {case: str(label).strip() for case, label in zip(cases, labels, strict=True)}
    frame["label"] = ""
    folder = manifest.resolve().parent
    for column in (*sequences, MASK_COLUMN):
        if column in frame.columns:
            frame[column] = [
                str(folder / cell.strip()) if cell.strip() else "" for cell in frame[column]
            ]
    work.mkdir(parents=True, exist_ok=True)
    copy = work / "manifest.csv"
    frame.to_csv(copy, index=False)
    return copy, given
