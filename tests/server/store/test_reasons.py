"""Each event's reason gets a stable code a dashboard can count by."""

from __future__ import annotations

import pytest

from fedrad.server.store.reasons import reason_code


@pytest.mark.parametrize(
    ("event", "reason", "code"),
    [
        ("set aside", "fold 1: no reply to query.screen within 60 s", "timeout"),
        ("set aside", "fold 1: no reply to query.screen: the site went offline", "offline"),
        ("set aside", "refused train.lasso_round as outside its plan (not_in_plan)",
         "refused:not_in_plan"),
        ("refused", "extraction hash 1a differs from the study's 2b: re-extract",
         "extraction_hash_mismatch"),
        ("refused", "its study settings differ from the aggregator's study", "study_hash_mismatch"),
        ("set aside", "holdout: malformed update: words are float64", "malformed_reply"),
        ("set aside", "query.screen failed at the site (disk; the details are in its log)",
         "site_error"),
        ("left out", "fold 2: too few HGG cases", "skipped"),
        ("something new", "an unforeseen reason", "other"),
    ],
)  # fmt: skip
def test_each_reason_gets_its_code(event, reason, code):
    assert reason_code(event, reason) == code
