"""Gymnasium front ends of the world-model env: numpy in and out, one compiled program per call,
so a PyTorch RL library can train in the world model.

  env = WorldModelGymEnv(wm_env, params)                 # gymnasium.Env, one scene
  envs = WorldModelVectorEnv(wm_env, params, num_envs=64)  # gymnasium.vector.VectorEnv

The JAX key of a run comes from Gymnasium's `np_random` at `reset(seed=...)` and is split at every
step, so a seeded run is reproducible. Actions: NaN raises ValueError here (on the host, before
the compiled step); out-of-range entries are clipped and counted in `info["clipped_action_count"]`.
The vector env auto-resets in the same step (`AutoresetMode.SAME_STEP`): the observation of an
env that just finished is its next episode's first one; the last one is `info["final_obs"]`
(valid where `info["_final_obs"]`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import jax
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from gymnax.environments import spaces

from roboscape_jax.env.world_model_env import EnvParams, WorldModelEnv


def to_gymnasium_space(space: Any) -> gym.spaces.Space:
    """A gymnax Box or Dict space as the Gymnasium one."""
    if isinstance(space, spaces.Dict):
        return gym.spaces.Dict({k: to_gymnasium_space(v) for k, v in space.spaces.items()})
    dtype, shape = np.dtype(space.dtype), tuple(space.shape)
    return gym.spaces.Box(np.broadcast_to(np.asarray(space.low, dtype), shape),
                          np.broadcast_to(np.asarray(space.high, dtype), shape), shape, dtype)


def gymnasium_spaces(env: WorldModelEnv, params: EnvParams) -> tuple[gym.spaces.Dict,
                                                                      gym.spaces.Box]:
    """(observation space, action space) of one scene, as Gymnasium spaces."""
    return (to_gymnasium_space(env.observation_space(params)),
            to_gymnasium_space(env.action_space(params)))


def _check_actions(actions: Any, shape: tuple[int, ...]) -> np.ndarray:
    actions = np.asarray(actions, np.float32)
    if actions.shape != shape:
        raise ValueError(f"actions must have shape {shape}, got {actions.shape}")
    if np.isnan(actions).any():
        raise ValueError(f"actions contain {int(np.isnan(actions).sum())} NaN values")
    return actions


def _to_numpy(tree: Any) -> Any:
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _new_key(np_random: np.random.Generator) -> jax.Array:
    return jax.random.PRNGKey(int(np_random.integers(2**31)))


class WorldModelGymEnv(gym.Env):
    """One scene at a time, no auto-reset (Gymnasium's contract: call `reset` after the end).

    `reset(options={"scene": i})` starts in scene i instead of a random one.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, env: WorldModelEnv, params: EnvParams, render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.env, self.params, self.render_mode = env, params, render_mode
        self.observation_space, self.action_space = gymnasium_spaces(env, params)
        self._reset = jax.jit(env.reset)
        self._reset_to = jax.jit(env.reset_to)
        self._step = jax.jit(env.step_env)
        self._key = self._state = self._frame = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._key, rng = jax.random.split(_new_key(self.np_random))
        scene = (options or {}).get("scene")
        if scene is None:
            obs, self._state = self._reset(rng, self.params)
        else:
            obs, self._state = self._reset_to(np.int32(scene), self.params)
        obs = _to_numpy(obs)
        self._frame = obs["frame"]
        return obs, {"scene": int(self._state.scene)}

    def step(self, action):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        action = _check_actions(action, self.action_space.shape)
        self._key, rng = jax.random.split(self._key)
        obs, self._state, *out = self._step(rng, self._state, action, self.params)
        obs, (reward, terminated, truncated, info) = _to_numpy(obs), _to_numpy(out)
        self._frame = obs["frame"]
        return obs, float(reward), bool(terminated), bool(truncated), info

    def render(self) -> np.ndarray | None:
        """The current frame, uint8 [H, W, 3] (third view over wrist), for "rgb_array"."""
        return self._frame if self.render_mode == "rgb_array" else None


class WorldModelVectorEnv(VectorEnv):
    """`num_envs` scenes stepped by one jitted `vmap(env.step)`; auto-resets in the same step."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, env: WorldModelEnv, params: EnvParams, num_envs: int):
        if num_envs < 1:
            raise ValueError(f"num_envs must be positive, got {num_envs}")
        self.env, self.params, self.num_envs = env, params, num_envs
        self.single_observation_space, self.single_action_space = gymnasium_spaces(env, params)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
        self._step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
        self._key = self._state = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed, options=options)
        self._key, rng = jax.random.split(_new_key(self.np_random))
        obs, self._state = self._reset(jax.random.split(rng, self.num_envs), self.params)
        return _to_numpy(obs), {"scene": np.asarray(self._state.scene)}

    def step(self, actions):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        actions = _check_actions(actions, self.action_space.shape)
        self._key, rng = jax.random.split(self._key)
        obs, self._state, *out = self._step(jax.random.split(rng, self.num_envs), self._state,
                                            actions, self.params)
        obs, (reward, terminated, truncated, info) = _to_numpy(obs), _to_numpy(out)
        info["final_obs"] = info.pop("final_observation")
        info["_final_obs"] = terminated | truncated
        return obs, reward, terminated, truncated, info
