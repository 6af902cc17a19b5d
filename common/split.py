"""Deterministic, stratified hold-out split that a site and the pooled reference share.

Each case's side is decided by a hash of (seed, case id), ranked within its class,
so the split depends on neither row order nor on which other sites exist.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def _rank_key(seed: int, case_id: str) -> str:
    return hashlib.sha256(f"{seed}:{case_id}".encode()).hexdigest()


def holdout_mask(
    case_ids: Sequence[str], labels: Sequence[str], fraction: float, seed: int
) -> np.ndarray:
    """True for the cases held out for testing: round(fraction * n_class) per class."""
    case_ids = list(case_ids)
    labels = list(labels)
    mask = np.zeros(len(case_ids), dtype=bool)
    for label in sorted(set(labels)):
        members = [i for i, value in enumerate(labels) if value == label]
        members.sort(key=lambda i: _rank_key(seed, case_ids[i]))
        mask[members[: round(fraction * len(members))]] = True
    return mask
