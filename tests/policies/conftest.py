"""Policy tests compile many small programs: skip most XLA optimizations."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def _fast_compiles(fast_compiles):
    yield
