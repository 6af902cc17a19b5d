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


def distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """The L2 norm of a - b over every array (the same names in both)."""
    return float(np.sqrt(sum(np.sum((_wide(a[n]) - _wide(b[n])) ** 2) for n in a)))


def clipped(
    start: dict[str, np.ndarray], trained: dict[str, np.ndarray], bound: float
) -> dict[str, np.ndarray]:
    """`start` plus the local update (trained - start) shrunk to L2 norm `bound` if longer, in
    float64: any weighted mean of such weights then lies within `bound` of `start`, and it is
    the same mean whether the aggregator averages the weights or a masked total of them."""
    norm = distance(trained, start)
    scale = bound / norm if norm > bound else 1.0
    return {
        name: _wide(start[name]) + scale * (_wide(trained[name]) - _wide(start[name]))
        for name in start
    }


def _wide(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64)


def flat(weights: dict[str, np.ndarray]) -> np.ndarray:
    """Every array flattened, end to end in the order of their names (both sides' order)."""
    return np.concatenate([np.ravel(weights[name]) for name in sorted(weights)])


def shaped(vector: np.ndarray, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`flat`'s inverse: `vector` cut into arrays of the names and shapes of `like`."""
    arrays, offset = {}, 0
    for name in sorted(like):
        size = like[name].size
        arrays[name] = vector[offset : offset + size].reshape(like[name].shape)
        offset += size
    return {name: arrays[name] for name in like}


def predict(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """P(positive class) for feature rows `x`."""
    hidden = np.maximum(x @ weights["hidden.weight"].T + weights["hidden.bias"], 0.0)
    return expit(hidden @ weights["output.weight"].T + weights["output.bias"]).ravel()
