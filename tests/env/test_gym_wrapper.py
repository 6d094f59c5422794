"""Gymnasium front ends: the env checker, NaN actions, truncation, vector auto-reset, seeding."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from roboscape_jax.env.gym_wrapper import WorldModelGymEnv, WorldModelVectorEnv
from tests.env.conftest import MAX_STEPS


def test_single_env_passes_gymnasium_checker_and_compiles_once(env_and_params):
    gym_env = WorldModelGymEnv(*env_and_params, render_mode="rgb_array")
    check_env(gym_env, skip_render_check=False)
    obs, info = gym_env.reset(seed=1, options={"scene": 2})
    assert info["scene"] == 2 and obs in gym_env.observation_space
    for t in range(1, MAX_STEPS + 1):
        obs, reward, terminated, truncated, info = gym_env.step(gym_env.action_space.sample())
        assert isinstance(reward, float) and not terminated and truncated == (t == MAX_STEPS)
        assert obs in gym_env.observation_space and int(info["scene"]) == 2
    assert gym_env.render().shape == (128, 64, 3)
    assert gym_env._step._cache_size() == 1
    with pytest.raises(ValueError, match="1 NaN"):
        gym_env.step(np.array([0, 0, np.nan, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="shape"):
        gym_env.step(np.zeros(6))


def test_vector_env_autoresets_in_the_same_step_and_is_seeded(env_and_params):
    envs = WorldModelVectorEnv(*env_and_params, num_envs=2)
    runs = []
    for _ in range(2):
        obs, info = envs.reset(seed=7)
        assert obs in envs.observation_space and info["scene"].shape == (2,)
        rewards = []
        for t in range(1, MAX_STEPS + 1):
            actions = np.full((2, 7), 0.3 * t, np.float32)
            obs, reward, terminated, truncated, info = envs.step(actions)
            rewards.append(reward)
            assert reward.shape == (2,) and reward.dtype == np.float32
            np.testing.assert_array_equal(info["_final_obs"], t == MAX_STEPS)
        assert info["final_obs"]["frame"].shape == (2, 128, 64, 3)
        assert obs in envs.observation_space
        runs.append(np.stack(rewards))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert envs._step._cache_size() == 1
