"""ST block and world model: shapes, parameter counts, causality in time, masking, remat."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax.world_model import losses
from roboscape_jax.world_model.model import WorldModel, WorldModelConfig, xor_permute
from roboscape_jax.world_model.transformer import STBlock
from tests.world_model.conftest import TINY, make_model, random_inputs


def test_st_block_parameter_count():
    d = 32
    x, control = jnp.zeros((1, 2, 8, d)), jnp.zeros((1, 2, 7, d))
    params = STBlock(num_heads=2).init(jax.random.PRNGKey(0), x, control, jnp.ones((1, 2, 7), bool))
    count = sum(p.size for p in jax.tree.leaves(params))
    attention = 4 * d * d + 4 * d  # q, k, v, out kernels and biases
    mlp = d * 4 * d + 4 * d + 4 * d * d + d
    assert count == 3 * attention + 4 * 2 * d + mlp


@pytest.mark.parametrize("control", ["action", "text"])
def test_output_shapes(control, action_model, text_model):
    model, params = action_model if control == "action" else text_model
    c = model.config
    tokens, control_input, control_mask = random_inputs(c, jax.random.PRNGKey(2))
    out = model.apply(params, tokens, control_input, control_mask, jnp.zeros(tokens.shape, bool))
    assert out.logits.shape == (2, c.num_frames, c.grid_height, c.grid_width, 2, 8)
    assert out.done.shape == out.done_logit.shape == (2, c.num_frames)
    assert np.all((out.done > 0) & (out.done < 1))


def test_bad_shapes_raise(action_model):
    model, params = action_model
    tokens, actions, _ = random_inputs(model.config, jax.random.PRNGKey(2))
    with pytest.raises(AssertionError):
        model.apply(params, tokens, actions[..., :6])
    with pytest.raises(AssertionError):
        model.apply(params, tokens[:, :, :3], actions)
    with pytest.raises(ValueError, match="control must be"):
        WorldModelConfig(control="pixels")


@pytest.mark.parametrize("control", ["action", "text"])
def test_frame_t_does_not_see_later_frames(control, action_model, text_model):
    model, params = action_model if control == "action" else text_model
    tokens, control_input, control_mask = random_inputs(model.config, jax.random.PRNGKey(3))
    out = model.apply(params, tokens, control_input, control_mask)
    changed_tokens = tokens.at[:, 2].set((tokens[:, 2] + 1) % 64)
    if control == "action":
        control_input = control_input.at[:, 2].add(1.0)
    changed = model.apply(params, changed_tokens, control_input, control_mask)
    np.testing.assert_allclose(changed.logits[:, :2], out.logits[:, :2], atol=1e-5)
    np.testing.assert_allclose(changed.done[:, :2], out.done[:, :2], atol=1e-6)
    assert np.abs(changed.logits[:, 2] - out.logits[:, 2]).max() > 1e-3


def test_masked_tokens_are_hidden_and_text_padding_is_ignored(action_model, text_model):
    model, params = action_model
    tokens, actions, _ = random_inputs(model.config, jax.random.PRNGKey(4))
    mask = jnp.zeros(tokens.shape, bool).at[:, -1].set(True)
    a = model.apply(params, tokens, actions, None, mask)
    b = model.apply(params, tokens.at[:, -1].set(0), actions, None, mask)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-6)
    model, params = text_model
    tokens, text, text_mask = random_inputs(model.config, jax.random.PRNGKey(4))
    a = model.apply(params, tokens, text, text_mask)
    b = model.apply(params, tokens, text.at[:, 3:].set(7.0), text_mask)  # only padding changed
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)


def test_remat_gives_the_same_outputs(action_model):
    model, params = action_model
    remat = WorldModel(WorldModelConfig(**{**TINY, "remat": True}))
    tokens, actions, _ = random_inputs(model.config, jax.random.PRNGKey(5))
    np.testing.assert_allclose(remat.apply(params, tokens, actions).logits,
                               model.apply(params, tokens, actions).logits, atol=1e-5)


def test_shorter_window_is_accepted_longer_is_not(action_model):
    model, params = action_model
    tokens, actions, _ = random_inputs(model.config, jax.random.PRNGKey(6))
    assert model.apply(params, tokens[:, :2], actions[:, :2]).logits.shape[1] == 2
    longer = jnp.concatenate([tokens, tokens[:, :1]], 1)
    with pytest.raises(ValueError, match="at most 3"):
        model.apply(params, longer, jnp.concatenate([actions, actions[:, :1]], 1))


def test_change_head_reads_its_classes_as_flips_of_the_previous_code():
    """Class j of a predict_change head is 'previous code XOR j' (per sub-code): a head that
    always says class 0 copies frame t-1, one that says class 1 flips each sub-code's lowest bit."""
    model, params = make_model("action", predict_change=True, bit_embedding=True)
    tokens, actions, _ = random_inputs(model.config, jax.random.PRNGKey(7))
    head = params["params"]["logits"]
    for change, expected in ((0, tokens[:, :-1]), (1, tokens[:, :-1] ^ 0b001001)):
        bias = jnp.zeros_like(head["bias"]).at[:, change].set(10.0)
        forced = {"params": {**params["params"], "logits": {
            "kernel": jnp.zeros_like(head["kernel"]), "bias": bias}}}
        predicted = losses.predicted_tokens(model.apply(forced, tokens, actions).logits)
        np.testing.assert_array_equal(predicted[:, 1:], expected)
    assert "bit_embedding" in params["params"]


def test_xor_permute_and_its_gradient_match_the_gather():
    """xor_permute's hand-written backward (the same gather, XOR being its own inverse) gives
    autodiff's gradient of the plain gather."""
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 16))
    code = jax.random.randint(jax.random.PRNGKey(1), (3, 5), 0, 16)
    gather = lambda x: jnp.take_along_axis(x, jnp.arange(16) ^ code[..., None], axis=-1)  # noqa
    np.testing.assert_array_equal(xor_permute(x, code), gather(x))
    assert xor_permute(x, code)[1, 2, 3] == x[1, 2, 3 ^ int(code[1, 2])]
    weights = jax.random.normal(jax.random.PRNGKey(2), x.shape)
    loss = lambda f: lambda x: jnp.sum(jnp.tanh(f(x)) * weights)  # noqa: E731
    np.testing.assert_allclose(jax.grad(loss(lambda x: xor_permute(x, code)))(x),
                               jax.grad(loss(gather))(x), rtol=1e-6)


def _margin_model(**overrides):
    config = WorldModelConfig(control="action", predict_change=True, margin_inputs=True,
                              **{**TINY, **overrides})
    model = WorldModel(config)
    tokens, actions, _ = random_inputs(config, jax.random.PRNGKey(0))
    margins = jax.random.normal(jax.random.PRNGKey(2), (*tokens.shape, config.num_bits))
    params = jax.jit(model.init)(jax.random.PRNGKey(1), tokens, actions, None, None, margins)
    return model, params, tokens, actions, margins


def test_margin_model_needs_margins_and_reads_only_the_previous_frames():
    model, params, tokens, actions, margins = _margin_model()
    with pytest.raises(ValueError, match="margins"):
        model.apply(params, tokens, actions)
    out = model.apply(params, tokens, actions, None, None, margins)
    # the last frame's own margins are never read (they would give its codes away)
    changed_last = margins.at[:, -1].add(5.0)
    np.testing.assert_allclose(model.apply(params, tokens, actions, None, None,
                                           changed_last).logits, out.logits, atol=1e-5)
    # the previous frame's margins move the last frame's logits, not the earlier frames'
    changed_prev = margins.at[:, -2].add(5.0)
    moved = model.apply(params, tokens, actions, None, None, changed_prev).logits
    assert not np.allclose(moved[:, -1], out.logits[:, -1], atol=1e-4)
    np.testing.assert_allclose(moved[:, :-1], out.logits[:, :-1], atol=1e-5)


def test_generated_margin_flag_is_read_like_the_margins_it_marks():
    """Frame t reads whether frame t-1's margins are its decoded image's; no flags = all real."""
    with pytest.raises(ValueError, match="margin_inputs"):
        WorldModelConfig(generated_margin_flag=True)
    model, params, tokens, actions, margins = _margin_model(generated_margin_flag=True)
    b, t = tokens.shape[:2]
    out = model.apply(params, tokens, actions, None, None, margins)
    real = model.apply(params, tokens, actions, None, None, margins,
                       margins_generated=jnp.zeros((b, t), bool))
    np.testing.assert_allclose(real.logits, out.logits, atol=1e-6)
    last_flagged = jnp.zeros((b, t), bool).at[:, -1].set(True)  # its margins are never read
    np.testing.assert_allclose(model.apply(params, tokens, actions, None, None, margins,
                                           margins_generated=last_flagged).logits,
                               out.logits, atol=1e-6)
    # the flag of frame t-1 moves frame t's logits (through the embedding and the flip prior),
    # not the earlier frames'
    previous_flagged = jnp.zeros((b, t), bool).at[:, -2].set(True)
    moved = model.apply(params, tokens, actions, None, None, margins,
                        margins_generated=previous_flagged).logits
    assert np.abs(moved[:, -1] - out.logits[:, -1]).max() > 1e-4
    np.testing.assert_allclose(moved[:, :-1], out.logits[:, :-1], atol=1e-6)
    assert params["params"]["flip_hidden"]["kernel"].shape == (2, 16)  # margin and flag
    with pytest.raises(AssertionError, match="shape"):
        model.apply(params, tokens, actions, None, None, margins,
                    margins_generated=jnp.zeros((b, t + 1), bool))


def test_flip_prior_adds_each_flipped_bits_logit():
    model, params, tokens, actions, margins = _margin_model()
    c = model.config
    b, t = tokens.shape[:2]
    _, state = model.apply(params, tokens, actions, None, None, margins,
                           mutable=["intermediates"])
    (prior,) = state["intermediates"]["flip_prior"]
    assert prior.shape == (b, t, c.grid_height * c.grid_width, c.num_factors,
                           c.vocab_per_factor)
    np.testing.assert_allclose(prior[:, 0], 0.0)  # frame 0 has no previous frame
    np.testing.assert_allclose(prior[..., 0], 0.0, atol=1e-6)  # "no change" flips nothing
    # pattern 0b11 flips bits 0 and 1: its logit is the sum of patterns 0b01 and 0b10
    np.testing.assert_allclose(prior[..., 3], prior[..., 1] + prior[..., 2], atol=1e-5)
    assert np.abs(prior[:, 1:, ..., 1]).max() > 0


@pytest.mark.parametrize("control,overrides", [
    ("action", {}), ("text", {}), ("action", dict(margin_inputs=True)),
    ("action", dict(margin_inputs=True, generated_margin_flag=True)),
    ("action", dict(margin_inputs=True, latent_head=True)),
    ("action", dict(copy_bias_init=2.0))])
def test_memory_of_the_context_gives_the_full_windows_last_frame(control, overrides):
    """Sampling's shortcut: the context frames' memory plus the last frame alone reproduce the
    last frame's logits and done of a pass over the whole window (masked tokens included)."""
    flags = {}
    if overrides.get("margin_inputs"):
        flagged = overrides.get("generated_margin_flag", False)
        model, params, tokens, control_input, margins = _margin_model(
            generated_margin_flag=flagged, latent_head=overrides.get("latent_head", False))
        control_mask, c = None, model.config
        if c.latent_head:  # a correction that reads x, so the memory's path is checked too
            params = jax.tree_util.tree_map(lambda x: x, params)
            kernel = params["params"]["latent_out"]["kernel"]
            params["params"]["latent_out"]["kernel"] = 0.1 * jax.random.normal(
                jax.random.PRNGKey(5), kernel.shape)
        if flagged:  # the context's newest frame generated
            flags = dict(margins_generated=jnp.zeros(tokens.shape[:2], bool).at[:, -2].set(True))
    else:
        model, params = make_model(control, **overrides)
        c, margins = model.config, None
        tokens, control_input, control_mask = random_inputs(c, jax.random.PRNGKey(8))
    mask = jnp.zeros(tokens.shape, bool).at[:, -1, 0].set(True)
    full = model.apply(params, tokens, control_input, control_mask, mask, margins, **flags)
    context_control = control_input[:, :-1] if control == "action" else control_input
    memory = model.apply(params, tokens[:, :-1], context_control, control_mask, None,
                         None if margins is None else margins[:, :-1], context_only=True,
                         **{k: v[:, :-1] for k, v in flags.items()})
    assert len(memory) == c.depth and memory[0].shape == (2, c.num_frames - 1, 8, c.width)
    last = model.apply(params, tokens, control_input, control_mask, mask, margins, memory=memory,
                       **flags)
    assert last.logits.shape[1] == 1 and last.done.shape == (2, 1)
    np.testing.assert_allclose(last.logits[:, 0], full.logits[:, -1], atol=1e-5)
    np.testing.assert_allclose(last.done[:, 0], full.done[:, -1], atol=1e-6)
    if c.latent_head:
        np.testing.assert_allclose(last.latents[:, 0], full.latents[:, -1], atol=1e-5)
    # the memory is of the context: another last frame changes the output, as it should
    other = model.apply(params, tokens.at[:, -1].set(0), control_input, control_mask, None,
                        margins, memory=memory, **flags)
    assert np.abs(other.logits[:, 0] - last.logits[:, 0]).max() > 1e-3
    with pytest.raises(ValueError, match="one frame"):
        model.apply(params, tokens, control_input, control_mask, None, margins,
                    memory=memory[:1])


def test_latent_head_starts_at_the_previous_frames_latent_and_learns_a_correction():
    """A `latent_head` model predicts frame t's encoder latent per bit as frame t-1's (margin x
    code bit; zero at frame 0) plus a correction read from its features, zero at init."""
    from roboscape_jax.tokenizer.model import index_to_bits

    with pytest.raises(ValueError, match="margin_inputs"):
        WorldModelConfig(latent_head=True)
    model, params, tokens, actions, _ = _margin_model(latent_head=True)
    c = model.config
    margins = jax.random.uniform(jax.random.PRNGKey(4), (*tokens.shape, c.num_bits),
                                 minval=-1.0, maxval=2.0)  # inside the model's clip
    out = model.apply(params, tokens, actions, None, None, margins)
    assert out.latents.shape == (*tokens.shape, c.num_bits)
    previous = np.asarray(margins * index_to_bits(tokens, c.num_bits))[:, :-1]
    np.testing.assert_allclose(out.latents[:, 1:], previous, atol=1e-6)
    np.testing.assert_allclose(out.latents[:, 0], 0.0)
    kernel = params["params"]["latent_out"]["kernel"]
    moved = jax.tree_util.tree_map(lambda x: x, params)
    moved["params"]["latent_out"]["kernel"] = 0.1 * jax.random.normal(jax.random.PRNGKey(5),
                                                                      kernel.shape)
    corrected = model.apply(moved, tokens, actions, None, None, margins).latents
    assert np.abs(np.asarray(corrected[:, 1:]) - previous).max() > 1e-3
    plain, plain_params, *_ = _margin_model()
    assert plain.apply(plain_params, tokens, actions, None, None, margins).latents is None
