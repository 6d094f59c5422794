"""`RoboScape-v1`: one ManiSkill3 env for the scene family and the paper's four tasks.

A scene (object x container x table) is fixed when the env is built (`scene=` kwarg, or
`reset(options={"scene": ..., "reconfigure": True})` to swap it); the task is chosen per episode
(`reset(options={"task": ...})`). Layout: the object starts on one side of the workspace (y sign
random), the goal zone (container or mat) on the other, so pushes and pulls along x never hit it.
Success tests and dense rule rewards follow the task definitions of paper section 4.1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sapien
import torch
from mani_skill.envs.sapien_env import BaseEnv
from mani_skill.sensors.camera import CameraConfig
from mani_skill.utils import sapien_utils
from mani_skill.utils.registration import register_env
from mani_skill.utils.scene_builder.table import TableSceneBuilder
from mani_skill.utils.structs import Pose
from transforms3d.euler import euler2quat

from data_pipeline import scenes as sc

PUSH_DISTANCE = 0.10  # metres the object must travel for push / pull (tolerance 0.02)
HIDDEN = [0.0, 0.0, -5.0]
DEFAULT_SCENE = sc.Scene(0, 0, 0)  # where unused goal markers wait, out of every camera's view


def _material(rgba) -> sapien.render.RenderMaterial:
    return sapien.render.RenderMaterial(base_color=list(rgba))


def _add_object_shapes(builder, spec: sc.ObjectSpec) -> None:
    hx, hy, hz = spec.half_size
    mat = _material(sc.COLOURS[spec.colour])
    upright = sapien.Pose(q=euler2quat(0, np.pi / 2, 0))  # sapien cylinders lie along x
    if spec.shape in ("cube", "box"):
        builder.add_box_collision(half_size=[hx, hy, hz])
        builder.add_box_visual(half_size=[hx, hy, hz], material=mat)
    elif spec.shape == "sphere":
        builder.add_sphere_collision(radius=hx)
        builder.add_sphere_visual(radius=hx, material=mat)
    elif spec.shape == "cylinder":
        builder.add_cylinder_collision(pose=upright, radius=hx, half_length=hz)
        builder.add_cylinder_visual(pose=upright, radius=hx, half_length=hz, material=mat)
    elif spec.shape == "capsule":
        builder.add_capsule_collision(radius=hy, half_length=hx - hy)
        builder.add_capsule_visual(radius=hy, half_length=hx - hy, material=mat)
    else:
        raise ValueError(f"unknown object shape {spec.shape!r}")


def _add_container_shapes(builder, spec: sc.ContainerSpec) -> None:
    mat, floor = _material(spec.colour), 0.004
    half = spec.inner_half + 0.008
    builder.add_box_collision(
        pose=sapien.Pose([0, 0, floor / 2]), half_size=[half, half, floor / 2]
    )
    builder.add_box_visual(
        pose=sapien.Pose([0, 0, floor / 2]), half_size=[half, half, floor / 2], material=mat
    )
    wall_t = 0.004
    for sx, sy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        hs = [wall_t, half, spec.wall_height / 2] if sx else [half, wall_t, spec.wall_height / 2]
        pose = sapien.Pose([sx * half, sy * half, floor + spec.wall_height / 2])
        builder.add_box_collision(pose=pose, half_size=hs)
        builder.add_box_visual(pose=pose, half_size=hs, material=mat)


_PART_BOUNDS: dict[tuple[str, tuple[float, ...]], list[tuple[np.ndarray, np.ndarray]]] = {}


def _part_bounds(shape) -> list[tuple[np.ndarray, np.ndarray]]:
    """(low, high) corners of each part of a mesh shape, read once per mesh file and scale: the
    agent is rebuilt every episode, and reading the D415's 1.3M vertices took 0.1 s a time."""
    key = (shape.filename, tuple(np.asarray(shape.scale, float)))
    if key in _PART_BOUNDS:
        return _PART_BOUNDS[key]
    vertices = [part.get_vertices() * np.asarray(shape.scale) for part in shape.parts]
    bounds = [(v.min(0), v.max(0)) for v in vertices]
    if shape.filename:  # an in-memory mesh has no name to key it by
        _PART_BOUNDS[key] = bounds
    return bounds


def _replace_mesh_by_its_box(entity: sapien.Entity) -> None:
    """Swaps each visual triangle mesh of `entity` for a box over its bounds, in its material.

    The wrist camera's RealSense D415 body is a 425k-triangle STL, 73% of the scene's triangles;
    lavapipe's per-frame cost follows the triangle count, not the 64x64 image, so the swap makes a
    two-camera step 3x cheaper and changes no pixel of the wrist view and ~20 pixels of the third
    view (the body is a grey 10 x 2.3 x 2 cm box either way).
    """
    mesh_type = sapien.render.RenderShapeTriangleMesh
    for body in [c for c in entity.components if isinstance(c, sapien.render.RenderBodyComponent)]:
        shapes = body.render_shapes
        if not shapes or not all(isinstance(s, mesh_type) for s in shapes):
            continue  # only all-mesh bodies (the camera's) are swapped
        proxy = sapien.render.RenderBodyComponent()
        for shape in shapes:
            for part, (low, high) in zip(shape.parts, _part_bounds(shape), strict=True):
                box = sapien.render.RenderShapeBox((high - low) / 2, part.material)
                box.local_pose = shape.local_pose * sapien.Pose((high + low) / 2)
                proxy.attach(box)
        proxy.name = body.name
        entity.remove_component(body)
        entity.add_component(proxy)


@register_env("RoboScape-v1", max_episode_steps=200)
class RoboScapeEnv(BaseEnv):
    """Pick-and-place, push, pull and move-to-target in the primitive scene family."""

    SUPPORTED_ROBOTS = ["panda_wristcam", "panda"]

    def __init__(
        self,
        *args,
        scene: sc.Scene = DEFAULT_SCENE,
        task: str = "push",
        robot_uids="panda_wristcam",
        robot_init_qpos_noise=0.02,
        **kwargs,
    ):
        self.scene_spec, self.task = scene, _check_task(task)
        self.robot_init_qpos_noise = robot_init_qpos_noise
        super().__init__(*args, robot_uids=robot_uids, **kwargs)

    @property
    def _default_sensor_configs(self):
        # Closer and narrower than ManiSkill's tabletop default, so that at 64x64 the object covers
        # more than a few pixels; the view still holds the whole workspace and the gripper.
        pose = sapien_utils.look_at(eye=[0.32, 0, 0.42], target=[-0.06, 0, 0.0])
        return [
            CameraConfig("base_camera", pose=pose, width=64, height=64, fov=1.0, near=0.01, far=100)
        ]

    @property
    def _default_human_render_camera_configs(self):
        pose = sapien_utils.look_at([0.6, 0.7, 0.6], [0.0, 0.0, 0.35])
        return CameraConfig("render_camera", pose=pose, width=256, height=256, fov=1)

    def _load_agent(self, options: dict):
        super()._load_agent(options, sapien.Pose(p=[-0.615, 0, 0]))
        if "camera_link" in self.agent.robot.links_map:
            for link in self.agent.robot.links_map["camera_link"]._objs:
                _replace_mesh_by_its_box(link.entity)

    def _load_scene(self, options: dict):
        if options and "scene" in options:
            self.scene_spec = options["scene"]
        spec = self.scene_spec
        self.table_scene = TableSceneBuilder(
            env=self, robot_init_qpos_noise=self.robot_init_qpos_noise
        )
        self.table_scene.build()
        if spec.table.cloth_colour is not None:
            cloth = self.scene.create_actor_builder()
            cloth.add_box_visual(
                half_size=[0.6, 0.8, 5e-4], material=_material(spec.table.cloth_colour)
            )
            cloth.initial_pose = sapien.Pose([-0.1, 0, 5e-4])
            self.cloth = cloth.build_kinematic(name="table_cloth")
        builder = self.scene.create_actor_builder()
        _add_object_shapes(builder, spec.object)
        builder.initial_pose = sapien.Pose([0, 0, spec.object.half_size[2]])
        self.obj = builder.build(name="object")
        builder = self.scene.create_actor_builder()
        _add_container_shapes(builder, spec.container)
        builder.initial_pose = sapien.Pose(HIDDEN)
        self.container = builder.build_kinematic(name="container")
        builder = self.scene.create_actor_builder()
        builder.add_box_visual(
            half_size=[sc.MAT_HALF, sc.MAT_HALF, 5e-4], material=_material(sc.MAT_COLOUR)
        )
        builder.initial_pose = sapien.Pose(HIDDEN)
        self.mat = builder.build_kinematic(name="target_mat")

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict):
        if options and "task" in options:
            self.task = _check_task(options["task"])
        self.table_scene.initialize(env_idx)
        rng = self._episode_rng
        side = rng.choice([-1.0, 1.0])
        obj = np.array(
            [
                rng.uniform(-0.08, 0.02),
                side * rng.uniform(0.03, 0.12),
                self.scene_spec.object.half_size[2],
            ]
        )
        yaw = rng.uniform(-np.pi / 4, np.pi / 4)
        self.obj.set_pose(Pose.create_from_pq(p=obj[None], q=euler2quat(0, 0, yaw)[None]))
        goal_x = rng.uniform(-0.08, 0.0)
        goal_y = -side * rng.uniform(0.10, 0.15)
        other_x = goal_x + 0.14
        if self.task == "move_to_target":
            self.mat.set_pose(sapien.Pose([goal_x, goal_y, 6e-4]))
            self.container.set_pose(sapien.Pose([other_x, goal_y, 0.0]))
        else:
            self.mat.set_pose(sapien.Pose(HIDDEN))
            self.container.set_pose(sapien.Pose([goal_x, goal_y, 0.0]))
        self.obj_start = torch.as_tensor(obj, dtype=torch.float32)[None]

    # ----------------------------------------------------------------------------------- success
    def _goal_xy(self) -> torch.Tensor:
        target = self.mat if self.task == "move_to_target" else self.container
        return target.pose.p[..., :2]

    def evaluate(self) -> dict[str, torch.Tensor]:
        p = self.obj.pose.p
        half_z = self.scene_spec.object.half_size[2]
        grasped = self.agent.is_grasping(self.obj)
        resting = p[..., 2] < half_z + 0.012
        if self.task in ("push", "pull"):
            dx = p[..., 0] - self.obj_start[..., 0]
            dy = (p[..., 1] - self.obj_start[..., 1]).abs()
            moved = (
                dx >= PUSH_DISTANCE - 0.02 if self.task == "push" else dx <= -(PUSH_DISTANCE - 0.02)
            )
            success = moved & (dy < 0.05) & resting
        else:
            inner = (
                sc.MAT_HALF
                if self.task == "move_to_target"
                else self.scene_spec.container.inner_half
            )
            inside = ((p[..., :2] - self._goal_xy()).abs() < inner).all(-1)
            low = p[..., 2] < half_z + 0.02 + (0.0 if self.task == "move_to_target" else 0.005)
            success = inside & low & ~grasped
        return {"success": success, "is_grasped": grasped}

    def _get_obs_extra(self, info: dict):
        return dict(tcp_pose=self.agent.tcp.pose.raw_pose)

    def compute_dense_reward(self, obs: Any, action: torch.Tensor, info: dict) -> torch.Tensor:
        """The rule-based reward of the paper's baselines: reach, then move the object to goal."""
        p, tcp = self.obj.pose.p, self.agent.tcp.pose.p
        if self.task in ("push", "pull"):
            sign = 1.0 if self.task == "push" else -1.0
            behind = p.clone()
            behind[..., 0] -= sign * (self.scene_spec.object.half_size[0] + 0.02)
            reach = 1 - torch.tanh(5 * torch.linalg.norm(tcp - behind, dim=-1))
            target_x = self.obj_start[..., 0] + sign * PUSH_DISTANCE
            progress = 1 - torch.tanh(5 * (p[..., 0] - target_x).abs())
            reward = reach + 2 * progress
        else:
            reach = 1 - torch.tanh(5 * torch.linalg.norm(tcp - p, dim=-1))
            grasped = info["is_grasped"].float()
            place = 1 - torch.tanh(5 * torch.linalg.norm(p[..., :2] - self._goal_xy(), dim=-1))
            reward = reach + grasped + 2 * place * grasped
        return torch.where(info["success"], torch.full_like(reward, 5.0), reward)

    def compute_normalized_dense_reward(self, obs: Any, action: torch.Tensor, info: dict):
        return self.compute_dense_reward(obs, action, info) / 5.0


def _check_task(task: str) -> str:
    if task not in sc.TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(sc.TASKS)}")
    return task
