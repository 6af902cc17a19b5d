"""Which study sequences and regions a site's feature table covers.

Reported in the census so the server can run the study on the features every included
site shares, or refuse a site with a reason, instead of failing mid-study. Read from the
column names (`<sequence>_<region>_<filter>_<class>_<feature>`), so it describes what the
site actually extracted: a sequence declared missing and one whose every case failed look
the same to the federation.
"""

from __future__ import annotations

from collections.abc import Iterable

from fedrad.common.config import ExtractionSettings


def coverage(features: Iterable[str], settings: ExtractionSettings) -> dict[str, list[str]]:
    """`sequences-present`, `sequences-missing`, `regions-present`, `regions-missing`."""
    parts = [name.split("_", 2)[:2] for name in features]
    sequences = {part[0] for part in parts if len(part) == 2}
    regions = {part[1] for part in parts if len(part) == 2}
    return {
        "sequences-present": [name for name in settings.sequences if name in sequences],
        "sequences-missing": [name for name in settings.sequences if name not in sequences],
        "regions-present": [name for name in settings.regions if name in regions],
        "regions-missing": [name for name in settings.regions if name not in regions],
    }
