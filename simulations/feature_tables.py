"""Run the protocol on an existing radiomics table (e.g. pyradiomics' batch CSV output).

The table is split into simulated sites, by a site column or into N stratified
sites, optionally with synthetic scanner effects added, and each site's part is
written as that site's feature table: from there on it is an ordinary simulation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fedrad.common.config import ConfigError, StudyConfig
from fedrad.common.feature_table import insert_clinical, write_feature_table


def _labels(column: pd.Series, study: StudyConfig) -> pd.Series:
    """Study class names; 1/0 (or true/false) stand for the positive/negative class."""
    positive, negative = study.federation.classes
    values = column.astype(str).str.strip()
    coded = values.str.lower().map(
        {"1": positive, "true": positive, "0": negative, "false": negative}
    )
    labels = values.where(values.isin([positive, negative]), coded)
    unknown = sorted(set(values[labels.isna()]))
    if unknown:
        raise ConfigError(
            f"label column has values {unknown[:5]} that are neither {positive}/{negative} nor 1/0"
        )
    return labels


def _site_names(
    table: pd.DataFrame,
    labels: pd.Series,
    site_column: str | None,
    split_sites: int | None,
    seed: int,
) -> pd.Series:
    if site_column is not None:
        if site_column not in table.columns:
            raise ConfigError(f"site column {site_column!r} is not in the table")
        return table[site_column].astype(str).map(lambda s: "".join(c for c in s if c.isalnum()))
    if not split_sites or split_sites < 1:
        raise ConfigError("give --site-column or --split-sites N")
    rng = np.random.default_rng(seed)
    sites = np.empty(len(table), dtype=object)
    for label in sorted(labels.unique()):  # stratified: each class dealt round-robin
        members = rng.permutation(np.flatnonzero(labels.to_numpy() == label))
        sites[members] = [f"site{i % split_sites + 1:02d}" for i in range(len(members))]
    return pd.Series(sites, index=table.index)


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
    """Write `out_dir/<site>/features.parquet` for each site; return site -> path."""
    table = pd.read_csv(csv)
    if label_column not in table.columns:
        raise ConfigError(f"label column {label_column!r} is not in {csv}")
    labels = _labels(table[label_column], study)
    sites = _site_names(table, labels, site_column, split_sites, seed)
    variables = study.manifest_variables  # clinical and batch columns: never features
    absent = [name for name in variables if name not in table.columns]
    if absent:
        raise ConfigError(f"{csv} lacks the study's clinical/batch column(s) {absent}")
    excluded = {label_column, site_column, *variables}
    numeric = table.drop(columns=[c for c in excluded if c]).select_dtypes("number")
    features = [c for c in numeric.columns if not c.startswith("diagnostics_")]
    if not features:
        raise ConfigError(f"{csv} has no numeric feature columns")
    rng = np.random.default_rng(seed + 1)
    paths = {}
    for site in sorted(sites.unique()):
        rows = (sites == site).to_numpy()
        values = numeric.loc[rows, features].to_numpy(dtype=np.float64)
        if site_effects:
            spread = values.std(axis=0) if len(values) > 1 else np.ones(len(features))
            values = values * rng.lognormal(0, 0.2 * site_effects, len(features))
            values = values + rng.normal(0, site_effects, len(features)) * spread
        part = pd.DataFrame(values, columns=features)
        part.insert(0, "label", labels[rows].to_numpy())
        part.insert(0, "case_id", [f"{site}-{i:04d}" for i in range(int(rows.sum()))])
        clinical = {name: table.loc[rows, name] for name in variables}
        part = insert_clinical(part, clinical, variables)
        path = out_dir / site / "features.parquet"
        provenance = {"extraction_hash": study.extraction_hash, "source": f"external table {csv}"}
        write_feature_table(part, path, provenance)
        paths[site] = path
    return paths
