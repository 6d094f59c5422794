"""Bit margins of a generated frame read from the world model's own bit probabilities.

An action model with `margin_inputs` reads, at frame t, frame t-1's bit margins (encoder latent
times code sign): how close each bit was to flipping. A generated frame has no encoder latent.
Re-encoding its decoded image gives margins that disagree with real ones (decode-encode error
reads as motion: rollouts changed 13x as many tokens at their second step, most of them wrong),
and costs an encoder pass per env step. Instead, the model's own probabilities for each bit of
the code it chose say how sure it was: `bit_agreement` is E[bit] x chosen bit, in [-1, 1], and a
`MarginCalibration` fitted on `train` windows maps it to the real margin's conditional mean
(a binned regression, read by linear interpolation).
"""

from __future__ import annotations

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from roboscape_jax.tokenizer.model import index_to_bits, index_to_subcodes
from roboscape_jax.utils.files import write_json

# The range the world model reads bit margins in (`model.WorldModel._previous_margins`); the
# calibration and the latent head's targets use the same.
MARGIN_RANGE = (-1.0, 2.0)


def clip_margins(margins: jax.Array) -> jax.Array:
    """Bit margins [...] as the world model reads them: float32, clipped to MARGIN_RANGE."""
    return jnp.clip(jnp.asarray(margins, jnp.float32), *MARGIN_RANGE)


@struct.dataclass
class MarginCalibration:
    """Piecewise-linear map from bit agreement to bit margin (both float32 [N], agreement
    increasing)."""

    agreement: jax.Array
    margin: jax.Array


def bit_agreement(logits: jax.Array, tokens: jax.Array, num_bits: int) -> jax.Array:
    """Factored logits [B, K, F, V] and the chosen codes int [B, K] -> float32 [B, K, num_bits]:
    each bit's expected value (+-1) under the model times the chosen code's bit."""
    b, k, f, v = logits.shape
    chex.assert_shape(tokens, (b, k))
    bits_per_factor = num_bits // f
    if f * bits_per_factor != num_bits or 2 ** bits_per_factor != v:
        raise ValueError(f"logits [.., {f}, {v}] do not hold {num_bits}-bit codes")
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    expected = probs @ index_to_bits(jnp.arange(v), bits_per_factor)  # [B, K, F, bits / F]
    chosen = index_to_bits(index_to_subcodes(tokens, num_bits, f), bits_per_factor)
    return (expected * chosen).reshape(b, k, num_bits)


def calibrated_margins(calibration: MarginCalibration, agreement: jax.Array) -> jax.Array:
    """Bit agreement [...] -> margins [...] (float32), clamped at the calibration's ends."""
    return jnp.interp(agreement, calibration.agreement, calibration.margin).astype(jnp.float32)


def fit_margin_calibration(agreement: np.ndarray, margins: np.ndarray,
                           num_bins: int = 40) -> MarginCalibration:
    """The mean real margin in each of `num_bins` equal-count bins of agreement, at the bin's
    mean agreement. Margins are clipped to MARGIN_RANGE, as the model reads them."""
    a = np.asarray(agreement, np.float64).ravel()
    m = np.clip(np.asarray(margins, np.float64).ravel(), *MARGIN_RANGE)
    if a.shape != m.shape or a.size < num_bins:
        raise ValueError(f"need as many margins as agreements, at least {num_bins}; got "
                         f"{a.size} and {m.size}")
    if not (np.isfinite(a).all() and np.isfinite(m).all()):
        raise ValueError("bit agreements and margins must be finite")
    order = np.argsort(a, kind="stable")
    xs, ys = [], []
    for chunk in np.array_split(order, num_bins):
        xs.append(a[chunk].mean())
        ys.append(m[chunk].mean())
    xs, ys = np.asarray(xs), np.asarray(ys)
    keep = np.concatenate([[True], np.diff(xs) > 0])  # interp needs increasing points
    return MarginCalibration(jnp.asarray(xs[keep], jnp.float32), jnp.asarray(ys[keep], jnp.float32))


def flat_calibration(margin: float = 0.5) -> MarginCalibration:
    """Every bit gets `margin`: a stand-in where no fitted calibration exists (benchmarks with
    random models, whose step cost does not depend on the values)."""
    return MarginCalibration(jnp.array([-1.0, 1.0]), jnp.full((2,), margin, jnp.float32))


def save_calibration(path: str, calibration: MarginCalibration) -> None:
    write_json(path, {"agreement": np.asarray(calibration.agreement).tolist(),
                      "margin": np.asarray(calibration.margin).tolist()})


def load_calibration(path: str) -> MarginCalibration:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no margin calibration at {path} (the evaluate_world_models "
                                "stage writes it)")
    with open(path) as f:
        data = json.load(f)
    return MarginCalibration(jnp.asarray(data["agreement"], jnp.float32),
                             jnp.asarray(data["margin"], jnp.float32))
