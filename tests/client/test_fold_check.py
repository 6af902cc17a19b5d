"""A site's own fold rule over a total's sites: the aggregator's bound, from the counts
relayed to it, for every fit a request names."""

from __future__ import annotations

from fedrad.client.fold_check import counts_from_text, counts_to_text, short_part
from fedrad.common.config import StudyConfig
from fedrad.common.messages import Request
from fedrad.common.pipeline import Partition
from fedrad.common.stats.fold_bounds import ShortFold, SiteCounts

STUDY = StudyConfig(
    federation={"min_cell_size": 5},
    validation={"scheme": "kfold", "folds": 5},
    model={"ridge_lambda": 1.0},
)
SITES = ["site01", "site02"]
# 6 + "<5" HGG: fold 1 holds 2 (site01 deals 2, 1, 1, 1, 1; "<5" counts as none)
RARE = {
    "site01": SiteCounts({"HGG": "6", "BM": "24"}, 1),
    "site02": SiteCounts({"HGG": "<5", "BM": ">=5"}, 1),
}
COMMON = {name: SiteCounts({"HGG": "25", "BM": "25"}, 1) for name in SITES}


def test_a_fold_short_of_k_over_the_totals_sites_is_named():
    request = Request(partition=Partition("kfold", 0))
    assert short_part(STUDY, request, SITES, RARE) == ShortFold("HGG", 2, 0, inner=False)
    assert short_part(STUDY, request, SITES, COMMON) is None


def test_every_fit_of_a_bundled_request_is_checked():
    parts = [Request(partition=Partition("all")), Request(partition=Partition("kfold", 3))]
    short = short_part(STUDY, Request(parts=parts), SITES, RARE)
    assert short == ShortFold("HGG", 1, 3, inner=False)


def test_an_inner_fold_is_checked_as_part_of_the_fit_it_is_cut_from():
    tuned = STUDY.updated(model={"ridge_lambda": None})
    request = Request(partition=Partition("all", inner=0))
    sites = {name: SiteCounts({"HGG": "6", "BM": "30"}, 1) for name in SITES}
    # 6 HGG a site, dealt over the inner folds: inner fold 1 of the final fit holds 4
    assert tuned.validation.inner_folds == 3
    assert short_part(tuned, request, SITES, sites) == ShortFold("HGG", 4, 0, inner=True)
    assert short_part(STUDY, request, SITES, sites) is None  # a fixed penalty: no inner folds


def test_a_participant_without_relayed_counts_is_named_and_an_unseen_site_is_not_held():
    assert short_part(STUDY, Request(partition=Partition("kfold", 0)), SITES, COMMON | {}) is None
    assert (
        short_part(STUDY, Request(partition=Partition("kfold", 0)), [*SITES, "site09"], COMMON)
        == "site09"
    )
    assert short_part(STUDY, Request(partition=Partition("unseen")), SITES, RARE) is None


def test_relayed_counts_are_kept_as_they_came():
    assert counts_from_text(counts_to_text(RARE)) == RARE
