"""Phase 5: the model on the selected, scaled features. Ridge and L1 logistic regression
are exact (Newton from summed gradients and Hessians, METHODS.md 3.3-3.4); the MLP is
trained by a Flower strategy on the training sites.

Each fitter returns the pipeline with its model and a summary for results.json that
names its kind and, for every kind, `features` (the inputs the model reads).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord

from fedrad.common.config import StudyConfig
from fedrad.common.messages import Kind, LossReply, Request
from fedrad.common.models import lasso, mlp
from fedrad.common.models.logistic import NewtonTerms, fit_newton, sum_terms
from fedrad.common.pipeline import PipelineParams
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
        return sum_terms(federation.ask(Kind.NEWTON, requests, shaped).values())

    return terms_at


def summed_loss(federation: Federation, params: PipelineParams, nodes, partitions, role="train"):
    """Sum of the sites' negative log-likelihoods at beta (and their case count)."""

    def loss_at(beta: np.ndarray) -> tuple[float, int]:
        requests = training_requests(
            replace(params, beta=beta), nodes, partitions, values={"role": role}
        )
        replies: dict[int, LossReply] = federation.ask(Kind.LOSS, requests)
        return lasso.sum_losses([(reply.loss, reply.n) for reply in replies.values()])

    return loss_at


def fit_logistic(federation, study: StudyConfig, params, nodes, partitions, tag, rounds):
    settings = study.model
    n_params = len(params.model_features) + 1

    def record(iteration: int, deviance: float) -> None:
        rounds.append({"fit": tag, "phase": "newton", "iteration": iteration, "deviance": deviance})

    fit = fit_newton(
        summed_terms(federation, params, nodes, partitions),
        n_params,
        ridge_lambda=settings.ridge_lambda,
        tolerance=settings.newton_tolerance,
        max_iterations=settings.max_newton_iterations,
        on_iteration=record,
    )
    federation.log(
        f"{tag}: {len(nodes)} sites, {n_params - 1} features, {fit.iterations} Newton iterations"
    )
    model = {
        "kind": settings.kind,
        "ridge_lambda": settings.ridge_lambda,
        "scale": "coefficients act on harmonized features standardized with the pooled "
        "training mean and standard deviation",
        "iterations": fit.iterations,
        "converged": fit.converged,
        "intercept": float(fit.beta[0]),
        "coefficients": dict(zip(params.model_features, map(float, fit.beta[1:]), strict=True)),
    }
    return replace(params, beta=fit.beta), model


def fit_lasso(federation, study: StudyConfig, params, nodes, partitions, tag, rounds):
    """L1 logistic regression by proximal Newton (METHODS.md 3.4); the penalty comes from
    the study or from federated inner cross-validation on the training part."""
    settings = study.model
    n_params = len(params.model_features) + 1
    penalty, curve = settings.lasso_lambda, None
    if penalty is None:
        replies = federation.ask(Kind.LAMBDA_MAX, training_requests(params, nodes, partitions))
        sums = list(replies.values())
        lambdas = lasso.lambda_path(
            lasso.lambda_max(sum(sums[1:], sums[0])),
            settings.lasso_path_length,
            settings.lasso_min_ratio,
        )
        folds = []
        for inner in range(study.validation.inner_folds):
            inner_parts = {node: replace(partitions[node], inner=inner) for node in nodes}
            held_out = summed_loss(federation, params, nodes, inner_parts, role="test")
            folds.append(
                lasso.LassoFold(
                    summed_terms(federation, params, nodes, inner_parts),
                    summed_loss(federation, params, nodes, inner_parts),
                    lambda beta, loss=held_out: _deviance_summary(*loss(beta)),
                )
            )
        cv = lasso.cross_validate_lasso(folds, lambdas, n_params)
        penalty = cv.lambda_min
        curve = {"lambdas": cv.lambdas.tolist(), "mean_deviance": cv.criteria.tolist()}
    fit = lasso.fit_lasso(
        summed_terms(federation, params, nodes, partitions),
        summed_loss(federation, params, nodes, partitions),
        n_params,
        penalty,
    )
    federation.log(f"{tag}: L1 lambda {penalty:.4g}, {int(np.sum(fit.beta[1:] != 0))} nonzero")
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
