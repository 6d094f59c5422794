"""PPO losses: Eq. (7) clipped surrogate, clipped value loss, Eq. (9) total.

Schulman et al. 2017, arXiv:1707.06347. Each function returns its scalar and a
metrics dict holding every named term.
"""

import chex
import jax
import jax.numpy as jnp

Metrics = dict[str, jax.Array]


def normalize_advantages(advantages: jax.Array, eps: float = 1e-8) -> jax.Array:
    """(A - mean A) / (std A + eps) over the whole minibatch [B] -> [B]."""
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def clipped_surrogate_loss(
    log_prob: jax.Array,
    old_log_prob: jax.Array,
    advantages: jax.Array,
    clip_eps: float,
) -> tuple[jax.Array, Metrics]:
    """-L^CLIP = -E[min(r_t A_t, clip(r_t, 1-eps, 1+eps) A_t)], r_t = pi/pi_old.

    Eq. (7) of arXiv:1707.06347. Inputs [B]; returns the scalar to *minimise*,
    plus ``approx_kl`` (E[(r-1) - log r], Schulman's k3 estimator) and
    ``clip_frac`` (share of samples with |r-1| > eps).
    """
    chex.assert_equal_shape([log_prob, old_log_prob, advantages])
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    loss = -jnp.minimum(unclipped, clipped).mean()
    metrics = {
        "policy_loss": loss,
        "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
        "clip_frac": (jnp.abs(ratio - 1.0) > clip_eps).mean(),
    }
    return loss, metrics


def clipped_value_loss(
    values: jax.Array,
    old_values: jax.Array,
    targets: jax.Array,
    clip_eps: float,
) -> tuple[jax.Array, Metrics]:
    """L^VF = 0.5 E[max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)].

    The squared-error term of Eq. (9), with the value clipping of the PPO
    reference code (baselines ppo2, PureJaxRL). Inputs [B].
    """
    chex.assert_equal_shape([values, old_values, targets])
    clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    loss = 0.5 * jnp.maximum(jnp.square(values - targets), jnp.square(clipped - targets)).mean()
    return loss, {"value_loss": loss}


def ppo_loss(
    policy_loss: jax.Array,
    value_loss: jax.Array,
    entropy: jax.Array,
    vf_coef: float,
    ent_coef: float,
) -> tuple[jax.Array, Metrics]:
    """L = -L^CLIP + c1 L^VF - c2 S[pi], Eq. (9) of arXiv:1707.06347 (negated).

    ``policy_loss`` is already -L^CLIP; ``entropy`` is the mean entropy S.
    """
    total = policy_loss + vf_coef * value_loss - ent_coef * entropy
    return total, {"total_loss": total, "entropy": entropy}
