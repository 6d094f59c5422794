"""The tokenizer and world-model stages on the committed debug dataset: train the tokenizer, score
it IND and OOD, cache tokens, train both world models and run their held-out evaluation."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from experiments.configs import tiny
from experiments.stages import tokenizer as stages
from experiments.stages import world_model as wm_stages
from roboscape_jax.tokenizer.tokenize import load_tokens
from roboscape_jax.world_model.margins import flat_calibration, load_calibration
from tests.experiments.conftest import debug_workdir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return debug_workdir(tmp_path_factory)


def test_train_then_tokenize(workdir):
    config = tiny.get_config("debug")
    results = stages.run_train_tokenizer(config, str(workdir / "train_tokenizer"))
    assert set(results) == {"ind", "ood"}
    for split in ("ind", "ood"):
        assert 0.0 < results[split]["psnr"] < 60.0
        assert 0.0 < results[split]["code_usage"] <= 1.0
    with open(workdir / "train_tokenizer" / "eval_ood" / "metrics.json") as f:
        assert json.load(f)["psnr"] == results["ood"]["psnr"]

    counts = stages.run_tokenize_dataset(config, str(workdir / "tokenize_dataset"))
    assert {k: v["written"] for k, v in counts.items()} == {"train": 3, "val": 1, "ood": 4}
    cache = workdir / "tokenize_dataset" / "ood"
    episode_id = sorted(p[:-4] for p in os.listdir(cache) if p.endswith(".npz"))[0]
    with np.load(cache / f"{episode_id}.npz") as data:
        tokens, actions, done = data["tokens"], data["actions"], data["done"]
        assert data["text"].shape == (32, 384) and data["text_mask"].sum() > 3
        reward = data["reward"]
    # reward[t] is paid on reaching frame t + 1: the success bonus, then 0 after the last frame
    assert reward.shape == done.shape and reward[-2] == reward.max() > reward[0] and reward[-1] == 0
    assert tokens.shape == (len(actions), 16, 8) and tokens.dtype == np.int32
    assert actions.shape[1] == 7 and done[-1] == 1.0 and done[0] == 0.0
    assert np.array_equal(load_tokens(str(cache), episode_id), tokens)
    again = stages.run_tokenize_dataset(config, str(workdir / "tokenize_dataset"))
    assert again["ood"] == {"written": 0, "skipped": 4}


def test_world_model_stages_train_and_evaluate(workdir):
    config = tiny.get_config("debug")
    if not (workdir / "tokenize_dataset" / "ood").exists():  # run alone: make the cache first
        stages.run_train_tokenizer(config, str(workdir / "train_tokenizer"))
        stages.run_tokenize_dataset(config, str(workdir / "tokenize_dataset"))
    trained = wm_stages.run_train_world_models(config, str(workdir / "train_world_models"))
    assert set(trained) == {"action", "text"}
    assert trained["action"]["step"] == config.world_models.action.num_steps
    stats_path = workdir / "train_world_models" / "action" / "action_stats.json"
    stats = json.loads(stats_path.read_text())
    assert len(stats["mean"]) == 7 and min(stats["std"]) > 0
    # the text ensemble's second member: the same text model with the next seed
    assert config.text_ensemble.members == 2
    members = wm_stages.run_train_text_ensemble(config, str(workdir / "train_text_ensemble"))
    assert set(members) == {"member1"}
    assert members["member1"]["seed"] == config.world_models.text.seed + 1
    assert members["member1"]["step"] == config.world_models.text.num_steps
    one = tiny.get_config("debug")
    one.text_ensemble.members = 1
    assert wm_stages.run_train_text_ensemble(one, str(workdir / "unused")) == {"skipped": 1.0}
    model, params = wm_stages.restore_text_model(config, str(workdir))
    assert model.size == 2 and jax.tree.leaves(params)[0].shape[0] == 2
    with pytest.raises(FileNotFoundError, match="train_text_ensemble"):
        wm_stages.text_model_dirs(3, str(workdir))

    results = wm_stages.run_evaluate_world_models(config, str(workdir / "evaluate_world_models"))
    action = results["action"]
    out = workdir / "evaluate_world_models"
    assert action["copy_penalty"] in config.world_models.action.sampling.copy_penalties
    assert action["maskgit_steps"] in config.world_model_eval.maskgit_steps
    sweep = action["val_penalty_sweep"][str(action["copy_penalty"])]
    assert set(sweep["open_loop_lpips_by_maskgit_steps"]) == {
        str(n) for n in config.world_model_eval.maskgit_steps}
    for split in ("val", "ood"):
        one_step, open_loop = action[split]["one_step"], action[split]["open_loop"]
        assert 0.0 <= one_step["token_accuracy"] <= 1.0
        assert open_loop["horizon"] == config.world_model_eval.horizon
        assert all(0.0 <= open_loop[f"changed_tokens_step{k}"] <= 1.0
                   for k in range(1, config.world_model_eval.horizon + 1))
        for name in ("model", "tokenized_copy", "raw_copy"):
            assert 0.0 <= open_loop[f"{name}_lpips"] < 1.5 and open_loop[f"{name}_psnr"] > 0
        control = action[split]["controllability"]
        assert control["extreme_actions_finite"] == 1.0
        assert 0.0 <= control["real_beats_negated_fraction"] <= 1.0
        assert all(0.0 <= control[f"done_fired_fraction_{k}"] <= 1.0
                   for k in ("real_actions", "gripper_open"))
        moved = control["moved_from_zero"]
        assert set(moved) == {"real", "negated", "zero", "+x", "-x", "+y", "-y", "+z", "-z",
                              "extreme"}
        assert moved["zero"] == 0.0 and all(0.0 <= v <= 1.0 for v in moved.values())
        assert (out / "action" / f"controllability_{split}.png").exists()
    assert action["rollout_compiles"] == 1  # one compiled rollout served every batch and split
    # generated frames' margins from the model itself: its latent head, so nothing is fitted
    # (the calibration saved is the flat stand-in; the fit for a model without the head is
    # tested in tests/world_model/test_evaluate.py)
    assert config.world_models.action.model.latent_head
    assert action["rollout_margins"] == config.world_model_eval.rollout_margins == "model"
    calibration = load_calibration(str(out / "action" / "eval" / "margin_calibration.json"))
    np.testing.assert_array_equal(calibration.margin, flat_calibration().margin)
    assert list((out / "action" / "videos").glob("rollout_*.gif"))
    assert (out / "text" / "goals_ood.png").exists()
    text = results["text"]["ood"]
    assert text["num_episodes"] == 4 and 0.0 <= text["goal_closer_than_initial_fraction"] <= 1.0
    rewards = results["rewards"]["ood"]
    assert rewards["num_episodes"] == 4
    assert -1.0 <= rewards["rewards"]["oracle_dense_both"]["median_rho"] <= 1.0
    assert rewards["rewards"]["rule"]["median_rho"] > 0.5  # the simulator's reward tracks progress
    for name in ("embedding", "proxy"):  # the learned baselines, fit on the train split
        assert name in rewards["rewards"]
    fit = results["rewards"]["baseline_fit"]  # on reward_fit_episodes of the train split
    assert fit["episodes"] == config.world_model_eval.reward_fit_episodes < len(
        wm_stages.load_cache(str(out), "train"))
    assert fit["embedding"]["train_mse"] < fit["embedding"]["train_mse_of_mean"]
    assert (out / "rewards" / "curves_ood.png").exists()
    assert "changed-token acc" in wm_stages.headline(results)

    # The stage rerun after only the text model's section changed (the pipeline moved the old
    # run aside): the finished action model is copied, the text model trained again.
    again = workdir / "again"
    again.mkdir()
    os.symlink(workdir / "tokenize_dataset", again / "tokenize_dataset")
    shutil.copytree(workdir / "train_world_models", again / "train_world_models.replaced-0")
    changed = tiny.get_config("debug")
    changed.world_models.text.num_steps += 1
    redone = wm_stages.run_train_world_models(changed, str(again / "train_world_models"))
    assert redone["action"]["carried_over_from"] == str(
        again / "train_world_models.replaced-0" / "action")
    assert redone["action"]["token_accuracy"] == trained["action"]["token_accuracy"]
    assert "carried_over_from" not in redone["text"]
    assert redone["text"]["step"] == changed.world_models.text.num_steps


def test_frame_rule_reward_pays_each_frame_what_reaching_it_earned():
    ep = wm_stages.data.Episode(np.zeros((4, 1, 1), np.int32), np.zeros((4, 7), np.float32),
                                np.zeros(4, np.float32), reward=np.asarray([0.1, 0.2, 1.0, 0.0]))
    np.testing.assert_allclose(wm_stages.frame_rule_reward(ep), [0.1, 0.1, 0.2, 1.0])


def test_model_identity_covers_the_data_the_tokenizer_and_the_models_own_section():
    config = tiny.get_config("debug")
    action, text = config.world_models.action, config.world_models.text
    base = wm_stages.model_identity(config, action)
    assert base == wm_stages.model_identity(tiny.get_config("debug"), action)
    assert base != wm_stages.model_identity(config, text)
    config.world_models.text.num_steps += 1  # the other model's section
    assert wm_stages.model_identity(config, config.world_models.action) == base
    config.world_models.action.seed += 1
    assert wm_stages.model_identity(config, config.world_models.action) != base
    for section, field, value in (("tokenizer", "num_steps", 7), ("data", "image_size", 32)):
        other = tiny.get_config("debug")
        other[section][field] = value
        assert wm_stages.model_identity(other, other.world_models.action) != base, section


def test_carry_over_copies_only_a_finished_run_of_the_same_identity(tmp_path):
    stage = tmp_path / "train_world_models"
    path = str(stage / "action")
    assert wm_stages.carry_over(path, "abc") is None  # no replaced run
    old = tmp_path / "train_world_models.replaced-1" / "action"
    (old / "checkpoints").mkdir(parents=True)
    (old / wm_stages.IDENTITY_FILE).write_text(json.dumps({"identity": "abc"}))
    assert wm_stages.carry_over(path, "abc") is None  # not finished: no held-out metrics
    (old / "eval").mkdir()
    (old / "eval" / "metrics.json").write_text("{}")
    assert wm_stages.carry_over(path, "other") is None  # another identity
    assert not os.path.exists(path)
    assert wm_stages.carry_over(path, "abc") == str(old)
    assert sorted(os.listdir(path)) == ["checkpoints", "eval", wm_stages.IDENTITY_FILE]
    assert not os.path.exists(path + ".partial")
