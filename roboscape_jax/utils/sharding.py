"""Data parallelism with `jax.sharding`, optional FSDP-style parameter sharding, and multi-host.

A 1-D mesh named `data` over every device of every process. Every array in a batch is split on its
leading axis. The training state (parameters, optimizer moments, EMA, PRNG key) is replicated, or
with `fsdp=True` each large leaf is split over the same axis along its largest divisible dimension
(ZeRO-3 / FSDP placement: XLA gathers a weight where a step needs it and reduce-scatters its
gradient). Under `jit` with these shardings XLA inserts the collectives itself, and the numbers
match a one-device run up to float summation order.

Multi-host (`jax.distributed.initialize`, see `experiments/launch.py`): every process runs the same
program; `global_batch` turns each process's view of the global batch into one global array, each
process contributing the rows its own devices hold, and `host_local` brings a (possibly sharded)
state back whole to every process for evaluation. On one process both are the identity.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from roboscape_jax.types import PyTree

DATA_AXIS = "data"
FSDP_MIN_SIZE = 2**14  # leaves with fewer entries stay replicated: splitting them saves nothing


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named `data` over `devices` (default: all of `jax.devices()`, every process's,
    ordered by process)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def parallel_mesh(parallel=None) -> Mesh:
    """The data mesh of a trainer's `parallel` section: over the first `num_devices` devices
    (absent, None or 0: all of them). Small batches can run faster whole on one device than split
    (the `tiny` tokenizer's batch of 8 on two CPU devices: docs/performance_history.md)."""
    count = int((parallel or {}).get("num_devices") or 0)
    devices = jax.devices()
    if count < 0 or count > len(devices):
        raise ValueError(f"parallel num_devices={count}, but {len(devices)} device(s) are present "
                         "(0 = all)")
    return data_mesh(devices[:count] if count else devices)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the `data` axis; the other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises ValueError unless the global batch splits evenly over the mesh's devices."""
    if batch_size % mesh.size:
        raise ValueError(f"batch size {batch_size} does not split over {mesh.size} devices; "
                         f"use a multiple of {mesh.size}")


def fsdp_spec(shape: Sequence[int], num_devices: int,
              min_size: int = FSDP_MIN_SIZE) -> PartitionSpec:
    """Where FSDP puts one leaf: its largest dimension that `num_devices` divides is split over
    `data`; leaves under `min_size` entries, or with no such dimension, are replicated."""
    shape = tuple(int(n) for n in shape)
    if num_devices == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return PartitionSpec()
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % num_devices == 0:
            return PartitionSpec(*(DATA_AXIS if a == axis else None for a in range(len(shape))))
    return PartitionSpec()


def state_shardings(state: PyTree, mesh: Mesh, *, fsdp: bool = False,
                    min_size: int = FSDP_MIN_SIZE) -> PyTree:
    """A NamedSharding per leaf of `state`: replicated, or FSDP-split (`fsdp_spec`)."""
    if not fsdp:
        return jax.tree.map(lambda _: replicated(mesh), state)
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(np.shape(x), mesh.size,
                                                                min_size)), state)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Places every leaf of `tree` whole on every device of `mesh`."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """Splits every leaf of `batch` on its leading axis over `mesh` (one process)."""
    return jax.device_put(batch, batch_sharded(mesh))


def global_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """`batch` (every process computes the same global batch, which the trainers' batch
    functions do: they are deterministic in the step) as global arrays split on axis 0: on
    several processes each contributes only the rows its devices hold
    (`jax.make_array_from_process_local_data`); on one process the batch is returned as is
    (the jitted step's in_shardings place it)."""
    count = jax.process_count()
    if count == 1:
        return batch
    sharding, index = batch_sharded(mesh), jax.process_index()

    def local(x):
        x = np.asarray(x)
        if x.shape[0] % count:
            raise ValueError(f"batch of {x.shape[0]} rows does not split over {count} processes")
        rows = x.shape[0] // count
        return jax.make_array_from_process_local_data(sharding, x[index * rows:(index + 1) * rows],
                                                      x.shape)

    return jax.tree.map(local, batch)


def host_local(tree: PyTree) -> PyTree:
    """Every leaf whole on this process (numpy): sharded leaves are gathered from every
    process. The identity on one process, where jitted code reads sharded arrays directly."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def is_primary() -> bool:
    """Whether this process writes the run's logs and evaluations (process 0)."""
    return jax.process_index() == 0


def process_dir(workdir: str) -> str:
    """Where this process writes its own logs: `workdir` for process 0, `workdir/process_<i>`
    for the others (so several processes never append to one file)."""
    return workdir if is_primary() else os.path.join(workdir, f"process_{jax.process_index()}")


def data_parallel_jit(step_fn: Callable, mesh: Mesh, *, num_extra_args: int = 0,
                      donate_state: bool = True, state_sharding: PyTree | None = None
                      ) -> Callable:
    """`jit` of `step_fn(state, batch, *extra) -> (state, metrics)` for data parallelism.

    The state is replicated, or placed as `state_sharding` says (`state_shardings`, e.g. FSDP;
    the new state keeps it); the `num_extra_args` trailing arguments (e.g. frozen weights) and
    the metrics are replicated; the batch is split on axis 0. The input state is donated unless
    `donate_state=False`.
    """
    state_sharding = replicated(mesh) if state_sharding is None else state_sharding
    in_shardings = (state_sharding, batch_sharded(mesh)) + (replicated(mesh),) * num_extra_args
    return jax.jit(step_fn, in_shardings=in_shardings,
                   out_shardings=(state_sharding, replicated(mesh)),
                   donate_argnums=(0,) if donate_state else ())


def place_parallel_state(state: PyTree, mesh: Mesh, parallel=None) -> tuple[PyTree, PyTree]:
    """(placed state, its shardings) for a trainer's `parallel` section ({"fsdp": bool,
    "fsdp_min_size": int, "num_devices": int (`parallel_mesh`)}, or None: replicated)."""
    parallel = parallel or {}
    fsdp = bool(parallel.get("fsdp", False))
    min_size = int(parallel.get("fsdp_min_size", FSDP_MIN_SIZE))
    shardings = state_shardings(state, mesh, fsdp=fsdp, min_size=min_size)
    return jax.device_put(state, shardings), shardings
