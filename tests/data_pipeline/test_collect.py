"""Collection schedule, sharding, resume bookkeeping, config errors and action labels (no sim)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import sapien
from transforms3d.euler import euler2quat

from data_pipeline import collect
from data_pipeline.recording import delta_ee_action
from tests.conftest import REPO_ROOT


def test_schedule_is_deterministic_balanced_and_shardable():
    config = collect.CollectConfig(scenes_per_split=2, episodes_per_task_scene=2)
    specs = collect.schedule(config)
    assert specs == collect.schedule(config)
    assert len(specs) == 2 * 2 * 4 * 2 and [s.index for s in specs] == list(range(len(specs)))
    assert {s.split for s in specs} == {"ind", "ood"}
    assert sum(not s.optimal for s in specs) == len(specs) // 2
    assert len({s.key for s in specs}) == len(specs)
    shards = [[s for s in specs if s.index % 3 == k] for k in range(3)]
    assert sorted(s.index for shard in shards for s in shard) == list(range(len(specs)))


def test_fewer_ood_episodes_leave_the_in_domain_schedule_unchanged():
    full = collect.schedule(collect.CollectConfig(scenes_per_split=2, episodes_per_task_scene=4))
    fewer = collect.schedule(collect.CollectConfig(
        scenes_per_split=2, episodes_per_task_scene=4, ood_episodes_per_task_scene=2))
    assert [s for s in fewer if s.split == "ind"] == [s for s in full if s.split == "ind"]
    ood = [s for s in fewer if s.split == "ood"]
    assert len(ood) == 2 * 4 * 2 and sum(not s.optimal for s in ood) == len(ood) // 2
    with pytest.raises(ValueError, match="ood_episodes_per_task_scene must be >= 1"):
        collect.CollectConfig(ood_episodes_per_task_scene=0)


def test_more_in_domain_scenes_keep_the_first_ones_and_the_ood_scenes():
    base = collect.schedule(collect.CollectConfig(scenes_per_split=2, episodes_per_task_scene=2))
    more = collect.schedule(collect.CollectConfig(
        scenes_per_split=2, ind_scenes_per_split=6, episodes_per_task_scene=2))

    def scenes(specs, split):
        return list(dict.fromkeys(s.scene for s in specs if s.split == split))

    assert len(scenes(more, "ind")) == 6 and scenes(more, "ind")[:2] == scenes(base, "ind")
    assert len({s.object_id for s in scenes(more, "ind")}) == 6  # distinct objects first
    assert scenes(more, "ood") == scenes(base, "ood")
    with pytest.raises(ValueError, match="ind_scenes_per_split must be >= 1"):
        collect.CollectConfig(ind_scenes_per_split=0)


def test_objects_restrict_the_scenes():
    config = collect.CollectConfig(
        objects=("green cube", "blue sphere"), scenes_per_split=1, episodes_per_task_scene=1
    )
    names = {spec.scene.object.name for spec in collect.schedule(config)}
    assert names and names <= {"green cube", "blue sphere"}


def test_finished_episodes_are_skipped(tmp_path):
    spec = collect.schedule(collect.CollectConfig(scenes_per_split=1, episodes_per_task_scene=1))[0]
    os.makedirs(tmp_path / "episodes")
    assert not collect.is_done(str(tmp_path), spec)
    open(collect.failure_path(str(tmp_path), spec), "w").close()
    assert collect.is_done(str(tmp_path), spec)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"tasks": ("push", "stack")}, "unknown task"),
        ({"objects": ("red cube", "golden teapot")}, "unknown object name.*golden teapot"),
        ({"image_size": 0}, "image_size must be a positive int"),
        ({"image_size": 64.5}, "image_size must be a positive int"),
        ({"suboptimal_ratio": 2.0}, "suboptimal_ratio"),
    ],
)
def test_bad_config_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        collect.CollectConfig(**kwargs)


def test_unwritable_output_folder_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="cannot write the output folder .*/file/out"):
        collect.collect(collect.CollectConfig(), str(blocker / "out"))


def test_delta_ee_action_translation_and_rotation():
    current = sapien.Pose([0.1, 0.0, 0.2], euler2quat(np.pi, 0, 0))
    target = sapien.Pose([0.12, -0.01, 0.2], euler2quat(np.pi, 0, 0))
    action = delta_ee_action(current, target, -1.0)
    np.testing.assert_allclose(action[:3], [0.2, -0.1, 0.0], atol=1e-5)  # metres / 0.1
    np.testing.assert_allclose(action[3:6], 0.0, atol=1e-5)
    assert action[6] == -1.0
    rotated = sapien.Pose(current.p, (sapien.Pose(q=euler2quat(0, 0, 0.05)) * current).q)
    action = delta_ee_action(current, rotated, 1.0)
    # A 0.05 rad turn about the root z axis is Euler XYZ (0, 0, 0.05), divided by rot_lower -0.1.
    np.testing.assert_allclose(action[3:6], [0.0, 0.0, -0.5], atol=1e-5)


@pytest.mark.parametrize(
    "override,message",
    [
        ("--config.data.tasks=('push','stack')", "unknown task(s) ['stack']"),
        ("--workdir=/dev/null/runs", "cannot write the output folder /dev/null/runs/collect_data"),
    ],
)
def test_launcher_reports_bad_input_in_one_line(tmp_path, override, message):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.collect_data",
            "--config=experiments/configs/tiny.py:debug",
            f"--workdir={tmp_path}",
            override,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("collect_data: error: ") and message in lines[-1], out.stderr
    assert "Traceback" not in out.stderr
