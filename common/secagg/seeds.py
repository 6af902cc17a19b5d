"""Mask seeds: pairwise from an X25519 shared secret and a release tag, self seeds fresh.

Both sites of a pair derive the same pairwise seed without sending it; binding it to
the tag makes every release's masks independent. The self seed is drawn from the OS so
nothing the aggregator learns about pairwise seeds tells it anything about it.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedrad.common.secagg.tags import ReleaseTag

SEED_BYTES = 32
_DOMAIN = b"fedrad/secagg/pairwise-seed/v1"


def shared_secret(own: X25519PrivateKey, peer: X25519PublicKey) -> bytes:
    """The X25519 secret of a pair (the same from either side); low-order keys are refused."""
    return own.exchange(peer)


def pairwise_seed(secret: bytes, tag: ReleaseTag) -> bytes:
    """HKDF-SHA256(shared secret, info=tag): a 32-byte seed for this pair and release only."""
    return HKDF(
        algorithm=hashes.SHA256(), length=SEED_BYTES, salt=None, info=_DOMAIN + tag.encode()
    ).derive(secret)


def self_seed() -> bytes:
    """A fresh 32-byte self-mask seed b_i from the OS generator (one per release)."""
    return os.urandom(SEED_BYTES)
