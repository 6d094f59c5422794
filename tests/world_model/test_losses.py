"""Eqs. (2)-(4) and the token/done metrics, checked on examples worked out by hand; the masks."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from roboscape_jax.tokenizer.model import index_to_subcodes
from roboscape_jax.world_model import losses, masking


def _one_hot_logits(codes, scale=10.0):
    """Factored logits (2 bits = 2 factors of 2 classes) that predict `codes` greedily."""
    return scale * jax.nn.one_hot(index_to_subcodes(jnp.asarray(codes), 2, 2), 2)


def test_masked_token_cross_entropy_by_hand():
    # Position 0: target 2 = sub-codes (0, 1). Factor 0 logits (0, 0): -log p = ln 2; factor 1
    # logits (0, ln 3): p(1) = 3/4, -log p = ln(4/3). Sum: ln(8/3). Position 1 is not masked.
    logits = jnp.array([[[0.0, 0.0], [0.0, math.log(3.0)]],
                        [[5.0, -5.0], [5.0, -5.0]]]).reshape(1, 1, 1, 2, 2, 2)
    targets = jnp.array([2, 3]).reshape(1, 1, 1, 2)
    mask = jnp.array([True, False]).reshape(1, 1, 1, 2)
    np.testing.assert_allclose(losses.masked_token_cross_entropy(logits, targets, mask),
                               math.log(8 / 3), rtol=1e-6)
    # Both masked, weights (1, 3): (ln(8/3) + 3 * nll_1) / 4, nll_1 = 2 * (10 + ln(1 + e^-10)).
    nll_1 = 2 * (10.0 + math.log1p(math.exp(-10.0)))
    np.testing.assert_allclose(
        losses.masked_token_cross_entropy(logits, targets, jnp.ones_like(mask),
                                          jnp.array([1.0, 3.0]).reshape(mask.shape)),
        (math.log(8 / 3) + 3 * nll_1) / 4, rtol=1e-6)
    assert float(losses.masked_token_cross_entropy(logits, targets, ~jnp.ones_like(mask))) == 0.0


def test_done_rmse_and_total_by_hand():
    # ((0.5 - 0)^2 + (1 - 1)^2) / 2 = 0.125 -> sqrt = 0.35355.
    rmse = losses.done_rmse(jnp.array([[0.5, 1.0]]), jnp.array([[0.0, 1.0]]))
    np.testing.assert_allclose(rmse, math.sqrt(0.125), rtol=1e-6)
    assert float(losses.total_loss(1.0, 0.5, 5.0)) == 3.5


def test_token_metrics_by_hand():
    # Frame 0 (1, 2, 3, 0) -> frame 1 (1, 2, 0, 3); prediction (1, 2, 0, 0): 3/4 right; of the two
    # changed tokens one is right; copying frame 0 gets 2/4.
    tokens = jnp.array([[1, 2, 3, 0], [1, 2, 0, 3]]).reshape(1, 2, 1, 4)
    logits = _one_hot_logits(jnp.array([[0, 0, 0, 0], [1, 2, 0, 0]]).reshape(1, 2, 1, 4))
    mask = jnp.zeros(tokens.shape, bool).at[:, 1].set(True)
    m = {k: float(v) for k, v in losses.token_metrics(logits, tokens, mask).items()}
    assert m == {"token_accuracy": 0.75, "changed_token_accuracy": 0.5, "copy_accuracy": 0.5,
                 "changed_fraction": 0.5}
    np.testing.assert_array_equal(losses.predicted_tokens(logits)[0, 1, 0], [1, 2, 0, 0])


def test_done_accuracy_and_auroc_by_hand():
    accuracy = losses.done_accuracy(jnp.array([0.2, 0.7, 0.5]), jnp.array([0, 0, 1]))
    np.testing.assert_allclose(accuracy, 2 / 3, rtol=1e-6)
    # Positives (0.35, 0.8) vs negatives (0.1, 0.4): 3 of 4 pairs ordered right.
    assert losses.auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert losses.auroc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert math.isnan(losses.auroc(np.array([0.5]), np.array([1])))


def test_training_mask_keeps_context_and_is_deterministic():
    key = jax.random.PRNGKey(0)
    mask = masking.training_mask(key, 64, 4, (4, 2), num_context_frames=2)
    assert mask.shape == (64, 4, 4, 2)
    assert not mask[:, :2].any()
    assert (mask[:, 2:].sum((2, 3)) >= 1).all()
    assert mask[:, 2:].mean() > 0.3  # E[cos(pi u / 2)] = 2 / pi, rounded up
    np.testing.assert_array_equal(mask, masking.training_mask(key, 64, 4, (4, 2),
                                                              num_context_frames=2))
    full = masking.training_mask(key, 8, 4, (4, 2), full_mask_prob=1.0)
    assert full[:, -1].all() and not full[:, :-1].any()


def test_cosine_schedule_counts():
    assert masking.num_masked_after(0, 2, 128) == 90  # floor(128 cos(pi / 4)) = floor(90.5)
    assert masking.num_masked_after(1, 2, 128) == 0
    assert masking.num_masked_after(0, 1, 128) == 0
    counts = [masking.num_masked_after(s, 8, 128) for s in range(8)]
    assert counts == sorted(counts, reverse=True) and counts[-1] == 0


def test_latent_mse_scores_frames_after_the_first_against_the_encoder_latent():
    """Per-bit squared error of predicted latents against margin x code bit; `None` scores
    frame t-1's latent (copying); frame 0 is never scored."""
    tokens = jnp.array([0b01, 0b11]).reshape(1, 2, 1, 1)  # bits (+1, -1), then (+1, +1)
    margins = jnp.array([[0.5, 0.25], [0.1, -0.2]]).reshape(1, 2, 1, 1, 2)
    np.testing.assert_allclose(losses.encoder_latents(tokens, margins)[0, :, 0, 0],
                               [[0.5, -0.25], [0.1, -0.2]])
    predicted = jnp.array([[9.0, 9.0], [0.3, 0.0]]).reshape(1, 2, 1, 1, 2)
    mask = jnp.ones((1, 2, 1, 1), bool)
    np.testing.assert_allclose(losses.latent_mse(predicted, tokens, margins, mask), 0.04,
                               rtol=1e-5)
    np.testing.assert_allclose(losses.latent_mse(None, tokens, margins, mask),
                               (0.4**2 + 0.05**2) / 2, rtol=1e-5)
    np.testing.assert_allclose(losses.latent_mse(predicted, tokens, margins, ~mask), 0.0)
