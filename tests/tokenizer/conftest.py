"""Tokenizer tests compile many small programs: skip most XLA optimizations (as flax's
examples do)."""

import jax
import pytest


@pytest.fixture(scope="module", autouse=True)
def fast_compiles():
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
