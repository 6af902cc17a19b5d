"""What a site computes for each protocol phase, from its own feature table.

Plain functions over arrays; the ClientApp only moves their results. Everything
returned is an aggregate a site may share (DESIGN.md, "What may leave a site"):
a phase over fewer than the study's minimum cell size k of cases is refused, and
counts below k are suppressed, never sent exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fedrad.client.coverage import coverage
from fedrad.common.config import EXTRACTORS, StudyConfig
from fedrad.common.feature_table import (
    CLINICAL_PREFIX,
    feature_columns,
    read_feature_table,
    write_feature_table,
)
from fedrad.common.harmonization import combat
from fedrad.common.models import lasso, mlp
from fedrad.common.models.logistic import newton_terms, with_intercept
from fedrad.common.pipeline import Partition, Payload, PipelineParams, unbundle
from fedrad.common.stats.metrics import (
    ConfusionCounts,
    ScoreBlocks,
    calibration_sums,
    score_histograms,
)
from fedrad.common.stats.moments import Moments
from fedrad.common.stats.selection import Comoments
from fedrad.common.stats.split import fold_ids, holdout_mask

CALIBRATION_BINS = 10


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

    @classmethod
    def load(cls, table_path: str | Path, name: str, study: StudyConfig) -> SiteData:
        table, provenance = read_feature_table(table_path)
        classes = study.federation.classes
        table = table[table["label"].isin(classes)].reset_index(drop=True)
        features = feature_columns(table)
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
        )

    def columns(self, features: list[str]) -> np.ndarray:
        missing = sorted(set(features) - set(self.features))
        if missing:
            raise SiteSkipped(f"{self.name} lacks {len(missing)} study features, e.g. {missing[0]}")
        index = {name: i for i, name in enumerate(self.features)}
        return self.x[:, [index[name] for name in features]]

    def rows(self, partition: Partition, role: str, study: StudyConfig) -> np.ndarray:
        """Boolean mask of the cases that play `role` ('train' or 'test') in `partition`."""
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


def _batches(table, site: str, study: StudyConfig) -> np.ndarray:
    """Each case's ComBat batch: the site, or the value of the study's batch column."""
    column = study.harmonization.batch
    if column == "site":
        return np.full(len(table), site)
    values = table.get(f"{CLINICAL_PREFIX}{column}")
    if values is None:
        raise ValueError(
            f"{site}: the study takes ComBat batches from the manifest column {column!r}, "
            f"which its feature table lacks (re-extract with the study config)"
        )
    return values.astype(str).to_numpy()


def suppressed(count: int, min_cell_size: int) -> str:
    """A count as it may leave the site: exact at or above k, else '<k'."""
    return str(count) if count >= min_cell_size else f"<{min_cell_size}"


def census(data: SiteData, study: StudyConfig) -> dict[str, str | list[str]]:
    """Case counts per class (suppressed below k), and the study sequences and regions the
    site's features cover (`coverage`), so the server can run on what all sites share."""
    k = study.federation.min_cell_size
    counts = {
        f"cases.{label}": suppressed(sum(value == label for value in data.labels), k)
        for label in study.federation.classes
    }
    return {**counts, **coverage(data.features, study.extraction)}


# -- the pipeline as this site applies it ----------------------------------------------------
def _enough(rows: np.ndarray, data: SiteData, what: str, study: StudyConfig) -> np.ndarray:
    k = study.federation.min_cell_size
    if rows.sum() < k:
        raise SiteSkipped(f"{data.name} has fewer than {k} {what} cases")
    return rows


def _design(data: SiteData, rows: np.ndarray, study: StudyConfig) -> np.ndarray | None:
    """ComBat covariates of the fit: the study's clinical covariates, plus the diagnosis
    under option B (METHODS.md 1.4); None when there are none."""
    covariates = _covariates(data, rows, study)
    if study.harmonization.preserve_diagnosis:
        diagnosis = data.y[rows, None]
        return diagnosis if covariates is None else np.hstack([covariates, diagnosis])
    return covariates


def _covariates(data: SiteData, rows: np.ndarray, study: StudyConfig) -> np.ndarray | None:
    """The ComBat covariates of `rows`; None when the study has none."""
    names = study.harmonization.covariates
    return clinical_design(data, rows, names, study) if names else None


def clinical_design(
    data: SiteData, rows: np.ndarray, names: Sequence[str], study: StudyConfig
) -> np.ndarray:
    """Clinical variables `names` of `rows`, coded the same way at every site: categoricals
    one-hot without their first level, numbers as they are (`clinical_input_names` names them)."""
    missing = sorted(set(names) - set(data.clinical))
    if missing:
        raise SiteSkipped(f"{data.name} lacks clinical variable(s) {missing} in its table")
    levels = {name: list(study.clinical[name]) for name in names if study.clinical[name]}
    categorical = {name: data.clinical[name][rows].astype(str) for name in levels}
    continuous = {name: data.clinical[name][rows] for name in names if name not in levels}
    try:
        return combat.covariate_matrix(categorical, continuous, levels)
    except ValueError as exc:
        raise SiteSkipped(f"{data.name}: {exc}") from exc


def _estimates(data: SiteData, params: PipelineParams, partition: Partition, study: StudyConfig):
    """This site's ComBat estimates: its own EB on its training cases, or, for a site unseen
    in training, from its own unlabelled cases with the pooled model frozen."""
    fit, settings = params.combat, study.harmonization
    method = {
        "eb": settings.empirical_bayes,
        "parametric": settings.parametric,
        "mean_only": False,
    }
    x = data.columns(params.features)
    train = data.rows(partition, "train", study)
    if not train.any():
        frozen = combat.frozen_estimates(fit.ols, fit.var_pooled, **method)
        return combat.fit_new_batches(x, data.batch, frozen)
    _, estimates = combat.site_harmonize(
        x[train],
        data.batch[train],
        _design(data, train, study),
        fit.ols,
        fit.var_pooled,
        shared=fit.shared,
        **method,
    )
    untrained = ~np.isin(data.batch, estimates.levels)
    if untrained.any():  # a batch with no training case here, e.g. a scanner only in a test fold
        return combat.fit_new_batches(x[untrained], data.batch[untrained], estimates)
    return estimates


def harmonized(
    data: SiteData,
    params: PipelineParams,
    partition: Partition,
    rows: np.ndarray,
    study: StudyConfig,
) -> np.ndarray:
    """The `rows` of the study features after ComBat; the transform never reads a label."""
    x = data.columns(params.features)[rows]
    if params.combat is None:
        return x
    estimates = _estimates(data, params, partition, study)
    settings, seen = study.harmonization, data.rows(partition, "train", study).any()
    if settings.covariates and seen and not settings.preserve_diagnosis:
        # option A with clinical covariates: the standard transform, which reads no label
        return combat.apply_with_covariates(
            x, data.batch[rows], _covariates(data, rows, study), estimates
        )
    return combat.apply_label_free(x, data.batch[rows], estimates)


def model_inputs(
    data: SiteData,
    params: PipelineParams,
    partition: Partition,
    rows: np.ndarray,
    study: StudyConfig,
) -> np.ndarray:
    """Harmonized, selected and standardized features of `rows`."""
    z = harmonized(data, params, partition, rows, study)
    if params.selected is not None:
        z = z[:, params.selected]
    if params.clinical_inputs:
        z = np.hstack([z, _clinical_inputs(data, rows, study)])
    return params.standardizer.transform(z) if params.standardizer is not None else z


def _clinical_inputs(data: SiteData, rows: np.ndarray, study: StudyConfig) -> np.ndarray:
    inputs = clinical_design(data, rows, study.model.clinical_inputs, study)
    if not np.isfinite(inputs).all():
        raise SiteSkipped(f"{data.name} has cases without a value of a clinical model input")
    return inputs


def predict(params: PipelineParams, z: np.ndarray) -> np.ndarray:
    """P(positive class) from the fitted model: the MLP if there is one, else logistic."""
    from scipy.special import expit

    if params.network is not None:
        return mlp.predict(params.network, z)
    return expit(with_intercept(z) @ params.beta)


# -- phase handlers: (data, study, request) -> reply ------------------------------------------
def _training(data: SiteData, partition: Partition, study: StudyConfig) -> np.ndarray:
    return _enough(data.rows(partition, "train", study), data, "training", study)


def _combat_training(data: SiteData, partition: Partition, study: StudyConfig) -> np.ndarray:
    """Training rows for ComBat sums, which are per batch: every batch needs >= k cases."""
    rows = _training(data, partition, study)
    k = study.federation.min_cell_size
    small = [b for b in sorted(set(data.batch[rows])) if np.sum(data.batch[rows] == b) < k]
    if small:
        raise SiteSkipped(f"{data.name} has fewer than {k} training cases of batch(es) {small}")
    return rows


def combat_ols(data: SiteData, study: StudyConfig, request: Payload) -> Payload:
    params, partition = _request(request)
    rows = _combat_training(data, partition, study)
    x = data.columns(params.features)[rows]
    levels = tuple(request.values["combat.levels"])
    sums = combat.site_ols_sums(x, data.batch[rows], _design(data, rows, study), levels)
    return Payload(arrays={"dtd": sums.dtd, "dty": sums.dty, "counts": sums.counts})


def combat_ssr(data: SiteData, study: StudyConfig, request: Payload) -> Payload:
    params, partition = _request(request)
    rows = _combat_training(data, partition, study)
    x = data.columns(params.features)[rows]
    fit = params.combat
    sums = combat.site_ssr(x, data.batch[rows], _design(data, rows, study), fit.ols, fit.levels)
    return Payload(arrays={"ssr": sums.ssr}, values={"n": int(sums.n)})


def combat_batch_moments(data: SiteData, study: StudyConfig, request: Payload) -> Payload:
    """Sums of standardized features per batch that spans sites (METHODS.md 2.1, round 3)."""
    params, partition = _request(request)
    rows = _combat_training(data, partition, study)
    x = data.columns(params.features)[rows]
    fit, shared = params.combat, list(request.values["combat.split"])
    sums = combat.site_batch_moments(
        x, data.batch[rows], _design(data, rows, study), fit.ols, fit.var_pooled, shared
    )
    return Payload(arrays={"counts": sums.counts, "s1": sums.s1, "s2": sums.s2})


def screen(data: SiteData, study: StudyConfig, request: Payload) -> Payload:
    """Per-class moments of the harmonized training features (Welch screening, METHODS.md 3.2),
    and moments of the clinical model inputs."""
    params, partition = _request(request)
    rows = _training(data, partition, study)
    z = harmonized(data, params, partition, rows, study)
    y = data.y[rows].astype(bool)
    k = study.federation.min_cell_size
    if min(y.sum(), (~y).sum()) < k:
        raise SiteSkipped(f"{data.name} has fewer than {k} training cases of a class")
    positives, negatives = Moments.of(z[y]), Moments.of(z[~y])
    arrays = {
        "positives.mean": positives.mean,
        "positives.m2": positives.m2,
        "negatives.mean": negatives.mean,
        "negatives.m2": negatives.m2,
    }
    if study.model.clinical_inputs:  # for scaling only: clinical inputs skip selection
        clinical = Moments.of(_clinical_inputs(data, rows, study))
        arrays |= {"clinical.mean": clinical.mean, "clinical.m2": clinical.m2}
    return Payload(arrays=arrays, values={"positives.n": positives.n, "negatives.n": negatives.n})


def site_effect(data: SiteData, study: StudyConfig, request: Payload) -> Payload:
    """Per-batch moments of the training features before and after harmonization."""
    params, partition = _request(request)
    rows = _combat_training(data, partition, study)
    raw = data.columns(params.features)[rows]
    after = harmonized(data, params, partition, rows, study)
    batches = sorted(set(data.batch[rows]))
    arrays: dict[str, np.ndarray] = {}
    for stage, values in (("raw", raw), ("harmonized", after)):
        parts = [Moments.of(values[data.batch[rows] == batch]) for batch in batches]
        arrays[f"{stage}.mean"] = np.vstack([part.mean for part in parts])
        arrays[f"{stage}.m2"] = np.vstack([part.m2 for part in parts])
    counts = [int(np.sum(data.batch[rows] == batch)) for batch in batches]
    return Payload(arrays=arrays, values={"batches": batches, "counts": counts})


def comoments(data: SiteData, study: StudyConfig, request: Payload) -> Payload:
    """Centred cross-products of the candidate features (redundancy removal, METHODS.md 3.1)."""
    params, partition = _request(request)
    rows = _training(data, partition, study)
    candidates = request.arrays["candidates"].astype(int)
    moments = Comoments.of(harmonized(data, params, partition, rows, study)[:, candidates])
    return Payload(arrays={"mean": moments.mean, "cross": moments.cross}, values={"n": moments.n})


def newton(data: SiteData, study: StudyConfig, request: Payload) -> Payload:
    params, partition = _request(request)
    rows = _training(data, partition, study)
    x = with_intercept(model_inputs(data, params, partition, rows, study))
    terms = newton_terms(x, data.y[rows], params.beta)
    return Payload(
        arrays={"gradient": terms.gradient, "hessian": terms.hessian},
        values={"deviance": terms.deviance, "n": terms.n},
    )


def loss(data: SiteData, study: StudyConfig, request: Payload) -> Payload:
    """Summed negative log-likelihood at beta over the requested cases (L1 line search and
    held-out deviance, METHODS.md 3.4)."""
    params, partition = _request(request)
    role = str(request.values.get("role", "train"))
    rows = _enough(data.rows(partition, role, study), data, role, study)
    x = with_intercept(model_inputs(data, params, partition, rows, study))
    total, n = lasso.loss_terms(x, data.y[rows], params.beta)
    return Payload(values={"loss": total, "n": n})


def lambda_max_sums(data: SiteData, study: StudyConfig, request: Payload) -> Payload:
    params, partition = _request(request)
    rows = _training(data, partition, study)
    sums = lasso.LambdaMaxSums.of(model_inputs(data, params, partition, rows, study), data.y[rows])
    return Payload(
        arrays={"sum_x": sums.sum_x, "sum_xy": sums.sum_xy},
        values={"n": sums.n, "sum_y": sums.sum_y},
    )


def scores(data: SiteData, study: StudyConfig, request: Payload) -> Payload:
    """Evaluate every fit that tests this site on its test cases, pooled: score blocks per
    class and calibration sums (bins merged to >= k cases each) and the site's AUC over all
    of its out-of-fold scores, plus confusion counts per fit at that fit's threshold."""
    from sklearn.metrics import roc_auc_score

    fits = unbundle(request)
    y_all, p_all, values = [], [], {}
    for index, fit in enumerate(fits):
        params, partition = _request(fit)
        rows = data.rows(partition, "test", study)
        p = predict(params, model_inputs(data, params, partition, rows, study))
        counts = ConfusionCounts.of(data.y[rows], p, float(fit.values["threshold"]))
        values |= {f"{index}/{key}": getattr(counts, key) for key in ("tp", "fn", "tn", "fp")}
        y_all.append(data.y[rows])
        p_all.append(p)
    y, p = np.concatenate(y_all), np.concatenate(p_all)
    federation = study.federation
    if len(y) < federation.min_cell_size:
        raise SiteSkipped(f"{data.name} has fewer than {federation.min_cell_size} test cases")
    blocks = ScoreBlocks.merged(
        *score_histograms(y, p, federation.histogram_bins), federation.min_cell_size
    )
    if 0 < y.sum() < len(y):
        values["local-auc"] = float(roc_auc_score(y, p))
    sum_p, sum_y, count = calibration_sums(y, p, CALIBRATION_BINS, federation.min_cell_size)
    return Payload(
        arrays={
            "blocks.lo": blocks.lo,
            "blocks.hi": blocks.hi,
            "blocks.positives": blocks.positives,
            "blocks.negatives": blocks.negatives,
            "calibration.sum_p": sum_p,
            "calibration.sum_y": sum_y,
            "calibration.count": count.astype(np.int64),
        },
        values=values,
    )


def calibration(data: SiteData, study: StudyConfig, request: Payload) -> Payload:
    """Newton terms of logit P(y) = a + b logit(p) over this site's out-of-fold test cases
    of every fit in the bundle (the calibration line)."""
    logits, outcomes = [], []
    for fit in unbundle(request):
        params, partition = _request(fit)
        rows = data.rows(partition, "test", study)
        p = np.clip(
            predict(params, model_inputs(data, params, partition, rows, study)), 1e-12, 1 - 1e-12
        )
        logits.append(np.log(p / (1 - p)))
        outcomes.append(data.y[rows])
    y = np.concatenate(outcomes)
    _enough(np.ones(len(y), dtype=bool), data, "test", study)
    terms = newton_terms(with_intercept(np.concatenate(logits)), y, request.arrays["gamma"])
    return Payload(
        arrays={"gradient": terms.gradient, "hessian": terms.hessian},
        values={"deviance": terms.deviance, "n": terms.n},
    )


def persist(data: SiteData, study: StudyConfig, request: Payload) -> Payload:
    """Keep this site's harmonized table and ComBat estimates on its own disk; send nothing."""
    params, partition = _request(request)
    if data.table_path is None:
        raise SiteSkipped(f"{data.name} has no folder to keep local artifacts in")
    rows = np.ones(len(data.case_ids), dtype=bool)
    folder = data.table_path.parent
    table, provenance = read_feature_table(data.table_path)
    table = table[table["label"].isin(study.federation.classes)].reset_index(drop=True)
    table[params.features] = harmonized(data, params, partition, rows, study)
    write_feature_table(table, folder / "harmonized.parquet", {**provenance, "harmonized": True})
    if params.combat is not None:
        estimates = _estimates(data, params, partition, study)
        np.savez(folder / "combat_estimates.npz", **combat.as_arrays(estimates))
    return Payload()


def _request(request: Payload) -> tuple[PipelineParams, Partition]:
    return PipelineParams.from_payload(request), Partition.from_values(request.values)


HANDLERS: dict[str, Callable[[SiteData, StudyConfig, Payload], Payload]] = {
    "combat-ols": combat_ols,
    "combat-ssr": combat_ssr,
    "combat-batch-moments": combat_batch_moments,
    "screen": screen,
    "comoments": comoments,
    "site-effect": site_effect,
    "newton": newton,
    "loss": loss,
    "lambda-max": lambda_max_sums,
    "scores": scores,
    "calibration": calibration,
    "persist": persist,
}


def handle(kind: str, data: SiteData, study: StudyConfig, request: Payload) -> Payload:
    """Answer one protocol request, or say why this site sits the phase out."""
    if kind == "census":
        return Payload(
            values={
                "site": data.name,
                "extraction-hash": data.extraction_hash,
                "study-hash": study.study_hash,
                "features": data.features,
                "batches": sorted(set(data.batch)),
                **{f"version.{name}": version for name, version in data.versions.items()},
                **census(data, study),
            }
        )
    try:
        return HANDLERS[kind](data, study, request)
    except SiteSkipped as skipped:
        return Payload(values={"skipped": str(skipped)})
