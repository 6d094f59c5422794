"""Seeds shared out over devices (`roboscape_jax.rl.seeds`): the same numbers as jit(vmap) on one
device, with the seed axis split over the devices."""

import os
import subprocess
import sys

import gymnax
import jax
import numpy as np
import pytest

from roboscape_jax.policies import ActorCritic
from roboscape_jax.rl import LogWrapper, PPOConfig, make_train
from roboscape_jax.rl.seeds import compile_over_seeds, seed_devices
from tests.conftest import REPO_ROOT

TINY = PPOConfig(num_envs=2, num_steps=16, total_timesteps=2 * 32, update_epochs=1,
                 num_minibatches=2)


def _host(x) -> np.ndarray:
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def assert_same_runs(expected, got, rtol=0.0):
    """Leaf by leaf (TrainState's bound apply_fn makes whole-tree comparison fail); floats to
    `rtol`: a device running 1 seed instead of 4 may order its float sums differently."""
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
        a, b = _host(a), _host(b)
        if np.issubdtype(a.dtype, np.floating):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
        else:
            np.testing.assert_array_equal(a, b)


def _train():
    env, params = gymnax.make("CartPole-v1")
    return make_train(TINY, LogWrapper(env), params, ActorCritic(2))


def test_seed_devices_takes_the_most_devices_that_divide_the_seeds():
    devices = ["d0", "d1", "d2", "d3"]
    assert seed_devices(4, devices) == devices
    assert seed_devices(6, devices) == devices[:3]
    assert seed_devices(5, devices) == devices[:1]
    assert seed_devices(2, devices[:1]) == devices[:1]
    with pytest.raises(ValueError, match="num_seeds"):
        seed_devices(0, devices)


def test_one_device_matches_jit_vmap():
    train = _train()
    keys = jax.random.split(jax.random.key(3), 2)
    expected = jax.jit(jax.vmap(train))(keys)
    got = compile_over_seeds(train, keys)(keys)
    assert_same_runs(expected, got)


def test_rejects_keys_without_a_seed_axis():
    with pytest.raises(ValueError, match="leading seed axis"):
        compile_over_seeds(_train(), jax.random.key(0))


_FOUR_DEVICES = """
import jax, numpy as np
from tests.rl.test_seeds import _train, assert_same_runs
from roboscape_jax.rl.seeds import compile_over_seeds
train, keys = _train(), jax.random.split(jax.random.key(3), 4)
expected = jax.jit(jax.vmap(train))(keys)
got = compile_over_seeds(train, keys)(keys)
assert_same_runs(expected, got, rtol=1e-4)
loss = got[1]["total_loss"]
print(len(jax.devices()), len(loss.sharding.device_set), loss.shape)
"""


def test_four_devices_split_the_seeds_and_match_jit_vmap():
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    out = subprocess.run([sys.executable, "-c", _FOUR_DEVICES], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-4:] == ["4", "4", "(4,", "2)"], out.stdout
