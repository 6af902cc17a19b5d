"""The same image under two case ids: a case copied twice would be counted twice, and
could sit in a fold's training and test parts at once.

Files are compared by size, then by a hash (blake2b) of their first megabyte, and only
files alike in both are hashed whole: uncompressed volumes of one scanner share their size,
and a site's images should be read in full only where a duplicate is possible.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from fedrad.client.manifest import CaseEntry

_CHUNK = 1 << 20
Image = tuple[str, str, Path]  # case id, sequence, path


def duplicate_images(entries: Sequence[CaseEntry]) -> list[str]:
    """One sentence per set of image files with the same content under different case ids."""
    groups = [
        [
            (entry.case_id, sequence, path)
            for entry in entries
            for sequence, path in entry.images.items()
            if path is not None and path.exists() and _size(path) > 0  # empty: QC says so
        ]
    ]
    for key in (_size, _head_digest, _digest):
        groups = [alike for group in groups for alike in _split(group, key) if _across(alike)]
    return [
        "the same image content is given under case ids "
        + ", ".join(f"{case_id} ({sequence}: {path})" for case_id, sequence, path in group)
        for group in groups
    ]


def _split(group: list[Image], key: Callable[[Path], object]) -> list[list[Image]]:
    alike: dict[object, list[Image]] = defaultdict(list)
    for image in group:
        alike[key(image[2])].append(image)
    return list(alike.values())


def _across(group: list[Image]) -> bool:
    """Whether the group spans two case ids (one case may reuse a file)."""
    return len({case_id for case_id, _, _ in group}) > 1


def _files(path: Path) -> list[Path]:
    """The file itself, or a DICOM folder's files in name order."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def _size(path: Path) -> int:
    return sum(file.stat().st_size for file in _files(path))


def _head_digest(path: Path) -> bytes:
    """blake2b of the first megabyte of the image's (first) file."""
    with _files(path)[0].open("rb") as stream:
        return hashlib.blake2b(stream.read(_CHUNK)).digest()


def _digest(path: Path) -> bytes:
    digest = hashlib.blake2b()
    for file in _files(path):
        with file.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    return digest.digest()
