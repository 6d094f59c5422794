"""MaskGIT masks (Chang et al. 2022, arXiv:2202.04200): the cosine schedule gamma(r) = cos(pi r / 2)
for training windows and for the decoding steps of `sampling.py`.

Training (`training_mask`): the first `num_context_frames` frames of a window are never masked;
every later frame gets its own ratio gamma(u), u ~ U(0, 1), and exactly max(1, ceil(gamma(u) * K))
of its K tokens, chosen uniformly, are masked. With probability `full_mask_prob` a window instead
masks every token of its last frame and nothing else: exactly what `predict_next_frame` sees at its
first decoding step. Pure functions of the key.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def cosine_schedule(r: jax.Array) -> jax.Array:
    """gamma(r) = cos(pi r / 2): the fraction of tokens masked at progress r in [0, 1]."""
    return jnp.cos(0.5 * jnp.pi * r)


def num_masked_after(step: int, num_steps: int, num_tokens: int) -> int:
    """Tokens still masked after decoding step `step` (0-based) of `num_steps`:
    floor(K * gamma((step + 1) / num_steps)); 0 after the last step. Static (Python) numbers."""
    if step + 1 >= num_steps:
        return 0
    return int(math.floor(num_tokens * math.cos(0.5 * math.pi * (step + 1) / num_steps)))


def _ranks(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """A uniformly random permutation of 0..n-1 along the last axis."""
    return jnp.argsort(jax.random.uniform(key, shape), axis=-1).argsort(axis=-1)


def training_mask(key: jax.Array, batch_size: int, num_frames: int, grid: tuple[int, int], *,
                  num_context_frames: int = 1, full_mask_prob: float = 0.0) -> jax.Array:
    """bool [B, T, h, w], True where a token is masked (see the module docstring)."""
    if not 1 <= num_context_frames < num_frames:
        raise ValueError(f"num_context_frames must be in [1, {num_frames - 1}], got "
                         f"{num_context_frames}")
    h, w = grid
    k = h * w
    rng_ratio, rng_ranks, rng_full = jax.random.split(key, 3)
    ratio = cosine_schedule(jax.random.uniform(rng_ratio, (batch_size, num_frames, 1)))
    count = jnp.maximum(1, jnp.ceil(ratio * k))
    mask = _ranks(rng_ranks, (batch_size, num_frames, k)) < count  # [B, T, K]
    predicted = jnp.arange(num_frames) >= num_context_frames
    mask = mask & predicted[None, :, None]
    last_only = jnp.broadcast_to((jnp.arange(num_frames) == num_frames - 1)[None, :, None],
                                 mask.shape)
    full = jax.random.bernoulli(rng_full, full_mask_prob, (batch_size, 1, 1))
    return jnp.where(full, last_only, mask).reshape(batch_size, num_frames, h, w)
