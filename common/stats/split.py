"""Deterministic, stratified case splits that a site and the pooled reference share.

Each case's place is decided by a hash of (seed, case id), ranked within its stratum
(site x class), so a split depends on neither row order nor on which other sites
exist: pooling the sites' cases reproduces every site's own split exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def _rank_key(seed: int, case_id: str) -> str:
    return hashlib.sha256(f"{seed}:{case_id}".encode()).hexdigest()


def _ranks_within(case_ids: Sequence[str], strata: Sequence[str], seed: int) -> np.ndarray:
    """Each case's rank inside its stratum, in hash order; and the stratum sizes."""
    ranks = np.zeros(len(case_ids), dtype=int)
    for stratum in sorted(set(strata)):
        members = [i for i, value in enumerate(strata) if value == stratum]
        members.sort(key=lambda i: _rank_key(seed, case_ids[i]))
        ranks[members] = np.arange(len(members))
    return ranks


def holdout_mask(
    case_ids: Sequence[str], strata: Sequence[str], fraction: float, seed: int
) -> np.ndarray:
    """True for the cases held out for testing: round(fraction * n) of every stratum."""
    ranks = _ranks_within(case_ids, strata, seed)
    sizes = {stratum: list(strata).count(stratum) for stratum in set(strata)}
    limits = np.array([round(fraction * sizes[stratum]) for stratum in strata], dtype=int)
    return ranks < limits


def fold_ids(case_ids: Sequence[str], strata: Sequence[str], folds: int, seed: int) -> np.ndarray:
    """Fold of each case: strata are dealt round-robin, so every fold gets its share."""
    return _ranks_within(case_ids, strata, seed) % folds
