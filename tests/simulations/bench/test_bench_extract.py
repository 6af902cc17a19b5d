"""The extraction benchmark's cohorts: the real case as a site would list it, and plain
pyradiomics given each region the way a script would (a label value, or its own mask)."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fedrad.client.site_config import SiteConfig, site_layout
from fedrad.simulations.bench.extract import (
    REAL_CASE,
    SEQUENCES,
    bench_study,
    cohort_arguments,
    plain_regions,
    write_cohort,
)


def arguments(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cohort_arguments(parser, cases=3)
    return parser.parse_args(argv)


def test_real_mri_cohort_lists_the_case_under_distinct_ids_with_its_brats_labels(tmp_path):
    data = tmp_path / "real-mri"
    (data / REAL_CASE).mkdir(parents=True)
    for name in (*SEQUENCES, "seg"):
        (data / REAL_CASE / f"{name}.nii.gz").touch()
    root = tmp_path / "bench"
    root.mkdir()
    site_path, description = write_cohort(root, arguments("--real-mri", str(data)))
    site = SiteConfig.from_yaml(site_path)
    rows = list(csv.DictReader(site.manifest.open()))
    assert [row["case_id"] for row in rows] == [f"{REAL_CASE}-0{i}" for i in (1, 2, 3)]
    assert {row["mask"] for row in rows} == {str((data / REAL_CASE / "seg.nii.gz").resolve())}
    assert all(Path(row[sequence]).is_file() for row in rows for sequence in SEQUENCES)
    regions = site_layout(site, bench_study(resample=True).extraction).regions
    assert regions == {"enhancing": (4,), "necrosis": (1,), "oedema": (2,)}
    assert REAL_CASE in description and "3 case ids" in description


def test_real_mri_without_the_case_names_the_folder(tmp_path):
    with pytest.raises(SystemExit, match=REAL_CASE):
        write_cohort(tmp_path, arguments("--real-mri", str(tmp_path / "nowhere")))


def test_a_region_of_several_labels_gets_its_own_mask(tmp_path):
    labels = np.array([[[0, 1, 2], [3, 2, 1]]], dtype=np.uint32)
    path = tmp_path / "seg.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(path))
    assert plain_regions(str(path), {"a": (1,), "b": (2,)}) == {"a": 1, "b": 2}
    given = plain_regions(str(path), {"a": (1,), "core": (2, 3)})
    assert given["a"] == 1
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(given["core"]), np.isin(labels, (2, 3)).astype(np.uint32)
    )
