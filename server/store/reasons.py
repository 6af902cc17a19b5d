"""A short, stable code for each event's reason, so a dashboard can count and filter events
("timeout", "refused:plan_mismatch") without parsing the sentence the log keeps beside it."""

from __future__ import annotations

import re

# (pattern in the reason, its code), first match wins; the phrases are the federation's
# and the census's own (server/federation.py, server/phases/census.py)
_PATTERNS = (
    (re.compile(r"as outside its plan \(([^)]+)\)"), "refused:{0}"),
    (re.compile(r"extraction hash .* differs"), "extraction_hash_mismatch"),
    (re.compile(r"study settings differ"), "study_hash_mismatch"),
    (re.compile(r"has no study feature"), "no_study_feature"),
    (re.compile(r"went offline"), "offline"),
    (re.compile(r"no reply to .* within"), "timeout"),
    (re.compile(r"malformed update"), "malformed_reply"),
    (re.compile(r"failed at the site"), "site_error"),
)
_BY_EVENT = {
    "left out": "skipped",
    "joined": "joined",
    "error": "aggregator_error",
    "stopped": "stopped_by_coordinator",
    "ended": "ended_unrecorded",
}


def reason_code(event: str, reason: str) -> str:
    for pattern, code in _PATTERNS:
        found = pattern.search(reason)
        if found:
            return code.format(*found.groups())
    return _BY_EVENT.get(event, "other")
