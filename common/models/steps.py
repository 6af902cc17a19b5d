"""A fit written as a coroutine of the sums it needs, so that several fits can share rounds.

A fit yields the `Ask`s it needs answered before it can go on and receives their answers,
in order. `run_steps` answers each yield (a pooled fit: one sum after another; a
federation: one round), and `lockstep` runs several fits together, a yield holding every
fit's next asks, while each fit receives only its own answers and so runs exactly the
iterates it runs alone (docs/protocol.md 2).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
A = TypeVar("A")


@dataclass(frozen=True)
class Ask:
    """What a fit needs summed over sites before it can go on: `what` at `beta`.

    "terms": Newton terms on the training part (`logistic.NewtonTerms`); "loss": the
    training loss and case count (`tuple[float, int]`, a line-search trial); "held-out":
    the held-out summary of a CV fold (`lasso.LassoFold.held_out`).
    """

    what: str
    beta: np.ndarray


Steps = Generator[list[A], list[Any], T]
"""A fit as a coroutine: yields the asks it needs next, receives their answers in order,
returns its result."""


def run_steps(steps: Steps[A, T], answer_all: Callable[[list[A]], list[Any]]) -> T:
    """Run `steps` to its result; `answer_all` answers each yield's asks (a federation: in
    one round)."""
    try:
        asks = next(steps)
        while True:
            asks = steps.send(answer_all(asks))
    except StopIteration as stop:
        return stop.value


def one_by_one(answer: Callable[[A], Any]) -> Callable[[list[A]], list[Any]]:
    """Answer a yield's asks one at a time, e.g. with a pooled fit's callables."""
    return lambda asks: [answer(ask) for ask in asks]


def lockstep(walks: Sequence[Steps[A, T]]) -> Steps[tuple[int, A], list[T]]:
    """Run several coroutines together: each yield holds the next asks of every walk not
    yet done, tagged with the walk's index; returns every walk's result, in order.

    Each walk receives the answers to its own asks only, so it runs exactly as alone;
    the rounds needed are those of the longest walk, not their sum.
    """
    results: list = [None] * len(walks)
    waiting: dict[int, list[A]] = {}
    for index, walk in enumerate(walks):
        try:
            waiting[index] = next(walk)
        except StopIteration as stop:
            results[index] = stop.value
    while waiting:
        answers = yield [(index, ask) for index, asks in waiting.items() for ask in asks]
        start, advanced = 0, {}
        for index, asks in waiting.items():
            mine, start = answers[start : start + len(asks)], start + len(asks)
            try:
                advanced[index] = walks[index].send(mine)
            except StopIteration as stop:
                results[index] = stop.value
        waiting = advanced
    return results
