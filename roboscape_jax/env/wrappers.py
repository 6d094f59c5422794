"""Adapters between the world-model env's dict observation and policies that read one vector.

`FlattenObservation` lets the MLP actor-critic (which reads one vector) run in the world model;
`rl.ppo` itself takes dict observations, and the image actor-critic (`policies.image`) reads the
dict directly.
"""

from __future__ import annotations

import math
from typing import Any

import chex
import jax
import jax.numpy as jnp
from gymnax.environments import spaces

from roboscape_jax.rl.wrappers import GymnaxWrapper, StepOut

OBS_KEYS = ("frame", "instruction", "gripper")


def flatten_observation(obs: dict[str, jax.Array]) -> jax.Array:
    """{frame uint8 [..., H, W, 3], instruction [..., E], gripper [..., 1]} -> float32
    [..., H*W*3 + E + 1]: the frame scaled to [0, 1], then the instruction, then the gripper."""
    lead = obs["gripper"].shape[:-1]
    frame = obs["frame"].astype(jnp.float32).reshape(*lead, -1) / 255.0
    return jnp.concatenate([frame, obs["instruction"].astype(jnp.float32),
                            obs["gripper"].astype(jnp.float32)], axis=-1)


class FlattenObservation(GymnaxWrapper):
    """Observations (and `info["final_observation"]`) as one float32 vector in [-1, 1]."""

    def observation_space(self, params: Any) -> spaces.Box:
        inner = self._env.observation_space(params).spaces
        size = sum(math.prod(inner[k].shape) for k in OBS_KEYS)
        return spaces.Box(-1.0, 1.0, (size,), jnp.float32)

    def reset(self, key: chex.PRNGKey, params: Any = None) -> tuple[jax.Array, Any]:
        obs, state = self._env.reset(key, params)
        return flatten_observation(obs), state

    def step(self, key: chex.PRNGKey, state: Any, action: Any, params: Any = None) -> StepOut:
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action,
                                                                         params)
        if "final_observation" in info:
            info = {**info, "final_observation": flatten_observation(info["final_observation"])}
        return flatten_observation(obs), state, reward, terminated, truncated, info
