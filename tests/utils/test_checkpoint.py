"""Checkpointer: round trip of state and meta, latest-step resume, retention, bad restore."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax.utils.checkpoint import Checkpointer


def _state(scale):
    return {
        "params": {"w": jnp.arange(6.0).reshape(2, 3) * scale},
        "rng": jax.random.PRNGKey(7),
        "step": jnp.asarray(3, jnp.int32),
    }


def test_round_trip_restores_latest_state_and_meta(tmp_path):
    with Checkpointer(str(tmp_path), max_to_keep=2) as ckpt:
        assert ckpt.latest_step() is None
        for step in (1, 2, 3):
            assert ckpt.save(step, _state(step), {"data_position": step * 10})
        assert ckpt.all_steps() == [2, 3]  # max_to_keep
    with Checkpointer(str(tmp_path)) as ckpt:  # a new process would see the same
        state, meta = ckpt.restore(_state(0))
        assert ckpt.latest_step() == 3
    np.testing.assert_array_equal(state["params"]["w"], np.arange(6.0).reshape(2, 3) * 3)
    np.testing.assert_array_equal(state["rng"], jax.random.PRNGKey(7))
    assert state["rng"].dtype == jnp.uint32
    assert meta == {"data_position": 30}


def test_interval_skips_unforced_saves(tmp_path):
    with Checkpointer(str(tmp_path), save_interval_steps=5) as ckpt:
        assert not ckpt.save(3, _state(1))
        assert ckpt.save(5, _state(1))
        assert ckpt.save(7, _state(1), force=True)
        assert ckpt.all_steps() == [5, 7]


def test_restore_without_checkpoint_names_the_folder(tmp_path):
    with Checkpointer(str(tmp_path / "empty")) as ckpt:
        with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
            ckpt.restore(_state(0))


def test_bad_interval_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="save_interval_steps"):
        Checkpointer(str(tmp_path), save_interval_steps=0)
