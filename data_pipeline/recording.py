"""Plans one episode without rendering, then records it with delta-EE target labels and two cameras.

Labels are *target* labels (../shared/ENVIRONMENT.md): at each step the action is the delta from the
achieved TCP pose to the forward kinematics of the joint target the planner commanded, expressed as
Panda's normalised `pd_ee_delta_pose` action (root-frame translation / 0.1 m, Euler-XYZ rotation
/ -0.1 rad, gripper +-1). The recording env is driven by exactly these actions, so frames and
actions match, and replaying the actions open-loop reproduces the episode.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from mani_skill.utils.geometry.rotation_conversions import matrix_to_euler_angles

from data_pipeline import planning
from data_pipeline import scenes as sc

POS_SCALE = 0.1  # Panda pd_ee_delta_pose: metres per unit action
ROT_SCALE = -0.1  # radians per unit action; the controller multiplies by rot_lower = -0.1


@dataclasses.dataclass(frozen=True)
class EpisodeSpec:
    """Everything that determines an episode; `key` names its file."""

    index: int
    task: str
    scene: sc.Scene
    split: str
    seed: int
    optimal: bool

    @property
    def key(self) -> str:
        s = self.scene
        kind = "opt" if self.optimal else "sub"
        return (
            f"{self.index:06d}-{self.task}-o{s.object_id:02d}c{s.container_id}t{s.table_id}-"
            f"{self.split}-{kind}"
        )


class ActionRecorder(gym.Wrapper):
    """Keeps every action the planner sends to the joint-position env."""

    def __init__(self, env):
        super().__init__(env)
        self.actions: list[np.ndarray] = []

    def step(self, action):
        self.actions.append(np.asarray(action, np.float64).copy())
        return self.env.step(action)


def delta_ee_action(current, target, gripper: float) -> np.ndarray:
    """The normalised pd_ee_delta_pose action from `current` to `target` (root-frame Poses)."""
    dp = (target.p - current.p) / POS_SCALE
    r_cur = current.to_transformation_matrix()[:3, :3]
    r_tgt = target.to_transformation_matrix()[:3, :3]
    delta = torch.as_tensor(r_tgt @ r_cur.T, dtype=torch.float64)
    euler = matrix_to_euler_angles(delta, "XYZ").numpy() / ROT_SCALE
    return np.concatenate([np.clip(dp, -1, 1), euler, [gripper]]).astype(np.float32)


def _arm_pose_of(env, arm_qpos: np.ndarray):
    """Forward kinematics of the TCP (root frame) for an arm joint target."""
    controller = env.unwrapped.agent.controller.controllers["arm"]
    kin = controller.kinematics
    qpos = env.unwrapped.agent.robot.get_qpos()[0].cpu().numpy().copy()
    qpos[: len(arm_qpos)] = arm_qpos
    kin.pmodel.compute_forward_kinematics(qpos)
    return kin.pmodel.get_link_pose(kin.end_link_idx)


def _tcp_at_base(env):
    return env.unwrapped.agent.controller.controllers["arm"].ee_pose_at_base.sp


def _state(env) -> np.ndarray:
    """Proprioception: TCP pose in the robot frame (xyz, wxyz quaternion) and gripper opening."""
    tcp = _tcp_at_base(env)
    qpos = env.unwrapped.agent.robot.get_qpos()[0].cpu().numpy()
    return np.concatenate([tcp.p, tcp.q, [qpos[-2] + qpos[-1]]]).astype(np.float32)


def _frames(obs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    data = obs["sensor_data"]
    return (
        data["base_camera"]["rgb"][0].cpu().numpy().astype(np.uint8),
        data["hand_camera"]["rgb"][0].cpu().numpy().astype(np.uint8),
    )


def plan(
    plan_env: ActionRecorder,
    spec: EpisodeSpec,
    reconfigure: bool,
    perturb: planning.Perturbation,
    push_distance: float,
) -> tuple[list[np.ndarray], bool]:
    """Runs the planner; returns its commanded [arm q (7), gripper] actions and its success."""
    plan_env.reset(
        seed=spec.seed, options={"task": spec.task, "scene": spec.scene, "reconfigure": reconfigure}
    )
    plan_env.actions = []
    rng = np.random.default_rng(spec.seed)
    planning.solve(plan_env, spec.task, rng, None if spec.optimal else perturb, push_distance)
    success = bool(plan_env.unwrapped.evaluate()["success"][0])
    return plan_env.actions, success


def record(
    render_env, spec: EpisodeSpec, joint_actions: list[np.ndarray], reconfigure: bool
) -> dict[str, Any]:
    """Drives the rendering delta-EE env through the plan; returns the episode's arrays."""
    obs, _ = render_env.reset(
        seed=spec.seed, options={"task": spec.task, "scene": spec.scene, "reconfigure": reconfigure}
    )
    images, wrists, states, actions, rewards, successes = [], [], [], [], [], []
    clipped = 0
    for joint_action in joint_actions:
        image, wrist = _frames(obs)
        images.append(image), wrists.append(wrist), states.append(_state(render_env))
        target = _arm_pose_of(render_env, joint_action[:7])
        action = delta_ee_action(_tcp_at_base(render_env), target, float(joint_action[-1]))
        clipped += int(np.abs((target.p - _tcp_at_base(render_env).p) / POS_SCALE).max() > 1)
        obs, reward, _, _, info = render_env.step(action)
        actions.append(action), rewards.append(float(reward[0]))
        successes.append(bool(info["success"][0]))
    image, wrist = _frames(obs)
    images.append(image), wrists.append(wrist), states.append(_state(render_env))
    actions.append(np.zeros(7, np.float32)), rewards.append(0.0)
    successes.append(successes[-1] if successes else False)
    n = len(images)
    instruction = sc.instruction(spec.task, spec.scene, random.Random(spec.seed))
    return {
        "image": np.stack(images),
        "wrist_image": np.stack(wrists),
        "state": np.stack(states),
        "action": np.stack(actions),
        "reward": np.asarray(rewards, np.float32),
        "success": np.asarray(successes),
        "is_first": np.arange(n) == 0,
        "is_last": np.arange(n) == n - 1,
        "is_terminal": (np.arange(n) == n - 1) & successes[-1],
        "language_instruction": np.asarray(instruction),
        "clipped_steps": np.asarray(clipped),
    }


def replay_open_loop(env, spec: EpisodeSpec, actions: np.ndarray) -> bool:
    """Replays recorded delta-EE actions from the episode's initial state; returns task success."""
    env.reset(seed=spec.seed, options={"task": spec.task, "scene": spec.scene, "reconfigure": True})
    success = False
    for action in actions[:-1]:  # the last step's action is padding
        _, _, _, _, info = env.step(action)
        success = bool(info["success"][0])
    return success
