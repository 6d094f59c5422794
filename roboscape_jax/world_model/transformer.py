"""The spatial-temporal (ST) transformer block of Genie (Bruce et al. 2024, arXiv:2402.15391) with
the cross-attention of RoboScape-R (section 3.1) for the control signal.

One block, pre-norm, residual after each part:
  spatial self-attention   within a frame, over its K = h * w tokens
  cross-attention          visual tokens query the control tokens (actions or instruction)
  temporal self-attention  per spatial position over the T frames, causal
  MLP
Shapes: x [B, T, K, D]; control tokens [B, Tc, M, D] with Tc = T (per-frame actions: the tokens of
frame t see only frame t's control) or Tc = 1 (one instruction for every frame); control mask
[B, Tc, M] bool. Nothing in a block lets frame t see frames after t, so the features (and logits)
of frame t depend only on frames <= t and their controls.
"""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from roboscape_jax.layers import Dense, MultiHeadDotProductAttention


class Mlp(nn.Module):
    """Dense(mlp_ratio * D) -> GELU -> Dense(D)."""

    mlp_ratio: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        h = nn.gelu(Dense(self.mlp_ratio * width, dtype=self.dtype)(x))
        return Dense(width, dtype=self.dtype)(h)


class STBlock(nn.Module):
    """One spatial-temporal block with control cross-attention (see the module docstring).

    Returns (x, h): the block's output and `h`, the normed input of its temporal attention
    [B, T, K, D], which is all a later frame reads of these frames in this block. With `memory`
    (the `h` of C earlier frames [B, C, K, D]), x holds only the frame after them [B, 1, K, D]
    and its temporal attention reads memory + itself: the same result as the full window's last
    frame, without recomputing the earlier frames (MaskGIT's passes share their context)."""

    num_heads: int = 4
    mlp_ratio: int = 4
    dtype: Any = jnp.float32

    def _attention(self, name: str) -> MultiHeadDotProductAttention:
        return MultiHeadDotProductAttention(self.num_heads, dtype=self.dtype, name=name)

    @nn.compact
    def __call__(self, x: jax.Array, control: jax.Array, control_mask: jax.Array,
                 memory: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        b, t, k, d = x.shape
        tc, m = control.shape[1], control.shape[2]
        chex.assert_shape(control, (b, tc, m, d))
        chex.assert_shape(control_mask, (b, tc, m))
        if memory is not None:
            chex.assert_shape(x, (b, 1, k, d))
            chex.assert_shape(memory, (b, None, k, d))
        # Spatial: the K tokens of each frame attend to each other.
        x = x + self._attention("spatial")(nn.LayerNorm(dtype=self.dtype)(x))
        # Cross: frame tokens query their frame's control tokens (or the shared instruction).
        q = nn.LayerNorm(dtype=self.dtype)(x).reshape(b, tc, (t // tc) * k, d)
        mask = control_mask[:, :, None, None, :]  # [B, Tc, heads, queries, M]
        x = x + self._attention("cross")(q, control, mask=mask).reshape(b, t, k, d)
        # Temporal: each spatial position attends to itself in frames <= t.
        h = nn.LayerNorm(dtype=self.dtype)(x)  # [B, T, K, D]
        hq = jnp.swapaxes(h, 1, 2)  # [B, K, T, D]
        if memory is None:
            causal = nn.make_causal_mask(jnp.ones((b, k, t), bool))  # [B, K, 1, T, T]
            out = self._attention("temporal")(hq, mask=causal)
        else:  # the new frame sees every earlier frame and itself: no mask
            kv = jnp.concatenate([jnp.swapaxes(memory, 1, 2).astype(hq.dtype), hq], axis=2)
            out = self._attention("temporal")(hq, kv)
        x = x + jnp.swapaxes(out, 1, 2)
        return x + Mlp(self.mlp_ratio, self.dtype)(nn.LayerNorm(dtype=self.dtype)(x)), h


class STTransformer(nn.Module):
    """Learned spatial [K, D] and temporal [num_frames, D] position embeddings, `depth` STBlocks
    and a final LayerNorm. x [B, T, K, D] -> ([B, T, K, D], memory): memory is a tuple of each
    block's `h` [B, T, K, D] (see STBlock). Given `memory` from a call on C frames, x is the one
    frame after them [B, 1, K, D] (temporal position C) and the output is that frame's, equal to
    the last frame's of a call on all C + 1 frames. With `remat`, each block's activations are
    recomputed in the backward pass (less memory, about a third more compute)."""

    num_frames: int  # T: the longest window (temporal position embeddings)
    num_tokens: int  # K = h * w
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: int = 4
    remat: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, control: jax.Array, control_mask: jax.Array,
                 memory: tuple[jax.Array, ...] | None = None
                 ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        _, t, k, d = x.shape
        offset = 0 if memory is None else memory[0].shape[1]
        if memory is not None and (t != 1 or len(memory) != self.depth):
            raise ValueError(f"with memory (one entry per block: {self.depth}) x must be one "
                             f"frame, got {t} frames and {len(memory)} memory entries")
        if offset + t > self.num_frames or k != self.num_tokens:
            raise ValueError(f"got {offset + t} frames of {k} tokens; the model takes at most "
                             f"{self.num_frames} frames of {self.num_tokens} tokens")
        init = nn.initializers.normal(0.02)
        spatial = self.param("spatial_pos", init, (k, d))
        temporal = self.param("temporal_pos", init, (self.num_frames, d))[offset:offset + t]
        x = x + spatial[None, None] + temporal[None, :, None]
        block = nn.remat(STBlock) if self.remat else STBlock
        hidden = []
        for i in range(self.depth):
            x, h = block(self.num_heads, self.mlp_ratio, self.dtype, name=f"block_{i}")(
                x, control, control_mask, None if memory is None else memory[i])
            hidden.append(h)
        return nn.LayerNorm(dtype=self.dtype)(x), tuple(hidden)
