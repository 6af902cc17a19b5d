"""The fitted pipeline as a site applies it to its own cases: imputation, ComBat, selection,
scaling, model. Nothing here reads a label except where the method needs it (option B's ComBat fit).

A site's own ComBat estimates (its empirical-Bayes step) depend only on the pooled ComBat
fit and the partition, so they are computed once per fit and kept for its later requests.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from scipy.special import expit

from fedrad.client.data import SiteData, SiteSkipped
from fedrad.common.config import StudyConfig
from fedrad.common.differential_privacy import clip_rows
from fedrad.common.harmonization import combat
from fedrad.common.models import mlp
from fedrad.common.models.logistic import with_intercept
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.stats.imputation import impute

_ESTIMATES: OrderedDict[tuple, tuple[SiteData, object]] = OrderedDict()
_KEPT_ESTIMATES = 32


def enough(rows: np.ndarray, data: SiteData, what: str, study: StudyConfig) -> np.ndarray:
    k = study.federation.min_cell_size
    if rows.sum() < k:
        raise SiteSkipped(f"{data.name} has fewer than {k} {what} cases")
    return rows


def combat_design(data: SiteData, rows: np.ndarray, study: StudyConfig) -> np.ndarray | None:
    """ComBat covariates of the fit: the study's clinical covariates, plus the diagnosis
    under option B (docs/methods.md 1.4); None when there are none."""
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


def study_features(
    data: SiteData, params: PipelineParams, rows: np.ndarray | None = None
) -> np.ndarray:
    """The `rows` (default all) of the fit's features, each missing value filled with the
    fit's pooled training mean: training and test cases alike, never from their own fold."""
    x = data.columns(params.features)
    x = x if rows is None else x[rows]
    if params.imputation is not None:
        return impute(x, params.imputation)
    if np.isnan(x).any():
        raise SiteSkipped(f"{data.name} has missing feature values and no means to impute them")
    return x


def site_estimates(data: SiteData, params: PipelineParams, partition: Partition, study):
    """This site's ComBat estimates, computed once per pooled ComBat fit (and imputation
    means) and partition."""
    filled = None if params.imputation is None else np.asarray(params.imputation).tobytes()
    key = (id(data), study.study_hash, partition, _digest(params.combat), filled)
    kept = _ESTIMATES.get(key)
    if kept is not None and kept[0] is data:
        _ESTIMATES.move_to_end(key)
        return kept[1]
    own = _own_estimates(data, params, partition, study)
    _ESTIMATES[key] = (data, own)
    while len(_ESTIMATES) > _KEPT_ESTIMATES:
        _ESTIMATES.popitem(last=False)
    return own


def _digest(fit) -> str:
    """Content hash of a pooled ComBat fit: equal hashes, equal fits."""
    digest = hashlib.sha256(repr(fit.levels).encode())
    parts = [fit.ols.batch_means, fit.ols.beta, fit.ols.alpha, fit.ols.x_mean, fit.var_pooled]
    if fit.shared is not None:
        digest.update(repr(fit.shared.levels).encode())
        parts += [value for value in vars(fit.shared).values() if isinstance(value, np.ndarray)]
    for array in parts:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _own_estimates(data: SiteData, params: PipelineParams, partition: Partition, study):
    """This site's ComBat estimates: its own EB on its training cases, or, for a site unseen
    in training, from its own unlabelled cases with the pooled model frozen."""
    fit, settings = params.combat, study.harmonization
    method = {
        "eb": settings.empirical_bayes,
        "parametric": settings.parametric,
        "mean_only": False,
    }
    x = study_features(data, params)
    train = data.rows(partition, "train", study)
    if not train.any():
        frozen = combat.frozen_estimates(fit.ols, fit.var_pooled, **method)
        return combat.fit_new_batches(x, data.batch, frozen)
    _, estimates = combat.site_harmonize(
        x[train],
        data.batch[train],
        combat_design(data, train, study),
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
    x = study_features(data, params, rows)
    if params.combat is None:
        return x
    estimates = site_estimates(data, params, partition, study)
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
    """Harmonized, selected and standardized features of `rows`; under differential privacy
    each case's scaled to the study's input_clip, which bounds its share of every sum."""
    z = harmonized(data, params, partition, rows, study)
    if params.selected is not None:
        z = z[:, params.selected]
    if params.clinical_inputs:
        z = np.hstack([z, clinical_inputs(data, rows, study)])
    if params.standardizer is None:
        return z
    z = params.standardizer.transform(z)
    if study.differential_privacy:
        z = clip_rows(z, study.differential_privacy.input_clip)
    return z


def clinical_inputs(data: SiteData, rows: np.ndarray, study: StudyConfig) -> np.ndarray:
    inputs = clinical_design(data, rows, study.model.clinical_inputs, study)
    if not np.isfinite(inputs).all():
        raise SiteSkipped(f"{data.name} has cases without a value of a clinical model input")
    return inputs


def predict(params: PipelineParams, z: np.ndarray) -> np.ndarray:
    """P(positive class) from the fitted model: the MLP if there is one, else logistic."""
    if params.network is not None:
        return mlp.predict(params.network, z)
    return expit(with_intercept(z) @ params.beta)
