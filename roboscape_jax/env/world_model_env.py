"""The action world model as a functional RL environment (RoboScape-R section 3.2, Eq. 9).

  env = WorldModelEnv(tokenizer, action_model, EnvConfig(max_steps=100))
  params = env.make_params(tokenizer_params, model_params, load_lpips_params(), scenes)
  obs, state = env.reset(key, params)
  obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)
  step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))  # N scenes, one program

The gymnax 1.0 API: every function is pure and single-scene, all weights live in `EnvParams`
(none on `self`, so jitting with the env closed over bakes in no constants), shapes are static.
A step predicts the next frame's tokens and done with MaskGIT (`sampling.predict_next_frame`),
decodes them, and scores the frame against the scene's goal (`rewards.py`), or, with
reward="embedding" | "proxy", pays a baseline head fit to the simulator's rule reward
(`reward_baselines.py`: the paper's iVideoGPT- and DiWA-style baselines). It terminates when
done > tau_done, truncates after `max_steps`, and `step` auto-resets to a random scene (the
pre-reset observation is `info["final_observation"]`); `step_env` does not reset.

Observation, a dict (`observation.policy_observation`; the simulator adapter,
`observation.ObservationAdapter`, builds the same one from real frames):
  frame        uint8 [H, W, 3] the decoded frame, third view over wrist (reset: the initial
               frame passed through the tokenizer, so the policy always sees decoded images)
  instruction  float32 [E] the instruction's unit-norm sentence embedding (entries in [-1, 1])
  gripper      float32 [1] in [-1, 1], the gripper opening integrated from the commands
               (`integrate_gripper`), -1 closed, +1 open

Bad actions, inside jit (no error can be raised there): NaN entries are replaced by 0 (no motion,
gripper command 0) and `info["nan_action"]` is True; entries outside [-1, 1] (inf included) are
counted in `info["clipped_action_count"]` and brought into range as the simulator's controller does
(`executed_action`: position and gripper clipped, rotation scaled to norm <= 1). The Gymnasium
wrappers raise on NaN.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from roboscape_jax.env.observation import integrate_gripper, policy_observation
from roboscape_jax.env.reward_baselines import RewardHead, pooled_frame_features
from roboscape_jax.env.rewards import VIEWS, dense_reward, sparse_reward
from roboscape_jax.env.scenes import Scenes, check_scenes
from roboscape_jax.tokenizer.api import decode, encode, reference_or_none, to_uint8
from roboscape_jax.tokenizer.model import FrameTokenizer
from roboscape_jax.tokenizer.tokenize import frame_margins
from roboscape_jax.types import PRNGKey, PyTree
from roboscape_jax.utils.config import dataclass_from_config
from roboscape_jax.world_model.margins import MarginCalibration
from roboscape_jax.world_model.model import WorldModel, last_frame_outputs
from roboscape_jax.world_model.sampling import (
    generated_flags,
    initial_window,
    model_margins,
    predict_next_frame,
    push_frame,
)

REWARDS = ("world_model", "embedding", "proxy")
# "similarity": Eq. (5), 1 - LPIPS to the goal paid every step (the paper); "progress": its change
# since the previous frame (potential-based shaping, Ng et al. 1999), whose sum over an episode is
# the final frame's similarity minus the first's, so a long episode earns no more than a short one.
DENSE_REWARDS = ("similarity", "progress")
Obs = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Static settings; defaults are the authors' environment (2 greedy MaskGIT steps, c = 10,
    tau = 0.9)."""

    max_steps: int = 100  # truncation; `tiny` expert episodes last about 77 steps
    tau_done: float = 0.9  # terminate when done > tau_done
    tau_sparse: float = 0.9  # sparse reward when done >= tau_sparse
    sparse_bonus: float = 10.0  # c of Eq. (8)
    num_maskgit_steps: int = 2
    temperature: float = 0.0  # 0: greedy, the key does not change the frame
    done_pass: bool = False  # True: read done from one extra pass over the finished frame
    copy_penalty: float = 0.0  # decode-time bias toward change (`sampling.copy_penalised`)
    reward: str = "world_model"  # one of REWARDS
    reward_views: str = "both"  # one of rewards.VIEWS: what the dense term looks at
    dense_reward: str = "similarity"  # one of DENSE_REWARDS (reward="world_model")
    gripper_rate: float = 0.5  # opening change per step: the planner's 4-step open/close
    initial_gripper: float = 1.0  # open

    def __post_init__(self):
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {self.reward!r}")
        if self.dense_reward not in DENSE_REWARDS:
            raise ValueError(f"dense_reward must be one of {DENSE_REWARDS}, got "
                             f"{self.dense_reward!r}")
        if self.reward_views not in VIEWS:
            raise ValueError(f"reward_views must be one of {VIEWS}, got {self.reward_views!r}")
        if self.max_steps < 1 or self.num_maskgit_steps < 1:
            raise ValueError("max_steps and num_maskgit_steps must be positive")

    @classmethod
    def from_config(cls, config: "EnvConfig | Mapping[str, Any]") -> "EnvConfig":
        """Accepts an EnvConfig, a dict or an ml_collections ConfigDict section."""
        return dataclass_from_config(cls, config, "world-model env")


@struct.dataclass
class EnvParams:
    """Everything a step reads that is not static: weights and scenes."""

    tokenizer: PyTree
    model: PyTree  # the action world model's params
    lpips: PyTree  # AlexNet LPIPS (`tokenizer.losses.load_lpips_params`)
    scenes: Scenes
    initial_tokens: jax.Array  # int32 [N, h, w] each scene's first frame, tokenized
    initial_obs_frame: jax.Array  # uint8 [N, H, W, 3] the same, decoded
    # A fitted baseline reward head (`reward_baselines`), for reward="embedding" | "proxy".
    reward_head: RewardHead | None = None
    # float32 [N, h, w, K] the first frames' bit margins (world models with `margin_inputs`)
    initial_margins: jax.Array | None = None
    # float32 [N] 1 - LPIPS(decoded first frame, goal): where dense_reward="progress" starts
    initial_similarity: jax.Array | None = None
    # World models with `margin_inputs`: a generated frame's bit margins read from the model's
    # own bit probabilities through this calibration (`world_model/margins.py`; no encoder pass
    # per step), or for a model with a `latent_head` from its predicted latent (the calibration
    # then only says "the model's own"); None: those of its decoded image, re-encoded.
    margin_calibration: MarginCalibration | None = None


@struct.dataclass
class EnvState:
    """One scene's episode: the model's context window and what the observation integrates."""

    tokens: jax.Array  # int32 [C, h, w] the C most recent frames, oldest first
    actions: jax.Array  # float32 [C, A] the action that led into each of them
    gripper: jax.Array  # float32 [] opening in [-1, 1]
    scene: jax.Array  # int32 [] index into EnvParams.scenes
    time: jax.Array  # int32 [] steps taken this episode
    # float32 [C, h, w, K] the window's bit margins (world models with `margin_inputs`): the
    # first frame's from its real image, a generated frame's from its decoded image
    margins: jax.Array | None = None
    # float32 [] the latest frame's 1 - LPIPS to the goal (dense_reward="progress" only)
    similarity: jax.Array | None = None


def executed_action(action: jax.Array) -> jax.Array:
    """What Panda's normalised `pd_ee_delta_pose` controller executes for a 7-D action [..., 7]
    (delta xyz, delta Euler xyz, gripper): position and gripper clipped to [-1, 1], the rotation
    scaled to norm <= 1 (the controller's own rule, not a per-entry clip). The world model learns
    from these (the dataset's labels keep the raw rotation delta) and the env feeds it these."""
    action = jnp.asarray(action, jnp.float32)
    if action.shape[-1] != 7:
        raise ValueError(f"expected 7-D delta-EE actions, got shape {action.shape}")
    rotation = jnp.clip(action[..., 3:6], -1e6, 1e6)  # inf -> finite, so the norm is finite
    norm = jnp.linalg.norm(rotation, axis=-1, keepdims=True)
    return jnp.concatenate([jnp.clip(action[..., :3], -1, 1), rotation / jnp.maximum(norm, 1.0),
                            jnp.clip(action[..., 6:], -1, 1)], axis=-1)


def sanitize_action(action: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """NaN -> 0, then `executed_action` (7-D) or a clip to [-1, 1] (other widths).
    action [A] -> (action, number of entries outside [-1, 1] int32 [], any NaN bool [])."""
    nan = jnp.isnan(action)
    action = jnp.where(nan, 0.0, action)
    clipped = jnp.sum(jnp.abs(action) > 1.0).astype(jnp.int32)
    action = executed_action(action) if action.shape[-1] == 7 else jnp.clip(action, -1.0, 1.0)
    return action, clipped, jnp.any(nan)


@dataclasses.dataclass(frozen=True)
class WorldModelEnv:
    """Stateless env over a tokenizer and an action world model (hashable: usable as static)."""

    tokenizer: FrameTokenizer
    model: WorldModel
    config: EnvConfig = EnvConfig()

    def __post_init__(self):
        c = self.model.config
        if c.control != "action":
            raise ValueError(f"the env needs the action world model, got control={c.control!r}")
        if c.num_bits != self.tokenizer.num_bits:
            raise ValueError(f"world model has {c.num_bits}-bit tokens, tokenizer "
                             f"{self.tokenizer.num_bits}")

    @property
    def name(self) -> str:
        return "RoboScapeWorldModel-v0"

    @property
    def num_actions(self) -> int:
        return self.model.config.action_dim

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        c, f = self.model.config, self.tokenizer.downsample_factor
        return (c.grid_height * f, c.grid_width * f, 3)

    def make_params(self, tokenizer_params: PyTree, model_params: PyTree, lpips_params: PyTree,
                    scenes: Scenes, reward_head: RewardHead | None = None,
                    margin_calibration: MarginCalibration | None = None) -> EnvParams:
        """Checks the scenes (ValueError naming the field) and tokenizes their first frames.
        `reward_head`: the fitted baseline head the "embedding" / "proxy" rewards need;
        `margin_calibration`: see `EnvParams` (ignored by models that read no margins)."""
        check_scenes(scenes, self.frame_shape, self.model.config.text_dim)
        if (self.config.reward != "world_model") != (reward_head is not None):
            raise ValueError(f"reward={self.config.reward!r} takes "
                             f"{'a' if self.config.reward != 'world_model' else 'no'} fitted "
                             "reward head (reward_baselines.load_reward_head)")
        if reward_head is not None:
            width = (self.model.config.width if self.config.reward == "embedding"
                     else pooled_frame_features(jnp.zeros((1, *self.frame_shape), jnp.uint8)
                                                ).shape[-1])
            if reward_head.mean.shape != (width,):
                raise ValueError(f"the {self.config.reward} reward head reads "
                                 f"{reward_head.mean.shape[0]} features; this env gives {width}")
        reference = reference_or_none(self.tokenizer, scenes.initial_frame)
        tokens = encode(tokenizer_params, scenes.initial_frame, model=self.tokenizer,
                        reference=reference)
        frame = to_uint8(decode(tokenizer_params, tokens, model=self.tokenizer,
                                reference=reference))
        margins = (frame_margins(self.tokenizer, tokenizer_params, scenes.initial_frame, tokens,
                                 reference) if self.model.config.margin_inputs else None)
        similarity = (dense_reward(lpips_params, frame, scenes.goal_frame,
                                   self.config.reward_views) if self._tracks_similarity else None)
        return EnvParams(tokenizer_params, model_params, lpips_params, scenes, tokens, frame,
                         reward_head, margins, similarity,
                         margin_calibration if margins is not None else None)

    @property
    def _tracks_similarity(self) -> bool:
        """Whether the state carries the latest frame's similarity to the goal."""
        return self.config.reward == "world_model" and self.config.dense_reward == "progress"

    def observation_space(self, params: EnvParams) -> spaces.Dict:
        e = params.scenes.instruction.shape[-1]
        return spaces.Dict({"frame": spaces.Box(0, 255, self.frame_shape, jnp.uint8),
                            "instruction": spaces.Box(-1.0, 1.0, (e,), jnp.float32),
                            "gripper": spaces.Box(-1.0, 1.0, (1,), jnp.float32)})

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        """7-D normalised pd_ee_delta_pose: delta xyz, delta Euler xyz, gripper +-1."""
        return spaces.Box(-1.0, 1.0, (self.num_actions,), jnp.float32)

    def _observation(self, frame: jax.Array, state: EnvState, params: EnvParams) -> Obs:
        chex.assert_shape(frame, self.frame_shape)
        return policy_observation(frame, params.scenes.instruction[state.scene], state.gripper)

    def reset_to(self, scene: jax.Array, params: EnvParams) -> tuple[Obs, EnvState]:
        """Starts an episode in scene `scene` (int []): the window holds copies of its first frame
        with zero actions (`sampling.initial_window`)."""
        chex.assert_shape(scene, ())
        first_margins = (None if params.initial_margins is None
                         else params.initial_margins[scene][None])
        window = initial_window(params.initial_tokens[scene][None], self.model, first_margins)
        state = EnvState(window.tokens[0], window.actions[0],
                         jnp.asarray(self.config.initial_gripper, jnp.float32),
                         jnp.asarray(scene, jnp.int32), jnp.zeros((), jnp.int32),
                         None if window.margins is None else window.margins[0],
                         params.initial_similarity[scene] if self._tracks_similarity else None)
        return self._observation(params.initial_obs_frame[scene], state, params), state

    def reset(self, key: PRNGKey, params: EnvParams) -> tuple[Obs, EnvState]:
        """Starts an episode in a scene drawn uniformly by `key`."""
        scene = jax.random.randint(key, (), 0, params.scenes.num_scenes)
        return self.reset_to(scene, params)

    def step_env(self, key: PRNGKey, state: EnvState, action: jax.Array, params: EnvParams):
        """One step without auto-reset; returns (obs, state, reward, terminated, truncated, info).
        action: float [A] (see the module docstring for NaN and out-of-range entries)."""
        c, m = self.config, self.model.config
        chex.assert_shape(action, (self.num_actions,))
        chex.assert_shape(state.tokens, (m.num_frames - 1, m.grid_height, m.grid_width))
        action, num_clipped, nan_action = sanitize_action(action.astype(jnp.float32))
        control = jnp.concatenate([state.actions, action[None]])[None]  # [1, C + 1, A]
        extra = {"copy_penalty": c.copy_penalty} if c.copy_penalty else {}
        window_margins = None if state.margins is None else state.margins[None]
        window_generated = self._generated_context(state)
        calibration = params.margin_calibration if state.margins is not None else None
        if calibration is not None:
            extra["margin_calibration"] = calibration
        tokens, done, *predicted_margins = predict_next_frame(
            params.model, self.model, state.tokens[None], control, key,
            num_steps=c.num_maskgit_steps, temperature=c.temperature, done_pass=c.done_pass,
            margins=window_margins, margins_generated=window_generated,
            **extra)  # [1, h, w], [1] (and the new frame's margins [1, h, w, K])
        # a reference-conditioned tokenizer decodes given the scene's first frame
        reference = reference_or_none(self.tokenizer,
                                      params.scenes.initial_frame[state.scene][None])
        frame = to_uint8(decode(params.tokenizer, tokens, model=self.tokenizer,
                                reference=reference))  # [1, H, W, 3]
        margins = None
        if state.margins is not None:
            new = (predicted_margins[0] if calibration is not None else
                   frame_margins(self.tokenizer, params.tokenizer, frame, tokens, reference))
            margins = push_frame(window_margins, new)[0]
        similarity = None
        if c.reward == "world_model":  # Eq. (9): LPIPS to the goal + the done bonus
            goal = params.scenes.goal_frame[state.scene][None]
            dense = dense_reward(params.lpips, frame, goal, c.reward_views)[0]
            if self._tracks_similarity:
                similarity, dense = dense, dense - state.similarity
            sparse = sparse_reward(done, c.sparse_bonus, c.tau_sparse)[0]
        else:  # a learned baseline head alone, as the paper's baselines are paid
            dense = self._baseline_reward(tokens, frame, control, state, params)
            sparse = jnp.zeros((), jnp.float32)
        state = EnvState(push_frame(state.tokens[None], tokens)[0],
                         push_frame(state.actions[None], action[None])[0],
                         integrate_gripper(state.gripper, action[-1], c.gripper_rate),
                         state.scene, state.time + 1, margins, similarity)
        info = {"dense": dense, "sparse": sparse, "done_prob": done[0],
                "clipped_action_count": num_clipped, "nan_action": nan_action,
                "goal_reached": params.scenes.goal_reached[state.scene], "scene": state.scene}
        return (self._observation(frame[0], state, params), state, dense + sparse,
                done[0] > c.tau_done, state.time >= c.max_steps, info)

    def _generated_context(self, state: EnvState) -> jax.Array | None:
        """bool [1, C]: the context frames this episode generated (the last `time` of them),
        whose margins are their decoded image's; None for models that do not read it."""
        if not self.model.config.generated_margin_flag:
            return None
        num_context = state.tokens.shape[0]
        return (jnp.arange(num_context) >= num_context - state.time)[None]

    def _baseline_reward(self, tokens: jax.Array, frame: jax.Array, control: jax.Array,
                         state: EnvState, params: EnvParams) -> jax.Array:
        """[]: the fitted head on the new frame's features: the action model's pooled features
        of the window ending in it (embedding, one more model pass) or its pooled pixels (proxy)."""
        if self.config.reward == "proxy":
            features = pooled_frame_features(frame)
        else:
            window = jnp.concatenate([state.tokens[None], tokens[:, None]], axis=1)
            margins = model_margins(self.model.config,
                                    None if state.margins is None else state.margins[None])
            _, features = last_frame_outputs(
                self.model, params.model, window, control, None, margins,
                generated_flags(self.model.config, state.tokens[None],
                                self._generated_context(state)))
        return params.reward_head.predict(features)[0]

    def step(self, key: PRNGKey, state: EnvState, action: jax.Array, params: EnvParams):
        """`step_env`, then a reset (random scene) where the episode ended, gymnax style."""
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward, terminated, truncated, info = self.step_env(
            key_step, state, action, params)
        obs_re, state_re = self.reset(key_reset, params)
        done = jnp.logical_or(terminated, truncated)
        state = jax.tree.map(lambda r, s: jnp.where(done, r, s), state_re, state_st)
        obs = jax.tree.map(lambda r, s: jnp.where(done, r, s), obs_re, obs_st)
        return obs, state, reward, terminated, truncated, {**info, "final_observation": obs_st}
