"""What the aggregator releases of a finished study as a model bundle (docs/model-bundle.md):
only what it already holds and may publish: the pooled pipeline, the results' metrics and
census as released (small counts stay "<k"), no case and no site's own estimates."""

from __future__ import annotations

import datetime
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fedrad.common.config import extractor_versions
from fedrad.common.model_bundle import (
    BUNDLE_FILE,
    pipeline_fields,
    signed_document,
    write_bundle,
)
from fedrad.common.model_signing import (
    SIGNING_KEY,
    SIGNING_PUBLIC_KEY,
    load_signing_key,
    make_signing_key,
)
from fedrad.server.phases.evaluation import FittedPipeline
from fedrad.server.results import finite_or_null

MIN_NEW_SITE_CASES = 10  # see new_site_rule; never below the study's k
THRESHOLD_RULE = (
    "the pooled training prevalence of the positive class: a case is called positive when "
    "its predicted probability is at least the share of positives the model was trained on"
)


def new_site_minimum(min_cell_size: int) -> int:
    return max(MIN_NEW_SITE_CASES, min_cell_size)


def bundle_payload(results: dict, final: FittedPipeline, run_id: int | str) -> dict:
    """The signed part of `model.fedrad`, from a finished study's results and final fit."""
    config = results["study"]["config"]
    k = int(config["federation"]["min_cell_size"])
    params = final.params
    combat = params.combat
    return finite_or_null(
        {
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "run_id": str(run_id),
            "study": results["study"],
            "model": results["model"] | {"inputs": params.model_features},
            "pipeline": pipeline_fields(params),
            "threshold": {"value": float(final.threshold), "rule": THRESHOLD_RULE},
            "harmonization": {
                "method": config["harmonization"]["method"],
                "training_batches": list(combat.levels) if combat else [],
                "shared_batches": list(combat.shared.levels) if combat and combat.shared else [],
                "training_site_estimates": (
                    "each training site's own ComBat estimates stay on its disk "
                    "(combat_estimates.npz beside its feature table), never sent"
                ),
                "new_site": {
                    "how": (
                        "a batch not in training estimates its own ComBat location and scale "
                        "from its unlabelled cases, with the pooled model (alpha, beta, "
                        "pooled variance) frozen: combat.fit_new_batches"
                    ),
                    "minimum_cases": new_site_minimum(k),
                },
            },
            "metrics": results["metrics"],
            "provenance": {
                "sites": results["sites"],
                "training_sites": final.sites,
                "validation": {
                    "design": config["validation"],
                    "fits": [
                        {"fit": fit["fit"], "training_sites": fit["training_sites"]}
                        for fit in results["validation"]["fits"]
                    ],
                },
                "rounds": results.get("round_counts", {}),
                "strategy": config["model"],
                "privacy": results["privacy"],
                "software": software_versions(),
            },
        }
    )


def software_versions() -> dict:
    names = ("fedrad", "flwr", "numpy", "scipy", "torch", "cryptography")
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions | {"extractors": extractor_versions()}


def signing_key_in(folder: Path, log) -> Path:
    """FOLDER/model-signing.key, made there if absent (and said so)."""
    path = folder / SIGNING_KEY
    if not path.exists():
        make_signing_key(folder)
        log(
            f"made a model-signing key {path}; sites trust its public half, "
            f"{folder / SIGNING_PUBLIC_KEY}"
        )
    return path


def release_bundle(payload: dict, key_path: Path, out_dir: Path) -> Path:
    """Sign `payload` with the key at `key_path` and write out_dir/model.fedrad."""
    document = signed_document(payload, load_signing_key(key_path))
    path = out_dir / BUNDLE_FILE
    write_bundle(document, path)
    return path
