"""Per-study exchange keys, signed with each site's identity key.

The aggregator relays the sites' X25519 public keys. If it could substitute its own it
would share every pairwise mask and read each site's value, so each key is signed with
the site's long-lived Ed25519 identity key (pinned in the study config) over the site's
name and the study's hash, and a site masks only with keys that verify.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from fedrad.common.secagg.errors import KeyVerificationError

_DOMAIN = b"fedrad/secagg/exchange-key/v1"


def _field(data: bytes) -> bytes:
    """Length-prefixed, so no two different (site, study, key) triples sign the same bytes."""
    return len(data).to_bytes(4, "big") + data


def signed_message(site: str, study_hash: bytes, public_key: bytes) -> bytes:
    """The exact bytes an identity key signs for one site's exchange key in one study."""
    return _DOMAIN + _field(site.encode()) + _field(study_hash) + _field(public_key)


@dataclass(frozen=True)
class SignedKey:
    """A site's raw X25519 public key for one study, signed by the site's identity key."""

    site: str
    study_hash: bytes
    public_key: bytes
    signature: bytes


@dataclass(frozen=True)
class StudyKeyPair:
    """A site's X25519 key pair for one study; fresh per study so no seed outlives it."""

    private_key: X25519PrivateKey

    @classmethod
    def generate(cls) -> StudyKeyPair:
        return cls(X25519PrivateKey.generate())

    @property
    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes_raw()

    def sign(self, site: str, study_hash: bytes, identity: Ed25519PrivateKey) -> SignedKey:
        """The public key as the aggregator relays it: bound to site and study."""
        public = self.public_bytes
        signature = identity.sign(signed_message(site, study_hash, public))
        return SignedKey(site, study_hash, public, signature)


def identity_key(key: Ed25519PublicKey | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from the object or its 32 raw bytes (as pinned in a config)."""
    if isinstance(key, Ed25519PublicKey):
        return key
    return Ed25519PublicKey.from_public_bytes(bytes(key))


def verify(
    signed: SignedKey, trusted_identity_public_key: Ed25519PublicKey | bytes, study_hash: bytes
) -> X25519PublicKey:
    """The site's exchange key if its signature and study verify; refuses by site name.

    The signature covers the site name too, so a key relayed under another site's name
    fails against that site's pinned identity key.
    """
    if signed.study_hash != study_hash:
        raise KeyVerificationError(
            f"exchange key of site {signed.site!r} is for study {signed.study_hash.hex()[:16]}, "
            f"not this study {study_hash.hex()[:16]}: refused"
        )
    message = signed_message(signed.site, signed.study_hash, signed.public_key)
    try:
        identity_key(trusted_identity_public_key).verify(signed.signature, message)
    except InvalidSignature:
        raise KeyVerificationError(
            f"exchange key of site {signed.site!r} is not signed by that site's identity key "
            "(a relay may have substituted it): refused"
        ) from None
    try:
        return X25519PublicKey.from_public_bytes(signed.public_key)
    except ValueError as exc:
        raise KeyVerificationError(
            f"exchange key of site {signed.site!r} is not a 32-byte X25519 key: refused"
        ) from exc
