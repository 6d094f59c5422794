"""Wilson score intervals worked by hand."""

import math

import pytest

from roboscape_jax.utils.stats import wilson_interval


def test_wilson_interval_by_hand():
    # 5/10, z = 1.96: centre (0.5 + 0.19208) / 1.38416 = 0.5; half 1.41602 * sqrt(0.025 +
    # 0.009604) = 0.26341.
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.23659, abs=1e-4) and high == pytest.approx(0.76341, abs=1e-4)
    # 0/1: centre 1.9208 / 4.8416 = 0.39672 = half, so (0, 0.79344).
    low, high = wilson_interval(0, 1)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.79344, abs=1e-4)
    low, high = wilson_interval(4, 4)
    assert high == pytest.approx(1.0) and 0.39 < low < 0.52  # 0.5101
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="successes <= trials"):
        wilson_interval(3, 2)
