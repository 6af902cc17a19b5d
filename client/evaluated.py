"""The fits this site has scored (SCORES), remembered so that a comparison's joint score
histograms (JOINT_SCORES) are answered only for pipelines it already evaluated: a curious
aggregator cannot ask the cross-tabulation of scores of models it never had scored.

Kept in the node's context state for the run, by the digest of each fit's whole pipeline
(coefficients included) and its test partition.
"""

from __future__ import annotations

import hashlib
import json

from flwr.app import ConfigRecord, RecordDict

from fedrad.client.plan import Refused
from fedrad.common.config import StudyConfig
from fedrad.common.messages import Payload, Request, pipeline_digest

_STATE = "evaluated"


def _fit(part: Request) -> str:
    """Digest of one scored fit: its pipeline in full and the partition it was tested on."""
    pipeline = pipeline_digest(Payload(*part.pipeline.to_fields()))
    partition = json.dumps(part.partition, default=str, sort_keys=True)
    return hashlib.sha256(f"{pipeline}|{partition}".encode()).hexdigest()[:32]


class EvaluatedFits:
    """The digests of the fits this site has answered SCORES for in this study."""

    def __init__(self, state: RecordDict, study: StudyConfig):
        self.state, self.study = state, study
        record = state[_STATE] if _STATE in state else ConfigRecord()
        same = record.get("study") == study.study_hash
        self.fits: set[str] = set(json.loads(str(record["fits"]))) if same else set()

    def record(self, request: Request) -> None:
        """Remember every fit of a SCORES request this site answered."""
        self.fits |= {_fit(part) for part in request.parts}
        self.state[_STATE] = ConfigRecord(
            {"study": self.study.study_hash, "fits": json.dumps(sorted(self.fits))}
        )

    def check(self, request: Request) -> None:
        """Refuse a JOINT_SCORES request naming a fit this site has not scored."""
        unscored = [part for part in request.parts if _fit(part) not in self.fits]
        if unscored:
            raise Refused(
                "pipeline-not-evaluated",
                f"joint scores of {len(unscored)} fit(s) this site was never asked to score",
            )
