"""Which mask value means which tissue: named presets, and no guessing on real data.

A label map is only numbers; the same 1 is necrosis in BraTS and enhancing tumour in
FedRad's synthetic cohort. Reading a real mask with the wrong convention swaps tissues
without any error, so a site must say which convention its masks follow (a preset or a
site config's `labels`). Only the synthetic cohort `fedrad synth` / `fedrad simulate`
writes, recognised by its marker file, may rely on the default. docs/extraction.md 2
lists the conventions and where they come from.
"""

from __future__ import annotations

import json
from pathlib import Path

from fedrad.common.config import ConfigError

# preset -> (label value -> study tissue, the convention in the source's own words)
PRESETS: dict[str, tuple[dict[int, str], str]] = {
    "brats2021": (
        {1: "necrosis", 2: "oedema", 4: "enhancing"},
        "BraTS 2017-2021 glioma: 1 NCR/NET, 2 ED, 4 ET",
    ),
    "brats2023": (
        {1: "necrosis", 2: "oedema", 3: "enhancing"},
        "BraTS 2023 adult glioma (GLI): 1 NCR, 2 ED, 3 ET",
    ),
    "brats-met": (
        {1: "necrosis", 2: "oedema", 3: "enhancing"},
        "BraTS-METS 2023 metastasis: 1 NETC, 2 SNFH, 3 ET",
    ),
}
PRESET_NAMES = tuple(PRESETS)

# written beside the site folders by fedrad.simulations.synth.write (its MARKER)
SYNTHETIC_MARKER = "cohort.json"
_SYNTHETIC_PARAMETERS = {"sites", "cases_per_site", "seed", "size"}


def preset_labels(name: str) -> dict[int, str]:
    """The label map of a preset; ValueError lists the presets for an unknown name."""
    if name not in PRESETS:
        raise ValueError(
            f"unknown label convention {name!r}; presets: {', '.join(PRESET_NAMES)} "
            "(or map each value to its tissue under `labels` in a site config)"
        )
    return dict(PRESETS[name][0])


def is_synthetic_cohort(manifest: Path) -> bool:
    """Whether the manifest belongs to a cohort `fedrad synth` wrote: its marker, holding
    the cohort's parameters, sits in the folder above the site's."""
    marker = manifest.parent.parent / SYNTHETIC_MARKER
    try:
        parameters = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(parameters, dict) and set(parameters) == _SYNTHETIC_PARAMETERS


def require_convention(labels_declared: bool, manifest: Path) -> None:
    """Refuse a real cohort whose label convention nobody stated (ConfigError, exit 2)."""
    if labels_declared or is_synthetic_cohort(manifest):
        return
    raise ConfigError(
        f"the masks of {manifest} follow no stated label convention: pass --labels "
        f"{'|'.join(PRESET_NAMES)}, or a site config (--site) whose `labels` maps each mask "
        "value to its tissue (docs/extraction.md, section 2); FedRad's synthetic convention "
        "(1 enhancing, 2 necrosis, 3 oedema) applies only to cohorts `fedrad synth` wrote"
    )
