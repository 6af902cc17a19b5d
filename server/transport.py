"""How protocol requests reach sites: Flower messages over a Grid.

The protocol speaks in `Payload`s; the transport sends each node its request as a
Flower message and returns each node's reply or the reason there is none, counting
the bytes every site sends. `in_process_transport` runs the sites' ClientApps in
this process through the same messages: it is how the pooled reference and the
comparison arms are computed with the very code a federation runs.
"""

from __future__ import annotations

import time
from collections import defaultdict

from flwr.app import Message
from flwr.serverapp import Grid

from fedrad.client.app import make_client_app
from fedrad.client.site import SiteData
from fedrad.common.config import StudyConfig
from fedrad.common.messages import MESSAGE_TYPES, from_record, to_record
from fedrad.common.pipeline import Payload
from fedrad.server.grids import InProcessGrid

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


def in_process_transport(sites: list[SiteData], study: StudyConfig) -> GridTransport:
    """The federation's own message path, with every site's ClientApp called in-process."""
    app = make_client_app(lambda context: (sites[int(context.node_config["site-index"])], study))
    grid = InProcessGrid(app, [{"site-index": index} for index in range(len(sites))])
    return GridTransport(grid, study.federation.round_timeout_s)
