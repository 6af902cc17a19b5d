"""The synthetic cohort: manifest contract, reproducibility, site effects, class signal."""

from __future__ import annotations

import csv
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fedrad.simulations.synth.cohort import generate_cohort, simulate_case
from fedrad.simulations.synth.mri import tissue_levels
from fedrad.simulations.synth.site import (
    SEQUENCES,
    Protocol,
    SiteProfile,
    draw_site_profile,
)
from fedrad.simulations.synth.tumour import Phenotype, draw_phenotype

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


_NEUTRAL = Protocol(
    slice_mm=0.0,
    slice_gap=0.0,
    fat=1.0,
    grey_white=1.0,
    lesion=1.0,
    enhancement=1.0,
    tissue={},
)


def _reference_site(seed: int = 5, number: int = 1, **changes) -> SiteProfile:
    """A drawn site with the reference protocol on every sequence (3-D, textbook contrasts,
    no reconstruction filter), then `changes`; protocols given by sequence are merged in."""
    protocols = dict.fromkeys(SEQUENCES, _NEUTRAL) | changes.pop("protocols", {})
    changes = {"reconstruction": 0.0, **changes, "protocols": protocols}
    return replace(draw_site_profile(seed, number), **changes)


@pytest.mark.parametrize("index", [0, 1])
def test_sequences_have_textbook_contrasts(index):
    """At the default size: bright rim and dark necrosis on T1c, bright oedema on FLAIR/T2."""
    sequences = ("t1c", "flair", "t2", "t1")
    case = simulate_case(5, _reference_site(), index, 96, sequences)
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


def test_every_site_protocol_keeps_textbook_contrasts_within_realistic_ratios():
    """Protocols change contrasts by up to ~1.5x, never their sign or into the implausible."""
    for number in range(1, 101):
        protocols = draw_site_profile(11, number).protocols
        t1c, flair, t2 = (tissue_levels(s, protocols[s]) for s in ("t1c", "flair", "t2"))
        assert 1.2 < t1c["enhancing"] / t1c["white"] < 4.0  # rim / white matter on T1c
        assert t1c["necrosis"] / t1c["white"] < 0.6 and t1c["grey"] < t1c["white"]
        assert 1.25 < flair["oedema"] / flair["white"] < 3.6 and flair["grey"] > flair["white"]
        assert flair["csf"] < 0.3 * flair["white"]  # fluid suppressed
        assert t2["csf"] > t2["grey"] > t2["white"] and t2["necrosis"] > t2["white"]


def test_site_profiles_span_realistic_scanner_ranges():
    """1.5 T and 3 T sites with their noise and bias ranges, 3-D and 2-D thick-slice series,
    smoothing and sharpening reconstruction, fat saturation: the documented ranges."""
    profiles = [draw_site_profile(3, number) for number in range(1, 301)]
    high = np.array([p.field_tesla == 3.0 for p in profiles])
    assert {p.field_tesla for p in profiles} == {1.5, 3.0} and 0.35 < high.mean() < 0.65
    noise = np.array([p.noise for p in profiles])
    bias = np.array([p.bias_strength for p in profiles])
    assert noise[high].min() >= 0.015 and noise[high].max() <= 0.035
    assert noise[~high].min() >= 0.035 and noise[~high].max() <= 0.08
    assert noise[~high].mean() > 2 * noise[high].mean()  # SNR ~doubles at 3 T
    assert bias[high].mean() > 1.5 * bias[~high].mean()  # B1 inhomogeneity grows with field
    for sequence, share in (("t1c", 0.35), ("flair", 0.7)):
        thick = np.array([p.protocols[sequence].slice_mm for p in profiles])
        assert abs((thick > 0).mean() - share) < 0.1
        assert thick[thick > 0].min() >= 3.5 and thick.max() <= 6.0
    recon = np.array([p.reconstruction for p in profiles])
    assert (recon < -0.5).mean() > 0.15 and (recon > 0.5).mean() > 0.15
    fat = np.array([p.protocols["t1c"].fat for p in profiles])
    assert 0.25 < (fat < 0.4).mean() < 0.55
    for p in profiles[:50]:
        grid = p.grid(96)
        inplane, _, through = grid.spacing
        if p.protocols["t1c"].slice_mm > 0:  # 2-D T1c: the grid has its thick slices
            assert through == p.protocols["t1c"].slice_mm
        else:  # 3-D T1c: near-isotropic
            assert inplane <= through <= 1.25 * inplane


def _zscored(image: np.ndarray) -> np.ndarray:
    """Whole-image z-score, as pyradiomics' `normalize` does."""
    return (image - image.mean()) / image.std()


def _roughness(image: np.ndarray, region: np.ndarray, axis: int) -> float:
    """RMS second difference along an axis (numpy order z, y, x) inside a region: the fine
    texture that GLCM-type features respond to."""
    inner = [slice(None)] * 3
    inner[axis] = slice(1, -1)
    second = np.diff(image.astype(np.float64), n=2, axis=axis)
    return float(np.sqrt(np.mean(second[region[tuple(inner)]] ** 2)))


def test_scanner_effects_survive_whole_image_normalization():
    """One patient on two scanners: noise, reconstruction filter, slice thickness and fat
    saturation each change what radiomics measures after z-scoring, not only the scale."""

    def scan(sequence: str, **changes) -> tuple[np.ndarray, np.ndarray]:
        case = simulate_case(2, _reference_site(**changes), 0, 64, ("t1c", "flair"))
        return _zscored(case.images[sequence]), case.mask

    base, mask = scan("t1c", noise=0.03)
    oedema = mask == 3
    for changes, low, high in (
        ({"noise": 0.08}, 1.15, 2.0),  # 1.5 T noise (the tissue's own texture dominates)
        ({"noise": 0.03, "reconstruction": -1.0}, 0.1, 0.5),  # k-space apodization
        ({"noise": 0.03, "reconstruction": 1.0}, 1.4, 2.0),  # edge enhancement
    ):
        other, other_mask = scan("t1c", **changes)
        assert np.array_equal(other_mask, mask)  # the same patient on the same grid
        ratio = _roughness(other, oedema, 2) / _roughness(base, oedema, 2)
        assert low < ratio < high, (changes, ratio)

    def anisotropy(image: np.ndarray) -> float:
        return _roughness(image, oedema, 0) / _roughness(image, oedema, 2)

    flair, _ = scan("flair", noise=0.03)
    thick, _ = scan("flair", noise=0.03, protocols={"flair": replace(_NEUTRAL, slice_mm=6.0)})
    assert anisotropy(thick) < 0.75 * anisotropy(flair)  # partial volume along z

    def t1c_brain(fat: float) -> float:
        protocols = {"t1c": replace(_NEUTRAL, fat=fat)}
        case = simulate_case(2, _reference_site(protocols=protocols), 0, 64, ("t1c",))
        image = case.images["t1c"]
        return float(np.median(_zscored(image)[_normal_brain(image, case.mask)]))

    assert t1c_brain(0.25) - t1c_brain(1.0) > 0.3  # fat saturation moves every z-score


def test_every_region_survives_2mm_resampling_on_the_coarsest_grid():
    """The thickest 2-D T1c and widest in-plane spacing at size 64: each region still has at
    least 10 voxels after the study's 2 mm nearest-neighbour resampling of the mask."""
    coarse = _reference_site(inplane_mm=2.3, protocols={"t1c": replace(_NEUTRAL, slice_mm=6.0)})
    for index in range(6):
        case = simulate_case(4, coarse, index, 64, ("t1c",))
        assert case.grid.spacing[2] == 6.0
        mask = sitk.GetImageFromArray(case.mask)
        mask.SetSpacing(case.grid.spacing)
        extent = np.array(case.grid.spacing) * np.array(mask.GetSize())
        size = [int(n) for n in np.ceil(extent / 2.0)]
        resampled = sitk.Resample(
            mask, size, sitk.Transform(), sitk.sitkNearestNeighbor, mask.GetOrigin(),
            (2.0, 2.0, 2.0), mask.GetDirection(), 0, mask.GetPixelID(),
        )  # fmt: skip
        counts = np.bincount(sitk.GetArrayViewFromImage(resampled).ravel(), minlength=4)
        assert counts[1:].min() >= 10, (case.case_id, counts)


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
    for site_number in (1, 2, 3):
        site = draw_site_profile(3, site_number)
        for index in range(16):
            case = simulate_case(3, site, index, 48, ("t1c",))
            counts = np.bincount(case.mask.ravel(), minlength=4).astype(float)
            core = counts[1] + counts[2]
            volume = core * case.grid.voxel_volume
            stats[case.label].append((volume, counts[2] / core, counts[3] / core))
    hgg, bm = np.array(stats["HGG"]), np.array(stats["BM"])
    assert len(hgg) >= 12 and len(bm) >= 12
    assert np.median(hgg[:, 0]) > 1.5 * np.median(bm[:, 0])  # core size
    assert np.median(hgg[:, 1]) > np.median(bm[:, 1])  # necrosis fraction of the core
    assert np.median(bm[:, 2]) > 1.2 * np.median(hgg[:, 2])  # oedema relative to the core


def test_no_single_tumour_property_separates_the_classes():
    """Every class-linked property differs in the literature's direction, and overlaps (AUC
    0.65-0.9 alone), so shape is not the whole story; contrast uptake carries no class."""
    rng = np.random.default_rng(0)
    draws = {is_hgg: [draw_phenotype(rng, is_hgg) for _ in range(300)] for is_hgg in (1, 0)}

    def auc(name: str) -> float:
        hgg, bm = (np.array([getattr(p, name) for p in draws[c]]) for c in (1, 0))
        return float((hgg[:, None] > bm[None, :]).mean())

    for name in (f.name for f in fields(Phenotype)):
        value = auc(name)
        if name == "enhancement":
            assert abs(value - 0.5) < 0.08
        elif name == "oedema_ratio":  # metastases: large oedema for their size
            assert 0.1 < value < 0.35
        else:
            assert 0.65 < value < 0.9, (name, value)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="sequences"):
        generate_cohort(tmp_path, sites=1, cases_per_site=1, size=SIZE, sequences=("adc",))
    with pytest.raises(ValueError, match="at least one site"):
        generate_cohort(tmp_path, sites=0, cases_per_site=1, size=SIZE)
