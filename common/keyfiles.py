"""Writing key material: private files mode 0600, never over an existing key.

Both the coordinator's TLS material (`fedrad keys init`) and a site's node key
(`fedrad keys site`) go through here, so a second run can never silently replace a key
that a SuperLink, a SuperNode or the allow-list already trusts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


class KeyFilesExist(Exception):
    """Keys are already there; overwriting them would break whoever trusts them."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        names = ", ".join(str(path) for path in paths)
        super().__init__(
            f"{names} already exist{'s' if len(paths) == 1 else ''}; keys are never "
            "overwritten (move them aside first if you really mean to replace them)."
        )


def refuse_existing(paths: Iterable[Path]) -> None:
    """Raise KeyFilesExist naming every path that is already there."""
    present = [path for path in paths if path.exists()]
    if present:
        raise KeyFilesExist(present)


def write_private(path: Path, data: bytes) -> None:
    """Create `path` readable by its owner only (0600 from the start, no window)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def write_public(path: Path, data: bytes) -> None:
    """Create `path` (0644): certificates and public keys are meant to be shared."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
