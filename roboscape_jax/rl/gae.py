"""Generalised advantage estimation, Eqs. (11)-(12) of arXiv:1707.06347."""

import chex
import jax
import jax.numpy as jnp


def gae_advantages(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    dones: jax.Array,
    gamma: float,
    lam: float,
) -> jax.Array:
    """A_t = d_t + g*lam*(1-done_t)*A_{t+1}; d_t = r_t + g*(1-term_t)*V'_t - V_t.

    Eqs. (11)-(12) of Schulman et al. 2017, arXiv:1707.06347, computed as a
    reverse ``lax.scan`` over time. ``V'_t`` is the value of the observation
    that *followed* step t before any auto-reset, so a truncated episode
    (``done`` but not ``terminated``) still bootstraps from its last state,
    while a terminated one does not. The recursion is cut at every ``done``.
    With ``next_values = values[1:]`` and ``terminated = dones`` this is the
    textbook/PureJaxRL estimator.

    Args:
      rewards: [T, N] rewards r_t.
      values: [T, N] V(s_t).
      next_values: [T, N] V(s'_t) of the true next state.
      terminated: [T, N] in {0, 1}; 1 where s'_t is a terminal state.
      dones: [T, N] in {0, 1}; 1 where the episode ended (terminated or truncated).
      gamma: discount g.
      lam: GAE lambda.
    Returns:
      [T, N] advantages A_t.
    """
    chex.assert_rank(rewards, 2)
    chex.assert_equal_shape([rewards, values, next_values, terminated, dones])
    not_term = 1.0 - terminated.astype(rewards.dtype)
    not_done = 1.0 - dones.astype(rewards.dtype)
    deltas = rewards + gamma * not_term * next_values - values

    def step(adv_next: jax.Array, xs: tuple[jax.Array, jax.Array]):
        delta, cont = xs
        adv = delta + gamma * lam * cont * adv_next
        return adv, adv

    _, advantages = jax.lax.scan(
        step, jnp.zeros_like(rewards[0]), (deltas, not_done), reverse=True, unroll=16
    )
    return advantages


def shifted_next_values(values: jax.Array, last_value: jax.Array) -> jax.Array:
    """V'_t = V(s_{t+1}) from rollout values [T, N] and the bootstrap value [N].

    Use when the env exposes no pre-reset ``final_observation``; then pass
    ``terminated = dones`` to ``gae_advantages`` (no bootstrap on truncation).
    """
    chex.assert_rank(values, 2)
    chex.assert_shape(last_value, values.shape[1:])
    return jnp.concatenate([values[1:], last_value[None]], axis=0)
