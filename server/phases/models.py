"""Phase 5: the model on the selected, scaled features. Ridge and L1 logistic regression
are exact (Newton from summed gradients and Hessians, docs/methods.md 3.3-3.4); the MLP is
trained by a Flower strategy on the training sites.

Each fitter returns the pipeline with its model and a summary for results.json that
names its kind and, for every kind, `features` (the inputs the model reads).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord

from fedrad.common.config import StudyConfig
from fedrad.common.differential_privacy import curvature_floor
from fedrad.common.messages import Kind, LassoRoundReply, Request
from fedrad.common.models import lasso, mlp, ridge
from fedrad.common.models.logistic import NewtonTerms, fit_newton_steps
from fedrad.common.models.steps import Ask, Steps, one_by_one, run_steps
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.server.federation import Federation
from fedrad.server.phases.common import training_requests
from fedrad.server.strategies import make_strategy

Fitter = Callable[..., tuple[PipelineParams, dict]]


def summed_terms(
    federation: Federation, params: PipelineParams, nodes, partitions
) -> Callable[[np.ndarray], NewtonTerms]:
    """Sum of the sites' Newton terms at beta over the training part of `partitions`."""
    n_params = len(params.model_features) + 1

    def shaped(terms: NewtonTerms) -> str | None:
        if terms.gradient.shape != (n_params,):
            return f"gradient has shape {terms.gradient.shape}, not {(n_params,)}"
        if terms.hessian.shape != (n_params, n_params):
            return f"hessian has shape {terms.hessian.shape}, not {(n_params, n_params)}"
        return None

    def terms_at(beta: np.ndarray) -> NewtonTerms:
        requests = training_requests(replace(params, beta=beta), nodes, partitions)
        return federation.total(Kind.NEWTON, requests, shaped)

    return terms_at


# What each ask of a ridge or L1 fit is on the wire: the request a LASSO_ROUND part makes
# of a site (the kind it would be alone), over the cases of which role.
_WIRE: dict[str, dict[str, str]] = {
    "terms": {"kind": Kind.NEWTON},
    "loss": {"kind": Kind.LOSS, "role": "train"},
    "held-out": {"kind": Kind.LOSS, "role": "test"},
    "lambda-max": {"kind": Kind.LAMBDA_MAX},
}


@dataclass(frozen=True)
class FitAsk:
    """One sum a ridge or L1 fit needs from its sites: `what` (a key of `_WIRE`; Newton
    terms, a loss, a held-out loss, lambda_max sums) of `pipeline` (at its beta) over each
    site's partition."""

    pipeline: PipelineParams
    partitions: dict[int, Partition]
    what: str


def lasso_round(federation: Federation, asks: list[FitAsk]) -> list:
    """The answers to `asks`, each summed over the sites of its partitions: asks over the
    same sites go to each of them as one LASSO_ROUND message, a part per ask, answered as
    its own NEWTON, LOSS or LAMBDA_MAX reply would be, and come back as one total over
    exactly those sites (one round in k-fold, where every fit trains on every site; one
    per held-out site in leave-one-site-out). Newton terms come as `NewtonTerms`, a
    training loss as (loss, n), a held-out one as [deviance, n] (`lasso.mean_deviance`),
    lambda_max sums as `LambdaMaxSums`. Asks may come from fits of different pipelines."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, ask in enumerate(asks):
        nodes = tuple(node for node in federation.sites if node in ask.partitions)
        groups.setdefault(nodes, []).append(index)
    answers: list = [None] * len(asks)
    for nodes, indices in groups.items():
        group = [asks[i] for i in indices]
        requests = {
            node: Request(
                parts=[
                    Request(
                        ask.pipeline,
                        ask.partitions[node],
                        values={name: str(value) for name, value in _WIRE[ask.what].items()},
                    )
                    for ask in group
                ]
            )
            for node in nodes
        }
        total = federation.total(Kind.LASSO_ROUND, requests, lambda r, g=group: _misshapen(r, g))
        for i, ask, answer in zip(indices, group, _unpacked(total, group), strict=True):
            answers[i] = _deviance_summary(*answer) if ask.what == "held-out" else answer
    return answers


def _misshapen(reply: LassoRoundReply, asks: list[FitAsk]) -> str | None:
    """Why a LASSO_ROUND reply does not hold exactly what `asks` call for, if it does not."""
    widths = {kind: [] for kind in (Kind.NEWTON, Kind.LOSS, Kind.LAMBDA_MAX)}
    for ask in asks:
        widths[_WIRE[ask.what]["kind"]].append(len(ask.pipeline.model_features) + 1)
    terms, sums = widths[Kind.NEWTON], widths[Kind.LAMBDA_MAX]
    sizes = {
        "gradient": sum(terms),
        "hessian": sum(p * p for p in terms),
        "deviance": len(terms),
        "terms_n": len(terms),
        "loss": len(widths[Kind.LOSS]),
        "loss_n": len(widths[Kind.LOSS]),
        "lambda_n": len(sums),
        "sum_y": len(sums),
        "sum_x": sum(p - 1 for p in sums),
        "sum_xy": sum(p - 1 for p in sums),
    }
    for name, size in sizes.items():
        if getattr(reply, name).shape != (size,):
            return f"{name} has shape {getattr(reply, name).shape}, not {(size,)}"
    return None


def _unpacked(reply: LassoRoundReply, asks: list[FitAsk]) -> list:
    """The answer to each ask, cut from a LASSO_ROUND reply's flat arrays."""
    answers, index, offset = [], Counter(), Counter()
    for ask in asks:
        kind, p = _WIRE[ask.what]["kind"], len(ask.pipeline.model_features) + 1
        i = index[kind]
        index[kind] += 1
        if kind is Kind.NEWTON:
            g, h = offset["gradient"], offset["hessian"]
            offset["gradient"], offset["hessian"] = g + p, h + p * p
            answers.append(
                NewtonTerms(
                    reply.gradient[g : g + p],
                    reply.hessian[h : h + p * p].reshape(p, p),
                    float(reply.deviance[i]),
                    int(reply.terms_n[i]),
                )
            )
        elif kind is Kind.LOSS:
            answers.append((float(reply.loss[i]), int(reply.loss_n[i])))
        else:
            x = offset["sum_x"]
            offset["sum_x"] = x + p - 1
            answers.append(
                lasso.LambdaMaxSums(
                    int(reply.lambda_n[i]),
                    float(reply.sum_y[i]),
                    reply.sum_x[x : x + p - 1],
                    reply.sum_xy[x : x + p - 1],
                )
            )
    return answers


def fit_logistic(federation, study: StudyConfig, params, nodes, partitions, tag, rounds):
    """Ridge logistic regression by Newton (docs/methods.md 3.3): with a fixed penalty each
    iteration one NEWTON round; with a tuned one, every ask of a round in one LASSO_ROUND."""
    steps = logistic_steps(study, params, nodes, partitions, _newton_record(tag, rounds))
    if study.ridge_penalty is None:
        fitted, model = run_steps(steps, lambda asks: lasso_round(federation, asks))
    else:
        terms_at = summed_terms(federation, params, nodes, partitions)
        fitted, model = run_steps(steps, one_by_one(lambda ask: terms_at(ask.pipeline.beta)))
    federation.log(fitted_line(tag, nodes, model))
    return fitted, model


def _newton_record(tag: str, rounds: list[dict]) -> Callable[[int, float], None]:
    """Appends each Newton iteration of fit `tag` to `rounds` (results.json's `rounds`)."""

    def record(iteration: int, deviance: float) -> None:
        rounds.append({"fit": tag, "phase": "newton", "iteration": iteration, "deviance": deviance})

    return record


def _inner_folds(study: StudyConfig, training: dict[int, Partition]) -> list[dict]:
    """The inner folds of a fit's training part, each site's partition per fold."""
    return [
        {node: replace(partition, inner=inner) for node, partition in training.items()}
        for inner in range(study.validation.inner_folds)
    ]


def logistic_steps(
    study: StudyConfig,
    params: PipelineParams,
    nodes: list[int],
    partitions,
    on_iteration: Callable[[int, float], None],
) -> Steps[FitAsk, tuple[PipelineParams, dict]]:
    """`fit_logistic` as a coroutine: yields the asks of each round, receives their
    answers; returns the pipeline with its beta and the model summary. Several fits'
    coroutines can share rounds (`steps.lockstep`).

    With a tuned penalty, the first round asks the Newton terms at beta = 0 of every inner
    fold and of the final fit (where each of their fits starts); then every inner fold's
    fit at every penalty of the grid runs in lockstep (`ridge.cross_validate_steps`), each
    followed by its held-out loss; then the final fit at the chosen penalty.
    """
    settings = study.model
    training = {node: partitions[node] for node in nodes}
    tolerance, iterations = study.newton_stopping
    n_params = len(params.model_features) + 1

    def over(fit: dict[int, Partition], ask: Ask) -> FitAsk:
        return FitAsk(replace(params, beta=ask.beta), fit, ask.what)

    penalty, curve, start = study.ridge_penalty, None, None
    if penalty is None:
        folds = _inner_folds(study, training)
        at_zero = replace(params, beta=np.zeros(n_params))
        *fold_starts, start = yield [FitAsk(at_zero, fit, "terms") for fit in [*folds, training]]
        cv = yield from _translated(
            ridge.cross_validate_steps(
                len(folds), settings.ridge_lambdas, n_params, tolerance, iterations, fold_starts
            ),
            lambda asks: [over(folds[fold], ask) for fold, ask in asks],
        )
        penalty = cv.lambda_min
        curve = {"lambdas": cv.lambdas.tolist(), "mean_deviance": cv.criteria.tolist()}
    fit = yield from _translated(
        fit_newton_steps(
            n_params,
            ridge_lambda=penalty,
            tolerance=tolerance,
            max_iterations=iterations,
            on_iteration=on_iteration,
            curvature_floor=curvature_floor(study.differential_privacy, n_params),
            start_terms=start,
        ),
        lambda asks: [over(training, ask) for ask in asks],
    )
    model = {
        "kind": settings.kind,
        "ridge_lambda": penalty,
        "cross_validation": curve,
        "scale": "coefficients act on harmonized features standardized with the pooled "
        "training mean and standard deviation",
        "iterations": fit.iterations,
        "converged": fit.converged,
        "intercept": float(fit.beta[0]),
        "coefficients": dict(zip(params.model_features, map(float, fit.beta[1:]), strict=True)),
    }
    return replace(params, beta=fit.beta), model


def fitted_line(tag: str, nodes: list[int], model: dict) -> str:
    """The log line of a ridge or L1 fit."""
    if "lasso_lambda" in model:
        nonzero = sum(value != 0 for value in model["coefficients"].values())
        return f"{tag}: L1 lambda {model['lasso_lambda']:.4g}, {nonzero} nonzero"
    features, iterations = len(model["coefficients"]), model["iterations"]
    line = f"{tag}: {len(nodes)} sites, {features} features, {iterations} Newton iterations"
    return line + (
        f", ridge lambda {model['ridge_lambda']:.4g}" if model["cross_validation"] else ""
    )


def fit_lasso(federation, study: StudyConfig, params, nodes, partitions, tag, rounds):
    """L1 logistic regression by proximal Newton (docs/methods.md 3.4); the penalty comes from
    the study or from federated inner cross-validation on the training part. Each yield of
    `lasso_steps` is one round (`lasso_round`)."""
    fitted, model = run_steps(
        lasso_steps(study, params, nodes, partitions),
        lambda asks: lasso_round(federation, asks),
    )
    federation.log(fitted_line(tag, nodes, model))
    return fitted, model


def lasso_steps(
    study: StudyConfig, params: PipelineParams, nodes: list[int], partitions
) -> Steps[FitAsk, tuple[PipelineParams, dict]]:
    """`fit_lasso` as a coroutine: yields the asks that can go in one round, receives their
    answers; returns the pipeline with its beta and the model summary. Several fits'
    coroutines can share rounds (`steps.lockstep`).

    The first round asks lambda_max with the Newton terms at beta = 0 where every fit
    starts (each inner fold's and the final fit's, which need no lambda yet); then the
    inner folds walk the lambda path in lockstep (`lasso.cross_validate_steps`), a round
    holding every fold's next ask; then the final fit at the chosen lambda. Every fit runs
    exactly the iterates it runs alone, from the same sums.
    """
    settings = study.model
    n_params = len(params.model_features) + 1
    training = {node: partitions[node] for node in nodes}

    def over(fit: dict[int, Partition], ask: Ask) -> FitAsk:
        return FitAsk(replace(params, beta=ask.beta), fit, ask.what)

    penalty, curve, start = settings.lasso_lambda, None, None
    if penalty is None:
        folds = _inner_folds(study, training)
        at_zero = replace(params, beta=np.zeros(n_params))
        sums, *fold_starts, start = yield [FitAsk(params, training, "lambda-max")] + [
            FitAsk(at_zero, fit, "terms") for fit in [*folds, training]
        ]
        lambdas = lasso.lambda_path(
            lasso.lambda_max(sums), settings.lasso_path_length, settings.lasso_min_ratio
        )
        cv = yield from _translated(
            lasso.cross_validate_steps(len(folds), lambdas, n_params, start_terms=fold_starts),
            lambda asks: [over(folds[fold], ask) for fold, ask in asks],
        )
        penalty = cv.lambda_min
        curve = {"lambdas": cv.lambdas.tolist(), "mean_deviance": cv.criteria.tolist()}
    fit, _ = yield from _translated(
        lasso.fit_lasso_steps(n_params, penalty, start_terms=start),
        lambda asks: [over(training, ask) for ask in asks],
    )
    model = {
        "kind": settings.kind,
        "lasso_lambda": penalty,
        "cross_validation": curve,
        "iterations": fit.iterations,
        "converged": fit.converged,
        "intercept": float(fit.beta[0]),
        "coefficients": dict(zip(params.model_features, map(float, fit.beta[1:]), strict=True)),
    }
    return replace(params, beta=fit.beta), model


# The model kinds whose fits can share rounds (`lasso_round`): `fit_steps` runs them.
STEPPED = ("ridge-logistic", "lasso-logistic")


def fit_steps(
    study: StudyConfig, params: PipelineParams, nodes: list[int], partitions, tag, rounds
) -> Steps[FitAsk, tuple[PipelineParams, dict]]:
    """A ridge or L1 fit as a coroutine of `FitAsk`s, so that several fits' asks can go in
    one round; a ridge fit records its Newton iterations in `rounds`, as `fit_logistic`."""
    if study.model.kind == "lasso-logistic":
        return lasso_steps(study, params, nodes, partitions)
    return logistic_steps(study, params, nodes, partitions, _newton_record(tag, rounds))


def _translated(steps: Steps, translate: Callable[[list], list]) -> Steps:
    """`steps` with each yield's asks translated (answers go back as they come)."""
    try:
        asks = next(steps)
        while True:
            answers = yield translate(asks)
            asks = steps.send(answers)
    except StopIteration as stop:
        return stop.value


def _deviance_summary(total_loss: float, n: int) -> np.ndarray:
    """[held-out deviance, n]: what `lasso.mean_deviance` reads."""
    return np.array([2.0 * total_loss, n])


def fit_network(federation, study: StudyConfig, params, nodes, partitions, tag, rounds):
    """An MLP trained by a Flower strategy on the training sites (not exact: FedAvg & co.)."""
    settings = study.model
    (partition,) = {partitions[node] for node in nodes}  # every design trains one way
    weights = mlp.initial_weights(len(params.model_features), settings.hidden_units, settings.seed)
    result = make_strategy(settings, len(nodes)).start(
        grid=federation.strategy_grid(nodes, Request(params, partition)),
        initial_arrays=ArrayRecord({name: Array(value) for name, value in weights.items()}),
        num_rounds=settings.rounds,
        timeout=study.federation.round_timeout_s,
        train_config=ConfigRecord({"server-round": 0}),
    )
    network = {name: array.numpy() for name, array in result.arrays.items()}
    losses = [
        float(metrics["train-loss"])
        for _, metrics in sorted(result.train_metrics_clientapp.items())
    ]
    for round_number, loss in enumerate(losses, start=1):
        rounds.append({"fit": tag, "phase": "mlp", "round": round_number, "train_loss": loss})
    federation.log(f"{tag}: {len(nodes)} sites, {settings.strategy}, {settings.rounds} rounds")
    model = {
        "kind": settings.kind,
        "strategy": settings.strategy,
        "rounds": settings.rounds,
        "hidden_units": settings.hidden_units,
        "features": params.model_features,
        "n_parameters": int(sum(value.size for value in network.values())),
        "train_loss_by_round": losses,
    }
    return replace(params, network=network), model


FITTERS: dict[str, Fitter] = {
    "ridge-logistic": fit_logistic,
    "lasso-logistic": fit_lasso,
    "mlp": fit_network,
}
