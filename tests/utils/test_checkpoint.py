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


def test_a_checkpoint_from_before_a_none_field_existed_restores_into_the_new_state(tmp_path):
    # The tokenizer's state gained disc_params / disc_opt_state (None when the adversarial loss
    # is off); checkpoints written before must keep loading, while other mismatches still fail.
    from flax import struct

    @struct.dataclass
    class Old:
        step: jax.Array
        params: dict

    @struct.dataclass
    class New:
        step: jax.Array
        params: dict
        extra: dict | None = None

    old = Old(step=jnp.array(7), params={"w": jnp.arange(3.0)})
    with Checkpointer(str(tmp_path / "ckpt")) as ckpt:
        ckpt.save(7, old, {"note": "old"})
        template = New(step=jnp.array(0), params={"w": jnp.zeros(3)})
        restored, meta = ckpt.restore(template)
        assert isinstance(restored, New) and restored.extra is None
        assert int(restored.step) == 7 and meta == {"note": "old"}
        np.testing.assert_array_equal(restored.params["w"], [0.0, 1.0, 2.0])
        with pytest.raises(ValueError):  # a field the checkpoint lacks that is not None
            ckpt.restore(New(step=jnp.array(0), params={"w": jnp.zeros(3)},
                             extra={"v": jnp.zeros(2)}))
