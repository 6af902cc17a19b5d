"""The site-local feature table: one row per case, one column per radiomic feature.

Columns are `case_id`, `label`, optional clinical covariates `clinical_<name>` (e.g.
`clinical_age`), then features named `<sequence>_<region>_<filter>_<class>_<feature>`
(e.g. `t1c_enhancing_original_glcm_Contrast`).
Provenance (extraction hash, versions, time) travels in the parquet schema metadata,
so the table and its provenance can never be separated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

META_COLUMNS = ("case_id", "label")
CLINICAL_PREFIX = "clinical_"
PROVENANCE_KEY = b"fedrad.provenance"


def feature_name(sequence: str, region: str, filter_name: str, pyradiomics_key: str) -> str:
    """Column name for a pyradiomics result key such as `original_glcm_Contrast`."""
    if pyradiomics_key.startswith(f"{filter_name}_"):
        pyradiomics_key = pyradiomics_key[len(filter_name) + 1 :]
    return f"{sequence}_{region}_{filter_name}_{pyradiomics_key}"


def feature_columns(table: pd.DataFrame) -> list[str]:
    """The feature columns of a table, in their stored order."""
    return [
        column
        for column in table.columns
        if column not in META_COLUMNS and not column.startswith(CLINICAL_PREFIX)
    ]


def clinical_input_names(
    names: Sequence[str], levels: Mapping[str, Sequence[str] | None]
) -> list[str]:
    """Names of the coded clinical columns, in `covariate_matrix` order: one indicator per
    non-first level of each categorical (`clinical_sex=M`), then the numbers (`clinical_age`)."""
    indicators = [
        f"{CLINICAL_PREFIX}{name}={level}"
        for name in names
        if levels[name]
        for level in levels[name][1:]
    ]
    return indicators + [f"{CLINICAL_PREFIX}{name}" for name in names if not levels[name]]


def insert_clinical(
    table: pd.DataFrame,
    values: Mapping[str, Sequence],
    levels: Mapping[str, Sequence[str] | None],
) -> pd.DataFrame:
    """`table` with a `clinical_<name>` column per variable of `levels` after `case_id` and
    `label`, from `values[name]`: numbers for numeric (None-level) variables, text otherwise."""
    table = table.copy()
    for position, (name, variable_levels) in enumerate(levels.items(), start=len(META_COLUMNS)):
        column = pd.Series(list(values[name]), index=table.index)
        typed = column.astype(float) if variable_levels is None else column.astype("string")
        table.insert(position, f"{CLINICAL_PREFIX}{name}", typed)
    return table


def write_feature_table(table: pd.DataFrame, path: str | Path, provenance: dict) -> None:
    """Write atomically (temp file + rename) so an interrupted write never leaves half a table."""
    missing = [column for column in META_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"feature table lacks required columns {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(table.reset_index(drop=True), preserve_index=False)
    metadata = dict(arrow.schema.metadata or {})
    metadata[PROVENANCE_KEY] = json.dumps(provenance, sort_keys=True).encode()
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(arrow.replace_schema_metadata(metadata), tmp)
    tmp.replace(path)


def read_feature_table(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Return the table and its provenance dict."""
    arrow = pq.read_table(path)
    raw = (arrow.schema.metadata or {}).get(PROVENANCE_KEY, b"{}")
    return arrow.to_pandas(), json.loads(raw)
