"""The world model's endogenous reward, RoboScape-R Eqs. (5), (7)-(8):

  r_t = r_dense + r_sparse,  r_dense = 1 - LPIPS_alex(o_t, o_goal),  r_sparse = c * [d_t >= tau].

AlexNet LPIPS v0.1 as in the authors' environment (`tokenizer.losses.lpips_distance`). Frames are
the two camera views stacked (third view over wrist); `views` picks what the dense term looks at.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from roboscape_jax.tokenizer.api import frames_to_model_input
from roboscape_jax.tokenizer.losses import lpips_distance
from roboscape_jax.types import PyTree

VIEWS = ("both", "third")


def select_views(frames: jax.Array, views: str) -> jax.Array:
    """[B, H, W, 3] two-view frames -> the rows the reward looks at: all ("both") or the top half
    (the third view, "third")."""
    if views == "both":
        return frames
    if views == "third":
        return frames[:, : frames.shape[1] // 2]
    raise ValueError(f"views must be one of {VIEWS}, got {views!r}")


def dense_reward(lpips_params: PyTree, frame: jax.Array, goal: jax.Array,
                 views: str = "both") -> jax.Array:
    """Eq. (5): r_dense = 1 - LPIPS_alex(o_t, o_goal).

    Args: frame, goal: uint8 [B, H, W, 3] (or float in [0, 1]); views: one of VIEWS.
    Returns: float32 [B]; 1 for identical frames.
    """
    chex.assert_equal_shape([frame, goal])
    x = frames_to_model_input(select_views(frame, views))
    y = frames_to_model_input(select_views(goal, views))
    return 1.0 - lpips_distance(lpips_params, x, y)


def sparse_reward(done: jax.Array, bonus: float, tau: float) -> jax.Array:
    """Eqs. (7)-(8): r_sparse = c * [d_t >= tau]. done: [B] probability -> float32 [B]."""
    return jnp.where(done >= tau, bonus, 0.0).astype(jnp.float32)
