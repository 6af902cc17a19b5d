"""The study's model kinds compared under one validation (`model.compare`,
docs/methods.md 4.5): each kind's pooled figures come from its own SCORES totals, as the
study model's do; each pair of kinds is compared by DeLong's test on one JOINT_SCORES
total, the per-class joint histogram of the two models' scores on every fold's test cases
(`config.JOINT_BINS` bins per score), summed over the sites that test them.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from fedrad.common.config import JOINT_BINS
from fedrad.common.messages import JointScoresReply, Kind, Request
from fedrad.common.stats.delong import JointHistograms, pooled_delong
from fedrad.server.federation import Federation, StudyCannotRun
from fedrad.server.phases.evaluation import Evaluated

ARM_FIGURES = (  # each kind's figures in the comparison, as results.json's pooled ones
    "auc",
    "auc_ci",
    "auc_error_bound",
    "sensitivity",
    "sensitivity_ci",
    "specificity",
    "specificity_ci",
    "balanced_accuracy",
    "n_positive",
    "n_negative",
)


def compare_models(federation: Federation, arms: dict[str, tuple[Evaluated, dict]]) -> dict:
    """Per kind (its evaluated fits, its pooled metrics) -> the comparison block of
    results.json: each kind's figures, and DeLong's test for each pair of kinds."""
    pairs = [_pair(federation, a, b, arms[a][0], arms[b][0]) for a, b in combinations(arms, 2)]
    return {
        "kinds": {
            kind: {key: metrics.get(key) for key in ARM_FIGURES}
            for kind, (_, metrics) in arms.items()
        },
        "pairs": pairs,
        "joint_grid": {"bins": JOINT_BINS, "width": 1.0 / JOINT_BINS},
        "method": "every kind fitted on the same folds, with the same harmonization and "
        "selection per fold; AUC, sensitivity and specificity from each kind's summed test "
        "histograms and confusion counts; DeLong's test of each pair's AUC difference from "
        "the summed per-class joint histogram of their out-of-fold scores on the joint grid",
    }


def _pair(federation: Federation, a: str, b: str, fits_a: Evaluated, fits_b: Evaluated) -> dict:
    """DeLong's test of kinds a and b from their joint histograms summed over sites."""
    requests: dict[int, Request] = {}
    for (fitted_a, partitions), (fitted_b, _) in zip(fits_a, fits_b, strict=True):
        for node, partition in partitions.items():
            if federation.sites[node].status != "included":
                continue
            parts = requests.setdefault(node, Request()).parts
            parts.append(Request(fitted_a.params, partition, values={"model": a}))
            parts.append(Request(fitted_b.params, partition, values={"model": b}))

    def total(nodes: list[int]) -> JointScoresReply:
        asked = {node: requests[node] for node in nodes}
        return federation.total(Kind.JOINT_SCORES, asked, _misshapen)

    tag = f"comparison {a} vs {b}"
    try:
        summed, excluded = federation.without_failures(tag, list(requests), total)
    except StudyCannotRun as nobody:
        return {"a": a, "b": b, "note": str(nobody)}
    test = pooled_delong(JointHistograms(summed.positives, summed.negatives))
    z = test.difference / test.standard_error if test.standard_error > 0 else float("nan")
    return {
        "a": a,
        "b": b,
        "auc_a": test.auc_a,
        "auc_b": test.auc_b,
        "difference": test.difference,
        "difference_ci": list(test.confidence_interval()),
        "standard_error": test.standard_error,
        "z": z,
        "p_value": test.p_value,
        "n_positive": int(summed.positives.sum()),
        "n_negative": int(summed.negatives.sum()),
        "excluded_sites": excluded,
    }


def _misshapen(total: JointScoresReply) -> str | None:
    """Why a JOINT_SCORES total is not what was asked, if it is not."""
    for name in ("positives", "negatives"):
        value = getattr(total, name)
        if value.shape != (JOINT_BINS, JOINT_BINS):
            return f"{name} has shape {value.shape}, not {(JOINT_BINS, JOINT_BINS)}"
        if np.any(value < 0):
            return f"{name} holds negative counts"
    return None
