"""Frozen instruction encoders behind one small interface, looked up in `TEXT_ENCODERS`.

The world model cross-attends to `TextFeatures.tokens` (masked by `.mask`); `.pooled` is a single
vector per instruction. RoboScape-R uses T5; no T5 weights exist offline here, so MiniLM-L6 is the
one implementation. To add T5: write `make_t5_encoder(max_length) -> TextEncoder` in a sibling
module `t5.py` (same pattern as `minilm.py`) and replace the "t5" entry below.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

import chex
import jax
import jax.numpy as jnp

from roboscape_jax.text import minilm

if TYPE_CHECKING:
    from tokenizers import Tokenizer

LENGTH_BUCKET = 8  # the forward pass is trimmed to a multiple of this many tokens


class TextFeatures(NamedTuple):
    """Encoder output for B instructions padded to L tokens of width D."""

    tokens: jax.Array  # [B, L, D] float32, zero at padding
    mask: jax.Array  # [B, L] bool, True at real tokens
    pooled: jax.Array  # [B, D] float32 sentence embedding


class TextEncoder(Protocol):
    """Anything that maps a list of instructions to `TextFeatures`; frozen (no trainable params)."""

    dim: int
    max_length: int

    def encode(self, texts: list[str]) -> TextFeatures: ...


@dataclasses.dataclass(frozen=True, eq=False)
class MiniLMEncoder:
    """all-MiniLM-L6-v2; `pooled` is its unit-norm sentence-transformers embedding."""

    params: minilm.Params
    tokenizer: "Tokenizer"
    max_length: int = minilm.DEFAULT_MAX_LENGTH
    dim: int = minilm.HIDDEN

    def encode(self, texts: list[str]) -> TextFeatures:
        """Tokenize on the host, run the cached jitted forward, return [B, max_length, D] features.

        The forward runs only on the first `used` positions (longest instruction rounded up to a
        multiple of LENGTH_BUCKET): padded keys are masked out, so real tokens are unchanged and
        typical short instructions cost about half. Compiles once per (batch size, bucket).
        """
        if not texts:
            raise ValueError("encode() needs at least one text")
        ids, mask, type_ids = minilm.tokenize(self.tokenizer, texts)
        used = min(self.max_length, -(-int(mask.sum(1).max()) // LENGTH_BUCKET) * LENGTH_BUCKET)
        tokens, pooled = minilm.encode_ids(
            self.params, ids[:, :used], mask[:, :used], type_ids[:, :used]
        )
        tokens = jnp.pad(tokens, ((0, 0), (0, self.max_length - used), (0, 0)))
        chex.assert_shape(tokens, (len(texts), self.max_length, self.dim))
        return TextFeatures(tokens=tokens, mask=jnp.asarray(mask, bool), pooled=pooled)


@functools.lru_cache(maxsize=1)
def _packaged_minilm_params() -> minilm.Params:
    return minilm.load_params()


@functools.lru_cache(maxsize=4)
def make_minilm_encoder(max_length: int = minilm.DEFAULT_MAX_LENGTH) -> MiniLMEncoder:
    """Loads the packaged weights once per process (cached); raises FileNotFoundError if absent."""
    return MiniLMEncoder(
        params=_packaged_minilm_params(),
        tokenizer=minilm.load_tokenizer(max_length=max_length),
        max_length=max_length,
    )


def make_t5_encoder(max_length: int = minilm.DEFAULT_MAX_LENGTH) -> TextEncoder:
    """Placeholder for the paper's T5 encoder: register the real one here when weights exist."""
    raise NotImplementedError(
        "No T5 weights exist offline in this environment; use text encoder 'minilm-l6' "
        "(see roboscape_jax/text/encoder.py for how to register a T5 encoder)."
    )


TEXT_ENCODERS: dict[str, Callable[..., TextEncoder]] = {
    "minilm-l6": make_minilm_encoder,
    "t5": make_t5_encoder,  # the paper's choice; unavailable offline here
}


def make_text_encoder(name: str, max_length: int = minilm.DEFAULT_MAX_LENGTH) -> TextEncoder:
    """Builds the encoder registered under `name` (a key of TEXT_ENCODERS)."""
    if name not in TEXT_ENCODERS:
        raise KeyError(f"Unknown text encoder {name!r}; known: {sorted(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[name](max_length=max_length)
