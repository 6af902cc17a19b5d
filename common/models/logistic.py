"""Exact federated ridge logistic regression by Newton-Raphson (docs/methods.md 3.3).

The Newton step needs only sums over cases of the gradient, Hessian and deviance,
so summing per-site terms gives the same iterates as the pooled fit. The fitting
loop takes a callable that returns those summed terms at a given beta: pooled data
and a federation plug into the same loop. Written as a coroutine (`fit_newton_steps`),
the same loop lets a federation run several fits' iterations in shared rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from fedrad.common.models.steps import Ask, Steps, one_by_one, run_steps


@dataclass(frozen=True)
class NewtonTerms:
    """Sufficient statistics of one Newton iteration: sums over cases."""

    gradient: np.ndarray
    hessian: np.ndarray
    deviance: float
    n: int

    def __add__(self, other: NewtonTerms) -> NewtonTerms:
        return NewtonTerms(
            gradient=self.gradient + other.gradient,
            hessian=self.hessian + other.hessian,
            deviance=self.deviance + other.deviance,
            n=self.n + other.n,
        )


def sum_terms(terms: Iterable[NewtonTerms]) -> NewtonTerms:
    total: NewtonTerms | None = None
    for term in terms:
        total = term if total is None else total + term
    if total is None:
        raise ValueError("no site returned Newton terms")
    return total


def with_intercept(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.column_stack([np.ones(x.shape[0]), x])


def newton_terms(x: np.ndarray, y: np.ndarray, beta: np.ndarray) -> NewtonTerms:
    """Gradient X'(y - p), Hessian X'WX and deviance at beta; `x` includes the intercept."""
    eta = x @ beta
    p = expit(eta)
    w = p * (1.0 - p)
    deviance = 2.0 * float(np.sum(np.logaddexp(0.0, eta) - y * eta))
    return NewtonTerms(
        gradient=x.T @ (y - p), hessian=(x * w[:, None]).T @ x, deviance=deviance, n=len(y)
    )


@dataclass(frozen=True)
class LogisticFit:
    beta: np.ndarray
    iterations: int
    penalized_deviance: float
    converged: bool


def fit_newton(
    summed_terms: Callable[[np.ndarray], NewtonTerms],
    n_params: int,
    ridge_lambda: float = 0.0,
    tolerance: float | None = 1e-8,
    max_iterations: int = 50,
    on_iteration: Callable[[int, float], None] | None = None,
    curvature_floor: float = 0.0,
) -> LogisticFit:
    """Ridge-penalized Newton; the intercept (index 0) is not penalized.

    Stops when |dev - dev_old| / (|dev| + 0.1) <= tolerance, R's glm rule, with the
    deviance evaluated at the beta before the update (as DataSHIELD does); with no
    tolerance (noised terms, whose deviance is not released) it runs max_iterations.
    """
    steps = fit_newton_steps(
        n_params, ridge_lambda, tolerance, max_iterations, on_iteration, curvature_floor
    )
    return run_steps(steps, one_by_one(lambda ask: summed_terms(ask.beta)))


def fit_newton_steps(
    n_params: int,
    ridge_lambda: float = 0.0,
    tolerance: float | None = 1e-8,
    max_iterations: int = 50,
    on_iteration: Callable[[int, float], None] | None = None,
    curvature_floor: float = 0.0,
    start_terms: NewtonTerms | None = None,
) -> Steps[Ask, LogisticFit]:
    """`fit_newton` as a coroutine: asks "terms" once per iteration, so a federation can
    answer several fits' iterations in one round (`steps.lockstep`). `start_terms`, if
    given, are the terms at beta = 0, where it starts, so they are not asked again."""
    penalty = np.full(n_params, ridge_lambda)
    penalty[0] = 0.0
    beta = np.zeros(n_params)
    previous = np.inf
    for iteration in range(1, max_iterations + 1):
        if iteration == 1 and start_terms is not None:
            terms = start_terms
        else:
            (terms,) = yield [Ask("terms", beta)]
        deviance = terms.deviance + float(beta @ (penalty * beta))
        if on_iteration is not None:
            on_iteration(iteration, deviance)
        if tolerance is not None and abs(deviance - previous) / (abs(deviance) + 0.1) <= tolerance:
            return LogisticFit(beta, iteration, deviance, converged=True)
        information = positive_definite(terms.hessian + np.diag(penalty), curvature_floor)
        beta = beta + np.linalg.solve(information, terms.gradient - penalty * beta)
        previous = deviance
    return LogisticFit(beta, max_iterations, deviance, converged=False)


def recalibrated(beta: np.ndarray, intercept: float, slope: float) -> np.ndarray:
    """The coefficients whose linear predictor is intercept + slope x (that of `beta`): a
    logistic recalibration of the scores (docs/methods.md 4.3)."""
    beta = np.asarray(beta, dtype=np.float64)
    return np.concatenate([[intercept + slope * beta[0]], slope * beta[1:]])


def positive_definite(matrix: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """`matrix` itself when it is positive definite with every eigenvalue >= `floor` (every
    exact Hessian, with no floor); else its symmetric part with its eigenvalues raised to
    `floor` (a noised Hessian: the floor is the noise's size), or to 1e-3 x the largest."""
    symmetric = (matrix + matrix.T) / 2
    values, vectors = np.linalg.eigh(symmetric)
    if floor == 0.0:
        try:
            np.linalg.cholesky(matrix)
            return matrix
        except np.linalg.LinAlgError:
            floor = 1e-3 * max(float(np.max(np.abs(values))), 1.0)
    elif values.min() >= floor:
        return symmetric
    return (vectors * np.maximum(values, floor)) @ vectors.T
