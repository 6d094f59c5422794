"""World-model tests compile many small programs: skip most XLA optimizations (as flax's examples
do), and share tiny models."""

import jax
import jax.numpy as jnp
import pytest

from roboscape_jax.world_model.model import WorldModel, WorldModelConfig

# 4x2 tokens of 6 bits (2 x 2^3), 3-frame windows: compiles in a second or two.
TINY = dict(num_bits=6, num_factors=2, grid_height=4, grid_width=2, num_frames=3, depth=2,
            width=32, num_heads=2, action_hidden=8, done_hidden=16)


@pytest.fixture(scope="module", autouse=True)
def _fast_compiles(fast_compiles):
    yield


def random_inputs(config: WorldModelConfig, key, batch: int = 2, text_length: int = 5):
    """(tokens [B, T, h, w], control, control_mask) of random values for `config`."""
    rng_tokens, rng_control = jax.random.split(key)
    shape = (batch, config.num_frames, config.grid_height, config.grid_width)
    tokens = jax.random.randint(rng_tokens, shape, 0, 2**config.num_bits)
    if config.control == "action":
        return tokens, jax.random.normal(rng_control, (batch, config.num_frames, 7)), None
    text = jax.random.normal(rng_control, (batch, text_length, config.text_dim))
    return tokens, text, jnp.arange(text_length)[None].repeat(batch, 0) < 3


def make_model(control: str, **overrides):
    """(model, params) of a TINY world model."""
    config = WorldModelConfig(control=control, **{**TINY, **overrides})
    model = WorldModel(config)
    tokens, control_input, control_mask = random_inputs(config, jax.random.PRNGKey(0))
    params = jax.jit(model.init)(jax.random.PRNGKey(1), tokens, control_input, control_mask)
    return model, params


@pytest.fixture(scope="session")
def action_model():
    return make_model("action")


@pytest.fixture(scope="session")
def text_model():
    return make_model("text")
