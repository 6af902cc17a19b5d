"""How protocol requests reach sites: over a Flower Grid, or straight into site code.

The protocol speaks in `Payload`s; a transport delivers one request per node and
returns each node's reply or the reason there is none. `LocalTransport` runs the
same site handlers in-process, which is how the pooled reference is computed with
the very code the federation runs.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import defaultdict

from flwr.app import Message
from flwr.serverapp import Grid

from fedrad.client.site import SiteData, handle
from fedrad.common.config import StudyConfig
from fedrad.common.messages import MESSAGE_TYPES, from_record, to_record
from fedrad.common.pipeline import Payload

Requests = dict[int, tuple[str, Payload]]
Replies = tuple[dict[int, Payload], dict[int, str]]


class Transport(ABC):
    """Delivers requests and keeps count of what each site sent back, per request kind."""

    def __init__(self) -> None:
        self.traffic: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))

    def _count(self, kind: str, node: int, reply: Payload) -> Payload:
        self.traffic[kind][node] += reply.size_bytes
        return reply

    @abstractmethod
    def wait_for_nodes(self, expected: int, timeout_s: float) -> list[int]:
        """The connected nodes, once `expected` are there or the timeout passed."""

    @abstractmethod
    def ask(self, requests: Requests) -> Replies:
        """Send each node its (kind, payload); return (replies, reason per silent node)."""


class GridTransport(Transport):
    """Flower's Message API: one message per node, replies collected with a timeout."""

    def __init__(self, grid: Grid, timeout_s: float):
        super().__init__()
        self.grid = grid
        self.timeout_s = timeout_s

    def wait_for_nodes(self, expected: int, timeout_s: float) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = sorted(self.grid.get_node_ids())
            if len(nodes) >= expected or time.monotonic() > deadline:
                return nodes
            time.sleep(0.5)

    def ask(self, requests: Requests) -> Replies:
        messages = [
            Message(to_record(payload), dst_node_id=node, message_type=MESSAGE_TYPES[kind])
            for node, (kind, payload) in requests.items()
        ]
        received = self.grid.send_and_receive(messages, timeout=self.timeout_s)
        by_node = {reply.metadata.src_node_id: reply for reply in received}
        replies, failed = {}, {}
        for node, (kind, _) in requests.items():
            reply = by_node.get(node)
            if reply is None:
                failed[node] = f"no reply to {kind} within {self.timeout_s:g} s"
            elif reply.has_error():
                failed[node] = f"{kind} failed at the site: {reply.error.reason}"
            else:
                replies[node] = self._count(kind, node, from_record(reply.content))
        return replies, failed


class LocalTransport(Transport):
    """Site handlers called directly, for pooled references and in-process comparisons."""

    def __init__(self, sites: list[SiteData], study: StudyConfig):
        super().__init__()
        self.sites = dict(enumerate(sites, start=1))
        self.study = study

    def wait_for_nodes(self, expected: int, timeout_s: float) -> list[int]:
        return list(self.sites)

    def ask(self, requests: Requests) -> Replies:
        return {
            node: self._count(kind, node, handle(kind, self.sites[node], self.study, payload))
            for node, (kind, payload) in requests.items()
        }, {}
