"""FedRad's extraction equals plain pyradiomics `RadiomicsFeatureExtractor.execute` with the
same settings: value for value (==), and within 1e-9 relative for LoG features where the
working-volume lever changes the filter's support (no resampling; docs/extraction.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
import threadpoolctl

from fedrad.common.config import FEATURE_CLASSES, ExtractionSettings
from fedrad.common.radiomics.features import expected_columns, extract_case, region_mask
from fedrad.simulations.bench.extract import plain_extractor, plain_features
from fedrad.simulations.synth.cohort import simulate_case
from fedrad.simulations.synth.site import draw_site_profile

REGIONS = {"enhancing": (1,), "necrosis": (2,), "oedema": (3,), "core": (1, 2)}
STUDY_REGIONS = {
    "enhancing": ("enhancing",),
    "necrosis": ("necrosis",),
    "oedema": ("oedema",),
    "core": ("enhancing", "necrosis"),
}


@pytest.fixture(scope="module")
def synthetic() -> tuple[dict[str, sitk.Image], sitk.Image]:
    """A simulated case on an anisotropic grid (so resampling really interpolates)."""
    case = simulate_case(0, draw_site_profile(0, 1), 0, 48, ("t1c", "flair"))

    def image(array: np.ndarray) -> sitk.Image:
        volume = sitk.GetImageFromArray(array)
        volume.SetSpacing(case.grid.spacing)
        volume.SetOrigin(case.grid.origin)
        return volume

    return {name: image(array) for name, array in case.images.items()}, image(case.mask)


def fedrad(images, mask, regions, settings) -> dict[str, float]:
    """FedRad as a pool worker runs it: one ITK and one BLAS thread."""
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        with threadpoolctl.threadpool_limits(1):
            return extract_case(images, dict.fromkeys(images, mask), regions, settings)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def plain(images, mask, regions, settings) -> dict[str, float]:
    """Plain pyradiomics with ITK's default threads (one BLAS thread only to keep the suite
    fast on a busy machine: BLAS threads waiting for a core slow GLCM's MCC many times)."""
    labels = {
        name: values[0] if len(values) == 1 else region_mask(mask, values)
        for name, values in regions.items()
    }
    with threadpoolctl.threadpool_limits(1):
        return plain_features(plain_extractor(settings, diagnostics=False), images, mask, labels)


def assert_equal_values(ours: dict[str, float], theirs: dict[str, float]) -> None:
    assert ours.keys() == theirs.keys()
    assert all(math.isfinite(value) for value in ours.values())
    different = {name: (ours[name], theirs[name]) for name in ours if ours[name] != theirs[name]}
    assert not different, (
        f"{len(different)} of {len(ours)} differ, e.g. {next(iter(different.items()))}"
    )


def test_resampled_study_with_every_filter_and_class_is_identical(synthetic):
    images, mask = synthetic
    images = {"flair": images["flair"]}
    settings = ExtractionSettings(
        sequences=tuple(images),
        regions=STUDY_REGIONS,
        feature_classes=FEATURE_CLASSES,
        filters=("original", "log", "wavelet"),
        log_sigmas_mm=(1.0, 3.0),
    )
    ours = fedrad(images, mask, REGIONS, settings)
    assert set(ours) == expected_columns(settings, settings.sequences, list(REGIONS))
    assert_equal_values(ours, plain(images, mask, REGIONS, settings))


def test_sequences_sharing_a_mask_share_its_region_grids_and_stay_identical(synthetic, monkeypatch):
    from fedrad.common.radiomics.resampling import RegionResampler

    images, mask = synthetic
    settings = ExtractionSettings(
        sequences=tuple(images), regions=STUDY_REGIONS, feature_classes=FEATURE_CLASSES
    )
    calls = []
    resample = RegionResampler.resample
    monkeypatch.setattr(
        RegionResampler, "resample", lambda self, m: calls.append(m) or resample(self, m)
    )
    ours = fedrad(images, mask, REGIONS, settings)
    assert len(images) == 2 and len(calls) == len(REGIONS)  # once per region, not sequence
    assert_equal_values(ours, plain(images, mask, REGIONS, settings))


def test_without_resampling_filters_run_once_on_a_working_volume(synthetic):
    images, mask = synthetic
    settings = ExtractionSettings(
        sequences=tuple(images),
        regions=STUDY_REGIONS,
        resampled_spacing_mm=None,
        feature_classes=("firstorder", "glcm"),
        filters=("original", "log", "wavelet"),
        log_sigmas_mm=(1.0, 3.0),
    )
    ours = fedrad(images, mask, REGIONS, settings)
    theirs = plain(images, mask, REGIONS, settings)
    assert ours.keys() == theirs.keys()
    log = {name for name in ours if "_log-sigma-" in name}
    exact = ours.keys() - log
    assert_equal_values({n: ours[n] for n in exact}, {n: theirs[n] for n in exact})
    for name in log:
        assert ours[name] == pytest.approx(theirs[name], rel=1e-9, abs=0), name


def test_working_volume_keeps_the_wavelet_wrap_of_a_region_at_the_image_edge():
    rng = np.random.default_rng(1)
    image = sitk.GetImageFromArray(rng.normal(100, 20, (30, 40, 50)).astype(np.float32))
    image.SetSpacing((1.0, 1.2, 2.0))
    labels = np.zeros((30, 40, 50), np.uint8)
    labels[10:20, 15:25, 0:8] = 1  # touches the x = 0 face
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    settings = ExtractionSettings(
        sequences=("t1c",),
        tissues=("tumour",),
        regions={"tumour": ("tumour",)},
        resampled_spacing_mm=None,
        feature_classes=("firstorder",),
        filters=("wavelet", "log"),
        log_sigmas_mm=(2.0,),
    )
    regions = {"tumour": (1,)}
    ours = fedrad({"t1c": image}, mask, regions, settings)
    theirs = plain({"t1c": image}, mask, regions, settings)
    assert ours.keys() == theirs.keys()
    for name, value in ours.items():
        if "_wavelet-" in name:
            assert value == theirs[name], name
        else:
            assert value == pytest.approx(theirs[name], rel=1e-9, abs=0), name
