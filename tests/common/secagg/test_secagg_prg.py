"""Mask expansion: ChaCha20 keystream, the same for both sites of a pair, uniform words."""

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from scipy.stats import kstest

from fedrad.common.secagg import expand, pairwise_sign, self_seed


def test_expansion_is_the_chacha20_keystream_of_the_seed():
    seed = bytes(range(32))
    stream = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None).encryptor().update(bytes(80))

    words = expand(seed, 10)

    assert words.dtype == np.uint64
    assert words.tobytes() == stream  # little-endian words of the keystream, on any host
    assert np.array_equal(expand(seed, 1000)[:10], words)


def test_different_seeds_give_unrelated_uniform_words():
    a, b = expand(self_seed(), 4096), expand(self_seed(), 4096)

    assert np.mean(a == b) < 0.01
    assert kstest(a / 2.0**64, "uniform").statistic < 0.05


def test_a_seed_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        expand(b"short", 4)


def test_exactly_one_site_of_a_pair_adds_the_mask():
    assert pairwise_sign("site-00", "site-01") == 1
    assert pairwise_sign("site-01", "site-00") == -1
    with pytest.raises(ValueError, match="itself"):
        pairwise_sign("site-00", "site-00")
