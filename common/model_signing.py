"""The aggregator's model-signing key: Ed25519, made by `fedrad keys init` beside its TLS
keys (or by a simulation in its output folder), that signs every model bundle it releases.

A separate key from the TLS one: a site pins this public key to trust a released model
(`fedrad site predict --trust`), and never needs the TLS key that serves the SuperLink.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedrad.common.keyfiles import refuse_existing, write_private, write_public
from fedrad.common.user_error import UserError

SIGNING_KEY = "model-signing.key"
SIGNING_PUBLIC_KEY = "model-signing.pub"


def make_signing_key(folder: Path) -> Path:
    """Write FOLDER/model-signing.key (0600) and .pub; refuses to replace either."""
    private, public = folder / SIGNING_KEY, folder / SIGNING_PUBLIC_KEY
    refuse_existing([private, public])
    key = Ed25519PrivateKey.generate()
    folder.mkdir(parents=True, exist_ok=True)
    write_private(
        private,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_public(public, (public_hex(key.public_key()) + "\n").encode())
    return private


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The private signing key at `path`; a sentence naming it if it is not one."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise UserError(f"cannot read the model-signing key {path}: {exc.strerror}.") from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise UserError(f"{path} is not an unencrypted Ed25519 private key in PEM.") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{path} is not an Ed25519 key (model bundles are signed with Ed25519).")
    return key


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def read_public_key(text: str, source: str) -> Ed25519PublicKey:
    """A public key given as 64 hex digits (model-signing.pub holds one line of them)."""
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.strip()))
    except ValueError as exc:
        raise UserError(
            f"{source} is not an Ed25519 public key (64 hex digits, as in model-signing.pub)."
        ) from exc


def trusted_key(value: str) -> Ed25519PublicKey:
    """`--trust`: a model-signing.pub file, or its 64 hex digits."""
    path = Path(value)
    if path.is_file():
        return read_public_key(path.read_text(), str(path))
    return read_public_key(value, f"--trust {value!r} (neither a file nor a key)")


def verifies(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
