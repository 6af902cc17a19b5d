"""The disclosure rule of mean imputation (docs/privacy.md 3): what a site's missing values
may not reveal.

Under `missing_values: impute-mean` a sum over a set of cases holds, per feature, the
observed values of some and the pooled mean (which the aggregator knows) for the rest;
take the known part out and the sum is over the observed cases alone. So wherever a site
sums per batch (ComBat) or per class (screening), and wherever two of its sums differ by a
fold's test part, a feature with missing values must be observed in none or in at least k
of the cases. A reply released alone also gives the count of missing values: it must then
be none or at least k too.
"""

from __future__ import annotations

import numpy as np

from fedrad.client.data import SiteData, SiteSkipped
from fedrad.common.config import StudyConfig
from fedrad.common.pipeline import Partition


def check_missing_values(
    data: SiteData, features: list[str], partition: Partition, study: StudyConfig, alone: bool
) -> None:
    """Raise SiteSkipped unless the fit's training part, and a fold's test part, meet the
    rule in every batch (and, for a reply released alone, every class) of this site."""
    if study.missing_values != "impute-mean":
        return
    missing = np.isnan(data.columns(features))
    if not missing.any():
        return
    k = study.federation.min_cell_size
    parts = {"training": data.rows(partition, "train", study)}
    if partition.scheme == "kfold":
        parts["test"] = data.rows(partition, "test", study)
    groups = {"batch": np.asarray(data.batch)} | ({"class": data.y} if alone else {})
    for part, rows in parts.items():
        for what, values in groups.items():
            for value in np.unique(values[rows]):
                members = missing[rows & (values == value)]
                absent = members.sum(axis=0)
                observed = len(members) - absent
                if np.any((absent > 0) & (observed > 0) & (observed < k)):
                    raise SiteSkipped(
                        f"{data.name} has fewer than {k} {part} values of a feature in a {what} "
                        "beside missing ones: their sum would show them"
                    )
                if alone and np.any((absent > 0) & (absent < k)):
                    raise SiteSkipped(
                        f"{data.name} has fewer than {k} {part} cases missing a feature in a "
                        f"{what}: a count it would release alone"
                    )
