"""The same image under two case ids is named with both; equal sizes alone are not enough."""

from __future__ import annotations

from pathlib import Path

from fedrad.client.duplicate_images import duplicate_images
from fedrad.client.manifest import CaseEntry


def case(case_id: str, **images: Path) -> CaseEntry:
    return CaseEntry(line=2, case_id=case_id, label="HGG", images=images, mask=None)


def test_a_copied_image_under_two_case_ids_is_named_with_both(tmp_path: Path):
    (tmp_path / "a.nii").write_bytes(b"volume one")
    (tmp_path / "copy.nii").write_bytes(b"volume one")
    (tmp_path / "b.nii").write_bytes(b"volume two")  # same size, other content
    entries = [
        case("c1", t1c=tmp_path / "a.nii"),
        case("c2", t1c=tmp_path / "b.nii"),
        case("c3", flair=tmp_path / "copy.nii"),
    ]
    assert duplicate_images(entries) == [
        f"the same image content is given under case ids c1 (t1c: {tmp_path / 'a.nii'}), "
        f"c3 (flair: {tmp_path / 'copy.nii'})"
    ]


def test_equal_sizes_and_one_case_reusing_a_file_are_not_duplicates(tmp_path: Path):
    (tmp_path / "a.nii").write_bytes(b"volume one")
    (tmp_path / "b.nii").write_bytes(b"volume two")
    entries = [
        case("c1", t1c=tmp_path / "a.nii", flair=tmp_path / "a.nii"),
        case("c2", t1c=tmp_path / "b.nii", flair=tmp_path / "gone.nii"),
    ]
    assert duplicate_images(entries) == []


def test_dicom_folders_are_compared_by_their_files(tmp_path: Path):
    for folder in ("s1", "s2"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "001.dcm").write_bytes(b"slice")
    entries = [case("c1", t1c=tmp_path / "s1"), case("c2", t1c=tmp_path / "s2")]
    (sentence,) = duplicate_images(entries)
    assert "c1 (t1c:" in sentence and "c2 (t1c:" in sentence


def test_files_alike_in_their_first_megabyte_differ_by_the_rest(tmp_path: Path):
    head = bytes(1 << 20)
    (tmp_path / "a.nii").write_bytes(head + b"one")
    (tmp_path / "b.nii").write_bytes(head + b"two")
    (tmp_path / "empty").mkdir()
    entries = [
        case("c1", t1c=tmp_path / "a.nii", flair=tmp_path / "empty"),
        case("c2", t1c=tmp_path / "b.nii", flair=tmp_path / "empty"),
    ]
    assert duplicate_images(entries) == []
