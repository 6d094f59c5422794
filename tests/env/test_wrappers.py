"""The flat-observation adapter: the existing PPO trainer accepts the world-model env as is."""

import jax
import jax.numpy as jnp
import numpy as np

from roboscape_jax.env.wrappers import FlattenObservation, flatten_observation
from roboscape_jax.policies import ActorCritic
from roboscape_jax.rl import LogWrapper, PPOConfig, make_ppo

TINY = PPOConfig(num_envs=2, num_steps=2, total_timesteps=4, update_epochs=1, num_minibatches=1)


def test_flatten_observation_by_hand():
    obs = {"frame": jnp.full((2, 2, 1, 3), 255, jnp.uint8), "instruction": jnp.zeros((2, 2)),
           "gripper": -jnp.ones((2, 1))}
    np.testing.assert_allclose(flatten_observation(obs), [[1] * 6 + [0, 0, -1]] * 2)


def test_ppo_traces_in_the_world_model_env(env_and_params):
    env, params = env_and_params
    flat = LogWrapper(FlattenObservation(env))
    size = 128 * 64 * 3 + 384 + 1
    assert flat.observation_space(params).shape == (size,)
    fns = make_ppo(TINY, flat, params, ActorCritic(7, discrete=False, hidden=(8,)))
    runner, metrics = jax.eval_shape(fns.train, jax.random.PRNGKey(0))  # traces, no compile
    assert runner.obs.shape == (TINY.num_envs, size) and metrics["total_loss"].shape == (1,)
