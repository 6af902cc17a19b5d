"""Run the protocol on an existing radiomics table (e.g. pyradiomics' batch CSV output).

The table is split into simulated sites, by a site column or into N stratified
sites, optionally with synthetic scanner effects added, and each site's part is
written as that site's feature table: from there on it is an ordinary simulation.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from fedrad.common.config import ConfigError, StudyConfig
from fedrad.common.csv_delimiter import delimiter_name, sniff_delimiter
from fedrad.common.did_you_mean import did_you_mean, did_you_mean_each
from fedrad.common.feature_table import insert_clinical, write_feature_table
from fedrad.common.table_import import ImportedTable, import_table
from fedrad.common.text_files import UnreadableFile, read_text


def _site_names(
    table: pd.DataFrame,
    labels: pd.Series,
    site_column: str | None,
    split_sites: int | None,
    seed: int,
) -> pd.Series:
    if site_column is not None:
        return table[site_column].astype(str).map(lambda s: "".join(c for c in s if c.isalnum()))
    if not split_sites or split_sites < 1:
        raise ConfigError("give --site-column or --split-sites N")
    rng = np.random.default_rng(seed)
    sites = np.empty(len(table), dtype=object)
    for label in sorted(labels.unique()):  # stratified: each class dealt round-robin
        members = rng.permutation(np.flatnonzero(labels.to_numpy() == label))
        sites[members] = [f"site{i % split_sites + 1:02d}" for i in range(len(members))]
    return pd.Series(sites, index=table.index)


def read_table(
    csv: Path, label_column: str, study: StudyConfig, site_column: str | None = None
) -> ImportedTable:
    """The CSV's usable rows and features, with the account of every column and row."""
    try:
        text = read_text(csv, "feature table")
        delimiter = sniff_delimiter(text)
        table = pd.read_csv(io.StringIO(text), sep=delimiter, dtype={label_column: str})
    except UnreadableFile as exc:
        raise ConfigError(str(exc)) from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ConfigError(f"cannot read the feature table {csv} as CSV: {exc}") from exc
    read_as = f"read as {delimiter_name(delimiter)}-separated"
    columns = [str(name) for name in table.columns]
    for option, name in (("--label-column", label_column), ("--site-column", site_column)):
        if name is not None and name not in columns:
            raise ConfigError(
                f"{option} {name!r} is not a column of {csv} ({read_as})"
                f"{did_you_mean(name, columns)}"
            )
    variables = study.manifest_variables  # clinical and batch columns: never features
    absent = [name for name in variables if name not in columns]
    if absent:
        raise ConfigError(
            f"{csv} ({read_as}) lacks the study's clinical/batch column(s) {absent}"
            f"{did_you_mean_each(absent, columns)}"
        )
    roles = {site_column: "site"} if site_column else {}
    try:
        return import_table(
            table, label_column, study.federation.classes, roles, variables, study.missing_values
        )
    except ConfigError as exc:
        raise ConfigError(f"feature table {csv}: {exc}") from exc


def write_site_tables(
    imported: ImportedTable,
    source: Path,
    out_dir: Path,
    study: StudyConfig,
    site_column: str | None = None,
    split_sites: int | None = None,
    site_effects: float = 0.0,
    seed: int = 0,
) -> dict[str, Path]:
    """Write `out_dir/<site>/features.parquet` for each site; return site -> path."""
    table, labels, features = imported.rows, imported.labels, imported.features
    sites = _site_names(table, labels, site_column, split_sites, seed)
    variables = study.manifest_variables
    names = list(features.columns)
    rng = np.random.default_rng(seed + 1)
    paths = {}
    for site in sorted(sites.unique()):
        rows = (sites == site).to_numpy()
        values = features.loc[rows].to_numpy(dtype=np.float64)
        if site_effects:
            spread = np.nanstd(values, axis=0) if len(values) > 1 else np.ones(len(names))
            spread = np.nan_to_num(spread, nan=1.0)  # a feature missing in every case here
            values = values * rng.lognormal(0, 0.2 * site_effects, len(names))
            values = values + rng.normal(0, site_effects, len(names)) * spread
        part = pd.DataFrame(values, columns=names)
        part.insert(0, "label", labels[rows].to_numpy())
        part.insert(0, "case_id", [f"{site}-{i:04d}" for i in range(int(rows.sum()))])
        clinical = {name: table.loc[rows, name] for name in variables}
        part = insert_clinical(part, clinical, variables)
        path = out_dir / site / "features.parquet"
        provenance = {
            "extraction_hash": study.extraction_hash,
            "source": f"external table {source}",
        }
        write_feature_table(part, path, provenance)
        paths[site] = path
    return paths


def split_feature_table(
    csv: Path,
    label_column: str,
    out_dir: Path,
    study: StudyConfig,
    site_column: str | None = None,
    split_sites: int | None = None,
    site_effects: float = 0.0,
    seed: int = 0,
) -> dict[str, Path]:
    """`read_table`, then `write_site_tables`."""
    imported = read_table(csv, label_column, study, site_column)
    return write_site_tables(
        imported, csv, out_dir, study, site_column, split_sites, site_effects, seed
    )
