"""The survivor set of a release, as a digest every survivor signs before revealing.

An aggregator that told one site "you survived" and the others "it dropped" would get
that site's self seed from it and its pairwise seeds from the others: its value in the
clear. So each survivor signs the set it was told, signs one set per release, and
reveals only when every survivor's signature covers that same set (Bonawitz et al.'s
consistency check).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedrad.common.secagg.tags import ReleaseTag

_DIGEST_DOMAIN = b"fedrad/secagg/survivor-set/v1"
_SIGNATURE_DOMAIN = b"fedrad/secagg/survivor-signature/v1"


def _names(names: Iterable[str]) -> bytes:
    ordered = sorted(set(names))
    parts = [len(ordered).to_bytes(4, "big")]
    parts += [len(raw).to_bytes(4, "big") + raw for raw in (n.encode() for n in ordered)]
    return b"".join(parts)


def survivor_digest(tag: ReleaseTag, survivors: Iterable[str], dropped: Iterable[str]) -> bytes:
    """SHA-256 of the tag, the survivors and the dropped, in canonical (sorted) order."""
    return hashlib.sha256(
        _DIGEST_DOMAIN + tag.encode() + _names(survivors) + _names(dropped)
    ).digest()


def sign_survivor_set(identity: Ed25519PrivateKey, digest: bytes) -> bytes:
    """A site's signature on a survivor-set digest (domain-separated from key signatures)."""
    return identity.sign(_SIGNATURE_DOMAIN + digest)


def verify_survivor_signature(identity: Ed25519PublicKey, digest: bytes, signature: bytes) -> bool:
    """Whether `signature` is the identity's signature on this very survivor-set digest."""
    return _verified(identity.public_bytes_raw(), _SIGNATURE_DOMAIN + digest, bytes(signature))


@functools.lru_cache(maxsize=4096)
def _verified(identity: bytes, message: bytes, signature: bytes) -> bool:
    """Ed25519 verification, remembered by its exact inputs: it always gives the same answer
    for them, and where many sites share a process (a simulation) each survivor's signature
    of a release is then checked once, not once per site."""
    try:
        Ed25519PublicKey.from_public_bytes(identity).verify(signature, message)
    except InvalidSignature:
        return False
    return True
