"""Pooled principal axes of the selection's candidate features, to show where each site's
centroid lies before and after harmonization: computed from the pooled correlation the
selection already has, so it asks the sites nothing, and it places per-batch means, never
a case."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PrincipalAxes:
    """The first principal axes of standardized features (`mean`, `sd` their pooled
    moments), as loadings (one row per axis) and each axis's share of the variance."""

    features: list[str]
    mean: np.ndarray
    sd: np.ndarray
    loadings: np.ndarray  # (axes, features)
    explained: np.ndarray  # share of the total variance per axis

    @classmethod
    def of(
        cls,
        correlation: np.ndarray,
        mean: np.ndarray,
        sd: np.ndarray,
        features: list[str],
        n_axes: int = 2,
    ) -> PrincipalAxes:
        """Eigenvectors of the correlation matrix, largest eigenvalue first; each axis's
        sign makes its largest loading positive, so the same data give the same picture."""
        values, vectors = np.linalg.eigh(correlation)
        order = np.argsort(values)[::-1][:n_axes]
        loadings = vectors[:, order].T
        signs = np.sign(loadings[np.arange(len(order)), np.abs(loadings).argmax(axis=1)])
        return cls(
            list(features),
            np.asarray(mean, float),
            np.asarray(sd, float),
            loadings * signs[:, None],
            values[order] / values.sum(),
        )

    def project(self, means: np.ndarray) -> np.ndarray:
        """Coordinates of feature-mean vectors (rows) on the axes; a feature of no spread
        counts as 0."""
        scale = np.divide(1.0, self.sd, out=np.zeros_like(self.sd), where=self.sd > 0)
        return ((np.atleast_2d(means) - self.mean) * scale) @ self.loadings.T

    def as_json(self) -> dict:
        return {
            "features": self.features,
            "mean": self.mean.tolist(),
            "sd": self.sd.tolist(),
            "loadings": self.loadings.tolist(),
            "explained": self.explained.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict) -> PrincipalAxes:
        return cls(
            list(data["features"]),
            np.asarray(data["mean"], float),
            np.asarray(data["sd"], float),
            np.asarray(data["loadings"], float),
            np.asarray(data["explained"], float),
        )
