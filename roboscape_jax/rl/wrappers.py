"""Wrappers for functional envs with the gymnax 1.0 API.

``step(key, state, action, params) -> (obs, state, reward, terminated,
truncated, info)``. gymnax 1.0 envs already auto-reset inside ``step`` and put
the pre-reset observation in ``info["final_observation"]``; ``AutoResetWrapper``
adds the same for envs whose ``step`` does not reset.
"""

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct

StepOut = tuple[Any, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]


class GymnaxWrapper:
    """Base wrapper; attributes not defined here are forwarded to the inner env."""

    def __init__(self, env: Any):
        self._env = env

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


@struct.dataclass
class LogEnvState:
    """Running and last-finished episode statistics of one env."""

    env_state: Any
    episode_returns: jax.Array
    episode_lengths: jax.Array
    returned_episode_returns: jax.Array
    returned_episode_lengths: jax.Array
    timestep: jax.Array


class LogWrapper(GymnaxWrapper):
    """Tracks episode returns; reports them in ``info`` (PureJaxRL's keys).

    ``info["returned_episode_returns"]`` holds the return of the last finished
    episode, ``info["returned_episode"]`` marks steps that finished one
    (terminated or truncated).
    """

    def reset(self, key: chex.PRNGKey, params: Any = None) -> tuple[Any, LogEnvState]:
        obs, env_state = self._env.reset(key, params)
        zero_f, zero_i = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
        state = LogEnvState(env_state, zero_f, zero_i, zero_f, zero_i, zero_i)
        return obs, state

    def step(
        self, key: chex.PRNGKey, state: LogEnvState, action: Any, params: Any = None
    ) -> StepOut:
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params
        )
        done = jnp.logical_or(terminated, truncated)
        new_return = state.episode_returns + reward
        new_length = state.episode_lengths + 1
        state = LogEnvState(
            env_state=env_state,
            episode_returns=jnp.where(done, 0.0, new_return),
            episode_lengths=jnp.where(done, 0, new_length),
            returned_episode_returns=jnp.where(done, new_return, state.returned_episode_returns),
            returned_episode_lengths=jnp.where(done, new_length, state.returned_episode_lengths),
            timestep=state.timestep + 1,
        )
        info = {
            **info,
            "returned_episode_returns": state.returned_episode_returns,
            "returned_episode_lengths": state.returned_episode_lengths,
            "timestep": state.timestep,
            "returned_episode": done,
        }
        return obs, state, reward, terminated, truncated, info


class ClipActionWrapper(GymnaxWrapper):
    """Clips continuous actions into [low, high] (the Box bounds by default).

    Pairs with an unbounded Gaussian policy: PPO keeps the log-prob of the
    unclipped sample while the env only ever sees valid actions.
    """

    def __init__(self, env: Any, low: float | None = None, high: float | None = None):
        super().__init__(env)
        self._low, self._high = low, high

    def step(self, key: chex.PRNGKey, state: Any, action: jax.Array, params: Any = None) -> StepOut:
        space = self._env.action_space(params)
        low = space.low if self._low is None else self._low
        high = space.high if self._high is None else self._high
        return self._env.step(key, state, jnp.clip(action, low, high), params)


class AutoResetWrapper(GymnaxWrapper):
    """Resets on done for envs whose ``step`` does not; adds final_observation.

    Don't wrap gymnax built-ins with it: their ``step`` already resets.
    """

    def step(self, key: chex.PRNGKey, state: Any, action: Any, params: Any = None) -> StepOut:
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward, terminated, truncated, info = self._env.step(
            key_step, state, action, params
        )
        done = jnp.logical_or(terminated, truncated)
        obs_re, state_re = self._env.reset(key_reset, params)
        state = jax.tree.map(lambda r, s: jnp.where(done, r, s), state_re, state_st)
        obs = jax.tree.map(lambda r, s: jnp.where(done, r, s), obs_re, obs_st)
        info = {**info, "final_observation": obs_st}
        return obs, state, reward, terminated, truncated, info
