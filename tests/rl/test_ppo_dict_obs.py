"""PPO on dict (pytree) observations: a CartPole whose observation is split into a dict trains
exactly as the plain one, and a network that cannot read dicts fails at start."""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from roboscape_jax.policies import ActorCritic
from roboscape_jax.rl import GymnaxWrapper, LogWrapper, PPOConfig, make_ppo
from roboscape_jax.rl.ppo import dummy_observation

TINY = PPOConfig(
    num_envs=2, num_steps=16, total_timesteps=2 * 32, update_epochs=2, num_minibatches=2
)


def split(obs):
    return {"position": obs[..., :2], "velocity": {"values": obs[..., 2:]}}


class DictCartPole(GymnaxWrapper):
    """CartPole with obs {"position": [2], "velocity": {"values": [2]}} (nested on purpose)."""

    def observation_space(self, params):
        box = spaces.Box(-jnp.inf, jnp.inf, (2,), jnp.float32)
        return spaces.Dict({"position": box, "velocity": spaces.Dict({"values": box})})

    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return split(obs), state

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        if "final_observation" in info:
            info = {**info, "final_observation": split(info["final_observation"])}
        return split(obs), state, reward, terminated, truncated, info


class ConcatNetwork:
    """Reads the dict by concatenating it back; otherwise the plain ActorCritic (same params)."""

    def __init__(self, net):
        self.net, self.action_dim, self.discrete = net, net.action_dim, net.discrete

    @staticmethod
    def _concat(obs):
        return jnp.concatenate([obs["position"], obs["velocity"]["values"]], axis=-1)

    def init(self, rng, obs):
        return self.net.init(rng, self._concat(obs))

    def apply(self, params, obs):
        return self.net.apply(params, self._concat(obs))


@pytest.fixture(scope="module")
def cartpole():
    return gymnax.make("CartPole-v1")


def test_dummy_observation_follows_nested_dict_space(cartpole):
    env, params = cartpole
    dummy = dummy_observation(DictCartPole(env).observation_space(params))
    assert jax.tree.map(jnp.shape, dummy) == {"position": (2,), "velocity": {"values": (2,)}}
    assert dummy_observation(env.observation_space(params)).shape == (4,)


def test_dict_observations_train_exactly_like_the_flat_ones(cartpole):
    env, params = cartpole
    flat = make_ppo(TINY, LogWrapper(env), params, ActorCritic(2))
    nested = make_ppo(TINY, LogWrapper(DictCartPole(env)), params, ConcatNetwork(ActorCritic(2)))
    runner_flat, metrics_flat = jax.jit(flat.train)(jax.random.key(0))
    runner_dict, metrics_dict = jax.jit(nested.train)(jax.random.key(0))
    assert runner_dict.obs["velocity"]["values"].shape == (TINY.num_envs, 2)
    np.testing.assert_allclose(split(runner_flat.obs)["position"], runner_dict.obs["position"])
    for key in ("total_loss", "value_loss", "reward", "returned_episode_returns"):
        np.testing.assert_allclose(metrics_flat[key], metrics_dict[key], rtol=1e-5, err_msg=key)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 runner_flat.train_state.params, runner_dict.train_state.params)


def test_network_that_cannot_read_the_dict_fails_at_start(cartpole):
    env, params = cartpole
    with pytest.raises(ValueError, match="network cannot read the env's observations"):
        make_ppo(TINY, LogWrapper(DictCartPole(env)), params, ActorCritic(2))
