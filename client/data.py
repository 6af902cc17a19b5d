"""A site's labelled cases, as its feature table holds them, and how they split for a fit.

Every split is a pure function of case ids, strata and the study's seed, so a site and
the pooled reference split the same cases the same way.

A missing feature value (NaN, or an infinite one) follows the study's `missing_values`:
under `exclude-case` (the default) a case missing one is left out, named in the site's
own log, and a feature missing in every case is left out instead (the study then runs on
the features every site has); under `impute-mean` it stays NaN for each fit to fill
(`local_pipeline.study_features`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedrad.client.identity import load_or_create_identity
from fedrad.client.site_log import site_log
from fedrad.common.config import EXTRACTORS, StudyConfig
from fedrad.common.feature_table import CLINICAL_PREFIX, feature_columns, read_feature_table
from fedrad.common.pipeline import Partition
from fedrad.common.stats.split import fold_ids, holdout_mask


class TableMismatch(ValueError):
    """A site's feature table does not fit the study. The message names only what the study
    itself names (a column, a setting), so it may be sent to the aggregator."""


class SiteSkipped(Exception):
    """This site contributes nothing to a phase (e.g. fewer than k cases); says why."""


@dataclass(frozen=True)
class SiteData:
    """A site's labelled cases. `batch` is each case's ComBat batch (its site by default);
    `origin` its site, which differs from `name` only in the pooled reference."""

    name: str
    extraction_hash: str
    features: list[str]
    case_ids: list[str]
    labels: list[str]
    x: np.ndarray
    y: np.ndarray
    batch: np.ndarray
    origin: np.ndarray
    clinical: dict[str, np.ndarray] = field(default_factory=dict)
    table_path: Path | None = None
    versions: dict[str, str] = field(default_factory=dict)  # of the extractors, per its table
    excluded: dict[str, str] = field(default_factory=dict)  # case id -> why, never sent
    # the pooled reference's data, a central analysis: its sums leave no site, so no site's
    # rule on sums sent alone binds them
    central: bool = False
    # signs the site's secure-aggregation keys; kept beside its feature table
    identity: Ed25519PrivateKey = field(
        default_factory=Ed25519PrivateKey.generate, repr=False, compare=False
    )
    # each split computed once (`rows`): a tuned fit asks for the same few of them
    # thousands of times, and each hashes every case id again
    _splits: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _fingerprint: list = field(default_factory=list, init=False, repr=False, compare=False)

    @classmethod
    def load(cls, table_path: str | Path, name: str, study: StudyConfig) -> SiteData:
        table, provenance = read_feature_table(table_path)
        usable = usable_cases(table, study)
        _log_left_out(usable, site_log(name, Path(table_path).parent))
        table, features = usable.table, usable.features
        return cls(
            name=name,
            extraction_hash=str(provenance.get("extraction_hash", "")),
            features=features,
            case_ids=table["case_id"].astype(str).tolist(),
            labels=table["label"].astype(str).tolist(),
            x=table[features].to_numpy(dtype=np.float64),
            y=(table["label"] == study.federation.positive_class).to_numpy(dtype=np.float64),
            batch=_batches(table, name, study),
            origin=np.full(len(table), name),
            clinical={
                column.removeprefix(CLINICAL_PREFIX): table[column].to_numpy()
                for column in table.columns
                if column.startswith(CLINICAL_PREFIX)
            },
            table_path=Path(table_path),
            versions={name: str(provenance[name]) for name in EXTRACTORS if name in provenance},
            identity=load_or_create_identity(Path(table_path).parent),
            excluded=usable.excluded,
        )

    @classmethod
    def pooled(cls, sites: list[SiteData], features: list[str]) -> SiteData:
        """All sites' cases in one place, each keeping its site as its batch."""
        return cls(
            name="pooled",
            extraction_hash=sites[0].extraction_hash,
            features=list(features),
            case_ids=[case for site in sites for case in site.case_ids],
            labels=[label for site in sites for label in site.labels],
            x=np.vstack([site.columns(features) for site in sites]),
            y=np.concatenate([site.y for site in sites]),
            batch=np.concatenate([site.batch for site in sites]),
            origin=np.concatenate([site.origin for site in sites]),
            clinical={
                name: np.concatenate([site.clinical[name] for site in sites])
                for name in set.intersection(*(set(site.clinical) for site in sites))
            },
            central=True,
        )

    def columns(self, features: list[str]) -> np.ndarray:
        missing = sorted(set(features) - set(self.features))
        if missing:
            raise SiteSkipped(f"{self.name} lacks {len(missing)} study features, e.g. {missing[0]}")
        index = {name: i for i, name in enumerate(self.features)}
        return self.x[:, [index[name] for name in features]]

    def fingerprint(self) -> str:
        """A digest of the cases this site answers from (ids, labels, values, batches): a
        study's request caps count per these cases, so a site that corrects its table may
        answer the study again, which no aggregator can bring about. Computed once."""
        if not self._fingerprint:
            digest = hashlib.sha256(json.dumps([self.case_ids, self.labels]).encode())
            for array in (self.x, self.batch.astype(str)):
                digest.update(np.ascontiguousarray(array).tobytes())
            self._fingerprint.append(digest.hexdigest()[:16])
        return self._fingerprint[0]

    def rows(self, partition: Partition, role: str, study: StudyConfig) -> np.ndarray:
        """Boolean mask of the cases that play `role` ('train' or 'test') in `partition`.
        A pure function of the cases and the study's split settings, so it is remembered."""
        validation = study.validation
        key = (
            partition,
            role,
            validation.folds,
            validation.inner_folds,
            validation.seed,
            validation.holdout_fraction,
        )
        if key not in self._splits:
            self._splits[key] = self._rows(partition, role, study)
        return self._splits[key].copy()

    def _rows(self, partition: Partition, role: str, study: StudyConfig) -> np.ndarray:
        if partition.inner is not None:
            return self._inner_rows(partition, role, study)
        n = len(self.case_ids)
        if partition.scheme in ("all", "unseen"):
            everything = np.ones(n, dtype=bool)
            return everything if (partition.scheme == "all") == (role == "train") else ~everything
        strata = self._strata(np.arange(n))
        validation = study.validation
        if partition.scheme == "holdout":
            test = holdout_mask(self.case_ids, strata, validation.holdout_fraction, validation.seed)
        else:
            test = (
                fold_ids(self.case_ids, strata, validation.folds, validation.seed) == partition.fold
            )
        return test if role == "test" else ~test

    def _strata(self, members: np.ndarray) -> list[str]:
        """Site x batch x class of each member: a site splits its cases exactly as the
        pooled reference splits them, whether or not a batch spans sites."""
        return [f"{self.origin[i]}|{self.batch[i]}|{self.labels[i]}" for i in members]

    def _inner_rows(self, partition: Partition, role: str, study: StudyConfig) -> np.ndarray:
        """Inner CV fold `partition.inner` of the outer fit's training cases."""
        outer = self.rows(replace(partition, inner=None), "train", study)
        members = np.flatnonzero(outer)
        strata = self._strata(members)
        validation = study.validation
        inner = fold_ids(
            [self.case_ids[i] for i in members], strata, validation.inner_folds, validation.seed + 1
        )
        test = np.zeros(len(self.case_ids), dtype=bool)
        test[members[inner == partition.inner]] = True
        return test if role == "test" else outer & ~test


def usable_cases(table: pd.DataFrame, study: StudyConfig) -> UsableCases:
    """The labelled cases the study can use. Non-finite values are missing; under
    `impute-mean` they stay (NaN), else a case missing any is left out, named, and a
    feature missing in every case is left out instead."""
    table = table[table["label"].isin(study.federation.classes)].reset_index(drop=True)
    features = feature_columns(table)
    values = table[features].to_numpy(dtype=np.float64)
    missing = ~np.isfinite(values)
    if not missing.any():
        return UsableCases(table, features)
    table = table.copy()
    table[features] = np.where(missing, np.nan, values)
    if study.missing_values == "impute-mean":
        return UsableCases(table, features)
    everywhere = missing.all(axis=0)
    dropped = [name for name, out in zip(features, everywhere, strict=True) if out]
    features = [name for name, out in zip(features, everywhere, strict=True) if not out]
    missing = missing[:, ~everywhere]
    excluded = {
        str(table["case_id"].iloc[row]): "no " + _some([features[c] for c in np.flatnonzero(gaps)])
        for row, gaps in enumerate(missing)
        if gaps.any()
    }
    kept = table.loc[~missing.any(axis=1)].drop(columns=dropped).reset_index(drop=True)
    return UsableCases(kept, features, excluded, dropped)


@dataclass(frozen=True)
class UsableCases:
    """A site's table as the study uses it, and what was left out of it and why."""

    table: pd.DataFrame
    features: list[str]
    excluded: dict[str, str] = field(default_factory=dict)  # case id -> the features it lacks
    dropped: list[str] = field(default_factory=list)  # features missing in every case


def _some(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _log_left_out(usable: UsableCases, log: logging.Logger) -> None:
    """Name, in the site's own log, what `exclude-case` left out (case ids never leave)."""
    if usable.dropped:
        log.warning(
            "%d feature(s) missing in every case left out (missing_values: exclude-case): %s",
            len(usable.dropped),
            _some(usable.dropped),
        )
    for case, why in usable.excluded.items():
        log.warning("case %s left out (missing_values: exclude-case): %s", case, why)


def _batches(table, site: str, study: StudyConfig) -> np.ndarray:
    """Each case's ComBat batch: the site, or the value of the study's batch column."""
    column = study.harmonization.batch
    if column == "site":
        return np.full(len(table), site)
    values = table.get(f"{CLINICAL_PREFIX}{column}")
    if values is None:
        raise TableMismatch(
            f"its feature table lacks the study's batch column {column!r} "
            "(re-extract with the study config)"
        )
    return values.astype(str).to_numpy()
