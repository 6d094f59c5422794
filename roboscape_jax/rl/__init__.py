"""Reinforcement learning: GAE, PPO losses, gymnax-API wrappers, PPO, and PPO in checkpointed
chunks (`loop.train_in_chunks`)."""

from roboscape_jax.rl.gae import gae_advantages, shifted_next_values
from roboscape_jax.rl.loop import train_in_chunks
from roboscape_jax.rl.losses import (
    clipped_surrogate_loss,
    clipped_value_loss,
    normalize_advantages,
    ppo_loss,
)
from roboscape_jax.rl.ppo import (
    PPOConfig,
    PPOFns,
    RunnerState,
    make_ppo,
    make_train,
    minibatch_size,
    num_updates,
)
from roboscape_jax.rl.wrappers import (
    AutoResetWrapper,
    ClipActionWrapper,
    GymnaxWrapper,
    LogWrapper,
)

__all__ = [
    "AutoResetWrapper",
    "ClipActionWrapper",
    "GymnaxWrapper",
    "LogWrapper",
    "PPOConfig",
    "PPOFns",
    "RunnerState",
    "clipped_surrogate_loss",
    "clipped_value_loss",
    "gae_advantages",
    "make_ppo",
    "make_train",
    "minibatch_size",
    "normalize_advantages",
    "num_updates",
    "ppo_loss",
    "shifted_next_values",
    "train_in_chunks",
]
