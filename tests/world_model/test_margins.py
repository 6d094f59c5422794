"""Bit margins of generated frames read from the model's bit probabilities (margins.py)."""

import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax.tokenizer.model import index_to_subcodes
from roboscape_jax.world_model.margins import (
    MarginCalibration,
    bit_agreement,
    calibrated_margins,
    fit_margin_calibration,
    load_calibration,
    save_calibration,
)


def _confident_logits(codes, num_bits=6, num_factors=2, scale=30.0):
    """Factored logits [B, K, F, V] that put all mass on `codes` [B, K]."""
    v = 2 ** (num_bits // num_factors)
    sub = index_to_subcodes(jnp.asarray(codes), num_bits, num_factors)
    return scale * (jnp.arange(v) == sub[..., None]).astype(jnp.float32)


def test_bit_agreement_is_plus_one_where_the_model_is_sure_of_the_chosen_bit():
    codes = jnp.array([[5, 40]])
    agreement = bit_agreement(_confident_logits(codes), codes, 6)
    np.testing.assert_allclose(agreement, np.ones((1, 2, 6)), atol=1e-6)
    other = codes ^ jnp.array([[1 << 4, 1]])  # the chosen code differs in bit 4 / bit 0
    flipped = np.asarray(bit_agreement(_confident_logits(codes), other, 6))
    np.testing.assert_allclose(flipped[0, 0], [1, 1, 1, 1, -1, 1], atol=1e-6)
    np.testing.assert_allclose(flipped[0, 1], [-1, 1, 1, 1, 1, 1], atol=1e-6)
    uniform = bit_agreement(jnp.zeros((1, 2, 2, 8)), codes, 6)  # no preference: 0
    np.testing.assert_allclose(uniform, 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="bit"):
        bit_agreement(jnp.zeros((1, 2, 2, 8)), codes, 8)


def test_calibration_fits_the_conditional_mean_and_clamps_at_its_ends(tmp_path):
    rng = np.random.default_rng(0)
    agreement = rng.uniform(-1, 1, 20_000)
    margins = 0.5 + 0.4 * agreement + rng.normal(0, 0.05, agreement.shape)
    cal = fit_margin_calibration(agreement, margins, num_bins=20)
    assert np.all(np.diff(np.asarray(cal.agreement)) > 0)
    np.testing.assert_allclose(cal.margin, 0.5 + 0.4 * np.asarray(cal.agreement), atol=0.01)
    out = calibrated_margins(cal, jnp.array([-5.0, 0.0, 5.0]))
    np.testing.assert_allclose(out, [cal.margin[0], 0.5, cal.margin[-1]], atol=0.01)
    save_calibration(str(tmp_path / "c.json"), cal)
    back = load_calibration(str(tmp_path / "c.json"))
    np.testing.assert_allclose(back.margin, cal.margin)
    with pytest.raises(FileNotFoundError, match="evaluate_world_models"):
        load_calibration(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="finite"):
        fit_margin_calibration(np.full(100, np.nan), np.zeros(100))
    with pytest.raises(ValueError, match="as many"):
        fit_margin_calibration(np.zeros(100), np.zeros(99))
    assert isinstance(cal, MarginCalibration)
