"""World-model losses, Eqs. (2)-(4) of RoboScape-R (section 3.1), and the metrics that matter.

  L_vis  = masked-token cross-entropy of the factored logits               Eq. (2)
  L_done = RMSE(d_hat, d)                                                   Eq. (3)
  L      = L_vis + lambda_done * L_done                                     Eq. (4)

We follow the paper's RMSE (Eq. 3); the authors' code instead adds 5 x MSE(done). `lambda_done`
defaults to their 5 (experiments/configs/world_model.py, `loss.done_weight`).

Only a few percent of tokens change between consecutive frames (DESIGN-NOTES.md), so
`token_metrics` reports accuracy overall, on the tokens that change, and the accuracy of copying the
previous frame on the same positions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from roboscape_jax.tokenizer.model import index_to_bits, index_to_subcodes, subcodes_to_index
from roboscape_jax.world_model.margins import clip_margins


def _bits_per_factor(logits: jax.Array) -> int:
    vocab = logits.shape[-1]
    bits = int(vocab).bit_length() - 1
    if 2**bits != vocab:
        raise ValueError(f"factor vocabulary {vocab} is not a power of 2")
    return bits


def _masked_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    """sum(w * v) / sum(w); 0 where sum(w) = 0 (so a batch without such tokens stays finite)."""
    total = jnp.sum(weights)
    return jnp.sum(values * weights) / jnp.maximum(total, 1e-9) * (total > 0)


def masked_token_cross_entropy(logits: jax.Array, targets: jax.Array, mask: jax.Array,
                               weights: jax.Array | None = None) -> jax.Array:
    """Eq. (2): L_vis = -sum_{i in M} w_i sum_f log p_f(z_i^f | z_unmasked, c) / sum_{i in M} w_i.

    RoboScape-R Eq. (2) (MaskGIT-style masked-token prediction, Chang et al. 2022,
    arXiv:2202.04200), with the code z_i split into F sub-codes z_i^f (one softmax each; their
    log-likelihoods add).
    Args:
      logits: [B, T, h, w, F, V_f] factored logits.
      targets: int [B, T, h, w] full code indices.
      mask: bool [B, T, h, w], True at the (masked) positions that are scored.
      weights: optional float [B, T, h, w] per-position weights (default 1).
    Returns: scalar, nats per scored token (summed over factors).
    """
    num_factors = logits.shape[-2]
    sub = index_to_subcodes(targets, num_factors * _bits_per_factor(logits), num_factors)
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    # the target's log-probability through a one-hot product (exact: one term is nonzero); the
    # gradient of a gather would be a scatter, several times slower on the CPU
    target = jax.nn.one_hot(sub, logits.shape[-1], dtype=log_p.dtype)
    nll = -jnp.sum(log_p * target, axis=(-2, -1))  # [B, T, h, w]
    w = mask.astype(jnp.float32) * (1.0 if weights is None else weights)
    return _masked_mean(nll, w)


def encoder_latents(tokens: jax.Array, margins: jax.Array) -> jax.Array:
    """The encoder latent per bit of frames whose codes int [..., h, w] have bit margins
    [..., h, w, K] (margin x code sign), the margins clipped as the model reads them
    (`margins.clip_margins`: so a latent head's starting point, frame t-1's latent, is exactly
    this of frame t-1)."""
    return clip_margins(margins) * index_to_bits(tokens, margins.shape[-1])


def latent_mse(latents: jax.Array | None, tokens: jax.Array, margins: jax.Array,
               mask: jax.Array) -> jax.Array:
    """Mean squared error per bit of predicted encoder latents [B, T, h, w, K] against the real
    ones (`encoder_latents`) at the scored positions `mask` [B, T, h, w] of frames 1..T-1;
    `latents=None` scores frame t-1's latent as the prediction (the copy baseline)."""
    target = encoder_latents(tokens, margins)
    if latents is None:
        latents = jnp.concatenate([jnp.zeros_like(target[:, :1]), target[:, :-1]], axis=1)
    error = jnp.mean(jnp.square(latents.astype(jnp.float32) - target), axis=-1)
    scored = mask.astype(jnp.float32).at[:, 0].set(0.0)
    return _masked_mean(error, scored)


def done_rmse(done: jax.Array, target: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Eq. (3): L_done = sqrt(mean_t (d_hat_t - d_t)^2 + eps).

    RoboScape-R Eq. (3). `eps` keeps the gradient finite at a perfect fit.
    Args: done [B, T] predicted probabilities; target [B, T] in {0, 1}. Returns: scalar.
    """
    return jnp.sqrt(jnp.mean(jnp.square(done - target.astype(done.dtype))) + eps)


def total_loss(visual: jax.Array, done: jax.Array, done_weight: float) -> jax.Array:
    """Eq. (4): L = L_vis + lambda_done * L_done (RoboScape-R Eq. 4; the authors use lambda = 5)."""
    return visual + done_weight * done


def predicted_tokens(logits: jax.Array) -> jax.Array:
    """Greedy full codes from factored logits: [B, ..., F, V_f] -> int32 [B, ...]."""
    num_factors = logits.shape[-2]
    return subcodes_to_index(jnp.argmax(logits, -1), num_factors * _bits_per_factor(logits))


def token_metrics(logits: jax.Array, tokens: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
    """Greedy accuracy on the scored positions of frames 1..T-1, vs copying frame t-1.

    Args: logits [B, T, h, w, F, V_f]; tokens int [B, T, h, w] (the true window); mask bool
      [B, T, h, w] (scored positions; frame 0 is never scored: it has no previous frame).
    Returns: token_accuracy, changed_token_accuracy (on tokens that differ from frame t-1),
      copy_accuracy (predicting frame t-1's token), changed_fraction (of scored tokens).
    """
    targets, previous = tokens[:, 1:], tokens[:, :-1]
    correct = predicted_tokens(logits[:, 1:]) == targets
    scored = mask[:, 1:].astype(jnp.float32)
    changed = scored * (targets != previous)
    return {"token_accuracy": _masked_mean(correct, scored),
            "changed_token_accuracy": _masked_mean(correct, changed),
            "copy_accuracy": _masked_mean(targets == previous, scored),
            "changed_fraction": _masked_mean(changed, scored)}


def done_accuracy(done: jax.Array, target: jax.Array, threshold: float = 0.5) -> jax.Array:
    """Fraction of frames where [d_hat >= threshold] equals the 0/1 target. [B, T] -> scalar."""
    return jnp.mean((done >= threshold) == (target > 0.5))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: P(score_pos > score_neg) + 0.5 P(tie); NaN if a class is absent.

    Exact pairwise form (memory n_pos * n_neg), fine for evaluation sets of a few thousand.
    """
    scores, labels = np.ravel(scores), np.ravel(labels) > 0.5
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))
