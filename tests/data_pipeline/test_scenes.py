"""The scene family and its deterministic in-domain / out-of-domain split."""

import random

import pytest

from data_pipeline import scenes as sc


def test_twenty_named_objects_two_containers_two_tables():
    assert len(sc.OBJECTS) == 20 and len({o.name for o in sc.OBJECTS}) == 20
    assert {o.shape for o in sc.OBJECTS} == {"cube", "box", "sphere", "cylinder", "capsule"}
    assert [c.name for c in sc.CONTAINERS] == ["plate", "bin"]
    assert len(sc.TABLES) == 2 and len(sc.all_scenes()) == 80


def test_split_is_deterministic_and_holds_unseen_objects_and_pairs():
    split = sc.make_split(0)
    assert split == sc.make_split(0) and split != sc.make_split(1)
    ind, ood = split.scenes("ind"), split.scenes("ood")
    assert len(ind) + len(ood) == 80 and not set(ind) & set(ood)
    ind_objects = {s.object_id for s in ind}
    assert not ind_objects & set(split.unseen_objects)  # never seen in training
    for obj, container in split.unseen_pairs:  # seen object, seen container, unseen combination
        assert obj in ind_objects
        assert sc.Scene(obj, container, 0) in ood and sc.Scene(obj, 1 - container, 0) in ind


def test_instruction_names_object_and_container():
    scene = sc.Scene(sc.OBJECT_IDS["green cube"], 1, 0)
    text = sc.instruction("pick_and_place", scene, random.Random(0))
    assert "green cube" in text and "bin" in text
    with pytest.raises(ValueError, match="unknown task 'stack'"):
        sc.instruction("stack", scene, random.Random(0))
    with pytest.raises(ValueError, match="unknown split"):
        sc.make_split(0).scenes("test")
