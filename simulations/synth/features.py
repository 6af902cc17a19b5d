"""Synthetic site feature tables, for protocol tests and scale benchmarks without MRI.

Each site gets Gaussian features with a class signal shared by all sites, a
per-site shift (a scanner effect), an offset of 1000 (radiomic features are often
far from zero) and its own class balance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fedrad.common.config import StudyConfig
from fedrad.common.feature_table import write_feature_table


def write_site_feature_tables(
    root: Path,
    study: StudyConfig,
    sizes: tuple[int, ...] = (60, 45, 80),
    n_features: int = 6,
    seed: int = 0,
    site_shift: float = 0.3,
    signal_strength: float = 1.5,
    clinical: bool = False,
    positives: tuple[int, ...] | None = None,
) -> dict[str, Path]:
    """Write `root/siteNN/features.parquet` per site; return site name -> path.

    `positives` fixes each site's count of the positive class (a rare outcome), which is
    otherwise drawn with a prevalence of 30-60 % depending on the site.

    With `clinical`, cases also get an age and a sex (`clinical_age`, `clinical_sex`)
    and age shifts every feature a little, as a ComBat covariate to preserve.
    """
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n_features)
    names = [f"t1c_enhancing_original_firstorder_F{i}" for i in range(n_features)]
    positive, negative = study.federation.classes
    tables = {}
    for index, n in enumerate(sizes):
        y = rng.random(n) < 0.3 + 0.15 * (index % 3)
        if positives is not None:
            y = np.isin(np.arange(n), rng.choice(n, positives[index], replace=False))
        x = (
            rng.normal(size=(n, n_features))
            + signal_strength * np.outer(y, signal)
            + 1000.0
            + site_shift * (index % 7) * rng.uniform(0.5, 1.5, n_features)
        )
        table = pd.DataFrame(x, columns=names)
        if clinical:
            age = np.round(rng.normal(60, 10, n))
            table[names] += 0.05 * (age[:, None] - 60) * rng.uniform(0.5, 1.5, n_features)
            table.insert(0, "clinical_sex", rng.choice(["F", "M"], n))
            table.insert(0, "clinical_age", age)
        table.insert(0, "label", np.where(y, positive, negative))
        table.insert(0, "case_id", [f"s{index}-{i:03d}" for i in range(n)])
        name = f"site{index + 1:02d}"
        path = root / name / "features.parquet"
        write_feature_table(table, path, {"extraction_hash": study.extraction_hash})
        tables[name] = path
    return tables
