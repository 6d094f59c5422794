"""The committed debug dataset (made by tests/data/make_tiny_dataset.sh) reads back as RLDS."""

import os

import numpy as np
import pytest

from data_pipeline import scenes as sc
from data_pipeline.dataset import decode_image, executed_actions, open_split
from tests.conftest import REPO_ROOT

TINY = os.path.join(REPO_ROOT, "tests", "data", "tiny_maniskill", "1.0.0")


@pytest.fixture(scope="module")
def splits():
    return {name: open_split(TINY, name) for name in ("train", "val", "ood")}


def test_splits_hold_every_task_and_respect_the_scene_split(splits):
    split = sc.make_split(0)
    tasks = set()
    for name, source in splits.items():
        for i in range(len(source)):
            meta = source[i]["episode_metadata"]
            scene = sc.Scene(
                int(meta["object_id"]), int(meta["container_id"]), int(meta["table_id"])
            )
            assert split.split_of(scene) == ("ood" if name == "ood" else "ind")
            tasks.add(meta["task"].decode())
    assert tasks == set(sc.TASKS)
    assert len(splits["ood"]) == 4 and len(splits["train"]) + len(splits["val"]) == 4


def test_episode_steps_follow_rlds(splits):
    episode = splits["train"][0]
    steps = episode["steps"]
    n = len(steps)
    first, last = steps[0], steps[n - 1]
    assert first["is_first"] and not first["is_last"] and last["is_last"] and last["is_terminal"]
    assert not any(steps[t]["is_first"] for t in range(1, n))
    assert last["success"]  # the collector only keeps successful episodes
    actions = np.stack([steps[t]["action"] for t in range(n)])
    assert actions.shape == (n, 7) and np.abs(actions).max() <= 1.0 + 1e-6
    assert set(np.unique(actions[:-1, 6])) <= {-1.0, 1.0}
    image = decode_image(first["observation"]["image"])
    wrist = decode_image(first["observation"]["wrist_image"])
    assert image.shape == wrist.shape == (64, 64, 3) and image.std() > 5
    embedding = np.asarray(first["language_embedding"])
    assert embedding.shape == (384,)
    np.testing.assert_allclose(np.linalg.norm(embedding), 1.0, atol=1e-4)
    meta = episode["episode_metadata"]
    assert meta["object_name"].decode() in first["language_instruction"].decode()


def test_missing_dataset_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no dataset at"):
        open_split(str(tmp_path / "nope"), "train")


def test_executed_actions_clip_position_and_scale_rotation_to_unit_norm():
    labels = np.array([[0.5, -2.0, 0.1, 3.0, 0.0, -4.0, -1.0],    # rotation norm 5
                       [0.0, 0.2, -0.3, 0.3, -0.4, 0.0, 1.0]])    # inside the range: unchanged
    executed = executed_actions(labels)
    np.testing.assert_allclose(executed[0], [0.5, -1.0, 0.1, 0.6, 0.0, -0.8, -1.0], rtol=1e-6)
    np.testing.assert_allclose(executed[1], labels[1], rtol=1e-6)
    assert executed.dtype == np.float32
    with pytest.raises(ValueError, match="7-D"):
        executed_actions(labels[:, :6])
