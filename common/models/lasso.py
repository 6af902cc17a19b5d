"""Exact federated L1 logistic regression by proximal Newton (docs/methods.md 3.4).

Minimizes F(beta) = (1/n) sum_i l_i(beta) + lam * ||beta_{-0}||_1 on federated-
standardized features, intercept (index 0) unpenalized. Each outer iteration
reuses the Newton message of 3.3 (summed gradient, Hessian and deviance at beta);
the server solves the quadratic model by coordinate descent on the summed Hessian,
so it needs no data; each line-search trial needs only the summed loss. As in
`logistic.fit_newton`, the fit takes callables returning sums over sites, so
pooled data and a federation run the same code.

Every fit is also written as a coroutine (`fit_lasso_steps`, `cross_validate_steps`;
`steps.py`): it yields the `Ask`s it needs answered (Newton terms, a loss, a held-out
summary, each at a beta) and receives their answers, so a federation can answer the asks
of several inner folds in one round while each fold runs exactly the iterates it runs
alone (`run_steps` answers them one by one, as the callables of a pooled fit do).

Design matrices `x` passed to the site-side helpers here include the intercept
column (`logistic.with_intercept`), as for `logistic.newton_terms`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from fedrad.common.models.logistic import NewtonTerms
from fedrad.common.models.steps import A, Ask, Steps, T, lockstep, one_by_one, run_steps

# Relative rounding error allowed in the Armijo test: F is summed over sites in any
# order, and without this slack the last, roundoff-sized steps are halved at random.
_ROUNDOFF = 16 * np.finfo(np.float64).eps

SummedTerms = Callable[[np.ndarray], NewtonTerms]
SummedLoss = Callable[[np.ndarray], tuple[float, int]]


def _answer_with(summed_terms: SummedTerms, summed_loss: SummedLoss, held_out=None):
    sources = {"terms": summed_terms, "loss": summed_loss, "held-out": held_out}
    return lambda ask: sources[ask.what](ask.beta)


def loss_terms(x: np.ndarray, y: np.ndarray, beta: np.ndarray) -> tuple[float, int]:
    """A site's sum of negative log-likelihoods at beta, and its case count."""
    eta = x @ beta
    return float(np.sum(np.logaddexp(0.0, eta) - y * eta)), len(y)


def sum_losses(parts: Iterable[tuple[float, int]]) -> tuple[float, int]:
    """Sum site losses and counts; raises if there are none."""
    parts = list(parts)
    if not parts:
        raise ValueError("no site returned a loss")
    return sum(loss for loss, _ in parts), sum(n for _, n in parts)


@dataclass(frozen=True)
class LambdaMaxSums:
    """What a site sends for lambda_max: n, sum y, and per feature sum x_j and sum x_j y.

    Features are the standardized ones without the intercept column, so sum x_j is
    small and sum x_j y - ybar sum x_j does not cancel.
    """

    n: int
    sum_y: float
    sum_x: np.ndarray
    sum_xy: np.ndarray

    @classmethod
    def of(cls, z: np.ndarray, y: np.ndarray) -> LambdaMaxSums:
        z = np.asarray(z, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        return cls(n=len(y), sum_y=float(y.sum()), sum_x=z.sum(axis=0), sum_xy=z.T @ y)

    def __add__(self, other: LambdaMaxSums) -> LambdaMaxSums:
        return LambdaMaxSums(
            n=self.n + other.n,
            sum_y=self.sum_y + other.sum_y,
            sum_x=self.sum_x + other.sum_x,
            sum_xy=self.sum_xy + other.sum_xy,
        )


def lambda_max(sums: LambdaMaxSums) -> float:
    """Smallest lam at which every penalized coefficient is zero: max_j |sum x_j (y - ybar)| / n.

    At beta_{-0} = 0 the intercept-only fit has p = ybar, so this is the largest
    coordinate of the loss gradient there (the KKT condition, docs/methods.md 3.4).
    """
    y_bar = sums.sum_y / sums.n
    return float(np.max(np.abs(sums.sum_xy - y_bar * sums.sum_x)) / sums.n)


def lambda_path(lam_max: float, n_lambdas: int = 50, min_ratio: float = 1e-2) -> np.ndarray:
    """Log-spaced lambdas from lam_max down to min_ratio * lam_max, largest first (glmnet)."""
    return np.geomspace(lam_max, min_ratio * lam_max, n_lambdas)


@dataclass(frozen=True)
class LassoFit:
    beta: np.ndarray
    objective: float
    iterations: int
    converged: bool


def objective(loss: float, n: int, beta: np.ndarray, lam: float) -> float:
    """F(beta) from the summed loss; the intercept is not penalized."""
    return loss / n + lam * float(np.abs(beta[1:]).sum())


def fit_lasso(
    summed_terms: SummedTerms,
    summed_loss: SummedLoss,
    n_params: int,
    lam: float,
    beta_start: np.ndarray | None = None,
    tolerance: float = 1e-10,
    max_iterations: int = 100,
) -> LassoFit:
    """Proximal Newton with Armijo backtracking; stops when max|t d| < tolerance.

    One outer iteration is one `summed_terms` round plus one `summed_loss` round
    per line-search trial; the Armijo reference F(beta) comes from the terms'
    deviance at no extra round.
    """
    steps = fit_lasso_steps(n_params, lam, beta_start, tolerance, max_iterations)
    fit, _ = run_steps(steps, one_by_one(_answer_with(summed_terms, summed_loss)))
    return fit


def fit_lasso_steps(
    n_params: int,
    lam: float,
    beta_start: np.ndarray | None = None,
    tolerance: float = 1e-10,
    max_iterations: int = 100,
    start_terms: NewtonTerms | None = None,
) -> Steps[Ask, tuple[LassoFit, NewtonTerms | None]]:
    """`fit_lasso` as a coroutine: asks "terms" once per iteration and "loss" once per
    line-search trial, one ask at a time. `start_terms`, if given, are the Newton terms
    at `beta_start` (a warm start that has them already), so they are not asked again.
    Returns the fit and the Newton terms at its beta when it asked them (else None)."""
    penalty = np.full(n_params, lam)
    penalty[0] = 0.0
    beta = np.zeros(n_params) if beta_start is None else np.array(beta_start, dtype=np.float64)
    for iteration in range(1, max_iterations + 1):
        if iteration == 1 and start_terms is not None:
            terms = start_terms
        else:
            (terms,) = yield [Ask("terms", beta)]
        n = terms.n
        current = objective(terms.deviance / 2.0, n, beta, lam)
        curvature = terms.hessian / n
        slope = terms.gradient / n
        direction = solve_quadratic_model(curvature, slope, beta, penalty) - beta
        if np.max(np.abs(direction)) < tolerance:
            return LassoFit(beta, current, iteration, converged=True), terms
        decrease = -slope @ direction + lam * (
            np.abs((beta + direction)[1:]).sum() - np.abs(beta[1:]).sum()
        )
        step = 1.0
        while True:
            candidate = beta + step * direction
            (loss,) = yield [Ask("loss", candidate)]
            trial = objective(*loss, candidate, lam)
            if trial <= current + 0.25 * step * decrease + _ROUNDOFF * abs(current):
                break
            step /= 2.0
            if np.max(np.abs(step * direction)) < tolerance:
                return LassoFit(beta, current, iteration, converged=True), terms
        beta = candidate
        if np.max(np.abs(step * direction)) < tolerance:
            return LassoFit(beta, trial, iteration, converged=True), None
    return LassoFit(beta, trial, max_iterations, converged=False), None


def solve_quadratic_model(
    curvature: np.ndarray,
    slope: np.ndarray,
    beta: np.ndarray,
    penalty: np.ndarray,
    tolerance: float = 1e-13,
    max_sweeps: int = 10_000,
) -> np.ndarray:
    """Minimize Q(b) = -r'(b - beta) + (b - beta)'A(b - beta)/2 + sum_j penalty_j |b_j|.

    Cyclic coordinate descent (docs/methods.md 3.4 step 2) with A = curvature, r = slope:
    z = b_j + (r_j - (A(b - beta))_j) / A_jj, then b_j = S(z, penalty_j / A_jj).
    glmnet's active-set cycling: after a full sweep, sweep only the non-zero
    coordinates until they settle, then check with another full sweep.
    """
    diagonal = np.diag(curvature)
    if np.any(diagonal <= 0):
        raise ValueError("a coefficient has no curvature: drop constant features first")
    problem = _Quadratic(
        columns=(curvature / diagonal[:, None]).T,
        step=list(slope / diagonal),
        threshold=list(penalty / diagonal),
    )
    b = np.array(beta, dtype=np.float64)
    shift = np.zeros_like(b)  # A (b - beta) / A_jj, row j scaled by its diagonal
    everything = range(len(b))
    sweeps = 0
    while sweeps < max_sweeps:
        sweeps += 1
        if problem.sweep(b, shift, everything) < tolerance:
            break
        active = np.flatnonzero((b != 0) | (penalty == 0)).tolist()
        while sweeps < max_sweeps:
            sweeps += 1
            if problem.sweep(b, shift, active) < tolerance:
                break
    return b


@dataclass(frozen=True)
class _Quadratic:
    """The quadratic model scaled by A_jj, as Python floats for a fast scalar loop."""

    columns: np.ndarray
    step: list[float]
    threshold: list[float]

    def sweep(self, b: np.ndarray, shift: np.ndarray, coordinates: Iterable[int]) -> float:
        """One pass of coordinate updates of `b` and `shift` in place; the largest change."""
        largest = 0.0
        for j in coordinates:
            old = float(b[j])
            z = old + self.step[j] - float(shift[j])
            threshold = self.threshold[j]
            new = z - threshold if z > threshold else z + threshold if z < -threshold else 0.0
            if new != old:
                shift += self.columns[j] * (new - old)
                b[j] = new
                largest = max(largest, abs(new - old))
        return largest


def fit_lasso_path(
    summed_terms: SummedTerms,
    summed_loss: SummedLoss,
    n_params: int,
    lambdas: np.ndarray,
    tolerance: float = 1e-10,
    max_iterations: int = 100,
) -> list[LassoFit]:
    """Fits along `lambdas` in the given order, each warm-started from the previous one."""
    steps = path_steps(n_params, lambdas, tolerance, max_iterations, held_out=False)
    return run_steps(steps, one_by_one(_answer_with(summed_terms, summed_loss)))


def path_steps(
    n_params: int,
    lambdas: np.ndarray,
    tolerance: float = 1e-10,
    max_iterations: int = 100,
    held_out: bool = True,
    start_terms: NewtonTerms | None = None,
) -> Steps[Ask, list]:
    """`fit_lasso_path` as a coroutine; returns the fits, or with `held_out` their held-out
    summaries ("held-out" asks at each fit's beta, in path order).

    Each fit starts where the previous one stopped (warm start), which is also where that
    fit last asked for Newton terms when it stopped on a short step: those terms are
    reused, not asked again. A held-out summary feeds nothing back into the path, so it
    is asked together with the next ask of the path, not in a round of its own.
    `start_terms`, if given, are the Newton terms at beta = 0, where the path starts.
    """
    results: list = [None] * len(lambdas)
    pending: list[tuple[int, Ask]] = []  # held-out summaries not yet asked
    beta, terms = None, start_terms
    for index, lam in enumerate(lambdas):
        extra = [ask for _, ask in pending]
        steps = fit_lasso_steps(n_params, lam, beta, tolerance, max_iterations, terms)
        answered, (fit, terms) = yield from _asking_also(extra, steps)
        if answered is not None:
            for (where, _), summary in zip(pending, answered, strict=True):
                results[where] = summary
            pending = []
        beta = fit.beta
        if held_out:
            pending.append((index, Ask("held-out", fit.beta)))
        else:
            results[index] = fit
    if pending:
        answered = yield [ask for _, ask in pending]
        for (where, _), summary in zip(pending, answered, strict=True):
            results[where] = summary
    return results


def _asking_also(extra: list, steps: Steps[A, T]) -> Steps[A, tuple[list | None, T]]:
    """`steps`, with `extra` asked along with its first ask; returns the answers to
    `extra` (None if `steps` asked nothing, so `extra` was not asked) and its result."""
    try:
        asks = next(steps)
    except StopIteration as stop:
        return None, stop.value
    answers = yield extra + asks
    mine, answers = answers[: len(extra)], answers[len(extra) :]
    while True:
        try:
            asks = steps.send(answers)
        except StopIteration as stop:
            return mine, stop.value
        answers = yield asks


def held_out_deviance(x: np.ndarray, y: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """A site's held-out summary for `mean_deviance`: [sum of deviance, n]."""
    loss, n = loss_terms(x, y, beta)
    return np.array([2.0 * loss, n])


def mean_deviance(summary: np.ndarray) -> float:
    return float(summary[0] / summary[1])


@dataclass(frozen=True)
class LassoFold:
    """One CV fold, every callable already summed over sites.

    `summed_terms` and `summed_loss` cover each site's training part of the fold,
    on features standardized with that training part's pooled moments;
    `held_out(beta)` returns an additive summary of the held-out parts, such as
    `held_out_deviance` summed over sites.
    """

    summed_terms: SummedTerms
    summed_loss: SummedLoss
    held_out: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LassoCV:
    """CV criteria (lower is better) per fold and pooled over folds, for each lambda."""

    lambdas: np.ndarray
    fold_criteria: np.ndarray
    criteria: np.ndarray

    @property
    def best_index(self) -> int:
        return int(np.argmin(self.criteria))

    @property
    def lambda_min(self) -> float:
        return float(self.lambdas[self.best_index])

    @property
    def lambda_1se(self) -> float:
        """Largest lambda within one fold standard error of the best criterion (glmnet)."""
        at_best = self.fold_criteria[:, self.best_index]
        limit = self.criteria[self.best_index] + at_best.std(ddof=1) / np.sqrt(len(at_best))
        return float(self.lambdas[self.criteria <= limit].max())


def cross_validate_lasso(
    folds: Sequence[LassoFold],
    lambdas: np.ndarray,
    n_params: int,
    criterion: Callable[[np.ndarray], float] = mean_deviance,
    tolerance: float = 1e-10,
    max_iterations: int = 100,
) -> LassoCV:
    """K-fold CV over a common lambda grid (largest first), pooled or federated alike.

    Sites split their own cases into folds (docs/methods.md 3.4, lambda selection), so
    a fold is a sum over sites like any other. Held-out summaries are summed over
    folds before `criterion` is applied, giving the pooled CV estimate (e.g. the
    deviance over all held-out cases, or the AUC of all held-out scores); the
    per-fold criteria give the standard error for `lambda_1se`. Use one grid for
    all folds, e.g. `lambda_path` from the full training data's `lambda_max`.
    """
    answer = [_answer_with(f.summed_terms, f.summed_loss, f.held_out) for f in folds]
    steps = cross_validate_steps(
        len(folds), lambdas, n_params, criterion, tolerance, max_iterations
    )
    return run_steps(steps, one_by_one(lambda item: answer[item[0]](item[1])))


def cross_validate_steps(
    n_folds: int,
    lambdas: np.ndarray,
    n_params: int,
    criterion: Callable[[np.ndarray], float] = mean_deviance,
    tolerance: float = 1e-10,
    max_iterations: int = 100,
    start_terms: Sequence[NewtonTerms] | None = None,
) -> Steps[tuple[int, Ask], LassoCV]:
    """`cross_validate_lasso` as a coroutine over (fold index, ask) pairs. The folds walk
    the path in lockstep: a yield holds the next ask of every fold still walking (with
    any held-out summaries it has not asked yet), so the CV takes as many rounds as its
    longest fold, and every fold runs exactly the iterates it runs alone. `start_terms`,
    if given, are each fold's Newton terms at beta = 0, where every fold starts."""
    lambdas = np.sort(np.asarray(lambdas, dtype=np.float64))[::-1]
    starts = list(start_terms) if start_terms is not None else [None] * n_folds
    if len(starts) != n_folds:
        raise ValueError(f"{len(starts)} start terms for {n_folds} folds")
    walks = [
        path_steps(n_params, lambdas, tolerance, max_iterations, start_terms=start)
        for start in starts
    ]
    summaries = yield from lockstep(walks)
    fold_criteria = np.array([[criterion(s) for s in per_fold] for per_fold in summaries])
    pooled = [criterion(sum(column)) for column in zip(*summaries, strict=True)]
    return LassoCV(lambdas=lambdas, fold_criteria=fold_criteria, criteria=np.array(pooled))
