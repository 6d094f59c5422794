"""PPO on rollouts collected outside JAX, e.g. in the ManiSkill simulator stepped from Python
(issue 7's "RL w. ManiSkill": same policy, same PPO hyper-parameters and losses as `rl.ppo`; the
simulator runs outside jit, the policy step and the update are jitted).

  act = make_policy_step(network)        # (params, obs [N, ...], key) -> Step [N]
  value = make_value_fn(network)         # (params, obs [N, ...]) -> [N]
  update = make_update(config, network)  # (train_state, rollout [T, N], rng) -> (state, metrics)
  train_state = create_train_state(config, network, params)

GAE (`gae.gae_advantages`, Eqs. (11)-(12) of arXiv:1707.06347) bootstraps from `next_value`, the
value of the observation that followed each step before any reset, so a truncated episode still
bootstraps and a terminated (successful) one does not; then `update_epochs` epochs of
`num_minibatches` minibatches of the clipped PPO loss (`ppo.update_epoch`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from roboscape_jax.rl.gae import gae_advantages
from roboscape_jax.rl.ppo import Batch, PPOConfig, make_optimizer, update_epoch
from roboscape_jax.types import PRNGKey, PyTree


class Step(NamedTuple):
    action: jax.Array  # [N, A] sampled (unclipped: log-probs are the Gaussian's)
    log_prob: jax.Array  # [N]
    value: jax.Array  # [N]


class Rollout(NamedTuple):
    """num_steps steps of N envs, [T, N, ...]."""

    obs: Any  # observation pytree the action was taken in
    action: jax.Array  # [T, N, A]
    reward: jax.Array  # [T, N]
    terminated: jax.Array  # [T, N] bool: the next state is terminal (success)
    done: jax.Array  # [T, N] bool: terminated or truncated
    value: jax.Array  # [T, N] V(obs)
    log_prob: jax.Array  # [T, N]
    next_value: jax.Array  # [T, N] V(pre-reset next obs)


def make_policy_step(network: Any) -> Callable[[PyTree, Any, PRNGKey], Step]:
    @jax.jit
    def step(params: PyTree, obs: Any, key: PRNGKey) -> Step:
        dist, value = network.apply(params, obs)
        action = dist.sample(key)
        return Step(action, dist.log_prob(action), value)

    return step


def make_value_fn(network: Any) -> Callable[[PyTree, Any], jax.Array]:
    return jax.jit(lambda params, obs: network.apply(params, obs)[1])


def create_train_state(config: PPOConfig, network: Any, params: PyTree) -> TrainState:
    return TrainState.create(apply_fn=network.apply, params=params, tx=make_optimizer(config))


def make_update(config: PPOConfig, network: Any
                ) -> Callable[[TrainState, Rollout, PRNGKey], tuple[TrainState, dict]]:
    """update(train_state, rollout, rng): GAE, then epochs x minibatches; returns the mean
    losses, the mean step reward and the update count."""
    config = PPOConfig.from_config(config)
    del network  # the train state's apply_fn is the network's

    @jax.jit
    def update(train_state: TrainState, rollout: Rollout, rng: PRNGKey):
        chex.assert_shape(rollout.reward, (config.num_steps, config.num_envs))
        adv = gae_advantages(rollout.reward * config.reward_scale, rollout.value,
                             rollout.next_value, rollout.terminated, rollout.done,
                             config.gamma, config.gae_lambda)
        batch = Batch(rollout.obs, rollout.action, rollout.log_prob, rollout.value, adv,
                      adv + rollout.value)
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)
        train_state, losses = jax.lax.scan(
            lambda ts, key: update_epoch(ts, flat, key, config), train_state,
            jax.random.split(rng, config.update_epochs))
        steps_per_update = config.update_epochs * config.num_minibatches
        return train_state, {**jax.tree.map(jnp.mean, losses), "reward": rollout.reward.mean(),
                             "update": train_state.step // steps_per_update}

    return update
