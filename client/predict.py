"""`fedrad site predict`: a released model applied to a site's new cases
(docs/model-bundle.md). QC and extraction with the bundle's extraction settings, ComBat
with the site's estimates (`predict_harmonize`), then per case the probability of the
positive class, the class at the bundle's threshold, and the inputs that drove it. A case
that cannot be predicted is named with its reason; the others go on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fedrad.client.attribution import linear_contributions, occlusion, top_inputs
from fedrad.client.extract import extract_site
from fedrad.client.local_pipeline import predict
from fedrad.client.manifest import ManifestError
from fedrad.client.predict_harmonize import harmonize
from fedrad.client.predict_manifest import unlabelled_copy
from fedrad.client.site_config import SiteConfig
from fedrad.common.config import StudyConfig
from fedrad.common.differential_privacy import clip_rows
from fedrad.common.feature_table import CLINICAL_PREFIX, read_feature_table
from fedrad.common.model_bundle import ModelBundle
from fedrad.common.pipeline import PipelineParams
from fedrad.common.stats.imputation import impute
from fedrad.common.user_error import UserError


@dataclass(frozen=True)
class Predictions:
    table: pd.DataFrame  # one row per manifest case, predicted or not (with its reason)
    path: Path
    positive: str


def usable_study(bundle: ModelBundle) -> StudyConfig:
    """The bundle's study, if this FedRad can apply its model: the same extraction (hash of
    the settings and the extractors' versions), and no input a manifest cannot give yet."""
    study = bundle.study
    recorded = bundle.payload["study"]["extraction_hash"]
    if study.extraction_hash != recorded:
        wanted = bundle.payload["provenance"]["software"]["extractors"]
        pins = " ".join(f"{name}=={value}" for name, value in sorted(wanted.items()))
        raise UserError(
            f"this installation extracts the bundle's settings with hash {study.extraction_hash}, "
            f"but the model was trained on features of hash {recorded}: features would differ. "
            f"Install the extractors the bundle was made with ({pins}) and run again."
        )
    if bundle.params.clinical_inputs or study.harmonization.covariates:
        raise UserError(
            "this model reads clinical inputs or ComBat covariates, which `site predict` "
            "cannot take from a manifest yet; apply it to models of radiomic features only."
        )
    return study


def predict_site(
    bundle: ModelBundle,
    manifest: Path,
    out: Path,
    site: SiteConfig,
    site_name: str,
    site_dir: Path | None,
    workers: int | None = None,
    show_progress: bool = True,
) -> Predictions:
    study = usable_study(bundle)
    params = bundle.params
    work = out.with_name(out.stem + ".work")
    copy, given = unlabelled_copy(manifest, study.extraction.sequences, work)
    try:
        report = extract_site(copy, work / "features.parquet", study, workers, show_progress, site)
    except ManifestError as exc:  # name the user's manifest, not its copy
        raise ManifestError(str(exc).replace(str(copy), str(manifest))) from exc
    table, _ = read_feature_table(report.table_path)
    table = table.set_index("case_id").reindex(report.ok)
    x = table.reindex(columns=params.features).to_numpy(dtype=np.float64)
    imputed = np.zeros(len(x), dtype=int)
    if params.imputation is not None:  # the study's rule: missing_values: impute-mean
        imputed = np.isnan(x).sum(axis=1)
        x = impute(x, params.imputation)
    complete = np.isfinite(x).all(axis=1)
    batch = _batches(table, site_name, study)
    minimum = int(bundle.payload["harmonization"]["new_site"]["minimum_cases"])
    harmonized = harmonize(x[complete], batch[complete], params, study, minimum, site_dir)
    rows = {case: _failed(reason) for case, reason in report.failed.items()}
    for case, values in zip(np.array(report.ok)[~complete], x[~complete], strict=True):
        absent = [
            name for name, v in zip(params.features, values, strict=True) if not np.isfinite(v)
        ]
        rows[case] = _failed(
            f"no value of {len(absent)} model feature(s), e.g. {', '.join(absent[:3])} "
            "(a region empty here, or not delineated by this site's labels)"
        )
    ok = np.array(report.ok)[complete]
    z = model_inputs(params, harmonized.values, study)
    probability = predict(params, z)
    drivers = top_inputs(_shares(params, z), params.model_features)
    kept = iter(range(len(z)))
    filled = imputed[complete]
    for case, usable, how, n_filled in zip(
        ok, harmonized.usable, harmonized.how, filled, strict=True
    ):
        if n_filled:
            how += f"; {n_filled} missing value(s) filled with the training mean"
        if not usable:
            rows[case] = _failed(how)
            continue
        i = next(kept)
        rows[case] = {
            "status": "predicted",
            "probability": float(probability[i]),
            "predicted_class": _called(probability[i], bundle.threshold, study),
            "top_features": drivers[i],
            "harmonization": how,
        }
    positive = study.federation.positive_class
    frame = _frame(rows, given, report.flagged, bundle.threshold, positive)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    return Predictions(frame, out, positive)


def model_inputs(params: PipelineParams, harmonized: np.ndarray, study: StudyConfig):
    """Selected, standardized (and, under differential privacy, clipped) inputs, exactly
    as the study's sites computed them (`local_pipeline.model_inputs`)."""
    z = harmonized if params.selected is None else harmonized[:, params.selected]
    z = params.standardizer.transform(z)
    if study.differential_privacy:
        z = clip_rows(z, study.differential_privacy.input_clip)
    return z


def _shares(params: PipelineParams, z: np.ndarray) -> np.ndarray:
    if params.network is None:
        return linear_contributions(params.beta, z)
    return occlusion(lambda inputs: predict(params, inputs), z)


def _batches(table: pd.DataFrame, site_name: str, study: StudyConfig) -> np.ndarray:
    column = study.harmonization.batch
    if column == "site":
        return np.full(len(table), site_name)
    return table[f"{CLINICAL_PREFIX}{column}"].astype(str).to_numpy()


def _called(probability: float, threshold: float, study: StudyConfig) -> str:
    positive = study.federation.positive_class
    negative = next(name for name in study.federation.classes if name != positive)
    return positive if probability >= threshold else negative


def _failed(reason: str) -> dict:
    return {"status": "not predicted", "reason": reason}


def _frame(rows: dict, given: dict, flagged: dict, threshold: float, positive: str):
    order = list(given) or list(rows)
    order += [case for case in rows if case not in order]
    records = []
    for case in order:
        row = rows.get(case, _failed("not in the extraction's output"))
        records.append(
            {
                "case_id": case,
                "status": row["status"],
                f"probability_{positive}": row.get("probability"),
                "predicted_class": row.get("predicted_class", ""),
                "threshold": threshold,
                "qc_flags": flagged.get(case, ""),
                "top_features": row.get("top_features", ""),
                "harmonization": row.get("harmonization", ""),
                "reason": row.get("reason", ""),
                "label_in_manifest": given.get(case, ""),
            }
        )
    return pd.DataFrame.from_records(records)
