"""PPO in the world-model env with random debug models: a run from an SFT policy completes with
finite rewards, writes per-update metrics and checkpoints, resumes, and bad policies fail early."""

import os

import jax
import numpy as np
import pytest

from experiments.configs import ppo_world_model as ppo_configs
from experiments.configs import sft as sft_configs
from experiments.stages.ppo_world_model import run_ppo_world_model
from experiments.stages.sft import run_sft
from roboscape_jax.utils.checkpoint import Checkpointer
from roboscape_jax.utils.metrics import read_jsonl


@pytest.fixture(scope="module", autouse=True)
def _fast_compiles(fast_compiles):
    yield


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory):
    """A 2-step debug SFT run: its `model` section is the debug PPO config's `policy`."""
    config = sft_configs.get_config("debug")
    config.sft.num_steps = 2
    workdir = tmp_path_factory.mktemp("sft")
    run_sft(config, str(workdir))
    return str(workdir)


def _raw_checkpoint(directory: str, step: int | None = None):
    with Checkpointer(directory) as ckpt:
        return ckpt.all_steps(), ckpt.restore(None, step)[0]


def _distance(a, b) -> float:
    return sum(float(np.abs(np.asarray(x) - np.asarray(y)).sum())
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_debug_run_from_sft_then_resume(tmp_path, sft_dir, capsys):
    config = ppo_configs.get_config("debug")
    config.sft_workdir = sft_dir
    workdir = str(tmp_path / "ppo")
    summary = run_ppo_world_model(config, workdir)
    assert summary["updates"] == 2 and summary["env_steps"] == 16
    assert np.isfinite(summary["env_steps_per_s"]) and summary["num_scenes"] == 3
    assert summary["compiles"] == 1  # the SFT params do not make the second chunk recompile
    rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:  # every env truncates once per update (max_steps 3, 4 steps per rollout)
        assert np.isfinite(row["reward"]) and np.isfinite(row["episode_return"])
        assert row["num_episodes"] == config.ppo.num_envs
        # The env's reward terms are logged per step: 1 - LPIPS (<= 1) plus the done bonus.
        assert row["info/dense"] <= 1.0 and 0.0 <= row["info/done_prob"] <= 1.0
        np.testing.assert_allclose(row["info/dense"] + row["info/sparse"], row["reward"],
                                   rtol=1e-5)
    steps, state = _raw_checkpoint(os.path.join(workdir, "checkpoints"))
    assert steps == [1, 2]
    ppo_params = state["train_state"]["params"]["params"]
    _, sft_state = _raw_checkpoint(os.path.join(sft_dir, "checkpoints"))
    _, first = _raw_checkpoint(os.path.join(workdir, "checkpoints"), 1)
    # Initialised from SFT: a few small PPO steps away from it, the log std reset to its init.
    encoder = ppo_params["encoder"]
    assert _distance(encoder, sft_state["params"]["params"]["encoder"]) < 0.01 * sum(
        float(np.abs(x).sum()) for x in jax.tree.leaves(encoder))
    np.testing.assert_allclose(first["train_state"]["params"]["params"]["log_std"], -0.5,
                               atol=1e-2)

    config.ppo.total_timesteps = 3 * 8  # one more update: resumes after update 2
    capsys.readouterr()
    summary = run_ppo_world_model(config, workdir)
    assert "resumed after update 2" in capsys.readouterr().out
    assert summary["updates"] == 3
    assert [r["step"] for r in read_jsonl(os.path.join(workdir, "metrics.jsonl"))] == [1, 2, 3]


def test_policy_of_the_wrong_width_fails_at_start(tmp_path):
    config = ppo_configs.get_config("debug")
    config.policy.action_dim = 6
    with pytest.raises(ValueError, match="network action width 6 != env action width 7"):
        run_ppo_world_model(config, str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints")
