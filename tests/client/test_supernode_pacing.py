"""A site's SuperNode asks again quickly while a study runs and at Flower's pace when idle;
it paces only the Flower loop it was written for."""

from __future__ import annotations

import importlib.util
import inspect
import re
import time
from types import ModuleType

from fedrad.client.supernode_pacing import (
    ACTIVE_PULL_S,
    ACTIVE_WINDOW_S,
    IDLE_PULL_S,
    REPLY_CHECK_S,
    REPLY_WAIT_S,
    StudyPace,
    pace,
)


class FakeClock:
    def __init__(self) -> None:
        self.now, self.slept = 1000.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def _fresh_flower_loop() -> ModuleType:
    """Flower's SuperNode loop module, loaded anew so pacing it touches no other test."""
    spec = importlib.util.find_spec("flwr.supernode.start_client_internal")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_idle_site_sleeps_as_flower_does_and_an_active_one_asks_again_quickly():
    clock = FakeClock()
    study_pace = StudyPace(clock=clock, sleep=clock.sleep)
    study_pace.sleep(IDLE_PULL_S)
    study_pace.message_received()
    study_pace.sleep(IDLE_PULL_S)
    clock.now += ACTIVE_WINDOW_S + 1
    study_pace.sleep(IDLE_PULL_S)
    assert clock.slept == [IDLE_PULL_S, ACTIVE_PULL_S, IDLE_PULL_S]


def test_the_reply_is_looked_for_often_and_other_sleeps_are_left_alone():
    clock = FakeClock()
    study_pace = StudyPace(clock=clock, sleep=clock.sleep)
    study_pace.sleep(REPLY_WAIT_S)
    study_pace.sleep(1.25)
    assert clock.slept == [REPLY_CHECK_S, 1.25]


def test_flowers_loop_sleeps_only_the_two_ways_the_pace_knows():
    """Replacing the loop's `time` with the pace is complete only if `time.sleep(3)` and
    `time.sleep(0.5)` are all it uses of `time` (true of the pinned Flower)."""
    source = inspect.getsource(_fresh_flower_loop())
    uses = set(re.findall(r"\btime\.(\w+)\(([^)]*)\)", source))
    assert uses == {("sleep", "3"), ("sleep", "0.5")}
    assert {IDLE_PULL_S, REPLY_WAIT_S} == {3.0, 0.5}


def test_pacing_flowers_loop_notes_each_message_pulled():
    loop = _fresh_flower_loop()
    replies = iter([None, 7])
    loop._pull_and_store_message = lambda **_: next(replies)
    clock = FakeClock()
    study_pace = pace(loop, StudyPace(clock=clock, sleep=clock.sleep))
    assert study_pace is not None and loop.time.sleep == study_pace.sleep
    assert loop._pull_and_store_message(state=None) is None and not study_pace.active()
    assert loop._pull_and_store_message(state=None) == 7 and study_pace.active()


def test_a_flower_loop_of_another_shape_keeps_its_own_pace():
    loop = ModuleType("another_loop")
    loop.time = time
    assert pace(loop) is None and loop.time is time
