"""A site's splits are remembered per study settings: the same answer as computed afresh,
whatever the study's folds or seed, and a caller's change to one never reaches the next."""

from __future__ import annotations

import numpy as np

from fedrad.client.data import SiteData
from fedrad.common.config import StudyConfig
from fedrad.common.pipeline import Partition


def _site(n: int = 40) -> SiteData:
    rng = np.random.default_rng(3)
    labels = ["HGG" if i % 3 else "BM" for i in range(n)]
    return SiteData(
        name="site01",
        extraction_hash="x",
        features=["f"],
        case_ids=[f"case{i:03d}" for i in range(n)],
        labels=labels,
        x=rng.normal(size=(n, 1)),
        y=np.array([label == "HGG" for label in labels], dtype=float),
        batch=np.array(["site01"] * n),
        origin=np.array(["site01"] * n),
    )


PARTS = [Partition("holdout"), Partition("kfold", 2), Partition("kfold", 1, inner=0)]
STUDIES = [
    StudyConfig(),
    StudyConfig().updated(validation={"seed": 7}),
    StudyConfig().updated(validation={"folds": 3, "inner_folds": 2}),
]


def test_a_remembered_split_is_the_split_computed_afresh_for_each_study():
    site = _site()
    for study in STUDIES:  # one site asked under several studies: no answer leaks into another
        for partition in PARTS:
            for role in ("train", "test"):
                fresh = _site().rows(partition, role, study)
                assert np.array_equal(site.rows(partition, role, study), fresh)
                assert np.array_equal(site.rows(partition, role, study), fresh)
    folds = {
        study.validation.folds: site.rows(Partition("kfold", 2), "test", study) for study in STUDIES
    }
    assert folds[5].sum() != folds[3].sum()


def test_a_callers_change_to_a_split_does_not_reach_the_next_caller():
    site, study = _site(), StudyConfig()
    first = site.rows(Partition("kfold", 0), "train", study)
    expected = first.copy()
    first[:] = False
    assert np.array_equal(site.rows(Partition("kfold", 0), "train", study), expected)
