"""How the aggregator reaches sites: protocol requests as Flower messages over a Grid.

The protocol speaks in `Payload`s; the transport sends each node its request as a
Flower message and returns each node's reply or the reason there is none, counting
the bytes every site sends. `NodeSubset` lets a Flower strategy (which samples from
every connected node) train on the training sites of one fit.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid

from fedrad.common.messages import MESSAGE_TYPES, from_record, to_record
from fedrad.common.pipeline import Payload

Requests = dict[int, tuple[str, Payload]]
Replies = tuple[dict[int, Payload], dict[int, str]]


class GridTransport:
    """One message per node, replies collected with a timeout."""

    def __init__(self, grid: Grid, timeout_s: float):
        self.grid = grid
        self.timeout_s = timeout_s
        self.traffic: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))

    def wait_for_nodes(self, expected: int, timeout_s: float) -> list[int]:
        """The connected nodes, once `expected` are there or the timeout passed."""
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = sorted(self.grid.get_node_ids())
            if len(nodes) >= expected or time.monotonic() > deadline:
                return nodes
            time.sleep(0.5)

    def ask(self, requests: Requests) -> Replies:
        """Send each node its (kind, payload); return (replies, reason per silent node)."""
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
                replies[node] = from_record(reply.content)
                self.traffic[kind][node] += replies[node].size_bytes
        return replies, failed


class NodeSubset(Grid):
    """A grid that shows only some nodes of another grid."""

    def __init__(self, grid: Grid, node_ids: Iterable[int]):
        self.grid = grid
        self.node_ids = list(node_ids)

    def set_run(self, run) -> None:
        self.grid.set_run(run)

    @property
    def run(self):
        return self.grid.run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)

    def push_messages(self, messages):
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids):
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout=None):
        return self.grid.send_and_receive(messages, timeout=timeout)
