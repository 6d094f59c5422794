"""Actor-critic over the policy observation dict: two-view frame, instruction, gripper.

  policy = ImageActorCritic(action_dim=7)
  dist, value = policy.apply(params, obs)  # obs: the world-model env's observation dict

The observation is the one every env hands the policy (`env.world_model_env` docstring):
  frame        uint8 [..., H, W, 3]  third view stacked over wrist view
  instruction  float [..., E]        unit-norm sentence embedding
  gripper      float [..., 1]        integrated opening in [-1, 1]
A small strided CNN reads the frame (scaled to [0, 1]); its features, the instruction and the
gripper feed one MLP trunk shared by a Gaussian action head and a value head. The action head is
bounded as PPO needs it: the mean is tanh-squashed into [-1, 1] and the env (or
`rl.wrappers.ClipActionWrapper`) clips samples, so log-probs stay those of the plain Gaussian
(`distributions.DiagGaussian`). Same call convention as `mlp.ActorCritic`, so `rl.ppo` and the
SFT trainer take either; `transformer.TransformerActorCritic` reads the same observation and shares
the heads (`gaussian_and_value`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.initializers import constant, variance_scaling

from roboscape_jax import layers
from roboscape_jax.policies.distributions import DiagGaussian
from roboscape_jax.policies.mlp import ACTIVATIONS

OBS_KEYS = ("frame", "instruction", "gripper")


def scaled_init(gain: float):
    """Fan-in scaled truncated normal with PPO's orthogonal gains (sqrt 2 hidden, 0.01 actor, 1
    critic). Not orthogonal: its QR adds seconds of CPU compile per weight shape."""
    return variance_scaling(gain**2, "fan_in", "truncated_normal")


def check_observation(obs: Mapping[str, jax.Array]) -> tuple[int, ...]:
    """Raises ValueError on a malformed observation dict; returns its leading (batch) shape."""
    missing = set(OBS_KEYS) - set(obs)
    if missing:
        raise ValueError(f"observation lacks {sorted(missing)}; expected keys {OBS_KEYS}")
    frame = obs["frame"]
    if frame.ndim < 3 or frame.shape[-1] != 3:
        raise ValueError(f"obs['frame'] must be [..., H, W, 3], got shape {frame.shape}")
    lead = frame.shape[:-3]
    chex.assert_shape(obs["gripper"], (*lead, 1))
    chex.assert_rank(obs["instruction"], len(lead) + 1)
    chex.assert_equal_shape_prefix([obs["instruction"], obs["gripper"]], len(lead))
    return lead


def gaussian_and_value(module: nn.Module, actor_in: jax.Array, critic_in: jax.Array,
                       lead: tuple[int, ...]) -> tuple[DiagGaussian, jax.Array]:
    """The action and value heads of the image policies, built inside `module`'s compact call
    (their params are `module`'s `actor`, `critic` and `log_std`; `module` has the fields
    action_dim, log_std_init, log_std_min).

    mean = tanh(Dense(actor_in)) [*lead, A]; value = Dense(critic_in) [*lead]; the log std is a
    learned [A] vector (not a function of the observation) clipped into [log_std_min, 2].
    """
    mean = jnp.tanh(nn.Dense(module.action_dim, kernel_init=scaled_init(0.01), name="actor")(
        actor_in))
    value = nn.Dense(1, kernel_init=scaled_init(1.0), name="critic")(critic_in)[..., 0]
    log_std = module.param("log_std", constant(module.log_std_init), (module.action_dim,))
    log_std = jnp.clip(log_std, module.log_std_min, 2.0)
    chex.assert_shape([mean], (*lead, module.action_dim))
    chex.assert_shape(value, lead)
    return DiagGaussian(mean, jnp.broadcast_to(log_std, mean.shape)), value


class ConvEncoder(nn.Module):
    """Strided 3x3 convs (each halves H and W), then one dense layer. The convs are
    `layers.Conv` (flax's parameters): PPO takes their gradients inside a scan.

    frame uint8 [B, H, W, 3] -> float32 [B, out].
    """

    features: Sequence[int] = (16, 32, 32, 32)
    out: int = 256

    @nn.compact
    def __call__(self, frame: jax.Array) -> jax.Array:
        x = frame.astype(jnp.float32) / 255.0
        for width in self.features:
            x = layers.Conv(width, (3, 3), strides=(2, 2), padding="SAME",
                            kernel_init=scaled_init(2**0.5))(x)
            x = nn.relu(x)
        x = x.reshape(x.shape[0], -1)
        return nn.relu(nn.Dense(self.out, kernel_init=scaled_init(2**0.5))(x))


class ImageActorCritic(nn.Module):
    """obs dict (leading dims [...]) -> (DiagGaussian [..., A], value [...])."""

    action_dim: int = 7
    conv_features: Sequence[int] = (16, 32, 32, 32)
    conv_out: int = 256  # width of the frame features
    hidden: Sequence[int] = (256, 256)  # trunk, then one linear layer per head
    activation: str = "relu"
    log_std_init: float = -0.5
    log_std_min: float = -5.0  # log std is clipped into [log_std_min, 2]
    discrete: bool = False  # read by rl.ppo.validate: this head is continuous

    @nn.compact
    def __call__(self, obs: Mapping[str, jax.Array]) -> tuple[DiagGaussian, jax.Array]:
        lead = check_observation(obs)
        frame = obs["frame"].reshape(-1, *obs["frame"].shape[-3:])
        features = ConvEncoder(self.conv_features, self.conv_out, name="encoder")(frame)
        x = jnp.concatenate(
            [features.reshape(*lead, self.conv_out),
             obs["instruction"].astype(jnp.float32),
             obs["gripper"].astype(jnp.float32)], axis=-1)
        act = ACTIVATIONS[self.activation]
        for i, width in enumerate(self.hidden):
            x = act(nn.Dense(width, kernel_init=scaled_init(2**0.5), name=f"trunk_{i}")(x))
        return gaussian_and_value(self, x, x, lead)


def dummy_observation(frame_shape: tuple[int, int, int] = (128, 64, 3),
                      instruction_dim: int = 384, batch: tuple[int, ...] = ()) -> dict:
    """Zeros shaped like the env's observation (for `init`), with leading dims `batch`."""
    return {"frame": jnp.zeros((*batch, *frame_shape), jnp.uint8),
            "instruction": jnp.zeros((*batch, instruction_dim), jnp.float32),
            "gripper": jnp.zeros((*batch, 1), jnp.float32)}
