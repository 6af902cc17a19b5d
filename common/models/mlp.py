"""A small multilayer perceptron for Flower strategies (FedAvg, FedProx, robust variants).

Weights travel as a dict of numpy arrays (torch `state_dict` names). Training uses
torch; scoring is plain numpy, so evaluating a site needs no torch import.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def _module(n_inputs: int, hidden_units: int):
    import torch

    class MLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = torch.nn.Linear(n_inputs, hidden_units)
            self.output = torch.nn.Linear(hidden_units, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.output(torch.relu(self.hidden(x))).squeeze(-1)

    return MLP()


def initial_weights(n_inputs: int, hidden_units: int, seed: int) -> dict[str, np.ndarray]:
    """PyTorch's default initialization, reproducible from `seed`."""
    import torch

    torch.manual_seed(seed)
    module = _module(n_inputs, hidden_units)
    return {name: value.detach().numpy().copy() for name, value in module.state_dict().items()}


def train_local(
    weights: dict[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    proximal_mu: float,
    seed: int,
) -> tuple[dict[str, np.ndarray], float]:
    """Mini-batch SGD on this site's cases from the global `weights`; returns new weights and
    the mean training loss. `proximal_mu` > 0 adds FedProx's (mu/2)||w - w_global||^2."""
    import torch

    torch.manual_seed(seed)
    module = _module(x.shape[1], weights["hidden.weight"].shape[0])
    module.load_state_dict({name: torch.from_numpy(value) for name, value in weights.items()})
    anchor = [p.detach().clone() for p in module.parameters()]
    optimizer = torch.optim.SGD(module.parameters(), lr=learning_rate)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    features = torch.from_numpy(np.asarray(x, dtype=np.float32))
    labels = torch.from_numpy(np.asarray(y, dtype=np.float32))
    losses = []
    for _ in range(epochs):
        for batch in torch.randperm(len(labels)).split(batch_size):
            optimizer.zero_grad()
            loss = loss_fn(module(features[batch]), labels[batch])
            if proximal_mu > 0:
                pairs = zip(module.parameters(), anchor, strict=True)
                drift = sum(((p - a) ** 2).sum() for p, a in pairs)
                loss = loss + proximal_mu / 2 * drift
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    trained = {name: value.detach().numpy().copy() for name, value in module.state_dict().items()}
    return trained, float(np.mean(losses)) if losses else float("nan")


def predict(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """P(positive class) for feature rows `x`."""
    hidden = np.maximum(x @ weights["hidden.weight"].T + weights["hidden.bias"], 0.0)
    return expit(hidden @ weights["output.weight"].T + weights["output.bias"]).ravel()
