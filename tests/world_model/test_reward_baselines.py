"""The learned reward baselines (embedding head on world-model features, proxy MLP on pixels)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax.env.reward_baselines import (
    fit_reward_head,
    pooled_frame_features,
)
from roboscape_jax.world_model.model import last_frame_outputs
from tests.world_model.conftest import make_model, random_inputs


def test_fit_reward_head_learns_a_nonlinear_reward_and_generalises():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 6)).astype(np.float32) * 3.0 + 1.0  # standardised inside
    reward = np.tanh(x[:, 0] - 1.0) + 0.5 * ((x[:, 1] - 1.0) / 3.0) ** 2
    head, metrics = fit_reward_head(x[:1500], reward[:1500], steps=600, batch_size=128,
                                    hidden=(32, 32))
    assert metrics["train_mse"] < 0.25 * metrics["train_mse_of_mean"]  # a constant scores 1.0
    held_out = np.asarray(head.predict(jnp.asarray(x[1500:])))
    assert held_out.shape == (500,)
    assert np.mean((held_out - reward[1500:]) ** 2) < 0.3 * np.var(reward[1500:])


def test_fit_reward_head_rejects_bad_input():
    x = np.zeros((10, 3), np.float32)
    with pytest.raises(ValueError, match="NaN"):
        fit_reward_head(np.where(np.arange(30).reshape(10, 3) == 4, np.nan, x), np.zeros(10),
                        steps=1)
    with pytest.raises(ValueError, match=r"\[N, F\]"):
        fit_reward_head(x, np.zeros(9), steps=1)


def test_reward_head_checks_feature_width():
    head, _ = fit_reward_head(np.ones((8, 3), np.float32), np.arange(8.0), steps=2,
                              hidden=(4,))
    with pytest.raises(AssertionError):
        head.predict(jnp.ones((2, 4)))


def test_pooled_frame_features_shape_range_and_divisibility():
    frames = np.full((2, 16, 8, 3), 255, np.uint8)
    frames[1] = 0
    features = pooled_frame_features(frames, pool=4)
    assert features.shape == (2, 4 * 2 * 3)
    np.testing.assert_allclose(features[0], 1.0)
    np.testing.assert_allclose(features[1], 0.0)
    with pytest.raises(ValueError, match="divisible"):
        pooled_frame_features(np.zeros((1, 10, 8, 3), np.uint8), pool=4)


def test_world_model_frame_embedding_is_the_last_frames_features():
    model, params = make_model("action")
    tokens, actions, _ = random_inputs(model.config, jax.random.PRNGKey(3))
    done, embedding = last_frame_outputs(model, params, tokens, actions)
    np.testing.assert_allclose(done, model.apply(params, tokens, actions).done[:, -1], rtol=1e-6)
    assert embedding.shape == (2, model.config.width)
    assert np.isfinite(np.asarray(embedding)).all()
    # Causal in time: the last frame's features change when its own tokens change.
    other = tokens.at[:, -1].set((tokens[:, -1] + 1) % 2**model.config.num_bits)
    assert not np.allclose(embedding, last_frame_outputs(model, params, other, actions)[1])
