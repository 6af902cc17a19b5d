"""What a site accepts as an MLP round's global weights: the weights its own study implies.

A curious aggregator choosing the weights could plant trap weights (Boenisch et al. 2021,
"When the curious abandon honesty"): first-layer rows and biases that make each ReLU neuron
fire for one training case, so that the neuron's weight update divided by its bias update
is that case's feature row. So a site derives round 1's weights itself
(`mlp.initial_weights` from its study) and refuses any others; at a later round it accepts
only finite weights of its plan's shapes within `model.mlp_step_bound` of the last global
weights it received for that fit (each site clips its own update to `mlp_update_clip`, so
an honest aggregation moves no further), and no round past `model.rounds`. What it
received last, per fit, lives in the node's Flower context state.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedrad.client.plan import Refused
from fedrad.common.config import ModelSettings, StudyConfig
from fedrad.common.differential_privacy import noise_allowance
from fedrad.common.messages import Request
from fedrad.common.models import mlp

_ROUNDS = "mlp:rounds"  # fit -> the last round it received, as JSON (oldest first)
_WEIGHTS = "mlp:weights"  # "<fit>/<name>" -> the last global weights it received
FITS_KEPT = 8  # a study fits one model at a time; a few kept cover a restarted fit
# Float rounding of an honest aggregation (fixed point, then division by the total n).
STEP_SLACK = 1e-9


def accept(request: Request, study: StudyConfig, received: FitWeights) -> None:
    """Refuse an MLP round whose round number, strategy settings or weights this site's
    study does not imply; otherwise keep its weights as the fit's last `received`."""
    settings, params = study.model, request.pipeline
    weights = (params.network if params is not None else None) or {}
    server_round = _server_round(request, settings)
    _check_proximal_mu(request, settings)
    n_inputs = len(params.model_features) if params is not None else 0
    plan = mlp.initial_weights(n_inputs, settings.hidden_units, settings.seed)
    _check_layout(weights, plan)
    fit = fit_of(request)
    if server_round == 1:
        if not all(np.array_equal(weights[name], plan[name]) for name in plan):
            raise Refused("weights-outside-plan", "round 1 weights are not the study's own")
    else:
        sites = len(request.values.get("secagg.peers", [])) or 1
        allowance = noise_allowance(study, mlp.flat(plan).size, sites)
        _check_step(weights, received.last(fit), server_round, settings, allowance)
    received.keep(fit, server_round, weights)


def _server_round(request: Request, settings: ModelSettings) -> int:
    """The round the request names: 1 to model.rounds."""
    try:
        server_round = int(request.values["server-round"])
    except (KeyError, TypeError, ValueError):
        raise Refused("round-outside-plan", "an MLP round without its round number") from None
    if not 1 <= server_round <= settings.rounds:
        raise Refused("round-outside-plan", f"round {server_round} of {settings.rounds}")
    return server_round


def _check_proximal_mu(request: Request, settings: ModelSettings) -> None:
    """FedProx's mu is the study's (no other strategy has one)."""
    planned = settings.proximal_mu if settings.strategy == "fedprox" else 0.0
    asked = request.values.get("proximal-mu", 0.0)
    if float(asked) != planned:
        raise Refused("value-outside-plan", f"proximal-mu {asked!r}, not {planned!r}")


def _check_layout(weights: dict, plan: dict) -> None:
    """The plan's arrays, by name and shape, every value finite."""
    if set(weights) != set(plan) or any(
        np.shape(weights[name]) != plan[name].shape for name in plan
    ):
        raise Refused("weights-outside-plan", "MLP weights of other names or shapes")
    if not all(np.all(np.isfinite(value)) for value in weights.values()):
        raise Refused("value-out-of-bounds", "MLP weights not finite")


def _check_step(
    weights: dict, last: tuple[int, dict] | None, server_round: int, settings, allowance: float
):
    """A later round follows the last round this site received for the fit, and its weights
    lie within the step bound of that round's (plus, under differential privacy, what the
    noise may add: noised weights cannot be trapped, as no case moves them more than the
    noise hides)."""
    if last is None or last[0] != server_round - 1:
        received = "none" if last is None else f"round {last[0]}"
        raise Refused("round-outside-plan", f"round {server_round} after {received} of this fit")
    step, bound = mlp.distance(weights, last[1]), settings.mlp_step_bound + allowance
    if step > bound * (1 + STEP_SLACK):
        raise Refused(
            "step-outside-plan",
            f"round {server_round} weights moved {step:.6g} from round {last[0]}'s, "
            f"beyond model.mlp_step_bound {bound:.6g}",
        )


def fit_of(request: Request) -> str:
    """A fit as the site sees it: its fixed pipeline (by digest) over its partition."""
    partition = request.partition.to_values() if request.partition is not None else {}
    key = json.dumps([request.values.get("pipeline.digest"), partition], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class FitWeights:
    """The last global weights a site received per fit, in its Flower context state (the
    FITS_KEPT most recent fits)."""

    def __init__(self, state: RecordDict):
        self.state = state

    def _rounds(self) -> dict[str, int]:
        if _ROUNDS not in self.state:
            return {}
        return json.loads(str(self.state[_ROUNDS]["fits"]))

    def last(self, fit: str) -> tuple[int, dict[str, np.ndarray]] | None:
        """(round, weights) this site last received for `fit`, if any."""
        rounds = self._rounds()
        if fit not in rounds:
            return None
        prefix = f"{fit}/"
        arrays = self.state[_WEIGHTS]
        weights = {
            key.removeprefix(prefix): arrays[key].numpy()
            for key in arrays
            if key.startswith(prefix)
        }
        return rounds[fit], weights

    def keep(self, fit: str, server_round: int, weights: dict[str, np.ndarray]) -> None:
        rounds = self._rounds()
        rounds.pop(fit, None)
        rounds = dict(list({**rounds, fit: server_round}.items())[-FITS_KEPT:])
        stored = self.state[_WEIGHTS] if _WEIGHTS in self.state else ArrayRecord()
        arrays = {
            key: array
            for key, array in stored.items()
            if key.split("/", 1)[0] in rounds and not key.startswith(f"{fit}/")
        }
        arrays |= {
            f"{fit}/{name}": Array(np.ascontiguousarray(value)) for name, value in weights.items()
        }
        self.state[_WEIGHTS] = ArrayRecord(arrays)
        self.state[_ROUNDS] = ConfigRecord({"fits": json.dumps(rounds)})
