"""Fixed point in Z_2^64: F from the public bound, values past it or non-finite refused."""

import math

import numpy as np
import pytest
from secagg_federation import federation, mask_all, tag, unmask

from fedrad.common.secagg import HEADROOM_BITS, EncodingError, FixedPoint, choose_fraction_bits


def test_the_bound_leaves_the_chosen_headroom_for_fifty_sites_at_the_bound():
    fed = federation(50)
    fp = FixedPoint.for_bound(400.0, 50)
    for sign, release in ((1.0, tag(quantity="up")), (-1.0, tag(quantity="down"))):
        values = {s: np.full(441, sign * 400.0) for s in fed.names}

        words = unmask(fed, mask_all(fed, values, fp, release), fed.names, release).total()

        assert np.all(np.abs(words.view(np.int64)) <= 2 ** (63 - HEADROOM_BITS))
        np.testing.assert_allclose(fp.decode(words), sign * 50 * 400.0, rtol=1e-12)
    # F is the largest that keeps the headroom: one more bit would not.
    assert 50 * 400.0 * 2.0 ** (fp.frac_bits + 1) > 2.0 ** (63 - HEADROOM_BITS)


def test_fraction_bits_keep_resolution_well_below_1e_9_for_realistic_bounds():
    assert 2.0 ** -choose_fraction_bits(400.0, 50) < 1e-9 * 400.0 / 1e3
    assert choose_fraction_bits(1.0, 2) == 63 - HEADROOM_BITS - 2


def test_a_bound_that_cannot_be_represented_is_refused():
    with pytest.raises(EncodingError, match="cannot be represented"):
        choose_fraction_bits(2.0**60, 50)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(EncodingError, match="finite and positive"):
            choose_fraction_bits(bad, 5)
    with pytest.raises(EncodingError, match="positive int"):
        choose_fraction_bits(1.0, 0)


def test_a_value_beyond_the_bound_is_refused():
    fp = FixedPoint.for_bound(300.0, 5)
    fp.encode(np.array([300.0, -300.0]))

    with pytest.raises(EncodingError, match="1 of 3 values exceed the public bound 300"):
        fp.encode(np.array([1.0, -300.5, 2.0]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    fp = FixedPoint.for_bound(300.0, 5)

    with pytest.raises(EncodingError, match="not finite .first at index 1"):
        fp.encode(np.array([1.0, bad, 2.0]))


def test_encoding_rounds_to_half_a_unit_and_wraps_negatives_exactly():
    fp = FixedPoint.for_bound(300.0, 5)
    x = np.random.default_rng(0).uniform(-300, 300, 1000)

    words = fp.encode(x)

    assert words.dtype == np.uint64
    assert np.max(np.abs(fp.decode(words) - x)) <= 2.0 ** -(fp.frac_bits + 1)
    assert np.array_equal(fp.decode(fp.encode(x) + fp.encode(-x)), np.zeros(1000))


def test_a_total_that_is_still_masked_is_refused_instead_of_decoded():
    fp = FixedPoint.for_bound(300.0, 5)
    noise = np.random.default_rng(0).integers(0, 2**64, 441, dtype=np.uint64)

    with pytest.raises(EncodingError, match="outside the bound"):
        fp.decode(noise)
    with pytest.raises(EncodingError, match="uint64"):
        fp.decode(np.zeros(3))
