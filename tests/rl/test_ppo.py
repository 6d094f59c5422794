"""PPO smoke tests: jit, vmap over seeds, determinism, chunking, bad configs."""

import dataclasses

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax.policies import ActorCritic
from roboscape_jax.rl import ClipActionWrapper, LogWrapper, PPOConfig, make_ppo
from roboscape_jax.rl.ppo import num_updates

TINY = PPOConfig(
    num_envs=2, num_steps=16, total_timesteps=3 * 32, update_epochs=2, num_minibatches=2
)


@pytest.fixture(scope="module")
def cartpole():
    env, params = gymnax.make("CartPole-v1")
    return LogWrapper(env), params


@pytest.fixture(scope="module")
def vmapped_run(cartpole):
    env, params = cartpole
    fns = make_ppo(TINY, env, params, ActorCritic(2))
    keys = jnp.stack([jax.random.key(0), jax.random.key(0), jax.random.key(1)])
    return fns, jax.jit(jax.vmap(fns.train))(keys)


def test_train_vmapped_over_seeds_shapes(vmapped_run):
    _, (runner, metrics) = vmapped_run
    assert num_updates(TINY) == 3
    assert metrics["total_loss"].shape == (3, 3)
    assert runner.obs.shape == (3, TINY.num_envs, 4)
    for key in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac"):
        assert np.isfinite(metrics[key]).all(), key
    np.testing.assert_array_equal(metrics["env_steps"][0], [32, 64, 96])


def test_train_is_deterministic_per_key(vmapped_run):
    _, (runner, metrics) = vmapped_run
    same = jax.tree.map(lambda x: np.array_equal(x[0], x[1]), runner.train_state.params)
    assert all(jax.tree.leaves(same))
    np.testing.assert_array_equal(metrics["total_loss"][0], metrics["total_loss"][1])
    assert not np.array_equal(metrics["total_loss"][0], metrics["total_loss"][2])


def test_chunked_updates_match_train(vmapped_run):
    fns, (runner_full, _) = vmapped_run
    run = jax.jit(fns.run_updates, static_argnums=1)
    runner = jax.jit(fns.init)(jax.random.key(0))
    for _ in range(3):  # three chunks of one update, one compilation
        runner, last = run(runner, 1)
    assert last["total_loss"].shape == (1,) and int(last["update"][0]) == 3
    full = jax.tree.map(lambda x: x[0], runner_full.train_state.params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        runner.train_state.params,
        full,
    )


def test_continuous_pendulum_smoke():
    env, params = gymnax.make("Pendulum-v1")
    env = LogWrapper(ClipActionWrapper(env))
    net = ActorCritic(action_dim=1, discrete=False)
    logged = []
    fns = make_ppo(TINY, env, params, net, callback=logged.append)
    runner, metrics = jax.jit(fns.train)(jax.random.key(0))
    jax.effects_barrier()
    assert len(logged) == 3 and np.isfinite(metrics["total_loss"]).all()
    assert runner.train_state.params["params"]["log_std"].shape == (1,)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_minibatches=3), "not divisible by num_minibatches"),
        (dict(num_envs=0), "num_envs must be positive"),
        (dict(update_epochs=-1), "update_epochs must be positive"),
        (dict(total_timesteps=10), "below one rollout"),
        (dict(activation="gelu"), "activation"),
    ],
)
def test_bad_config_raises(cartpole, overrides, message):
    env, params = cartpole
    config = PPOConfig(**{**vars(TINY), **overrides})
    with pytest.raises(ValueError, match=message):
        make_ppo(config, env, params, ActorCritic(2))


def test_bad_network_raises(cartpole):
    env, params = cartpole
    with pytest.raises(ValueError, match="action width 3"):
        make_ppo(TINY, env, params, ActorCritic(3))
    with pytest.raises(ValueError, match="discrete"):
        make_ppo(TINY, env, params, ActorCritic(2, discrete=False))


def test_config_from_dict_rejects_unknown_fields():
    assert PPOConfig.from_config({"num_envs": 8}).num_envs == 8
    with pytest.raises(ValueError, match="NUM_ENVS"):
        PPOConfig.from_config({"NUM_ENVS": 8})


def test_truncation_bootstrap_equals_next_values_when_no_episode_ends():
    """With no episode ending inside the rollout, V(final observation) of step t is V(obs t+1):
    the batched bootstrap pass must give PureJaxRL's shifted values, update for update (an
    off-by-one in time or a mixed-up env axis would not)."""
    env, params = gymnax.make("Pendulum-v1")  # 200-step episodes, no termination
    env = LogWrapper(ClipActionWrapper(env))
    net = ActorCritic(action_dim=1, discrete=False)
    config = PPOConfig(num_envs=3, num_steps=16, total_timesteps=2 * 48, update_epochs=1,
                       num_minibatches=2)
    results = []
    for bootstrap in (True, False):
        fns = make_ppo(dataclasses.replace(config, bootstrap_truncation=bootstrap), env, params,
                       net)
        runner, metrics = jax.jit(fns.train)(jax.random.key(3))
        assert not np.asarray(metrics["num_episodes"]).any()
        results.append((runner.train_state.params, metrics["value_loss"]))
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(results[0][0]), jax.tree.leaves(results[1][0]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("bootstrap", [True, False])
def test_values_after_rollout_matches_values_inside_the_rollout(bootstrap):
    """Valuing the rollout (and the truncation bootstrap's final observations) in one pass after
    it is the same PPO as valuing each step inside it: equal losses and parameters, update for
    update, with and without the bootstrap (a value of the wrong step or env, or a dropped
    bootstrap value, would not be)."""
    env, params = gymnax.make("CartPole-v1")  # episodes end inside the rollout
    config = dataclasses.replace(TINY, num_envs=3, total_timesteps=4 * 48,
                                 bootstrap_truncation=bootstrap)
    results = []
    for after, final_in_rollout in ((True, False), (False, False), (False, True), (True, True)):
        fns = make_ppo(dataclasses.replace(config, values_after_rollout=after,
                                           final_values_in_rollout=final_in_rollout),
                       LogWrapper(env), params, ActorCritic(2))
        runner, metrics = jax.jit(fns.train)(jax.random.key(5))
        assert np.asarray(metrics["num_episodes"]).sum() > 0
        results.append((runner.train_state.params, metrics))
    for other in results[1:]:
        for key in ("value_loss", "policy_loss", "total_loss"):
            np.testing.assert_allclose(results[0][1][key], other[1][key], rtol=1e-4, atol=1e-6)
        for a, b in zip(jax.tree.leaves(results[0][0]), jax.tree.leaves(other[0]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
