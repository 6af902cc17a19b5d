"""The inputs that drove a prediction: exact shares of the logit for linear models, and
occlusion to the training mean for any model (the MLP)."""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit

from fedrad.client.attribution import linear_contributions, occlusion, top_inputs
from fedrad.client.local_pipeline import predict
from fedrad.common.pipeline import PipelineParams

RNG = np.random.default_rng(11)


def test_linear_contributions_and_the_intercept_sum_to_each_logit():
    beta = RNG.normal(size=5)
    z = RNG.normal(size=(7, 4))
    params = PipelineParams(features=list("abcd"), beta=beta)
    shares = linear_contributions(beta, z)
    assert np.allclose(beta[0] + shares.sum(axis=1), logit(predict(params, z)), atol=1e-12)


def test_occlusion_finds_the_one_input_a_model_reads():
    z = RNG.normal(size=(6, 3))

    def model(inputs):  # reads only input 1
        return expit(2.0 * inputs[:, 1])

    shares = occlusion(model, z)
    assert np.allclose(shares[:, [0, 2]], 0.0)
    assert np.allclose(shares[:, 1], model(z) - 0.5)
    assert all(text.startswith("b:") for text in top_inputs(shares, list("abc")))


def test_top_inputs_ranks_by_absolute_share_with_sign():
    shares = np.array([[0.1, -0.9, 0.3, 0.0]])
    assert top_inputs(shares, list("abcd")) == ["b:-0.900; c:+0.300; a:+0.100"]
