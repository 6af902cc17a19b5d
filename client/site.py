"""What a site computes for each protocol phase, from its own feature table.

Plain functions over arrays: the ClientApp only moves their results. Everything
returned here is an aggregate a site may share (DESIGN.md, "What may leave a site");
counts below the study's minimum cell size are suppressed, never sent exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from fedrad.common.config import StudyConfig
from fedrad.common.feature_table import feature_columns, read_feature_table
from fedrad.common.logistic import NewtonTerms, newton_terms, predict_proba, with_intercept
from fedrad.common.metrics import ConfusionCounts, score_histograms
from fedrad.common.moments import Moments, Standardizer
from fedrad.common.split import holdout_mask


class SiteSkipped(Exception):
    """This site contributes nothing to a phase (e.g. fewer than k cases); says why."""


@dataclass(frozen=True)
class SiteData:
    """A site's labelled cases, split into training and hold-out parts."""

    name: str
    extraction_hash: str
    features: list[str]
    x: np.ndarray
    y: np.ndarray
    labels: list[str]
    holdout: np.ndarray

    @classmethod
    def load(cls, table_path: str | Path, name: str, study: StudyConfig) -> SiteData:
        table, provenance = read_feature_table(table_path)
        federation = study.federation
        table = table[table["label"].isin(federation.classes)].reset_index(drop=True)
        features = feature_columns(table)
        labels = table["label"].astype(str).tolist()
        return cls(
            name=name,
            extraction_hash=str(provenance.get("extraction_hash", "")),
            features=features,
            x=table[features].to_numpy(dtype=np.float64),
            y=(table["label"] == federation.positive_class).to_numpy(dtype=np.float64),
            labels=labels,
            holdout=holdout_mask(
                table["case_id"].astype(str).tolist(),
                labels,
                federation.holdout_fraction,
                federation.split_seed,
            ),
        )

    def columns(self, features: list[str]) -> np.ndarray:
        missing = sorted(set(features) - set(self.features))
        if missing:
            raise SiteSkipped(
                f"site {self.name} lacks {len(missing)} study features, e.g. {missing[0]}"
            )
        index = {name: i for i, name in enumerate(self.features)}
        return self.x[:, [index[name] for name in features]]


def suppressed(count: int, min_cell_size: int) -> str:
    """A count as it may leave the site: exact at or above k, else '<k'."""
    return str(count) if count >= min_cell_size else f"<{min_cell_size}"


def census(data: SiteData, study: StudyConfig) -> dict[str, str]:
    """Case counts per class and split, suppressed below k."""
    k = study.federation.min_cell_size
    report = {}
    for label in study.federation.classes:
        is_label = np.array([value == label for value in data.labels], dtype=bool)
        report[f"train.{label}"] = suppressed(int(np.sum(is_label & ~data.holdout)), k)
        report[f"test.{label}"] = suppressed(int(np.sum(is_label & data.holdout)), k)
    return report


def _part(data: SiteData, features: list[str], holdout: bool, k: int):
    rows = data.holdout if holdout else ~data.holdout
    if rows.sum() < k:
        part = "hold-out" if holdout else "training"
        raise SiteSkipped(f"site {data.name} has fewer than {k} {part} cases")
    return data.columns(features)[rows], data.y[rows]


def training_moments(data: SiteData, features: list[str], study: StudyConfig) -> Moments:
    x, _ = _part(data, features, holdout=False, k=study.federation.min_cell_size)
    return Moments.of(x)


def training_newton_terms(
    data: SiteData,
    features: list[str],
    standardizer: Standardizer,
    beta: np.ndarray,
    study: StudyConfig,
) -> NewtonTerms:
    x, y = _part(data, features, holdout=False, k=study.federation.min_cell_size)
    return newton_terms(with_intercept(standardizer.transform(x)), y, beta)


@dataclass(frozen=True)
class SiteEvaluation:
    counts: ConfusionCounts
    positives_histogram: np.ndarray
    negatives_histogram: np.ndarray
    local_auc: float

    @property
    def n_positive(self) -> int:
        return int(self.positives_histogram.sum())

    @property
    def n_negative(self) -> int:
        return int(self.negatives_histogram.sum())


def holdout_evaluation(
    data: SiteData,
    features: list[str],
    standardizer: Standardizer,
    beta: np.ndarray,
    study: StudyConfig,
) -> SiteEvaluation:
    federation = study.federation
    x, y = _part(data, features, holdout=True, k=federation.min_cell_size)
    scores = predict_proba(standardizer.transform(x), beta)
    positives, negatives = score_histograms(y, scores, federation.histogram_bins)
    both_classes = 0 < y.sum() < len(y)
    return SiteEvaluation(
        counts=ConfusionCounts.of(y, scores, federation.threshold),
        positives_histogram=positives,
        negatives_histogram=negatives,
        local_auc=float(roc_auc_score(y, scores)) if both_classes else float("nan"),
    )
