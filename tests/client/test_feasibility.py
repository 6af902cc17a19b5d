"""Before anything is sent, a site learns whether its usable cases meet what the study's
folds and minimum cell size k ask, and whether it gives the regions and sequences the
study needs; under secure aggregation a rare class is a note, not a refusal."""

from __future__ import annotations

from pathlib import Path

from fedrad.client.cases import CaseStatus
from fedrad.client.feasibility import feasibility
from fedrad.client.site_config import SiteConfig
from fedrad.client.site_plan import plan_site
from fedrad.common.config import StudyConfig

STUDY = StudyConfig()  # 5-fold, k = 5, secure aggregation, ComBat by site
IN_THE_CLEAR = STUDY.updated(federation={"secure_aggregation": False})


def site(folder: Path, hgg: int, bm: int, unusable: int = 0, **config) -> tuple:
    """A site's plan and QC statuses: `hgg` and `bm` usable cases, `unusable` failed ones."""
    labels = ["HGG"] * hgg + ["BM"] * bm + ["HGG"] * unusable
    sequences = [
        name for name in ("t1c", "flair") if name not in config.get("missing_sequences", ())
    ]
    header = ",".join(["case_id", "label", *sequences, "mask"])
    paths = ",".join(f"{name}.nii" for name in [*sequences, "mask"])
    rows = [f"c{i},{label},{paths}" for i, label in enumerate(labels)]
    manifest = folder / "site01" / "manifest.csv"
    manifest.parent.mkdir()
    manifest.write_text(header + "\n" + "\n".join(rows) + "\n")
    plan = plan_site(manifest, STUDY, SiteConfig(**config))
    statuses = [
        CaseStatus(e.case_id, e.label, *(("qc", ("unreadable",)) if i >= hgg + bm else ()))
        for i, e in enumerate(plan.entries)
    ]
    return plan, statuses


def test_a_site_with_enough_cases_of_each_class_for_every_fold_can_take_part(tmp_path: Path):
    result = feasibility(*site(tmp_path, hgg=25, bm=25), STUDY)
    assert result.can_take_part and not result.notes
    assert result.cases == {"HGG": 25, "BM": 25}
    assert result.asks == (
        "study hgg-vs-bm: 5-fold cross-validation, k = 5 (federation.min_cell_size), secure "
        "aggregation: each fold's test part needs >= 5 of this site's cases of each batch, "
        "about 25 of each in all"
    )


def test_unusable_cases_do_not_count_towards_the_folds(tmp_path: Path):
    result = feasibility(*site(tmp_path, hgg=20, bm=0, unusable=10), STUDY)
    assert result.cases == {"HGG": 20, "BM": 0}
    assert not result.can_take_part


def test_too_few_cases_name_each_fit_the_site_would_sit_out_and_why(tmp_path: Path):
    result = feasibility(*site(tmp_path, hgg=6, bm=6), STUDY)
    assert result.refusals == [
        "fold 1, fold 2, fold 3, fold 4, fold 5: site01 has fewer than 5 test cases of a "
        "batch in this fold: its sums over the fold's training cases would differ from the "
        "whole's by them"
    ]


def test_in_the_clear_a_rare_class_is_refused_per_class(tmp_path: Path):
    result = feasibility(*site(tmp_path, hgg=25, bm=3), IN_THE_CLEAR)
    assert not result.can_take_part
    assert any("fewer than 5 test cases of a class" in line for line in result.refusals)
    assert "class and batch" in result.asks


def test_under_secure_aggregation_a_rare_class_takes_part_with_a_note(tmp_path: Path):
    result = feasibility(*site(tmp_path, hgg=25, bm=3), STUDY)
    assert result.can_take_part
    (note,) = result.notes
    assert note.startswith(
        "under secure aggregation the class rule applies to the totals over sites, so this "
        "site takes part although, on its own, fold 1, "
    )
    assert "fewer than 5 test cases of a class" in note
    assert "the study stops rather than expose its rare class" in note


def test_lumped_labels_and_a_missing_sequence_are_refusals_naming_what_is_lost(tmp_path: Path):
    lumped = {"labels": {1: ["enhancing", "necrosis"], 3: "oedema"}, "missing_sequences": ["flair"]}
    plan, statuses = site(tmp_path, hgg=25, bm=25, **lumped)
    refusals = feasibility(plan, statuses, STUDY).refusals
    assert refusals[:3] == [
        "the study needs region enhancing, which this site cannot give (label 1 lumps "
        "enhancing, necrosis together, so enhancing cannot be separated), so the study would "
        "lose its enhancing features at every site",
        "the study needs region necrosis, which this site cannot give (label 1 lumps "
        "enhancing, necrosis together, so necrosis cannot be separated), so the study would "
        "lose its necrosis features at every site",
        "the study needs sequence flair, which the site config declares missing, so the "
        "study would lose its flair features at every site",
    ]


def test_a_holdout_study_asks_one_fit(tmp_path: Path):
    holdout = STUDY.updated(validation={"scheme": "holdout"})
    result = feasibility(*site(tmp_path, hgg=3, bm=3), holdout)
    assert result.refusals == ["the holdout fit: site01 has fewer than 5 training cases"]
