"""The observation adapter for real (simulator) frames builds what the world-model env returns:
same keys, shapes, dtypes and ranges, the same decoded reset frame, the same gripper proxy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax.env import ObservationAdapter, observation_frames
from roboscape_jax.policies.image import ImageActorCritic
from tests.env.conftest import adapter_like


def test_adapter_reset_matches_the_world_model_env(env_and_params, tokenizer):
    env, params = env_and_params
    tok, tok_params = tokenizer
    adapter = adapter_like(env, tok)
    env_obs, _ = env.reset_to(jnp.asarray(1), params)
    real_frame = np.asarray(params.scenes.initial_frame[1])  # the "rendered" frame of scene 1
    obs, state = adapter.reset(tok_params, real_frame, params.scenes.instruction[1])
    assert set(obs) == set(env_obs)
    space = env.observation_space(params)
    for key in env_obs:
        assert obs[key].shape == env_obs[key].shape, key
        assert obs[key].dtype == env_obs[key].dtype, key
        assert space.spaces[key].contains(obs[key]), key
    # Encode -> decode, as the env shows its reset frame (not the raw render); another batch
    # size compiles another program, so a rare pixel may round the other way.
    diff = np.abs(np.asarray(obs["frame"], int) - np.asarray(env_obs["frame"], int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert not np.array_equal(obs["frame"], real_frame)
    np.testing.assert_array_equal(obs["gripper"], env_obs["gripper"])
    np.testing.assert_array_equal(obs["instruction"], env_obs["instruction"])
    dist, value = ImageActorCritic(conv_features=(4,), conv_out=8, hidden=(8,)).init_with_output(
        jax.random.PRNGKey(0), obs)[0]  # a policy reads it as it reads the env's
    assert dist.mean.shape == (7,) and value.shape == ()


def test_adapter_step_integrates_the_gripper_as_the_env_does(env_and_params, tokenizer):
    env, params = env_and_params
    tok, tok_params = tokenizer
    adapter = adapter_like(env, tok)
    frame = np.asarray(params.scenes.goal_frame[0])
    _, env_state = env.reset_to(jnp.asarray(0), params)
    _, state = adapter.reset(tok_params, frame, params.scenes.instruction[0])
    close = jnp.array([0.1, 0, 0, 0, 0, 0, -1.0])
    grippers = []
    for i in range(3):
        env_obs, env_state, *_ = env.step_env(jax.random.PRNGKey(i), env_state, close, params)
        obs, state = adapter.step(tok_params, state, frame, close)
        np.testing.assert_array_equal(obs["gripper"], env_obs["gripper"])
        grippers.append(float(obs["gripper"][0]))
    assert grippers == [0.5, 0.0, -0.5]
    np.testing.assert_array_equal(obs["frame"], observation_frames(tok, tok_params,
                                                                   frame[None])[0])
    _, state = adapter.step(tok_params, state, frame, jnp.array([0, 0, 0, 0, 0, 0, 5.0]))
    assert float(state.gripper) == 0.0  # a command beyond +1 is clipped, as the env clips it


def test_raw_adapter_passes_frames_and_rejects_float_frames(env_and_params):
    _, params = env_and_params
    frame = np.asarray(params.scenes.initial_frame[0])
    obs, _ = ObservationAdapter(None).reset(None, frame, params.scenes.instruction[0])
    np.testing.assert_array_equal(obs["frame"], frame)
    with pytest.raises(ValueError, match="uint8"):
        ObservationAdapter(None).reset(None, frame.astype(np.float32) / 255,
                                       params.scenes.instruction[0])
