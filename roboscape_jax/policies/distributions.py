"""Action distributions for PPO: categorical and diagonal Gaussian.

Both are NamedTuples (pytrees), so they can leave a Linen ``apply`` and cross
``jit``. Bounded action spaces use the Gaussian as PureJaxRL does: actions are
sampled unbounded, log-probs are of the unbounded sample, and the environment
wrapper (``rl.wrappers.ClipActionWrapper``) clips them into the Box. This keeps
log-probs and entropy exact, which a tanh squash would not.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

_LOG_2PI = float(jnp.log(2.0 * jnp.pi))


def categorical_log_prob(logits: jax.Array, actions: jax.Array) -> jax.Array:
    """log pi(a) = logits[a] - logsumexp(logits). logits [..., A]; actions [...]."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    # One-hot product rather than a gather: far cheaper to differentiate on CPU.
    one_hot = jax.nn.one_hot(actions, logits.shape[-1], dtype=log_p.dtype)
    return jnp.sum(log_p * one_hot, axis=-1)


def categorical_entropy(logits: jax.Array) -> jax.Array:
    """H = -sum_a p(a) log p(a). logits [..., A] -> [...]."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def diag_gaussian_log_prob(mean: jax.Array, log_std: jax.Array, actions: jax.Array) -> jax.Array:
    """log N(a; mu, diag(sigma^2)) summed over the last axis. [..., A] -> [...]."""
    z = (actions - mean) * jnp.exp(-log_std)
    per_dim = -0.5 * jnp.square(z) - log_std - 0.5 * _LOG_2PI
    return jnp.sum(per_dim, axis=-1)


def diag_gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """H = sum_i (log sigma_i + 0.5 * log(2 pi e)). [..., A] -> [...]."""
    return jnp.sum(log_std + 0.5 * (_LOG_2PI + 1.0), axis=-1)


class Categorical(NamedTuple):
    """Categorical over the last axis of ``logits`` [..., A]."""

    logits: jax.Array

    @staticmethod
    def noise(rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Gumbel noise of the logits' shape; lets callers draw it in bulk."""
        return jax.random.gumbel(rng, shape)

    def sample_from_noise(self, noise: jax.Array) -> jax.Array:
        """Gumbel-max: argmax(logits + g) is a sample of the categorical."""
        return jnp.argmax(self.logits + noise, axis=-1)

    def sample(self, rng: jax.Array) -> jax.Array:
        return self.sample_from_noise(self.noise(rng, self.logits.shape))

    def log_prob(self, actions: jax.Array) -> jax.Array:
        return categorical_log_prob(self.logits, actions)

    def entropy(self) -> jax.Array:
        return categorical_entropy(self.logits)

    def mode(self) -> jax.Array:
        return jnp.argmax(self.logits, axis=-1)


class DiagGaussian(NamedTuple):
    """Diagonal Gaussian; ``log_std`` broadcasts against ``mean`` [..., A]."""

    mean: jax.Array
    log_std: jax.Array

    @staticmethod
    def noise(rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Standard normal noise of the mean's shape; lets callers draw it in bulk."""
        return jax.random.normal(rng, shape)

    def sample_from_noise(self, noise: jax.Array) -> jax.Array:
        return self.mean + jnp.exp(self.log_std) * noise

    def sample(self, rng: jax.Array) -> jax.Array:
        return self.sample_from_noise(self.noise(rng, self.mean.shape))

    def log_prob(self, actions: jax.Array) -> jax.Array:
        return diag_gaussian_log_prob(self.mean, self.log_std, actions)

    def entropy(self) -> jax.Array:
        log_std = jnp.broadcast_to(self.log_std, self.mean.shape)
        return diag_gaussian_entropy(log_std)

    def mode(self) -> jax.Array:
        return self.mean


Distribution = Categorical | DiagGaussian
