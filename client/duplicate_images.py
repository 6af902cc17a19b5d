"""The same image under two case ids: a case copied twice would be counted twice, and
could sit in a fold's training and test parts at once.

Files are compared by size first, and only files of equal size are hashed (blake2b), so a
site of large volumes is read only where a duplicate is possible.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from fedrad.client.manifest import CaseEntry

_CHUNK = 1 << 20


def duplicate_images(entries: Sequence[CaseEntry]) -> list[str]:
    """One sentence per set of image files with the same content under different case ids."""
    by_size: dict[int, list[tuple[str, str, Path]]] = defaultdict(list)
    for entry in entries:
        for sequence, path in entry.images.items():
            size = _size(path)
            if size:
                by_size[size].append((entry.case_id, sequence, path))
    by_content: dict[bytes, list[tuple[str, str, Path]]] = defaultdict(list)
    for files in by_size.values():
        if len({case_id for case_id, _, _ in files}) > 1:
            for case_id, sequence, path in files:
                by_content[_digest(path)].append((case_id, sequence, path))
    return [
        "the same image content is given under case ids "
        + ", ".join(f"{case_id} ({sequence}: {path})" for case_id, sequence, path in files)
        for files in by_content.values()
        if len({case_id for case_id, _, _ in files}) > 1
    ]


def _files(path: Path) -> list[Path]:
    """The file itself, or a DICOM folder's files in name order."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def _size(path: Path | None) -> int:
    if path is None or not path.exists():
        return 0
    return sum(file.stat().st_size for file in _files(path))


def _digest(path: Path) -> bytes:
    digest = hashlib.blake2b()
    for file in _files(path):
        with file.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    return digest.digest()
