"""A site's consent to have its share of one release learned by difference.

Two totals of one quantity over different sites differ by the sites in one and not the
other: their shares, in the clear. A site therefore releases a quantity again only among
the same sites, or among fewer when each site left out signed, when it masked, that its
share alone meets the disclosure rules (as it would if sent alone without secure
aggregation). This is what lets a computation restart without a site that dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

_DOMAIN = b"fedrad/secagg/alone-ok/v1"


def consent_message(quantity: str, participants: Iterable[str]) -> bytes:
    """The bytes a site signs: the quantity's digest and the release's sites, sorted."""
    names = b"".join(
        len(n).to_bytes(4, "big") + n for n in (s.encode() for s in sorted(participants))
    )
    raw = quantity.encode()
    return _DOMAIN + len(raw).to_bytes(4, "big") + raw + names


def sign_consent(identity: Ed25519PrivateKey, quantity: str, participants: Iterable[str]) -> bytes:
    return identity.sign(consent_message(quantity, participants))


def verify_consent(
    identity: Ed25519PublicKey, quantity: str, participants: Iterable[str], signature: bytes
) -> bool:
    try:
        identity.verify(signature, consent_message(quantity, participants))
    except InvalidSignature:
        return False
    return True
