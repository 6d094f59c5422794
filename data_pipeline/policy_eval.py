"""Closed-loop policy episodes in ManiSkill's `RoboScape-v1` with fixed seeds (issue 8).

  scenes = eval_scenes(config.data, seed=config.seed)       # the data's IND and OOD scenes
  specs = eval_schedule(tasks, scenes, episodes_per_task=2, seed=1000)
  env = make_eval_env(image_size=64)
  record, _ = run_episode(env, spec, controller, embedding, max_steps=100)

The env is the recording env of the collector (`pd_ee_delta_pose`, 7-D normalised delta-EE
actions: delta xyz / 0.1 m, delta Euler XYZ / -0.1 rad, gripper +-1; 10 Hz control, 100 Hz
physics; third-view and wrist RGB). The controller sees each step's two-view frame, third view
stacked over wrist view as in the dataset (`dataset.two_view_frames`); it owns the observation
adapter (`roboscape_jax.env.observation`), so this module never imports JAX models.

In-domain scenes are the training data's scenes (`collect.pick_scenes` with the data config and
seed), with episode seeds the collector never drew; out-of-domain scenes are the data's `ood`
scenes (unseen objects and object-container pairs). An episode ends at the first step the task's
success test holds (counted as a success) or after `max_steps`.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from data_pipeline import scenes as sc
from data_pipeline.collect import pick_scenes

SPLITS = ("ind", "ood")


class Controller(Protocol):
    """A policy in the loop: `reset` at an episode's first frame, then `act` on every frame."""

    def reset(self, frame: np.ndarray, instruction: np.ndarray, seed: int) -> None: ...

    def act(self, frame: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class EvalEpisode:
    split: str  # "ind" | "ood"
    task: str
    index: int  # episode number within (split, task)
    scene: sc.Scene
    seed: int

    @property
    def key(self) -> str:
        s = self.scene
        return (f"{self.split}-{self.task}-{self.index:03d}-o{s.object_id:02d}c{s.container_id}"
                f"t{s.table_id}")

    @property
    def instruction(self) -> str:
        return sc.instruction(self.task, self.scene, random.Random(self.seed))


def eval_scenes(data_config, *, seed: int) -> dict[str, list[sc.Scene]]:
    """{"ind", "ood"}: the scenes the collector drew for the pipeline's `data` section."""
    split = sc.make_split(data_config.split_seed)
    objects = tuple(data_config.get("objects", ()))
    ind_count = data_config.get("ind_scenes_per_split") or data_config.scenes_per_split
    counts = {"ind": ind_count, "ood": data_config.scenes_per_split}
    return {name: pick_scenes(split, name, counts[name], seed, objects) for name in SPLITS}


def eval_schedule(tasks: Sequence[str], scenes: dict[str, list[sc.Scene]], *,
                  episodes_per_task: int, seed: int) -> list[EvalEpisode]:
    """Every evaluation episode: per split and task, `episodes_per_task` episodes cycling over the
    split's scenes, each seeded by (seed, split, task, index)."""
    unknown = [t for t in tasks if t not in sc.TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(sc.TASKS)}")
    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
    specs = []
    for s, split in enumerate(SPLITS):
        if not scenes.get(split):
            raise ValueError(f"no {split} scenes to evaluate in")
        for task in tasks:
            for k in range(episodes_per_task):
                rng = np.random.default_rng([seed, s, sc.TASK_IDS[task], k])
                specs.append(EvalEpisode(split, task, k, scenes[split][k % len(scenes[split])],
                                         int(rng.integers(2**31))))
    return specs


def training_episode(tasks: Sequence[str], scenes: Sequence[sc.Scene], seed: int,
                     i: int) -> EvalEpisode:
    """Episode `i` of an endless training stream (PPO in the simulator): tasks in turn, scenes
    in turn after each round of tasks, seeds from (seed, i)."""
    task = tasks[i % len(tasks)]
    scene = scenes[(i // len(tasks)) % len(scenes)]
    return EvalEpisode("ind", task, i, scene, int(np.random.default_rng([seed, i]).integers(2**31)))


def embed(texts: Sequence[str]) -> np.ndarray:
    """float32 [N, 384] MiniLM-L6 sentence embeddings, as the dataset stores them."""
    from data_pipeline.builders.roboscape_maniskill.roboscape_maniskill_dataset_builder import (
        embed_instructions,
    )

    return embed_instructions(list(texts))


def make_eval_env(*, image_size: int = 64, control_freq: int = 10):
    """The collector's recording env: delta-EE control, third-view and wrist cameras."""
    from data_pipeline import maniskill_env  # noqa: F401  (registers RoboScape-v1)
    from data_pipeline.rendering import make_render_env

    return make_render_env("RoboScape-v1", image_size=image_size, wrist_camera=True,
                           control_mode="pd_ee_delta_pose",
                           sim_config=dict(sim_freq=100, control_freq=control_freq))


def two_view_frame(obs: dict[str, Any]) -> np.ndarray:
    """uint8 [2H, W, 3]: the third view stacked over the wrist view of a ManiSkill observation."""
    data = obs["sensor_data"]
    return np.concatenate([np.asarray(data[name]["rgb"][0].cpu().numpy(), np.uint8)
                           for name in ("base_camera", "hand_camera")], 0)


class EpisodeTrace(NamedTuple):
    """What an episode showed and did: frames uint8 [steps + 1, 2H, W, 3] (two-view, from the
    reset on) and the actions sent to the env float32 [steps, 7] (after the clip to [-1, 1])."""

    frames: np.ndarray
    actions: np.ndarray


def run_episode(env, spec: EvalEpisode, controller: Controller, instruction: np.ndarray, *,
                max_steps: int, reconfigure: bool = True, keep_frames: bool = False
                ) -> tuple[dict[str, Any], EpisodeTrace | None]:
    """Runs one episode; returns (record, trace). record: key, split, task, scene, seed,
    instruction, success (the test held at some step), steps, return (the rule-based dense
    reward summed); trace: with `keep_frames`, every frame and action (else None)."""
    obs, _ = env.reset(seed=spec.seed, options={"task": spec.task, "scene": spec.scene,
                                                "reconfigure": reconfigure})
    frame = two_view_frame(obs)
    controller.reset(frame, instruction, spec.seed)
    frames, actions, total, success, steps = [frame], [], 0.0, False, 0
    while steps < max_steps and not success:
        action = np.clip(np.asarray(controller.act(frame), np.float32), -1.0, 1.0)
        obs, reward, _, _, info = env.step(action)
        frame, steps = two_view_frame(obs), steps + 1
        total += float(np.asarray(reward).reshape(-1)[0])
        success = bool(np.asarray(info["success"]).reshape(-1)[0])
        if keep_frames:
            frames.append(frame)
            actions.append(action)
    s = spec.scene
    record = {"key": spec.key, "split": spec.split, "task": spec.task, "index": spec.index,
              "object": s.object.name, "container": s.container.name, "table": s.table.name,
              "seed": spec.seed, "instruction": spec.instruction, "success": success,
              "steps": steps, "return": total}
    if not keep_frames:
        return record, None
    return record, EpisodeTrace(np.stack(frames), np.stack(actions).reshape(-1, 7))
