"""Tokenizes every episode of a dataset once, into a token cache on disk.

  cache_dir/manifest.json        the tokenizer's model config + fingerprint, grid shape, bits
  cache_dir/<episode_id>.npz     tokens: int32 [T, h, w] (the full code index of each token),
                                 first_frame: uint8 [H, W, 3] (the episode's first real frame,
                                 the reference a reference-conditioned tokenizer decodes with)

Each episode file is written to a temporary name and renamed, so a killed run leaves only whole
files; a rerun skips the episodes already present (resumable). A cache made by another tokenizer
config is refused rather than mixed.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Iterable, Protocol

import jax
import numpy as np

from roboscape_jax.tokenizer import api
from roboscape_jax.tokenizer.model import (
    FrameTokenizer,
    bits_to_index,
    hysteresis_quantize,
    index_to_bits,
)
from roboscape_jax.types import PyTree
from roboscape_jax.utils.files import write_json

_EPISODE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


class EpisodeSource(Protocol):
    """Episodes of frames: ids, and uint8 [T, H, W, 3] frames per id."""

    def episode_ids(self) -> Iterable[str]: ...

    def get_episode(self, episode_id: str) -> np.ndarray: ...


class ArrayEpisodeSource:
    """Episodes held in a dict {episode_id: uint8 [T, H, W, 3]}."""

    def __init__(self, episodes: dict[str, np.ndarray]):
        self.episodes = episodes

    def episode_ids(self) -> list[str]:
        return sorted(self.episodes)

    def get_episode(self, episode_id: str) -> np.ndarray:
        return self.episodes[episode_id]


def episode_path(cache_dir: str, episode_id: str) -> str:
    if not _EPISODE_ID.match(episode_id):
        raise ValueError(f"episode id {episode_id!r} is not a safe file name ([A-Za-z0-9_.-])")
    return os.path.join(cache_dir, f"{episode_id}.npz")


def _write_manifest(cache_dir: str, manifest: dict[str, Any]) -> None:
    path = os.path.join(cache_dir, "manifest.json")
    if os.path.exists(path):
        with open(path) as f:
            stored = json.load(f)
        if stored.get("tokenizer") != manifest["tokenizer"]:
            raise ValueError(f"token cache {cache_dir} was made by another tokenizer "
                             f"({stored.get('tokenizer')} vs {manifest['tokenizer']}); "
                             "use a new cache folder")
        return
    write_json(path, manifest)


def tokenize_episodes(model: FrameTokenizer, params: PyTree, episodes: EpisodeSource,
                      cache_dir: str, *, tokenizer_id: dict[str, Any],
                      batch_size: int = 64, hysteresis: float = 0.0,
                      with_generated_margins: bool = False) -> dict[str, int]:
    """Writes `cache_dir/<id>.npz` (tokens int32 [T, h, w] and their bit margins float16
    [T, h, w, K], see `encode_padded`) for every episode not cached yet.

    Args:
      tokenizer_id: identifies the tokenizer (e.g. train.model_fingerprint(config)); a cache
        written under another id (or another `hysteresis`) is refused.
      hysteresis: a bit keeps the previous frame's sign while its latent |z| < hysteresis
        (model.hysteresis_quantize): fewer noise flips for the world model to predict.
      with_generated_margins: also store `generated_margins` float16 [T, h, w, K], each frame's
        token margins for its DECODED frame (`generated_margins`), what a rollout computes for
        the frames it generates: world models with `generated_margin_flag` train on both.
      When `episodes` also has `get_extras(id) -> dict of arrays` (actions, done, ...), those are
      stored beside the tokens, so the world model reads one file per episode.
    Returns: {"written": n, "skipped": m}.
    """
    os.makedirs(cache_dir, exist_ok=True)
    if hysteresis < 0:
        raise ValueError(f"hysteresis must be >= 0, got {hysteresis}")
    tokenizer_id = {**tokenizer_id, **({"hysteresis": hysteresis} if hysteresis else {}),
                    **({"generated_margins": True} if with_generated_margins else {})}
    _write_manifest(cache_dir, {"tokenizer": tokenizer_id, "num_bits": model.num_bits,
                                "num_factors": model.num_factors,
                                "downsample_factor": model.downsample_factor})
    written = skipped = 0
    for episode_id in episodes.episode_ids():
        path = episode_path(cache_dir, episode_id)
        if os.path.exists(path):
            skipped += 1
            continue
        frames = episodes.get_episode(episode_id)
        tokens, margins = encode_padded(model, params, frames, batch_size, hysteresis,
                                        with_margins=True)
        extras = episodes.get_extras(episode_id) if hasattr(episodes, "get_extras") else {}
        if with_generated_margins:
            extras["generated_margins"] = decoded_margins_padded(model, params, tokens,
                                                                 frames[0], batch_size)
        tmp = path[:-len(".npz")] + ".tmp.npz"
        np.savez(tmp, tokens=tokens, margins=margins, first_frame=np.asarray(frames[0], np.uint8),
                 **extras)
        os.replace(tmp, path)
        written += 1
    return {"written": written, "skipped": skipped}


def _in_padded_batches(fn, x: np.ndarray, batch_size: int) -> np.ndarray:
    """fn over x [T, ...] in batches of exactly `batch_size`, the last padded with copies of
    x's last entry (one compiled shape for any T): the outputs concatenated, padding included."""
    padded = np.concatenate([x, np.repeat(x[-1:], -len(x) % batch_size, axis=0)])
    return np.concatenate([np.asarray(fn(padded[i:i + batch_size]))
                           for i in range(0, len(padded), batch_size)])


def encode_padded(model: FrameTokenizer, params: PyTree, frames: np.ndarray,
                  batch_size: int, hysteresis: float = 0.0, *, with_margins: bool = False):
    """Encodes the consecutive frames [T, H, W, 3] of one episode in batches of exactly
    `batch_size` (the last one padded with copies of the last frame), so episodes of any length
    reuse one compiled program; the codes are `hysteresis_quantize`d (margin 0: plain signs,
    exactly `api.encode`'s codes).

    Returns int32 tokens [T, h, w]; with `with_margins`, (tokens, margins float16 [T, h, w, K]):
    each bit's latent times its code sign, z_k * q_k, i.e. how far the bit is from flipping
    (small or negative: a flip is near). Most code changes between frames are single-bit flips
    of the bit nearest its threshold, which the codes alone do not tell a world model.
    """
    num_frames = len(frames)
    # A reference-conditioned tokenizer encodes every frame given the episode's first frame.
    reference = (np.repeat(frames[:1], batch_size, axis=0) if model.reference_conditioning
                 else None)
    latents = _in_padded_batches(
        lambda x: api.encode_latents(params, x, model=model, reference=reference), frames,
        batch_size)
    tokens, margins = _sticky_codes(latents, hysteresis)
    tokens = np.asarray(tokens)[:num_frames]
    if not with_margins:
        return tokens
    return tokens, np.asarray(margins)[:num_frames].astype(np.float16)


def decoded_margins_padded(model: FrameTokenizer, params: PyTree, tokens: np.ndarray,
                           first_frame: np.ndarray, batch_size: int) -> np.ndarray:
    """float16 [T, h, w, K]: `generated_margins` of one episode's tokens [T, h, w] in batches of
    exactly `batch_size` (the last padded); `first_frame` [H, W, 3] is the reference of a
    reference-conditioned tokenizer."""
    reference = (np.repeat(first_frame[None], batch_size, axis=0)
                 if model.reference_conditioning else None)
    margins = _in_padded_batches(
        lambda x: _generated_margins_jit(model, params, x, reference), tokens, batch_size)
    return margins[:len(tokens)].astype(np.float16)


@jax.jit
def _sticky_codes(latents: jax.Array, hysteresis: float) -> tuple[jax.Array, jax.Array]:
    """Code indices [T, h, w] of `hysteresis_quantize`d latents [T, h, w, K] and the bit margins
    latents * codes [T, h, w, K] (T padded to a multiple of the batch size, so few lengths
    compile)."""
    codes = hysteresis_quantize(latents, hysteresis)
    return bits_to_index(codes), latents * codes


def load_tokens(cache_dir: str, episode_id: str) -> np.ndarray:
    """int32 [T, h, w] tokens of one cached episode."""
    with np.load(episode_path(cache_dir, episode_id)) as data:
        return data["tokens"]


def frame_margins(model: FrameTokenizer, params: PyTree, frames: jax.Array,
                  tokens: jax.Array, reference: jax.Array | None = None) -> jax.Array:
    """Bit margins float32 [B, h, w, K] of `tokens` [B, h, w] for the frames they stand for
    [B, H, W, 3] (uint8 or [0, 1]): the frames' latents times the tokens' code signs, as
    `encode_padded` stores them. For a generated frame, `frames` is its decoded image.
    `reference`: the episode-first frames (reference-conditioned tokenizers). Jit-able."""
    latents = api.encode_latents(params, frames, model=model, reference=reference)
    return latents * index_to_bits(tokens, model.num_bits)


def generated_margins(model: FrameTokenizer, params: PyTree, tokens: jax.Array,
                      reference: jax.Array | None = None) -> jax.Array:
    """Bit margins [B, h, w, K] of generated tokens [B, h, w]: those of their decoded frame,
    rounded to uint8 as the world-model env shows it (a generated frame has no encoder latent
    of its own). Jit-able."""
    frames = api.to_uint8(api.decode(params, tokens, model=model, reference=reference))
    return frame_margins(model, params, frames, tokens, reference)


_generated_margins_jit = jax.jit(generated_margins, static_argnums=0)
