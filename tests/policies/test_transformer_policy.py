"""The VLA-style transformer actor-critic: parameter count, shapes and bounds, the readout mask,
named errors, determinism, and that behaviour cloning and PPO train it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from roboscape_jax.policies.image import dummy_observation
from roboscape_jax.policies.sft import bc_loss
from roboscape_jax.policies.transformer import TransformerActorCritic, readout_mask
from roboscape_jax.rl import LogWrapper, PPOConfig, make_ppo
from roboscape_jax.utils.training import create_train_state, make_train_step
from tests.policies.test_image_policy import TINY_PPO, _random_obs
from tests.policies.toy_env import FRAME, ToyImageEnv

SMALL = dict(patch_size=16, width=16, num_layers=1, num_heads=2, mlp_ratio=2)  # the debug sizes


@pytest.fixture(scope="module")
def small():
    policy = TransformerActorCritic(**SMALL)
    params = jax.jit(policy.init)(jax.random.PRNGKey(0), dummy_observation(batch=(1,)))
    return policy, params, jax.jit(policy.apply)


def test_parameter_count_of_the_tiny_sizes():
    policy = TransformerActorCritic()  # the default (tiny) sizes: no compile, shapes only
    params = jax.eval_shape(policy.init, jax.random.PRNGKey(0), dummy_observation(batch=(1,)))
    d, tokens = 64, (128 // 8) * (64 // 8)
    embed = (8 * 8 * 3 * d + d) + tokens * d + (384 * d + d) + (1 * d + d) + 2 * d
    block = 2 * (2 * d) + 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    heads = 2 * d + (d * 7 + 7) + (d + 1) + 7  # final LayerNorm, actor, critic, log std
    assert sum(x.size for x in jax.tree.leaves(params)) == embed + 2 * block + heads == 146_063
    assert params["params"]["tokens"]["position_embedding"].shape == (128, d)


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_shapes_for_batched_and_unbatched_observations(small, batch):
    policy, params, apply = small
    dist, value = apply(params, _random_obs(jax.random.PRNGKey(1), batch))
    assert dist.mean.shape == dist.log_std.shape == (*batch, 7)
    assert value.shape == batch and value.dtype == jnp.float32
    assert dist.log_prob(dist.mean).shape == batch
    assert np.isfinite(np.asarray(value)).all()


def test_mean_and_log_std_are_bounded_and_samples_differ_per_key(small):
    policy, params, apply = small
    inner = params["params"]
    big = {**params, "params": {**inner, "log_std": jnp.full((7,), -100.0),
                                "actor": jax.tree.map(lambda x: x * 1e4, inner["actor"])}}
    dist, _ = apply(big, _random_obs(jax.random.PRNGKey(2), (16,)))
    mode = np.abs(np.asarray(dist.mode()))
    assert mode.max() <= 1.0 and mode.max() > 0.99  # tanh-saturated, not zero
    np.testing.assert_array_equal(dist.log_std, policy.log_std_min)  # clipped from below
    dist, _ = apply(params, _random_obs(jax.random.PRNGKey(2), (16,)))
    assert not np.allclose(dist.sample(jax.random.PRNGKey(3)), dist.sample(jax.random.PRNGKey(4)))


def test_readout_mask_by_hand_and_the_action_ignores_the_value_readout(small):
    # Rows are queries: 2 observation tokens see each other, each readout sees them and itself.
    np.testing.assert_array_equal(readout_mask(2, 2), [[1, 1, 0, 0], [1, 1, 0, 0],
                                                       [1, 1, 1, 0], [1, 1, 0, 1]])
    _, params, apply = small
    obs = _random_obs(jax.random.PRNGKey(5), (4,))
    readouts = params["params"]["readouts"]
    noise = jax.random.normal(jax.random.PRNGKey(6), readouts.shape[1:])  # not constant: LN
    moved = {**params, "params": {**params["params"], "readouts": readouts.at[1].add(noise)}}
    (dist, value), (dist2, value2) = apply(params, obs), apply(moved, obs)
    np.testing.assert_array_equal(dist.mean, dist2.mean)  # the value readout is invisible to it
    assert not np.allclose(value, value2)


def test_malformed_observations_and_action_widths_are_named():
    obs = dummy_observation(batch=(2,))
    policy = TransformerActorCritic(**SMALL)
    with pytest.raises(ValueError, match="lacks \\['instruction'\\]"):
        policy.init(jax.random.PRNGKey(0), {k: v for k, v in obs.items() if k != "instruction"})
    with pytest.raises(AssertionError):
        policy.init(jax.random.PRNGKey(0), {**obs, "gripper": jnp.zeros((3, 1))})
    with pytest.raises(ValueError, match="patch_size 16 does not divide the frame's 16x8"):
        policy.init(jax.random.PRNGKey(0), dummy_observation(FRAME, 4, (1,)))
    env = LogWrapper(ToyImageEnv(action_dim=7))
    with pytest.raises(ValueError, match="network action width 6 != env action width 7"):
        make_ppo(TINY_PPO, env, None, TransformerActorCritic(action_dim=6, **{**SMALL,
                                                                             "patch_size": 8}))
    narrow = TransformerActorCritic(action_dim=6, **SMALL)
    dist, _ = jax.eval_shape(narrow.init_with_output, jax.random.PRNGKey(0), obs)[0]
    with pytest.raises(AssertionError):  # BC on 7-D actions with a 6-D policy
        bc_loss(dist, jnp.zeros((2, 7)))


def test_deterministic_per_key(small):
    policy, params, apply = small
    init = jax.jit(policy.init)
    again = init(jax.random.PRNGKey(0), dummy_observation(batch=(1,)))
    jax.tree.map(np.testing.assert_array_equal, params, again)
    other = init(jax.random.PRNGKey(1), dummy_observation(batch=(1,)))
    assert not np.allclose(params["params"]["readouts"], other["params"]["readouts"])
    obs = _random_obs(jax.random.PRNGKey(6), (3,))
    (d1, v1), (d2, v2) = apply(params, obs), apply(params, obs)
    np.testing.assert_array_equal(d1.mean, d2.mean)
    np.testing.assert_array_equal(v1, v2)


def test_behaviour_cloning_steps_lower_the_loss(small):
    policy, params, _ = small
    obs = _random_obs(jax.random.PRNGKey(7), (16,))
    # Targets the observation determines: the gripper opening and a brightness of the frame.
    brightness = obs["frame"].astype(jnp.float32).mean((-3, -2, -1)) / 127.5 - 1.0
    actions = jnp.concatenate([jnp.tile(obs["gripper"], (1, 3)) * 0.8,
                               jnp.tile(brightness[:, None], (1, 4)) * 0.5], axis=-1)
    batch = {**obs, "actions": actions}

    def loss_fn(params, batch, rng):
        return bc_loss(policy.apply(params, batch)[0], batch["actions"])

    tx = optax.adam(3e-3)
    step = make_train_step(loss_fn, tx)
    state = create_train_state(jax.tree.map(jnp.copy, params), tx, jax.random.PRNGKey(0))
    losses, mses = [], []
    for _ in range(12):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
        mses.append(float(metrics["action_mse"]))
    assert losses[-1] < losses[0] - 0.5, losses
    assert mses[-1] < 0.7 * mses[0], mses  # the mean moves towards the targets, not only the std


def test_ppo_trains_the_transformer_on_dict_observations():
    env = LogWrapper(ToyImageEnv())
    config = PPOConfig(**{**vars(TINY_PPO), "total_timesteps": 8})
    fns = make_ppo(config, env, None, TransformerActorCritic(**{**SMALL, "patch_size": 8}))
    runner, metrics = jax.jit(fns.train)(jax.random.PRNGKey(0))
    assert np.isfinite(metrics["total_loss"]).all()
    before = fns.init(jax.random.PRNGKey(0)).train_state.params
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before,
                           runner.train_state.params)
    assert all(jax.tree.leaves(changed["params"]["tokens"]))  # gradients reach the patch embed
