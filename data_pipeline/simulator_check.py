"""Renders every task's third-view and wrist cameras on the CPU and times random-action steps.

The first stage of the pipeline: it proves the simulator stack (SAPIEN, lavapipe, ManiSkill3) works
on this machine before hours go into collection, and leaves a PNG to look at.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
from PIL import Image

from data_pipeline.rendering import make_render_env

ENV_ID = "RoboScape-v1"


def camera_frames(obs: dict[str, Any]) -> dict[str, np.ndarray]:
    """{camera name: [H, W, 3] uint8} from a ManiSkill rgb observation of a single env."""
    return {
        name: np.asarray(data["rgb"][0].cpu().numpy(), np.uint8)
        for name, data in obs["sensor_data"].items()
    }


def is_blank(frame: np.ndarray, min_std: float = 5.0) -> bool:
    """A frame is blank when it is (nearly) one colour, e.g. all black from a failed render."""
    return float(frame.astype(np.float32).std()) < min_std


def check_task(
    task: str, *, image_size: int, wrist_camera: bool, num_steps: int, seed: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Resets and steps `task` with random actions; returns figures and a [2H, W, 3] frame strip."""
    from data_pipeline import maniskill_env  # noqa: F401  (registers RoboScape-v1)

    start = time.time()
    env = make_render_env(
        ENV_ID,
        image_size=image_size,
        wrist_camera=wrist_camera,
        control_mode="pd_ee_delta_pose",
        task=task,
        robot_uids="panda_wristcam" if wrist_camera else "panda",
    )
    try:
        obs, _ = env.reset(seed=seed)
        make_s = time.time() - start
        frames = camera_frames(obs)
        env.action_space.seed(seed)
        step_start = time.time()
        for _ in range(num_steps):
            obs, *_ = env.step(env.action_space.sample())
        steps_per_s = num_steps / max(time.time() - step_start, 1e-9)
    finally:
        env.close()
    stats = {
        "env_id": ENV_ID,
        "task": task,
        "make_and_reset_s": make_s,
        "steps_per_s": steps_per_s,
        "cameras": {
            name: {"shape": list(f.shape), "std": float(f.std()), "blank": is_blank(f)}
            for name, f in frames.items()
        },
    }
    return stats, np.concatenate(list(frames.values()), axis=0)


def run_simulator_check(
    tasks: Sequence[str],
    out_dir: str,
    *,
    image_size: int,
    wrist_camera: bool,
    num_steps: int,
    seed: int,
) -> dict[str, Any]:
    """Checks each task; writes `frames.png` (one column per task) and returns per-task figures."""
    results, strips = {}, []
    for task in tasks:
        stats, strip = check_task(
            task, image_size=image_size, wrist_camera=wrist_camera, num_steps=num_steps, seed=seed
        )
        results[task] = stats
        strips.append(strip)
        print(
            f"  {task}: {stats['steps_per_s']:.1f} steps/s, cameras "
            + ", ".join(f"{n} std {c['std']:.1f}" for n, c in stats["cameras"].items()),
            flush=True,
        )
    Image.fromarray(np.concatenate(strips, axis=1)).save(f"{out_dir}/frames.png")
    blank = [f"{t}/{n}" for t, s in results.items() for n, c in s["cameras"].items() if c["blank"]]
    if blank:
        raise RuntimeError(
            f"blank camera frames rendered for {blank}: the Vulkan driver renders "
            "nothing; see data_pipeline/rendering.py"
        )
    return results
