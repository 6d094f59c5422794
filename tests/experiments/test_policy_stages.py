"""The policy stages of the pipeline at debug scale on the committed dataset: SFT, PPO in the
world model from the SFT checkpoint, policy restore, the ManiSkill evaluation (random, SFT and
PPO policies; rendering on the CPU) and the report."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from experiments.configs import tiny
from experiments.pipeline import run_pipeline
from experiments.stages import evaluate_policies as ev
from experiments.stages import ppo_maniskill as ppo_mani
from experiments.stages import ppo_world_model as ppo_stage
from experiments.stages import registry
from experiments.stages import tokenizer as tok_stages
from experiments.stages import world_model as wm_stages
from roboscape_jax.env import reward_baselines
from roboscape_jax.policies import loading
from roboscape_jax.policies.image import dummy_observation
from roboscape_jax.utils.metrics import read_jsonl
from roboscape_jax.world_model.margins import flat_calibration, save_calibration
from tests.experiments.conftest import debug_workdir


@pytest.fixture(scope="module", autouse=True)
def _fast_compiles(fast_compiles):
    yield


def _stages(*names):
    return [s for s in registry.STAGES if s.name in names]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A debug workdir with the dataset, a tokenizer, the token cache and both world models."""
    root = debug_workdir(tmp_path_factory)
    config = tiny.get_config("debug")
    tok_stages.run_train_tokenizer(config, str(root / "train_tokenizer"))
    tok_stages.run_tokenize_dataset(config, str(root / "tokenize_dataset"))
    wm_stages.run_train_world_models(config, str(root / "train_world_models"))
    wm_stages.run_train_text_ensemble(config, str(root / "train_text_ensemble"))
    return root


def test_sft_then_ppo_from_sft(workdir):
    config = tiny.get_config("debug")
    records = run_pipeline(_stages("sft", "ppo_world_model"), config, str(workdir))
    sft = records["sft"]["result"]
    assert sft["step"] == config.sft.num_steps and np.isfinite(sft["nll"])
    ppo = records["ppo_world_model"]["result"]
    assert ppo["init"] == "sft" and ppo["updates"] == 2 and ppo["num_scenes"] == 2
    assert os.path.isdir(workdir / "ppo_world_model" / "checkpoints")
    again = run_pipeline(_stages("sft", "ppo_world_model"), config, str(workdir))
    assert {r["status"] for r in again.values()} == {"cached"}
    # The copy penalty the world-model evaluation chose on val is the env's.
    assert ppo_stage.stage_view(config, str(workdir / "ppo_world_model")).env.copy_penalty == 0.0
    marker = workdir / "evaluate_world_models" / "stage.json"
    marker.parent.mkdir()
    marker.write_text(json.dumps({"result": {"action": {"copy_penalty": 0.5}}}))
    try:
        view = ppo_stage.stage_view(config, str(workdir / "ppo_world_model"))
        assert view.env.copy_penalty == 0.5 and view.sft_workdir.endswith("sft")
        assert view.env.num_maskgit_steps == config.ppo_world_model.env.num_maskgit_steps
        # ... and the MaskGIT passes, where the record has them
        marker.write_text(json.dumps({"result": {"action": {"copy_penalty": 0.5,
                                                            "maskgit_steps": 1}}}))
        view = ppo_stage.stage_view(config, str(workdir / "ppo_world_model"))
        assert view.env.num_maskgit_steps == 1 != config.ppo_world_model.env.num_maskgit_steps
        # ... and a new choice reruns the stage (its hash reads the chosen settings)
        assert ppo_stage.derived_inputs(config, str(workdir)) == {"copy_penalty": 0.5,
                                                                  "num_maskgit_steps": 1}
        # ... and an evaluation whose rollouts read the model's own margins
        marker.write_text(json.dumps({"result": {"action": {"copy_penalty": 0.5,
                                                            "rollout_margins": "model"}}}))
        assert ppo_stage.derived_inputs(config, str(workdir)) == {"copy_penalty": 0.5,
                                                                  "rollout_margins": "model"}
        with pytest.raises(FileNotFoundError, match="evaluate_world_models"):  # none written
            ppo_stage.pipeline_margin_calibration(str(workdir))
        save_calibration(ppo_stage.margin_calibration_path(str(workdir)), flat_calibration(0.3))
        np.testing.assert_allclose(
            ppo_stage.pipeline_margin_calibration(str(workdir)).margin, [0.3, 0.3])
        marker.write_text(json.dumps({"result": {"action": {"rollout_margins": "decoded"}}}))
        assert ppo_stage.pipeline_margin_calibration(str(workdir)) is None  # record: decoded
    finally:
        shutil.rmtree(marker.parent)


def test_restore_sft_and_ppo_policies(workdir):
    config = tiny.get_config("debug")
    if not (workdir / "ppo_world_model" / "stage.json").exists():
        run_pipeline(_stages("sft", "ppo_world_model"), config, str(workdir))
    params = {}
    for name in ("sft", "ppo_world_model"):
        policy, params[name] = loading.restore_policy(str(workdir / name), config.sft.model)
        act = loading.make_act_fn(policy, deterministic=True)
        obs = jax.tree.map(lambda x: x[0], dummy_observation(batch=(1,)))
        action = np.asarray(act(params[name], obs, jax.random.PRNGKey(0)))
        assert action.shape == (7,) and np.abs(action).max() <= 1.0
    diff = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), params["sft"],
                        params["ppo_world_model"])
    assert max(jax.tree.leaves(diff)) > 0  # PPO moved the SFT policy
    wider = config.sft.model.to_dict()
    wider["hidden"] = (32,)
    with pytest.raises(ValueError, match="hidden"):
        loading.restore_policy(str(workdir / "ppo_world_model"), wider)
    with pytest.raises(FileNotFoundError, match="nowhere/checkpoints"):
        loading.restore_policy(str(workdir / "nowhere"), config.sft.model)


def test_reward_baseline_stage_runs_ppo_with_its_head_only_when_asked(workdir):
    config = tiny.get_config("debug")
    if not (workdir / "ppo_world_model" / "stage.json").exists():
        run_pipeline(_stages("sft", "ppo_world_model"), config, str(workdir))
    stage = _stages("ppo_embedding_reward")
    assert run_pipeline(stage, config, str(workdir))["ppo_embedding_reward"]["result"] == {
        "skipped": 1.0}  # reward_baselines.rewards is empty
    config.reward_baselines.rewards = ("embedding",)
    with pytest.raises(FileNotFoundError, match="embedding_head.msgpack"):
        run_pipeline(stage, config, str(workdir))  # no fitted head: evaluate_world_models's
    width = config.world_models.action.model.width
    rng = np.random.default_rng(0)
    head, _ = reward_baselines.fit_reward_head(rng.normal(size=(64, width)), rng.uniform(size=64),
                                               steps=2, hidden=(8,))
    path = ppo_stage.reward_head_path(str(workdir), "embedding")
    os.makedirs(os.path.dirname(path))
    try:
        reward_baselines.save_reward_head(path, head)
        result = run_pipeline(stage, config, str(workdir))["ppo_embedding_reward"]["result"]
    finally:
        shutil.rmtree(workdir / "evaluate_world_models")
    assert result["reward_module"] == "embedding" and result["updates"] == 2
    assert result["init"] == "sft" and np.isfinite(result["reward"])
    scenes = workdir / "ppo_embedding_reward" / ppo_stage.SCENES_FILE  # the WM stage's scenes
    assert scenes.read_bytes() == (workdir / "ppo_world_model" / ppo_stage.SCENES_FILE).read_bytes()


def test_ppo_in_maniskill_from_sft_then_resume(workdir, capsys):
    config = tiny.get_config("debug")
    if not (workdir / "sft" / "stage.json").exists():
        run_pipeline(_stages("sft"), config, str(workdir))
    result = run_pipeline(_stages("ppo_maniskill"), config, str(workdir))["ppo_maniskill"]["result"]
    assert result["init"] == "sft" and result["updates"] == 2 and result["env_steps"] == 8
    assert np.isfinite(result["total_loss"]) and 0.0 <= result["reward"] <= 1.0
    rows = read_jsonl(str(workdir / "ppo_maniskill" / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2]
    assert sum(r["num_episodes"] for r in rows) == 2  # max_steps 3: truncated after steps 3 and 6
    loading.restore_policy(str(workdir / "ppo_maniskill"), config.sft.model)
    config.ppo_maniskill.ppo.total_timesteps = 12
    capsys.readouterr()
    again = ppo_mani.run_ppo_maniskill(config, str(workdir / "ppo_maniskill"))
    assert "resumed after update 2" in capsys.readouterr().out and again["updates"] == 3
    assert again["train_wall_s"] > 0  # carried over the resume in the checkpoint record
    # a wall-time budget already spent: no further update although total_timesteps allows 10
    config.ppo_maniskill.ppo.total_timesteps = 40
    config.ppo_maniskill.match_wall_time = True
    budget = again["train_wall_s"] * 0.5
    original = ppo_mani.wall_time_budget
    ppo_mani.wall_time_budget = lambda c, root: budget
    try:
        capped = ppo_mani.run_ppo_maniskill(config, str(workdir / "ppo_maniskill"))
    finally:
        ppo_mani.wall_time_budget = original
    assert capped["updates"] == 3 and capped["wall_time_budget_s"] == budget
    assert "stopped after update 3 of 10" in capsys.readouterr().out


def test_maniskill_wall_time_budget_is_the_world_model_stages(tmp_path):
    c = tiny.get_config("debug").ppo_maniskill
    assert ppo_mani.wall_time_budget(c, str(tmp_path)) is None  # off in debug
    c.match_wall_time = True
    with pytest.raises(FileNotFoundError, match="ppo_world_model.*stage.json"):
        ppo_mani.wall_time_budget(c, str(tmp_path))
    (tmp_path / "ppo_world_model").mkdir()
    (tmp_path / "ppo_world_model" / "stage.json").write_text(json.dumps({"wall_time_s": 42.5}))
    assert ppo_mani.wall_time_budget(c, str(tmp_path)) == 42.5
    # the budget keys the stage's cache: a rerun world-model stage reruns the ManiSkill one
    config = tiny.get_config("debug")
    assert ppo_mani.derived_inputs(config, str(tmp_path)) == {}  # match_wall_time off
    config.ppo_maniskill.match_wall_time = True
    assert ppo_mani.derived_inputs(config, str(tmp_path)) == {"wall_time_budget_s": 42.5}
    assert ppo_mani.derived_inputs(config, str(tmp_path / "none")) == {}  # no record yet


def test_evaluate_in_maniskill_then_report(workdir, capsys):
    config = tiny.get_config("debug")
    if not (workdir / "ppo_maniskill" / "stage.json").exists():
        run_pipeline(_stages("sft", "ppo_world_model", "ppo_maniskill"), config, str(workdir))
    records = run_pipeline(_stages("evaluate", "report"), config, str(workdir))
    results = records["evaluate"]["result"]
    assert list(results) == ["random", "sft", "ppo_world_model", "ppo_maniskill"]
    for splits in results.values():
        assert set(splits) == {"ind", "ood"}
        for split in splits.values():
            assert set(split) == {"push", "all"} and split["all"]["episodes"] == 1
            assert 1 <= split["all"]["mean_steps"] <= config.evaluate.max_steps
            assert split["all"]["ci_low"] <= split["all"]["success_rate"] <= split["all"]["ci_high"]
    out = workdir / "evaluate"
    assert (out / "strips" / "sft_ood.png").exists() and (out / "videos" / "sft_ood.gif").exists()
    record = json.loads((out / "episodes" / "sft" / os.listdir(out / "episodes" / "sft")[0])
                        .read_text())
    assert record["task"] == "push" and record["steps"] <= config.evaluate.max_steps
    assert any(word in record["instruction"] for word in ("push", "slide"))
    assert (workdir / "report" / "table1.png").exists()
    report = (workdir / "report" / "report.md").read_text()
    for row in ("| random |", "| SFT |", "| RL w. World Model |", "| RL w. ManiSkill |",
                "| sft |", "push OOD"):
        assert row in report, row
    # Each policy's first episode per split is kept as a trace and replayed in the world model.
    traces = sorted(os.listdir(out / "traces"))
    assert traces == sorted(f"{p}_{s}.npz" for p in results for s in ("ind", "ood"))
    with np.load(out / "traces" / "sft_ood.npz") as npz:
        assert npz["frames"].shape[0] == npz["actions"].shape[0] + 1
        assert npz["frames"].shape[1:] == (128, 64, 3) and npz["actions"].shape[1] == 7
    imagined = records["report"]["result"]["imagination"]
    assert sorted(imagined) == [t[:-4] for t in traces]
    for name, r in imagined.items():
        assert np.isfinite(r["psnr_imagined"]) and (workdir / "report" / r["strip"]).exists()
        assert f"| {name} | push |" in report
    assert "## Imagination vs simulator" in report
    for name in ("train_tokenizer", "train_world_models_action", "train_world_models_text"):
        assert f"](curves/{name}_curves.png)" in report, name
        assert (workdir / "report" / "curves" / f"{name}_curves.png").stat().st_size > 0
    assert "The evaluate_world_models stage has not run" in report
    # A missing trace reruns its episode (and only it).
    os.remove(out / "traces" / "random_ind.npz")
    capsys.readouterr()
    ev.run_evaluate_policies(config, str(out))
    assert "(1 to run)" in capsys.readouterr().out and (out / "traces" / "random_ind.npz").exists()
    # Resume: only the missing episode runs again.
    os.remove(out / "episodes" / "random" / os.listdir(out / "episodes" / "random")[0])
    capsys.readouterr()
    again = ev.run_evaluate_policies(config, str(out))
    assert "(1 to run)" in capsys.readouterr().out
    assert again["random"]["ind"]["all"]["episodes"] == 1
    # A retrained policy (another run of its stage) is evaluated again; the others are kept.
    marker = workdir / "sft" / "stage.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "wall_time_s": -1.0}))
    ev.run_evaluate_policies(config, str(out))
    assert "(2 to run)" in capsys.readouterr().out


def test_evaluate_names_a_missing_checkpoint_before_any_episode(tmp_path):
    config = tiny.get_config("debug")
    with pytest.raises(FileNotFoundError, match="train_tokenizer/checkpoints"):
        ev.load_controllers(config, str(tmp_path))
    config.evaluate.policies = ("random", "ppo_gymnax")
    with pytest.raises(ValueError, match="unknown policies \\['ppo_gymnax'\\]"):
        ev.load_controllers(config, str(tmp_path))


def test_summarise_and_table_by_hand():
    rows = [{"split": "ind", "task": "push", "success": s, "steps": n}
            for s, n in ((True, 10), (False, 100), (True, 30), (True, 20))]
    rows.append({"split": "ood", "task": "pull", "success": False, "steps": 100})
    summary = ev.summarise(rows)
    push = summary["ind"]["push"]
    assert (push["successes"], push["episodes"], push["success_rate"]) == (3, 4, 0.75)
    assert push["mean_steps"] == 40.0 and push["ci_low"] < 0.75 < push["ci_high"]
    assert summary["ood"]["all"]["success_rate"] == 0.0
    table = ev.success_table({"sft": summary}, ("push", "pull"))
    assert "| SFT | 75% (3/4; 30-95) | - | - | 0% (0/1; 0-79) | 75% (3/4; 30-95) |" in table
