"""The ridge penalty chosen by inner CV from site sums equals the pooled choice."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from fedrad.common.models.lasso import held_out_deviance
from fedrad.common.models.logistic import fit_newton, newton_terms, sum_terms, with_intercept
from fedrad.common.models.ridge import cross_validate_ridge, cross_validate_steps
from fedrad.common.models.steps import run_steps

LAMBDAS = (300.0, 30.0, 3.0, 0.3)
N_FOLDS = 3


@pytest.fixture(scope="module")
def sites():
    """Three sites' (design with intercept, outcomes, inner fold of each case)."""
    rng = np.random.default_rng(4)
    signal = rng.normal(size=8) * 0.4
    data = []
    for n in (50, 40, 60):
        x = rng.normal(size=(n, 8))
        y = (rng.random(n) < 1 / (1 + np.exp(-x @ signal))).astype(float)
        data.append((with_intercept(x), y, rng.permutation(np.arange(n) % N_FOLDS)))
    return data


def _federated_folds(sites):
    def fold(f):
        def terms(beta):
            return sum_terms(newton_terms(x[k != f], y[k != f], beta) for x, y, k in sites)

        def held_out(beta):
            return sum(held_out_deviance(x[k == f], y[k == f], beta) for x, y, k in sites)

        return terms, held_out

    return [fold(f) for f in range(N_FOLDS)]


def _pooled(sites):
    return (
        np.vstack([s[0] for s in sites]),
        *(np.concatenate([s[i] for s in sites]) for i in (1, 2)),
    )


def test_federated_penalty_choice_equals_pooled_newton_and_sklearn(sites):
    cv = cross_validate_ridge(_federated_folds(sites), LAMBDAS, 9, tolerance=1e-12)
    x, y, k = _pooled(sites)

    def pooled_criterion(fit):
        total = 0.0
        for f in range(N_FOLDS):
            beta = fit(x[k != f], y[k != f])
            total += held_out_deviance(x[k == f], y[k == f], beta)[0]
        return total / len(y)

    newton = [
        pooled_criterion(
            lambda xt, yt, lam=lam: (
                fit_newton(lambda b: newton_terms(xt, yt, b), 9, lam, tolerance=1e-12).beta
            )
        )
        for lam in LAMBDAS
    ]

    def sklearn_fit(xt, yt, lam):
        model = LogisticRegression(C=1 / lam, tol=1e-12, max_iter=10_000).fit(xt[:, 1:], yt)
        return np.concatenate([model.intercept_, model.coef_[0]])

    sklearn = [
        pooled_criterion(lambda xt, yt, lam=lam: sklearn_fit(xt, yt, lam)) for lam in LAMBDAS
    ]

    np.testing.assert_allclose(cv.criteria, newton, rtol=1e-9, atol=0)
    np.testing.assert_allclose(cv.criteria, sklearn, rtol=1e-6, atol=0)
    assert cv.lambda_min == LAMBDAS[int(np.argmin(newton))] == LAMBDAS[int(np.argmin(sklearn))]
    # not an end of the grid, so the choice is a real one
    assert cv.lambda_min not in (LAMBDAS[0], LAMBDAS[-1])


def test_every_fold_and_penalty_runs_in_lockstep_in_the_rounds_of_the_slowest_fit(sites):
    folds = _federated_folds(sites)
    starts = [terms(np.zeros(9)) for terms, _ in folds]
    rounds = []

    def answer(asks):
        rounds.append(len(asks))
        return [folds[f][0 if ask.what == "terms" else 1](ask.beta) for f, ask in asks]

    shared = run_steps(cross_validate_steps(N_FOLDS, LAMBDAS, 9, 1e-10, 50, starts), answer)
    alone = cross_validate_ridge(folds, LAMBDAS, 9, tolerance=1e-10)
    np.testing.assert_array_equal(shared.criteria, alone.criteria)
    iterations = [
        fit_newton(terms, 9, lam, tolerance=1e-10).iterations
        for terms, _ in folds
        for lam in LAMBDAS
    ]
    # each fit: its iterations' terms but the first (given), then its held-out deviance
    assert len(rounds) == max(iterations)
    assert rounds[0] == N_FOLDS * len(LAMBDAS)
