"""The reference-conditioned tokenizer: the episode's first frame goes into encoder and decoder,
every API call checks it, frame sources give it, and training on it runs and learns."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.tokenizer import tokenizer_config
from roboscape_jax.tokenizer import api
from roboscape_jax.tokenizer import train as tok_train
from roboscape_jax.tokenizer.frames import ArrayFrameSource, SplitFrameSource, synthetic_frames
from roboscape_jax.tokenizer.model import create_model
from roboscape_jax.tokenizer.tokenize import encode_padded, frame_margins
from roboscape_jax.utils import sharding

CONFIG = tokenizer_config("debug")
CONFIG.model.reference_conditioning = True
MODEL = create_model(CONFIG.model)
FRAMES = synthetic_frames(12, seed=3)


@pytest.fixture(scope="module")
def params():
    x = jnp.zeros((1, 128, 64, 3))
    return jax.jit(MODEL.init)(jax.random.PRNGKey(0), x, x)


def test_decoding_depends_on_the_reference(params):
    reference = np.repeat(FRAMES[:1], 3, axis=0)
    tokens = api.encode(params, FRAMES[4:7], model=MODEL, reference=reference)
    assert tokens.shape == (3, 16, 8) and tokens.dtype == jnp.int32
    out = api.decode(params, tokens, model=MODEL, reference=reference)
    other = api.decode(params, tokens, model=MODEL, reference=255 - reference)
    assert out.shape == (3, 128, 64, 3)
    assert float(jnp.abs(out - other).mean()) > 1e-4  # the decoder reads the reference
    # usable inside a caller's jit, same numbers
    inner = jax.jit(lambda p, f, r: api.reconstruct(p, f, model=MODEL, reference=r))
    np.testing.assert_allclose(inner(params, FRAMES[4:7], reference), out, atol=1e-5)


def test_reference_is_required_checked_and_refused_where_unused(params):
    with pytest.raises(ValueError, match="reference-conditioned: pass reference="):
        api.encode(params, FRAMES[:2], model=MODEL)
    with pytest.raises(ValueError, match="reference-conditioned: pass reference="):
        api.decode(params, np.zeros((2, 16, 8), np.int32), model=MODEL)
    with pytest.raises(ValueError, match=r"reference frames must be \(2, 128, 64, 3\)"):
        api.encode(params, FRAMES[:2], model=MODEL, reference=FRAMES[:1])
    with pytest.raises(ValueError, match=r"reference frames must be \(2, 128, 64, 3\)"):
        api.decode(params, np.zeros((2, 16, 8), np.int32), model=MODEL, reference=FRAMES[:3])
    plain = create_model(tokenizer_config("debug").model)
    plain_params = jax.jit(plain.init)(jax.random.PRNGKey(0), jnp.zeros((1, 128, 64, 3)))
    with pytest.raises(ValueError, match="takes no reference frame"):
        api.encode(plain_params, FRAMES[:2], model=plain, reference=FRAMES[:2])


def test_cache_encodes_each_episode_given_its_first_frame(params):
    tokens, margins = encode_padded(MODEL, params, FRAMES[:5], 4, with_margins=True)
    reference = np.repeat(FRAMES[:1], 5, axis=0)
    np.testing.assert_array_equal(tokens, api.encode(params, FRAMES[:5], model=MODEL,
                                                     reference=reference))
    np.testing.assert_allclose(margins, frame_margins(MODEL, params, FRAMES[:5], tokens,
                                                      reference), atol=2e-3)


def test_frame_sources_give_each_frames_episode_start():
    frames = np.arange(7, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    source = SplitFrameSource(frames[:5], frames[5:], [2, 3], [2])
    np.testing.assert_array_equal(source.get_references(np.arange(7))[:, 0, 0, 0],
                                  [0, 0, 2, 2, 2, 5, 5])
    array_source = ArrayFrameSource(frames, 0.3, [4, 3])
    np.testing.assert_array_equal(array_source.get_references([3, 4, 6])[:, 0, 0, 0], [0, 4, 4])
    with pytest.raises(ValueError, match="lengths sum to 6, but there are 7 frames"):
        ArrayFrameSource(frames, 0.3, [3, 3])
    with pytest.raises(ValueError, match="no episode boundaries"):
        ArrayFrameSource(frames, 0.3).get_references([1])
    with pytest.raises(ValueError, match="no episode boundaries"):
        tok_train.check_reference_source(MODEL, ArrayFrameSource(frames, 0.3))


def test_training_with_references_lowers_the_loss():
    config = tokenizer_config("debug")
    config.model.reference_conditioning = True
    config.loss.lpips_weight = 0.0
    config.optim.lr = 3e-3
    source = ArrayFrameSource(synthetic_frames(40, seed=1), 0.25, [20, 20])
    tx = tok_train.make_optimizer(config)
    mesh = sharding.data_mesh()
    state = sharding.replicate(tok_train.init_state(config, MODEL, tx), mesh)
    step = tok_train.make_step(config, MODEL, tx, mesh, None)
    batch_fn = tok_train.make_batch_fn(config, source, references=True)
    batch = batch_fn(0)
    assert set(batch) == {"frames", "references"}
    losses = []
    for _ in range(12):  # one fixed batch: the loss must fall
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]


def test_copy_gate_blends_the_reference_pixels_and_needs_conditioning():
    config = tokenizer_config("debug")
    config.model.update(reference_conditioning=True, reference_copy_gate=True)
    model = create_model(config.model)
    x = jnp.zeros((1, 128, 64, 3))
    params = jax.jit(model.init)(jax.random.PRNGKey(0), x, x)
    assert params["params"]["decoder"]["rgb_and_copy_gate"]["kernel"].shape[-1] == 4
    # saturate the gate open: the decoder returns the reference frame itself
    bias = params["params"]["decoder"]["rgb_and_copy_gate"]["bias"]
    params["params"]["decoder"]["rgb_and_copy_gate"]["bias"] = bias.at[3].set(50.0)
    reference = FRAMES[:2]
    tokens = api.encode(params, FRAMES[5:7], model=model, reference=reference)
    out = api.decode(params, tokens, model=model, reference=reference)
    np.testing.assert_allclose(np.asarray(out) * 255, reference, atol=1.0)
    with pytest.raises(ValueError, match="reference_copy_gate needs reference_conditioning"):
        bad_config = tokenizer_config("debug")
        bad_config.model.reference_copy_gate = True
        bad = create_model(bad_config.model)
        jax.eval_shape(bad.init, jax.random.PRNGKey(0), x)


def test_motion_weighted_l1_counts_moving_pixels_more():
    from roboscape_jax.tokenizer.losses import motion_weighted_l1, moving_mask

    first = -jnp.ones((1, 4, 4, 3))
    target = first.at[0, 0, 0].set(1.0)  # one pixel moved
    moving = moving_mask(target, first)
    assert float(moving.sum()) == 1.0
    recon = target.at[0, 0, 0].set(0.0)  # error 1 on the moving pixel only
    plain = float(jnp.mean(jnp.abs(recon - target)))
    assert float(motion_weighted_l1(recon, target, moving, 0.0)) == pytest.approx(plain)
    # weight 9: the moving pixel (error 1 in each channel) counts 10 of 16 + 9 pixel-weights
    assert float(motion_weighted_l1(recon, target, moving, 9.0)) == pytest.approx(10 / 25)
    # an unconditioned tokenizer with the weighted loss reads first frames only for the mask
    config = tokenizer_config("debug")
    config.loss.update(lpips_weight=0.0, moving_weight=4.0)
    plain_model = create_model(config.model)
    source = ArrayFrameSource(synthetic_frames(24, seed=2), 0.25, [12, 12])
    assert tok_train.needs_first_frames(config, plain_model)
    tx = tok_train.make_optimizer(config)
    mesh = sharding.data_mesh()
    state = sharding.replicate(tok_train.init_state(config, plain_model, tx), mesh)
    step = tok_train.make_step(config, plain_model, tx, mesh, None)
    batch = tok_train.make_batch_fn(config, source, references=True)(0)
    _, metrics = step(state, batch)
    assert 0.0 < float(metrics["moving_fraction"]) < 1.0
    assert np.isfinite(float(metrics["l1_motion_weighted"]))
    with pytest.raises(ValueError, match="episode-first frame"):
        tok_train.check_reference_source(plain_model, ArrayFrameSource(FRAMES, 0.25), config)
