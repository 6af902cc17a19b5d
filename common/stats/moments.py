"""Pooled per-feature moments (docs/methods.md 3.1).

Radiomic features such as energy reach 1e6, where sum-of-squares arithmetic cancels
catastrophically. Sites holding one group each send (n, mean, M2), which Chan, Golub &
LeVeque's pairwise update combines without that loss; sums that must add up over sites
(under secure aggregation) are centred at the pooled mean first (`CentredSums`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, Self, TypeVar

import numpy as np


@dataclass(frozen=True)
class Moments:
    """Count, mean and centred sum of squares M2 = sum((x - mean)^2), per feature."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        """Moments of the rows of `x` (n x G)."""
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        return cls(n=x.shape[0], mean=mean, m2=((x - mean) ** 2).sum(axis=0))

    def combine(self, other: Moments) -> Moments:
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        return Moments(n=n, mean=mean, m2=m2)

    def variance(self, ddof: int = 0) -> np.ndarray:
        return self.m2 / (self.n - ddof)


@dataclass(frozen=True)
class CentredSums:
    """n, S1 = sum(x - c) and S2 = sum((x - c)^2) per feature, about a centre c every site
    is told: plain sums, so sites may send them masked and only their total is known.

    Two passes make them exact (docs/methods.md 3.1): the total about c = 0 gives the
    pooled mean, and the total about that mean gives M2 with nothing left to cancel.
    """

    n: int
    s1: np.ndarray
    s2: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, centre: np.ndarray) -> CentredSums:
        """A site's sums over the rows of `x` (n x G)."""
        centred = np.asarray(x, dtype=np.float64) - centre
        return cls(n=centred.shape[0], s1=centred.sum(axis=0), s2=(centred**2).sum(axis=0))

    def __add__(self, other: CentredSums) -> CentredSums:
        return CentredSums(self.n + other.n, self.s1 + other.s1, self.s2 + other.s2)

    def mean(self, centre: np.ndarray) -> np.ndarray:
        return centre + self.s1 / self.n

    def moments(self, centre: np.ndarray) -> Moments:
        """The moments of the summed rows (M2 clipped at 0 against round-off)."""
        m2 = np.maximum(self.s2 - self.s1**2 / self.n, 0.0)
        return Moments(n=self.n, mean=self.mean(centre), m2=m2)


class _Combinable(Protocol):
    n: int

    def combine(self, other: Self) -> Self: ...


Pooled = TypeVar("Pooled", bound=_Combinable)


def pool_moments(parts: Iterable[Pooled]) -> Pooled:
    """Combine site moments (or comoments) pairwise; raises if there are none."""
    pooled: Pooled | None = None
    for part in parts:
        pooled = part if pooled is None else pooled.combine(part)
    if pooled is None or pooled.n == 0:
        raise ValueError("no site contributed any cases")
    return pooled


@dataclass(frozen=True)
class Standardizer:
    """z = (x - mean) / scale, with StandardScaler's ddof=0 scale; constant features get scale 1."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def from_moments(cls, moments: Moments) -> Standardizer:
        scale = np.sqrt(moments.variance(ddof=0))
        return cls(mean=moments.mean, scale=np.where(scale > 0, scale, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale


def group_f_statistic(groups: list[Moments]) -> tuple[np.ndarray, np.ndarray]:
    """One-way ANOVA F and p-value per feature across groups (e.g. sites) from their moments.

    Used to show how much of a feature's variance is a site effect, before and after
    harmonization, without any per-case value leaving a site.
    """
    from scipy.stats import f as f_distribution

    pooled = pool_moments(groups)
    between = sum(g.n * (g.mean - pooled.mean) ** 2 for g in groups)
    within = sum(g.m2 for g in groups)
    df_between, df_within = len(groups) - 1, pooled.n - len(groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = (between / df_between) / (within / df_within)
    return statistic, f_distribution.sf(statistic, df_between, df_within)
