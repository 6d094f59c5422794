"""The evaluation schedule (no simulator): fixed seeds, the data's in-domain scenes, unseen
out-of-domain scenes, and bad arguments named."""

import ml_collections
import pytest

from data_pipeline import collect
from data_pipeline import scenes as sc
from data_pipeline.policy_eval import eval_scenes, eval_schedule

DATA = ml_collections.ConfigDict(dict(scenes_per_split=2, split_seed=0, objects=()))


def test_schedule_uses_the_datas_scenes_with_new_fixed_seeds():
    scenes = eval_scenes(DATA, seed=0)
    data_specs = collect.schedule(collect.CollectConfig(scenes_per_split=2, seed=0))
    for split in ("ind", "ood"):
        assert set(scenes[split]) == {s.scene for s in data_specs if s.split == split}
    split = sc.make_split(0)
    assert all(split.split_of(s) == "ood" for s in scenes["ood"])
    specs = eval_schedule(("push", "pull"), scenes, episodes_per_task=3, seed=5)
    assert len(specs) == 2 * 2 * 3 and len({s.key for s in specs}) == len(specs)
    assert specs == eval_schedule(("push", "pull"), scenes, episodes_per_task=3, seed=5)
    other = eval_schedule(("push", "pull"), scenes, episodes_per_task=3, seed=6)
    assert [s.seed for s in specs] != [s.seed for s in other]
    assert not {s.seed for s in specs} & {s.seed for s in data_specs}
    push_ind = [s for s in specs if s.split == "ind" and s.task == "push"]
    assert [s.scene for s in push_ind] == [scenes["ind"][k % 2] for k in range(3)]
    assert push_ind[0].scene.object.name in push_ind[0].instruction


def test_eval_scenes_follow_the_datas_in_domain_scene_count():
    data = ml_collections.ConfigDict(dict(scenes_per_split=2, ind_scenes_per_split=5,
                                          split_seed=0, objects=()))
    scenes = eval_scenes(data, seed=0)
    data_specs = collect.schedule(collect.CollectConfig(
        scenes_per_split=2, ind_scenes_per_split=5, seed=0))
    assert len(scenes["ind"]) == 5 and len(scenes["ood"]) == 2
    for split in ("ind", "ood"):
        assert set(scenes[split]) == {s.scene for s in data_specs if s.split == split}


def test_schedule_rejects_unknown_tasks_and_empty_splits():
    scenes = eval_scenes(DATA, seed=0)
    with pytest.raises(ValueError, match="unknown task"):
        eval_schedule(("juggle",), scenes, episodes_per_task=1, seed=0)
    with pytest.raises(ValueError, match="no ood scenes"):
        eval_schedule(("push",), {"ind": scenes["ind"], "ood": []}, episodes_per_task=1, seed=0)
