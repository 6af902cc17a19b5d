"""Fixed-point encoding of floats in Z_2^64, where the masks live.

Masks cancel only in exact arithmetic, so values become integers: x -> round(x * 2^F)
as int64 viewed as uint64, whose numpy sums wrap mod 2^64 exactly. F is chosen from a
public per-site bound so the total of n sites stays below 2^63 with headroom to spare:
it then decodes to a signed number, and a total outside the bound (an unmasking gone
wrong leaves uniform noise) is caught instead of decoded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from fedrad.common.secagg.errors import EncodingError

HEADROOM_BITS = 8
# Beyond this a bound is too small to be a magnitude; capping F only costs unused bits.
_MAX_FRAC_BITS = 1000


def _fits(frac_bits: int, bound: float, n_sites: int, headroom_bits: int) -> bool:
    """n sites at the bound, each rounded up by half a unit, stay within 2^(63 - headroom)."""
    worst = n_sites * (Fraction(bound) * 2**frac_bits + Fraction(1, 2))
    return worst <= 2 ** (63 - headroom_bits)


def choose_fraction_bits(bound: float, n_sites: int, headroom_bits: int = HEADROOM_BITS) -> int:
    """The largest F with n_sites * (bound * 2^F + 1/2) <= 2^(63 - headroom_bits).

    `bound` is public: no site's value has an entry beyond it in magnitude (from the
    case cap, standardized features, clipping). Refuses a bound that leaves no integer
    resolution (F < 0), since the total could then not be represented.
    """
    if isinstance(n_sites, bool) or not isinstance(n_sites, int) or n_sites < 1:
        raise EncodingError(f"number of sites must be a positive int, got {n_sites!r}")
    if not 0 <= headroom_bits <= 62:
        raise EncodingError(f"headroom must be 0..62 bits, got {headroom_bits}")
    if not (math.isfinite(bound) and bound > 0):
        raise EncodingError(f"the public bound must be finite and positive, got {bound!r}")
    if not _fits(0, bound, n_sites, headroom_bits):
        raise EncodingError(
            f"a bound of {bound:g} per site over {n_sites} sites cannot be represented in "
            f"64-bit fixed point with {headroom_bits} bits of headroom"
        )
    room = 2.0 ** (63 - headroom_bits) / n_sites
    frac_bits = min(_MAX_FRAC_BITS, max(0, math.floor(math.log2(room / bound))))
    while frac_bits > 0 and not _fits(frac_bits, bound, n_sites, headroom_bits):
        frac_bits -= 1
    while frac_bits < _MAX_FRAC_BITS and _fits(frac_bits + 1, bound, n_sites, headroom_bits):
        frac_bits += 1
    return frac_bits


@dataclass(frozen=True)
class FixedPoint:
    """The public encoding of one quantity: F fractional bits for n sites within a bound."""

    frac_bits: int
    bound: float
    n_sites: int

    @classmethod
    def for_bound(
        cls, bound: float, n_sites: int, headroom_bits: int = HEADROOM_BITS
    ) -> FixedPoint:
        return cls(choose_fraction_bits(bound, n_sites, headroom_bits), float(bound), n_sites)

    @property
    def total_limit(self) -> float:
        """The largest |encoded total| n sites within the bound can produce."""
        return self.n_sites * (math.ldexp(self.bound, self.frac_bits) + 0.5)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Flat uint64 words of round(x * 2^F); refuses non-finite values and any past the bound."""
        x = np.asarray(values, dtype=np.float64).ravel()
        bad = ~np.isfinite(x)
        if bad.any():
            raise EncodingError(
                f"{int(bad.sum())} of {x.size} values are not finite (first at index "
                f"{int(np.argmax(bad))}): refused"
            )
        over = np.abs(x) > self.bound
        if over.any():
            raise EncodingError(
                f"{int(over.sum())} of {x.size} values exceed the public bound {self.bound:g} "
                f"(largest |x| = {float(np.max(np.abs(x))):g}): refused, the total could wrap"
            )
        return np.rint(np.ldexp(x, self.frac_bits)).astype(np.int64).view(np.uint64)

    def decode(self, total: np.ndarray) -> np.ndarray:
        """Floats from the wrapped uint64 total; refuses a total outside the public bound."""
        words = np.asarray(total)
        if words.dtype != np.uint64:
            raise EncodingError(f"a fixed-point total is uint64 words, got {words.dtype}")
        signed = words.view(np.int64).astype(np.float64)
        outside = np.abs(signed) > self.total_limit
        if outside.any():
            raise EncodingError(
                f"{int(outside.sum())} of {words.size} total entries lie outside the bound of "
                f"{self.n_sites} sites x {self.bound:g}: the unmasking is incomplete or a value "
                "was encoded on another scale"
            )
        return np.ldexp(signed, -self.frac_bits)
