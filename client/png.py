"""Write an 8-bit indexed-colour PNG with the standard library alone.

The QC page embeds a thumbnail per case and sequence; neither Pillow nor matplotlib is a
FedRad dependency, and an indexed PNG (a grey ramp plus a few outline colours) is one
palette, one zlib stream and three checksums. One byte per pixel, not three, keeps a
100-case page a few MB.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_INDEXED_COLOUR = 3  # PNG colour type
_NO_FILTER = b"\x00"  # per-row filter byte; the PNG spec advises none for indexed images


def indexed_png(pixels: np.ndarray, palette: Sequence[tuple[int, int, int]]) -> bytes:
    """PNG bytes of a 2-D array of palette indices (row 0 at the top)."""
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ValueError(f"need 2-D uint8 palette indices, got {pixels.dtype} {pixels.shape}")
    if not 0 < len(palette) <= 256 or int(pixels.max()) >= len(palette):
        raise ValueError(f"palette of {len(palette)} colours for indices up to {pixels.max()}")
    height, width = pixels.shape
    header = struct.pack(">IIBBBBB", width, height, 8, _INDEXED_COLOUR, 0, 0, 0)
    rows = np.empty((height, width + 1), np.uint8)
    rows[:, 0] = _NO_FILTER[0]
    rows[:, 1:] = pixels
    return b"".join(
        [
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"PLTE", bytes(channel for colour in palette for channel in colour)),
            _chunk(b"IDAT", zlib.compress(rows.tobytes())),
            _chunk(b"IEND", b""),
        ]
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
