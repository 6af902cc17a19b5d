"""The centralized reference: the same pipeline fit on all sites' features pooled.

Only a simulation can compute it (it needs every case in one place); it is what the
federated result must reproduce.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from fedrad.client.site import SiteData
from fedrad.common.config import StudyConfig
from fedrad.common.logistic import (
    LogisticFit,
    fit_newton,
    newton_terms,
    predict_proba,
    with_intercept,
)
from fedrad.common.metrics import ConfusionCounts, wilson_interval
from fedrad.common.moments import Moments, Standardizer


def pooled_reference(tables: dict[str, Path], features: list[str], study: StudyConfig) -> dict:
    """Fit on the pooled training cases, evaluate exactly on the pooled hold-out cases."""
    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    x = np.vstack([site.columns(features) for site in sites])
    y = np.concatenate([site.y for site in sites])
    test = np.concatenate([site.holdout for site in sites])
    standardizer = Standardizer.from_moments(Moments.of(x[~test]))
    fit = fit_pooled(standardizer.transform(x[~test]), y[~test], study)
    scores = predict_proba(standardizer.transform(x[test]), fit.beta)
    counts = ConfusionCounts.of(y[test], scores, study.federation.threshold)
    return {
        "auc": float(roc_auc_score(y[test], scores)),
        "sensitivity": counts.sensitivity,
        "sensitivity_ci": list(wilson_interval(counts.tp, counts.tp + counts.fn)),
        "specificity": counts.specificity,
        "specificity_ci": list(wilson_interval(counts.tn, counts.tn + counts.fp)),
        "balanced_accuracy": counts.balanced_accuracy,
        "n_positive": int(y[test].sum()),
        "n_negative": int((1 - y[test]).sum()),
        "coefficients": fit.beta.tolist(),
        "iterations": fit.iterations,
    }


def fit_pooled(x: np.ndarray, y: np.ndarray, study: StudyConfig) -> LogisticFit:
    design = with_intercept(x)
    settings = study.federation
    return fit_newton(
        lambda beta: newton_terms(design, y, beta),
        design.shape[1],
        ridge_lambda=settings.ridge_lambda,
        tolerance=settings.newton_tolerance,
        max_iterations=settings.max_newton_iterations,
    )
