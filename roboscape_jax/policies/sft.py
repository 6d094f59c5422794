"""Supervised fine-tuning (behaviour cloning) of an image policy (either family) on expert episodes.

  data = {"train": make_sft_data(train_episodes, ...), "val": make_sft_data(val_episodes, ...)}
  state = train_and_evaluate(config, workdir, data)   # config: the sft section
  policy, params = restore_params(workdir, config.model)   # PPO's initial policy

Loss: L = -1/B sum_b log pi(a_b | o_b), the Gaussian log-likelihood of the recorded 7-D actions
(RoboScape-R section 4.3: each policy is first fine-tuned on the expert data). The observation of
step t is built as the world-model env builds it (`env.world_model_env`): the two-view frame (raw,
or passed through the tokenizer, `observation_frames`), the episode's instruction embedding, and
the gripper opening g_t integrated from the recorded gripper commands by `integrate_gripper`. The
batch of step s is a fixed function of (seed, s), so a killed run resumes with the same numbers
(`utils.training.train_loop`); the held-out loss is scored on fixed `val` samples.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Callable, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from roboscape_jax.env.observation import integrate_gripper, observation_frames
from roboscape_jax.policies.augment import random_shift
from roboscape_jax.policies.distributions import DiagGaussian
from roboscape_jax.policies.families import (
    FIELDS_ADDED_LATER,
    check_family,
    create_policy,
    policy_section,
)
from roboscape_jax.policies.image import dummy_observation
from roboscape_jax.tokenizer.model import FrameTokenizer
from roboscape_jax.tokenizer.train import check_resume_compatible, make_optimizer, model_fingerprint
from roboscape_jax.types import PyTree
from roboscape_jax.utils.checkpoint import Checkpointer
from roboscape_jax.utils.files import write_json
from roboscape_jax.utils.training import TrainState, create_train_state, make_train_step, train_loop

OBSERVATION_FRAMES = ("raw", "tokenized")
Batch = dict[str, np.ndarray]


class SFTEpisode(NamedTuple):
    """One expert episode as recorded."""

    frames: np.ndarray  # uint8 [T, H, W, 3] third view over wrist
    actions: np.ndarray  # float32 [T, A]; actions[t] is taken at frame t
    instruction: np.ndarray  # float32 [E] unit-norm instruction embedding


class SFTData(NamedTuple):
    """Every step of a set of episodes, flat over steps S."""

    frames: np.ndarray  # uint8 [S, H, W, 3]
    gripper: np.ndarray  # float32 [S, 1] opening before the step's action
    episode: np.ndarray  # int32 [S] index into `instructions`
    instructions: np.ndarray  # float32 [N_e, E]
    actions: np.ndarray  # float32 [S, A]


@functools.partial(jax.jit, static_argnames=("rate",))
def gripper_states(commands: jax.Array, initial: jax.Array, rate: float) -> jax.Array:
    """g_0 = initial, g_{t+1} = integrate_gripper(g_t, u_t): the opening each frame is seen with.

    commands: [T] recorded gripper commands u_t (action[:, -1]); returns float32 [T] (g_0..g_{T-1}).
    """

    def step(g, u):
        return integrate_gripper(g, u, rate), g

    _, states = jax.lax.scan(step, jnp.asarray(initial, jnp.float32),
                             jnp.asarray(commands, jnp.float32))
    return states


def make_sft_data(episodes: Sequence[SFTEpisode], *, gripper_rate: float,
                  initial_gripper: float) -> SFTData:
    """Flattens episodes into steps with their integrated gripper state (the env's rule)."""
    if not episodes:
        raise ValueError("SFT needs at least one episode")
    gripper = []
    for ep in episodes:  # commands padded to a multiple of 128 steps: a handful of compiles
        commands = np.pad(ep.actions[:, -1], (0, -len(ep.actions) % 128))
        states = gripper_states(commands, initial_gripper, gripper_rate)
        gripper.append(np.asarray(states)[:len(ep.actions)])
    for ep in episodes:
        chex.assert_equal_shape_prefix([ep.frames, ep.actions], 1)
    return SFTData(
        frames=np.concatenate([ep.frames for ep in episodes]).astype(np.uint8),
        gripper=np.concatenate(gripper)[:, None].astype(np.float32),
        episode=np.concatenate([np.full(len(ep.actions), i, np.int32)
                                for i, ep in enumerate(episodes)]),
        instructions=np.stack([ep.instruction for ep in episodes]).astype(np.float32),
        actions=np.concatenate([ep.actions for ep in episodes]).astype(np.float32))


def tokenized_frames(tokenizer: FrameTokenizer, params: PyTree, frames: np.ndarray,
                     batch_size: int = 64, episode: np.ndarray | None = None) -> np.ndarray:
    """uint8 [S, H, W, 3] frames after encode -> decode -> uint8: what the world-model env hands
    the policy (`env.observation.observation_frames`). Runs in batches of exactly `batch_size`
    (the last padded): one compiled program. `episode` int [S] (`SFTData.episode`, episodes
    contiguous): a reference-conditioned tokenizer reads each frame's episode-first frame."""
    n = len(frames)
    pad = lambda x: np.concatenate([x, np.repeat(x[-1:], -n % batch_size, axis=0)])  # noqa: E731
    padded, references = pad(frames), None
    if tokenizer.reference_conditioning:
        if episode is None:
            raise ValueError("a reference-conditioned tokenizer needs each frame's `episode`")
        episode = np.asarray(episode)
        references = pad(frames[np.searchsorted(episode, episode, side="left")])
    out = [np.asarray(observation_frames(
        tokenizer, params, padded[i:i + batch_size],
        None if references is None else references[i:i + batch_size]))
        for i in range(0, len(padded), batch_size)]
    return np.concatenate(out)[:n]


def take(data: SFTData, index: np.ndarray) -> Batch:
    """The samples at `index` [B] as {frame, instruction, gripper, actions}."""
    return {"frame": data.frames[index], "instruction": data.instructions[data.episode[index]],
            "gripper": data.gripper[index], "actions": data.actions[index]}


def make_batch_fn(data: SFTData, *, batch_size: int, seed: int) -> Callable[[int], Batch]:
    """batch_fn(step) -> Batch of `batch_size` steps drawn by a generator seeded by (seed, step)."""

    def batch_fn(step: int) -> Batch:
        rng = np.random.default_rng([seed, step])
        return take(data, np.sort(rng.integers(0, len(data.actions), batch_size)))

    return batch_fn


def bc_loss(dist: DiagGaussian, actions: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L = -mean_b log pi(a_b | o_b). dist [B, A]; actions [B, A]. Returns (L, metrics): the
    negative log-likelihood, the mean squared error of the mean action, the share of gripper
    commands whose sign the mean matches, and the entropy."""
    chex.assert_equal_shape([dist.mean, actions])
    nll = -jnp.mean(dist.log_prob(actions))
    mode = dist.mode()
    metrics = {"nll": nll,
               "action_mse": jnp.mean(jnp.square(mode - actions)),
               "gripper_accuracy": jnp.mean(jnp.sign(mode[:, -1]) == jnp.sign(actions[:, -1])),
               "entropy": jnp.mean(dist.entropy())}
    return nll, metrics


def policy_identity(model_config) -> ml_collections.ConfigDict:
    """{"model": policy_section(model_config)}: what the checkpoint's model fingerprint holds and
    what resuming or restoring checks (`families.policy_section`)."""
    return ml_collections.ConfigDict({"model": policy_section(model_config)})


def check_checkpoint_policy(checkpoint_dir: str, model_config) -> None:
    """Raises ValueError when the newest checkpoint in `checkpoint_dir` (if any) holds another
    policy: another family first, then any field the family reads (`check_resume_compatible`)."""
    if os.path.isdir(checkpoint_dir):
        with Checkpointer(checkpoint_dir) as ckpt:
            meta = ckpt.restore(None)[1] if ckpt.latest_step() is not None else {}
        if "model_config" in meta:
            check_family(meta["model_config"], model_config, checkpoint_dir)
    check_resume_compatible(checkpoint_dir, policy_identity(model_config), FIELDS_ADDED_LATER)


def init_state(config, policy: nn.Module, tx, frame_shape, instruction_dim) -> TrainState:
    rng, rng_init = jax.random.split(jax.random.PRNGKey(config.seed))
    params = jax.jit(policy.init)(rng_init, dummy_observation(frame_shape, instruction_dim, (1,)))
    return create_train_state(params, tx, rng)


def make_eval_fn(policy: nn.Module, data: SFTData, *, num_samples: int, batch_size: int):
    """eval_fn(state) -> mean bc_loss metrics over fixed, evenly spaced samples of `data`."""
    index = np.unique(np.linspace(0, len(data.actions) - 1, num_samples).round().astype(int))
    size = min(batch_size, len(index))
    index = index[:len(index) - len(index) % size]

    @jax.jit
    def metrics_of(params, batch):
        return bc_loss(policy.apply(params, batch)[0], batch["actions"])[1]

    def eval_fn(state: TrainState) -> dict[str, float]:
        rows = [metrics_of(state.params, take(data, index[i:i + size]))
                for i in range(0, len(index), size)]
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    return eval_fn


def train_and_evaluate(config, workdir: str, data: Mapping[str, SFTData]) -> TrainState:
    """Trains to `config.num_steps` on data["train"] (resuming from `workdir`), scoring data["val"]
    every `eval_every_steps`; writes `workdir/eval/metrics.json` at the end."""
    if config.observation_frames not in OBSERVATION_FRAMES:
        raise ValueError(f"observation_frames must be one of {OBSERVATION_FRAMES}, got "
                         f"{config.observation_frames!r}")
    check_checkpoint_policy(os.path.join(workdir, "checkpoints"), config.model)
    policy, tx = create_policy(config.model), make_optimizer(config)
    train = data["train"]
    state = init_state(config, policy, tx, train.frames.shape[1:], train.instructions.shape[-1])

    shift = int(config.get("augment_shift", 0))

    def loss_fn(params, batch, rng):  # rng: the step's key, for the augmentation
        batch = {**batch, "frame": random_shift(rng, batch["frame"], pad=shift)}
        return bc_loss(policy.apply(params, batch)[0], batch["actions"])

    eval_fn = make_eval_fn(policy, data["val"], num_samples=config.eval.num_samples,
                           batch_size=config.eval.batch_size)
    state = train_loop(state, make_train_step(loss_fn, tx),
                       make_batch_fn(train, batch_size=config.input.batch_size, seed=config.seed),
                       workdir=workdir, num_steps=config.num_steps,
                       log_every_steps=config.log_every_steps,
                       checkpoint_every_steps=config.checkpoint_every_steps, desc="sft",
                       eval_fn=eval_fn, eval_every_steps=config.eval_every_steps,
                       progress_every_s=config.get("progress_every_s", 10.0),
                       checkpoint_meta=model_fingerprint(policy_identity(config.model)))
    write_json(os.path.join(workdir, "eval", "metrics.json"),
               {**eval_fn(state), "step": int(state.step)})
    return state


def restore_params(workdir: str, model_config, *, frame_shape=(128, 64, 3),
                   instruction_dim: int = 384) -> tuple[nn.Module, PyTree]:
    """(policy, params) of the newest SFT checkpoint in `workdir`. Raises ValueError when it was
    trained with another `model` config (naming the field) and FileNotFoundError when absent."""
    checkpoint_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(checkpoint_dir):
        raise FileNotFoundError(f"no SFT checkpoints in {workdir}: run experiments/train_sft.py")
    check_checkpoint_policy(checkpoint_dir, model_config)
    policy = create_policy(model_config)
    template = jax.eval_shape(policy.init, jax.random.PRNGKey(0),
                              dummy_observation(frame_shape, instruction_dim, (1,)))
    with Checkpointer(checkpoint_dir) as ckpt:
        raw, _ = ckpt.restore(None)  # raw: the optimizer's state is not needed
    def check(path, t, x):
        if np.shape(x) != t.shape:
            raise ValueError(f"SFT parameter {jax.tree_util.keystr(path)} has shape "
                             f"{np.shape(x)}, the policy expects {t.shape} (frame "
                             f"{frame_shape}, instruction {instruction_dim})")
        return jnp.asarray(x, t.dtype)

    return policy, jax.tree_util.tree_map_with_path(check, template, raw["params"])
