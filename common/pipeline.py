"""What the aggregator tells a site about the pipeline fitted so far, as plain arrays.

A study fits (imputation ->) harmonization -> standardization -> selection -> model, each from
sums the sites send. The server returns every fitted piece in `PipelineParams`; a
site rebuilds the same transform from it (the wire contract, `messages`, sends its
fixed part once per site and lets the site cache it by digest).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

import numpy as np

from fedrad.common.harmonization.combat import BatchEffects, OLSFit
from fedrad.common.stats.moments import Standardizer

Scheme = Literal["holdout", "kfold", "all", "unseen"]
_EFFECT_FIELDS = tuple(f.name for f in fields(BatchEffects) if f.name != "levels")


def _shared_arrays(effects: BatchEffects) -> dict[str, np.ndarray]:
    return {f"combat.shared.{name}": getattr(effects, name) for name in _EFFECT_FIELDS}


@dataclass(frozen=True)
class Partition:
    """Which of a site's cases train and which test, for one fit.

    `holdout`/`kfold` split every site's cases; `all` trains on every case (the
    final fit, or a training site under leave-one-site-out); `unseen` is the held-out
    site, which has no training cases and harmonizes itself from its own data.
    `inner` picks an inner cross-validation fold inside the training part (for
    choosing the L1 penalty without touching the test part).
    """

    scheme: Scheme
    fold: int = 0
    inner: int | None = None

    def to_values(self) -> dict:
        values = {"partition.scheme": self.scheme, "partition.fold": self.fold}
        return values if self.inner is None else values | {"partition.inner": self.inner}

    @classmethod
    def from_values(cls, values: dict) -> Partition:
        inner = values.get("partition.inner")
        return cls(
            scheme=str(values["partition.scheme"]),
            fold=int(values["partition.fold"]),
            inner=None if inner is None else int(inner),
        )


@dataclass
class _Fields:
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CombatFit:
    """The pooled ComBat model a site needs for its round 3 (docs/methods.md 2.1), with the
    server's estimates of batches that span sites (`shared`)."""

    ols: OLSFit
    var_pooled: np.ndarray
    levels: tuple[str, ...]
    shared: BatchEffects | None = None


@dataclass(frozen=True)
class PipelineParams:
    """Pooled pieces fitted so far; later fields stay None until their phase has run."""

    features: list[str]
    combat: CombatFit | None = None
    selected: np.ndarray | None = None
    clinical_inputs: tuple[str, ...] = ()  # coded clinical columns after the selected features
    standardizer: Standardizer | None = None
    beta: np.ndarray | None = None
    network: dict[str, np.ndarray] | None = None
    imputation: np.ndarray | None = None  # pooled training mean of each feature, for NaNs

    def to_fields(self) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, values) naming every fitted piece, as the wire contract carries them."""
        payload = _Fields(values={"features": list(self.features)})
        if self.imputation is not None:
            payload.arrays["imputation.mean"] = np.asarray(self.imputation, dtype=np.float64)
        if self.combat is not None:
            ols = self.combat.ols
            payload.arrays |= {
                "combat.batch_means": ols.batch_means,
                "combat.beta": ols.beta,
                "combat.alpha": ols.alpha,
                "combat.x_mean": ols.x_mean,
                "combat.var_pooled": self.combat.var_pooled,
            }
            payload.values["combat.levels"] = list(self.combat.levels)
            if self.combat.shared is not None:
                payload.arrays |= _shared_arrays(self.combat.shared)
                payload.values["combat.shared.levels"] = list(self.combat.shared.levels)
        if self.selected is not None:
            payload.arrays["selected"] = np.asarray(self.selected, dtype=np.int64)
        if self.clinical_inputs:
            payload.values["clinical-inputs"] = list(self.clinical_inputs)
        if self.standardizer is not None:
            payload.arrays["scaler.mean"] = self.standardizer.mean
            payload.arrays["scaler.scale"] = self.standardizer.scale
        if self.beta is not None:
            payload.arrays["beta"] = np.asarray(self.beta, dtype=np.float64)
        for name, value in (self.network or {}).items():
            payload.arrays[f"network.{name}"] = value
        return payload.arrays, payload.values

    @classmethod
    def from_fields(cls, arrays: dict[str, np.ndarray], values: dict) -> PipelineParams:
        combat = None
        if "combat.alpha" in arrays:
            ols = OLSFit(
                batch_means=arrays["combat.batch_means"],
                beta=arrays["combat.beta"],
                alpha=arrays["combat.alpha"],
                x_mean=arrays["combat.x_mean"],
            )
            shared = None
            if "combat.shared.levels" in values:
                shared = BatchEffects(
                    levels=tuple(values["combat.shared.levels"]),
                    **{name: arrays[f"combat.shared.{name}"] for name in _EFFECT_FIELDS},
                )
            combat = CombatFit(
                ols, arrays["combat.var_pooled"], tuple(values["combat.levels"]), shared
            )
        standardizer = None
        if "scaler.mean" in arrays:
            standardizer = Standardizer(mean=arrays["scaler.mean"], scale=arrays["scaler.scale"])
        return cls(
            features=list(values["features"]),
            combat=combat,
            selected=arrays.get("selected"),
            clinical_inputs=tuple(values.get("clinical-inputs", ())),
            standardizer=standardizer,
            beta=arrays.get("beta"),
            network={
                name.removeprefix("network."): value
                for name, value in arrays.items()
                if name.startswith("network.")
            }
            or None,
            imputation=arrays.get("imputation.mean"),
        )

    @property
    def model_features(self) -> list[str]:
        """The inputs the model reads, in the order of beta[1:]: selected features, then
        clinical inputs."""
        selected = (
            self.features if self.selected is None else [self.features[i] for i in self.selected]
        )
        return [*selected, *self.clinical_inputs]
