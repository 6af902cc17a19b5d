"""Study extraction settings and site configs: validation names the key, layouts say what a
site can delineate under its own label convention."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedrad.client.site_config import SiteConfig, site_layout
from fedrad.common.config import ConfigError, ExtractionSettings, StudyConfig

REGIONS = {
    "enhancing": ["enhancing"],
    "necrosis": ["necrosis"],
    "oedema": ["oedema"],
    "core": ["enhancing", "necrosis"],
    "whole": ["enhancing", "necrosis", "oedema"],
}
SETTINGS = ExtractionSettings(sequences=("t1c", "t2", "flair", "t1"), regions=REGIONS)


def study_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        StudyConfig.from_yaml(path)
    return str(error.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("extraction:\n  sequences: [t1c, t1c]\n", "extraction.sequences: Value error, sequences"),
        ("extraction:\n  sequences: [T1_c]\n", "sequence name 'T1_c': use lower-case"),
        ("extraction:\n  sequences: [mask]\n", "sequence name 'mask' is reserved"),
        ("extraction:\n  regions: {core: [enhancing, nekrosis]}\n", "regions.core: ['nekrosis']"),
        ("extraction:\n  regions: {enhancing: 1}\n", "mask label values belong in the site"),
        ("extraction:\n  regions: {a: [oedema], b: oedema}\n", "regions.b unites the same"),
        ("extraction:\n  feature_classes: [glcmm]\n", "unknown pyradiomics class(es) ['glcmm']"),
        ("extraction:\n  filters: [original, gabor]\n", "extraction.filters.1: Input should be"),
        ("extraction:\n  log_sigmas_mm: [1, -2]\n", "extraction.log_sigmas_mm.1: Input should"),
        ("extraction:\n  wavelet: coif99\n", "unknown wavelet 'coif99'"),
        ("extraction:\n  interpolator: cubic\n", "extraction.interpolator: Input should be"),
        ("extraction:\n  crop_padding: -1\n", "extraction.crop_padding: Input should be"),
        ("extraction:\n  resampled_spacing_mm: [1, 1, 0]\n", "resampled_spacing_mm.2"),
        ("extraction:\n  bin_width: 0\n", "extraction.bin_width: Input should be greater"),
    ],
)
def test_bad_study_extraction_keys_are_named(tmp_path: Path, text: str, expected: str):
    message = study_error(tmp_path, text)
    assert "study.yaml" in message
    assert expected in message


def test_study_yaml_with_filters_and_derived_regions_maps_to_pyradiomics(tmp_path: Path):
    path = tmp_path / "study.yaml"
    path.write_text(
        "extraction:\n"
        "  regions: {core: [enhancing, necrosis], oedema: oedema}\n"
        "  filters: [original, log, wavelet]\n"
        "  log_sigmas_mm: [1, 2.5]\n"
        "  interpolator: linear\n"
        "  crop_padding: 8\n"
        "  resampled_spacing_mm: [1, 1, 1]\n"
    )
    extraction = StudyConfig.from_yaml(path).extraction
    assert extraction.regions == {"core": ("enhancing", "necrosis"), "oedema": ("oedema",)}
    settings = extraction.pyradiomics_settings()
    assert (settings["interpolator"], settings["padDistance"]) == ("sitkLinear", 8)
    assert settings["resampledPixelSpacing"] == [1.0, 1.0, 1.0]
    assert extraction.pyradiomics_image_types() == {
        "Original": {},
        "LoG": {"sigma": [1.0, 2.5]},
        "Wavelet": {"wavelet": "coif1", "level": 1},
    }


def test_extraction_hash_follows_every_extraction_key_and_nothing_else():
    base = StudyConfig()
    assert StudyConfig().extraction_hash == base.extraction_hash
    changed = [
        {"bin_width": 5.0},
        {"crop_padding": 6},
        {"filters": ("original", "log")},
        {"regions": {"whole": ("enhancing", "necrosis", "oedema")}},
        {"interpolator": "linear"},
    ]
    hashes = {
        StudyConfig(extraction=ExtractionSettings(**change)).extraction_hash for change in changed
    }
    assert len(hashes) == len(changed) and base.extraction_hash not in hashes
    renamed = StudyConfig(name="another study")
    assert renamed.extraction_hash == base.extraction_hash


@pytest.mark.parametrize("library", ["pyradiomics", "SimpleITK", "PyWavelets", "numpy"])
def test_extraction_hash_follows_every_library_in_the_arithmetic(monkeypatch, library):
    """A site on another numpy or PyWavelets release may round differently: it must differ."""
    from fedrad.common import config

    installed = config.extractor_versions()
    assert set(installed) == {"pyradiomics", "SimpleITK", "PyWavelets", "numpy"}
    assert all(installed.values())
    before = StudyConfig().extraction_hash
    monkeypatch.setattr(config, "extractor_versions", lambda: {**installed, library: "0.0.1"})
    assert StudyConfig().extraction_hash != before


def test_brats_convention_delineates_every_region():
    site = SiteConfig(labels={1: "necrosis", 2: "oedema", 4: "enhancing"})
    layout = site_layout(site, SETTINGS)
    assert layout.regions == {
        "enhancing": (4,),
        "necrosis": (1,),
        "oedema": (2,),
        "core": (1, 4),
        "whole": (1, 2, 4),
    }
    assert layout.missing_regions == {}


def test_a_label_lumping_tissues_hides_the_regions_it_mixes():
    site = SiteConfig(labels={1: "oedema", 2: ["enhancing", "necrosis"]})
    layout = site_layout(site, SETTINGS)
    assert layout.regions == {"oedema": (1,), "core": (2,), "whole": (1, 2)}
    assert layout.missing_regions == {
        "enhancing": "label 2 lumps enhancing, necrosis together, so enhancing cannot be separated",
        "necrosis": "label 2 lumps enhancing, necrosis together, so necrosis cannot be separated",
    }


def test_default_convention_numbers_the_study_tissues_from_one():
    layout = site_layout(SiteConfig(), SETTINGS)
    assert layout.labels == {
        1: frozenset({"enhancing"}),
        2: frozenset({"necrosis"}),
        3: frozenset({"oedema"}),
    }


def test_a_site_without_necrosis_labels_cannot_give_necrosis_or_core():
    layout = site_layout(SiteConfig(labels={1: "enhancing", 3: "oedema"}), SETTINGS)
    assert set(layout.regions) == {"enhancing", "oedema"}
    assert layout.missing_regions["necrosis"] == "no label marks necrosis"
    assert layout.missing_regions["whole"] == "no label marks necrosis"


def test_missing_sequences_are_taken_out_in_study_order():
    layout = site_layout(SiteConfig(missing_sequences=("t2",)), SETTINGS)
    assert (layout.sequences, layout.missing_sequences) == (("t1c", "flair", "t1"), ("t2",))


@pytest.mark.parametrize(
    ("site", "expected"),
    [
        (SiteConfig(labels={4: "tumour"}), "labels.4: ['tumour'] not among the study tissues"),
        (SiteConfig(labels={0: "oedema"}), "labels.0: label values must be positive"),
        (SiteConfig(missing_sequences=("adc",)), "missing_sequences: ['adc'] are not study"),
    ],
)
def test_site_config_inconsistent_with_the_study_is_refused(site: SiteConfig, expected: str):
    with pytest.raises(ConfigError, match=r"invalid site config") as error:
        site_layout(site, SETTINGS)
    assert expected in str(error.value)


def test_site_yaml_resolves_its_manifest_next_to_itself(tmp_path: Path):
    path = tmp_path / "conf" / "site.yaml"
    path.parent.mkdir()
    path.write_text(
        "name: tcga\nmanifest: ../data/manifest.csv\n"
        "labels: {1: necrosis, 2: oedema, 4: enhancing}\nmissing_sequences: [t1]\n"
    )
    site = SiteConfig.from_yaml(path)
    assert site.manifest == path.parent / "../data/manifest.csv"
    assert site.labels == {1: ("necrosis",), 2: ("oedema",), 4: ("enhancing",)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("labels: {one: oedema}\n", "labels.one.[key]: Input should be a valid integer"),
        ("label: {1: oedema}\n", "label: Extra inputs are not permitted"),
        ("labels: [\n", "is not valid YAML: expected the node content"),
    ],
)
def test_bad_site_yaml_names_the_file_and_key(tmp_path: Path, text: str, expected: str):
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        SiteConfig.from_yaml(path)
    assert str(path) in str(error.value) and expected in str(error.value)


def test_a_misspelt_tissue_or_sequence_is_answered_with_the_study_name_and_the_file(
    tmp_path: Path,
):
    path = tmp_path / "site.yaml"
    path.write_text("labels: {1: enhancin, 2: necrosis, 3: edema}\nmissing_sequences: [flari]\n")
    with pytest.raises(ConfigError) as error:
        site_layout(SiteConfig.from_yaml(path), SETTINGS)
    message = str(error.value)
    assert message.startswith(f"invalid site config {path}:")
    assert "labels.1: ['enhancin'] not among the study tissues" in message
    assert "(did you mean 'enhancing' for 'enhancin'?)" in message
    assert "(did you mean 'oedema' for 'edema'?)" in message
    assert "(did you mean 'flair' for 'flari'?)" in message
