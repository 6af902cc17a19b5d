"""The fits this site has scored (SCORES), remembered so that a comparison's joint score
histograms (JOINT_SCORES) are answered only for pipelines it already evaluated, and once per
pair of model kinds: a curious aggregator cannot ask the cross-tabulation of scores of
models it never had scored, nor a second one for the same pair (docs/privacy.md 6).

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
        # pair of kinds -> digest of the joint request answered for it
        self.joint: dict[str, str] = json.loads(str(record["joint"])) if same else {}

    def record(self, request: Request) -> None:
        """Remember every fit of a SCORES request this site answered."""
        self.fits |= {_fit(part) for part in request.parts}
        self._save()

    def admit(self, request: Request) -> None:
        """Refuse a JOINT_SCORES request naming a fit this site has not scored, or a second
        one for a pair of kinds it answered already (the same request again, a retry after
        another site dropped out, is answered again); else remember it."""
        unscored = [part for part in request.parts if _fit(part) not in self.fits]
        if unscored:
            raise Refused(
                "pipeline-not-evaluated",
                f"joint scores of {len(unscored)} fit(s) this site was never asked to score",
            )
        pair = "|".join(sorted(str(part.values["model"]) for part in request.parts[:2]))
        asked = hashlib.sha256("|".join(map(_fit, request.parts)).encode()).hexdigest()[:32]
        if self.joint.setdefault(pair, asked) != asked:
            raise Refused("requests-per-fit-exceeded", f"a second joint-scores request for {pair}")
        self._save()

    def _save(self) -> None:
        self.state[_STATE] = ConfigRecord(
            {
                "study": self.study.study_hash,
                "fits": json.dumps(sorted(self.fits)),
                "joint": json.dumps(self.joint),
            }
        )
