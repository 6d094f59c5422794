"""The tokenizer as two pure functions: `encode` frames to code indices and `decode` them back.

  tokens = encode(params, frames, model=model)  # uint8/[0, 1] [B, H, W, 3] -> int32 [B, h, w]
  frames = decode(params, tokens, model=model)  # int [B, h, w] -> float32 [B, H, W, 3] in [0, 1]

Both are jitted on `(params, frames)` with the Linen `model` static, so they also run inside a
caller's `jit`/`vmap`/`scan`. Inputs are checked before the compiled call: shapes and dtypes always,
values (range, NaN) whenever the input is a concrete array rather than a tracer.

A reference-conditioned tokenizer (`FrameTokenizer.reference_conditioning`) takes `reference=`,
the episode's first frame [B, H, W, 3] (uint8 or float [0, 1], like the frames), in every call.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from roboscape_jax.tokenizer.model import FrameTokenizer, bits_to_index
from roboscape_jax.types import PyTree


def frames_to_model_input(frames: jax.Array) -> jax.Array:
    """uint8 [0, 255] or float [0, 1] frames -> float32 in [-1, 1]."""
    if frames.dtype == jnp.uint8:
        return frames.astype(jnp.float32) / 127.5 - 1.0
    return frames.astype(jnp.float32) * 2.0 - 1.0


def model_output_to_frames(x: jax.Array) -> jax.Array:
    """float [-1, 1] model output -> float32 [0, 1], clipped."""
    return jnp.clip((x.astype(jnp.float32) + 1.0) / 2.0, 0.0, 1.0)


def to_uint8(frames: jax.Array) -> jax.Array:
    """float [0, 1] frames -> uint8 [0, 255], rounded."""
    return jnp.round(jnp.clip(frames, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_frames(frames, model: FrameTokenizer) -> None:
    """Raises ValueError naming what is wrong with `frames` for this tokenizer."""
    shape, dtype = np.shape(frames), np.result_type(frames)
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"frames must be [B, H, W, 3], got shape {shape}")
    f = model.downsample_factor
    if shape[1] % f or shape[2] % f:
        raise ValueError(f"frame size {shape[1]}x{shape[2]} is not divisible by the tokenizer's "
                         f"downsampling factor {f}")
    if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
        raise ValueError(f"frames must be uint8 in [0, 255] or float in [0, 1], got dtype {dtype}")
    if np.issubdtype(dtype, np.floating) and _is_concrete(frames):
        values = np.asarray(frames)
        if np.isnan(values).any():
            raise ValueError(f"frames contain {int(np.isnan(values).sum())} NaN values")
        if values.size and (values.min() < 0.0 or values.max() > 1.0):
            raise ValueError(f"float frames must lie in [0, 1], got values in "
                             f"[{values.min():.3g}, {values.max():.3g}] (uint8 frames are "
                             "accepted as they are; divide float [0, 255] frames by 255)")


def check_tokens(tokens, model: FrameTokenizer) -> None:
    """Raises ValueError naming what is wrong with `tokens` for this tokenizer."""
    shape, dtype = np.shape(tokens), np.result_type(tokens)
    if len(shape) != 3:
        raise ValueError(f"tokens must be [B, h, w], got shape {shape}")
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"tokens must be integer code indices, got dtype {dtype}")
    if _is_concrete(tokens):
        values = np.asarray(tokens)
        vocab = 2**model.num_bits
        if values.size and (values.min() < 0 or values.max() >= vocab):
            raise ValueError(f"tokens must lie in [0, {vocab}) for {model.num_bits} bits, got "
                             f"values in [{values.min()}, {values.max()}]")


def check_reference(reference, model: FrameTokenizer, batch_shape: tuple[int, ...]) -> None:
    """Raises ValueError when a reference-conditioned tokenizer gets no reference frames, another
    tokenizer gets some, or their shape is not [B, H, W, 3] of the frames (`batch_shape`: the
    frames' [B, H, W, 3], or [B, h, w] tokens, whose frame size follows from the model)."""
    if model.reference_conditioning != (reference is not None):
        raise ValueError(
            "this tokenizer is reference-conditioned: pass reference=, the episode's first frame "
            "[B, H, W, 3]" if model.reference_conditioning else
            "this tokenizer takes no reference frame (reference_conditioning=False)")
    if reference is None:
        return
    check_frames(reference, model)
    if len(batch_shape) == 3:
        f = model.downsample_factor
        batch_shape = (batch_shape[0], batch_shape[1] * f, batch_shape[2] * f, 3)
    if tuple(np.shape(reference)) != tuple(batch_shape):
        raise ValueError(f"reference frames must be {tuple(batch_shape)} (one per frame), got "
                         f"{np.shape(reference)}")


def reference_or_none(model: FrameTokenizer, first_frames):
    """`first_frames` when `model` is reference-conditioned, else None: what callers pass as
    `reference=` (the episode-first frame of each frame they encode or decode)."""
    return first_frames if model.reference_conditioning else None


def _model_reference(reference):
    return None if reference is None else frames_to_model_input(reference)


@functools.partial(jax.jit, static_argnames="model")
def _encode(params: PyTree, frames: jax.Array, model: FrameTokenizer,
            reference: jax.Array | None = None) -> jax.Array:
    _, codes = model.apply(params, frames_to_model_input(frames), _model_reference(reference),
                           method=FrameTokenizer.encode)
    tokens = bits_to_index(codes)
    f = model.downsample_factor
    chex.assert_shape(tokens, (frames.shape[0], frames.shape[1] // f, frames.shape[2] // f))
    return tokens


@functools.partial(jax.jit, static_argnames="model")
def _encode_latents(params: PyTree, frames: jax.Array, model: FrameTokenizer,
                    reference: jax.Array | None = None) -> jax.Array:
    latents, _ = model.apply(params, frames_to_model_input(frames), _model_reference(reference),
                             method=FrameTokenizer.encode)
    return latents


@functools.partial(jax.jit, static_argnames="model")
def _decode(params: PyTree, tokens: jax.Array, model: FrameTokenizer,
            reference: jax.Array | None = None) -> jax.Array:
    x = model.apply(params, tokens.astype(jnp.int32), _model_reference(reference),
                    method=FrameTokenizer.decode_indices)
    f = model.downsample_factor
    chex.assert_shape(x, (tokens.shape[0], tokens.shape[1] * f, tokens.shape[2] * f, 3))
    return model_output_to_frames(x)


def encode(params: PyTree, frames, *, model: FrameTokenizer, reference=None) -> jax.Array:
    """Frames -> code indices. frames: uint8 [B, H, W, 3] or float in [0, 1]; `reference` (the
    same kind, reference-conditioned tokenizers only): each frame's episode-first frame.

    Returns: int32 [B, h, w].
    """
    check_frames(frames, model)
    check_reference(reference, model, np.shape(frames))
    return _encode(params, frames, model, reference)


def encode_latents(params: PyTree, frames, *, model: FrameTokenizer, reference=None) -> jax.Array:
    """Frames -> pre-quantization latents float32 [B, h, w, K] (their signs are the codes)."""
    check_frames(frames, model)
    check_reference(reference, model, np.shape(frames))
    return _encode_latents(params, frames, model, reference)


def decode(params: PyTree, tokens, *, model: FrameTokenizer, reference=None) -> jax.Array:
    """Code indices -> frames. tokens: int [B, h, w]; returns float32 [B, H, W, 3] in [0, 1]."""
    check_tokens(tokens, model)
    check_reference(reference, model, np.shape(tokens))
    return _decode(params, tokens, model, reference)


def reconstruct(params: PyTree, frames, *, model: FrameTokenizer, reference=None) -> jax.Array:
    """decode(encode(frames)): float32 [B, H, W, 3] in [0, 1]."""
    tokens = encode(params, frames, model=model, reference=reference)
    return decode(params, tokens, model=model, reference=reference)
