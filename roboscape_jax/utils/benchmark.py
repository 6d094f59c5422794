"""Timing and FLOP accounting for jitted functions: compile time apart from run time, FLOPs read
from XLA's cost analysis of the program lowered for the CPU (the same count on any device), and
the machine's matmul peak to divide them by.

  timing = time_jitted(jax.jit(f), (x,), repeats=5)     # Timing(compile_s, run_s, flops)
  peak = matmul_peak(2048, jnp.float32)                  # FLOP/s of one n x n x n product
  timing.flops / timing.run_s / peak                     # utilisation
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Timing:
    """One jitted call: compile seconds, best and median run seconds over the timed repeats, and
    XLA's FLOP count per call (None when the backend reports none)."""

    compile_s: float
    run_s: float
    median_s: float
    flops: float | None

    def flops_per_s(self) -> float | None:
        return None if self.flops is None else self.flops / self.run_s


def cost_flops(lowered: Any) -> float | None:
    """FLOPs of a lowered (or compiled) computation from XLA's cost analysis.

    A `lax.scan` or `while_loop` body is counted once, whatever its trip count: time loops by
    the FLOPs of their body (see `time_jitted`'s `flops`).
    """
    cost = lowered.cost_analysis()
    if isinstance(cost, Sequence) and not isinstance(cost, dict):  # older jax: one per module
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    flops = float(cost["flops"])
    return flops if flops > 0 else None


def program_flops(fn: Any, args: tuple) -> float | None:
    """FLOPs of one call `fn(*args)` (`fn` a `jax.jit` function), counted on the program lowered
    for the host CPU, so that a figure does not depend on the device that runs it: a GPU's
    compiled cost analysis leaves out the cuBLAS / cuDNN calls that do most of the work. None
    where the program cannot be lowered for the CPU (e.g. a step pinned to a GPU mesh)."""
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])

    def spec(x):
        return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x), sharding=cpu)

    try:
        return cost_flops(fn.lower(*jax.tree.map(spec, args)))
    except (ValueError, TypeError, NotImplementedError):
        if jax.default_backend() == "cpu":  # e.g. a step sharded over several CPU devices
            return cost_flops(fn.lower(*args))
        return None


def _block(tree: Any) -> Any:
    return jax.block_until_ready(tree)


def time_jitted(fn: Any, args: tuple, *, repeats: int = 3, warmup: int = 1,
                carry: Callable[[Any, tuple], tuple] | None = None,
                flops: float | None = None) -> Timing:
    """Compiles `fn` (a `jax.jit` function) for `args`, then times `repeats` calls after `warmup`.

    `carry(outputs, args) -> args` feeds a call's outputs into the next call's arguments (a
    train step whose state is donated). `flops` overrides the cost analysis (e.g. a scan's body
    FLOPs times its length).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - start
    if flops is None:
        flops = program_flops(fn, args)
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        out = _block(compiled(*args))
        if i >= warmup:
            times.append(time.perf_counter() - start)
        if carry is not None:
            args = carry(out, args)
    return Timing(compile_s, min(times), statistics.median(times), flops)


def matmul_peak(n: int, dtype: Any = jnp.float32, *, repeats: int = 5, chain: int = 4,
                seed: int = 0) -> float:
    """FLOP/s of `chain` n x n x n products in one jitted call (best of `repeats`), the
    reference a model's achieved FLOP/s is divided by. Default matmul precision, as the models
    run."""
    ka, kb = jax.random.split(jax.random.PRNGKey(seed))
    a = jax.random.normal(ka, (n, n), dtype)
    b = jax.random.normal(kb, (n, n), dtype) / jnp.sqrt(n).astype(dtype)

    @jax.jit
    def products(a, b):
        for _ in range(chain):  # a short chain amortises the dispatch of small products
            a = a @ b
        return a

    timing = time_jitted(products, (a, b), repeats=repeats, flops=2.0 * n**3 * chain)
    return timing.flops_per_s()
