"""Wide fixed-point encoding of floats in Z_2^64, where the masks live.

Masks cancel only in exact integer arithmetic mod 2^64, so a float x becomes the integer
v = rint(x * 2^52), split into three signed 48-bit limbs that are masked and summed as
separate words. 144 bits hold any value a site may send (sums to ~1e20, gradients to
~1e-12), so no public bound has to be chosen. Fewer than 2^15 sites cannot carry a limb
sum past 2^63, so a limb sum beyond n_sites * 2^48 means the total is still masked noise:
an incomplete unmasking is refused instead of decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedrad.common.secagg.errors import EncodingError

FRAC_BITS = 52
LIMB_BITS = 48
LIMBS = 3


@dataclass(frozen=True)
class FixedPoint:
    """The public encoding of a release summed over at most `n_sites` sites."""

    n_sites: int

    def __post_init__(self) -> None:
        n = self.n_sites
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise EncodingError(f"number of sites must be a positive int, got {n!r}")
        if n >= 2 ** (63 - LIMB_BITS):
            raise EncodingError(
                f"{n} sites could carry a {LIMB_BITS}-bit limb sum past 2^63: "
                f"at most {2 ** (63 - LIMB_BITS) - 1} are supported"
            )

    @staticmethod
    def words(n_values: int) -> int:
        """The number of uint64 words that encode `n_values` floats."""
        return LIMBS * n_values

    @staticmethod
    def encode(values: np.ndarray) -> np.ndarray:
        """Limb-major uint64 words of rint(x * 2^52); refuses non-finite and out-of-range x."""
        x = np.asarray(values, dtype=np.float64).ravel()
        bad = ~np.isfinite(x)
        if bad.any():
            raise EncodingError(
                f"{int(bad.sum())} of {x.size} values are not finite (first at index "
                f"{int(np.argmax(bad))}): refused"
            )
        top = LIMBS * LIMB_BITS - 1 - FRAC_BITS
        over = np.abs(x) >= 2.0**top
        if over.any():
            raise EncodingError(
                f"{int(over.sum())} of {x.size} values reach 2^{top} in magnitude (first at "
                f"index {int(np.argmax(over))}, |x| = {float(np.max(np.abs(x))):g}): refused, "
                f"beyond the {LIMBS * LIMB_BITS}-bit fixed point"
            )
        # Every step is exact in float64: a < 2^143 has 53 significant bits, and each
        # remainder keeps a subset of them.
        a = np.abs(np.rint(np.ldexp(x, FRAC_BITS)))
        l2 = np.floor(np.ldexp(a, -2 * LIMB_BITS))
        r = a - np.ldexp(l2, 2 * LIMB_BITS)
        l1 = np.floor(np.ldexp(r, -LIMB_BITS))
        l0 = r - np.ldexp(l1, LIMB_BITS)
        limbs = np.concatenate([l0, l1, l2])
        limbs = np.where(np.tile(x < 0, LIMBS), -limbs, limbs)
        return limbs.astype(np.int64).view(np.uint64)

    def decode(self, total_words: np.ndarray) -> np.ndarray:
        """Floats from the wrapped sum of n_sites encodings; refuses a total still masked."""
        words = np.asarray(total_words)
        if words.dtype != np.uint64 or words.ndim != 1 or words.size % LIMBS:
            raise EncodingError(
                f"a fixed-point total is flat uint64 words, {LIMBS} per value; got "
                f"{words.dtype} of shape {words.shape}"
            )
        limbs = words.view(np.int64).reshape(LIMBS, -1)
        limit = self.n_sites * (2**LIMB_BITS - 1)
        outside = (limbs > limit) | (limbs < -limit)
        if outside.any():
            raise EncodingError(
                f"{int(outside.sum())} of {words.size} limb sums exceed {self.n_sites} sites x "
                f"2^{LIMB_BITS} in magnitude (first at word {int(np.argmax(outside.ravel()))}): "
                "the unmasking is incomplete or the words are not a FixedPoint total"
            )
        # Carry into the top limb to learn each total's sign, then recombine its magnitude
        # from non-negative limbs, so no cancellation costs more than a few ulp.
        sign = np.where(_carried(limbs)[2] < 0, -1, 1)
        low, mid, high = _carried(limbs * sign).astype(np.float64)
        magnitude = np.ldexp(high, 2 * LIMB_BITS) + (np.ldexp(mid, LIMB_BITS) + low)
        return np.ldexp(sign * magnitude, -FRAC_BITS)


def _carried(limbs: np.ndarray) -> np.ndarray:
    """The same totals with the low limbs in [0, 2^48) and their carries in the top limb.

    Limb sums stay below 2^63 by the site limit, and a carry is below 2^15, so the int64
    arithmetic here does not wrap.
    """
    mask = np.int64(2**LIMB_BITS - 1)
    shift = np.int64(LIMB_BITS)
    low = limbs[0] & mask
    mid = limbs[1] + (limbs[0] >> shift)
    high = limbs[2] + (mid >> shift)
    return np.stack([low, mid & mask, high])
