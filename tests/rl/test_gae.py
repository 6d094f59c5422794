"""Hand-worked tests of gae_advantages, Eqs. (11)-(12) of arXiv:1707.06347."""

import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax.rl.gae import gae_advantages, shifted_next_values


def test_gae_hand_worked_3x2():
    """T=3, N=2, gamma=0.5, lam=0.5 (so g*lam = 0.25).

    env 0: r=(1,1,1), V=(1,2,3), V'=(2,3,4), episode terminates at t=1.
      d_2 = 1 + 0.5*4 - 3 = 0      -> A_2 = 0
      d_1 = 1 + 0     - 2 = -1     -> A_1 = -1 (cut by done_1)
      d_0 = 1 + 0.5*2 - 1 = 1      -> A_0 = 1 + 0.25*(-1) = 0.75
    env 1: r=(0,0,2), V=(0,1,1), V'=(1,1,5), truncated at t=1 (bootstraps).
      d_2 = 2 + 0.5*5 - 1 = 3.5    -> A_2 = 3.5
      d_1 = 0 + 0.5*1 - 1 = -0.5   -> A_1 = -0.5 (cut by done_1)
      d_0 = 0 + 0.5*1 - 0 = 0.5    -> A_0 = 0.5 + 0.25*(-0.5) = 0.375
    """
    rewards = jnp.array([[1.0, 0.0], [1.0, 0.0], [1.0, 2.0]])
    values = jnp.array([[1.0, 0.0], [2.0, 1.0], [3.0, 1.0]])
    next_values = jnp.array([[2.0, 1.0], [3.0, 1.0], [4.0, 5.0]])
    terminated = jnp.array([[0, 0], [1, 0], [0, 0]])
    dones = jnp.array([[0, 0], [1, 1], [0, 0]])
    adv = gae_advantages(rewards, values, next_values, terminated, dones, 0.5, 0.5)
    expected = np.array([[0.75, 0.375], [-1.0, -0.5], [0.0, 3.5]])
    np.testing.assert_allclose(adv, expected, rtol=1e-6)


def test_gae_matches_purejaxrl_recursion_without_truncation():
    """With shifted values and terminated == done it is the classic estimator."""
    rng = np.random.default_rng(0)
    t, n, gamma, lam = 7, 3, 0.9, 0.8
    rewards, values = rng.normal(size=(t, n)), rng.normal(size=(t, n))
    last_value, dones = rng.normal(size=(n,)), rng.random((t, n)) < 0.3
    adv = gae_advantages(
        jnp.asarray(rewards),
        jnp.asarray(values),
        shifted_next_values(jnp.asarray(values), jnp.asarray(last_value)),
        jnp.asarray(dones),
        jnp.asarray(dones),
        gamma,
        lam,
    )
    expected, gae, next_v = np.zeros((t, n)), np.zeros(n), last_value
    for i in reversed(range(t)):
        delta = rewards[i] + gamma * next_v * (1 - dones[i]) - values[i]
        gae = delta + gamma * lam * (1 - dones[i]) * gae
        expected[i], next_v = gae, values[i]
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-6)


def test_gae_lambda_one_is_discounted_return_minus_value():
    rewards = jnp.ones((4, 1))
    values = jnp.zeros((4, 1))
    zeros = jnp.zeros((4, 1))
    adv = gae_advantages(rewards, values, zeros, zeros, zeros, 0.5, 1.0)
    np.testing.assert_allclose(adv[:, 0], [1.875, 1.75, 1.5, 1.0])


def test_gae_rejects_mismatched_shapes():
    with pytest.raises(AssertionError):
        gae_advantages(
            jnp.zeros((3, 2)),
            jnp.zeros((3, 1)),
            jnp.zeros((3, 2)),
            jnp.zeros((3, 2)),
            jnp.zeros((3, 2)),
            0.9,
            0.9,
        )
