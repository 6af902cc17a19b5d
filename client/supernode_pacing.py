"""A site's SuperNode paced by the study: quick while a study runs, Flower's pace idle.

Flower 1.42's SuperNode (`flwr/supernode/start_client_internal.py`) asks the SuperLink
for work and, finding none, sleeps 3 s; having handed a message to its ClientApp, it
looks for the reply every 0.5 s. A study is a long sequence of short rounds, so these
sleeps were most of a deployed round (docs/protocol.md 9). While the site has had a
message in the last `ACTIVE_WINDOW_S`, this asks again after `ACTIVE_PULL_S` and looks
for the reply every `REPLY_CHECK_S` (a lookup in the SuperNode's own memory); idle, it
keeps Flower's 3 s, so an idle site costs the aggregator what it always did.
"""

from __future__ import annotations

import time
from types import ModuleType, SimpleNamespace

import flwr.supernode.start_client_internal as flower_supernode_loop

IDLE_PULL_S = 3.0
"""Flower's sleep after a pull that found no work."""
REPLY_WAIT_S = 0.5
"""Flower's sleep between looks for the ClientApp's reply."""
ACTIVE_WINDOW_S = 60.0
ACTIVE_PULL_S = 0.1
REPLY_CHECK_S = 0.02


class StudyPace:
    """The sleeps of Flower's SuperNode loop, shortened while a study is active."""

    def __init__(self, clock=time.monotonic, sleep=time.sleep) -> None:
        self._clock, self._sleep = clock, sleep
        self._last_message = -float("inf")

    def message_received(self) -> None:
        self._last_message = self._clock()

    def active(self) -> bool:
        return self._clock() - self._last_message < ACTIVE_WINDOW_S

    def sleep(self, seconds: float) -> None:
        if seconds == IDLE_PULL_S and self.active():
            seconds = ACTIVE_PULL_S
        elif seconds == REPLY_WAIT_S:
            seconds = REPLY_CHECK_S
        self._sleep(seconds)


def pace(loop: ModuleType = flower_supernode_loop, study_pace: StudyPace | None = None):
    """Give Flower's SuperNode loop a `StudyPace`; a Flower whose loop differs from the one
    this was written for keeps its own pace (returns None), rather than a wrong one."""
    pull = getattr(loop, "_pull_and_store_message", None)
    if getattr(loop, "time", None) is not time or pull is None:
        return None
    study_pace = study_pace or StudyPace()

    def pull_and_note(*args, **kwargs):
        run_id = pull(*args, **kwargs)
        if run_id is not None:
            study_pace.message_received()
        return run_id

    loop._pull_and_store_message = pull_and_note
    loop.time = SimpleNamespace(sleep=study_pace.sleep)
    return study_pace
