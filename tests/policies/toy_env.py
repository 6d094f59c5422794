"""A toy gymnax-1.0 env with the world-model env's dict observation, small frames and a 7-D
Box action: the reward is -mean((a - c)^2) for a hidden constant c the frame's brightness shows."""

import jax
import jax.numpy as jnp
from gymnax.environments import spaces

FRAME = (16, 8, 3)


class ToyImageEnv:
    """State: (c in [-1, 1], time). Episodes last `length` steps; `step` auto-resets."""

    def __init__(self, action_dim: int = 7, length: int = 4):
        self.action_dim, self.length = action_dim, length

    def observation_space(self, params=None) -> spaces.Dict:
        return spaces.Dict({"frame": spaces.Box(0, 255, FRAME, jnp.uint8),
                            "instruction": spaces.Box(-1.0, 1.0, (4,), jnp.float32),
                            "gripper": spaces.Box(-1.0, 1.0, (1,), jnp.float32)})

    def action_space(self, params=None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (self.action_dim,), jnp.float32)

    def _obs(self, state):
        c, t = state
        frame = jnp.full(FRAME, jnp.round((c + 1.0) * 127.5), jnp.float32).astype(jnp.uint8)
        return {"frame": frame, "instruction": jnp.ones((4,)) * 0.5,
                "gripper": jnp.full((1,), t / self.length, jnp.float32)}

    def reset(self, key, params=None):
        state = (jax.random.uniform(key, (), minval=-1.0, maxval=1.0), jnp.zeros((), jnp.int32))
        return self._obs(state), state

    def step(self, key, state, action, params=None):
        c, t = state
        reward = -jnp.mean(jnp.square(jnp.clip(action, -1, 1) - c))
        next_state = (c, t + 1)
        truncated = next_state[1] >= self.length
        final_obs = self._obs(next_state)
        obs_re, state_re = self.reset(key)
        state = jax.tree.map(lambda r, s: jnp.where(truncated, r, s), state_re, next_state)
        obs = jax.tree.map(lambda r, s: jnp.where(truncated, r, s), obs_re, final_obs)
        info = {"final_observation": final_obs}
        return obs, state, reward, jnp.zeros((), bool), truncated, info
