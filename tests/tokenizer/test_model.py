"""Tokenizer shapes, parameter counts, the jitted encode/decode API and its input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.tokenizer import tokenizer_config
from roboscape_jax.tokenizer import api
from roboscape_jax.tokenizer.model import (
    create_model,
    depth_to_space,
    index_to_bits,
    space_to_depth,
)

CONFIG = tokenizer_config("debug")
MODEL = create_model(CONFIG.model)


@pytest.fixture(scope="module")
def params():
    return jax.jit(MODEL.init)(jax.random.PRNGKey(0), jnp.zeros((1, 128, 64, 3)))


def _count(tree) -> int:
    return sum(x.size for x in jax.tree.leaves(tree))


def test_debug_param_counts(params):
    assert _count(params["params"]["encoder"]) == 12_270
    assert _count(params["params"]["decoder"]) == 9_883


def test_tiny_is_under_two_million_params_with_a_16x8_grid_of_10_bits():
    config = tokenizer_config("tiny")
    model = create_model(config.model)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 128, 64, 3)))
    assert 1_000_000 < _count(shapes) < 2_000_000
    assert not model.reference_conditioning
    assert model.downsample_factor == 8 and model.num_bits == 10 and model.num_factors == 1


def test_forward_shapes(params):
    recon, aux = jax.jit(MODEL.apply)(params, jnp.zeros((2, 128, 64, 3)))
    assert recon.shape == (2, 128, 64, 3)
    assert aux["latents"].shape == aux["codes"].shape == (2, 16, 8, 6)
    assert aux["indices"].shape == (2, 16, 8) and aux["indices"].dtype == jnp.int32


def test_encode_decode_jitted_and_consistent(params):
    frames = np.random.default_rng(0).integers(0, 256, (3, 128, 64, 3), dtype=np.uint8)
    tokens = api.encode(params, frames, model=MODEL)
    assert tokens.shape == (3, 16, 8) and tokens.dtype == jnp.int32
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 2**6
    # float [0, 1] frames give the same tokens as uint8 ones
    np.testing.assert_array_equal(api.encode(params, frames / 255.0, model=MODEL), tokens)
    out = api.decode(params, tokens, model=MODEL)
    assert out.shape == (3, 128, 64, 3) and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # decode(tokens) is the decoder applied to the codes the encoder produced
    _, aux = jax.jit(MODEL.apply)(params, api.frames_to_model_input(jnp.asarray(frames)))
    np.testing.assert_array_equal(index_to_bits(tokens, 6), aux["codes"])
    # usable inside a caller's jit
    inner = jax.jit(lambda p, f: api.decode(p, api.encode(p, f, model=MODEL), model=MODEL))
    np.testing.assert_allclose(inner(params, frames), out, atol=1e-6)


@pytest.mark.parametrize("frames, message", [
    (np.zeros((1, 100, 64, 3), np.uint8), "not divisible by the tokenizer's downsampling factor 8"),
    (np.zeros((1, 128, 64), np.uint8), r"must be \[B, H, W, 3\]"),
    (np.zeros((1, 128, 64, 3), np.int32), "dtype int32"),
    (np.full((1, 128, 64, 3), 255.0, np.float32), r"float frames must lie in \[0, 1\]"),
    (np.full((1, 128, 64, 3), np.nan, np.float32), "NaN"),
])
def test_encode_rejects_bad_frames(params, frames, message):
    with pytest.raises(ValueError, match=message):
        api.encode(params, frames, model=MODEL)


def test_decode_rejects_bad_tokens(params):
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 64\)"):
        api.decode(params, np.full((1, 16, 8), 64, np.int32), model=MODEL)
    with pytest.raises(ValueError, match="integer"):
        api.decode(params, np.zeros((1, 16, 8), np.float32), model=MODEL)
    with pytest.raises(ValueError, match=r"\[B, h, w\]"):
        api.decode(params, np.zeros((16, 8), np.int32), model=MODEL)


def test_space_to_depth_folds_pixel_blocks_and_depth_to_space_unfolds_them():
    x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
    folded = space_to_depth(x, 2)
    assert folded.shape == (2, 2, 3, 12)
    # position (i, j) holds the 2x2 block at rows 2i..2i+1, columns 2j..2j+1, row-major
    np.testing.assert_array_equal(folded[1, 1, 2].reshape(2, 2, 3), x[1, 2:4, 4:6])
    np.testing.assert_array_equal(depth_to_space(folded, 2), x)
    with pytest.raises(ValueError, match="do not split into 4x4 blocks"):
        space_to_depth(x, 4)


def test_stem_factor_folds_the_frame_before_the_encoder():
    config = tokenizer_config("debug")
    config.model.update(channel_mults=(1, 2), stem_factor=4)  # 4 x 2 = 8x down, as debug's 3
    model = create_model(config.model)
    assert model.downsample_factor == 8
    params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 128, 64, 3)))
    recon, aux = jax.jit(model.apply)(params, jnp.zeros((2, 128, 64, 3)))
    assert recon.shape == (2, 128, 64, 3) and aux["indices"].shape == (2, 16, 8)
    # no convolution reads or writes a full-resolution frame
    first = params["params"]["encoder"]["Conv_0"]["kernel"]
    assert first.shape[2] == 3 * 4 * 4
    config.model.update(reference_conditioning=True)
    with pytest.raises(ValueError, match="stem_factor > 1 is not implemented"):
        jax.eval_shape(create_model(config.model).init, jax.random.PRNGKey(0),
                       jnp.zeros((1, 128, 64, 3)), jnp.zeros((1, 128, 64, 3)))
