"""Next-frame prediction by MaskGIT decoding, H-step rollouts under `lax.scan`, and the text
model's golden trajectory (RoboScape-R Eq. 6). All pure functions with static shapes.

  frame, done = predict_next_frame(params, model, window_tokens, control, key)
  out = rollout(params, model, initial_window(first_tokens, model), actions, key)
  goal = golden_trajectory(params, text_model, first_tokens, text, text_mask, key, horizon=32)

Window convention: the model sees T = `num_frames` frames; the C = T - 1 most recent frames are
the context (oldest first) and the frame to predict starts fully masked. For the action model the
control of frame t is the action that led INTO frame t (see model.py), so predicting the next frame
takes the C context actions plus the action applied now: [B, T, A]. `initial_window` fills the
context with copies of the first frame and zero actions, as `data.py` pads episode starts.

MaskGIT (Chang et al. 2022, arXiv:2202.04200): at step s of S, sample every still-masked token (per
factor; temperature 0 = argmax), score it by its joint log-probability, keep the most confident so
that floor(K * cos(pi/2 * (s+1)/S)) stay masked, and re-mask the rest. The authors' environment uses
S = 2 and temperature 0. The done probability of the new frame is read from the last decoding pass
(`done_pass=True` adds one pass over the finished frame instead). The context frames run through
the transformer once per step (`context_memory`); every pass then runs the new frame alone against
that memory (the same logits as a pass over the whole window). Nothing is kept across env steps:
the window slides, which moves every frame's temporal position.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from roboscape_jax.tokenizer.model import (
    FrameTokenizer,
    index_to_bits,
    index_to_subcodes,
    subcodes_to_index,
)
from roboscape_jax.tokenizer.tokenize import generated_margins
from roboscape_jax.types import PRNGKey, PyTree
from roboscape_jax.world_model.margins import MarginCalibration, bit_agreement, calibrated_margins
from roboscape_jax.world_model.masking import num_masked_after
from roboscape_jax.world_model.model import WorldModel, WorldModelConfig


class Window(NamedTuple):
    """The context of a rollout: the C = num_frames - 1 most recent frames, oldest first."""

    tokens: jax.Array  # int32 [B, C, h, w]
    actions: jax.Array | None  # float32 [B, C, A], the action that led into each frame; None: text
    # float32 [B, C, h, w, K] bit margins of each frame (models with `margin_inputs`), else None
    margins: jax.Array | None = None
    # bool [B, C]: whose margins are those of a decoded (generated) frame; read by models with
    # `generated_margin_flag` (None: every frame real). Rollouts set it for what they generate.
    generated: jax.Array | None = None


class Rollout(NamedTuple):
    tokens: jax.Array  # int32 [B, H, h, w] predicted frames
    done: jax.Array  # float32 [B, H] done probability of each predicted frame
    window: Window  # the context after the last step (to continue from)


class GoldenTrajectory(NamedTuple):
    """Eq. (6): the first predicted frame with done >= tau (the last one if none is)."""

    goal_tokens: jax.Array  # int32 [B, h, w]
    goal_index: jax.Array  # int32 [B], env steps from the initial frame to it (frames x stride;
    #                        keyframes for a `plan_frames` model)
    reached: jax.Array  # bool [B], whether done >= tau was reached within the horizon


def push_frame(window: jax.Array, new: jax.Array) -> jax.Array:
    """Ring-buffer shift, dropping the oldest frame: window [B, C, ...], new [B, ...] -> same."""
    chex.assert_equal_shape([window[:, 0], new])
    return jnp.concatenate([window[:, 1:], new[:, None].astype(window.dtype)], axis=1)


def initial_window(first_tokens: jax.Array, model: WorldModel,
                   first_margins: jax.Array | None = None) -> Window:
    """A context of C copies of the first frame [B, h, w]; zero actions for the action model;
    copies of the first frame's bit margins [B, h, w, K] for models with `margin_inputs`."""
    c = model.config
    tokens = jnp.repeat(first_tokens[:, None].astype(jnp.int32), c.num_frames - 1, axis=1)
    actions = None
    if c.control == "action":
        actions = jnp.zeros((first_tokens.shape[0], c.num_frames - 1, c.action_dim), jnp.float32)
    margins = None
    if c.margin_inputs:
        if first_margins is None:
            raise ValueError("this world model reads bit margins: pass the first frame's "
                             "margins [B, h, w, K] (tokenizer.tokenize.frame_margins)")
        chex.assert_shape(first_margins, (*first_tokens.shape, c.num_bits))
        margins = jnp.repeat(first_margins[:, None].astype(jnp.float32), c.num_frames - 1, axis=1)
    generated = (jnp.zeros(tokens.shape[:2], bool) if c.generated_margin_flag else None)
    return Window(tokens, actions, margins, generated)


def model_margins(config: WorldModelConfig, window_margins: jax.Array | None):
    """The model's margins input for a window plus the frame being predicted (its own margins
    are never read: zeros), or None for models without `margin_inputs`."""
    if not config.margin_inputs:
        return None
    if window_margins is None:
        raise ValueError("this world model reads bit margins (margin_inputs=True): pass the "
                         "context frames' margins [B, C, h, w, K]")
    return jnp.concatenate([window_margins, jnp.zeros_like(window_margins[:, :1])], axis=1)


def generated_flags(config: WorldModelConfig, window_tokens: jax.Array,
                    window_generated: jax.Array | None, with_next: bool = True):
    """The model's `margins_generated` input [B, C (+ 1 with `with_next`)] for a window whose
    frames' margins are flagged `window_generated` [B, C] (None: all real), or None for models
    without `generated_margin_flag`."""
    if not config.generated_margin_flag:
        return None
    b, num_context = window_tokens.shape[:2]
    if window_generated is None:
        window_generated = jnp.zeros((b, num_context), bool)
    chex.assert_shape(window_generated, (b, num_context))
    if with_next:
        return jnp.concatenate([window_generated, jnp.zeros((b, 1), bool)], axis=1)
    return window_generated


def pushed_generated(window: Window) -> jax.Array | None:
    """`window.generated` after a generated frame is pushed (None stays None: models without
    `generated_margin_flag`; their rollouts start from `initial_window` or are normalised
    with `generated_flags`)."""
    if window.generated is None:
        return None
    return push_frame(window.generated, jnp.ones(window.generated.shape[:1], bool))


def _concrete(x) -> bool:
    return x is not None and not isinstance(x, jax.core.Tracer)


def check_inputs(config: WorldModelConfig, window_tokens, control, control_mask=None) -> None:
    """Raises ValueError naming what is wrong (shapes always; values when arrays are concrete)."""
    c, shape = config, np.shape(window_tokens)
    expected = (c.num_frames - 1, c.grid_height, c.grid_width)
    if len(shape) != 4 or shape[1:] != expected:
        raise ValueError(f"window tokens must be [B, {', '.join(map(str, expected))}] (the "
                         f"{c.num_frames - 1} context frames), got shape {shape}")
    if not np.issubdtype(np.result_type(window_tokens), np.integer):
        raise ValueError(f"window tokens must be integers, got {np.result_type(window_tokens)}")
    if _concrete(window_tokens):
        values = np.asarray(window_tokens)
        if values.min() < 0 or values.max() >= 2**c.num_bits:
            raise ValueError(f"tokens must lie in [0, 2^{c.num_bits}), got [{values.min()}, "
                             f"{values.max()}]")
    if c.control == "action":
        if np.shape(control) != (shape[0], c.num_frames, c.action_dim):
            raise ValueError(f"actions must be [B, {c.num_frames}, {c.action_dim}] (context + "
                             f"the action applied now), got {np.shape(control)}")
    elif np.ndim(control) != 3 or np.shape(control_mask) != np.shape(control)[:2] or \
            np.shape(control)[::2] != (shape[0], c.text_dim):
        raise ValueError(f"text control must be [B, L, {c.text_dim}] with a [B, L] mask, got "
                         f"{np.shape(control)} and {np.shape(control_mask)}")
    _check_finite(control)


def _check_finite(control) -> None:
    if _concrete(control) and not np.isfinite(np.asarray(control)).all():
        raise ValueError(f"control contains {int((~np.isfinite(np.asarray(control))).sum())} "
                         "non-finite values (NaN or inf)")


def _sample(logits: jax.Array, key: PRNGKey, temperature: float) -> tuple[jax.Array, jax.Array]:
    """Per-factor sample (argmax at temperature 0): logits [..., F, V] -> (sub-codes [..., F],
    joint log-probability [...])."""
    if temperature > 0:
        sub = jax.random.categorical(key, logits / temperature, axis=-1)
    else:
        sub = jnp.argmax(logits, axis=-1)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return sub, jnp.take_along_axis(log_p, sub[..., None], axis=-1)[..., 0].sum(-1)


def copy_penalised(logits: jax.Array, previous: jax.Array, num_bits: int,
                   penalty: float | jax.Array) -> jax.Array:
    """logits [B, K, F, V] with `penalty` subtracted from each factor's logit of the previous
    frame's sub-code (previous int [B, K]): a decode-time bias toward change, since only a few
    percent of tokens change per step and greedy decoding otherwise under-predicts motion."""
    if isinstance(penalty, (int, float)) and not penalty:  # a traced penalty always applies
        return logits
    sub = index_to_subcodes(previous, num_bits, logits.shape[-2])  # [B, K, F]
    return logits - penalty * jax.nn.one_hot(sub, logits.shape[-1], dtype=logits.dtype)


def context_memory(params: PyTree, model: WorldModel, window_tokens: jax.Array,
                   control: jax.Array, control_mask: jax.Array | None,
                   window_margins: jax.Array | None = None,
                   window_generated: jax.Array | None = None) -> tuple[jax.Array, ...]:
    """The transformer's memory of the C context frames (`WorldModel`'s `context_only` mode),
    which every MaskGIT pass over the frame after them reads. control: as for
    `predict_next_frame` (action model: [B, C + 1, A], of which the context's C are read)."""
    c = model.config
    context_control = control[:, :window_tokens.shape[1]] if c.control == "action" else control
    flags = generated_flags(c, window_tokens, window_generated, with_next=False)
    return model.apply(params, window_tokens, context_control, control_mask, None,
                       window_margins if c.margin_inputs else None, context_only=True,
                       **({} if flags is None else {"margins_generated": flags}))


def _decode_frame(params: PyTree, model: WorldModel, window_tokens: jax.Array, control: jax.Array,
                  control_mask: jax.Array | None, key: PRNGKey, num_steps: int,
                  temperature: float, done_pass: bool, copy_penalty: float = 0.0,
                  window_margins: jax.Array | None = None,
                  window_generated: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """The MaskGIT loop (module docstring), unrolled over the static `num_steps`."""
    tokens, done, _ = _decode_frame_and_bits(params, model, window_tokens, control, control_mask,
                                             key, num_steps, temperature, done_pass, copy_penalty,
                                             window_margins, window_generated)
    return tokens, done


def _decode_frame_and_bits(params: PyTree, model: WorldModel, window_tokens: jax.Array,
                           control: jax.Array, control_mask: jax.Array | None, key: PRNGKey,
                           num_steps: int, temperature: float, done_pass: bool,
                           copy_penalty: float = 0.0, window_margins: jax.Array | None = None,
                           window_generated: jax.Array | None = None, with_bits: bool = False
                           ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """`_decode_frame`, and with `with_bits` what the new frame's margins are read from
    [B, h, w, K]: each bit's agreement with the model's probabilities (`margins.bit_agreement`,
    from the unpenalised logits of the pass that fixed the token), or for a model with a
    `latent_head` the margins of its predicted latent against the chosen code; None without."""
    c = model.config
    margins = model_margins(c, window_margins)
    flags = generated_flags(c, window_tokens, window_generated)
    flag_kw = {} if flags is None else {"margins_generated": flags}  # models without: none
    b, k = window_tokens.shape[0], c.grid_height * c.grid_width
    previous = window_tokens[:, -1].reshape(b, k)
    context_mask = jnp.zeros(window_tokens.shape, bool)
    tokens, masked = jnp.zeros((b, k), jnp.int32), jnp.ones((b, k), bool)
    memory = context_memory(params, model, window_tokens, control, control_mask, window_margins,
                            window_generated)
    chosen = None
    for step in range(num_steps):
        rng_sample, rng_noise = jax.random.split(jax.random.fold_in(key, step))
        window = jnp.concatenate([window_tokens, tokens.reshape(b, 1, *window_tokens.shape[2:])], 1)
        mask = jnp.concatenate([context_mask, masked.reshape(b, 1, *window_tokens.shape[2:])], 1)
        out = model.apply(params, window, control, control_mask, mask, margins, memory=memory,
                          **flag_kw)
        raw = out.logits[:, -1].reshape(b, k, c.num_factors, -1)
        logits = copy_penalised(raw, previous, c.num_bits, copy_penalty)
        sub, log_p = _sample(logits, rng_sample, temperature)
        if temperature > 0:  # MaskGIT's annealed randomness in which tokens to keep
            log_p += temperature * (1 - (step + 1) / num_steps) * jax.random.gumbel(rng_noise,
                                                                                    (b, k))
        confidence = jnp.where(masked, log_p, jnp.inf)
        rank = jnp.argsort(jnp.argsort(-confidence, axis=-1), axis=-1)
        fixed = rank < k - num_masked_after(step, num_steps, k)
        tokens = jnp.where(masked & fixed, subcodes_to_index(sub, c.num_bits), tokens)
        if with_bits:  # each token keeps the logits (or latent) of the pass that fixed it
            new = raw if not c.latent_head else out.latents[:, -1].reshape(b, k, c.num_bits)
            chosen = new if chosen is None else jnp.where(
                (masked & fixed).reshape(b, k, *([1] * (new.ndim - 2))), new, chosen)
        masked, done = ~fixed, out.done[:, -1]
    bit_state = None
    if with_bits and c.latent_head:
        bit_state = (chosen * index_to_bits(tokens, c.num_bits)).reshape(
            b, c.grid_height, c.grid_width, c.num_bits)
    elif with_bits:
        bit_state = bit_agreement(chosen, tokens, c.num_bits).reshape(
            b, c.grid_height, c.grid_width, c.num_bits)
    tokens = tokens.reshape(b, c.grid_height, c.grid_width)
    if done_pass:
        window = jnp.concatenate([window_tokens, tokens[:, None]], axis=1)
        done = model.apply(params, window, control, control_mask, None, margins,
                           memory=memory, **flag_kw).done[:, -1]
    return tokens, done, bit_state


_decode_frame_and_bits_jit = jax.jit(_decode_frame_and_bits, static_argnums=(1, 6, 7, 8, 9, 12))


def predict_next_frame(params: PyTree, model: WorldModel, window_tokens: jax.Array,
                       control: jax.Array, key: PRNGKey, *, control_mask: jax.Array | None = None,
                       num_steps: int = 2, temperature: float = 0.0, done_pass: bool = False,
                       copy_penalty: float = 0.0, margins: jax.Array | None = None,
                       margins_generated: jax.Array | None = None,
                       margin_calibration: MarginCalibration | None = None):
    """The next frame's tokens int32 [B, h, w] and done probability [B]; with
    `margin_calibration`, also the new frame's bit margins [B, h, w, K] read from the model's
    own bit probabilities (`margins.py`) or latent head (`generated_frame_margins`).

    Args:
      window_tokens: int [B, C, h, w], the C = num_frames - 1 context frames, oldest first.
      control: action model: float [B, C + 1, A] (the action that led into each context frame,
        then the action applied now); text model: [B, L, E] features with `control_mask` [B, L].
      key: used only when temperature > 0.
      copy_penalty: subtracted from the logits of "no change" (see `copy_penalised`).
      margins: float [B, C, h, w, K], the context frames' bit margins (models with
        `margin_inputs` only).
      margins_generated: bool [B, C], True where a context frame's margins are those of its
        decoded image (models with `generated_margin_flag`; None: all real).
    Jit-able (also inside a caller's jit/scan); inputs are checked first (see `check_inputs`).
    """
    check_inputs(model.config, window_tokens, control, control_mask)
    with_bits = margin_calibration is not None
    tokens, done, bit_state = _decode_frame_and_bits_jit(
        params, model, jnp.asarray(window_tokens, jnp.int32), control, control_mask, key,
        num_steps, float(temperature), done_pass, float(copy_penalty), margins,
        margins_generated, with_bits)
    if with_bits:
        return tokens, done, generated_frame_margins(model.config, margin_calibration, bit_state)
    return tokens, done


def generated_frame_margins(config: WorldModelConfig, calibration: MarginCalibration,
                            bits: jax.Array) -> jax.Array:
    """A generated frame's bit margins [B, h, w, K] from what `_decode_frame_and_bits` read for
    them: a `latent_head` model's own (the calibration unused), else the bit agreement mapped by
    `calibration`."""
    return bits if config.latent_head else calibrated_margins(calibration, bits)


def _step_control(model: WorldModel, window: Window, action: jax.Array | None, text: jax.Array):
    if model.config.control == "action":
        return jnp.concatenate([window.actions, action[:, None]], axis=1)
    return text


def rollout(params: PyTree, model: WorldModel, window: Window, controls: jax.Array,
            key: PRNGKey, *, horizon: int | None = None, control_mask: jax.Array | None = None,
            num_steps: int = 2, temperature: float = 0.0, copy_penalty: float = 0.0,
            margins_fn: Callable[[jax.Array], jax.Array] | None = None,
            margin_calibration: MarginCalibration | None = None,
            done_pass: bool = False) -> Rollout:
    """H steps of `predict_next_frame` under one `lax.scan` (one compiled step, no Python loop).

    Args:
      window: the starting context (e.g. `initial_window`).
      controls: action model: float [B, H, A], the action applied at each step (H = horizon);
        text model: [B, L, E] features with `control_mask` [B, L], and `horizon` H.
      margins_fn: models with `margin_inputs`: predicted tokens [B, h, w] -> their bit margins
        [B, h, w, K] (`tokenizer.tokenize.frame_margins` of the decoded frame), pushed into the
        window with them; `window.margins` holds the start's.
      margin_calibration: instead of `margins_fn`, a generated frame's margins are read from the
        model's own bit probabilities through this calibration (`margins.py`), or for a model
        with a `latent_head` from its predicted latent (`generated_frame_margins`).
    Returns: Rollout(tokens [B, H, h, w], done [B, H], the final window).
    """
    is_action = model.config.control == "action"
    horizon = controls.shape[1] if is_action else horizon
    if horizon is None:
        raise ValueError("the text model's rollout needs `horizon`")
    check_inputs(model.config, window.tokens,
                 _step_control(model, window, controls[:, 0], controls) if is_action else controls,
                 control_mask)
    _check_finite(controls)
    with_bits = model.config.margin_inputs and margin_calibration is not None
    if model.config.margin_inputs and (window.margins is None
                                       or (margins_fn is None and not with_bits)):
        raise ValueError("this world model reads bit margins: rollout needs window.margins and "
                         "margins_fn or margin_calibration")

    def step(window: Window, inputs):
        index, action = inputs
        control = _step_control(model, window, action, controls)
        tokens, done, bit_state = _decode_frame_and_bits(
            params, model, window.tokens, control, control_mask, jax.random.fold_in(key, index),
            num_steps, temperature, done_pass, copy_penalty, window.margins, window.generated,
            with_bits)
        actions = push_frame(window.actions, action) if is_action else None
        margins = None
        if model.config.margin_inputs:
            new = (generated_frame_margins(model.config, margin_calibration, bit_state)
                   if with_bits else margins_fn(tokens).astype(jnp.float32))
            margins = push_frame(window.margins, new)
        return (Window(push_frame(window.tokens, tokens), actions, margins,
                       pushed_generated(window)), (tokens, done))

    # the carry keeps one structure: a window without flags starts with every frame real
    window = window._replace(generated=generated_flags(model.config, window.tokens,
                                                       window.generated, with_next=False))
    actions = jnp.swapaxes(controls, 0, 1) if is_action else None
    window, (tokens, done) = jax.lax.scan(step, window, (jnp.arange(horizon), actions),
                                          length=horizon)
    return Rollout(jnp.swapaxes(tokens, 0, 1), jnp.swapaxes(done, 0, 1), window)


class _GoldenCarry(NamedTuple):
    index: jax.Array  # int32 [] frames predicted so far
    window: Window
    goal: GoldenTrajectory


@functools.partial(jax.jit, static_argnames=("model", "horizon", "num_steps", "temperature",
                                             "copy_penalty", "tokenizer"))
def golden_trajectory(params: PyTree, model: WorldModel, first_tokens: jax.Array,
                      text: jax.Array, text_mask: jax.Array, key: PRNGKey, *, horizon: int,
                      tau: float = 0.9, num_steps: int = 2, temperature: float = 0.0,
                      copy_penalty: float = 0.0, first_margins: jax.Array | None = None,
                      tokenizer: FrameTokenizer | None = None,
                      tokenizer_params: PyTree | None = None,
                      reference: jax.Array | None = None) -> GoldenTrajectory:
    """Eq. (6): o_goal = D(z_{t*}), t* = min{t : d_t >= tau}; returns the goal *tokens* (decode
    them with the tokenizer). Rolls the text model out from `first_tokens` [B, h, w] with the
    instruction `text` [B, L, E] / `text_mask` [B, L] in a `lax.while_loop` that stops once every
    scene has reached done >= tau or after `horizon` env steps. A model frame stands for
    `frame_stride` env steps: it rolls out ceil(horizon / frame_stride) frames, and `goal_index`
    counts env steps. A keyframe-plan model (`plan_frames` K) rolls out its K keyframes whatever
    the horizon, and `goal_index` counts keyframes (they have no fixed length in env steps).

    A text model with `margin_inputs` also needs the first frame's bit margins `first_margins`
    [B, h, w, K] and the `tokenizer` with its params: each generated frame's margins are those
    of its decoded image (`tokenize.generated_margins`), as in the world-model env; with a
    reference-conditioned tokenizer, also the initial frames `reference` [B, H, W, 3].
    """
    if model.config.control != "text":
        raise ValueError("golden_trajectory needs the text world model")
    if model.config.margin_inputs and (first_margins is None or tokenizer is None
                                       or tokenizer_params is None):
        raise ValueError("this text model reads bit margins (margin_inputs=True): pass "
                         "first_margins [B, h, w, K], tokenizer and tokenizer_params")
    b = first_tokens.shape[0]
    start = GoldenTrajectory(first_tokens.astype(jnp.int32), jnp.zeros((b,), jnp.int32),
                             jnp.zeros((b,), bool))

    def body(carry: _GoldenCarry) -> _GoldenCarry:
        w = carry.window
        tokens, done = _decode_frame(params, model, w.tokens, text, text_mask,
                                     jax.random.fold_in(key, carry.index), num_steps,
                                     temperature, False, copy_penalty, w.margins, w.generated)
        g, index = carry.goal, carry.index + 1
        keep = g.reached  # scenes that already have their goal keep it
        goal = GoldenTrajectory(jnp.where(keep[:, None, None], g.goal_tokens, tokens),
                                jnp.where(keep, g.goal_index, index), keep | (done >= tau))
        margins = None
        if w.margins is not None:
            margins = push_frame(w.margins, generated_margins(tokenizer, tokenizer_params, tokens,
                                                              reference))
        return _GoldenCarry(index, Window(push_frame(w.tokens, tokens), None, margins,
                                          pushed_generated(w)), goal)

    stride = model.config.frame_stride
    num_frames = model.config.plan_frames or -(-horizon // stride)

    def cond(carry: _GoldenCarry) -> jax.Array:
        return (carry.index < num_frames) & ~jnp.all(carry.goal.reached)

    window = initial_window(first_tokens, model, first_margins if model.config.margin_inputs
                            else None)
    carry = _GoldenCarry(jnp.zeros((), jnp.int32), window, start)
    goal = jax.lax.while_loop(cond, body, carry).goal
    return goal._replace(goal_index=goal.goal_index * stride)
