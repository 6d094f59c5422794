"""Random-shift augmentation of the two-view frame for behaviour cloning (DrQ / robomimic style).

  frames = random_shift(key, frames, pad=4, num_views=2)

With about 140 demonstrations the SFT policy memorises its training episodes (it succeeds from
their own initial states and rarely from new ones; README, Policies). Shifting each view by a few
pixels, independently per sample and per view, is the standard cheap regulariser for image
policies: the policy can no longer key on exact pixel positions.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def random_shift(key: jax.Array, frames: jax.Array, *, pad: int, num_views: int = 2
                 ) -> jax.Array:
    """frames [B, H, W, C] (views stacked along H, each H / num_views tall) -> the same shape and
    dtype, each view of each sample shifted by an integer offset in [-pad, pad] along both axes,
    the border filled by repeating the edge pixels. pad == 0 returns `frames` unchanged."""
    chex.assert_rank(frames, 4)
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if pad == 0:
        return frames
    b, h, w, c = frames.shape
    if h % num_views:
        raise ValueError(f"frame height {h} does not split into {num_views} views")
    vh = h // num_views
    views = frames.reshape(b * num_views, vh, w, c)
    padded = jnp.pad(views, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    offsets = jax.random.randint(key, (b * num_views, 2), 0, 2 * pad + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (vh, w, c))

    return jax.vmap(crop)(padded, offsets).reshape(b, h, w, c)
