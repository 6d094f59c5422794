"""The temporal-stability loss: static-token mask, hinge, previous frames in the batch, and a
debug training run that reads them."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.tokenizer import tokenizer_config
from roboscape_jax.tokenizer import train
from roboscape_jax.tokenizer.frames import ArrayFrameSource, SplitFrameSource, synthetic_frames
from roboscape_jax.tokenizer.losses import (
    static_token_mask,
    temporal_stability_loss,
    tokenizer_loss,
)
from roboscape_jax.utils.metrics import read_jsonl


def test_static_token_mask_marks_the_patch_that_moved():
    previous = jnp.zeros((1, 16, 8, 3))
    target = previous.at[0, 9, 2, 1].set(0.5)  # one pixel of patch (row 2, col 0), 4x4 patches
    mask = static_token_mask(target, previous, patch=4)
    assert mask.shape == (1, 4, 2, 1)
    expected = np.ones((4, 2))
    expected[2, 0] = 0.0
    np.testing.assert_array_equal(np.asarray(mask[0, ..., 0]), expected)
    # a change below the threshold (16 / 255 of the range) is no motion
    small = previous.at[0, 9, 2, 1].set(0.05)
    assert float(static_token_mask(small, previous, patch=4).min()) == 1.0
    with pytest.raises(ValueError, match="do not split into 3x3"):
        static_token_mask(target, previous, patch=3)


def test_temporal_hinge_counts_only_static_tokens_and_holds_the_previous_latents_fixed():
    z_prev = jnp.array([[[[0.8, -0.6]], [[0.5, 0.5]]]])  # [1, 2, 1, 2]
    z = jnp.array([[[[0.9, 0.2]], [[-0.5, -0.5]]]])  # token 0: bit 1 flipped; token 1: both
    static = jnp.array([[[[1.0]], [[0.0]]]])  # token 1 moved: its flips are allowed
    loss, terms = temporal_stability_loss(z, z_prev, static, margin=0.25)
    # token 0: bit 0 agrees by 0.9 > margin (0), bit 1 by -0.2 (hinge 0.45); over 2 static bits
    np.testing.assert_allclose(float(loss), 0.45 / 2, rtol=1e-6)
    np.testing.assert_allclose(float(terms["static_flip_rate"]), 0.5)
    np.testing.assert_allclose(float(terms["static_token_fraction"]), 0.5)
    g_z, g_prev = jax.grad(lambda a, b: temporal_stability_loss(a, b, static, 0.25)[0],
                           argnums=(0, 1))(z, z_prev)
    assert float(jnp.abs(g_prev).sum()) == 0.0
    np.testing.assert_allclose(np.asarray(g_z[0, 0, 0]), [0.0, 0.5])  # pushes bit 1 back to +
    assert float(jnp.abs(g_z[0, 1]).sum()) == 0.0


def test_tokenizer_loss_needs_the_previous_frame_when_the_loss_is_on():
    config = tokenizer_config("debug")
    config.loss.temporal_weight = 1.0
    x = jnp.zeros((2, 128, 64, 3))
    z = jnp.full((2, 16, 8, 6), 0.5)
    with pytest.raises(ValueError, match="previous frame"):
        tokenizer_loss(x, x, z, jnp.sign(z), config.loss)
    loss_on, metrics = tokenizer_loss(x, x, z, jnp.sign(z), config.loss, previous=x,
                                      previous_latents=-z)
    config.loss.temporal_weight = 0.0
    loss_off, _ = tokenizer_loss(x, x, z, jnp.sign(z), config.loss)
    # every token static, every bit flipped by 0.5: hinge 0.75 per bit
    np.testing.assert_allclose(float(metrics["temporal_stability"]), 0.75, rtol=1e-6)
    np.testing.assert_allclose(float(loss_on - loss_off), 0.75, rtol=1e-5)


def test_previous_frames_stop_at_the_episode_start_and_share_the_colour_order():
    frames = np.arange(6, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    frames[..., 1] += 100  # channels differ, so a reordering shows
    source = SplitFrameSource(frames[:4], frames[4:], [2, 2], [2])
    np.testing.assert_array_equal(source.get_previous(np.array([0, 1, 2, 3, 4, 5]))[:, 0, 0, 0],
                                  [0, 0, 2, 2, 4, 4])
    with pytest.raises(ValueError, match="no previous frames"):
        ArrayFrameSource(frames, 0.5).get_previous(np.array([1]))
    config = tokenizer_config("debug")
    config.input.update(batch_size=8, colour_permute_fraction=1.0)
    batch = train.make_batch_fn(config, source, previous=True)(0)
    assert set(batch) == {"frames", "previous"}
    # each frame and its predecessor got the same channel order: the frame-index difference is
    # the same (0 or 1) in every channel
    diff = batch["frames"][:, 0, 0].astype(int) - batch["previous"][:, 0, 0].astype(int)
    assert (diff == diff[:, :1]).all() and set(np.unique(diff)) <= {0, 1}
    assert (batch["frames"][:, 0, 0, 1] != batch["frames"][:, 0, 0, 0] + 100).any()


def test_debug_run_with_the_temporal_loss_logs_it_and_needs_episodes(tmp_path):
    config = tokenizer_config("debug")
    config.loss.temporal_weight = 1.0
    frames = synthetic_frames(24, seed=0)
    with pytest.raises(ValueError, match="previous frame.*episode boundaries"):
        train.train_and_evaluate(config, str(tmp_path / "no_episodes"),
                                 ArrayFrameSource(frames, 0.25))
    source = SplitFrameSource(frames[:16], frames[16:], [8, 8], [8])
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(config, workdir, source)
    rows = [r for r in read_jsonl(os.path.join(workdir, "metrics.jsonl")) if "loss" in r]
    assert len(rows) == config.num_steps
    for row in rows:
        assert 0.0 <= row["static_flip_rate"] <= 1.0
        assert row["temporal_stability"] >= 0.0 and np.isfinite(row["loss"])
