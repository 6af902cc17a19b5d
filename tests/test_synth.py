"""The synthetic cohort: manifest contract, reproducibility, site effects, class signal."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fedrad.simulations.synth import generate_cohort, simulate_case
from fedrad.simulations.synth_site import draw_site_profile

SIZE = 48
SITES, CASES = 2, 4


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, list[Path], list[str]]:
    root = tmp_path_factory.mktemp("cohort")
    seen: list[str] = []
    manifests = generate_cohort(
        root, sites=SITES, cases_per_site=CASES, seed=7, size=SIZE, on_case=seen.append
    )
    return root, manifests, seen


def test_manifest_contract(cohort):
    root, manifests, seen = cohort
    assert manifests == [root / "site01" / "manifest.csv", root / "site02" / "manifest.csv"]
    rows = [row for manifest in manifests for row in _rows(manifest)]
    header = manifests[0].read_text().splitlines()[0]
    assert header == "case_id,label,t1c,flair,mask,age,sex"
    assert [row["case_id"] for row in rows] == seen  # on_case once per case, in order
    assert seen[:2] == ["site01-0001", "site01-0002"] and len(set(seen)) == SITES * CASES
    for manifest in manifests:
        for row in _rows(manifest):
            assert row["label"] in {"HGG", "BM"}
            assert 18 <= int(row["age"]) <= 90 and row["sex"] in {"F", "M"}
            for column in ("t1c", "flair", "mask"):
                assert not Path(row[column]).is_absolute()
                assert (manifest.parent / row[column]).is_file()


def test_images_and_mask_share_geometry_and_mask_has_every_region(cohort):
    _, manifests, _ = cohort
    for manifest in manifests:
        for row in _rows(manifest):
            mask = sitk.ReadImage(str(manifest.parent / row["mask"]))
            assert mask.GetPixelID() == sitk.sitkUInt8
            assert set(np.unique(sitk.GetArrayViewFromImage(mask))) == {0, 1, 2, 3}
            for sequence in ("t1c", "flair"):
                image = sitk.ReadImage(str(manifest.parent / row[sequence]))
                assert image.GetPixelID() == sitk.sitkFloat32
                assert image.GetSize() == mask.GetSize()
                assert image.GetSpacing() == mask.GetSpacing()
                assert image.GetOrigin() == mask.GetOrigin()
                assert image.GetDirection() == mask.GetDirection()


def test_same_seed_same_bytes_and_cases_do_not_depend_on_cohort_size(cohort, tmp_path):
    root, _, _ = cohort
    generate_cohort(tmp_path / "again", sites=SITES, cases_per_site=CASES, seed=7, size=SIZE)
    assert _files(tmp_path / "again") == _files(root)

    generate_cohort(tmp_path / "fewer", sites=1, cases_per_site=2, seed=7, size=SIZE)
    for name, content in _files(tmp_path / "fewer").items():
        if name.endswith(".nii.gz"):
            assert content == (root / name).read_bytes(), name

    generate_cohort(tmp_path / "other", sites=1, cases_per_site=1, seed=8, size=SIZE)
    name = "site01/images/site01-0001_t1c.nii.gz"
    assert (tmp_path / "other" / name).read_bytes() != (root / name).read_bytes()


def test_more_sequences_leave_the_others_unchanged(cohort, tmp_path):
    root, _, _ = cohort
    sequences = ("t1c", "flair", "t2", "t1")
    (manifest,) = generate_cohort(
        tmp_path, sites=1, cases_per_site=1, seed=7, size=SIZE, sequences=sequences
    )
    assert manifest.read_text().splitlines()[0] == "case_id,label,t1c,flair,t2,t1,mask,age,sex"
    for name in ("site01-0001_flair.nii.gz", "site01-0001_mask.nii.gz"):
        path = Path("site01/images") / name
        assert (tmp_path / path).read_bytes() == (root / path).read_bytes()


@pytest.mark.parametrize("index", [0, 1])
def test_sequences_have_textbook_contrasts(index):
    """At the default size: bright rim and dark necrosis on T1c, bright oedema on FLAIR/T2."""
    sequences = ("t1c", "flair", "t2", "t1")
    case = simulate_case(5, draw_site_profile(5, 1), index, 96, sequences)
    brain = _normal_brain(case.images["t1c"], case.mask)

    def relative(sequence: str, label: int) -> float:
        image = case.images[sequence]
        return float(np.median(image[case.mask == label]) / np.median(image[brain]))

    assert relative("t1c", 1) > 1.3 and relative("t1c", 2) < 0.8
    assert relative("flair", 3) > 1.3 and relative("t2", 3) > 1.3
    assert relative("t2", 2) > 1.5  # fluid-like necrosis
    assert relative("t1", 1) < relative("t1c", 1) - 0.3  # no uptake without gadolinium


def _normal_brain(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Tumour-free voxels in the central third of the volume (always inside the brain)."""
    centre = np.zeros(mask.shape, dtype=bool)
    centre[tuple(slice(n // 3, n - n // 3) for n in mask.shape)] = True
    return centre & (mask == 0) & (image > np.percentile(image[centre], 20))


def test_sites_differ_like_scanners(cohort):
    _, manifests, _ = cohort
    levels, spacings = [], []
    for manifest in manifests:
        site_levels = []
        for row in _rows(manifest):
            image = _array(manifest.parent / row["t1c"])
            mask = _array(manifest.parent / row["mask"])
            site_levels.append(np.log(np.median(image[_normal_brain(image, mask)])))
        levels.append(site_levels)
        spacings.append(sitk.ReadImage(str(manifest.parent / row["mask"])).GetSpacing())
    levels = np.array(levels)
    between = levels.mean(axis=1).std()
    within = levels.std(axis=1).mean()
    assert between > 3 * within
    assert spacings[0] != spacings[1]
    for spacing in spacings:
        assert spacing[0] == spacing[1] and spacing[2] > spacing[0] * 0.8


def test_class_balance_varies_across_sites(cohort):
    _, manifests, _ = cohort
    profiles = [draw_site_profile(7, site) for site in range(1, 11)]
    fractions = [profile.hgg_fraction for profile in profiles]
    assert min(fractions) >= 0.3 and max(fractions) <= 0.7 and np.ptp(fractions) > 0.2
    for profile in profiles:
        labels = [profile.case_is_hgg(index) for index in range(200)]
        assert abs(np.mean(labels) - profile.hgg_fraction) <= 1 / 200
    for site, manifest in enumerate(manifests, start=1):
        expected = [draw_site_profile(7, site).case_is_hgg(i) for i in range(CASES)]
        assert [row["label"] == "HGG" for row in _rows(manifest)] == expected


def test_class_signal_matches_the_literature():
    """Over a modest cohort, gliomas are larger and more necrotic, metastases more oedematous."""
    stats: dict[str, list[tuple[float, float, float]]] = {"HGG": [], "BM": []}
    for site_number in (1, 2):
        site = draw_site_profile(3, site_number)
        for index in range(12):
            case = simulate_case(3, site, index, 64, ("t1c",))
            counts = np.bincount(case.mask.ravel(), minlength=4).astype(float)
            core = counts[1] + counts[2]
            volume = core * case.grid.voxel_volume
            stats[case.label].append((volume, counts[2] / core, counts[3] / core))
    hgg, bm = np.array(stats["HGG"]), np.array(stats["BM"])
    assert len(hgg) >= 6 and len(bm) >= 6
    assert np.median(hgg[:, 0]) > np.median(bm[:, 0])  # core size
    assert hgg[:, 1].mean() > bm[:, 1].mean()  # necrosis fraction of the core
    assert bm[:, 2].mean() > hgg[:, 2].mean()  # oedema relative to the core


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="sequences"):
        generate_cohort(tmp_path, sites=1, cases_per_site=1, size=SIZE, sequences=("adc",))
    with pytest.raises(ValueError, match="at least one site"):
        generate_cohort(tmp_path, sites=0, cases_per_site=1, size=SIZE)
