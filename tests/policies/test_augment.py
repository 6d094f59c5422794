"""Random-shift augmentation: each view is an edge-padded crop of itself, views move apart."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax.policies.augment import random_shift


def _frames(b=6, h=16, w=8):
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.integers(0, 256, (b, h, w, 3)), jnp.uint8)


def test_each_view_is_a_shifted_crop_of_its_edge_padded_self():
    frames, pad = _frames(), 2
    out = np.asarray(random_shift(jax.random.key(1), frames, pad=pad))
    assert out.shape == frames.shape and out.dtype == np.uint8
    views = np.asarray(frames).reshape(12, 8, 8, 3)
    shifted = out.reshape(12, 8, 8, 3)
    offsets = []
    for view, got in zip(views, shifted, strict=True):
        padded = np.pad(view, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                if np.array_equal(padded[dy:dy + 8, dx:dx + 8], got)]
        assert hits, "a view is not a crop of its padded self"
        offsets.append(hits[0])
    assert len(set(offsets)) > 1  # samples and views draw their own offsets


def test_zero_pad_is_the_identity_and_keys_decide_the_shift():
    frames = _frames()
    assert random_shift(jax.random.key(0), frames, pad=0) is frames
    a = random_shift(jax.random.key(3), frames, pad=3)
    np.testing.assert_array_equal(a, random_shift(jax.random.key(3), frames, pad=3))
    assert not np.array_equal(a, random_shift(jax.random.key(4), frames, pad=3))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="pad must be >= 0"):
        random_shift(jax.random.key(0), _frames(), pad=-1)
    with pytest.raises(ValueError, match="does not split into 2 views"):
        random_shift(jax.random.key(0), _frames(h=15), pad=1)
