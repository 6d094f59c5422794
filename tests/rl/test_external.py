"""PPO on externally collected rollouts: the jitted policy step and update on a synthetic
rollout of the debug image policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.policy import policy_config
from roboscape_jax.policies.image import dummy_observation
from roboscape_jax.policies.sft import create_policy
from roboscape_jax.rl.external import (
    Rollout,
    create_train_state,
    make_policy_step,
    make_update,
    make_value_fn,
)
from roboscape_jax.rl.ppo import PPOConfig

CONFIG = PPOConfig(num_envs=1, num_steps=6, total_timesteps=12, update_epochs=2,
                   num_minibatches=3, ent_coef=0.0)


def _rollout(policy, params, terminated_at: int) -> Rollout:
    act, value = make_policy_step(policy), make_value_fn(policy)
    obs = dummy_observation(batch=(1,))
    obs = {**obs, "frame": jax.random.randint(jax.random.PRNGKey(1), obs["frame"].shape, 0, 256
                                              ).astype(jnp.uint8)}
    steps = [act(params, obs, jax.random.PRNGKey(t)) for t in range(CONFIG.num_steps)]
    t_idx = np.arange(CONFIG.num_steps)[:, None]
    stack = lambda xs: jnp.stack(xs)  # noqa: E731
    return Rollout(obs=jax.tree.map(lambda x: jnp.stack([x] * CONFIG.num_steps), obs),
                   action=stack([s.action for s in steps]),
                   reward=jnp.asarray(t_idx == terminated_at, jnp.float32),
                   terminated=jnp.asarray(t_idx == terminated_at),
                   done=jnp.asarray(t_idx == terminated_at),
                   value=stack([s.value for s in steps]),
                   log_prob=stack([s.log_prob for s in steps]),
                   next_value=jnp.broadcast_to(value(params, obs), (CONFIG.num_steps, 1)))


def test_update_trains_on_an_external_rollout():
    policy = create_policy(policy_config("debug"))
    params = policy.init(jax.random.PRNGKey(0), dummy_observation(batch=(1,)))
    step = make_policy_step(policy)(params, dummy_observation(batch=(1,)), jax.random.PRNGKey(0))
    assert step.action.shape == (1, 7) and step.log_prob.shape == step.value.shape == (1,)
    update = make_update(CONFIG, policy)
    state = create_train_state(CONFIG, policy, params)
    new_state, metrics = update(state, _rollout(policy, params, 2), jax.random.PRNGKey(2))
    assert int(new_state.step) == 2 * 3 and int(metrics["update"]) == 1
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert float(metrics["reward"]) == pytest.approx(1 / 6)
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), params, new_state.params)
    assert max(jax.tree.leaves(moved)) > 0
    # The value target depends on where the episode terminated (no bootstrap past it).
    _, other = update(state, _rollout(policy, params, 4), jax.random.PRNGKey(2))
    assert float(other["value_loss"]) != float(metrics["value_loss"])
    with pytest.raises(AssertionError):  # a rollout of another length
        short = jax.tree.map(lambda x: x[:4], _rollout(policy, params, 2))
        update(state, short, jax.random.PRNGKey(2))
