"""The paper's learned reward baselines (RoboScape-R section 4.2), both fit to the simulator's
dense rule reward, which the world-model reward never sees:

  embedding  iVideoGPT-style: a reward head on the action world model's hidden embedding of the
             current frame (the pooled ST-transformer features its done head reads:
             `world_model.model.last_frame_outputs`).
  proxy      DiWA-style: an external MLP on the image (the frame, average-pooled).

`fit_reward_head` trains either head by mean-squared error on (features, reward) pairs with a
fixed seed; `RewardHead.predict` maps new features to rewards. Features are standardised with the
training set's statistics, saved in the head, so a head scores any split the same way.
`save_reward_head` / `load_reward_head` keep a fitted head on disk (msgpack, written atomically),
so the world-model env can pay it as its reward (`EnvConfig.reward = "embedding" | "proxy"`).
"""

from __future__ import annotations

import os
from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization, struct

from roboscape_jax.types import PyTree
from roboscape_jax.utils.files import atomic_path

BASELINES = ("embedding", "proxy")


class RewardMLP(nn.Module):
    """[B, F] -> [B] reward: MLP(F -> hidden... -> 1) with GELU."""

    hidden: Sequence[int] = (256, 256)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.gelu(nn.Dense(width)(x))
        return nn.Dense(1)(x)[..., 0]


@struct.dataclass
class RewardHead:
    """A fitted reward head: MLP parameters and the training features' statistics."""

    params: PyTree
    mean: jax.Array  # [F]
    std: jax.Array  # [F]
    hidden: tuple[int, ...] = struct.field(pytree_node=False, default=(256, 256))

    def predict(self, features: jax.Array) -> jax.Array:
        """features [B, F] -> rewards float32 [B], on the scale of the rule reward."""
        chex.assert_rank(features, 2)
        chex.assert_axis_dimension(features, 1, self.mean.shape[0])
        x = (jnp.asarray(features, jnp.float32) - self.mean) / self.std
        return RewardMLP(self.hidden).apply(self.params, x)


def pooled_frame_features(frames: np.ndarray | jax.Array, pool: int = 4) -> jax.Array:
    """The proxy baseline's input: uint8 frames [B, H, W, 3] average-pooled by `pool` and
    flattened to [B, (H / pool) * (W / pool) * 3] in [0, 1]."""
    frames = jnp.asarray(frames)
    chex.assert_rank(frames, 4)
    b, h, w, c = frames.shape
    if h % pool or w % pool:
        raise ValueError(f"frame size {h}x{w} is not divisible by pool={pool}")
    x = frames.astype(jnp.float32).reshape(b, h // pool, pool, w // pool, pool, c) / 255.0
    return x.mean(axis=(2, 4)).reshape(b, -1)


def fit_reward_head(features: np.ndarray, rewards: np.ndarray, *, steps: int = 2000,
                    batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4,
                    hidden: Sequence[int] = (256, 256), seed: int = 0
                    ) -> tuple[RewardHead, dict[str, float]]:
    """Fits a RewardMLP to rewards [N] from features [N, F] by MSE (AdamW, one jitted scan).

    Returns the head and {"train_mse", "train_mse_of_mean"} (the second is a constant predictor's
    error: the head must beat it to have learned anything)."""
    features = np.asarray(features, np.float32)
    rewards = np.asarray(rewards, np.float32)
    if features.ndim != 2 or rewards.shape != features.shape[:1]:
        raise ValueError(f"features must be [N, F] and rewards [N]; got {features.shape} and "
                         f"{rewards.shape}")
    if not (np.isfinite(features).all() and np.isfinite(rewards).all()):
        raise ValueError("features or rewards contain NaN or inf")
    if len(rewards) < 2:
        raise ValueError(f"need at least 2 examples to fit a reward head, got {len(rewards)}")
    mean = features.mean(0)
    std = features.std(0) + 1e-6
    x = jnp.asarray((features - mean) / std)
    y = jnp.asarray(rewards)
    model = RewardMLP(tuple(hidden))
    rng_init, rng_batches = jax.random.split(jax.random.PRNGKey(seed))
    params = model.init(rng_init, x[:1])
    tx = optax.adamw(optax.cosine_decay_schedule(lr, steps), weight_decay=weight_decay)

    def loss_fn(p, xb, yb):
        return jnp.mean((model.apply(p, xb) - yb) ** 2)

    def step(carry, rng):
        p, opt = carry
        idx = jax.random.randint(rng, (min(batch_size, len(y)),), 0, len(y))
        loss, grads = jax.value_and_grad(loss_fn)(p, x[idx], y[idx])
        updates, opt = tx.update(grads, opt, p)
        return (optax.apply_updates(p, updates), opt), loss

    @jax.jit
    def train(p):
        (p, _), _ = jax.lax.scan(step, (p, tx.init(p)), jax.random.split(rng_batches, steps))
        return p

    params = train(params)
    head = RewardHead(params, jnp.asarray(mean), jnp.asarray(std), tuple(hidden))
    mse = float(jnp.mean((head.predict(features) - y) ** 2))
    return head, {"train_mse": mse, "train_mse_of_mean": float(np.var(rewards))}


def save_reward_head(path: str, head: RewardHead) -> None:
    """Writes a fitted head (parameters, feature statistics, hidden widths) to `path`."""
    state = {"params": jax.device_get(head.params), "mean": np.asarray(head.mean),
             "std": np.asarray(head.std), "hidden": np.asarray(head.hidden, np.int32)}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(serialization.msgpack_serialize(state))


def load_reward_head(path: str) -> RewardHead:
    """A head written by `save_reward_head` (FileNotFoundError naming `path` if absent)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no fitted reward head at {path}: run the "
                                "evaluate_world_models stage, which fits the baselines")
    with open(path, "rb") as f:
        state = serialization.msgpack_restore(f.read())
    return RewardHead(jax.tree.map(jnp.asarray, state["params"]), jnp.asarray(state["mean"]),
                      jnp.asarray(state["std"]), tuple(int(h) for h in state["hidden"]))
