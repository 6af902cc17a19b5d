"""`fedrad simulate --compare`: is federation worth it, and is harmonization?

Every arm runs the study protocol over the in-process transport (the same code and
sums as a Flower run, which the tests check message for message) on the same site
tables, evaluated on sites the model never saw (leave-one-site-out), except the
pooled-versus-federated check, which uses the study's own validation design.
"""

from __future__ import annotations

from pathlib import Path

from fedrad.client.site import SiteData
from fedrad.common.config import StudyConfig
from fedrad.server.protocol import StudyProtocol
from fedrad.server.transport import in_process_transport

AGREEMENT = 0.005
"""Largest AUC difference allowed between the federated and the pooled fit."""


def _run(tables: dict[str, Path], study: StudyConfig) -> dict:
    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    return StudyProtocol(in_process_transport(sites, study), study, log=lambda _: None).run()


def _summary(results: dict) -> dict:
    federated = results["metrics"]["federated"]
    keys = ("auc", "auc_ci", "sensitivity", "specificity", "balanced_accuracy")
    return {key: federated[key] for key in keys} | {
        "site_stratified_auc": federated["site_stratified_auc"]
    }


def compare(results: dict, tables: dict[str, Path], study: StudyConfig) -> dict:
    """Comparison arms on the included sites; `results` is the federated run's results."""
    included = {s["name"] for s in results["sites"] if s["status"] == "included"}
    tables = {name: path for name, path in tables.items() if name in included}
    unseen = {"validation": {"scheme": "leave-one-site-out"}}
    unharmonized = {"harmonization": {"method": "none"}}
    arms = {
        "federated + ComBat": study.updated(**unseen),
        "federated, no harmonization": study.updated(**unseen, **unharmonized),
        "each site alone + ComBat": study.updated(validation={"scheme": "single-site"}),
        "each site alone, no harmonization": study.updated(
            validation={"scheme": "single-site"}, **unharmonized
        ),
    }
    pooled = results["metrics"]["pooled_reference"]["auc"]
    federated = results["metrics"]["federated"]["auc"]
    return {
        "federated_vs_pooled": {
            "validation": study.validation.scheme,
            "federated_auc": federated,
            "pooled_auc": pooled,
            "difference": abs(federated - pooled),
            "agrees_within": AGREEMENT,
            "agrees": abs(federated - pooled) <= AGREEMENT,
        },
        "on_unseen_sites": {name: _summary(_run(tables, arm)) for name, arm in arms.items()},
    }
