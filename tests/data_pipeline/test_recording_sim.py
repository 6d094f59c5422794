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
