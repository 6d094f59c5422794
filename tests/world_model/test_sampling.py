"""Next-frame MaskGIT decoding, rollouts under scan, the golden trajectory (Eq. 6), input checks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax.tokenizer.model import index_to_subcodes
from roboscape_jax.world_model import losses, sampling
from roboscape_jax.world_model.margins import MarginCalibration
from roboscape_jax.world_model.model import WorldModelConfig, WorldModelOutput

KEY = jax.random.PRNGKey(0)


def _context(model, batch=2):
    c = model.config
    tokens = jax.random.randint(KEY, (batch, c.num_frames - 1, c.grid_height, c.grid_width), 0,
                                2**c.num_bits)
    return tokens, jax.random.normal(jax.random.PRNGKey(1), (batch, c.num_frames, 7))


def _margin_model(**overrides):
    """(model, params) of a one-block action model that reads bit margins."""
    from roboscape_jax.world_model.model import WorldModel, init_params

    model = WorldModel(WorldModelConfig(
        control="action", num_bits=6, num_factors=2, grid_height=4, grid_width=2, num_frames=3,
        depth=1, width=16, num_heads=2, action_hidden=4, done_hidden=8, predict_change=True,
        margin_inputs=True, **overrides))
    return model, init_params(model, jax.random.PRNGKey(3))


def test_push_frame_by_hand():
    window = jnp.array([[1, 2, 3]])
    np.testing.assert_array_equal(sampling.push_frame(window, jnp.array([4])), [[2, 3, 4]])


def test_predict_next_frame_jit_greedy_and_determinism(action_model):
    model, params = action_model
    tokens, actions = _context(model)
    predict = jax.jit(lambda p, w, a, k, t: sampling.predict_next_frame(
        p, model, w, a, k, num_steps=2, temperature=t), static_argnums=4)
    frame, done = predict(params, tokens, actions, KEY, 0.0)
    assert frame.shape == (2, 4, 2) and frame.dtype == jnp.int32 and done.shape == (2,)
    np.testing.assert_array_equal(predict(params, tokens, actions, jax.random.PRNGKey(9), 0.0)[0],
                                  frame)  # greedy: the key does not matter
    one_step, _ = sampling.predict_next_frame(params, model, tokens, actions, KEY, num_steps=1)
    window = jnp.concatenate([tokens, tokens[:, :1]], 1)
    mask = jnp.zeros(window.shape, bool).at[:, -1].set(True)
    out = model.apply(params, window, actions, None, mask)
    np.testing.assert_array_equal(one_step, losses.predicted_tokens(out.logits[:, -1]))
    sampled = predict(params, tokens, actions, KEY, 1.0)[0]
    np.testing.assert_array_equal(sampled, predict(params, tokens, actions, KEY, 1.0)[0])
    assert (predict(params, tokens, actions, jax.random.PRNGKey(5), 1.0)[0] != sampled).any()


def test_rollout_matches_stepping_and_compiles_once(action_model):
    model, params = action_model
    tokens, _ = _context(model)
    window = sampling.initial_window(tokens[:, 0], model)
    controls = jax.random.normal(KEY, (2, 3, 7))
    run = jax.jit(lambda p, w, c, k: sampling.rollout(p, model, w, c, k))
    out = run(params, window, controls, KEY)
    assert out.tokens.shape == (2, 3, 4, 2) and out.done.shape == (2, 3)
    step_window = window
    for i in range(3):
        control = jnp.concatenate([step_window.actions, controls[:, i:i + 1]], 1)
        frame, done = sampling.predict_next_frame(params, model, step_window.tokens, control, KEY)
        np.testing.assert_array_equal(out.tokens[:, i], frame)
        np.testing.assert_allclose(out.done[:, i], done, atol=1e-6)
        step_window = sampling.Window(sampling.push_frame(step_window.tokens, frame),
                                      sampling.push_frame(step_window.actions, controls[:, i]))
    np.testing.assert_array_equal(out.window.tokens, step_window.tokens)
    run(params, out.window, -controls, jax.random.PRNGKey(1))
    assert run._cache_size() == 1
    # done_pass: done read from one more pass over the finished frame, as the env's option
    passed = sampling.rollout(params, model, window, controls, KEY, done_pass=True)
    np.testing.assert_array_equal(passed.tokens, out.tokens)
    control = jnp.concatenate([window.actions, controls[:, :1]], 1)
    _, done = sampling.predict_next_frame(params, model, window.tokens, control, KEY,
                                          done_pass=True)
    np.testing.assert_allclose(passed.done[:, 0], done, atol=1e-6)
    assert np.abs(np.asarray(passed.done - out.done)).max() > 1e-6


def test_text_rollout(text_model):
    model, params = text_model
    tokens, _ = _context(model)
    text, mask = jnp.ones((2, 5, 384)), jnp.array([[1, 1, 0, 0, 0]] * 2, bool)
    out = sampling.rollout(params, model, sampling.initial_window(tokens[:, 0], model), text, KEY,
                           horizon=2, control_mask=mask)
    assert out.tokens.shape == (2, 2, 4, 2) and out.window.actions is None


def test_bad_inputs_raise_clear_errors(action_model):
    model, params = action_model
    tokens, actions = _context(model)
    with pytest.raises(ValueError, match="context frames"):
        sampling.predict_next_frame(params, model, tokens[:, :1], actions, KEY)
    with pytest.raises(ValueError, match=r"actions must be \[B, 3, 7\]"):
        sampling.predict_next_frame(params, model, tokens, actions[..., :6], KEY)
    with pytest.raises(ValueError, match="non-finite"):
        sampling.predict_next_frame(params, model, tokens, actions.at[0, 0, 0].set(jnp.nan), KEY)
    frame, done = sampling.predict_next_frame(params, model, tokens, 1e6 * actions, KEY)
    assert np.isfinite(done).all() and (frame >= 0).all() and (frame < 64).all()


class CounterModel(nn.Module):
    """A stub world model: the next frame is the last one plus 1 everywhere, and done is 1 once
    that value reaches `goal`."""

    config: WorldModelConfig
    goal: int = 3

    def __call__(self, tokens, control, control_mask=None, token_mask=None, margins=None, *,
                 memory=None, context_only=False):
        if context_only:  # the real model's sampling protocol: a memory of the context frames
            return (tokens,)
        nxt = tokens[:, -2] + 1  # [B, h, w]: the frame before the (masked) last one, plus 1
        frames = tokens.shape[1] if memory is None else 1  # with memory: the last frame only
        logits = 20.0 * jax.nn.one_hot(index_to_subcodes(nxt, self.config.num_bits, 2), 8)
        logits = jnp.broadcast_to(logits[:, None], (tokens.shape[0], frames, *tokens.shape[2:],
                                                    2, 8))
        done_logit = jnp.broadcast_to(40.0 * (nxt[:, :1, 0] >= self.goal) - 20.0,
                                      (tokens.shape[0], frames))
        return WorldModelOutput(logits, jax.nn.sigmoid(done_logit), done_logit)


def test_golden_trajectory_stops_at_first_done():
    config = WorldModelConfig(control="text", num_bits=6, grid_height=4, grid_width=2,
                              num_frames=3)
    model = CounterModel(config)
    first = jnp.stack([jnp.zeros((4, 2), jnp.int32), jnp.full((4, 2), 2, jnp.int32)])
    text, mask = jnp.zeros((2, 4, 384)), jnp.ones((2, 4), bool)
    goal = sampling.golden_trajectory({}, model, first, text, mask, KEY, horizon=8)
    np.testing.assert_array_equal(goal.goal_index, [3, 1])  # 0 -> 1 -> 2 -> 3; 2 -> 3
    np.testing.assert_array_equal(goal.reached, [True, True])
    np.testing.assert_array_equal(goal.goal_tokens[:, 0, 0], [3, 3])
    short = sampling.golden_trajectory({}, model, first, text, mask, KEY, horizon=2)
    np.testing.assert_array_equal(short.reached, [False, True])
    np.testing.assert_array_equal(short.goal_index, [2, 1])
    np.testing.assert_array_equal(short.goal_tokens[:, 0, 0], [2, 3])
    # a coarse-plan model (frame_stride 2): the horizon and goal_index count env steps
    coarse = CounterModel(WorldModelConfig(control="text", num_bits=6, grid_height=4,
                                           grid_width=2, num_frames=3, frame_stride=2))
    goal = sampling.golden_trajectory({}, coarse, first, text, mask, KEY, horizon=16)
    np.testing.assert_array_equal(goal.goal_index, [6, 2])  # frames 3 and 1
    np.testing.assert_array_equal(goal.goal_tokens[:, 0, 0], [3, 3])
    short = sampling.golden_trajectory({}, coarse, first, text, mask, KEY, horizon=3)  # 2 frames
    np.testing.assert_array_equal(short.goal_index, [4, 2])
    np.testing.assert_array_equal(short.goal_tokens[:, 0, 0], [2, 3])
    # a keyframe-plan model rolls out its plan_frames keyframes whatever the horizon
    plan = CounterModel(WorldModelConfig(control="text", num_bits=6, grid_height=4,
                                         grid_width=2, num_frames=3, plan_frames=2))
    for horizon in (1, 100):
        goal = sampling.golden_trajectory({}, plan, first, text, mask, KEY, horizon=horizon)
        np.testing.assert_array_equal(goal.goal_index, [2, 1])  # keyframes
        np.testing.assert_array_equal(goal.reached, [False, True])
        np.testing.assert_array_equal(goal.goal_tokens[:, 0, 0], [2, 3])


def test_margin_model_needs_margins_and_rollout_pushes_generated_ones():
    from roboscape_jax.tokenizer.model import index_to_bits

    model, params = _margin_model()
    tokens, actions = _context(model)
    margins = jnp.ones((*tokens.shape, 6))
    with pytest.raises(ValueError, match="margins"):
        sampling.predict_next_frame(params, model, tokens, actions, KEY)
    frame, done = sampling.predict_next_frame(params, model, tokens, actions, KEY,
                                              margins=margins)
    assert frame.shape == (2, 4, 2) and done.shape == (2,)
    with pytest.raises(ValueError, match="margins"):
        sampling.initial_window(tokens[:, 0], model)
    window = sampling.initial_window(tokens[:, 0], model, margins[:, 0])
    assert window.margins.shape == (2, 2, 4, 2, 6)
    steps = jnp.zeros((2, 3, 7))
    with pytest.raises(ValueError, match="margins_fn"):
        sampling.rollout(params, model, window, steps, KEY)

    def margins_fn(t):
        return 0.5 * index_to_bits(t, 6)

    out = sampling.rollout(params, model, window, steps, KEY, margins_fn=margins_fn)
    np.testing.assert_allclose(out.window.margins[:, -1], margins_fn(out.tokens[:, -1]))
    np.testing.assert_allclose(out.window.margins[:, -2], margins_fn(out.tokens[:, -2]))
    # a margin calibration instead: the generated frames' margins come from the model's bit
    # probabilities (a calibration rising with agreement: each bit's own value)
    rising = MarginCalibration(jnp.array([-1.0, 1.0]), jnp.array([-1.0, 1.0]))
    read = sampling.rollout(params, model, window, steps, KEY, margin_calibration=rising)
    frame, done, new_margins = sampling.predict_next_frame(
        params, model, read.window.tokens, jnp.zeros((2, 3, 7)), KEY,
        margins=read.window.margins, margin_calibration=rising)
    assert new_margins.shape == (2, 4, 2, 6) and frame.shape == (2, 4, 2)
    assert np.all(np.abs(new_margins) <= 1.0) and np.ptp(np.asarray(new_margins)) > 0
    np.testing.assert_array_equal(
        frame, sampling.predict_next_frame(params, model, read.window.tokens,
                                           jnp.zeros((2, 3, 7)), KEY,
                                           margins=read.window.margins)[0])
    first, _, first_margins = sampling.predict_next_frame(
        params, model, window.tokens, jnp.zeros((2, 3, 7)), KEY, margins=window.margins,
        margin_calibration=rising)
    one = sampling.rollout(params, model, window, steps[:, :1], KEY, margin_calibration=rising)
    np.testing.assert_array_equal(read.tokens[:, 0], first)
    np.testing.assert_allclose(one.window.margins[:, -1], first_margins, rtol=1e-5, atol=1e-6)


def test_a_latent_head_models_generated_frames_carry_its_predicted_latent():
    """With model margins asked for, a `latent_head` model's new frame gets the margins of its
    own predicted latent against the chosen code (the calibration unused), after 1 or 2
    MaskGIT passes and in a rollout."""
    from roboscape_jax.tokenizer.model import index_to_bits

    model, params = _margin_model(latent_head=True)
    tokens, actions = _context(model)
    margins = jax.random.uniform(jax.random.PRNGKey(4), (*tokens.shape, 6), minval=-1.0,
                                 maxval=2.0)
    rising = MarginCalibration(jnp.array([-1.0, 1.0]), jnp.array([-1.0, 1.0]))
    flat = MarginCalibration(jnp.array([-1.0, 1.0]), jnp.array([0.5, 0.5]))
    for num_steps in (1, 2):
        frame, _, new = sampling.predict_next_frame(params, model, tokens, actions, KEY,
                                                    num_steps=num_steps, margins=margins,
                                                    margin_calibration=rising)
        # the head's correction is zero at init: the latent is the context's newest frame's
        latent = margins[:, -1] * index_to_bits(tokens[:, -1], 6)
        np.testing.assert_allclose(new, latent * index_to_bits(frame, 6), atol=1e-6)
        np.testing.assert_allclose(sampling.predict_next_frame(
            params, model, tokens, actions, KEY, num_steps=num_steps, margins=margins,
            margin_calibration=flat)[2], new, atol=1e-6)
    window = sampling.Window(tokens, actions[:, :-1], margins, None)
    out = sampling.rollout(params, model, window, actions[:, -1:], KEY, num_steps=2,
                           margin_calibration=rising)
    np.testing.assert_allclose(out.window.margins[:, -1], new, atol=1e-6)


def test_rollout_flags_the_margins_of_the_frames_it_generates():
    """A `generated_margin_flag` model's window says whose margins are a decoded frame's: none
    at the start, each generated frame's from then on; a window without flags starts all real;
    one greedy MaskGIT pass reads the flags as the full model does."""
    model, params = _margin_model(generated_margin_flag=True)
    tokens, actions = _context(model)
    margins = jax.random.normal(KEY, (*tokens.shape, 6))
    window = sampling.initial_window(tokens[:, 0], model, margins[:, 0])
    np.testing.assert_array_equal(window.generated, np.zeros((2, 2), bool))

    def margins_fn(t):
        return 0.5 * jnp.ones((*t.shape, 6))

    one = sampling.rollout(params, model, window, jnp.zeros((2, 1, 7)), KEY, margins_fn=margins_fn)
    np.testing.assert_array_equal(one.window.generated, [[False, True]] * 2)
    three = sampling.rollout(params, model, window, jnp.zeros((2, 3, 7)), KEY,
                             margins_fn=margins_fn)
    np.testing.assert_array_equal(three.window.generated, np.ones((2, 2), bool))
    unflagged = sampling.rollout(params, model, window._replace(generated=None),
                                 jnp.zeros((2, 3, 7)), KEY, margins_fn=margins_fn)
    np.testing.assert_array_equal(unflagged.tokens, three.tokens)
    flags = jnp.ones((2, 2), bool)
    frame, _ = sampling.predict_next_frame(params, model, tokens, actions, KEY, num_steps=1,
                                           margins=margins, margins_generated=flags)
    full = model.apply(params, jnp.concatenate([tokens, tokens[:, :1]], 1), actions, None,
                       jnp.zeros((2, 3, 4, 2), bool).at[:, -1].set(True),
                       jnp.concatenate([margins, margins[:, :1]], 1),
                       margins_generated=jnp.ones((2, 3), bool))
    np.testing.assert_array_equal(frame, losses.predicted_tokens(full.logits[:, -1]))
    real, _ = sampling.predict_next_frame(params, model, tokens, actions, KEY, num_steps=1,
                                          margins=margins)
    np.testing.assert_array_equal(real, losses.predicted_tokens(model.apply(
        params, jnp.concatenate([tokens, tokens[:, :1]], 1), actions, None,
        jnp.zeros((2, 3, 4, 2), bool).at[:, -1].set(True),
        jnp.concatenate([margins, margins[:, :1]], 1)).logits[:, -1]))
