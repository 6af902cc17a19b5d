"""The mask generator: a 32-byte seed expanded to uint64 words by ChaCha20.

Masks must be unpredictable without the seed; numpy's generators are not (their state
is recoverable from output, and Flower's SecAgg+ helper folds the seed to 32 bits).
ChaCha20's keystream under a seed used for one release only needs no nonce of its own.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from fedrad.common.secagg.seeds import SEED_BYTES

_NONCE = bytes(16)


def expand(seed: bytes, n: int) -> np.ndarray:
    """`n` uint64 words (little-endian) of ChaCha20 keystream under `seed`."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"a mask seed is {SEED_BYTES} bytes, got {len(seed)}")
    if n < 0:
        raise ValueError(f"cannot expand a seed to {n} words")
    encryptor = Cipher(algorithms.ChaCha20(seed, _NONCE), mode=None).encryptor()
    stream = encryptor.update(bytes(8 * n)) + encryptor.finalize()
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64, copy=True)
