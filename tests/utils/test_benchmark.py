"""Benchmark helpers: XLA's FLOP count, compile time apart, and a donated state carried through."""

import jax
import jax.numpy as jnp
import pytest

from roboscape_jax.utils.benchmark import cost_flops, matmul_peak, time_jitted


def test_cost_flops_of_a_matmul_is_two_n_cubed():
    f = jax.jit(lambda a, b: a @ b)
    a = jnp.ones((64, 32))
    b = jnp.ones((32, 16))
    assert cost_flops(f.lower(a, b)) == pytest.approx(2 * 64 * 32 * 16, rel=0.01)


def test_time_jitted_counts_calls_and_carries_donated_state():
    calls = []

    def step(state, x):
        return state + x

    step_jit = jax.jit(step, donate_argnums=0)
    timing = time_jitted(step_jit, (jnp.zeros(4), jnp.ones(4)), repeats=3, warmup=1,
                         carry=lambda out, args: (calls.append(float(out[0])) or out, args[1]))
    assert calls == [1.0, 2.0, 3.0, 4.0]  # each call saw the previous call's output
    assert timing.compile_s > 0 and 0 < timing.run_s <= timing.median_s
    assert timing.flops_per_s() is None or timing.flops_per_s() > 0


def test_time_jitted_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats"):
        time_jitted(jax.jit(jnp.sin), (jnp.ones(2),), repeats=0)


def test_matmul_peak_is_positive_and_finite():
    peak = matmul_peak(64, repeats=1, chain=2)
    assert 0 < peak < 1e15
