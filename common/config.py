"""Study configuration: the settings every site must share, and their hash.

A study fixes what is extracted and how the federation runs. Sites compare the
extraction hash in the census; a site whose hash differs is refused, because its
features would not mean the same thing as everyone else's.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import cached_property
from importlib.metadata import version
from pathlib import Path
from typing import Literal, TypeVar, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from fedrad.common.did_you_mean import did_you_mean
from fedrad.common.text_files import UnreadableFile, read_text
from fedrad.common.user_error import UserError

Config = TypeVar("Config", bound=BaseModel)


class ConfigError(UserError):
    """A configuration file is unreadable or invalid; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FEATURE_CLASSES = ("firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
ImageFilter = Literal["original", "log", "wavelet"]
Interpolator = Literal["bspline", "linear", "nearest", "lanczos"]
SITK_INTERPOLATORS = {
    "bspline": "sitkBSpline",
    "linear": "sitkLinear",
    "nearest": "sitkNearestNeighbor",
    "lanczos": "sitkLanczosWindowedSinc",
}
RESERVED_NAMES = ("mask", "label")  # manifest columns; `mask` also prefixes shape features


def _check_name(kind: str, name: str) -> str:
    """Names become parts of feature columns (`<sequence>_<region>_...`): no `_`, no spaces."""
    plain = name.replace("-", "")
    if not (plain.isascii() and plain.isalnum() and name == name.lower() and name[:1].isalpha()):
        raise ValueError(
            f"{kind} name {name!r}: use lower-case letters, digits and '-', starting with a letter"
        )
    if name in RESERVED_NAMES:
        raise ValueError(f"{kind} name {name!r} is reserved")
    return name


def _check_column(kind: str, name: str) -> str:
    """A manifest column the study reads besides images and labels: any header but those."""
    if not name or name != name.strip():
        raise ValueError(f"{kind} {name!r}: give the manifest column's header exactly")
    if name in ("case_id", *RESERVED_NAMES):
        raise ValueError(f"{kind} {name!r} is a reserved manifest column")
    return name


def _distinct(kind: str, names: tuple[str, ...]) -> tuple[str, ...]:
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{kind} must be a non-empty list of distinct names")
    return names


EXTRACTORS = ("pyradiomics", "SimpleITK", "PyWavelets", "numpy")


def extractor_versions() -> dict[str, str]:
    """The installed versions of the `EXTRACTORS`, every library whose arithmetic reaches a
    feature value: pyradiomics' formulas, SimpleITK's filters and resampling, PyWavelets'
    wavelet, numpy's reductions (a numpy release may sum in another order: other last bits).
    """
    import numpy
    import radiomics
    import SimpleITK

    return {
        "pyradiomics": radiomics.__version__,
        "SimpleITK": SimpleITK.Version_VersionString(),
        "PyWavelets": version("PyWavelets"),
        "numpy": numpy.__version__,
    }


class ExtractionSettings(_Strict):
    """What every site extracts from every case; the extraction hash covers all of it.

    Tissues are the study's vocabulary for what a mask label means (each site maps its own
    label values onto them in its site config); regions are the volumes features are
    computed on, each the union of one or more tissues (e.g. tumour core = enhancing +
    necrosis). Preprocessing and feature keys mean what the pyradiomics setting they map to
    means (see `pyradiomics_settings`).
    """

    sequences: tuple[str, ...] = ("t1c", "flair")
    tissues: tuple[str, ...] = ("enhancing", "necrosis", "oedema")
    regions: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {
            "enhancing": ("enhancing",),
            "necrosis": ("necrosis",),
            "oedema": ("oedema",),
        },
        description="region name -> the tissues it unites",
    )
    resampled_spacing_mm: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = (
        2.0,
        2.0,
        2.0,
    )
    interpolator: Interpolator = "bspline"
    crop_padding: int = Field(
        default=5, ge=0, description="voxels kept around a region when resampling (padDistance)"
    )
    normalize: bool = True
    normalize_scale: PositiveFloat = 100.0
    voxel_array_shift: float = 0.0
    bin_width: PositiveFloat = 10.0
    feature_classes: tuple[str, ...] = ("firstorder", "shape", "glcm")
    excluded_features: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="class -> features of it left out, e.g. {glcm: [SumAverage]}",
    )
    filters: tuple[ImageFilter, ...] = ("original",)
    log_sigmas_mm: tuple[PositiveFloat, ...] = (1.0, 2.0, 3.0)
    wavelet: str = "coif1"
    wavelet_level: int = Field(default=1, ge=1)
    min_region_voxels: int = Field(default=10, ge=1)
    geometry_tolerance: float = Field(default=1e-3, gt=0)
    mask_resample_tolerance_mm: float = Field(
        default=1.0, ge=0, description="resample a mask onto an image grid this close; else refuse"
    )

    @field_validator("sequences")
    @classmethod
    def _sequence_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_name("sequence", name) for name in _distinct("sequences", value))

    @field_validator("tissues")
    @classmethod
    def _tissue_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_name("tissue", name) for name in _distinct("tissues", value))

    @field_validator("regions", mode="before")
    @classmethod
    def _regions_as_tissue_lists(cls, value: object) -> object:
        """Accept `oedema: oedema` for a one-tissue region; explain the pre-site-config form."""
        if not isinstance(value, dict):
            return value
        if any(isinstance(members, int) for members in value.values()):
            raise ValueError(
                "regions now name the tissues each region unites (e.g. core: [enhancing, "
                "necrosis]); mask label values belong in the site config under `labels`"
            )
        return {
            name: (members,) if isinstance(members, str) else members
            for name, members in value.items()
        }

    @field_validator("feature_classes")
    @classmethod
    def _known_classes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in FEATURE_CLASSES]
        if unknown:
            raise ValueError(
                f"unknown pyradiomics class(es) {unknown}; known: {', '.join(FEATURE_CLASSES)}"
            )
        return _distinct("feature_classes", value)

    @field_validator("filters")
    @classmethod
    def _distinct_filters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _distinct("filters", value)

    @field_validator("log_sigmas_mm")
    @classmethod
    def _distinct_sigmas(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("log_sigmas_mm must be a non-empty list of distinct widths")
        return value

    @field_validator("wavelet")
    @classmethod
    def _known_wavelet(cls, value: str) -> str:
        import pywt

        if value not in pywt.wavelist(kind="discrete"):
            raise ValueError(f"unknown wavelet {value!r}; e.g. coif1, db2, haar, sym4")
        return value

    @model_validator(mode="after")
    def _exclusions_of_extracted_features(self) -> ExtractionSettings:
        from radiomics import getFeatureClasses

        for name, features in self.excluded_features.items():
            if name not in self.feature_classes:
                raise ValueError(f"excluded_features.{name}: {name} is not in feature_classes")
            offered = getFeatureClasses()[name].getFeatureNames()
            unknown = [feature for feature in features if offered.get(feature) is not False]
            if unknown:
                raise ValueError(
                    f"excluded_features.{name}: {unknown} not among the features FedRad "
                    f"extracts of {name} (its non-deprecated ones)"
                )
            if not features or len(set(features)) == sum(not old for old in offered.values()):
                raise ValueError(
                    f"excluded_features.{name}: leave out some but not all of its features "
                    "(to leave out the class, drop it from feature_classes)"
                )
        return self

    @model_serializer(mode="wrap")
    def _without_empty_exclusions(self, serialize) -> dict:
        """No exclusions: the settings (and every hash) are as before the key existed."""
        data = serialize(self)
        if not self.excluded_features:
            data.pop("excluded_features", None)
        return data

    @model_validator(mode="after")
    def _regions_of_known_tissues(self) -> ExtractionSettings:
        if not self.regions:
            raise ValueError("regions: name at least one region")
        seen: dict[frozenset[str], str] = {}
        for name, members in self.regions.items():
            _check_name("region", name)
            unknown = [tissue for tissue in members if tissue not in self.tissues]
            if not members or unknown:
                raise ValueError(
                    f"regions.{name}: {unknown or 'no tissues'} not among the study tissues "
                    f"({', '.join(self.tissues)})"
                )
            key = frozenset(members)
            if key in seen:
                raise ValueError(f"regions.{name} unites the same tissues as regions.{seen[key]}")
            seen[key] = name
        return self

    @property
    def resampling(self) -> bool:
        return self.resampled_spacing_mm is not None

    def pyradiomics_settings(self) -> dict:
        """The pyradiomics `setting` block these options stand for (label 1 of a region mask)."""
        settings: dict = {
            "binWidth": self.bin_width,
            "normalize": self.normalize,
            "normalizeScale": self.normalize_scale,
            "voxelArrayShift": self.voxel_array_shift,
            "interpolator": SITK_INTERPOLATORS[self.interpolator],
            "resampledPixelSpacing": (
                list(self.resampled_spacing_mm) if self.resampled_spacing_mm else None
            ),
            "padDistance": self.crop_padding,
            "additionalInfo": False,
            "geometryTolerance": self.geometry_tolerance,
            "label": 1,
        }
        return settings

    def pyradiomics_image_types(self) -> dict[str, dict]:
        """The pyradiomics `imageType` block: filter name -> its custom settings."""
        custom = {
            "original": ("Original", {}),
            "log": ("LoG", {"sigma": list(self.log_sigmas_mm)}),
            "wavelet": ("Wavelet", {"wavelet": self.wavelet, "level": self.wavelet_level}),
        }
        return dict(custom[name] for name in self.filters)


class FederationSettings(_Strict):
    """Who takes part and what may leave a site."""

    classes: tuple[str, str] = ("HGG", "BM")
    min_cell_size: int = Field(default=5, ge=1, description="smaller counts are reported as <k")
    histogram_bins: int = Field(default=1000, ge=2)
    min_sites: int = Field(default=1, ge=1)
    round_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="how long the aggregator waits for min_sites sites to connect, and for "
        "a site's answer in each round, before it goes on without the site",
    )
    max_parameter_ratio: float = Field(
        default=0.33,
        gt=0,
        le=1,
        description="a regression's parameters are at most this share of its training cases "
        "(DataSHIELD's nfilter.glm): fewer cases could be solved back from its sums",
    )
    max_cases: int = Field(
        default=1000,
        ge=1,
        description="the most cases the study holds over all its sites: a site answers a fit "
        "only at coefficients an honest fit over that many cases can reach (docs/privacy.md 3)",
    )
    secure_aggregation: bool = Field(
        default=True,
        description="sites send summed quantities masked; only totals over sites are unmasked",
    )
    site_keys: dict[str, str] = Field(
        default_factory=dict,
        description="site name -> its public identity key (64 hex digits, `fedrad site keygen`); "
        "pinned keys stop an aggregator from standing in the middle of the key exchange",
    )

    @field_validator("site_keys")
    @classmethod
    def _identity_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for site, key in value.items():
            try:
                raw = bytes.fromhex(key)
            except ValueError:
                raw = b""
            if len(raw) != 32:
                raise ValueError(f"site {site!r}: an identity key is 64 hex digits (32 bytes)")
        return value

    @property
    def positive_class(self) -> str:
        return self.classes[0]

    @model_validator(mode="after")
    def _classes_distinct(self) -> FederationSettings:
        if self.classes[0] == self.classes[1]:
            raise ValueError("classes must be two distinct labels")
        return self


class DifferentialPrivacySettings(_Strict):
    """Gaussian noise on the model's and the evaluation's released sums (docs/privacy.md 10).

    Each released sum gets noise of standard deviation noise_multiplier x (the most one case
    can change it), each case's model inputs clipped to norm input_clip first; sites add the
    noise themselves, so the aggregator never holds a sum without it.
    """

    noise_multiplier: float = Field(
        default=2.0, gt=0, description="noise standard deviation over one case's largest effect"
    )
    delta: float = Field(default=1e-5, gt=0, lt=1, description="the budget's delta")
    input_clip: float = Field(
        default=3.0,
        gt=0,
        description="a case's standardized model inputs (or its score's logit, for the "
        "calibration line) are scaled down to at most this Euclidean norm",
    )
    newton_iterations: int = Field(
        default=5, ge=1, description="Newton iterations per fit: each one is a release"
    )
    histogram_bins: int = Field(
        default=10,
        ge=2,
        description="the score grid under noise (instead of federation.histogram_bins): "
        "every bin gets its own noise, so fewer bins keep the AUC readable",
    )
    max_epsilon: float | None = Field(
        default=None,
        gt=0,
        description="the budget: a site sends no sum that would take its epsilon past it",
    )


class HarmonizationSettings(_Strict):
    """Distributed ComBat (docs/methods.md 2.1).

    Batches are sites by default, or the values of a manifest column such as `scanner`; a
    batch found at several sites is one batch, estimated from all their cases.
    `preserve_diagnosis` is option B of docs/methods.md 1.4: the diagnosis enters the ComBat fit
    on training cases, and every case is transformed label-free.
    """

    method: Literal["none", "combat"] = "combat"
    parametric: bool = True
    empirical_bayes: bool = True
    batch: str = Field(
        default="site",
        description="'site', or a manifest column naming each case's batch (e.g. scanner)",
    )
    covariates: tuple[str, ...] = Field(
        default=(), description="clinical variables (declared under `clinical`) ComBat keeps"
    )
    preserve_diagnosis: bool = False

    @field_validator("batch")
    @classmethod
    def _batch_column(cls, value: str) -> str:
        return value if value == "site" else _check_column("batch column", value)

    @field_validator("covariates", mode="before")
    @classmethod
    def _covariate_names(cls, value: object) -> object:
        if isinstance(value, dict):
            raise ValueError(
                "covariates is a list of names now; declare each variable's levels under "
                "the study's `clinical:` section (e.g. clinical: {age: null, sex: [F, M]})"
            )
        return value


class SelectionSettings(_Strict):
    """Feature selection, fit on training cases only."""

    min_coefficient_of_variation: float = Field(default=1e-6, ge=0)
    screen: Literal["welch", "none"] = "welch"
    candidates: int = Field(default=60, ge=1, description="top-screened features")
    redundancy_threshold: float = Field(default=0.9, gt=0, le=1)
    max_features: int = Field(default=20, ge=1)


# The ridge penalty when `model.ridge_lambda` is unset under differential privacy.
NOISED_RIDGE_LAMBDA = 1.0
JOINT_BINS = 100  # bins per model score of the comparison's joint grid (width 0.01)
WITHOUT_CLINICAL = " without clinical inputs"  # a compared model's name: kind + this


class ModelSettings(_Strict):
    """Exact federated ridge logistic regression, or an MLP trained with a Flower strategy."""

    kind: Literal["ridge-logistic", "lasso-logistic", "mlp"] = "ridge-logistic"
    ridge_lambda: float | None = Field(
        default=None,
        ge=0,
        description="ridge penalty; None chooses it from `ridge_lambdas` by federated inner "
        f"CV (under differential privacy, which does not tune, None is {NOISED_RIDGE_LAMBDA})",
    )
    ridge_lambdas: tuple[PositiveFloat, ...] = Field(
        default=(1000.0, 300.0, 100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1),
        description="the grid inner CV chooses the ridge penalty from (on the summed loss)",
    )
    recalibrate: bool = Field(
        default=True,
        description="k-fold ridge or L1: refit the final model's intercept and slope on the "
        "out-of-fold scores (logistic recalibration, docs/methods.md 4.3)",
    )
    lasso_lambda: float | None = Field(
        default=None, gt=0, description="L1 penalty; None chooses it by federated inner CV"
    )
    lasso_path_length: int = Field(default=15, ge=2)
    lasso_min_ratio: float = Field(default=0.02, gt=0, lt=1)
    newton_tolerance: float = Field(default=1e-8, gt=0)
    max_newton_iterations: int = Field(default=50, ge=1)
    strategy: Literal["fedavg", "fedprox", "fedmedian", "fedtrimmedavg", "krum"] = "fedavg"
    rounds: int = Field(default=30, ge=1)
    local_epochs: int = Field(default=2, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    batch_size: int = Field(default=16, ge=1)
    hidden_units: int = Field(default=16, ge=1)
    proximal_mu: float = Field(default=0.01, ge=0, description="FedProx only")
    trim_fraction: float = Field(default=0.2, ge=0, lt=0.5, description="FedTrimmedAvg only")
    assumed_malicious_sites: int = Field(default=0, ge=0, description="Krum only")
    mlp_update_clip: float = Field(
        default=1.0,
        gt=0,
        description="each site clips its round's update (trained - received weights) to this "
        "L2 norm, and refuses global weights that moved further than an honest aggregation "
        "of such updates can (`mlp_step_bound`)",
    )
    clinical_inputs: tuple[str, ...] = Field(
        default=(),
        description="clinical variables (declared under `clinical`) the model reads next to "
        "the selected radiomics features; they bypass feature selection",
    )
    compare: tuple[Literal["ridge-logistic", "lasso-logistic", "mlp"], ...] = Field(
        default=(),
        description="other model kinds fitted on the same partitions as `kind` (same folds, "
        "harmonization and selection), each evaluated as `kind` is, and every pair compared "
        "by DeLong's test on summed joint score histograms (docs/methods.md 4.5)",
    )
    compare_without_clinical: bool = Field(
        default=False,
        description="also fit `kind` without its `clinical_inputs` on the same partitions, "
        "harmonization and radiomics features, and compare it as `compare`'s kinds are",
    )
    seed: int = 0

    @field_validator("ridge_lambdas")
    @classmethod
    def _a_grid(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        """Largest first, as the L1 path: a tie in the criterion goes to the stronger penalty."""
        if len(set(value)) < 2:
            raise ValueError("list at least two distinct penalties to choose from")
        return tuple(sorted(set(value), reverse=True))

    @property
    def mlp_step_bound(self) -> float:
        """How far (L2) an honest aggregation of updates clipped to `mlp_update_clip` moves
        the global weights in one round: a weighted mean or one site's update (FedAvg,
        FedProx, Krum) stays within it; a coordinate-wise median within sqrt(2) times it,
        a trimmed mean within 1 / sqrt(1 - 2 trim_fraction) times it (docs/privacy.md 3)."""
        factor = {
            "fedmedian": math.sqrt(2.0),
            "fedtrimmedavg": 1.0 / math.sqrt(1.0 - 2.0 * self.trim_fraction),
        }.get(self.strategy, 1.0)
        return self.mlp_update_clip * factor


# Strategies that read every site's weights: secure aggregation shows only their total.
PER_SITE_STRATEGIES = ("fedmedian", "fedtrimmedavg", "krum")


class ValidationSettings(_Strict):
    """How cases are split; every fit sees only its training part (DESIGN.md phase 6).

    k-fold by default: every case is tested once, and every fold tests every site, so
    each fold's figures come from a total of their own.
    """

    scheme: Literal["holdout", "kfold", "leave-one-site-out", "single-site"] = "kfold"
    holdout_fraction: float = Field(default=0.3, gt=0, lt=1)
    folds: int = Field(default=5, ge=2)
    inner_folds: int = Field(default=3, ge=2, description="for tuning inside each fit")
    seed: int = 0


class StudyConfig(_Strict):
    """Everything a study fixes; the YAML file a coordinator writes."""

    name: str = "hgg-vs-bm"
    clinical: dict[str, tuple[str, ...] | None] = Field(
        default_factory=dict,
        description="clinical manifest columns the study reads -> their levels (categorical) "
        "or null (a number), e.g. {age: null, sex: [F, M]}; feature tables hold them as "
        "clinical_<name>",
    )
    extraction: ExtractionSettings = Field(default_factory=ExtractionSettings)
    federation: FederationSettings = Field(default_factory=FederationSettings)
    harmonization: HarmonizationSettings = Field(default_factory=HarmonizationSettings)
    selection: SelectionSettings = Field(default_factory=SelectionSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    differential_privacy: DifferentialPrivacySettings | None = Field(
        default=None, description="off unless set; {} takes every default"
    )
    missing_values: Literal["exclude-case", "impute-mean"] | None = Field(
        default=None,
        description="a case missing a feature value: exclude-case (also when unset) leaves it "
        "out, named by its row; impute-mean fills the value with the feature's pooled mean "
        "over each fit's training cases (a missing label or clinical value still excludes)",
    )

    @field_validator("clinical")
    @classmethod
    def _clinical_names(
        cls, value: dict[str, tuple[str, ...] | None]
    ) -> dict[str, tuple[str, ...] | None]:
        for name, levels in value.items():
            _check_column("clinical variable", name)
            if levels is not None and (len(levels) < 2 or len(set(levels)) != len(levels)):
                raise ValueError(f"{name}: list at least two distinct levels, or null for a number")
        return value

    @model_validator(mode="after")
    def _clinical_declared(self) -> StudyConfig:
        used = {
            "harmonization.covariates": self.harmonization.covariates,
            "model.clinical_inputs": self.model.clinical_inputs,
        }
        for key, names in used.items():
            undeclared = [name for name in names if name not in self.clinical]
            if undeclared:
                raise ValueError(f"{key}: {undeclared} not declared under `clinical`")
        clash = sorted(set(self.manifest_variables) & set(self.extraction.sequences))
        if clash:
            raise ValueError(f"clinical/batch column(s) {clash} are also study sequences")
        if (
            "mlp" in self.model_kinds
            and self.federation.secure_aggregation
            and self.model.strategy in PER_SITE_STRATEGIES
        ):
            raise ValueError(
                f"model.strategy: {self.model.strategy} needs each site's network weights, "
                "and secure aggregation shows only their total; use fedavg or fedprox, or set "
                "federation.secure_aggregation: false to send every site's weights in the clear"
            )
        if (
            self.differential_privacy is not None
            and self.model.kind == "mlp"
            and self.model.strategy in PER_SITE_STRATEGIES
        ):
            raise ValueError(
                f"differential_privacy: {self.model.strategy} reads each site's noised weights "
                "one by one, which the noise is not sized for; use fedavg or fedprox with it"
            )
        if self.differential_privacy is not None and self.model.kind == "lasso-logistic":
            raise ValueError(
                "differential_privacy: an L1 fit's line search compares losses that noise "
                "would swamp; use model.kind ridge-logistic (or mlp) with it"
            )
        if (
            self.missing_values == "impute-mean"
            and self.validation.scheme == "leave-one-site-out"
            and self.federation.secure_aggregation
        ):
            raise ValueError(
                "missing_values: impute-mean under leave-one-site-out sums every site's observed "
                "values in each fit, over every set of all sites but one, and those totals give "
                "each site's own sums, which secure aggregation is there to hide; use kfold or "
                "holdout, or set federation.secure_aggregation: false (each site's sums then "
                "leave in the clear, held to the rules for sums sent alone)"
            )
        if self.harmonization.batch in self.clinical:
            raise ValueError(
                f"harmonization.batch: {self.harmonization.batch!r} is a clinical variable; "
                "a batch column only names batches"
            )
        self._check_compare()
        return self

    def _check_compare(self) -> None:
        """Compared kinds: distinct and other than `kind`, without noise (the joint
        histograms are not noised), on a score grid the joint grid coarsens exactly."""
        if self.model.compare_without_clinical and not self.model.clinical_inputs:
            raise ValueError(
                "model.compare_without_clinical: the study's model has no clinical_inputs to "
                "leave out"
            )
        if len(self.compared_models) < 2:
            return
        if len(set(self.model_kinds)) != len(self.model_kinds):
            raise ValueError(
                f"model.compare: list kinds other than model.kind ({self.model.kind}), each once"
            )
        if self.differential_privacy is not None:
            raise ValueError(
                "model.compare: the joint score histograms a comparison needs are not noised; "
                "compare models in a study without differential_privacy"
            )
        if self.federation.histogram_bins % JOINT_BINS:
            raise ValueError(
                f"model.compare: federation.histogram_bins ({self.federation.histogram_bins}) "
                f"must be a multiple of {JOINT_BINS}, the joint grid's bins per score"
            )

    @property
    def model_kinds(self) -> tuple[str, ...]:
        """The study's model kind, then those it is compared with."""
        return (self.model.kind, *self.model.compare)

    @property
    def compared_models(self) -> tuple[str, ...]:
        """The names of the models a comparison fits: the study's kind, those it is compared
        with, and its kind without clinical inputs (`model.compare_without_clinical`)."""
        without = (
            (self.model.kind + WITHOUT_CLINICAL,) if self.model.compare_without_clinical else ()
        )
        return (*self.model_kinds, *without)

    def arm(self, model: str) -> StudyConfig:
        """This study fitting `model` (a name of `compared_models`) instead of its own; a
        model without clinical inputs is the study's kind, its clinical inputs dropped after
        selection (`server/study.py`)."""
        kind = model.removesuffix(WITHOUT_CLINICAL)
        return self.updated(model={"kind": kind, "compare": [], "compare_without_clinical": False})

    def tunes_penalty_of(self, kind: str) -> bool:
        """Whether a `kind` fit of this study chooses its penalty on inner folds."""
        if kind == "lasso-logistic":
            return self.model.lasso_lambda is None
        return kind == "ridge-logistic" and self.ridge_penalty is None

    @property
    def ridge_penalty(self) -> float | None:
        """The fixed ridge penalty, or None when federated inner CV chooses it; under
        differential privacy, where each Newton step is its own noised release, it is fixed."""
        if self.model.ridge_lambda is not None:
            return self.model.ridge_lambda
        return NOISED_RIDGE_LAMBDA if self.differential_privacy is not None else None

    @property
    def tunes_penalty(self) -> bool:
        """Whether each ridge or L1 fit chooses its penalty on inner folds of its training part."""
        return self.tunes_penalty_of(self.model.kind)

    @property
    def tunes_any_penalty(self) -> bool:
        """Whether a fit of any of the study's kinds (compared ones too) tunes on inner folds."""
        return any(self.tunes_penalty_of(kind) for kind in self.model_kinds)

    @property
    def recalibrates(self) -> bool:
        """Whether the released model is recalibrated on out-of-fold scores: k-fold ridge or
        L1 fits (their test scores are out of fold), not under noise (keeps its releases)."""
        return (
            self.model.recalibrate
            and self.model.kind in ("ridge-logistic", "lasso-logistic")
            and self.validation.scheme == "kfold"
            and self.differential_privacy is None
        )

    @property
    def score_bins(self) -> int:
        """Bins of the public score grid: coarser under differential privacy (each is noised)."""
        if self.differential_privacy is not None:
            return self.differential_privacy.histogram_bins
        return self.federation.histogram_bins

    @property
    def newton_stopping(self) -> tuple[float | None, int]:
        """(tolerance, most iterations) of every Newton fit: under differential privacy a
        fixed number, as each iteration is a release and its deviance is not released."""
        if self.differential_privacy is not None:
            return None, self.differential_privacy.newton_iterations
        return self.model.newton_tolerance, self.model.max_newton_iterations

    @property
    def manifest_variables(self) -> dict[str, tuple[str, ...] | None]:
        """Manifest columns sites carry into their feature tables -> what each holds: its
        levels, None for a number, () for any text (the batch column)."""
        batch = self.harmonization.batch
        return {**self.clinical, **({} if batch == "site" else {batch: ()})}

    @cached_property
    def extraction_hash(self) -> str:
        """Hash of the extraction settings and extractor versions (first 16 hex digits)."""
        payload = {"extraction": self.extraction.model_dump(mode="json"), **extractor_versions()}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @cached_property
    def study_hash(self) -> str:
        """Hash of the whole study (protocol settings too) plus the extraction hash."""
        study = self.model_dump(mode="json")
        for option in ("differential_privacy", "missing_values"):
            if study[option] is None:  # an option's absence leaves hashes as they were
                del study[option]
        for option in ("compare", "compare_without_clinical"):
            if not study["model"][option]:  # off: hashes as they were
                del study["model"][option]
        payload = {"study": study, "extraction": self.extraction_hash}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def updated(self, **sections: dict) -> StudyConfig:
        """A validated copy with some settings changed, e.g. `updated(validation={"folds": 3})`.

        Unlike `model_copy(update=...)`, this re-validates and recomputes the hashes.
        """
        data = self.model_dump(mode="json")
        for section, changes in sections.items():
            data[section] = None if changes is None else {**(data.get(section) or {}), **changes}
        return StudyConfig.model_validate(data)

    def with_pyradiomics_params(self, params_path: Path) -> StudyConfig:
        """This study with the extraction settings a pyradiomics parameter file stands for
        (`fedrad.common.radiomics.params_file`); refused where the study sets them otherwise."""
        from fedrad.common.radiomics.params_file import with_params_file  # imports this module

        written = self.extraction.model_dump(mode="json", include=self.extraction.model_fields_set)
        extraction = with_params_file(written, params_path, "the study config")
        data = {**self.model_dump(mode="json"), "extraction": extraction}
        return _validated(StudyConfig, data, f"study config with {params_path}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> StudyConfig:
        """The study a YAML file describes; `extraction: {pyradiomics_params: FILE}` reads a
        pyradiomics parameter file, its path relative to the study file's folder."""
        path = Path(path)
        data = read_yaml(path, "study config")
        extraction = data.get("extraction") if isinstance(data, dict) else None
        if isinstance(extraction, dict) and "pyradiomics_params" in extraction:
            from fedrad.common.radiomics.params_file import with_params_file  # imports this module

            written = dict(extraction)
            params_path = path.parent / str(written.pop("pyradiomics_params"))
            if not params_path.is_file():
                raise ConfigError(
                    f"invalid study config {path}:\n  extraction.pyradiomics_params: no file "
                    f"{params_path} (the path is relative to the study file's folder)"
                )
            data = {**data, "extraction": with_params_file(written, params_path, str(path))}
        return _validated(cls, data, f"study config {path}")


def load_yaml_config(model: type[Config], path: Path, what: str) -> Config:
    """Read a YAML file into `model`; a ConfigError names the file and every bad key."""
    return _validated(model, read_yaml(path, what), f"{what} {path}")


def read_yaml(path: Path, what: str) -> object:
    """A YAML file's settings; a ConfigError says why the file is unreadable or holds none."""
    try:
        data = yaml.safe_load(read_text(path, what))
    except UnreadableFile as exc:
        raise ConfigError(str(exc)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"the {what} {path} is not valid YAML: {_yaml_problem(exc)}") from exc
    data = {} if data is None else data  # only comments
    if not isinstance(data, dict):
        raise ConfigError(
            f"the {what} {path} holds {_YAML_KINDS.get(type(data), 'a value')} rather than "
            "settings (`key: value` lines); is it the right file?"
        )
    return data


def _validated(model: type[Config], data: object, source: str) -> Config:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {source}:\n{format_validation_error(exc, model)}") from exc


_YAML_KINDS = {
    str: "plain text",
    list: "a list",
    int: "a number",
    float: "a number",
    bool: "true/false",
}


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "unreadable"
    return f"{problem} at line {mark.line + 1}" if mark is not None else problem


def format_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per problem, naming the dotted key, e.g. `federation.min_cell_size: ...`; an
    unknown key gets the close known key of `model` at its place, if there is one."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        hint = ""
        if error["type"] == "extra_forbidden" and model is not None:
            hint = did_you_mean(str(error["loc"][-1]), _known_keys(model, error["loc"][:-1]))
        lines.append(f"  {key}: {error['msg']}{hint}")
    return "\n".join(lines)


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys `model` accepts at the section `loc` (e.g. ('model',)); [] if not a section."""
    for part in loc:
        field = model.model_fields.get(str(part))
        section = field and next(
            (kind for kind in (field.annotation, *get_args(field.annotation)) if _is_model(kind)),
            None,
        )
        if section is None:
            return []
        model = section
    return list(model.model_fields)


def _is_model(kind: object) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)
