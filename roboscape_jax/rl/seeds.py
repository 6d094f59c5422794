"""Independent training runs (seeds) spread over devices: `jit(shard_map(vmap(train)))`.

PureJaxRL runs seeds as `jit(vmap(train))` on one device. Seeds share nothing, so each device can
run its share on its own with no communication; on a CPU host split into N devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=N`) that puts the seeds on N cores at once,
where one device's small matmuls leave the other cores idle.

  compiled = compile_over_seeds(make_train(config, env, env_params, network), keys)
  runner, metrics = compiled(keys)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.sharding import PartitionSpec

from roboscape_jax.utils.sharding import DATA_AXIS, batch_sharded, data_mesh


def seed_devices(num_seeds: int, devices: Sequence[jax.Device] | None = None) -> list[jax.Device]:
    """The most of `devices` (default: all local devices) whose count divides `num_seeds`."""
    devices = list(jax.local_devices() if devices is None else devices)
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    if not devices:
        raise ValueError("no devices to run the seeds on")
    count = max(n for n in range(1, len(devices) + 1) if num_seeds % n == 0)
    return devices[:count]


def over_seeds(train: Callable[[jax.Array], Any], num_seeds: int,
               devices: Sequence[jax.Device] | None = None) -> Callable[[jax.Array], Any]:
    """`train(key)` vmapped over a leading seed axis of keys, each device running
    `num_seeds / len(devices)` of them (devices as `seed_devices` picks them). Jitted; every
    output keeps the seed axis first, sharded over the devices."""
    mesh = data_mesh(seed_devices(num_seeds, devices))
    spec = PartitionSpec(DATA_AXIS)
    fn = jax.shard_map(jax.vmap(train), mesh=mesh, in_specs=spec, out_specs=spec,
                       check_vma=False)
    return jax.jit(fn, in_shardings=batch_sharded(mesh))


def compile_over_seeds(train: Callable[[jax.Array], Any], keys: jax.Array,
                       devices: Sequence[jax.Device] | None = None) -> Any:
    """`over_seeds(train, len(keys), devices)` compiled ahead of time for `keys`."""
    if keys.ndim < 1 or keys.shape[0] < 1:
        raise ValueError(f"keys need a leading seed axis of length >= 1, got shape {keys.shape}")
    return over_seeds(train, keys.shape[0], devices).lower(keys).compile()
