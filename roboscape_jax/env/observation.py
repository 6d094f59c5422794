"""The policy's observation, defined once for the world-model env, the simulator and the dataset.

  adapter = ObservationAdapter(tokenizer, gripper_rate=0.5, initial_gripper=1.0)
  obs, state = adapter.reset(tokenizer_params, frame, instruction)    # a real rendered frame
  obs, state = adapter.step(tokenizer_params, state, frame, action)   # after the action ran

A policy trained inside the world model sees decoded frames; one evaluated on real renders would
see another kind of image (DESIGN-NOTES, "One observation space for the policy"). So every real
frame goes through the same tokenizer, encode -> decode -> uint8 (`observation_frames`), that the
world-model env uses for its reset frame and its predicted frames, and the gripper opening is the
same proxy integrated from the commands (`integrate_gripper`). The dict
(`policy_observation`) is what `WorldModelEnv` returns:
  frame        uint8 [H, W, 3]  third view over wrist view, decoded
  instruction  float32 [E]      unit-norm sentence embedding
  gripper      float32 [1]      in [-1, 1]
`tokenizer=None` passes raw frames (a policy trained on raw dataset frames).
"""

from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from roboscape_jax.tokenizer.api import (
    check_frames,
    check_reference,
    decode,
    encode,
    reference_or_none,
    to_uint8,
)
from roboscape_jax.tokenizer.model import FrameTokenizer
from roboscape_jax.types import PyTree

Obs = dict[str, jax.Array]


def integrate_gripper(gripper: jax.Array, command: jax.Array, rate: float) -> jax.Array:
    """g_{t+1} = g_t + clip(u_t - g_t, -rate, rate): the opening follows the +-1 command u_t at
    `rate` per step, a proxy both the world-model env and the simulator adapter can compute."""
    return gripper + jnp.clip(command - gripper, -rate, rate)


def policy_observation(frame: jax.Array, instruction: jax.Array, gripper: jax.Array) -> Obs:
    """The observation dict of one step. frame uint8 [H, W, 3]; instruction [E]; gripper [] or
    [1]. Returns {frame uint8 [H, W, 3], instruction float32 [E], gripper float32 [1]}."""
    chex.assert_rank(frame, 3)
    chex.assert_rank(instruction, 1)
    if frame.dtype != jnp.uint8:
        raise ValueError(f"observation frames must be uint8, got {frame.dtype}")
    return {"frame": frame, "instruction": jnp.asarray(instruction, jnp.float32),
            "gripper": jnp.reshape(jnp.asarray(gripper, jnp.float32), (1,))}


@functools.partial(jax.jit, static_argnames="tokenizer")
def _tokenized(params: PyTree, frames: jax.Array, tokenizer: FrameTokenizer,
               reference: jax.Array | None) -> jax.Array:
    tokens = encode(params, frames, model=tokenizer, reference=reference)
    return to_uint8(decode(params, tokens, model=tokenizer, reference=reference))


def observation_frames(tokenizer: FrameTokenizer | None, params: PyTree, frames,
                       reference=None) -> jax.Array:
    """uint8 [B, H, W, 3] real frames -> the frames the policy sees: to_uint8(decode(encode(x)))
    (the world-model env's reset frame, `WorldModelEnv.make_params`), or `frames` unchanged when
    `tokenizer` is None. `reference` [B, H, W, 3]: each frame's episode-first frame, which a
    reference-conditioned tokenizer needs (others ignore it)."""
    if tokenizer is None:
        if np.result_type(frames) != np.uint8:
            raise ValueError(f"raw observation frames must be uint8 [0, 255], got dtype "
                             f"{np.result_type(frames)}")
        return jnp.asarray(frames)
    check_frames(frames, tokenizer)
    reference = reference_or_none(tokenizer, None if reference is None else jnp.asarray(reference))
    check_reference(reference, tokenizer, np.shape(frames))
    return _tokenized(params, jnp.asarray(frames), tokenizer, reference)


@struct.dataclass
class AdapterState:
    """What the observation integrates over an episode."""

    instruction: jax.Array  # float32 [E]
    gripper: jax.Array  # float32 [] opening in [-1, 1]
    reference: jax.Array | None = None  # uint8 [H, W, 3] the episode's first frame


@dataclasses.dataclass(frozen=True)
class ObservationAdapter:
    """Real frames -> policy observations, as the world-model env builds them (hashable)."""

    tokenizer: FrameTokenizer | None  # None: raw frames
    gripper_rate: float = 0.5  # EnvConfig.gripper_rate
    initial_gripper: float = 1.0  # EnvConfig.initial_gripper

    def observe(self, params: PyTree, state: AdapterState, frame) -> Obs:
        """frame uint8 [H, W, 3] (third view over wrist) -> the observation dict."""
        reference = None if state.reference is None else state.reference[None]
        seen = observation_frames(self.tokenizer, params, jnp.asarray(frame)[None],
                                  reference)[0]
        return policy_observation(seen, state.instruction, state.gripper)

    def reset(self, params: PyTree, frame, instruction) -> tuple[Obs, AdapterState]:
        """`frame`, the episode's first, is also the reference of every later frame."""
        state = AdapterState(jnp.asarray(instruction, jnp.float32),
                             jnp.asarray(self.initial_gripper, jnp.float32),
                             jnp.asarray(frame, jnp.uint8))
        return self.observe(params, state, frame), state

    def step(self, params: PyTree, state: AdapterState, frame, action) -> tuple[Obs, AdapterState]:
        """The observation after `action` [A] (its last entry the gripper command) led to
        `frame`; the command is clipped to [-1, 1] as the env clips it."""
        command = jnp.clip(jnp.asarray(action, jnp.float32)[-1], -1.0, 1.0)
        state = state.replace(gripper=integrate_gripper(state.gripper, command,
                                                        self.gripper_rate))
        return self.observe(params, state, frame), state
