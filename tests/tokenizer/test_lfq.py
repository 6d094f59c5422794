"""LFQ worked by hand: sign quantization, bits <-> index, sub-codes, straight-through, entropy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax.tokenizer.losses import commitment_loss, lfq_entropy_loss, lfq_entropy_terms
from roboscape_jax.tokenizer.model import (
    bits_to_index,
    hysteresis_quantize,
    index_to_bits,
    index_to_subcodes,
    lfq_quantize,
    subcodes_to_index,
)


def test_sign_quantization_maps_zero_to_plus_one():
    z = jnp.array([[-2.0, -1e-6, 0.0, 3e-7, 5.0]])
    np.testing.assert_array_equal(lfq_quantize(z), [[-1.0, -1.0, 1.0, 1.0, 1.0]])


def test_bits_to_index_is_lsb_first():
    # bits (LSB first) +,-,+,+ -> 1*1 + 0*2 + 1*4 + 1*8 = 13
    q = jnp.array([[1.0, -1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(bits_to_index(q), [13, 0, 15])
    np.testing.assert_array_equal(index_to_bits(jnp.array(13), 4), [1.0, -1.0, 1.0, 1.0])


def test_index_bits_round_trip_over_whole_codebook():
    index = jnp.arange(2**6)
    np.testing.assert_array_equal(bits_to_index(index_to_bits(index, 6)), index)


def test_subcodes_by_hand_and_round_trip():
    # 18 bits as 2 x 9: index = low + 512 * high
    index = jnp.array([0, 511, 512, 3 + 512 * 7, 2**18 - 1])
    subs = index_to_subcodes(index, 18, 2)
    np.testing.assert_array_equal(subs, [[0, 0], [511, 0], [0, 1], [3, 7], [511, 511]])
    np.testing.assert_array_equal(subcodes_to_index(subs, 18), index)
    all_codes = jnp.arange(2**12)
    np.testing.assert_array_equal(
        subcodes_to_index(index_to_subcodes(all_codes, 12, 3), 12), all_codes)
    with pytest.raises(ValueError, match="split evenly"):
        index_to_subcodes(index, 18, 4)


def test_straight_through_gradient_is_identity():
    z = jnp.array([-1.5, -0.2, 0.0, 0.3, 2.0])
    weights = jnp.arange(1.0, 6.0)
    grad = jax.grad(lambda z: jnp.sum(weights * lfq_quantize(z)))(z)
    np.testing.assert_array_equal(grad, weights)


def test_entropy_of_a_uniform_latent_is_log2_per_bit():
    # z = 0: p(+1) = sigmoid(0) = 1/2 per bit -> H = K ln 2 per sample and for the batch.
    per_sample, codebook = lfq_entropy_terms(jnp.zeros((3, 2)), tau=1.0)
    np.testing.assert_allclose([per_sample, codebook], [2 * math.log(2)] * 2, rtol=1e-6)


def test_entropy_of_confident_opposite_latents():
    # K = 1, z = +-10, tau = 1: p(+1) = sigmoid(+-40) ~ 1 or 0: each sample certain (H ~ 0), the
    # batch mean is (1/2, 1/2): codebook entropy ln 2; loss = 0 - 1 * ln 2.
    loss, terms = lfq_entropy_loss(jnp.array([[10.0], [-10.0]]), tau=1.0, gamma=1.0)
    np.testing.assert_allclose(terms["per_sample_entropy"], 0.0, atol=1e-6)
    np.testing.assert_allclose(terms["codebook_entropy"], math.log(2), rtol=1e-6)
    np.testing.assert_allclose(loss, -math.log(2), rtol=1e-6)


def test_entropy_three_quarters_by_hand():
    # K = 1, tau = 1, z = ln(3) / 4: p(+1) = sigmoid(ln 3) = 3/4.
    # Per sample: H(3/4, 1/4) = -(3/4 ln 3/4 + 1/4 ln 1/4) = 0.562335.
    # Batch {z, -z}: mean p = (1/2, 1/2), H = ln 2; gamma = 0.5: loss = 0.562335 - 0.5 ln 2.
    z = math.log(3) / 4
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    loss, terms = lfq_entropy_loss(jnp.array([[z], [-z]]), tau=1.0, gamma=0.5)
    np.testing.assert_allclose(terms["per_sample_entropy"], h, rtol=1e-5)
    np.testing.assert_allclose(terms["codebook_entropy"], math.log(2), rtol=1e-5)
    np.testing.assert_allclose(loss, h - 0.5 * math.log(2), rtol=1e-5)
    # Batch {z, z}: mean p = (3/4, 1/4), so the codebook entropy equals the per-sample one.
    _, terms = lfq_entropy_loss(jnp.array([[z], [z]]), tau=1.0)
    np.testing.assert_allclose(terms["codebook_entropy"], h, rtol=1e-5)


def test_factorized_entropy_sums_groups_and_matches_full_when_independent():
    # Two bits in two groups of one bit. Samples (+,+), (-,-) confident: the joint batch
    # distribution is {00: 1/2, 11: 1/2} (ln 2), but each group alone is (1/2, 1/2): 2 ln 2.
    z = jnp.array([[10.0, 10.0], [-10.0, -10.0]])
    _, full = lfq_entropy_terms(z, tau=1.0, num_factors=1)
    _, factored = lfq_entropy_terms(z, tau=1.0, num_factors=2)
    np.testing.assert_allclose([full, factored], [math.log(2), 2 * math.log(2)], rtol=1e-6)
    # All four corners equally often: the bits are independent and both give 2 ln 2.
    z = jnp.array([[10.0, 10.0], [-10.0, -10.0], [10.0, -10.0], [-10.0, 10.0]])
    _, full = lfq_entropy_terms(z, tau=1.0, num_factors=1)
    _, factored = lfq_entropy_terms(z, tau=1.0, num_factors=2)
    np.testing.assert_allclose([full, factored], [2 * math.log(2)] * 2, rtol=1e-6)


def test_commitment_loss_by_hand():
    z = jnp.array([[0.5, -2.0]])
    # q = (+1, -1): ((0.5 - 1)^2 + (-2 + 1)^2) / 2 = (0.25 + 1) / 2
    np.testing.assert_allclose(commitment_loss(z, lfq_quantize(z)), 0.625, rtol=1e-6)


def test_hysteresis_keeps_a_sign_inside_the_margin_and_follows_outside():
    z = jnp.array([[0.5, -0.5], [-0.1, -0.05], [-0.3, 0.1], [0.05, 0.3]])  # [T=4, K=2]
    np.testing.assert_array_equal(hysteresis_quantize(z, 0.2),
                                  [[1, -1], [1, -1], [-1, -1], [-1, 1]])
    np.testing.assert_array_equal(hysteresis_quantize(z, 0.0), lfq_quantize(z))
