"""Resumable, sharded collection of planner episodes into a staging folder of one file per episode.

The schedule is a pure function of the config: episode i has a fixed task, scene, split, seed and
optimal/sub-optimal kind, so machines can each take a shard (`i % num_shards == shard`) and a rerun
skips every episode whose file exists. Each episode is written to a temporary file and renamed, so a
killed collector loses at most the episode in flight. Failed plans are retried with new seeds up to
`max_attempts` and then recorded as failures (counted in the dataset card, never as successes).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import time
from typing import Any, Sequence

import numpy as np

from data_pipeline import scenes as sc
from data_pipeline.recording import EpisodeSpec


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    tasks: tuple[str, ...] = sc.TASKS
    objects: tuple[str, ...] = ()  # restrict scenes to these object names; () = all twenty
    scenes_per_split: int = 4  # per split (ind, ood), drawn from the split's scenes
    # in-domain scenes when they should differ from `scenes_per_split`: None = as many
    ind_scenes_per_split: int | None = None
    episodes_per_task_scene: int = 4
    # out-of-domain scenes are only evaluated on, never trained on: None = as many as in-domain
    ood_episodes_per_task_scene: int | None = None
    suboptimal_ratio: float = 0.5  # paper: 1:1
    image_size: int = 64
    control_freq: int = 10
    push_distance: float = 0.10
    max_attempts: int = 3
    split_seed: int = 0
    seed: int = 0

    def __post_init__(self):
        unknown = [t for t in self.tasks if t not in sc.TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(sc.TASKS)}")
        unknown = [o for o in self.objects if o not in sc.OBJECT_IDS]
        if unknown:
            raise ValueError(f"unknown object name(s) {unknown}; known: {', '.join(sc.OBJECT_IDS)}")
        if not isinstance(self.image_size, int) or self.image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        if not 0.0 <= self.suboptimal_ratio <= 1.0:
            raise ValueError(f"suboptimal_ratio must be in [0, 1], got {self.suboptimal_ratio}")
        if self.scenes_per_split < 1 or self.episodes_per_task_scene < 1:
            raise ValueError("scenes_per_split and episodes_per_task_scene must be >= 1")
        if self.ind_scenes_per_split is not None and self.ind_scenes_per_split < 1:
            raise ValueError(f"ind_scenes_per_split must be >= 1 or None, got "
                             f"{self.ind_scenes_per_split}")
        if self.ood_episodes_per_task_scene is not None and self.ood_episodes_per_task_scene < 1:
            raise ValueError(f"ood_episodes_per_task_scene must be >= 1 or None, got "
                             f"{self.ood_episodes_per_task_scene}")

    def scenes_per_split_of(self, split_name: str) -> int:
        if split_name == "ind" and self.ind_scenes_per_split is not None:
            return self.ind_scenes_per_split
        return self.scenes_per_split

    def episodes_per_task_scene_of(self, split_name: str) -> int:
        if split_name == "ood" and self.ood_episodes_per_task_scene is not None:
            return self.ood_episodes_per_task_scene
        return self.episodes_per_task_scene


def pick_scenes(
    split: sc.SceneSplit, name: str, count: int, seed: int, objects: tuple[str, ...] = ()
) -> list[sc.Scene]:
    """`count` scenes of split `name` (only with `objects`, if given), spread over objects,
    containers and tables."""
    allowed = {sc.OBJECT_IDS[o] for o in objects}
    candidates = [s for s in split.scenes(name) if not allowed or s.object_id in allowed]
    if not candidates:
        raise ValueError(f"no {name} scene holds any of the objects {list(objects)}")
    rng = np.random.default_rng([seed, 0 if name == "ind" else 1])
    order = rng.permutation(len(candidates))
    chosen, used_objects = [], set()
    for i in order:  # first pass: distinct objects
        if candidates[i].object_id not in used_objects and len(chosen) < count:
            chosen.append(candidates[i])
            used_objects.add(candidates[i].object_id)
    chosen += [candidates[i] for i in order if candidates[i] not in chosen][: count - len(chosen)]
    return chosen


def schedule(config: CollectConfig) -> list[EpisodeSpec]:
    """Every episode of the dataset, grouped by scene so a worker rarely rebuilds its scene."""
    split = sc.make_split(config.split_seed)
    specs = []
    for split_name in ("ind", "ood"):
        scenes = pick_scenes(
            split, split_name, config.scenes_per_split_of(split_name), config.seed,
            tuple(config.objects)
        )
        per_task_scene = config.episodes_per_task_scene_of(split_name)
        for scene in scenes:
            for task in config.tasks:
                for k in range(per_task_scene):
                    index = len(specs)
                    optimal = k >= round(per_task_scene * config.suboptimal_ratio)
                    seed = int(np.random.default_rng([config.seed, index]).integers(2**31))
                    specs.append(EpisodeSpec(index, task, scene, split_name, seed, optimal))
    return specs


def episode_path(out_dir: str, spec: EpisodeSpec) -> str:
    return os.path.join(out_dir, "episodes", spec.key + ".npz")


def failure_path(out_dir: str, spec: EpisodeSpec) -> str:
    return os.path.join(out_dir, "episodes", spec.key + ".failed.json")


def is_done(out_dir: str, spec: EpisodeSpec) -> bool:
    return os.path.exists(episode_path(out_dir, spec)) or os.path.exists(
        failure_path(out_dir, spec)
    )


def _write_atomic_npz(path: str, arrays: dict[str, Any]) -> None:
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _write_atomic_json(path: str, payload: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def _make_envs(config: CollectConfig):
    from data_pipeline.rendering import configure_vulkan

    configure_vulkan()
    import gymnasium as gym

    from data_pipeline import maniskill_env  # noqa: F401  (registers RoboScape-v1)
    from data_pipeline.recording import ActionRecorder

    sim = dict(sim_freq=100, control_freq=config.control_freq)
    plan_env = ActionRecorder(
        gym.make("RoboScape-v1", obs_mode="state", control_mode="pd_joint_pos", sim_config=sim)
    )
    render_env = gym.make(
        "RoboScape-v1",
        obs_mode="rgb",
        control_mode="pd_ee_delta_pose",
        sensor_configs=dict(width=config.image_size, height=config.image_size),
        sim_config=sim,
    )
    return plan_env, render_env


def collect_episode(
    plan_env, render_env, spec: EpisodeSpec, config: CollectConfig, out_dir: str
) -> dict[str, Any]:
    """Plans (retrying with new seeds) and records one episode; returns its log record."""
    from data_pipeline import planning, recording

    failures = []
    for attempt in range(config.max_attempts):
        tried = dataclasses.replace(spec, seed=spec.seed + 7919 * attempt)
        try:
            actions, plan_ok = recording.plan(
                plan_env, tried, True, planning.Perturbation(), config.push_distance
            )
        except planning.PlanFailed:
            failures.append("no_plan")
            continue
        if not plan_ok:
            failures.append("plan_not_successful")
            continue
        episode = recording.record(render_env, tried, actions, True)
        if not episode["success"][-1]:
            failures.append("recording_not_successful")
            continue
        meta = {
            "task": spec.task,
            "object_id": spec.scene.object_id,
            "container_id": spec.scene.container_id,
            "table_id": spec.scene.table_id,
            "split": spec.split,
            "seed": tried.seed,
            "optimal": spec.optimal,
            "index": spec.index,
            "attempts": attempt + 1,
            "failures": failures,
        }
        _write_atomic_npz(episode_path(out_dir, spec), {**episode, "meta": json.dumps(meta)})
        return {**meta, "ok": True, "steps": int(len(episode["action"]))}
    record = {"index": spec.index, "task": spec.task, "ok": False, "failures": failures}
    _write_atomic_json(failure_path(out_dir, spec), record)
    return record


def run_worker(
    config: CollectConfig, out_dir: str, specs: Sequence[EpisodeSpec], progress_queue=None
) -> None:
    """Collects `specs` (skipping finished ones) with one pair of envs."""
    todo = [s for s in specs if not is_done(out_dir, s)]
    if not todo:
        return
    plan_env, render_env = _make_envs(config)
    try:
        for spec in todo:
            record = collect_episode(plan_env, render_env, spec, config, out_dir)
            if progress_queue is not None:
                progress_queue.put(record)
    finally:
        plan_env.close()
        render_env.close()


def collect(
    config: CollectConfig,
    out_dir: str,
    *,
    num_workers: int = 2,
    shard: int = 0,
    num_shards: int = 1,
    progress_every_s: float = 10.0,
) -> dict[str, Any]:
    """Collects this shard's episodes with `num_workers` processes; returns run figures."""
    from roboscape_jax.utils.progress import Progress

    try:
        os.makedirs(os.path.join(out_dir, "episodes"), exist_ok=True)
    except OSError as err:
        raise OSError(f"cannot write the output folder {out_dir}: {err.strerror}") from err
    if not os.access(out_dir, os.W_OK):
        raise OSError(f"cannot write the output folder {out_dir}: permission denied")
    specs = [s for s in schedule(config) if s.index % num_shards == shard]
    todo = [s for s in specs if not is_done(out_dir, s)]
    if todo:  # fail here, with the driver message, rather than inside every worker
        from data_pipeline.rendering import configure_vulkan

        configure_vulkan()
    print(
        f"collect: {len(specs)} episodes in shard {shard}/{num_shards}, {len(todo)} to do, "
        f"{num_workers} workers",
        flush=True,
    )
    start = time.time()
    if todo:
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        workers = [
            ctx.Process(target=run_worker, args=(config, out_dir, todo[w::num_workers], queue))
            for w in range(min(num_workers, len(todo)))
        ]
        for w in workers:
            w.start()
        progress = Progress(len(todo), "collect", every_s=progress_every_s, unit="episodes")
        ok = 0
        while progress.done < len(todo):
            if not any(w.is_alive() for w in workers) and queue.empty():
                break
            try:
                record = queue.get(timeout=5)
            except Exception:  # queue.Empty: poll the workers again
                continue
            ok += bool(record["ok"])
            progress.update(1, {"ok": ok})
        for w in workers:
            w.join()
        failed = [w.exitcode for w in workers if w.exitcode]
        if failed:
            raise RuntimeError(f"collection worker(s) exited with codes {failed}; rerun to resume")
    wall = time.time() - start
    return {
        "episodes_in_shard": len(specs),
        "collected_now": len(todo),
        "wall_time_s": wall,
        "episodes_per_hour_now": len(todo) / wall * 3600 if todo and wall > 0 else None,
    }
