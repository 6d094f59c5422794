"""Checks that recorded action labels mean what they say: open-loop replay in a fresh env.

Each staged episode's 7-D delta-EE actions are replayed from its seed in a `pd_ee_delta_pose`
env without cameras (physics does not depend on rendering); the task's success at the end is
compared per task. Also reports planner success per task from the collector's attempt log.
"""

from __future__ import annotations

import collections
import glob
import json
import os
from typing import Any

import numpy as np

from data_pipeline import scenes as sc


def replay_staged(
    staging_dir: str,
    *,
    control_freq: int = 10,
    limit: int | None = None,
    optimal_only: bool = False,
) -> dict[str, Any]:
    from data_pipeline.rendering import configure_vulkan

    configure_vulkan()
    import gymnasium as gym

    from data_pipeline import maniskill_env  # noqa: F401
    from data_pipeline.recording import EpisodeSpec, replay_open_loop

    env = gym.make(
        "RoboScape-v1",
        obs_mode="state",
        control_mode="pd_ee_delta_pose",
        sim_config=dict(sim_freq=100, control_freq=control_freq),
    )
    results = collections.defaultdict(list)
    paths = sorted(glob.glob(os.path.join(staging_dir, "episodes", "*.npz")))[:limit]
    for path in paths:
        with np.load(path) as data:
            meta, actions = json.loads(str(data["meta"])), data["action"]
        if optimal_only and not meta["optimal"]:
            continue
        scene = sc.Scene(meta["object_id"], meta["container_id"], meta["table_id"])
        spec = EpisodeSpec(
            meta["index"], meta["task"], scene, meta["split"], meta["seed"], meta["optimal"]
        )
        results[meta["task"]].append(replay_open_loop(env, spec, actions))
    env.close()
    return {
        task: {"n": len(r), "replay_success": float(np.mean(r))}
        for task, r in sorted(results.items())
    }


def planner_success(staging_dir: str, *, optimal_only: bool = True) -> dict[str, Any]:
    """Per task: share of planning attempts whose plan reached the task's success."""
    counts = collections.defaultdict(lambda: [0, 0])  # [successful plans, attempts]
    for path in glob.glob(os.path.join(staging_dir, "episodes", "*.npz")):
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
        if optimal_only and not meta["optimal"]:
            continue
        plan_fail = sum(f in ("no_plan", "plan_not_successful") for f in meta["failures"])
        counts[meta["task"]][0] += meta["attempts"] - plan_fail
        counts[meta["task"]][1] += meta["attempts"]
    for path in glob.glob(os.path.join(staging_dir, "episodes", "*.failed.json")):
        with open(path) as f:
            record = json.load(f)
        if optimal_only and "-opt" not in os.path.basename(path):
            continue
        plan_fail = sum(f in ("no_plan", "plan_not_successful") for f in record["failures"])
        counts[record["task"]][0] += len(record["failures"]) - plan_fail
        counts[record["task"]][1] += len(record["failures"])
    return {t: {"attempts": a, "plan_success": ok / a} for t, (ok, a) in sorted(counts.items())}
