"""Policies driven step by step from outside JAX (e.g. in the ManiSkill simulator).

  controller = AdaptedPolicy(adapter, tokenizer_params, act_fn, params)
  controller.reset(frame, instruction, seed)   # the episode's first real frame
  action = controller.act(frame)               # every step, the latest real frame

`AdaptedPolicy` builds each observation with `env.observation.ObservationAdapter` (the frames the
world-model env would show, the gripper proxy integrated from the actions it took), so a policy
trained in the world model sees the same kind of observation here. `RandomPolicy` draws uniform
actions in [-1, 1]: the reference row of an evaluation. Both hold per-episode state (the
simulator loop is not functional); the jitted parts are pure.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from roboscape_jax.env.observation import AdapterState, ObservationAdapter
from roboscape_jax.types import PyTree


class AdaptedPolicy:
    """A trained policy (`loading.make_act_fn`) behind the observation adapter."""

    def __init__(self, adapter: ObservationAdapter, tokenizer_params: PyTree,
                 act_fn: Callable, params: PyTree):
        self.adapter, self.tokenizer_params = adapter, tokenizer_params
        self.act_fn, self.params = act_fn, params
        self._state: AdapterState | None = None
        self._last: np.ndarray | None = None
        self._key, self._t = jax.random.PRNGKey(0), 0

    def reset(self, frame: np.ndarray, instruction: np.ndarray, seed: int) -> None:
        self._state, self._last = None, None
        self._instruction = np.asarray(instruction, np.float32)
        self._key, self._t = jax.random.PRNGKey(seed), 0

    def observe(self, frame: np.ndarray) -> dict:
        """The observation of `frame` (advancing the adapter's state past the last action)."""
        if self._last is None:
            obs, self._state = self.adapter.reset(self.tokenizer_params, frame, self._instruction)
        else:
            obs, self._state = self.adapter.step(self.tokenizer_params, self._state, frame,
                                                 self._last)
        return obs

    def act(self, frame: np.ndarray) -> np.ndarray:
        obs = self.observe(frame)
        key = jax.random.fold_in(self._key, self._t)
        self._last = np.asarray(self.act_fn(self.params, obs, key), np.float32)
        self._t += 1
        return self._last


class RandomPolicy:
    """Uniform actions in [-1, 1]^action_dim, seeded per episode."""

    def __init__(self, action_dim: int = 7):
        self.action_dim = action_dim
        self._rng = np.random.default_rng(0)

    def reset(self, frame: np.ndarray, instruction: np.ndarray, seed: int) -> None:
        del frame, instruction
        self._rng = np.random.default_rng(seed)

    def act(self, frame: np.ndarray) -> np.ndarray:
        del frame
        return self._rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)
