"""Log-prob, entropy and sampling tests of the policy distributions."""

import jax
import jax.numpy as jnp
import numpy as np

from roboscape_jax.policies.distributions import Categorical, DiagGaussian
from roboscape_jax.policies.mlp import ActorCritic


def test_categorical_log_prob_and_entropy_hand_worked():
    """logits log(1, 1, 2) -> p = (1/4, 1/4, 1/2); H = 1.5 log 2."""
    dist = Categorical(jnp.log(jnp.array([[1.0, 1.0, 2.0]])))
    np.testing.assert_allclose(dist.log_prob(jnp.array([2])), [np.log(0.5)], rtol=1e-6)
    np.testing.assert_allclose(dist.log_prob(jnp.array([0])), [np.log(0.25)], rtol=1e-6)
    np.testing.assert_allclose(dist.entropy(), [1.5 * np.log(2.0)], rtol=1e-6)
    assert int(dist.mode()[0]) == 2


def test_categorical_sampling_frequencies():
    dist = Categorical(jnp.log(jnp.array([0.2, 0.8])) * jnp.ones((20_000, 1)))
    samples = dist.sample(jax.random.key(0))
    assert samples.shape == (20_000,)
    np.testing.assert_allclose(samples.mean(), 0.8, atol=0.02)


def test_diag_gaussian_log_prob_hand_worked():
    """mu=(0, 1), sigma=(1, 2), a=(1, 1):
    log p = [-0.5 - 0.5 log 2pi] + [-log 2 - 0.5 log 2pi] = -0.5 - log 2 - log 2pi.
    """
    dist = DiagGaussian(jnp.array([0.0, 1.0]), jnp.log(jnp.array([1.0, 2.0])))
    expected = -0.5 - np.log(2.0) - np.log(2 * np.pi)
    np.testing.assert_allclose(dist.log_prob(jnp.array([1.0, 1.0])), expected, rtol=1e-6)
    ent = np.log(2.0) + np.log(2 * np.pi * np.e)  # sum_i log sigma_i + 0.5 log 2 pi e
    np.testing.assert_allclose(dist.entropy(), ent, rtol=1e-6)


def test_diag_gaussian_sample_moments():
    dist = DiagGaussian(jnp.full((50_000, 1), 1.0), jnp.full((50_000, 1), jnp.log(0.5)))
    samples = dist.sample(jax.random.key(1))
    np.testing.assert_allclose(samples.mean(), 1.0, atol=0.02)
    np.testing.assert_allclose(samples.std(), 0.5, atol=0.02)


def test_actor_critic_shapes_and_param_count():
    obs = jnp.zeros((5, 4))
    net = ActorCritic(action_dim=2)
    params = net.init(jax.random.key(0), obs)
    dist, value = net.apply(params, obs)
    assert dist.logits.shape == (5, 2) and value.shape == (5,)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    assert n_params == 2 * (4 * 64 + 64 + 64 * 64 + 64) + (64 * 2 + 2) + (64 + 1)

    cont = ActorCritic(action_dim=3, discrete=False)
    dist, value = cont.apply(cont.init(jax.random.key(0), obs), obs)
    assert dist.mean.shape == (5, 3) and dist.log_std.shape == (5, 3)
