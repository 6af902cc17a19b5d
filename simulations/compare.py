"""`fedrad simulate --compare`: is federation worth it, and is harmonization?

Every arm runs the study protocol over the in-process transport (the same code and
sums as a Flower run, which the tests check message for message) on the same site
tables, evaluated on sites the model never saw (leave-one-site-out), except the
pooled-versus-federated check, which uses the study's own validation design.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedrad.client.data import SiteData
from fedrad.common.config import StudyConfig
from fedrad.server.study import StudyProtocol
from fedrad.simulations.in_process import in_process_transport

AGREEMENT = 0.005
"""AUC difference between the federated and the pooled study that counts as agreement.

The models are the same to ~1e-12; both AUCs come from the same summed histograms on the
public grid (the federated one from a masked total), each certified to lie within its
error bound of the exact AUC."""


DP_ARM = "federated + ComBat, differential privacy"


def _run(tables: dict[str, Path], study: StudyConfig) -> dict:
    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    return StudyProtocol(in_process_transport(sites, study), study, log=lambda _: None).run()


def _summary(results: dict) -> dict:
    federated = results["metrics"]["federated"]
    keys = ("auc", "auc_ci", "sensitivity", "specificity", "balanced_accuracy", "roc")
    budget = results["privacy"]["differential_privacy"]
    spent = {"epsilon": budget["epsilon"], "delta": budget["delta"]} if budget else {}
    return {key: federated[key] for key in keys if key in federated} | spent


def compare(results: dict, tables: dict[str, Path], study: StudyConfig) -> dict:
    """Comparison arms on the included sites; `results` is the federated run's results."""
    included = {s["name"] for s in results["sites"] if s["status"] == "included"}
    tables = {name: path for name, path in tables.items() if name in included}
    unseen = {"validation": {"scheme": "leave-one-site-out"}}
    unharmonized = {"harmonization": {"method": "none"}}
    # The arms measure how models do on sites they never saw. Masking changes no number
    # (federated equals pooled), every site here is simulated, and a site alone has no
    # total to mask, while leave-one-site-out totals of fit-independent sums over every
    # set of all sites but one would be refused as differencing: the arms run unmasked.
    study = study.updated(federation={"secure_aggregation": False})
    alone = {"validation": {"scheme": "single-site"}}
    exact = {"differential_privacy": None}
    # the study's own noise, or the defaults when it has none: what privacy would cost
    noised = {"differential_privacy": study.model_dump()["differential_privacy"] or {}}
    arms = {
        "federated + ComBat": study.updated(**unseen, **exact),
        "federated, no harmonization": study.updated(**unseen, **unharmonized, **exact),
        "each site alone + ComBat": study.updated(**alone, **exact),
        "each site alone, no harmonization": study.updated(**alone, **unharmonized, **exact),
    }
    if study.model.kind != "lasso-logistic":  # whose line search noise would swamp
        arms[DP_ARM] = study.updated(**unseen, **noised)
    federated, pooled = results["metrics"]["federated"], results["metrics"]["pooled_reference"]
    coefficients = results["model"].get("coefficients", {})
    pooled_coefficients = pooled.get("model", {}).get("coefficients", {})
    model_difference = max(
        (
            abs(coefficients[k] - pooled_coefficients[k]) if k in pooled_coefficients else np.inf
            for k in coefficients
        ),
        default=float("nan"),
    )
    unseen = {name: _summary(_run(tables, arm)) for name, arm in arms.items()}
    difference = float(abs(federated["auc"] - pooled["auc"]))
    certified = federated["auc_error_bound"] + pooled["auc_error_bound"]
    return {
        "federated_vs_pooled": {
            "validation": study.validation.scheme,
            "max_coefficient_difference": float(model_difference),
            "federated_auc": federated["auc"],
            "federated_auc_bound": federated["auc_error_bound"],
            "pooled_auc": pooled["auc"],
            "difference": difference,
            "agrees_within": AGREEMENT,
            "agrees": bool(difference <= AGREEMENT),
            # noise makes them differ by design: the check is of aggregation, without it
            "noised": results["privacy"]["differential_privacy"] is not None,
            "within_certified_bound": bool(difference <= certified),
        },
        "on_unseen_sites": unseen,
        "worth": _worth(unseen),
    }


def _worth(arms: dict[str, dict]) -> dict:
    """What harmonization and federation add on unseen sites: the federated ComBat arm
    minus the arm without each; and what differential privacy adds: its arm minus the
    federated ComBat arm (negative: what its noise takes away)."""
    best = arms["federated + ComBat"]
    gains = {
        "harmonization": (best, arms["federated, no harmonization"]),
        "federation": (best, arms["each site alone + ComBat"]),
    }
    if DP_ARM in arms:
        gains["differential privacy"] = (arms[DP_ARM], best)
    return {
        name: {key: arm[key] - baseline[key] for key in ("auc", "balanced_accuracy")}
        for name, (arm, baseline) in gains.items()
    }
