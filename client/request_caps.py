"""How many times a site answers one fit: no more Newton iterations, line-search calls,
held-out losses or calibration steps than its study lets a fit take (docs/privacy.md 3).

A curious aggregator could otherwise ask a fit's sums at as many coefficient vectors as it
likes (nudged by 1e-15, say) and solve the cases back from them. The site counts, per
partition and role (message kind, partition with its inner fold, role), the distinct
coefficient vectors it was asked at under each pipeline, in its ledger over every run of the
study and of the site's cases (a site that corrects its table starts afresh, which no
aggregator can bring about), and refuses past the cap. A fit restarts under a new pipeline
only when a site leaves it (drops out, or sits the fit out), so a partition and role sees no
more pipelines than the study has sites that can leave, plus one (times the fits a partition
serves: under leave-one-site-out a training site's `all` serves every fold it trains in and
the final fit): a scaler nudged by 1e-12 buys no new cap. Asking the same vector under the
same pipeline again (a restart, or the same study run again, whose fits are deterministic)
costs nothing. Under differential privacy a noised fit's coefficients differ each run with
the noise; its privacy budget bounds the runs, and its cap the run.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from flwr.app import ConfigRecord, RecordDict

from fedrad.client.ledger import site_ledger
from fedrad.client.plan import Refused
from fedrad.common.config import StudyConfig
from fedrad.common.differential_privacy import NOISED
from fedrad.common.messages import Kind, Request, pipeline_digest, split_pipeline

L1_ITERATIONS = 100  # `lasso.fit_lasso_steps`'s most iterations per penalty
LINE_SEARCH_CALLS = 64  # halvings before a step is below the tolerance
# Without pinned site keys a site cannot count the study's sites: it allows this many
# sites to leave a fit (each restarts it under a new pipeline), all of a 3-site study's.
UNPINNED_DROP_OUTS = 2
UNPINNED_SITES = 3
_STATE = "caps"


def caps(study: StudyConfig) -> dict[str, int]:
    """The most distinct coefficient vectors one fit is asked at, per kind (and role, or
    inner fold): a tuned ridge fit's inner fold fits every penalty of the site's own grid."""
    iterations = study.newton_stopping[1]
    l1 = study.model.lasso_path_length * L1_ITERATIONS
    grid = len(study.model.ridge_lambdas)
    kinds = set(study.model_kinds)

    def cap(lasso: int, other: int) -> int:
        """An L1 fit's cap, another kind's, or comparing both their sum: a fold's ridge and
        L1 fits start from one pipeline, so their asks count as one fit's."""
        lasso_cap = lasso if "lasso-logistic" in kinds else 0
        return lasso_cap + (other if kinds - {"lasso-logistic"} else 0)

    return {
        Kind.NEWTON: cap(l1, iterations),
        f"{Kind.NEWTON}/inner": cap(l1, grid * iterations),
        Kind.LOSS: l1 * LINE_SEARCH_CALLS,
        f"{Kind.LOSS}/inner": l1 * LINE_SEARCH_CALLS,
        # a held-out loss per penalty of the path or grid
        f"{Kind.LOSS}/test": cap(study.model.lasso_path_length, grid),
        Kind.LAMBDA_MAX: 1,
        # the calibration line, and with recalibration that of the recalibrated scores
        Kind.CALIBRATION: iterations * (2 if study.recalibrates else 1),
    }


def pipelines(study: StudyConfig) -> int:
    """The most pipelines a partition and role is fitted under: one, and one more for each
    site that can leave its fit before too few are left (max(2, `min_sites`) for a masked
    total, `min_sites` in the clear)."""
    federation = study.federation
    if not federation.site_keys:
        return 1 + UNPINNED_DROP_OUTS
    fewest = max(2, federation.min_sites) if federation.secure_aggregation else federation.min_sites
    return 1 + max(0, len(federation.site_keys) - fewest)


def fits_sharing(study: StudyConfig, partitions: list) -> int:
    """How many of a study's fits one partition serves: under leave-one-site-out a training
    site's `all` is that of every fold it trains in and of the final fit, one per site (as
    many as the study pins, or a 3-site study's); else one."""
    if study.validation.scheme == "leave-one-site-out" and any(
        part is not None and part.scheme == "all" for part in partitions
    ):
        return len(study.federation.site_keys) or UNPINNED_SITES
    return 1


def _digest(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part, dtype=np.float64).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _asks(kind: Kind, request: Request) -> list[tuple[str, str, list]]:
    """(partition and role, pipeline:coefficient vector) of each capped part of a request,
    as digests, and the partitions they are over."""
    if kind is Kind.CALIBRATION:  # the fits' coefficients move the sums as gamma does
        fits = [split_pipeline(p.pipeline) for p in request.parts]
        partitions = [p.partition for p in request.parts]
        fixed = [pipeline_digest(f) for f, _ in fits]
        moving = [value for _, m in fits for _, value in sorted(m.arrays.items())]
        vector = _digest(request.arrays["gamma"], *moving)
        return [(f"{kind}|{_digest(partitions)}", f"{_digest(fixed)}:{vector}", partitions)]
    asks = []
    for part in request.parts if kind is Kind.LASSO_ROUND else [request]:
        part_kind = Kind(part.values["kind"]) if kind is Kind.LASSO_ROUND else kind
        role = str(part.values.get("role", "train"))
        inner = part.partition is not None and part.partition.inner is not None
        cap = (
            f"{part_kind}/test"
            if role == "test"
            else f"{part_kind}/inner"
            if inner
            else str(part_kind)
        )
        fixed, moving = split_pipeline(part.pipeline)
        vector = _digest(moving.arrays.get("beta", np.zeros(0)))
        fit = f"{cap}|{_digest(part.partition, role)}"
        asks.append((fit, f"{pipeline_digest(fixed)}:{vector}", [part.partition]))
    return asks


def _pipeline(vector: str) -> str:
    return vector.split(":")[0]


class RequestCaps:
    """The coefficient vectors this site has been asked at, per fit: in its ledger, or, for
    a noised fit, in its context state for the run."""

    def __init__(self, state: RecordDict, study: StudyConfig, cases: str = ""):
        """`cases`: the site's `SiteData.fingerprint`; the caps count per study and cases."""
        self.state, self.study, self.ledger = state, study, site_ledger(state)
        self.cases = cases
        record = state[_STATE] if _STATE in state else ConfigRecord()
        same_study = record.get("study") == study.study_hash
        self.in_run: dict[str, list[str]] = json.loads(str(record["asked"])) if same_study else {}

    def _lasting(self, cap: str) -> bool:
        """Whether a fit's asks count over every run (all but a noised fit's)."""
        return not (self.study.differential_privacy and cap.split("/")[0] in NOISED)

    def admit(self, kind: Kind, request: Request) -> None:
        """Record the request's asks, or refuse it if one takes a fit past its cap."""
        limits, most_pipelines = caps(self.study), pipelines(self.study)
        if kind not in limits and kind is not Kind.LASSO_ROUND:
            return
        lasting = self.ledger.current().asked
        new: dict[bool, list[list[str]]] = {True: [], False: []}
        for ask, vector, partitions in _asks(kind, request):
            fit = f"{ask}|{self.cases}"
            cap_name = fit.split("|")[0]
            kept = self._lasting(cap_name)
            vectors = [*(lasting if kept else self.in_run).get(fit, [])]
            vectors += [v for f, v in new[kept] if f == fit]
            if vector in vectors:
                continue
            under = [v for v in vectors if _pipeline(v) == _pipeline(vector)]
            cap = limits[cap_name]
            if len(under) >= cap:
                raise Refused(
                    "requests-per-fit-exceeded", f"{fit}: asked at more than {cap} coefficients"
                )
            allowed = most_pipelines * fits_sharing(self.study, partitions)
            if not under and len({_pipeline(v) for v in vectors}) >= allowed:
                raise Refused(
                    "requests-per-fit-exceeded",
                    f"{fit}: asked under more than {allowed} pipelines",
                )
            new[kept].append([fit, vector])
        if new[True]:
            self.ledger.record({"asked": new[True]})
        for fit, vector in new[False]:
            self.in_run.setdefault(fit, []).append(vector)
        self.state[_STATE] = ConfigRecord(
            {"study": self.study.study_hash, "asked": json.dumps(self.in_run)}
        )
