"""Hand-worked tests of the PPO losses, Eqs. (7) and (9) of arXiv:1707.06347."""

import jax
import jax.numpy as jnp
import numpy as np

from roboscape_jax.rl.losses import (
    clipped_surrogate_loss,
    clipped_value_loss,
    normalize_advantages,
    ppo_loss,
)


def test_clipped_surrogate_hand_worked():
    """ratios (1.5, 0.5, 1.0), A = (1, 1, -2), eps = 0.2.

    min(1.5*1, 1.2*1) = 1.2; min(0.5*1, 0.8*1) = 0.5; min(-2, -2) = -2.
    loss = -(1.2 + 0.5 - 2)/3 = 0.1; clip_frac = 2/3.
    """
    old = jnp.zeros(3)
    new = jnp.log(jnp.array([1.5, 0.5, 1.0]))
    adv = jnp.array([1.0, 1.0, -2.0])
    loss, metrics = clipped_surrogate_loss(new, old, adv, 0.2)
    np.testing.assert_allclose(loss, 0.1, rtol=1e-6)
    np.testing.assert_allclose(metrics["clip_frac"], 2 / 3, rtol=1e-6)
    kl = np.mean([0.5 - np.log(1.5), -0.5 - np.log(0.5), 0.0])
    np.testing.assert_allclose(metrics["approx_kl"], kl, rtol=1e-5)
    assert metrics["policy_loss"] == loss


def test_clipped_surrogate_has_no_gradient_outside_the_trust_region():
    adv = jnp.array([1.0])
    grad = jax.grad(lambda lp: clipped_surrogate_loss(lp, jnp.zeros(1), adv, 0.2)[0])
    assert grad(jnp.log(jnp.array([1.5])))[0] == 0.0  # clipped: ratio > 1+eps, A > 0
    np.testing.assert_allclose(grad(jnp.zeros(1))[0], -1.0)  # inside: d(-rA)/dlogr


def test_clipped_value_loss_hand_worked():
    """V_old=0, V=(1, -0.1), R=(1, 1), eps=0.2.

    s0: max((1-1)^2, (0.2-1)^2) = 0.64; s1: max(1.21, (-0.1-1)^2) = 1.21.
    loss = 0.5 * (0.64 + 1.21) / 2 = 0.4625.
    """
    loss, metrics = clipped_value_loss(jnp.array([1.0, -0.1]), jnp.zeros(2), jnp.ones(2), 0.2)
    np.testing.assert_allclose(loss, 0.4625, rtol=1e-6)
    assert metrics["value_loss"] == loss


def test_ppo_loss_combines_terms():
    total, metrics = ppo_loss(jnp.array(0.1), jnp.array(2.0), jnp.array(0.5), 0.5, 0.01)
    np.testing.assert_allclose(total, 0.1 + 1.0 - 0.005, rtol=1e-6)
    assert set(metrics) == {"total_loss", "entropy"}


def test_normalize_advantages():
    out = normalize_advantages(jnp.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(out.mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(out.std(), 1.0, rtol=1e-5)
