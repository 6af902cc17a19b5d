"""results.json of a study: what a coordinator reads, and every later tool renders."""

from __future__ import annotations

import json
import math
from pathlib import Path

from fedrad.common.config import StudyConfig
from fedrad.server.federation import Federation


def study_results(
    study: StudyConfig,
    federation: Federation,
    final,
    metrics: dict,
    per_site: dict,
    folds: list[dict],
    rounds: list[dict],
) -> dict:
    return {
        "study": study_summary(study),
        "sites": site_rows(federation),
        "metrics": {"federated": metrics, "per_site": per_site},
        "model": final.model
        | {
            "training_sites": final.sites,
            "threshold": final.threshold,
            "threshold_rule": "pooled training prevalence of the positive class",
        },
        "selection": final.selection,
        "validation": {"scheme": study.validation.scheme, "fits": folds},
        "privacy": privacy_summary(study, federation),
        **federation.traffic(),
        "events": list(federation.events),
        "rounds": list(rounds),
    }


def study_summary(study: StudyConfig) -> dict:
    return {
        "name": study.name,
        "extraction_hash": study.extraction_hash,
        "study_hash": study.study_hash,
        "config": study.model_dump(mode="json"),
    }


def privacy_summary(study: StudyConfig, federation: Federation) -> dict:
    """How the study protected what left the sites: masking, and the budget it spent."""
    budget = federation.budget
    return {
        "secure_aggregation": study.federation.secure_aggregation,
        "min_cell_size": study.federation.min_cell_size,
        "differential_privacy": budget.summary() if budget is not None else None,
    }


def site_rows(federation: Federation) -> list[dict]:
    return [
        {
            "name": s.label,
            "status": s.status,
            "reason": s.reason,
            "cases": s.cases,
            "sequences_missing": s.sequences_missing,
        }
        for s in sorted(federation.sites.values(), key=lambda site: site.label)
    ]


def stopped_results(study: StudyConfig, federation: Federation | None, reason: str) -> dict:
    """What a study that could not run leaves: why, and how far it got."""
    return {
        "study": study_summary(study),
        "status": "stopped",
        "reason": reason,
        "sites": site_rows(federation) if federation else [],
        "privacy": privacy_summary(study, federation) if federation else {},
        "events": list(federation.events) if federation else [],
    }


def write_results(results: dict, path: Path) -> None:
    """Strict JSON (an undefined figure, e.g. the AUC of a site without positives, is null)
    so that any JSON reader, a browser's included, can load it; written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(finite_or_null(results), indent=2, allow_nan=False))
    tmp.replace(path)


def finite_or_null(value):
    """`value` as strict JSON holds it: a non-finite float (NaN, infinity) becomes None."""
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
