"""VLA-style transformer actor-critic over the policy observation dict.

  policy = TransformerActorCritic(action_dim=7)
  dist, value = policy.apply(params, obs)  # the observation dict of `image.ImageActorCritic`

RoboScape-R fine-tunes OpenVLA-7B (Kim et al. 2024, arXiv:2406.09246) as its policy; a 7B model
cannot be trained or run on this project's 2-core CPU machine. This is its laptop-scale stand-in,
built as small generalist robot transformers are (Octo, Octo Model Team 2024, arXiv:2405.12213):
one transformer over tokens of the image, the instruction and the proprio state, read out by
learned tokens. It is a second policy family next to the CNN (`families.POLICIES`).

Tokens [B, L, D], L = P + 2 + 2:
  P image tokens     the frame (scaled to [0, 1]) cut into patch_size x patch_size patches (the
                     128x64 two-view frame of `tiny` with 8x8 patches: 16x8 = 128), each embedded
                     linearly, plus a learned position embedding [P, D]
  instruction token  a linear projection of the sentence embedding [E]
  gripper token      a linear projection of the gripper opening [1] (proprio)
  2 readout tokens   learned: the action head reads the first, the value head the second
`num_layers` pre-norm blocks (self-attention, MLP), then a LayerNorm. Attention uses Octo's readout
mask (`readout_mask`): every token attends to the observation tokens and a readout token also to
itself, so no readout sees another one and the observation tokens see none: the action mean does
not depend on the value readout. The heads are the CNN policy's (`image.gaussian_and_value`): a
tanh-squashed mean, a learned state-independent log std, a linear value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.initializers import normal

from roboscape_jax import layers
from roboscape_jax.policies.distributions import DiagGaussian
from roboscape_jax.policies.image import check_observation, gaussian_and_value
from roboscape_jax.world_model.transformer import Mlp

NUM_READOUTS = 2  # action, value


def readout_mask(num_obs: int, num_readouts: int) -> jax.Array:
    """bool [L, L], L = num_obs + num_readouts: query i may attend to key j when j is an
    observation token (j < num_obs) or j == i."""
    length = num_obs + num_readouts
    is_obs = jnp.arange(length) < num_obs
    return is_obs[None, :] | jnp.eye(length, dtype=bool)


class ObservationTokens(nn.Module):
    """frame uint8 [B, H, W, 3], instruction [B, E], gripper [B, 1] -> tokens [B, P + 2, D]."""

    patch_size: int = 8
    width: int = 64

    @nn.compact
    def __call__(self, frame: jax.Array, instruction: jax.Array, gripper: jax.Array
                 ) -> jax.Array:
        b, h, w, _ = frame.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"patch_size {p} does not divide the frame's {h}x{w}")
        x = frame.astype(jnp.float32) / 255.0
        patches = layers.Conv(self.width, (p, p), strides=(p, p), padding="VALID",
                              name="patch_embed")(x)  # one linear map per patch: [B, H/p, W/p, D]
        patches = patches.reshape(b, (h // p) * (w // p), self.width)
        position = self.param("position_embedding", normal(0.02), patches.shape[1:])
        text = nn.Dense(self.width, name="instruction")(instruction.astype(jnp.float32))
        proprio = nn.Dense(self.width, name="gripper")(gripper.astype(jnp.float32))
        return jnp.concatenate([patches + position, text[:, None], proprio[:, None]], axis=1)


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x), mask), then + MLP(LN(x)). [B, L, D]."""

    num_heads: int = 4
    mlp_ratio: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        attention = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, deterministic=True,
                                                    name="attention")
        x = x + attention(nn.LayerNorm()(x), mask=mask)
        return x + Mlp(self.mlp_ratio, name="mlp")(nn.LayerNorm()(x))


class TransformerActorCritic(nn.Module):
    """obs dict (leading dims [...]) -> (DiagGaussian [..., A], value [...])."""

    action_dim: int = 7
    patch_size: int = 8  # must divide the frame's height and width
    width: int = 64  # token width D
    num_layers: int = 2
    num_heads: int = 4  # must divide width
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio * width
    log_std_init: float = -0.5
    log_std_min: float = -5.0  # log std is clipped into [log_std_min, 2]
    discrete: ClassVar[bool] = False  # read by rl.ppo.validate: this head is continuous

    @nn.compact
    def __call__(self, obs: Mapping[str, jax.Array]) -> tuple[DiagGaussian, jax.Array]:
        lead = check_observation(obs)
        flat = {k: obs[k].reshape(-1, *obs[k].shape[len(lead):]) for k in ("frame", "instruction",
                                                                          "gripper")}
        tokens = ObservationTokens(self.patch_size, self.width, name="tokens")(
            flat["frame"], flat["instruction"], flat["gripper"])
        b, num_obs, d = tokens.shape
        readouts = self.param("readouts", normal(0.02), (NUM_READOUTS, d))
        x = jnp.concatenate([tokens, jnp.broadcast_to(readouts, (b, NUM_READOUTS, d))], axis=1)
        mask = readout_mask(num_obs, NUM_READOUTS)[None, None]  # [1, 1, L, L]: batch, heads
        for i in range(self.num_layers):  # over layers (unrolled at trace time), not data
            x = Block(self.num_heads, self.mlp_ratio, name=f"block_{i}")(x, mask)
        out = nn.LayerNorm(name="norm")(x[:, num_obs:])
        chex.assert_shape(out, (b, NUM_READOUTS, d))
        out = out.reshape(*lead, NUM_READOUTS, d)
        return gaussian_and_value(self, out[..., 0, :], out[..., 1, :], lead)
