"""The study protocol the aggregator drives: census, standardization, Newton, evaluation.

Each phase sends one message per site through a Flower `Grid` and combines the
replies with the plain functions of `fedrad.common`. A site that errs, times out or
sends a malformed or non-finite update is named and set aside; the fit restarts
without it so the model is always exactly the pooled fit of the sites it names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedrad.common.config import StudyConfig
from fedrad.common.logistic import LogisticFit, NewtonTerms, fit_newton, sum_terms
from fedrad.common.metrics import ConfusionCounts, histogram_auc, wilson_interval
from fedrad.common.moments import Moments, Standardizer, pool_moments


class SiteFailed(Exception):
    """A site's reply is missing, an error, or malformed; the message names the site."""

    def __init__(self, node_id: int, reason: str):
        super().__init__(reason)
        self.node_id = node_id


class ProtocolError(RuntimeError):
    """The study cannot go on (e.g. no usable site remains)."""


@dataclass
class SiteRecord:
    node_id: int
    name: str = ""
    status: str = "pending"
    reason: str = ""
    cases: dict[str, dict[str, str]] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name or f"node {self.node_id}"

    def set_aside(self, status: str, reason: str) -> None:
        self.status, self.reason = status, reason


class StudyProtocol:
    """Runs one study over the nodes of a grid and returns its results dict."""

    def __init__(
        self,
        grid: Grid,
        study: StudyConfig,
        expected_sites: int | None = None,
        log: Callable[[str], None] = print,
    ):
        self.grid = grid
        self.study = study
        self.settings = study.federation
        self.expected_sites = expected_sites or self.settings.min_sites
        self.log = log
        self.sites: dict[int, SiteRecord] = {}
        self.rounds: list[dict] = []

    # -- messaging --------------------------------------------------------------------
    def _ask_each(
        self, nodes: list[int], message_type: str, content: RecordDict
    ) -> tuple[dict[int, Message], dict[int, str]]:
        """Send to `nodes`; return (replies with content, reason per node without one)."""
        messages = [Message(content, dst_node_id=n, message_type=message_type) for n in nodes]
        replies = self.grid.send_and_receive(messages, timeout=self.settings.round_timeout_s)
        by_node = {reply.metadata.src_node_id: reply for reply in replies}
        ok, failed = {}, {}
        for node in nodes:
            reply = by_node.get(node)
            if reply is None:
                failed[node] = f"no reply to {message_type} within the timeout"
            elif reply.has_error():
                failed[node] = f"{message_type} failed at the site: {reply.error.reason}"
            else:
                ok[node] = reply
        return ok, failed

    def _ask(self, nodes: list[int], message_type: str, content: RecordDict) -> dict[int, Message]:
        """Like `_ask_each`, but a site that did not reply raises `SiteFailed` naming it."""
        replies, failed = self._ask_each(nodes, message_type, content)
        for node, reason in failed.items():
            raise SiteFailed(node, reason)
        return replies

    # -- phases -----------------------------------------------------------------------
    def wait_for_sites(self, timeout_s: float = 120.0) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = sorted(self.grid.get_node_ids())
            if len(nodes) >= self.expected_sites or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if len(nodes) < self.settings.min_sites:
            raise ProtocolError(
                f"only {len(nodes)} site(s) connected, the study needs {self.settings.min_sites}"
            )
        self.sites = {node: SiteRecord(node) for node in nodes}
        return nodes

    def census(self) -> list[str]:
        """Ask every site who it is and what it has; refuse sites that do not match the study."""
        replies, failed = self._ask_each(list(self.sites), "query.census", RecordDict())
        for node, reason in failed.items():
            self.sites[node].set_aside("failed", reason)
        classes = self.settings.classes
        for node, reply in replies.items():
            record = reply.content["census"]
            site = self.sites[node]
            site.name = str(record["site"])
            site.features = list(record["features"])
            site.cases = {
                label: {part: str(record[f"{part}.{label}"]) for part in ("train", "test")}
                for label in classes
            }
            if record["extraction-hash"] != self.study.extraction_hash:
                site.set_aside(
                    "refused",
                    f"extraction hash {record['extraction-hash']} differs from the study's "
                    f"{self.study.extraction_hash}: re-extract with the study config",
                )
            elif record["study-hash"] != self.study.study_hash:
                site.set_aside("refused", "study settings differ from the aggregator's study")
            else:
                site.status = "included"
        included = self._included()
        if not included:
            raise ProtocolError("no site passed the census: " + self._reasons())
        features = sorted(set.intersection(*(set(self.sites[n].features) for n in included)))
        if not features:
            raise ProtocolError("the included sites share no feature")
        for site in sorted((self.sites[n] for n in included), key=lambda site: site.label):
            self.log(f"census: {site.label} {site.cases}")
        return features

    def standardize(self, nodes: list[int], features: list[str]) -> tuple[Standardizer, list[int]]:
        content = RecordDict({"config": ConfigRecord({"features": features})})
        replies = self._ask(nodes, "query.moments", content)
        parts, contributors = [], []
        for node, reply in replies.items():
            if "skipped" in reply.content:
                self.log(f"moments: {self.sites[node].label} skipped: {_skip_reason(reply)}")
                continue
            arrays = reply.content["moments"]
            mean, m2 = arrays["mean"].numpy(), arrays["m2"].numpy()
            n = int(reply.content["metrics"]["n"])
            _check_finite(node, (len(features),), mean=mean, m2=m2)
            parts.append(Moments(n=n, mean=mean, m2=m2))
            contributors.append(node)
        if not parts:
            raise ProtocolError("no site has enough training cases to contribute")
        return Standardizer.from_moments(pool_moments(parts)), contributors

    def fit(self, nodes: list[int], features: list[str], standardizer: Standardizer) -> LogisticFit:
        n_params = len(features) + 1

        def summed_terms(beta: np.ndarray) -> NewtonTerms:
            content = _model_content(features, standardizer, beta)
            replies = self._ask(nodes, "train.newton", content)
            terms = []
            for node in nodes:
                reply = replies[node]
                if "skipped" in reply.content:
                    raise SiteFailed(node, f"stopped contributing: {_skip_reason(reply)}")
                arrays, metrics = reply.content["terms"], reply.content["metrics"]
                gradient, hessian = arrays["gradient"].numpy(), arrays["hessian"].numpy()
                deviance = np.array(float(metrics["deviance"]))
                _check_finite(node, (n_params,), gradient=gradient)
                _check_finite(node, (n_params, n_params), hessian=hessian)
                _check_finite(node, (), deviance=deviance)
                terms.append(NewtonTerms(gradient, hessian, float(deviance), int(metrics["n"])))
            return sum_terms(terms)

        def record(iteration: int, deviance: float) -> None:
            self.rounds.append({"phase": "newton", "iteration": iteration, "deviance": deviance})
            self.log(f"newton iteration {iteration}: penalized deviance {deviance:.6f}")

        return fit_newton(
            summed_terms,
            n_params,
            ridge_lambda=self.settings.ridge_lambda,
            tolerance=self.settings.newton_tolerance,
            max_iterations=self.settings.max_newton_iterations,
            on_iteration=record,
        )

    def evaluate(self, features: list[str], standardizer: Standardizer, beta: np.ndarray) -> dict:
        nodes = self._included()
        replies, failed = self._ask_each(
            nodes, "evaluate", _model_content(features, standardizer, beta)
        )
        bins = self.settings.histogram_bins
        positives, negatives = np.zeros(bins), np.zeros(bins)
        total = ConfusionCounts(0, 0, 0, 0)
        per_site: dict[str, dict] = {}
        strata = []
        for node, reason in failed.items():
            per_site[self.sites[node].label] = {"status": "failed", "reason": reason}
        for node, reply in replies.items():
            name = self.sites[node].label
            if "skipped" in reply.content:
                per_site[name] = {"status": "skipped", "reason": _skip_reason(reply)}
                continue
            arrays, metrics = reply.content["histograms"], reply.content["metrics"]
            site_pos, site_neg = arrays["positives"].numpy(), arrays["negatives"].numpy()
            try:
                _check_finite(node, (bins,), positives=site_pos, negatives=site_neg)
            except SiteFailed as exc:
                per_site[name] = {"status": "failed", "reason": str(exc)}
                continue
            counts = ConfusionCounts(*(int(metrics[key]) for key in ("tp", "fn", "tn", "fp")))
            positives, negatives, total = positives + site_pos, negatives + site_neg, total + counts
            per_site[name] = {
                "status": "evaluated",
                "auc": float(metrics["local-auc"]) if "local-auc" in metrics else None,
                "sensitivity": counts.sensitivity,
                "specificity": counts.specificity,
                "balanced_accuracy": counts.balanced_accuracy,
            }
            if "local-auc" in metrics:
                strata.append((float(metrics["local-auc"]), site_pos.sum() * site_neg.sum()))
        return {
            "federated": _pooled_metrics(positives, negatives, total, strata),
            "per_site": per_site,
        }

    # -- driver -----------------------------------------------------------------------
    def run(self) -> dict:
        self.wait_for_sites()
        features = self.census()
        while True:
            nodes = self._included()
            if not nodes:
                raise ProtocolError("every site dropped out: " + self._reasons())
            try:
                standardizer, contributors = self.standardize(nodes, features)
                fit = self.fit(contributors, features, standardizer)
                break
            except SiteFailed as failure:
                site = self.sites[failure.node_id]
                site.set_aside("dropped", str(failure))
                self.log(f"{site.label} set aside ({failure}); restarting the fit without it")
                self.rounds.clear()
        metrics = self.evaluate(features, standardizer, fit.beta)
        return self._results(features, fit, metrics)

    def _included(self) -> list[int]:
        return [node for node, site in self.sites.items() if site.status == "included"]

    def _reasons(self) -> str:
        return "; ".join(f"{s.label}: {s.reason}" for s in self.sites.values() if s.reason)

    def _results(self, features: list[str], fit: LogisticFit, metrics: dict) -> dict:
        return {
            "study": {
                "name": self.study.name,
                "extraction_hash": self.study.extraction_hash,
                "study_hash": self.study.study_hash,
                "config": self.study.model_dump(mode="json"),
            },
            "sites": [
                {"name": s.label, "status": s.status, "reason": s.reason, "cases": s.cases}
                for s in sorted(self.sites.values(), key=lambda site: site.label)
            ],
            "metrics": metrics,
            "model": {
                "kind": "ridge-logistic-regression",
                "ridge_lambda": self.settings.ridge_lambda,
                "scale": "coefficients act on features standardized with the pooled "
                "training mean and standard deviation",
                "iterations": fit.iterations,
                "converged": fit.converged,
                "intercept": float(fit.beta[0]),
                "coefficients": dict(zip(features, map(float, fit.beta[1:]), strict=True)),
            },
            "rounds": list(self.rounds),
        }


def _model_content(features: list[str], standardizer: Standardizer, beta: np.ndarray) -> RecordDict:
    return RecordDict(
        {
            "model": ArrayRecord(
                {
                    "beta": Array(np.asarray(beta, dtype=np.float64)),
                    "mean": Array(standardizer.mean),
                    "scale": Array(standardizer.scale),
                }
            ),
            "config": ConfigRecord({"features": features}),
        }
    )


def _skip_reason(reply: Message) -> str:
    return str(reply.content["skipped"]["reason"])


def _check_finite(node: int, shape: tuple[int, ...], **arrays: np.ndarray) -> None:
    for name, array in arrays.items():
        if array.shape != shape:
            raise SiteFailed(node, f"malformed update: {name} has shape {array.shape}, not {shape}")
        if not np.all(np.isfinite(array)):
            raise SiteFailed(node, f"non-finite values in {name}")


def _pooled_metrics(
    positives: np.ndarray,
    negatives: np.ndarray,
    counts: ConfusionCounts,
    strata: list[tuple[float, float]],
) -> dict:
    auc = histogram_auc(positives, negatives)
    weights = sum(weight for _, weight in strata)
    return {
        "auc": auc.auc,
        "auc_error_bound": auc.error_bound,
        "auc_ci": list(auc.confidence_interval()),
        "site_stratified_auc": (
            sum(a * w for a, w in strata) / weights if weights else float("nan")
        ),
        "sensitivity": counts.sensitivity,
        "sensitivity_ci": list(wilson_interval(counts.tp, counts.tp + counts.fn)),
        "specificity": counts.specificity,
        "specificity_ci": list(wilson_interval(counts.tn, counts.tn + counts.fp)),
        "balanced_accuracy": counts.balanced_accuracy,
        "n_positive": int(positives.sum()),
        "n_negative": int(negatives.sum()),
    }
