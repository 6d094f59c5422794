"""The scenes a world-model env starts from, and their goal frames (RoboScape-R Eq. 6).

  scenes = make_scenes(tokenizer, tokenizer_params, text_model, text_params, frames,
                       instruction, text_tokens, text_mask, key, horizon=32)

The goal of a scene is the first frame of the text world model's golden trajectory with
done >= tau, decoded by the tokenizer; if no frame reaches tau within the horizon it is the last
frame and `goal_reached` is False. It is computed once per scene set, outside the env's step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from roboscape_jax.tokenizer.api import decode, encode, reference_or_none, to_uint8
from roboscape_jax.tokenizer.model import FrameTokenizer
from roboscape_jax.tokenizer.tokenize import frame_margins
from roboscape_jax.types import PRNGKey, PyTree
from roboscape_jax.world_model.model import WorldModel
from roboscape_jax.world_model.sampling import golden_trajectory


@struct.dataclass
class Scenes:
    """N scenes; frames are both views stacked, third view over wrist."""

    initial_frame: jax.Array  # uint8 [N, H, W, 3] the first camera frame
    instruction: jax.Array  # float32 [N, E] unit-norm sentence embedding (MiniLM pooled)
    goal_frame: jax.Array  # uint8 [N, H, W, 3] the golden trajectory's goal, decoded
    goal_reached: jax.Array  # bool [N] whether the golden trajectory reached done >= tau

    @property
    def num_scenes(self) -> int:
        return self.initial_frame.shape[0]


def check_scenes(scenes: Scenes, frame_shape: tuple[int, int, int], instruction_dim: int) -> None:
    """Raises ValueError naming the field whose shape or dtype is wrong."""
    n = np.shape(scenes.initial_frame)[0] if np.ndim(scenes.initial_frame) else 0
    expected = {
        "initial_frame": ((n, *frame_shape), "uint8"),
        "instruction": ((n, instruction_dim), "float"),
        "goal_frame": ((n, *frame_shape), "uint8"),
        "goal_reached": ((n,), "bool"),
    }
    if n < 1:
        raise ValueError(f"scenes need at least one scene: initial_frame must be "
                         f"[N, {', '.join(map(str, frame_shape))}], got shape "
                         f"{np.shape(scenes.initial_frame)}")
    for name, (shape, kind) in expected.items():
        value = getattr(scenes, name)
        dtype = np.result_type(value)
        if np.shape(value) != shape:
            raise ValueError(f"scenes.{name} must have shape {shape} for {n} scenes, got "
                             f"{np.shape(value)}")
        if kind == "float" and not np.issubdtype(dtype, np.floating) or \
                kind != "float" and dtype != np.dtype(kind):
            raise ValueError(f"scenes.{name} must be {kind}, got {dtype}")
    if not isinstance(scenes.instruction, jax.core.Tracer):
        values = np.asarray(scenes.instruction)
        if not np.isfinite(values).all() or np.abs(values).max() > 1.0 + 1e-5:
            raise ValueError("scenes.instruction must be finite and in [-1, 1] (a unit-norm "
                             "sentence embedding)")


def make_scenes(tokenizer: FrameTokenizer, tokenizer_params: PyTree, text_model: WorldModel,
                text_params: PyTree, initial_frame, instruction, text_tokens, text_mask,
                key: PRNGKey, *, horizon: int = 32, tau: float = 0.9, num_steps: int = 2,
                temperature: float = 0.0) -> Scenes:
    """Scenes with their goal frames from the text model's golden trajectory (Eq. 6).

    Args:
      initial_frame: uint8 [N, H, W, 3].
      instruction: float [N, E] sentence embeddings (what the policy sees).
      text_tokens, text_mask: [N, L, E] per-token features and [N, L] mask (what the text
        world model cross-attends to; `text.encoder.TextFeatures.tokens` / `.mask`).
      horizon: the most env steps the golden trajectory covers; tau: its done threshold.
    """
    reference = reference_or_none(tokenizer, jnp.asarray(initial_frame, jnp.uint8))
    first = encode(tokenizer_params, initial_frame, model=tokenizer, reference=reference)
    margin_kw = {}
    if text_model.config.margin_inputs:  # generated frames get theirs from the tokenizer
        margin_kw = dict(first_margins=frame_margins(tokenizer, tokenizer_params, initial_frame,
                                                     first, reference),
                         tokenizer=tokenizer, tokenizer_params=tokenizer_params,
                         reference=reference)
    goal = golden_trajectory(text_params, text_model, first, jnp.asarray(text_tokens, jnp.float32),
                             jnp.asarray(text_mask, bool), key, horizon=horizon, tau=tau,
                             num_steps=num_steps, temperature=temperature, **margin_kw)
    goal_frame = to_uint8(decode(tokenizer_params, goal.goal_tokens, model=tokenizer,
                                 reference=reference))
    return Scenes(jnp.asarray(initial_frame, jnp.uint8), jnp.asarray(instruction, jnp.float32),
                  goal_frame, goal.reached)
