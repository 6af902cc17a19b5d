"""Wide fixed point in Z_2^64: three 48-bit limbs of rint(x * 2^52), no public bound."""

from fractions import Fraction

import numpy as np
import pytest

from fedrad.common.secagg import EncodingError, FixedPoint
from fedrad.common.secagg.fixedpoint import FRAC_BITS, LIMB_BITS, LIMBS

TOP = 2.0 ** (LIMBS * LIMB_BITS - 1 - FRAC_BITS)  # 2^91: the first magnitude refused
LARGEST = np.nextafter(TOP, 0.0)


def wrapped_sum(encodings: list[np.ndarray]) -> np.ndarray:
    """The sites' words added mod 2^64, as the aggregator's sum leaves them."""
    total = np.zeros_like(encodings[0])
    for words in encodings:
        total += words
    return total


def exact_total(limb_sums: np.ndarray) -> list[Fraction]:
    """The value each column of signed limb sums stands for, in exact rationals."""
    return [
        Fraction(sum(int(limb) << (LIMB_BITS * k) for k, limb in enumerate(column)), 2**FRAC_BITS)
        for column in limb_sums.T
    ]


def radiomic_hessian(rng: np.random.Generator, n_cases: int) -> np.ndarray:
    """X'WX of a logistic model on raw radiomic features, from ~1e-3 (ratios) to ~1e8 (energy)."""
    scales = np.array([1e-3, 1e-1, 1.0, 1e2, 1e4, 1e6, 1e8])
    x = rng.lognormal(0.0, 0.5, (n_cases, scales.size)) * scales
    w = rng.uniform(0.05, 0.25, n_cases)  # p(1 - p) of the fitted probabilities
    return ((x * w[:, None]).T @ x).ravel()


def test_values_from_1e_minus_12_to_1e20_and_their_negatives_round_trip():
    rng = np.random.default_rng(0)
    x = rng.choice([-1.0, 1.0], 5000) * 10.0 ** rng.uniform(-12, 20, 5000)
    x = np.concatenate([x, [0.0, 1e-12, -1e-12, 1e20, -1e20, LARGEST, -LARGEST, 2.0**-53]])
    fp = FixedPoint(1)

    words = fp.encode(x)
    back = fp.decode(words)

    assert words.dtype == np.uint64 and words.size == fp.words(x.size) == LIMBS * x.size
    err = np.abs(back - x)
    assert np.all((err <= 1e-15 * np.abs(x)) | (err <= 2.0**-FRAC_BITS))
    big = np.abs(x) >= 1.0
    assert np.array_equal(back[big], x[big])  # whole multiples of 2^-52: exact


def test_the_encoding_is_limb_major_and_wraps_negatives_exactly():
    fp = FixedPoint(2)
    unit, mid, high = 2.0**-FRAC_BITS, 2.0 ** (LIMB_BITS - FRAC_BITS), 2.0 ** (96 - FRAC_BITS)

    words = fp.encode(np.array([unit, mid, high]))

    # [all limb 0 | all limb 1 | all limb 2], one 48-bit limb of rint(x * 2^52) per word.
    assert words.tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert fp.encode(np.array([-unit, -mid])).tolist() == [2**64 - 1, 0, 0, 2**64 - 1, 0, 0]
    x = np.random.default_rng(1).normal(0.0, 1e6, 1000) * 10.0 ** np.arange(-10, 10).repeat(50)
    assert np.array_equal(fp.encode(-x), np.uint64(0) - fp.encode(x))
    assert not np.any(fp.encode(x) + fp.encode(-x))
    assert np.array_equal(fp.decode(fp.encode(x) + fp.encode(-x)), np.zeros(1000))


def test_fifty_sites_radiomic_hessians_sum_in_wrapped_words_to_the_float_sum():
    rng = np.random.default_rng(2)
    hessians = [radiomic_hessian(rng, n) for n in rng.integers(100, 1500, 50)]
    assert np.max(hessians) > 1e18 and np.min(hessians) < 1e-3  # the range the limbs carry
    fp = FixedPoint(50)

    total = fp.decode(wrapped_sum([fp.encode(h) for h in hessians]))

    np.testing.assert_allclose(total, np.sum(hessians, axis=0), rtol=1e-9, atol=0)


def test_a_total_whose_limbs_cancel_decodes_to_its_exact_value():
    # Limb sums near 2^63 whose weighted sum is small: float limbs alone would lose it all.
    rng = np.random.default_rng(3)
    n_sites = 2**15 - 1
    limit = n_sites * (2**LIMB_BITS - 1)
    k = rng.integers(-n_sites + 1, n_sites, 2000)
    low = rng.integers(-limit, limit, (2, 2000), endpoint=True)
    mid = low[1] % 2**20 - k * 2**LIMB_BITS  # cancels the top limb's k * 2^96
    limb_sums = np.stack([low[0], mid, k])
    assert np.all(np.abs(limb_sums) <= limit)

    total = FixedPoint(n_sites).decode(limb_sums.ravel().view(np.uint64))

    want = exact_total(limb_sums)
    assert all(abs(Fraction(got) - w) <= 4e-16 * abs(w) for got, w in zip(total, want, strict=True))


def test_the_most_sites_at_the_largest_value_decode_to_their_total():
    n_sites = 2**15 - 1
    fp = FixedPoint(n_sites)
    for x in (LARGEST, -LARGEST):
        total = fp.decode(fp.encode(np.array([x])) * np.uint64(n_sites))

        assert total[0] == pytest.approx(n_sites * x, rel=1e-15)


def test_values_from_2_to_the_91_on_are_refused():
    fp = FixedPoint(5)

    with pytest.raises(EncodingError, match=r"2 of 4 values reach 2\^91 .*first at index 1"):
        fp.encode(np.array([1.0, TOP, -1e30, 2.0]))
    with pytest.raises(EncodingError, match="first at index 0"):
        fp.encode(np.array([-TOP]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    with pytest.raises(EncodingError, match="1 of 3 values are not finite .first at index 1"):
        FixedPoint(5).encode(np.array([1.0, bad, 2.0]))


def test_a_total_that_is_still_masked_is_refused_instead_of_decoded():
    rng = np.random.default_rng(4)
    fp = FixedPoint(50)
    honest = wrapped_sum([fp.encode(rng.uniform(-1e20, 1e20, 441)) for _ in range(50)])
    mask = rng.integers(0, 2**64, honest.size, dtype=np.uint64, endpoint=False)
    fp.decode(honest)

    with pytest.raises(EncodingError, match="the unmasking is incomplete"):
        fp.decode(honest + mask)
    # Even one masked word of one value is caught.
    one_left = honest.copy()
    one_left[448:449] += mask[:1]
    with pytest.raises(EncodingError, match="1 of 1323 limb sums .*first at word 448"):
        fp.decode(one_left)


def test_a_total_that_is_not_whole_values_of_uint64_words_is_refused():
    fp = FixedPoint(3)

    with pytest.raises(EncodingError, match="uint64"):
        fp.decode(np.zeros(3))
    with pytest.raises(EncodingError, match="3 per value"):
        fp.decode(np.zeros(4, dtype=np.uint64))
    with pytest.raises(EncodingError, match="3 per value"):
        fp.decode(np.zeros((3, 3), dtype=np.uint64))


@pytest.mark.parametrize("bad", [0, -1, 2**15, True, 2.0])
def test_a_site_count_that_is_not_a_positive_int_below_2_to_the_15_is_refused(bad):
    with pytest.raises(EncodingError, match="sites"):
        FixedPoint(bad)
