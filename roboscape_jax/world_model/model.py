"""The RoboScape-R world model (section 3.1, Eq. 1): (o_{<=t}, c) -> (o_{t+1} tokens, done).

  model = WorldModel(WorldModelConfig(control="action"))
  out = model.apply(params, tokens, control, control_mask, token_mask)
  out.logits  # [B, T, h, w, F, V_f] factored logits of every frame's tokens
  out.done    # [B, T] done probability of every frame

Tokens are the tokenizer's full code indices of `num_bits` bits; the model embeds them as the sum of
`num_factors` sub-code embeddings and predicts each sub-code with its own head of
V_f = 2^(num_bits / num_factors) classes (the authors' 2^18 = 2 x 2^9). Masked tokens (MaskGIT
training and sampling) are replaced by one learned mask embedding.

Control: `control="action"`: actions [B, T, A] where actions[:, t] is the action that led INTO
frame t (zeros for the first frame of an episode); each of the A dimensions becomes its own control
token (a small MLP per dimension, as in the authors' code) plus a frame-index embedding, and the
tokens of frame t cross-attend to frame t's A control tokens only. `control="text"`: instruction
features [B, L, 384] (MiniLM per-token features, `text.encoder.TextFeatures.tokens`) with mask
[B, L], projected to width D and shared by every frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from roboscape_jax.layers import Dense, DenseGeneral
from roboscape_jax.tokenizer.model import index_to_bits, index_to_subcodes
from roboscape_jax.types import PyTree
from roboscape_jax.utils.config import dataclass_from_config
from roboscape_jax.world_model.margins import clip_margins
from roboscape_jax.world_model.transformer import STTransformer

CONTROLS = ("action", "text")


@dataclasses.dataclass(frozen=True)
class WorldModelConfig:
    """Architecture of one world model; defaults are the `tiny` sizes."""

    control: str = "action"  # one of CONTROLS
    num_bits: int = 18  # tokenizer code bits
    num_factors: int = 2  # sub-code heads of num_bits / num_factors bits each
    grid_height: int = 16  # h
    grid_width: int = 8  # w
    num_frames: int = 5  # T: window length (context frames + the predicted frame)
    depth: int = 4
    width: int = 128  # D
    num_heads: int = 4
    mlp_ratio: int = 4
    action_dim: int = 7  # A
    action_hidden: int = 32  # per-dimension action MLP width
    text_dim: int = 384  # MiniLM-L6
    done_hidden: int = 64  # done head MLP(D -> done_hidden -> 1), as in the authors' code
    # Per-dimension action normalisation (a - mean) / std, from the training data (Octo-style);
    # () = none. Callers always pass raw actions.
    action_mean: tuple[float, ...] = ()
    action_std: tuple[float, ...] = ()
    # Copy head: adds a learned, per-token gate to the logit of the previous frame's sub-code
    # (a pointer to "no change"), so the model copies from the first step and spends its
    # capacity on what moves. 0 disables it; the value is the gate's initial bias.
    copy_bias_init: float = 0.0
    # Change parameterisation: the head's class j means "this token's code is the previous frame's
    # code XOR j" (per sub-code), mapped back to code logits inside the model. Class 0 is "no
    # change" for every code, and a flip pattern learned on one code serves all codes, where an
    # absolute head must learn a 2^bits-way identity map before it can even copy.
    predict_change: bool = False
    # Embed each code also through its bits (a linear map of the {-1, +1} code vector): codes
    # that differ in one bit start close, which the lookup table alone does not know.
    bit_embedding: bool = False
    # Read frame t-1's bit margins (latent x code sign, `data.Episode.margins`) at frame t: an
    # embedding of them, and with `predict_change` a flip logit per bit added to every change
    # pattern that flips it. Most code changes flip the bit nearest its threshold, which the
    # codes alone do not carry. Callers then pass `margins` [B, T, h, w, num_bits].
    margin_inputs: bool = False
    # With `margin_inputs`: also read, per frame, whether its margins are those of a DECODED frame
    # (`data.Episode.generated_margins`, what rollouts compute for the frames they generate)
    # rather than of the real frame's encoder latent. Decode-then-encode disagrees with the
    # codes in 41% of tokens where the real latent does in 28% (`tiny`), and a model trained on
    # real margins alone reads the difference as motion: open-loop, it changed 9% of the tokens
    # at its second step, at a copy penalty that changes 0.7% at the first. Training draws
    # how many of the most recent context frames carry generated margins (train.py).
    generated_margin_flag: bool = False
    # With `margin_inputs`: also predict each frame's encoder latent per bit (its margin times
    # its code's sign; a regression head on frame t-1's latent plus a correction read from x),
    # so that a generated frame carries the model's own sub-code state: rollouts and the env
    # give it the margins of that latent against the code chosen (`WorldModelOutput.latents`).
    latent_head: bool = False
    # Env steps between consecutive frames of a window. The action model predicts one env step
    # (1); the text model, whose only use is the goal frame of its golden trajectory, may predict
    # a coarse plan: at stride 8 it reaches an episode's end in about 8 frames instead of 64,
    # and each frame's change is large enough that copying is no answer (on `tiny` its goals
    # measured no better than at stride 1: docs/performance_history.md).
    frame_stride: int = 1
    # K > 0 (text model only): a keyframe plan. The model's frames are K + 1 keyframes evenly
    # spaced in time from a frame to its episode's last (`data.plan_episodes`), so the golden
    # trajectory reaches the task's end in K predictions whatever the episode's length, and its
    # last frame is where done was learned. 0: frames `frame_stride` env steps apart.
    plan_frames: int = 0
    remat: bool = False
    dtype: str = "float32"  # compute dtype ("bfloat16" on accelerators)

    def __post_init__(self):
        if self.control not in CONTROLS:
            raise ValueError(f"control must be one of {CONTROLS}, got {self.control!r}")
        if self.num_factors < 1 or self.num_bits % self.num_factors:
            raise ValueError(f"num_bits={self.num_bits} must split into num_factors="
                             f"{self.num_factors} equal sub-codes")
        if self.frame_stride < 1 or (self.control == "action" and self.frame_stride != 1):
            raise ValueError(f"frame_stride must be >= 1, and 1 for the action model (one frame "
                             f"per env step), got {self.frame_stride} for control="
                             f"{self.control!r}")
        if self.plan_frames < 0 or (self.plan_frames and (self.control != "text"
                                                           or self.frame_stride != 1)):
            raise ValueError(f"plan_frames must be >= 0, and 0 unless control='text' with "
                             f"frame_stride 1, got {self.plan_frames} for control="
                             f"{self.control!r}, frame_stride {self.frame_stride}")
        if self.generated_margin_flag and not self.margin_inputs:
            raise ValueError("generated_margin_flag needs margin_inputs=True (it says where the "
                             "margins come from)")
        if self.latent_head and not self.margin_inputs:
            raise ValueError("latent_head needs margin_inputs=True (it predicts the latent the "
                             "margins are read from)")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by {self.num_heads} heads")
        for name in ("action_mean", "action_std"):
            value = getattr(self, name)
            if value and len(value) != self.action_dim:
                raise ValueError(f"{name} has {len(value)} entries; action_dim is "
                                 f"{self.action_dim}")
        if self.action_std and min(self.action_std) <= 0:
            raise ValueError(f"action_std must be positive, got {self.action_std}")

    @property
    def vocab_per_factor(self) -> int:
        """V_f = 2^(num_bits / num_factors)."""
        return 2 ** (self.num_bits // self.num_factors)

    @classmethod
    def from_config(cls, config: "WorldModelConfig | Mapping[str, Any]") -> "WorldModelConfig":
        """Accepts a WorldModelConfig, a dict or an ml_collections ConfigDict section."""
        return dataclass_from_config(cls, config, "world model")


class WorldModelOutput(NamedTuple):
    logits: jax.Array  # [B, T, h, w, F, V_f] float32
    done: jax.Array  # [B, T] float32 probability
    done_logit: jax.Array  # [B, T] float32
    latents: jax.Array | None = None  # [B, T, h, w, num_bits] float32 (models with latent_head)


class ActionEncoder(nn.Module):
    """actions [B, T, A] -> control tokens [B, T, A, D]: dimension j of the action goes through
    its own MLP(1 -> hidden -> D); a learned frame-index embedding is added to all of them."""

    width: int
    hidden: int = 32
    num_frames: int = 16

    @nn.compact
    def __call__(self, actions: jax.Array) -> jax.Array:
        _, t, a = actions.shape
        init = nn.initializers.lecun_normal()
        w1 = self.param("w1", nn.initializers.normal(1.0), (a, self.hidden))
        b1 = self.param("b1", nn.initializers.zeros, (a, self.hidden))
        w2 = self.param("w2", init, (a, self.hidden, self.width))
        b2 = self.param("b2", nn.initializers.zeros, (a, self.width))
        h = nn.gelu(actions[..., None] * w1 + b1)  # [B, T, A, hidden]
        tokens = jnp.einsum("btah,ahd->btad", h, w2) + b2
        frame = self.param("frame_embedding", nn.initializers.normal(0.02),
                           (self.num_frames, self.width))[:t]
        return tokens + frame[None, :, None]


class TextControl(nn.Module):
    """Instruction features [B, L, E] and mask [B, L] -> tokens [B, 1, L, D], mask [B, 1, L]
    (one set of control tokens shared by every frame)."""

    width: int

    @nn.compact
    def __call__(self, text: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        tokens = nn.Dense(self.width)(nn.LayerNorm()(text))
        return tokens[:, None], mask.astype(bool)[:, None]


def _xor_gather(x: jax.Array, code: jax.Array) -> jax.Array:
    # one flat index per element: take_along_axis's N-D indices, shared by the forward and the
    # backward gather, were materialised (5 ints per logit) and cost 5x the gathers themselves
    vocab = x.shape[-1]
    rows = jnp.arange(code.size, dtype=jnp.int32)[:, None] * vocab
    index = rows + (jnp.arange(vocab, dtype=jnp.int32) ^ code.reshape(-1, 1).astype(jnp.int32))
    return jnp.take(x.reshape(-1), index.reshape(-1), mode="clip").reshape(x.shape)


@jax.custom_vjp
def xor_permute(x: jax.Array, code: jax.Array) -> jax.Array:
    """out[..., v] = x[..., v XOR code]: x [..., V] (V a power of 2), code int [...].

    XOR by a fixed code is its own inverse, so the gradient is the same gather of the cotangent;
    autodiff of the gather would scatter-add instead, which on the CPU took a sixth of the
    world model's training step (one index per logit)."""
    return _xor_gather(x, code)


def _xor_permute_fwd(x, code):
    return _xor_gather(x, code), code


def _xor_permute_bwd(code, g):
    return _xor_gather(g, code), None


xor_permute.defvjp(_xor_permute_fwd, _xor_permute_bwd)


def _previous_frame(x: jax.Array) -> jax.Array:
    """[B, T, ...] -> [B, T, ...]: frame t-1's values at frame t, zeros at frame 0."""
    return jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)


class WorldModel(nn.Module):
    """Token embedding -> ST transformer conditioned on the control -> factored logits and done."""

    config: WorldModelConfig

    def _control_tokens(self, control: jax.Array, control_mask: jax.Array | None):
        c = self.config
        if c.control == "action":
            if c.action_mean:
                control = control - jnp.asarray(c.action_mean, control.dtype)
            if c.action_std:
                control = control / jnp.asarray(c.action_std, control.dtype)
            tokens = ActionEncoder(c.width, c.action_hidden, c.num_frames)(control)
            return tokens, jnp.ones(tokens.shape[:3], bool)
        if control_mask is None:
            raise ValueError("the text model needs control_mask [B, L]")
        chex.assert_shape(control_mask, control.shape[:2])
        return TextControl(c.width)(control, control_mask)

    def _embed(self, tokens: jax.Array, token_mask: jax.Array | None) -> jax.Array:
        c = self.config
        sub = index_to_subcodes(tokens, c.num_bits, c.num_factors)  # [B, T, h, w, F]
        offsets = c.vocab_per_factor * jnp.arange(c.num_factors)
        table = nn.Embed(c.num_factors * c.vocab_per_factor, c.width, name="token_embedding")
        x = table(sub + offsets).sum(-2)  # [B, T, h, w, D]
        if c.bit_embedding:
            x = x + nn.Dense(c.width, use_bias=False, name="bit_embedding")(
                index_to_bits(tokens, c.num_bits))
        mask_embedding = self.param("mask_embedding", nn.initializers.normal(0.02), (c.width,))
        if token_mask is not None:
            x = jnp.where(token_mask[..., None], mask_embedding, x)
        return x.reshape(*tokens.shape[:2], -1, c.width)

    def _previous_margins(self, margins: jax.Array) -> jax.Array:
        """float32 [B, T, K, bits]: frame t-1's bit margins at frame t, clipped (`clip_margins`;
        zeros at frame 0). Frame t's own margins are never read: they would give its codes
        away."""
        c = self.config
        b, t = margins.shape[:2]
        chex.assert_shape(margins, (b, t, c.grid_height, c.grid_width, c.num_bits))
        clipped = clip_margins(margins).reshape(b, t, -1, c.num_bits)
        return _previous_frame(clipped)

    def _margin_features(self, margins: jax.Array) -> jax.Array:
        """[B, T, K, bits] previous margins -> [B, T, K, 2 bits]: the margin and a bump that is 1
        at the flipping threshold."""
        return jnp.concatenate([margins, jnp.exp(-jnp.square(margins / 0.2))], axis=-1)

    def _flip_prior(self, x: jax.Array, margins: jax.Array, first: jax.Array,
                    generated: jax.Array | None = None) -> jax.Array:
        """[B, T, K, F, V_f] change-logit prior: sum over the bits that change pattern j flips of
        a per-bit flip logit (a shared MLP of the bit's previous margin, and of whether that
        margin is a decoded frame's (`generated` [B, T, 1, 1]), plus a linear read of x); zero
        where `first` [T] (frame 0)."""
        c = self.config
        bits_f = c.num_bits // c.num_factors
        inputs = margins[..., None]
        if generated is not None:
            inputs = jnp.concatenate([inputs, jnp.broadcast_to(generated[..., None],
                                                               inputs.shape)], axis=-1)
        h = nn.gelu(Dense(16, name="flip_hidden")(inputs))
        flip = Dense(1, name="flip_out")(h)[..., 0]  # [B, T, K, bits]
        flip = flip + Dense(c.num_bits, name="flip_from_x")(x).astype(jnp.float32)
        flip = flip.reshape(*flip.shape[:-1], c.num_factors, bits_f)
        patterns = (jnp.arange(c.vocab_per_factor)[:, None] >> jnp.arange(bits_f)) & 1
        prior = jnp.einsum("ntkfi,vi->ntkfv", flip, patterns.astype(jnp.float32))
        prior = jnp.where(first[None, :, None, None, None], 0.0, prior)
        self.sow("intermediates", "flip_prior", prior)
        return prior

    def _latents(self, x: jax.Array, tokens: jax.Array, previous_margins: jax.Array,
                 frames: slice) -> jax.Array:
        """float32 [B, T', h, w, bits]: frame t's predicted encoder latent, frame t-1's (its
        margins [B, T', K, bits] times its code's bits; zeros at frame 0) plus a correction
        read from x [B, T', K, D] that starts at zero."""
        c = self.config
        b = tokens.shape[0]
        previous_bits = _previous_frame(index_to_bits(tokens.reshape(b, tokens.shape[1], -1),
                                                      c.num_bits))[:, frames]
        delta = Dense(c.num_bits, name="latent_out", kernel_init=nn.initializers.zeros)(x)
        latents = previous_margins * previous_bits + delta.astype(jnp.float32)
        return latents.reshape(b, -1, c.grid_height, c.grid_width, c.num_bits)

    def _previous_subcodes(self, tokens: jax.Array) -> jax.Array:
        """int32 [B, T, K, F]: frame t-1's sub-codes at frame t (zeros at frame 0). Frame t-1's
        tokens are always known when frame t is predicted (the context)."""
        c = self.config
        b, t = tokens.shape[:2]
        return _previous_frame(index_to_subcodes(tokens.reshape(b, t, -1), c.num_bits,
                                                 c.num_factors))

    def _copy_prior(self, x: jax.Array, previous: jax.Array, first: jax.Array) -> jax.Array:
        """[B, T, K, F, V_f]: gate(x) on the one-hot of frame t-1's sub-codes `previous`
        [B, T, K, F] (zero where `first` [T]: frame 0 has no previous frame)."""
        c = self.config
        gate = nn.Dense(c.num_factors, name="copy_gate",
                        bias_init=nn.initializers.constant(c.copy_bias_init))(x)  # [B, T, K, F]
        one_hot = jax.nn.one_hot(previous, c.vocab_per_factor, dtype=jnp.float32)
        one_hot = jnp.where(first[None, :, None, None, None], 0.0, one_hot)
        return gate.astype(jnp.float32)[..., None] * one_hot

    def _change_to_code_logits(self, logits: jax.Array, previous: jax.Array) -> jax.Array:
        """[B, T, K, F, V_f] change logits -> code logits: code v of frame t gets the logit of
        change (v XOR previous sub-code `previous` [B, T, K, F]); frame 0 (no previous frame,
        zeros) reads them as codes."""
        return xor_permute(logits, previous)

    @nn.compact
    def __call__(self, tokens: jax.Array, control: jax.Array, control_mask: jax.Array | None = None,
                 token_mask: jax.Array | None = None, margins: jax.Array | None = None, *,
                 memory: tuple[jax.Array, ...] | None = None, context_only: bool = False,
                 margins_generated: jax.Array | None = None):
        """tokens int [B, T, h, w]; control [B, T, A] or [B, L, E] (+ control_mask [B, L]);
        token_mask bool [B, T, h, w], True where a token is hidden from the model; margins
        float [B, T, h, w, num_bits] (models with `margin_inputs`; the last frame's are unused);
        margins_generated bool [B, T] (models with `generated_margin_flag`; None: all real),
        True where a frame's margins are those of its decoded image.

        Two modes for sampling, where MaskGIT's passes over one window share its context:
        `context_only=True` returns the transformer's memory of these frames (`STTransformer`;
        no heads run); given that `memory` of the first T - 1 frames, only the last frame runs
        through the transformer and the output holds it alone (logits [B, 1, ...], done [B, 1]),
        equal to the last frame's output of the full call."""
        c = self.config
        b, t = tokens.shape[:2]
        if t > c.num_frames:
            raise ValueError(f"got {t} frames; the model takes at most {c.num_frames}")
        chex.assert_shape(tokens, (b, t, c.grid_height, c.grid_width))
        if c.control == "action":
            chex.assert_shape(control, (b, t, c.action_dim))
        else:
            chex.assert_shape(control, (b, None, c.text_dim))
        if token_mask is not None:
            chex.assert_equal_shape([tokens, token_mask])
        ctrl, ctrl_mask = self._control_tokens(control, control_mask)
        # the frames embedded, run through the transformer and scored: all, or the last one
        # given memory (the earlier frames are then read only for what frame t takes from t-1)
        frames = slice(None) if memory is None else slice(t - 1, t)
        if memory is not None and c.control == "action":
            ctrl, ctrl_mask = ctrl[:, frames], ctrl_mask[:, frames]
        embedded = self._embed(tokens[:, frames], None if token_mask is None
                               else token_mask[:, frames])  # [B, T', K, D]
        if c.margin_inputs:
            if margins is None:
                raise ValueError("this world model reads bit margins (margin_inputs=True): pass "
                                 "margins [B, T, h, w, num_bits] (the token cache's 'margins')")
            previous_margins = self._previous_margins(margins)[:, frames]
            embedded = embedded + Dense(c.width, name="margin_embedding")(
                self._margin_features(previous_margins))
        previous_generated = None
        if c.generated_margin_flag:
            if margins_generated is None:
                margins_generated = jnp.zeros((b, t), bool)
            chex.assert_shape(margins_generated, (b, t))
            previous_generated = _previous_frame(
                margins_generated.astype(jnp.float32))[:, frames, None, None]  # [B, T', 1, 1]
            flag = self.param("generated_margin_embedding", nn.initializers.normal(0.02),
                              (c.width,))
            embedded = embedded + previous_generated * flag
        x, hidden = STTransformer(c.num_frames, c.grid_height * c.grid_width, c.depth,
                                  c.num_heads, c.mlp_ratio, c.remat, jnp.dtype(c.dtype))(
            embedded, ctrl, ctrl_mask, memory)  # [B, T', K, D]
        if context_only:
            return hidden
        t_out = x.shape[1]
        first = (jnp.arange(t) == 0)[frames]  # frame 0 has no previous frame
        previous = self._previous_subcodes(tokens)[:, frames]  # [B, T', K, F]
        logits = DenseGeneral((c.num_factors, c.vocab_per_factor), name="logits")(x)
        logits = logits.astype(jnp.float32)
        if c.margin_inputs and c.predict_change:
            logits = logits + self._flip_prior(x, previous_margins, first, previous_generated)
        if c.predict_change:
            logits = self._change_to_code_logits(logits, previous)
        if c.copy_bias_init:
            logits = logits + self._copy_prior(x, previous, first)
        logits = logits.reshape(b, t_out, c.grid_height, c.grid_width, c.num_factors,
                                c.vocab_per_factor)
        latents = None
        if c.latent_head:
            latents = self._latents(x, tokens, previous_margins, frames)
        pooled = x.mean(axis=2)  # [B, T', D]: what the done head (and reward baselines) read
        self.sow("intermediates", "frame_embedding", pooled.astype(jnp.float32))
        h = nn.gelu(Dense(c.done_hidden, name="done_hidden")(pooled))
        done_logit = Dense(1, name="done_out")(h)[..., 0].astype(jnp.float32)
        chex.assert_shape(done_logit, (b, t_out))
        return WorldModelOutput(logits, jax.nn.sigmoid(done_logit), done_logit, latents)


def create_model(model_config, action_stats: Mapping[str, Any] | None = None) -> WorldModel:
    """The world model of a `config.model` section (experiments/configs/world_model.py), with the
    training data's action statistics {"mean": [A], "std": [A]} when given."""
    config = WorldModelConfig.from_config(model_config)
    if action_stats:
        config = dataclasses.replace(config, action_mean=tuple(map(float, action_stats["mean"])),
                                     action_std=tuple(map(float, action_stats["std"])))
    return WorldModel(config)


def last_frame_outputs(model: WorldModel, params: PyTree, tokens: jax.Array, control: jax.Array,
                       control_mask: jax.Array | None = None,
                       margins: jax.Array | None = None,
                       margins_generated: jax.Array | None = None
                       ) -> tuple[jax.Array, jax.Array]:
    """The done probability [B] and pooled hidden features [B, D] (what the done head reads, and
    the embedding reward baseline's input) of the LAST frame of each window [B, T, h, w]."""
    out, state = model.apply(params, tokens, control, control_mask, None, margins,
                             margins_generated=margins_generated, mutable=["intermediates"])
    (embedding,) = state["intermediates"]["frame_embedding"]
    return out.done[:, -1], embedding[:, -1]


def init_params(model: WorldModel, rng: jax.Array) -> PyTree:
    """Fresh params of `model` from zero inputs of batch 1 (actions or a 1-token instruction, and
    bit margins when the model reads them)."""
    c = model.config
    tokens = jnp.zeros((1, c.num_frames, c.grid_height, c.grid_width), jnp.int32)
    if c.control == "action":
        control, control_mask = jnp.zeros((1, c.num_frames, c.action_dim)), None
    else:
        control, control_mask = jnp.zeros((1, 1, c.text_dim)), jnp.ones((1, 1), bool)
    margins = jnp.zeros((*tokens.shape, c.num_bits)) if c.margin_inputs else None
    return jax.jit(model.init)(rng, tokens, control, control_mask, None, margins)
