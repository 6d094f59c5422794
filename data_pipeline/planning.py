"""mplib expert solutions for the four tasks, optimal and perturbed sub-optimal (paper section 4.1).

An optimal plan visits only the essential waypoints (pre-grasp, grasp, lift, above goal, release;
or pre-push, push). A sub-optimal plan (a) adds unrelated intermediate waypoints with position and
rotation noise, (b) splits moves at interpolated intermediate points, and (c) adds small position
and rotation disturbances near grasp and place. The planner drives a joint-position env without
rendering; the joint targets it commands are what `collect.py` converts to delta-EE actions.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import glob
import os

import numpy as np
import sapien
from mani_skill.examples.motionplanning.panda.motionplanner import PandaArmMotionPlanningSolver
from transforms3d.euler import euler2quat


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """How a sub-optimal plan departs from the optimal one (probabilities per waypoint)."""

    detour_prob: float = 0.3  # (a) an unrelated waypoint before the move
    detour_pos_std: float = 0.04
    detour_rot_std: float = 0.25
    split_prob: float = 0.3  # (b) an interpolated intermediate point
    split_noise_std: float = 0.01
    disturb_std: float = 0.008  # (c) near grasp and place


GRIPPER_STEPS = 4  # control steps to open or close the gripper (0.4 s at 10 Hz)


_OMPL_LOG_NONE = 6  # ompl::msg::LogLevel::LOG_NONE


@functools.cache
def _native_libraries() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    import mplib

    libs = glob.glob(os.path.join(os.path.dirname(mplib.__file__), "..", "mplib.libs", "libompl*"))
    if not libs:
        raise RuntimeError("mplib's bundled libompl was not found; cannot seed RRTConnect")
    ompl = ctypes.CDLL(libs[0])  # the copy mplib's extension already loaded: same globals
    ompl._ZN4ompl3msg11setLogLevelENS0_8LogLevelE(ctypes.c_int(_OMPL_LOG_NONE))
    return ompl, ctypes.CDLL(None)


def reset_native_rngs() -> None:
    """Puts the planners' C++ random generators in one fixed state before each plan.

    mplib 0.1.1 exposes no seed: RRTConnect draws from OMPL's seed generator (seeded from the
    clock once per process) and IK restarts from `std::rand`, so a plan that falls back to
    RRTConnect depended on the process and on the episodes planned before it, and a resumed
    collection could differ from an uninterrupted one. OMPL's `RNG::setSeed` after the first
    draw re-seeds its generator with the first seed it was given (and logs an error, silenced
    here), so a constant seed makes every plan start from the same state. The plan still
    depends on the episode: its scene, start and waypoints come from the episode seed.
    """
    ompl, libc = _native_libraries()
    ompl._ZN4ompl3RNG7setSeedEm(ctypes.c_ulong(1))
    libc.srand(ctypes.c_uint(1))


class PlanFailed(RuntimeError):
    """mplib found no path to a waypoint."""


class _Planner:
    """Moves through waypoints with mplib screw motions, falling back to RRTConnect."""

    def __init__(self, env, rng: np.random.Generator, perturb: Perturbation | None):
        self.env, self.rng, self.perturb = env, rng, perturb
        self.solver = PandaArmMotionPlanningSolver(
            env,
            debug=False,
            vis=False,
            base_pose=env.unwrapped.agent.robot.pose,
            visualize_target_grasp_pose=False,
            print_env_info=False,
        )

    @property
    def tcp(self) -> sapien.Pose:
        return self.env.unwrapped.agent.tcp.pose.sp

    def _move(self, pose: sapien.Pose) -> None:
        result = self.solver.move_to_pose_with_screw(pose)
        if result == -1:
            result = self.solver.move_to_pose_with_RRTConnect(pose)
        if result == -1:
            raise PlanFailed(f"no plan to {pose}")

    def _noisy(self, pose: sapien.Pose, pos_std: float, rot_std: float) -> sapien.Pose:
        p = pose.p + self.rng.normal(0, pos_std, 3)
        p[2] = max(p[2], 0.04)  # keep detours off the table
        q = sapien.Pose(q=euler2quat(*self.rng.normal(0, rot_std, 3))) * sapien.Pose(q=pose.q)
        return sapien.Pose(p, q.q)

    def move(self, pose: sapien.Pose, *, critical: bool = False) -> None:
        """Moves to an essential waypoint, with the sub-optimal departures when perturbing."""
        pt = self.perturb
        if pt is not None:
            if self.rng.random() < pt.detour_prob and not critical:
                mid = sapien.Pose((self.tcp.p + pose.p) / 2 + [0, 0, 0.05], pose.q)
                self._move(self._noisy(mid, pt.detour_pos_std, pt.detour_rot_std))
            if self.rng.random() < pt.split_prob:
                u = self.rng.uniform(0.3, 0.7)
                mid = sapien.Pose(self.tcp.p * (1 - u) + pose.p * u, pose.q)
                self._move(self._noisy(mid, pt.split_noise_std, 0.0))
            if critical:
                self._move(self._noisy(pose, pt.disturb_std, 2 * pt.disturb_std))
        self._move(pose)

    def open(self) -> None:
        self.solver.open_gripper(t=GRIPPER_STEPS)

    def close(self) -> None:
        self.solver.close_gripper(t=GRIPPER_STEPS)


def _top_grasp(env) -> sapien.Pose:
    """A top-down grasp closing across the object's short horizontal side."""
    base = env.unwrapped
    spec = base.scene_spec.object
    obj = base.obj.pose.sp
    rot = obj.to_transformation_matrix()[:3, :3]
    short_axis = rot[:, 1] if spec.half_size[1] <= spec.half_size[0] else rot[:, 0]
    closing = np.array([short_axis[0], short_axis[1], 0.0])
    closing /= np.linalg.norm(closing)
    center = obj.p.copy()
    center[2] = max(center[2], 0.012)
    return base.agent.build_grasp_pose(np.array([0.0, 0.0, -1.0]), closing, center)


def _pick_and_place(planner: _Planner, goal_xy: np.ndarray, drop_height: float) -> None:
    env = planner.env.unwrapped
    grasp = _top_grasp(planner.env)
    planner.move(grasp * sapien.Pose([0, 0, -0.06]))
    planner.move(grasp, critical=True)
    planner.close()
    half_z = env.scene_spec.object.half_size[2]
    above = np.array([goal_xy[0], goal_xy[1], drop_height + half_z + 0.10])
    planner.move(sapien.Pose(above, grasp.q))  # lifts while it carries: one move, not two
    planner.move(sapien.Pose(above - [0, 0, 0.08], grasp.q), critical=True)
    planner.open()
    planner.move(sapien.Pose(above, grasp.q))


def _push(planner: _Planner, sign: float, distance: float) -> None:
    env = planner.env.unwrapped
    spec = env.scene_spec.object
    obj = env.obj.pose.sp.p
    q = planner.tcp.q
    reach = max(spec.half_size[0], spec.half_size[1]) * 1.5 + 0.02
    start = obj - [sign * reach, 0, 0]
    start[2] = min(spec.half_size[2], 0.015)
    planner.close()
    planner.move(sapien.Pose(start + [0, 0, 0.08], q))
    planner.move(sapien.Pose(start, q), critical=True)
    planner.move(sapien.Pose(start + [sign * (distance + 0.02), 0, 0], q))
    planner.move(sapien.Pose(start + [sign * (distance + 0.02), 0, 0.06], q))


def solve(
    env, task: str, rng: np.random.Generator, perturb: Perturbation | None, push_distance: float
) -> None:
    """Runs the task's plan in `env` (pd_joint_pos control); raises PlanFailed if none is found."""
    reset_native_rngs()
    planner = _Planner(env, rng, perturb)
    base = env.unwrapped
    if task == "pick_and_place":
        drop = base.scene_spec.container.wall_height
        _pick_and_place(planner, base.container.pose.sp.p[:2], drop)
    elif task == "move_to_target":
        _pick_and_place(planner, base.mat.pose.sp.p[:2], 0.0)
    elif task in ("push", "pull"):
        _push(planner, 1.0 if task == "push" else -1.0, push_distance)
    else:
        raise ValueError(f"unknown task {task!r}")
    planner.solver.close()
