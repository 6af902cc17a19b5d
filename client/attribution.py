"""Which inputs drove a case's prediction (docs/model-bundle.md 5).

Linear models: coefficient x standardized value, each input's exact share of the logit.
The MLP: occlusion to the training mean, i.e. how much the probability drops when the input
is set to its pooled training mean (0 after standardization); model-agnostic and needing no
gradient, it is computed from the released model alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

TOP = 3


def linear_contributions(beta: np.ndarray, z: np.ndarray) -> np.ndarray:
    """cases x inputs: beta_j z_ij, which sum with the intercept to each case's logit."""
    return z * beta[1:]


def occlusion(predict: Callable[[np.ndarray], np.ndarray], z: np.ndarray) -> np.ndarray:
    """cases x inputs: p(z) - p(z with input j at the training mean)."""
    base = predict(z)
    shares = np.empty_like(z)
    for j in range(z.shape[1]):
        occluded = z.copy()
        occluded[:, j] = 0.0
        shares[:, j] = base - predict(occluded)
    return shares


def top_inputs(shares: np.ndarray, names: list[str], top: int = TOP) -> list[str]:
    """Per case, its `top` inputs by absolute share, as 'name:+0.123; ...'."""
    order = np.argsort(-np.abs(shares), axis=1, kind="stable")[:, :top]
    return [
        "; ".join(f"{names[j]}:{row[j]:+.3f}" for j in picks)
        for row, picks in zip(shares, order, strict=True)
    ]
