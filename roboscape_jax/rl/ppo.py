"""PPO (Schulman et al. 2017, arXiv:1707.06347) in the PureJaxRL shape.

``make_ppo(config, env, env_params, network)`` returns ``PPOFns``:
``init(rng) -> RunnerState``, ``run_updates(runner, num_updates) -> (runner,
metrics)`` (``num_updates`` static; lets a caller checkpoint between chunks)
and ``train(rng) -> (runner, metrics)``. All are jittable and vmappable over
seeds. The env follows the gymnax 1.0 API (six-value ``step``); wrap it in
``LogWrapper`` for episode-return metrics. Observations may be arrays (a gymnax
``Box``) or pytrees such as dicts (a gymnax ``Dict`` space, e.g. the world-model
env's frame/instruction/gripper), as long as the network reads them. Equations
live in ``rl.gae`` and ``rl.losses``.
"""

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState
from gymnax.environments import spaces

from roboscape_jax.policies.mlp import ACTIVATIONS
from roboscape_jax.rl.gae import gae_advantages, shifted_next_values
from roboscape_jax.rl.losses import (
    clipped_surrogate_loss,
    clipped_value_loss,
    normalize_advantages,
    ppo_loss,
)
from roboscape_jax.utils.config import dataclass_from_config

Metrics = dict[str, jax.Array]
_LOG_KEYS = ("returned_episode_returns", "returned_episode")
# Per-step info terms averaged into the metrics as ``info/<key>`` when the env reports them
# (the world-model env's reward split: LPIPS dense part, done bonus, done probability).
_MEAN_INFO_KEYS = ("dense", "sparse", "done_prob")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO hyper-parameters; defaults are PureJaxRL's CartPole-v1 settings."""

    num_envs: int = 4
    num_steps: int = 128  # rollout length per env and update
    total_timesteps: int = 500_000
    update_epochs: int = 4
    num_minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    lr: float = 2.5e-4
    anneal_lr: bool = True
    activation: str = "tanh"  # read by whoever builds the network
    normalize_advantages: bool = True
    bootstrap_truncation: bool = True  # needs info["final_observation"]
    reward_scale: float = 1.0  # rewards are multiplied by this before GAE
    # Where the values GAE needs are computed; the same numbers either way
    # (tests/rl/test_ppo.py). V(s_t) in one batched pass after the rollout, or with each step's
    # action (free when actor and critic share a trunk, as the image policies do). V(final
    # observation), the truncation bootstrap, in the rollout (one more critic pass per step) or
    # in that batched pass. On CPU a batched pass over the whole rollout is big enough for XLA
    # to split it over threads, and for tiny MLPs the hand-offs cost more than the per-step
    # passes: CartPole at one seed ran 11% slower with both batched
    # (docs/performance_history.md). Shared-trunk policies: final_values_in_rollout=False.
    values_after_rollout: bool = False
    final_values_in_rollout: bool = True

    @classmethod
    def from_config(cls, config: "PPOConfig | Mapping[str, Any] | Any") -> "PPOConfig":
        """Accepts a PPOConfig, a dict or an ml_collections ConfigDict section."""
        return dataclass_from_config(cls, config, "PPO")


def num_updates(config: PPOConfig) -> int:
    """Number of rollout+update iterations covering ``total_timesteps``."""
    return int(config.total_timesteps) // (config.num_envs * config.num_steps)


def minibatch_size(config: PPOConfig) -> int:
    """Samples per minibatch: num_envs * num_steps / num_minibatches."""
    return config.num_envs * config.num_steps // config.num_minibatches


def _space_action_dim(space: Any) -> tuple[int, bool]:
    """(action width, is_discrete) of a gymnax Discrete or Box space."""
    if hasattr(space, "n"):
        return int(space.n), True
    return int(math.prod(space.shape)), False


def dummy_observation(space: Any) -> Any:
    """Zeros shaped like one observation of ``space`` (a Box, or a Dict of them, nested)."""
    if isinstance(space, spaces.Dict):
        return jax.tree.map(dummy_observation, dict(space.spaces))  # spaces are leaves
    return jnp.zeros(space.shape, getattr(space, "dtype", jnp.float32))


def validate(config: PPOConfig, env: Any, env_params: Any, network: Any) -> None:
    """Raises ValueError on a config or network that cannot train on ``env``."""
    for name in (
        "num_envs",
        "num_steps",
        "total_timesteps",
        "update_epochs",
        "num_minibatches",
    ):
        if getattr(config, name) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
    batch = config.num_envs * config.num_steps
    if batch % config.num_minibatches:
        raise ValueError(
            f"num_envs*num_steps = {batch} is not divisible by "
            f"num_minibatches = {config.num_minibatches}"
        )
    if num_updates(config) < 1:
        raise ValueError(
            f"total_timesteps = {config.total_timesteps} is below one "
            f"rollout of num_envs*num_steps = {batch}"
        )
    if not (0.0 <= config.gamma <= 1.0 and 0.0 <= config.gae_lambda <= 1.0):
        raise ValueError("gamma and gae_lambda must lie in [0, 1]")
    if config.activation not in ACTIVATIONS:
        raise ValueError(f"activation {config.activation!r} not in {list(ACTIVATIONS)}")
    width, discrete = _space_action_dim(env.action_space(env_params))
    net_width = getattr(network, "action_dim", width)
    if net_width != width:
        raise ValueError(
            f"network action width {net_width} != env action width "
            f"{width} ({env.action_space(env_params)})"
        )
    if getattr(network, "discrete", discrete) != discrete:
        raise ValueError(
            f"network discrete={network.discrete} but env action "
            f"space is {'discrete' if discrete else 'continuous'}"
        )
    space = env.observation_space(env_params)
    try:
        jax.eval_shape(network.init, jax.random.PRNGKey(0), dummy_observation(space))
    except Exception as err:  # any failure to trace init on a dummy observation
        raise ValueError(f"network cannot read the env's observations ({space}): {err}") from err


class Transition(NamedTuple):
    """One vectorised env step; ``lax.scan`` stacks it to [T, N, ...]."""

    obs: Any  # [N, ...] observation (array or pytree) the action was taken in
    action: jax.Array  # [N] or [N, A]
    reward: jax.Array  # [N]
    terminated: jax.Array  # [N] bool
    done: jax.Array  # [N] bool, terminated | truncated
    value: jax.Array | None  # [N] V(obs), or None when valued after the rollout
    log_prob: jax.Array  # [N] log pi_old(action | obs)
    final_obs: Any  # [N, ...] pre-reset next observation, to value after the rollout, or None
    final_value: jax.Array | None  # [N] V(final_obs) when valued in the rollout, or None
    info: Metrics  # LogWrapper keys, [N] each


class Batch(NamedTuple):
    """Training samples, leading axes [T, N] or flattened [B]."""

    obs: Any  # array or pytree
    action: jax.Array
    old_log_prob: jax.Array
    old_value: jax.Array
    advantage: jax.Array
    target: jax.Array


class RunnerState(NamedTuple):
    """Carry of the outer loop: everything needed to resume training."""

    train_state: TrainState
    env_state: Any
    obs: Any  # [N, ...] array or pytree
    rng: jax.Array


class PPOFns(NamedTuple):
    init: Callable[[jax.Array], RunnerState]
    run_updates: Callable[[RunnerState, int], tuple[RunnerState, Metrics]]
    train: Callable[[jax.Array], tuple[RunnerState, Metrics]]


def make_optimizer(config: PPOConfig) -> optax.GradientTransformation:
    """Global-norm clipping then Adam (eps 1e-5), LR linearly annealed per update."""
    steps_per_update = config.update_epochs * config.num_minibatches
    total = num_updates(config)

    def schedule(count: jax.Array) -> jax.Array:
        return config.lr * (1.0 - (count // steps_per_update) / total)

    lr = schedule if config.anneal_lr else config.lr
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr, eps=1e-5))


def minibatch_loss(
    params: Any, apply_fn: Callable, batch: Batch, config: PPOConfig
) -> tuple[jax.Array, Metrics]:
    """Eq. (9) total loss on one flat minibatch [B]; returns every term."""
    dist, value = apply_fn(params, batch.obs)
    log_prob = dist.log_prob(batch.action)
    adv = batch.advantage
    if config.normalize_advantages:
        adv = normalize_advantages(adv)
    pg, pg_m = clipped_surrogate_loss(log_prob, batch.old_log_prob, adv, config.clip_eps)
    vf, vf_m = clipped_value_loss(value, batch.old_value, batch.target, config.clip_eps)
    total, total_m = ppo_loss(pg, vf, dist.entropy().mean(), config.vf_coef, config.ent_coef)
    return total, {**pg_m, **vf_m, **total_m}


def sgd_step(
    train_state: TrainState, batch: Batch, config: PPOConfig
) -> tuple[TrainState, Metrics]:
    """One gradient step on a minibatch."""
    grad_fn = jax.value_and_grad(minibatch_loss, has_aux=True)
    (_, metrics), grads = grad_fn(train_state.params, train_state.apply_fn, batch, config)
    return train_state.apply_gradients(grads=grads), metrics


def update_epoch(
    train_state: TrainState, flat_batch: Batch, rng: jax.Array, config: PPOConfig
) -> tuple[TrainState, Metrics]:
    """Shuffles a flat batch [B] into [M, B/M] minibatches and scans sgd_step."""
    perm = jax.random.permutation(rng, flat_batch.advantage.shape[0])
    minibatches = jax.tree.map(
        lambda x: jnp.take(x, perm, axis=0).reshape((config.num_minibatches, -1) + x.shape[1:]),
        flat_batch,
    )
    return jax.lax.scan(lambda ts, mb: sgd_step(ts, mb, config), train_state, minibatches)


def rollout_metrics(info: Metrics) -> Metrics:
    """Episode metrics of one rollout from LogWrapper info [T, N] (empty if absent).

    ``episode_return``: mean over episodes finished in this rollout (NaN if none).
    ``returned_episode_returns``: PureJaxRL's curve, mean over [T, N] of the
    last finished return per env. ``info/<key>``: per-step mean of each
    ``_MEAN_INFO_KEYS`` term the env reports.
    """
    means = {f"info/{k}": info[k].astype(jnp.float32).mean() for k in _MEAN_INFO_KEYS if k in info}
    if not all(k in info for k in _LOG_KEYS):
        return means
    finished = info["returned_episode"].astype(jnp.float32)
    count = finished.sum()
    total = (info["returned_episode_returns"] * finished).sum()
    return {
        **means,
        "episode_return": jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan),
        "num_episodes": count,
        "returned_episode_returns": info["returned_episode_returns"].mean(),
    }


def make_ppo(
    config: PPOConfig | Mapping[str, Any],
    env: Any,
    env_params: Any,
    network: Any,
    callback: Callable[[Metrics], None] | None = None,
) -> PPOFns:
    """Builds PPO's ``init``, ``run_updates`` and ``train`` for one env.

    ``network.apply(params, obs [N, ...]) -> (dist, value [N])``; ``obs`` is an
    array or a pytree (dict observation spaces). ``callback``, if
    given, receives each update's metrics (plus ``update`` and ``env_steps``)
    through ``jax.debug.callback``; it is the only host logging.
    """
    config = PPOConfig.from_config(config)
    validate(config, env, env_params, network)
    num_envs, epochs = config.num_envs, config.update_epochs
    step_envs = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def init(rng: jax.Array) -> RunnerState:
        rng, rng_params, rng_reset = jax.random.split(rng, 3)
        dummy = dummy_observation(env.observation_space(env_params))
        params = network.init(rng_params, dummy)
        train_state = TrainState.create(
            apply_fn=network.apply, params=params, tx=make_optimizer(config)
        )
        reset_keys = jax.random.split(rng_reset, num_envs)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, env_params)
        return RunnerState(train_state, env_state, obs, rng)

    def env_step(runner: RunnerState, xs: tuple[jax.Array, jax.Array]):
        noise, step_keys = xs  # [N, A] action noise, [N] env keys
        params = runner.train_state.params
        dist, value = network.apply(params, runner.obs)
        action = dist.sample_from_noise(noise)
        obs, env_state, reward, terminated, truncated, info = step_envs(
            step_keys, runner.env_state, action, env_params
        )
        final_obs = final_value = None
        if config.bootstrap_truncation and "final_observation" in info:
            if config.final_values_in_rollout:
                final_value = network.apply(params, info["final_observation"])[1]
            else:
                final_obs = info["final_observation"]  # valued after the rollout, in one pass
        transition = Transition(
            obs=runner.obs,
            action=action,
            reward=reward,
            terminated=terminated,
            done=jnp.logical_or(terminated, truncated),
            value=None if config.values_after_rollout else value,
            log_prob=dist.log_prob(action),
            final_obs=final_obs,
            final_value=final_value,
            info={k: info[k] for k in _LOG_KEYS + _MEAN_INFO_KEYS if k in info},
        )
        return runner._replace(env_state=env_state, obs=obs), transition

    def collect(runner: RunnerState) -> tuple[RunnerState, Transition]:
        """num_steps vectorised env steps. Action noise and env keys are drawn
        up front in bulk: on CPU each PRNG call is a loop, costly in the scan."""
        rng, rng_action, rng_env = jax.random.split(runner.rng, 3)
        dist = jax.eval_shape(network.apply, runner.train_state.params, runner.obs)[0]
        noise = type(dist).noise(rng_action, (config.num_steps,) + dist[0].shape)
        env_keys = jax.random.split(rng_env, (config.num_steps, num_envs))
        return jax.lax.scan(env_step, runner._replace(rng=rng), (noise, env_keys))

    def batched_values(params: Any, obs: Any) -> jax.Array:
        """V of observations [T, N, ...] in one network pass over T * N."""
        t, n = jax.tree.leaves(obs)[0].shape[:2]
        flat = jax.tree.map(lambda x: x.reshape((t * n,) + x.shape[2:]), obs)
        return network.apply(params, flat)[1].reshape(t, n)

    def rollout_values(params: Any, traj: Transition, last_obs: Any) -> tuple[jax.Array, ...]:
        """(V(s_t) [T, N], V'_t [T, N] of the true next states, terminated flags for GAE).

        One batched pass covers whatever the rollout did not value: its observations
        (``values_after_rollout``) and the next states (pre-reset final observations when
        bootstrapping truncation, else the observation after the last step)."""
        if traj.final_value is not None:  # bootstrap values came with the rollout
            values = traj.value if traj.value is not None else batched_values(params, traj.obs)
            return values, traj.final_value, traj.terminated
        t = traj.reward.shape[0]
        bootstrap = traj.final_obs is not None
        nexts = traj.final_obs if bootstrap else jax.tree.map(lambda x: x[None], last_obs)
        if traj.value is None:
            both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), traj.obs, nexts)
            values_all = batched_values(params, both)
            values, next_part = values_all[:t], values_all[t:]
        else:
            values, next_part = traj.value, batched_values(params, nexts)
        if bootstrap:  # bootstraps from V(final obs) on truncation
            return values, next_part, traj.terminated
        return values, shifted_next_values(values, next_part[0]), traj.done

    def make_batch(params: Any, traj: Transition, last_obs: Any) -> Batch:
        """GAE advantages and value targets [T, N] next to the rollout data."""
        values, next_values, terminated = rollout_values(params, traj, last_obs)
        adv = gae_advantages(
            traj.reward * config.reward_scale,
            values,
            next_values,
            terminated,
            traj.done,
            config.gamma,
            config.gae_lambda,
        )
        return Batch(traj.obs, traj.action, traj.log_prob, values, adv, adv + values)

    def update_step(runner: RunnerState, _: None) -> tuple[RunnerState, Metrics]:
        runner, traj = collect(runner)
        chex.assert_shape(traj.reward, (config.num_steps, num_envs))
        batch = make_batch(runner.train_state.params, traj, runner.obs)
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)
        rng, rng_epochs = jax.random.split(runner.rng)
        train_state, losses = jax.lax.scan(
            lambda ts, key: update_epoch(ts, flat, key, config),
            runner.train_state,
            jax.random.split(rng_epochs, epochs),
        )
        metrics = {**jax.tree.map(jnp.mean, losses), **rollout_metrics(traj.info),
                   "reward": traj.reward.mean()}
        update = train_state.step // (epochs * config.num_minibatches)
        metrics.update(update=update, env_steps=update * num_envs * config.num_steps)
        if callback is not None:
            jax.debug.callback(callback, metrics)
        return runner._replace(train_state=train_state, rng=rng), metrics

    def run_updates(runner: RunnerState, num_updates: int) -> tuple[RunnerState, Metrics]:
        """Runs ``num_updates`` (a static int) updates; metrics are stacked [U]."""
        return jax.lax.scan(update_step, runner, None, num_updates)

    def train(rng: jax.Array) -> tuple[RunnerState, Metrics]:
        return run_updates(init(rng), num_updates(config))

    return PPOFns(init, run_updates, train)


def make_train(
    config: PPOConfig | Mapping[str, Any],
    env: Any,
    env_params: Any,
    network: Any,
    callback: Callable[[Metrics], None] | None = None,
) -> Callable[[jax.Array], tuple[RunnerState, Metrics]]:
    """PureJaxRL's entry point: ``train(rng) -> (runner_state, metrics [U])``."""
    return make_ppo(config, env, env_params, network, callback).train
