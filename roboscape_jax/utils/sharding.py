"""Data parallelism with `jax.sharding`: a 1-D mesh over the devices, the batch split on axis 0.

Parameters, optimizer state and PRNG keys are replicated; every array in a batch is sharded on its
leading axis. Under `jit` with these shardings XLA inserts the gradient all-reduce itself, and the
numbers match a one-device run up to float summation order.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from roboscape_jax.types import PyTree

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named `data` over `devices` (default: all of `jax.devices()`)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


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


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Places every leaf of `tree` whole on every device of `mesh`."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """Splits every leaf of `batch` on its leading axis over `mesh`."""
    return jax.device_put(batch, batch_sharded(mesh))


def data_parallel_jit(step_fn: Callable, mesh: Mesh, *, num_extra_args: int = 0,
                      donate_state: bool = True) -> Callable:
    """`jit` of `step_fn(state, batch, *extra) -> (state, metrics)` for data parallelism.

    The state, the `num_extra_args` trailing arguments (e.g. frozen weights) and the outputs are
    replicated; the batch is split on axis 0. The input state is donated unless
    `donate_state=False`.
    """
    in_shardings = (replicated(mesh), batch_sharded(mesh)) + (replicated(mesh),) * num_extra_args
    return jax.jit(step_fn, in_shardings=in_shardings,
                   out_shardings=(replicated(mesh), replicated(mesh)),
                   donate_argnums=(0,) if donate_state else ())
