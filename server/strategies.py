"""The Flower strategy a study's MLP is trained with, from its model settings."""

from __future__ import annotations

from flwr.serverapp.strategy import FedAvg, FedMedian, FedProx, FedTrimmedAvg, Krum, Strategy

from fedrad.common.config import ModelSettings


def make_strategy(settings: ModelSettings, n_sites: int) -> Strategy:
    """Train on every training site each round; wait for all of them, evaluate nothing
    (evaluation is the study's own, from score histograms)."""
    sampling = {
        "fraction_train": 1.0,
        "fraction_evaluate": 0.0,
        "min_train_nodes": n_sites,
        "min_evaluate_nodes": 0,
        "min_available_nodes": n_sites,
    }
    match settings.strategy:
        case "fedavg":
            return FedAvg(**sampling)
        case "fedprox":
            return FedProx(**sampling, proximal_mu=settings.proximal_mu)
        case "fedmedian":
            return FedMedian(**sampling)
        case "fedtrimmedavg":
            return FedTrimmedAvg(**sampling, beta=settings.trim_fraction)
        case "krum":
            return Krum(**sampling, num_malicious_nodes=settings.assumed_malicious_sites)
    raise ValueError(f"unknown strategy {settings.strategy!r}")
