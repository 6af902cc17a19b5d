"""The masking arithmetic: self mask plus signed pairwise masks, all mod 2^64.

Site i adds PRG(s_ij) for each peer j that sorts after it and subtracts it for each
that sorts before, so every pair's masks cancel in the sum; PRG(b_i) stays until b_i
is revealed. The sign convention lives here alone so site and aggregator agree on it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fedrad.common.secagg.prg import expand


def flat_words(values: np.ndarray) -> np.ndarray:
    """`values` if they are flat uint64 words; masking float bits would not cancel exactly."""
    words = np.asarray(values)
    if words.dtype != np.uint64 or words.ndim != 1:
        raise ValueError(
            f"masks apply to flat uint64 words (FixedPoint.encode), got {words.dtype} "
            f"of shape {words.shape}"
        )
    return words


def pairwise_sign(site: str, peer: str) -> int:
    """+1 if `site` adds the pair's mask (the peer's name sorts after its own), else -1."""
    if site == peer:
        raise ValueError(f"site {site!r} has no pairwise mask with itself")
    return 1 if peer > site else -1


def signed_pairwise_mask(site: str, peer: str, seed: bytes, n: int) -> np.ndarray:
    """The pairwise mask exactly as `site` adds it: PRG(seed) or its negation mod 2^64."""
    mask = expand(seed, n)
    return mask if pairwise_sign(site, peer) > 0 else np.uint64(0) - mask


def apply_masks(
    words: np.ndarray, site: str, self_seed: bytes, pairwise: Mapping[str, bytes]
) -> np.ndarray:
    """words + PRG(self_seed) + sum over peers of the signed PRG(pairwise seed), mod 2^64."""
    words = flat_words(words)
    out = words + expand(self_seed, words.size)
    for peer, seed in pairwise.items():
        out += signed_pairwise_mask(site, peer, seed, words.size)
    return out
