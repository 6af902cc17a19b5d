"""The aggregator's view of its sites, and the one failure policy every phase shares.

`GridTransport` moves payloads as Flower messages and counts the bytes each way.
`Federation` asks sites for one message kind and returns their decoded replies: every
reply passes the wire contract's validator, and a site that errs, times out, skips, or
sends a malformed or non-finite reply is handled the same way in every phase
(`Federation.without_failures`): named, set aside (or, for a skip, left out of this fit
only), recorded once, and the computation restarts without it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.superlink.grid.http_grid import HttpGrid  # the deployed grid (not exported)

from fedrad.common import relayed_release
from fedrad.common.differential_privacy import NOISED, Budget, post_processed
from fedrad.common.messages import (
    MESSAGE_TYPES,
    PIPELINE_UNKNOWN,
    REFUSED,
    SITE_ERROR,
    SKIPPED,
    SUMMED,
    Kind,
    MalformedReply,
    MlpRoundSums,
    Payload,
    Request,
    decode_masked,
    decode_reply,
    encode_request,
    from_record,
    payload_to_bytes,
    summed,
    to_record,
)
from fedrad.common.models import mlp
from fedrad.common.relayed_release import RelayedRelease
from fedrad.server.observer import StudyObserver

T = TypeVar("T")
P = TypeVar("P", "SiteFailed", "SiteSkippedFit")

PULL_INTERVAL_S = 0.2


class SiteFailed(Exception):
    """A site's reply is missing, an error, or malformed; the message names the site.
    `also` holds the other sites that failed in the same round, so all are set aside at
    once (the study waits out a round's timeout once, not once per silent site)."""

    def __init__(self, node_id: int, reason: str):
        super().__init__(reason)
        self.node_id = node_id
        self.also: list[SiteFailed] = []


class SiteSkippedFit(Exception):
    """A site cannot contribute to this fit (e.g. too few cases of a class in it); `also`
    holds the other sites that sat out the same round, so all leave the fit at once."""

    def __init__(self, node_id: int, reason: str):
        super().__init__(reason)
        self.node_id = node_id
        self.also: list[SiteSkippedFit] = []


class StudyCannotRun(RuntimeError):
    """The study cannot go on; the message names which sites and which rule."""


@dataclass
class SiteRecord:
    node_id: int
    name: str = ""
    status: str = "pending"
    reason: str = ""
    cases: dict[str, str] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    sequences_missing: list[str] = field(default_factory=list)
    extraction_hash: str = ""
    versions: list[str] = field(default_factory=list)  # "name=version" of its extractors

    @property
    def label(self) -> str:
        return self.name or f"node {self.node_id}"

    def set_aside(self, status: str, reason: str) -> None:
        self.status, self.reason = status, reason


Replies = tuple[dict[int, Payload], dict[int, str]]


class GridTransport:
    """One message per node, replies collected with a timeout; bytes counted both ways."""

    def __init__(self, grid: Grid, timeout_s: float):
        self.grid = grid
        self.timeout_s = timeout_s
        self.traffic: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.traffic_to_sites: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.rounds: dict[str, int] = defaultdict(int)

    def wait_for_nodes(self, expected: int, timeout_s: float) -> list[int]:
        """The connected nodes, once `expected` are there or the timeout passed."""
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = sorted(self.grid.get_node_ids())
            if len(nodes) >= expected or time.monotonic() > deadline:
                return nodes
            time.sleep(0.5)

    def ask(self, kind: Kind, requests: dict[int, Payload]) -> Replies:
        """Send each node its payload; return (replies, reason per silent node)."""
        messages = [
            Message(to_record(payload), dst_node_id=node, message_type=MESSAGE_TYPES[kind])
            for node, payload in requests.items()
        ]
        for node, payload in requests.items():
            self.traffic_to_sites[kind][node] += payload.size_bytes
        self.rounds[kind] += 1
        return self.collect(kind, list(requests), self.exchange(messages))

    def exchange(self, messages: list[Message]) -> list[Message]:
        """Send and collect replies until all are in or the timeout passed. A deployed
        grid is polled every `PULL_INTERVAL_S` rather than Flower's 3 s, which a study of
        hundreds of messages would otherwise wait through on every one."""
        if not isinstance(self.grid, HttpGrid):
            return list(self.grid.send_and_receive(messages, timeout=self.timeout_s))
        sent = dict(zip(self.grid.push_messages(messages), messages, strict=True))
        waiting = set(sent)
        deadline, received = time.monotonic() + self.timeout_s, []
        while waiting and time.monotonic() < deadline:
            replies = list(self.grid.pull_messages(waiting))
            received += [_from_its_node(r, sent[r.metadata.reply_to_message_id]) for r in replies]
            waiting -= {reply.metadata.reply_to_message_id for reply in replies}
            if waiting:
                time.sleep(PULL_INTERVAL_S)
        return received

    def collect(self, kind: Kind, nodes: Iterable[int], received: Iterable[Message]) -> Replies:
        by_node = {reply.metadata.src_node_id: reply for reply in received}
        replies, failed = {}, {}
        for node in nodes:
            reply = by_node.get(node)
            if reply is None:
                failed[node] = f"no reply to {kind} within {self.timeout_s:g} s"
            elif reply.has_error() and reply.error.code == ErrorCode.NODE_UNAVAILABLE:
                failed[node] = f"no reply to {kind}: the site went offline (no heartbeat)"
            elif reply.has_error():
                failed[node] = f"{kind} failed at the site: {reply.error.reason}"
            else:
                replies[node] = from_record(reply.content)
                self.traffic[kind][node] += replies[node].size_bytes
        return replies, failed


class Federation:
    """The sites of one study, asked through one validator and one failure policy."""

    def __init__(self, transport: GridTransport, log: Callable[[str], None] = print):
        self.transport = transport
        self.log = log
        self.sites: dict[int, SiteRecord] = {}
        self.events: list[dict] = []
        self._known: dict[int, tuple[str, ...]] = defaultdict(tuple)  # what each site holds
        self.secure = None  # the study's SecureAggregation, once its keys are exchanged
        self.budget: Budget | None = None  # under differential privacy, what it has spent
        self.observer = StudyObserver()  # told of every event as it is recorded

    # -- asking ---------------------------------------------------------------------------------
    def ask(
        self,
        kind: Kind,
        requests: dict[int, Request],
        check: Callable[[Any], str | None] | None = None,
    ) -> dict[int, Any]:
        """Each node's decoded reply to its request. Raises SiteFailed for a silent, erring or
        malformed reply (or one `check` rejects), SiteSkippedFit for a site sitting it out."""
        decoded, problems = self.gather(kind, requests, check)
        failures = [p for p in problems.values() if isinstance(p, SiteFailed)]
        if failures:
            raise _together(failures)
        if problems:
            raise _together(list(problems.values()))
        return decoded

    def gather(
        self,
        kind: Kind,
        requests: dict[int, Request],
        check: Callable[[Any], str | None] | None = None,
    ) -> tuple[dict[int, Any], dict[int, SiteFailed | SiteSkippedFit]]:
        """(decoded replies, the problem of each other node), in one round."""
        payloads = {}
        for node, request in requests.items():
            payloads[node], self._known[node] = encode_request(request, self._known[node])
        replies, failed = self.transport.ask(kind, payloads)
        resend = [node for node, reply in replies.items() if PIPELINE_UNKNOWN in reply.values]
        if resend:  # the site lost its cache (a new process): send the pipeline in full
            again = {}
            for node in resend:
                again[node], self._known[node] = encode_request(requests[node], ())
            more, more_failed = self.transport.ask(kind, again)
            replies |= more
            failed |= more_failed
        problems: dict[int, SiteFailed | SiteSkippedFit] = {
            node: SiteFailed(node, reason) for node, reason in failed.items()
        }
        decoded = {}
        for node, reply in replies.items():
            try:
                decoded[node] = self.validate(node, kind, reply, check)
            except (SiteFailed, SiteSkippedFit) as problem:
                problems[node] = problem
        return decoded, problems

    def validate(self, node: int, kind: Kind, reply: Payload, check=None) -> Any:
        """The one validator of every reply: a refusal, an error or a skip raises (SiteFailed,
        SiteSkippedFit); a result passes the wire contract's check, then the phase's."""
        if REFUSED in reply.values or SITE_ERROR in reply.values:
            raise SiteFailed(node, _declined(kind, reply))
        if SKIPPED in reply.values:
            raise SiteSkippedFit(node, str(reply.values[SKIPPED]))
        try:
            if kind in SUMMED and "words" in reply.arrays:
                return decode_masked(kind, reply)  # checked once unmasked, as a total
            value = decode_reply(kind, reply)
        except MalformedReply as exc:
            raise SiteFailed(node, f"malformed update: {exc}") from exc
        problem = check(value) if check is not None else None
        if problem:
            raise SiteFailed(node, f"malformed update: {problem}")
        return value

    def total(
        self,
        kind: Kind,
        requests: dict[int, Request],
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """The reply of a SUMMED kind added up over the requested sites: unmasked from masked
        replies under secure aggregation (the aggregator never holds one site's), else
        summed from the sites' replies. Raises as `ask` does. A noised kind is charged to
        the privacy budget when asked (an attempt a site drops out of counts too)."""
        noised = self.charge(kind)
        if noised and check is not None:  # the rules hold of the total as read: post-processed
            check = _after(post_processed, check)
        if self.secure is not None:
            total = self.secure.total(kind, requests, check)
        else:
            total = summed(self.ask(kind, requests, check).values())
        return post_processed(total) if noised else total

    def charge(self, kind: Kind) -> bool:
        """Charge one release of `kind` to the privacy budget, if it is a noised one; stop
        the study instead if it would pass differential_privacy.max_epsilon."""
        if self.budget is None or kind not in NOISED:
            return False
        if not self.budget.allows():
            raise StudyCannotRun(
                f"{kind}: one more noised release would take epsilon past "
                f"differential_privacy.max_epsilon ({self.budget.releases} released, "
                f"epsilon {self.budget.epsilon:.3g})"
            )
        self.budget.spend()
        return True

    @property
    def fewest_sites(self) -> int:
        """The fewest sites a total may be over: max(2, min_sites) under secure aggregation;
        in the clear every site's reply is read anyway."""
        return self.secure.min_sites if self.secure is not None else 1

    def strategy_grid(self, nodes: list[int], request: Request) -> Grid:
        """The grid a Flower strategy trains on: only `nodes`, each sent `request` in its
        round config, every reply through the validator."""
        return _PolicyGrid(self, nodes, request)

    # -- the failure policy ---------------------------------------------------------------------
    def without_failures(
        self, tag: str, nodes: list[int], attempt: Callable[[list[int]], T]
    ) -> tuple[T, dict[str, str]]:
        """`attempt(nodes)`, restarted without each site that skips (left out of this
        computation, named) or fails (set aside for the rest of the study); returns its
        result and the sites left out, with why."""
        excluded: dict[str, str] = {}
        nodes = list(nodes)
        minimum = self.secure.min_sites if self.secure is not None else 1
        while True:
            nodes = [node for node in nodes if self.sites[node].status == "included"]
            if not nodes:
                raise StudyCannotRun(f"{tag}: no site can contribute ({self.reasons(excluded)})")
            if len(nodes) < minimum:
                alone = ", ".join(self.label(node) for node in nodes)
                raise StudyCannotRun(
                    f"{tag}: no site can contribute but {alone}, and a total needs "
                    f"{minimum} sites (federation.min_sites) ({self.reasons(excluded)})"
                )
            try:
                return attempt(nodes), excluded
            except SiteSkippedFit as skip:
                for one in (skip, *skip.also):
                    label = self.sites[one.node_id].label
                    excluded[label] = str(one)
                    self.record("left out", label, f"{tag}: {one}")
                    nodes.remove(one.node_id)
            except SiteFailed as failure:
                self.set_aside(failure, tag)

    def set_aside(self, failure: SiteFailed, tag: str) -> None:
        """Set the failed site aside for the rest of the study (and every other site that
        failed in the same round): its status says where (`tag`) and why."""
        for one in (failure, *failure.also):
            site = self.sites[one.node_id]
            if site.status == "dropped":
                continue
            site.set_aside("dropped", f"{tag}: {one}")
            self.record("set aside", site.label, f"{tag}: {one}")

    def record(self, event: str, site: str, reason: str) -> None:
        """One entry per event, logged once, and told to the study's observer."""
        entry = {"event": event, "site": site, "reason": reason}
        self.events.append(entry)
        self.observer.event(entry)
        restart = "; the computation restarts without it" if event != "refused" else ""
        self.log(f"{site} {event} ({reason}){restart}")

    # -- the sites ------------------------------------------------------------------------------
    def included(self) -> list[int]:
        return [node for node, site in self.sites.items() if site.status == "included"]

    def label(self, node: int) -> str:
        return self.sites[node].label

    def reasons(self, excluded: dict[str, str] | None = None) -> str:
        """Why each site is out: set aside for the study, or left out of this computation."""
        parts = [f"{s.label}: {s.reason}" for s in self.sites.values() if s.reason]
        parts += [f"{label}: {reason}" for label, reason in (excluded or {}).items()]
        return "; ".join(parts) or "no site connected"

    def traffic(self) -> dict:
        """Bytes per message kind and site, from sites and to them, and rounds per kind."""

        def by_label(traffic):
            return {
                str(kind): {self.label(node): size for node, size in sorted(sizes.items())}
                for kind, sizes in traffic.items()
            }

        return {
            "traffic_bytes_from_sites": by_label(self.transport.traffic),
            "traffic_bytes_to_sites": by_label(self.transport.traffic_to_sites),
            "round_counts": {str(kind): n for kind, n in self.transport.rounds.items()},
        }


def _from_its_node(reply: Message, message: Message) -> Message:
    """The reply as from the node `message` went to: for a node gone offline the SuperLink
    answers itself, an error from its own node id, which would leave the site's reply
    missing and its reason a wrong one ("no reply within the timeout")."""
    if reply.metadata.src_node_id == message.metadata.dst_node_id or not reply.has_error():
        return reply
    return Message(reply.error, reply_to=message)


def _together(problems: list[P]) -> P:
    """The first problem of a round, carrying the others of its kind (`also`)."""
    first, *others = problems
    first.also = others
    return first


def _after(first: Callable[[Any], Any], check: Callable[[Any], str | None]):
    return lambda value: check(first(value))


class _PolicyGrid(Grid):
    """A grid for a Flower strategy: shows only some nodes, puts each node's own encoded
    request in the round config, and passes every reply through the federation's validator
    (a skip or failure leaves the strategy as SiteSkippedFit / SiteFailed)."""

    def __init__(self, federation: Federation, nodes: list[int], request: Request):
        self.federation = federation
        self.grid = federation.transport.grid
        self.nodes = list(nodes)
        self.request = request
        self.relayed: RelayedRelease | None = None  # the last round's release, to relay

    def set_run(self, run) -> None:
        self.grid.set_run(run)

    @property
    def run(self):
        return self.grid.run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def push_messages(self, messages):
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids):
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout=None):
        federation, transport, kind = self.federation, self.federation.transport, Kind.MLP_ROUND
        messages = list(messages)
        if not messages:  # the strategy's evaluate round sends nothing
            return []
        if federation.secure is not None:
            return [self._mean_of_total(messages)]
        federation.charge(kind)
        received = self._send(messages, timeout)
        replies, failed = transport.collect(
            kind, [m.metadata.dst_node_id for m in messages], received
        )
        lost = [node for node, reply in replies.items() if PIPELINE_UNKNOWN in reply.values]
        if lost:  # a site that lost its cache (a new process): once more, the pipeline in full
            for node in lost:
                federation._known[node] = ()
            again = [_copy(m) for m in messages if m.metadata.dst_node_id in lost]
            more = self._send(again, timeout)
            more_replies, more_failed = transport.collect(kind, lost, more)
            received = [m for m in received if m.metadata.src_node_id not in lost] + more
            replies |= more_replies
            failed |= more_failed
        failures = [SiteFailed(node, reason) for node, reason in failed.items()]
        skips = []
        for node, reply in replies.items():
            try:
                federation.validate(node, kind, reply)
            except SiteFailed as failure:
                failures.append(failure)
            except SiteSkippedFit as skip:
                skips.append(skip)
        if failures:
            raise _together(failures)
        if skips:
            raise _together(skips)
        return received

    def _mean_of_total(self, messages: list[Message]) -> Message:
        """Under secure aggregation: the round as one release (each site's weights and loss
        times its case count, masked), handed to the strategy as ONE reply holding the
        weighted mean, so FedAvg / FedProx compute the global weights they would from every
        site's reply, and the aggregator never holds a site's own."""
        first = messages[0]  # a strategy sends every site the same weights and config
        weights = {name: array.numpy() for name, array in first.content["arrays"].items()}
        config = {k: v for k, v in first.content["config"].items() if k in _ROUND_CONFIG}
        request = replace(
            self.request,
            pipeline=replace(self.request.pipeline, network=weights),
            values={**self.request.values, **config},
        )
        if self.relayed is not None:  # what these weights were averaged from, to verify
            request = relayed_release.attach(request, self.relayed)
        size = mlp.flat(weights).size

        def shaped(total: MlpRoundSums) -> str | None:
            if total.weights.shape != (size,):
                return f"weights have shape {total.weights.shape}, not {(size,)}"
            return None if total.num_examples > 0 else "no training cases"

        nodes = [message.metadata.dst_node_id for message in messages]
        total = self.federation.total(Kind.MLP_ROUND, {n: request for n in nodes}, shaped)
        secure = self.federation.secure
        if secure.study.model.strategy in relayed_release.VERIFIED_STRATEGIES:
            self.relayed = secure.last
        mean = total.mean(weights)
        content = RecordDict(
            {
                "arrays": ArrayRecord({name: Array(v) for name, v in mean.weights.items()}),
                "metrics": MetricRecord(
                    {"num-examples": mean.num_examples, "train-loss": mean.train_loss}
                ),
            }
        )
        return Message(content, reply_to=first)

    def _send(self, messages: list[Message], timeout) -> list[Message]:
        federation, transport, kind = self.federation, self.federation.transport, Kind.MLP_ROUND
        for message in messages:
            node = message.metadata.dst_node_id
            payload, federation._known[node] = encode_request(self.request, federation._known[node])
            message.content["config"]["request"] = payload_to_bytes(payload)
            weights = sum(array.numpy().nbytes for array in message.content["arrays"].values())
            transport.traffic_to_sites[kind][node] += payload.size_bytes + weights
        transport.rounds[kind] += 1
        return transport.exchange(messages)


# What of a strategy's round config a site reads (FedProx's mu; the round, for its seed).
_ROUND_CONFIG = ("server-round", "proximal-mu")


def _declined(kind: Kind, reply: Payload) -> str:
    """Why a site answered without a result: a refusal's code, or its own error."""
    if REFUSED in reply.values:
        return f"refused {kind} as outside its plan ({reply.values[REFUSED]})"
    return f"{kind} failed at the site ({reply.values[SITE_ERROR]}; the details are in its log)"


def _copy(message: Message) -> Message:
    return Message(
        message.content,
        dst_node_id=message.metadata.dst_node_id,
        message_type=message.metadata.message_type,
    )
