"""The ridge penalty chosen by inner cross-validation, pooled or federated alike
(docs/methods.md 3.3, penalty selection).

Every inner fold fits every penalty of the grid by Newton (`logistic.fit_newton_steps`,
from beta = 0), then asks the held-out deviance at that fit; the penalty whose held-out
deviance, summed over folds, is least is chosen. Written as a coroutine of `Ask`s, as
the L1 path is (`lasso.cross_validate_steps`): a federation runs every (fold, penalty)
fit in lockstep, so the selection takes as many rounds as its slowest fit, plus one for
the last held-out deviances, and each fit runs exactly the iterates it runs alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from fedrad.common.models.lasso import LassoCV, mean_deviance
from fedrad.common.models.logistic import NewtonTerms, fit_newton_steps
from fedrad.common.models.steps import Ask, Steps, lockstep, one_by_one, run_steps

SummedTerms = Callable[[np.ndarray], NewtonTerms]
HeldOut = Callable[[np.ndarray], np.ndarray]


def cross_validate_ridge(
    folds: Sequence[tuple[SummedTerms, HeldOut]],
    lambdas: Sequence[float],
    n_params: int,
    tolerance: float | None = 1e-8,
    max_iterations: int = 50,
) -> LassoCV:
    """Inner CV over `lambdas` from callables already summed over sites: per fold, the
    Newton terms of its training part at beta and the held-out summary
    ([deviance, n], `lasso.held_out_deviance` summed over sites) at beta."""
    sources = [{"terms": terms, "held-out": held_out} for terms, held_out in folds]
    steps = cross_validate_steps(len(folds), lambdas, n_params, tolerance, max_iterations)
    return run_steps(steps, one_by_one(lambda item: sources[item[0]][item[1].what](item[1].beta)))


def cross_validate_steps(
    n_folds: int,
    lambdas: Sequence[float],
    n_params: int,
    tolerance: float | None = 1e-8,
    max_iterations: int = 50,
    start_terms: Sequence[NewtonTerms] | None = None,
) -> Steps[tuple[int, Ask], LassoCV]:
    """`cross_validate_ridge` as a coroutine over (fold index, ask) pairs, every fold's fit
    at every penalty in lockstep. `start_terms`, if given, are each fold's Newton terms at
    beta = 0, where every fit starts (so they are not asked once per penalty)."""
    lambdas = np.asarray(lambdas, dtype=np.float64)
    starts = list(start_terms) if start_terms is not None else [None] * n_folds
    if len(starts) != n_folds:
        raise ValueError(f"{len(starts)} start terms for {n_folds} folds")
    walks = [
        _held_out_steps(n_params, lam, tolerance, max_iterations, start)
        for start in starts
        for lam in lambdas
    ]
    summaries = yield from _tagged_by_fold(lockstep(walks), len(lambdas))
    per_fold = [summaries[i : i + len(lambdas)] for i in range(0, len(summaries), len(lambdas))]
    fold_criteria = np.array([[mean_deviance(s) for s in fold] for fold in per_fold])
    pooled = [mean_deviance(sum(column)) for column in zip(*per_fold, strict=True)]
    return LassoCV(lambdas=lambdas, fold_criteria=fold_criteria, criteria=np.array(pooled))


def _held_out_steps(
    n_params: int,
    lam: float,
    tolerance: float | None,
    max_iterations: int,
    start: NewtonTerms | None,
) -> Steps[Ask, np.ndarray]:
    """One fold's fit at `lam`, then its held-out summary at the fitted beta."""
    fit = yield from fit_newton_steps(n_params, lam, tolerance, max_iterations, start_terms=start)
    (summary,) = yield [Ask("held-out", fit.beta)]
    return summary


def _tagged_by_fold(steps: Steps, per_fold: int) -> Steps:
    """`steps` of (walk index, ask) pairs as (fold index, ask) pairs."""
    try:
        asks = next(steps)
        while True:
            answers = yield [(walk // per_fold, ask) for walk, ask in asks]
            asks = steps.send(answers)
    except StopIteration as stop:
        return stop.value
