"""qc.html shows each case: the slice where the tumour is largest, every region outlined
on its boundary in its own colour, all embedded in a page that needs no network."""

from __future__ import annotations

import base64
import csv
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from fedrad.client.cli import site_app
from fedrad.client.qc_thumbnail import THUMBNAIL_PX, otsu_threshold, region_colour, thumbnail
from fedrad.simulations.synth.cohort import generate_cohort

REGIONS = {"enhancing": (1,), "necrosis": (2,)}
SYNTHETIC_LABELS = "labels: {1: enhancing, 2: necrosis, 3: oedema}\n"
EMBEDDED_PNG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def volume(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 1.0))
    return image


def decoded(png: bytes, folder: Path) -> np.ndarray:
    """RGB pixels (rows, columns, 3) as an independent decoder (ITK's libpng) reads them."""
    path = folder / "thumbnail.png"
    path.write_bytes(png)
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def head(shape: tuple[int, int, int]) -> np.ndarray:
    """Dark background around a bright noisy disc, so the window has a head to find."""
    rng = np.random.default_rng(0)
    _, rows, columns = np.indices(shape)
    disc = (rows - shape[1] / 2) ** 2 + (columns - shape[2] / 2) ** 2 < (shape[1] / 2.5) ** 2
    return (rng.normal(100, 5, shape) * disc + rng.normal(5, 1, shape)).astype(np.float32)


def test_the_slice_shown_is_where_all_regions_together_cover_the_most_area():
    labels = np.zeros((12, 40, 40), np.uint8)
    labels[3, 10:16, 10:16] = 1  # enhancing alone is largest here: 36 voxels
    labels[7, 10:15, 10:15] = 1  # 25 voxels of enhancing ...
    labels[7, 20:25, 20:25] = 2  # ... and 25 of necrosis: 50 together
    labels[9, 0:40, 0:40] = 3  # a label of no study region, however large, does not count
    shot = thumbnail(volume(head(labels.shape)), volume(labels), REGIONS)
    assert (shot.slice_index, shot.slices) == (7, 12)


def test_without_a_mask_the_middle_slice_is_shown():
    shot = thumbnail(volume(head((9, 20, 20))), None, REGIONS)
    assert shot.slice_index == 4


def test_a_volume_stored_in_another_orientation_gives_the_same_picture():
    """The same head stored left-to-right and posterior-to-anterior (RAS, as many NIfTI
    writers do) is shown as the LPS copy is: radiological view, anterior at the top."""
    labels = np.zeros((6, 50, 40), np.uint8)
    labels[2, 5:15, 3:12] = 1  # anterior, on the patient's right
    pixels = head(labels.shape)
    lps = thumbnail(volume(pixels), volume(labels), REGIONS)

    def ras(array: np.ndarray) -> sitk.Image:
        image = volume(array[:, ::-1, ::-1].copy())
        image.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
        return image

    assert thumbnail(ras(pixels), ras(labels), REGIONS) == lps


def test_outlines_lie_on_each_region_boundary_in_its_own_colour(tmp_path):
    """A 160 x 160 slice is shown pixel for pixel, so the outline can be checked exactly."""
    labels = np.zeros((3, THUMBNAIL_PX, THUMBNAIL_PX), np.uint8)
    labels[1, 40:80, 60:100] = 1
    labels[1, 100:120, 20:30] = 2
    shot = thumbnail(volume(head(labels.shape)), volume(labels), REGIONS)
    pixels = decoded(shot.png, tmp_path)
    assert pixels.shape == (THUMBNAIL_PX, THUMBNAIL_PX, 3)
    for position, (top, bottom, left, right) in enumerate([(40, 79, 60, 99), (100, 119, 20, 29)]):
        colour = region_colour(position)
        border = np.zeros(pixels.shape[:2], bool)
        border[top : bottom + 1, [left, right]] = True
        border[[top, bottom], left : right + 1] = True
        assert (pixels[border] == colour).all()
        inner, outer = pixels[top + 1, left + 1], pixels[top - 1, left - 1]
        assert inner[0] == inner[1] == inner[2] and outer[0] == outer[1] == outer[2]
    coloured = (pixels[..., 0] != pixels[..., 1]) | (pixels[..., 1] != pixels[..., 2])
    assert coloured.sum() == 2 * (40 + 40) - 4 + 2 * (20 + 10) - 4  # nothing but the outlines


def test_the_window_spans_percentiles_1_to_99_of_the_head_not_the_air(tmp_path):
    pixels = head((3, THUMBNAIL_PX, THUMBNAIL_PX))
    shot = thumbnail(volume(pixels), None, REGIONS)
    plane = pixels[1]
    assert shot.window == pytest.approx(tuple(np.percentile(plane[plane > 50], [1, 99])))
    grey = decoded(shot.png, tmp_path)[..., 0]
    assert grey.min() == 0 and grey.max() == 255


def test_the_head_is_split_from_the_air_where_itks_otsu_filter_splits_it():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(5, 1, 3000), rng.gamma(20, 5, 5000)]).astype(np.float32)
    itk = sitk.OtsuThresholdImageFilter()
    itk.Execute(sitk.GetImageFromArray(values.reshape(1, -1)))
    assert otsu_threshold(values) == pytest.approx(itk.GetThreshold(), rel=1e-4)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, list[str]]:
    """Three small synthetic cases, then copies of the first whose flair file is gone and
    whose mask is not an image."""
    root = tmp_path_factory.mktemp("site")
    (manifest,) = generate_cohort(
        root, sites=1, cases_per_site=3, size=40
    )  # 32 makes regions below QC's minimum
    rows = list(csv.DictReader(manifest.open()))
    rows.append({**rows[0], "case_id": "lost-flair", "flair": "images/gone.nii.gz"})
    (manifest.parent / "images" / "garbled.nii").write_bytes(b"not a NIfTI file")
    rows.append({**rows[0], "case_id": "garbled-mask", "mask": "images/garbled.nii"})
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (root / "site.yaml").write_text(f"manifest: {manifest}\n{SYNTHETIC_LABELS}")
    return root, [row["case_id"] for row in rows]


def checked_page(root: Path, *options: str) -> str:
    out = root / ("qc" + "".join(options))
    arguments = ["check", "--site", str(root / "site.yaml"), "--out", str(out), *options]
    result = CliRunner().invoke(site_app, [*arguments, "--workers", "2"])
    assert result.exit_code == 1, result.output  # the two broken copies fail QC
    return (out / "qc.html").read_text()


def test_page_embeds_one_image_per_case_and_sequence_and_names_no_address(site):
    root, case_ids = site
    page = checked_page(root)
    images = EMBEDDED_PNG.findall(page)
    assert len(images) == 3 * 2 + 1 + 2  # the broken copies still show what they can
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert not re.search(r"https?:", page) and "<script" not in page
    for case_id in case_ids:
        assert f"<td>{case_id}</td>" in page
    assert "never sends it" in page and str(root / "qc") in page


def test_a_failed_case_comes_first_with_its_reason_its_images_and_a_placeholder(site):
    root, _ = site
    page = checked_page(root)
    rows = re.findall(r'<tr class="(\w+)"><td>([^<]+)</td>(.*?)</tr>', page, re.S)
    assert [(status, case_id) for status, case_id, _ in rows] == [
        ("failed", "lost-flair"),
        ("failed", "garbled-mask"),
        ("ok", "site01-0001"),
        ("ok", "site01-0002"),
        ("ok", "site01-0003"),
    ]
    failed = rows[0][2]
    assert "missing sequence flair: file not found" in failed  # QC's reason
    assert '<div class="absent">no flair: file not found: gone.nii.gz</div>' in failed
    assert len(EMBEDDED_PNG.findall(failed)) == 1
    assert re.search(r"enhancing \d[\d,]*<br>", failed)  # voxel counts from its mask


def test_a_case_with_an_unreadable_mask_shows_its_images_and_why_they_have_no_outlines(site):
    root, _ = site
    page = checked_page(root)
    (row,) = re.findall(r"<td>garbled-mask</td>(.*?)</tr>", page, re.S)
    assert "unreadable mask file garbled.nii" in row  # QC's reason
    assert len(EMBEDDED_PNG.findall(row)) == 2
    assert "mask unreadable: " in row and "middle slice, no outlines" in row


def test_no_thumbnails_leaves_the_table_alone(site):
    root, case_ids = site
    page = checked_page(root, "--no-thumbnails")
    assert not EMBEDDED_PNG.search(page) and all(f"<td>{c}</td>" in page for c in case_ids)
