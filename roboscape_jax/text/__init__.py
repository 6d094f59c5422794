"""Frozen instruction encoders (MiniLM-L6 offline; T5 slot in `encoder.TEXT_ENCODERS`)."""

from roboscape_jax.text.encoder import (
    TEXT_ENCODERS,
    MiniLMEncoder,
    TextEncoder,
    TextFeatures,
    make_text_encoder,
)

__all__ = ["TEXT_ENCODERS", "MiniLMEncoder", "TextEncoder", "TextFeatures", "make_text_encoder"]
