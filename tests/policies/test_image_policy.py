"""The image actor-critic: shapes, bounded means, value shape, and PPO's validate() errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax.policies.image import ImageActorCritic, dummy_observation
from roboscape_jax.rl import LogWrapper, PPOConfig, make_ppo
from tests.policies.toy_env import FRAME, ToyImageEnv

SMALL = dict(conv_features=(4, 4), conv_out=8, hidden=(16,))
TINY_PPO = PPOConfig(num_envs=2, num_steps=4, total_timesteps=16, update_epochs=1,
                     num_minibatches=2, activation="relu")


def _random_obs(key, batch):
    rng_f, rng_i, rng_g = jax.random.split(key, 3)
    return {"frame": jax.random.randint(rng_f, (*batch, 128, 64, 3), 0, 256).astype(jnp.uint8),
            "instruction": jax.random.normal(rng_i, (*batch, 384)),
            "gripper": jax.random.uniform(rng_g, (*batch, 1), minval=-1, maxval=1)}


def test_shapes_and_parameter_count():
    policy = ImageActorCritic()  # the default (tiny) sizes
    params = jax.jit(policy.init)(jax.random.PRNGKey(0), dummy_observation(batch=(1,)))
    num = sum(x.size for x in jax.tree.leaves(params))
    # convs 3->16->32->32->32 (3x3), dense 8*4*32 -> 256, trunk (256+384+1) -> 256 -> 256, heads
    convs = (27 * 16 + 16) + (144 * 32 + 32) + 2 * (288 * 32 + 32)
    expected = convs + (1024 * 256 + 256) + (641 * 256 + 256) + (256 * 256 + 256) + (256 * 7 + 7)
    assert num == expected + (256 + 1) + 7
    for batch in [(5,), (2, 3)]:
        dist, value = policy.apply(params, _random_obs(jax.random.PRNGKey(1), batch))
        assert dist.mean.shape == dist.log_std.shape == (*batch, 7)
        assert value.shape == batch and value.dtype == jnp.float32
        assert dist.log_prob(dist.mean).shape == batch


def test_action_mean_is_bounded_and_samples_differ_per_key():
    policy = ImageActorCritic(**SMALL)
    params = policy.init(jax.random.PRNGKey(0), dummy_observation(batch=(1,)))
    # Blow up the actor head: the tanh keeps the mean inside [-1, 1] anyway.
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: x * 1e4 if "actor" in jax.tree_util.keystr(p) else x, params)
    obs = _random_obs(jax.random.PRNGKey(2), (16,))
    obs["instruction"] = obs["instruction"] * 100.0
    dist, _ = policy.apply(params, obs)
    assert np.abs(np.asarray(dist.mode())).max() <= 1.0
    assert np.abs(np.asarray(dist.mode())).max() > 0.99  # saturated, not zero
    a, b = dist.sample(jax.random.PRNGKey(3)), dist.sample(jax.random.PRNGKey(4))
    assert not np.allclose(a, b)


def test_bad_observation_is_named():
    policy = ImageActorCritic(**SMALL)
    obs = dummy_observation(batch=(2,))
    with pytest.raises(ValueError, match="lacks \\['gripper'\\]"):
        policy.init(jax.random.PRNGKey(0), {k: v for k, v in obs.items() if k != "gripper"})
    with pytest.raises(AssertionError):
        policy.init(jax.random.PRNGKey(0), {**obs, "gripper": jnp.zeros((3, 1))})


def test_ppo_validate_errors_on_the_image_policy():
    env = LogWrapper(ToyImageEnv(action_dim=7))
    with pytest.raises(ValueError, match="network action width 6 != env action width 7"):
        make_ppo(TINY_PPO, env, None, ImageActorCritic(action_dim=6, **SMALL))
    bad = PPOConfig(**{**vars(TINY_PPO), "num_minibatches": 3})
    with pytest.raises(ValueError, match="not divisible by num_minibatches = 3"):
        make_ppo(bad, env, None, ImageActorCritic(**SMALL))


def test_ppo_trains_the_image_policy_on_dict_observations():
    env = LogWrapper(ToyImageEnv())
    fns = make_ppo(TINY_PPO, env, None, ImageActorCritic(**SMALL))
    runner, metrics = jax.jit(fns.train)(jax.random.PRNGKey(0))
    assert runner.obs["frame"].shape == (2, *FRAME) and runner.obs["frame"].dtype == jnp.uint8
    assert metrics["total_loss"].shape == (2,)
    for key in ("total_loss", "reward", "episode_return", "approx_kl"):
        assert np.isfinite(metrics[key]).all(), key
    before = fns.init(jax.random.PRNGKey(0)).train_state.params
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before,
                           runner.train_state.params)
    assert all(jax.tree.leaves(changed["params"]["encoder"]))  # gradients reach the CNN
