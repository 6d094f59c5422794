"""The tokenizer's optional adversarial loss: a patch discriminator and hinge losses.

VQGAN (Esser et al. 2021, arXiv:2012.09841) and MAGVIT-2 (arXiv:2310.05737, Sec. 3.1) add a GAN
term to the reconstruction and perceptual losses, so the decoder draws sharp texture rather than
the blurred average an L1/LPIPS objective settles on. Here a PatchGAN discriminator (Isola et al.
2017) scores each receptive-field patch of a frame real or reconstructed; both players use the
hinge loss (MAGVIT-2's choice):

  L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(x)))],    L_G_adv = -E[D(G(x))].

The generator's term counts from `start_step` on (before that the discriminator is untrained and
its gradients are noise); the discriminator learns from the same step. Pure functions of params;
the train step in `tokenizer/train.py` alternates the two updates inside one jitted call.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class PatchDiscriminator(nn.Module):
    """[B, H, W, 3] in [-1, 1] -> patch logits [B, H / 2^L, W / 2^L] (L = num_layers).

    Stride-2 4x4 convs with leaky ReLU, widths channels * 2^i, GroupNorm after all but the first
    (no batch statistics: the step stays a pure function of params), then a 3x3 conv to one logit
    per patch."""

    channels: int = 32
    num_layers: int = 3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"the discriminator reads frames [B, H, W, 3], got {x.shape}")
        for i in range(self.num_layers):
            x = nn.Conv(self.channels * 2**i, (4, 4), strides=(2, 2))(x)
            if i > 0:
                x = nn.GroupNorm(num_groups=min(8, x.shape[-1]))(x)
            x = nn.leaky_relu(x, 0.2)
        return nn.Conv(1, (3, 3))(x)[..., 0]


def create_discriminator(discriminator_config) -> PatchDiscriminator:
    """The discriminator of a tokenizer config's `discriminator` section."""
    return PatchDiscriminator(channels=int(discriminator_config.channels),
                              num_layers=int(discriminator_config.num_layers))


def init_discriminator(model: PatchDiscriminator, rng: jax.Array, frame_height: int,
                       frame_width: int):
    return jax.jit(model.init)(rng, jnp.zeros((1, frame_height, frame_width, 3)))


def discriminator_hinge_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """mean relu(1 - D(real)) + mean relu(1 + D(fake))."""
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def generator_hinge_loss(fake_logits: jax.Array) -> jax.Array:
    """-mean D(fake): the decoder is pushed toward frames the discriminator calls real."""
    return -jnp.mean(fake_logits)


def adversarial_weight_at(step: jax.Array, weight: float, start_step: int) -> jax.Array:
    """`weight` from `start_step` on, 0 before (a traced step: one compiled train step)."""
    return jnp.where(step >= start_step, jnp.float32(weight), jnp.float32(0.0))
