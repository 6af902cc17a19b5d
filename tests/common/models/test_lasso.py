"""Federated proximal-Newton L1 logistic regression equals the pooled fit and sklearn's."""

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression

from fedrad.common.models.lasso import (
    _ROUNDOFF,
    LambdaMaxSums,
    LassoFit,
    LassoFold,
    cross_validate_lasso,
    cross_validate_steps,
    fit_lasso,
    held_out_deviance,
    lambda_max,
    lambda_path,
    loss_terms,
    mean_deviance,
    objective,
    path_steps,
    solve_quadratic_model,
    sum_losses,
)
from fedrad.common.models.logistic import newton_terms, sum_terms, with_intercept
from fedrad.common.models.steps import run_steps
from fedrad.common.stats.moments import Moments, Standardizer, pool_moments

SIZES = (120, 90, 150, 60)


def _standardized_sites(seed: int, true_beta: np.ndarray, sizes=SIZES):
    """Sites with site-specific location and scale, standardized with pooled moments."""
    rng = np.random.default_rng(seed)
    raw = []
    for i, n in enumerate(sizes):
        x = rng.normal(loc=0.3 * i, scale=1 + 0.2 * i, size=(n, len(true_beta) - 1))
        p = 1 / (1 + np.exp(-(with_intercept(x) @ true_beta)))
        raw.append((x, (rng.random(n) < p).astype(float)))
    return _standardize(raw)


def _standardize(sites):
    standardizer = Standardizer.from_moments(pool_moments(Moments.of(x) for x, _ in sites))
    return [(with_intercept(standardizer.transform(x)), y) for x, y in sites]


def _federated(sites):
    def terms(beta):
        return sum_terms(newton_terms(x, y, beta) for x, y in sites)

    def loss(beta):
        return sum_losses(loss_terms(x, y, beta) for x, y in sites)

    return terms, loss


def _pooled(sites):
    x = np.vstack([x for x, _ in sites])
    y = np.concatenate([y for _, y in sites])
    return x, y


def _lambda_max(sites):
    sums = [LambdaMaxSums.of(x[:, 1:], y) for x, y in sites]
    return lambda_max(sum(sums[1:], sums[0]))


BETA = np.array([-0.3, 1.2, -0.8, 0.0, 0.0, 0.5, 0.0, 0.05, 0.0])


def test_federated_equals_pooled_same_code():
    sites = _standardized_sites(0, BETA)
    x, y = _pooled(sites)
    pooled = _federated([(x, y)])
    for lam in (0.005, 0.03):
        federated = fit_lasso(*_federated(sites), len(BETA), lam)
        reference = fit_lasso(*pooled, len(BETA), lam)
        assert federated.converged and reference.converged
        assert federated.iterations == reference.iterations
        assert np.max(np.abs(federated.beta - reference.beta)) <= 1e-9


def test_solution_satisfies_kkt_conditions():
    sites = _standardized_sites(1, BETA)
    lam = 0.02
    fit = fit_lasso(*_federated(sites), len(BETA), lam)
    terms = _federated(sites)[0](fit.beta)
    slope = terms.gradient / terms.n  # minus the gradient of the mean loss
    active = fit.beta != 0
    active[0] = False
    assert abs(slope[0]) <= 1e-9
    np.testing.assert_allclose(slope[active], lam * np.sign(fit.beta[active]), atol=1e-9)
    assert np.all(np.abs(slope[1:][~active[1:]]) <= lam + 1e-12)
    assert 0 < active.sum() < len(BETA) - 1


def test_matches_sklearn_saga_objective_support_and_coefficients():
    sites = _standardized_sites(2, BETA)
    x, y = _pooled(sites)
    n = len(y)
    for lam in (0.005, 0.03):
        fit = fit_lasso(*_federated(sites), len(BETA), lam)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no FutureWarning: l1_ratio, not penalty=
            model = LogisticRegression(
                solver="saga", l1_ratio=1.0, C=1 / (lam * n), tol=1e-12, max_iter=100_000
            ).fit(x[:, 1:], y)
        sk_beta = np.concatenate([model.intercept_, model.coef_.ravel()])
        sk_objective = objective(loss_terms(x, y, sk_beta)[0], n, sk_beta, lam)
        assert fit.objective <= sk_objective + 1e-9
        np.testing.assert_array_equal(np.abs(fit.beta) < 1e-8, np.abs(sk_beta) < 1e-8)
        np.testing.assert_allclose(fit.beta, sk_beta, rtol=0, atol=1e-6)


def test_lambda_max_from_site_sums_zeroes_every_coefficient():
    sites = _standardized_sites(3, BETA)
    lam_max = _lambda_max(sites)
    x, y = _pooled(sites)
    z = x[:, 1:]
    assert np.isclose(lam_max, np.max(np.abs(z.T @ (y - y.mean()))) / len(y), rtol=1e-12)
    for lam in (lam_max, 2 * lam_max):
        fit = fit_lasso(*_federated(sites), len(BETA), lam)
        assert fit.converged and np.all(fit.beta[1:] == 0)
        assert np.isclose(fit.beta[0], np.log(y.mean() / (1 - y.mean())), atol=1e-9)
    assert np.any(fit_lasso(*_federated(sites), len(BETA), 0.99 * lam_max).beta[1:] != 0)
    path = lambda_path(lam_max, n_lambdas=5, min_ratio=1e-2)
    np.testing.assert_allclose(path, lam_max * np.logspace(0, -2, 5), rtol=1e-12)


def _cv_folds(sites, k: int, seed: int, summary):
    """Every site splits its own cases into k stratified folds; each fold standardizes itself."""
    rng = np.random.default_rng(seed)
    assignments = []
    for _, y in sites:
        fold = np.empty(len(y), dtype=int)
        for label in (0, 1):
            members = rng.permutation(np.flatnonzero(y == label))
            fold[members] = np.arange(len(members)) % k
        assignments.append(fold)
    folds = []
    for f in range(k):
        train = [(x[a != f], y[a != f]) for (x, y), a in zip(sites, assignments, strict=True)]
        test = [(x[a == f], y[a == f]) for (x, y), a in zip(sites, assignments, strict=True)]
        standardizer = Standardizer.from_moments(pool_moments(Moments.of(x) for x, _ in train))
        train = [(with_intercept(standardizer.transform(x)), y) for x, y in train]
        test = [(with_intercept(standardizer.transform(x)), y) for x, y in test]

        def held_out(beta, test=test):
            return sum(summary(x, y, beta) for x, y in test)

        folds.append(LassoFold(*_federated(train), held_out))
    return folds


def _signal_sites(seed: int, n_features: int = 20, sizes=(200, 150, 250, 100)):
    """Only features 0, 1 and 2 carry signal; sites differ in location."""
    rng = np.random.default_rng(seed)
    raw = []
    for i, n in enumerate(sizes):
        x = rng.normal(loc=0.5 * i, size=(n, n_features))
        centred = x - 0.5 * i
        eta = 0.2 + 1.5 * centred[:, 0] - 1.0 * centred[:, 1] + 0.8 * centred[:, 2]
        raw.append((x, (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)))
    return raw


def _assert_signal_dominates(beta: np.ndarray):
    """The 3 signal features are selected and outweigh every selected noise feature."""
    magnitude = np.abs(beta[1:])
    assert np.all(magnitude[:3] > 0)
    assert magnitude[3:].max() < 0.5 * magnitude[:3].min()


def test_cross_validation_picks_a_lambda_that_recovers_the_signal():
    raw = _signal_sites(7)
    sites = _standardize(raw)
    n_params = raw[0][0].shape[1] + 1
    lambdas = lambda_path(_lambda_max(sites), n_lambdas=20)

    cv = cross_validate_lasso(_cv_folds(raw, 5, 7, held_out_deviance), lambdas, n_params)
    assert cv.fold_criteria.shape == (5, 20)
    assert lambdas[-1] < cv.lambda_min <= cv.lambda_1se < lambdas[0]
    sparse = fit_lasso(*_federated(sites), n_params, cv.lambda_1se).beta
    dense = fit_lasso(*_federated(sites), n_params, cv.lambda_min).beta
    _assert_signal_dominates(sparse)
    _assert_signal_dominates(dense)
    assert np.count_nonzero(sparse) < np.count_nonzero(dense)


def test_quadratic_model_solver_meets_its_optimality_conditions():
    """The outer fixed point hides a wrong model solve, so check the solver on its own."""
    rng = np.random.default_rng(11)
    root = rng.normal(size=(30, 6)) * np.array([0.2, 1.0, 3.0, 0.5, 2.0, 1.0])
    curvature = root.T @ root / 30  # unequal diagonal
    slope, beta = rng.normal(size=6), rng.normal(size=6)
    newton = solve_quadratic_model(curvature, slope, beta, np.zeros(6))
    np.testing.assert_allclose(newton, beta + np.linalg.solve(curvature, slope), atol=1e-10)

    penalty = np.array([0.0, 0.5, 0.5, 0.5, 0.5, 0.5])
    b = solve_quadratic_model(curvature, slope, beta, penalty)
    residual = slope - curvature @ (b - beta)  # minus the gradient of the smooth part
    active = (b != 0) | (penalty == 0)
    np.testing.assert_allclose(residual[active], penalty[active] * np.sign(b[active]), atol=1e-10)
    assert np.all(np.abs(residual[~active]) <= penalty[~active])
    assert 1 < active.sum() < 6


def _fit_one_ask_at_a_time(summed_terms, summed_loss, n_params, lam, beta_start=None):
    """`fit_lasso` as it was before it became a coroutine: a call for every sum it needs."""
    penalty = np.full(n_params, lam)
    penalty[0] = 0.0
    beta = np.zeros(n_params) if beta_start is None else np.array(beta_start, dtype=np.float64)
    tolerance = 1e-10
    for iteration in range(1, 101):
        terms = summed_terms(beta)
        n = terms.n
        current = objective(terms.deviance / 2.0, n, beta, lam)
        slope = terms.gradient / n
        direction = solve_quadratic_model(terms.hessian / n, slope, beta, penalty) - beta
        if np.max(np.abs(direction)) < tolerance:
            return LassoFit(beta, current, iteration, converged=True)
        decrease = -slope @ direction + lam * (
            np.abs((beta + direction)[1:]).sum() - np.abs(beta[1:]).sum()
        )
        step = 1.0
        while True:
            candidate = beta + step * direction
            trial = objective(*summed_loss(candidate), candidate, lam)
            if trial <= current + 0.25 * step * decrease + _ROUNDOFF * abs(current):
                break
            step /= 2.0
            if np.max(np.abs(step * direction)) < tolerance:
                return LassoFit(beta, current, iteration, converged=True)
        beta = candidate
        if np.max(np.abs(step * direction)) < tolerance:
            return LassoFit(beta, trial, iteration, converged=True)
    return LassoFit(beta, trial, 100, converged=False)


def _answering(fold: LassoFold, log: list):
    """Answers a fold's asks and logs each (what, beta) it was asked."""
    sources = {"terms": fold.summed_terms, "loss": fold.summed_loss, "held-out": fold.held_out}

    def answer(what: str, beta: np.ndarray):
        log.append((what, beta.tobytes()))
        return sources[what](beta)

    return answer


def test_lockstep_cross_validation_runs_every_fold_as_the_fold_by_fold_walk():
    """Folds walking the path together, a round holding every fold's next ask, give the
    very numbers of the walk fold by fold, one sum per round, from the same sums."""
    raw = _signal_sites(7)
    n_params = raw[0][0].shape[1] + 1
    lambdas = lambda_path(_lambda_max(_standardize(raw)), n_lambdas=12)
    folds = _cv_folds(raw, 4, 7, held_out_deviance)

    before = [[] for _ in folds]  # what each fold was asked, fold by fold
    expected = []
    for fold, log in zip(folds, before, strict=True):
        answer = _answering(fold, log)
        fits, beta = [], None
        for lam in lambdas:
            fits.append(
                _fit_one_ask_at_a_time(
                    lambda b, a=answer: a("terms", b),
                    lambda b, a=answer: a("loss", b),
                    n_params,
                    lam,
                    beta,
                )
            )
            beta = fits[-1].beta
        expected.append([mean_deviance(answer("held-out", fit.beta)) for fit in fits])

    after = [[] for _ in folds]
    answers = [_answering(fold, log) for fold, log in zip(folds, after, strict=True)]
    rounds = []

    def one_round(asks):
        rounds.append(asks)
        return [answers[fold](ask.what, ask.beta) for fold, ask in asks]

    cv = run_steps(cross_validate_steps(len(folds), lambdas, n_params), one_round)

    np.testing.assert_array_equal(cv.fold_criteria, np.array(expected))
    for asked_before, asked_after in zip(before, after, strict=True):
        # no new sum; the path's own asks in the same order, less the Newton terms a
        # warm start already has (asked again, at once, by the fold-by-fold walk)
        assert set(asked_after) == set(asked_before)
        path_before = [ask for ask in asked_before if ask[0] != "held-out"]
        path_after = [ask for ask in asked_after if ask[0] != "held-out"]
        assert path_after == [
            ask for i, ask in enumerate(path_before) if i == 0 or ask != path_before[i - 1]
        ]
        assert len(path_after) < len(path_before)
        held_out = [ask for ask in asked_before if ask[0] == "held-out"]
        assert [ask for ask in asked_after if ask[0] == "held-out"] == held_out
    # each round holds one path ask of every fold still walking, held-out summaries ride
    # along: as many rounds as the longest fold's path asks (+1 for its last held-out)
    for asks in rounds:
        walking = [fold for fold, ask in asks if ask.what != "held-out"]
        assert len(walking) == len(set(walking))
    longest = max(len([ask for ask in asked if ask[0] != "held-out"]) for asked in after)
    assert len(rounds) == longest + 1
    assert len(rounds) < sum(len(asked) for asked in before) / len(folds)


def test_a_path_reuses_the_newton_terms_of_a_warm_start():
    """Each fit of the path starts where the previous stopped, whose last Newton terms are
    at that beta when it stopped on a short direction: the path does not ask them again."""
    sites = _standardized_sites(4, BETA)
    lambdas = lambda_path(_lambda_max(sites), n_lambdas=8)
    asked = []

    def answer(asks):
        asked.extend(asks)
        terms, loss = _federated(sites)
        return [terms(a.beta) if a.what == "terms" else loss(a.beta) for a in asks]

    fits = run_steps(path_steps(len(BETA), lambdas, held_out=False), answer)
    terms_at = [a.beta.tobytes() for a in asked if a.what == "terms"]
    assert len(terms_at) == len(set(terms_at))
    for fit, lam in zip(fits, lambdas, strict=True):
        alone = fit_lasso(*_federated(sites), len(BETA), lam, beta_start=None)
        assert np.max(np.abs(fit.beta - alone.beta)) <= 1e-9
