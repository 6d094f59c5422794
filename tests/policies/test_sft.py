"""SFT on the committed debug dataset: observations built as the world-model env builds them, the
loss falls, a resumed run matches an uninterrupted one, and the checkpoint restores for PPO."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import ppo_world_model as ppo_configs
from experiments.configs import sft as sft_configs
from experiments.stages.ppo_world_model import random_models
from experiments.stages.sft import load_sft_data, observation_frame_fn
from roboscape_jax.env import EnvConfig, Scenes, WorldModelEnv
from roboscape_jax.policies import sft
from roboscape_jax.tokenizer.losses import load_lpips_params
from roboscape_jax.utils.metrics import read_jsonl


@pytest.fixture(scope="module")
def data():
    return load_sft_data(sft_configs.get_config("debug"))


def _config(num_steps: int):
    config = sft_configs.get_config("debug").sft
    config.update(num_steps=num_steps, log_every_steps=5, eval_every_steps=10)
    return config


def test_gripper_state_integrates_the_commands_by_hand():
    states = sft.gripper_states(jnp.array([-1.0, -1, -1, -1, -1, 1, 1]), 1.0, 0.5)
    np.testing.assert_array_equal(states, [1.0, 0.5, 0.0, -0.5, -1.0, -1.0, -0.5])


def test_observations_match_the_world_model_env(data):
    """Frames through the tokenizer and integrated gripper states equal what the env shows."""
    models = random_models(ppo_configs.get_config("debug"))
    (tok, tok_params), (action_model, action_params) = models["tokenizer"], models["action"]
    train = data["train"]
    n = 4  # the first steps of episode 0
    scenes = Scenes(jnp.asarray(train.frames[:1]), jnp.asarray(train.instructions[:1]),
                    jnp.asarray(train.frames[:1]), jnp.ones((1,), bool))
    env = WorldModelEnv(tok, action_model, EnvConfig(max_steps=10))
    params = env.make_params(tok_params, action_params, load_lpips_params(), scenes)
    np.testing.assert_array_equal(sft.tokenized_frames(tok, tok_params, train.frames[:1]),
                                  params.initial_obs_frame)
    obs, state = env.reset_to(jnp.int32(0), params)
    step = jax.jit(env.step_env)
    seen = []
    for t in range(n):
        seen.append(float(obs["gripper"][0]))
        np.testing.assert_array_equal(obs["instruction"], train.instructions[0])
        obs, state, *_ = step(jax.random.PRNGKey(t), state, jnp.asarray(train.actions[t]), params)
    np.testing.assert_array_equal(seen, train.gripper[:n, 0])
    assert train.gripper.min() < 0.0 < train.gripper.max()  # the gripper closes and opens


def test_sft_lowers_the_loss_and_resumes_exactly(tmp_path, data):
    config = _config(60)
    config.checkpoint_every_steps = 25
    config.augment_shift = 2  # the step's key draws the shifts: a resumed run draws the same
    policy = sft.create_policy(config.model)
    eval_train = sft.make_eval_fn(policy, data["train"], num_samples=64, batch_size=32)
    initial = sft.init_state(config, policy, sft.make_optimizer(config), (128, 64, 3), 384)
    full = sft.train_and_evaluate(config, str(tmp_path / "full"), data)
    before, after = eval_train(initial)["nll"], eval_train(full)["nll"]
    assert after < before - 1.0, (before, after)
    full_params = jax.tree.map(np.asarray, full.params)

    for step in ("50", "60"):  # as if the run had been killed after its step-25 checkpoint
        shutil.rmtree(tmp_path / "full" / "checkpoints" / step)
    resumed = sft.train_and_evaluate(config, str(tmp_path / "full"), data)
    assert int(resumed.step) == 60
    jax.tree.map(np.testing.assert_array_equal, resumed.params, full_params)
    rows = read_jsonl(str(tmp_path / "full" / "metrics.jsonl"))
    assert [r["step"] for r in rows if "loss" in r] == list(range(5, 61, 5))

    _, params = sft.restore_params(str(tmp_path / "full"), config.model)
    jax.tree.map(np.testing.assert_array_equal, params, full.params)
    other = config.model.copy_and_resolve_references()
    other.hidden = (8,)
    with pytest.raises(ValueError, match="model.hidden"):
        sft.restore_params(str(tmp_path / "full"), other)


def test_bad_observation_settings_are_named(tmp_path, data):
    config = sft_configs.get_config("debug")
    config.sft.observation_frames = "tokenized"
    config.tokenizer_dir = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="needs a tokenizer checkpoint"):
        observation_frame_fn(config)
    bad = _config(2)
    bad.observation_frames = "latents"
    with pytest.raises(ValueError, match="observation_frames must be one of"):
        sft.train_and_evaluate(bad, str(tmp_path / "bad"), data)
    with pytest.raises(FileNotFoundError, match="no SFT checkpoints"):
        sft.restore_params(str(tmp_path / "nothing"), bad.model)
