"""In the simulator: a planned push is recorded with delta-EE labels that replay open-loop."""

import numpy as np
import pytest

from data_pipeline import collect
from data_pipeline import scenes as sc
from data_pipeline.planning import Perturbation
from data_pipeline.recording import EpisodeSpec, plan, record, replay_open_loop


@pytest.fixture(scope="module")
def envs():
    plan_env, render_env = collect._make_envs(collect.CollectConfig())
    yield plan_env, render_env
    plan_env.close()
    render_env.close()


def test_push_episode_records_and_replays(envs):
    plan_env, render_env = envs
    spec = EpisodeSpec(0, "push", sc.Scene(sc.OBJECT_IDS["red cube"], 0, 1), "ind", 123, True)
    actions, plan_ok = plan(plan_env, spec, True, Perturbation(), 0.10)
    assert plan_ok and 20 < len(actions) < 120
    episode = record(render_env, spec, actions, True)
    n = len(actions) + 1
    assert episode["image"].shape == episode["wrist_image"].shape == (n, 64, 64, 3)
    assert episode["action"].shape == (n, 7) and episode["state"].shape == (n, 8)
    assert episode["success"][-1] and not episode["success"][0]
    assert not np.array_equal(episode["image"][0], episode["image"][-1])  # the scene changed
    assert "red cube" in str(episode["language_instruction"])
    assert replay_open_loop(render_env, spec, episode["action"])
    # Without the labels the object stays put: the success comes from the actions.
    assert not replay_open_loop(render_env, spec, np.zeros_like(episode["action"]))


def test_wrist_camera_body_renders_as_one_box_over_the_mesh_bounds(envs):
    import sapien

    _, render_env = envs
    render_env.reset(
        seed=0, options={"task": "push", "scene": sc.Scene(0, 0, 0), "reconfigure": True}
    )
    entity = render_env.unwrapped.agent.robot.links_map["camera_link"]._objs[0].entity
    shapes = [
        shape
        for comp in entity.components
        if isinstance(comp, sapien.render.RenderBodyComponent)
        for shape in comp.render_shapes
    ]
    # The D415 STL (425k triangles) spans 9.9 x 2.3 x 2.0 cm; its box keeps that size and grey.
    assert [type(s).__name__ for s in shapes] == ["RenderShapeBox"]
    np.testing.assert_allclose(shapes[0].half_size, [0.0494, 0.0115, 0.0100], atol=2e-4)
    assert shapes[0].material.base_color[:3] == pytest.approx([0.5, 0.5, 0.5])


def test_rrt_fallback_plans_do_not_depend_on_the_episodes_planned_before(envs, monkeypatch):
    from mani_skill.examples.motionplanning.panda.motionplanner import (
        PandaArmMotionPlanningSolver as Solver,
    )

    rrt_calls = []
    rrt = Solver.move_to_pose_with_RRTConnect
    monkeypatch.setattr(
        Solver, "move_to_pose_with_RRTConnect", lambda *a, **k: rrt_calls.append(1) or rrt(*a, **k)
    )
    plan_env, _ = envs
    specs = collect.schedule(collect.CollectConfig(scenes_per_split=4, episodes_per_task_scene=10))
    first, _ = plan(plan_env, specs[45], True, Perturbation(), 0.10)
    assert rrt_calls  # this episode's screw motion fails: RRTConnect plans a move
    plan(plan_env, specs[89], True, Perturbation(), 0.10)  # advances every native generator
    again, _ = plan(plan_env, specs[45], True, Perturbation(), 0.10)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
