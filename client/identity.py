"""A site's long-lived identity key: it signs the site's exchange key in every study.

The study pins each site's public identity key, so the aggregator cannot relay a key of
its own under a site's name. The private key never leaves the site folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

IDENTITY_FILE = "identity.key"


def load_or_create_identity(folder: Path) -> Ed25519PrivateKey:
    """The site's identity key from `folder/identity.key`, made there (mode 0600) if absent."""
    path = Path(folder) / IDENTITY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    return key


def public_hex(key: Ed25519PrivateKey) -> str:
    """The public identity key as a study pins it: 64 hex digits."""
    return key.public_key().public_bytes_raw().hex()
