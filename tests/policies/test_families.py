"""Policy families: the config's `family` picks the class, unknown names are named, and checkpoints
of either family restore (SFT and PPO layouts), also ones written before `family` existed."""

import jax
import ml_collections
import numpy as np
import pytest

from experiments.configs.policy import policy_config
from experiments.configs.sft import sft_config
from roboscape_jax.policies import loading, sft
from roboscape_jax.policies.families import create_policy, policy_section
from roboscape_jax.policies.image import ImageActorCritic, dummy_observation
from roboscape_jax.policies.transformer import TransformerActorCritic
from roboscape_jax.tokenizer.train import model_fingerprint
from roboscape_jax.utils.checkpoint import Checkpointer

# The policy section's fields before `family` and the transformer's fields were added.
OLD_FIELDS = ("action_dim", "conv_features", "conv_out", "hidden", "activation", "log_std_init",
              "log_std_min")


def _old_section() -> dict:
    return {k: v for k, v in policy_config("debug").to_dict().items() if k in OLD_FIELDS}


def _transformer_config() -> ml_collections.ConfigDict:
    config = sft_config("debug")
    config.model.family = "transformer"
    config.update(num_steps=2, log_every_steps=1, checkpoint_every_steps=2, eval_every_steps=2)
    return config


def _synthetic_data(num_steps: int = 32) -> sft.SFTData:
    rng = np.random.default_rng(0)
    return sft.SFTData(frames=rng.integers(0, 256, (num_steps, 128, 64, 3), np.uint8),
                       gripper=rng.uniform(-1, 1, (num_steps, 1)).astype(np.float32),
                       episode=np.zeros(num_steps, np.int32),
                       instructions=rng.normal(size=(1, 384)).astype(np.float32),
                       actions=rng.uniform(-1, 1, (num_steps, 7)).astype(np.float32))


def test_the_config_family_picks_the_class():
    config = policy_config("debug")
    assert config.family == "cnn" and type(create_policy(config)) is ImageActorCritic
    config.family = "transformer"
    policy = create_policy(config)
    assert type(policy) is TransformerActorCritic
    assert (policy.patch_size, policy.width, policy.num_layers) == (16, 16, 1)
    assert policy_section(config) == dict(family="transformer", action_dim=7, log_std_init=-0.5,
                                          log_std_min=-5.0, patch_size=16, width=16,
                                          num_layers=1, num_heads=2, mlp_ratio=2)
    tiny = create_policy({**policy_config("tiny").to_dict(), "family": "transformer"})
    assert (tiny.patch_size, tiny.width, tiny.num_layers, tiny.num_heads) == (8, 64, 2, 4)
    old = create_policy(_old_section())  # a section without `family` is a CNN's
    assert type(old) is ImageActorCritic and old.hidden == (16,)


def test_unknown_family_or_field_is_named():
    with pytest.raises(ValueError, match="unknown policy family 'vit'; known: \\['cnn', "):
        create_policy({**policy_config("debug").to_dict(), "family": "vit"})
    with pytest.raises(ValueError, match="fields \\['colour'\\] that no family"):
        create_policy({**policy_config("debug").to_dict(), "colour": "red"})


def test_stored_sections_are_compared_on_their_family_fields():
    loading.check_policy_config(_old_section(), policy_config("debug"), "old")  # cnn by default
    wider = policy_config("debug")
    wider.width = 32  # a transformer size: no part of a CNN
    loading.check_policy_config(_old_section(), wider, "old")
    wider.family = "transformer"
    with pytest.raises(ValueError, match="model.family is 'transformer' in the config but 'cnn'"):
        loading.check_policy_config(_old_section(), wider, "old")


def test_sft_and_ppo_checkpoints_of_the_transformer_restore(tmp_path):
    config, data = _transformer_config(), _synthetic_data()
    state = sft.train_and_evaluate(config, str(tmp_path / "sft"), {"train": data, "val": data})
    assert int(state.step) == 2
    policy, params = loading.restore_policy(str(tmp_path / "sft"), config.model)
    assert type(policy) is TransformerActorCritic
    jax.tree.map(np.testing.assert_array_equal, params, state.params)
    cnn, wider = config.model.copy_and_resolve_references(), config.model.to_dict()
    cnn.family, wider["width"] = "cnn", 32
    with pytest.raises(ValueError, match="model.family is 'cnn' in the config but 'transformer'"):
        loading.restore_policy(str(tmp_path / "sft"), cnn)
    with pytest.raises(ValueError, match="model.width is 32"):
        loading.restore_policy(str(tmp_path / "sft"), wider)
    # A PPO run's layout: the runner state, with the policy section in its meta.
    with Checkpointer(str(tmp_path / "ppo" / "checkpoints")) as ckpt:
        ckpt.save(1, {"train_state": {"params": params}},
                  {"policy_config": config.model.to_dict()})
    _, again = loading.restore_policy(str(tmp_path / "ppo"), config.model)
    jax.tree.map(np.testing.assert_array_equal, again, params)
    with pytest.raises(ValueError, match="model.family is 'cnn' in the config but 'transformer'"):
        loading.restore_policy(str(tmp_path / "ppo"), cnn)


def test_checkpoints_from_before_the_family_field_restore_as_the_cnn(tmp_path):
    old = _old_section()
    params = create_policy(old).init(jax.random.PRNGKey(0), dummy_observation(batch=(1,)))
    fingerprint = model_fingerprint(ml_collections.ConfigDict({"model": old}))
    with Checkpointer(str(tmp_path / "sft" / "checkpoints")) as ckpt:  # SFT: a TrainState
        ckpt.save(2, {"params": params, "step": 2}, {**fingerprint, "data_position": 2})
    with Checkpointer(str(tmp_path / "ppo" / "checkpoints")) as ckpt:  # PPO: a runner state
        ckpt.save(1, {"train_state": {"params": params}}, {"policy_config": old})
    for run in ("sft", "ppo"):
        policy, restored = loading.restore_policy(str(tmp_path / run), policy_config("debug"))
        assert type(policy) is ImageActorCritic
        jax.tree.map(np.testing.assert_array_equal, restored, params)
    transformer = policy_config("debug")
    transformer.family = "transformer"
    with pytest.raises(ValueError, match="model.family is 'transformer' in the config but 'cnn'"):
        sft.restore_params(str(tmp_path / "sft"), transformer)


def test_a_missing_policy_run_names_the_stage_that_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ppo_maniskill/checkpoints does not exist.*"
                                                r"'ppo_maniskill' stage writes it"):
        loading.restore_policy(str(tmp_path / "ppo_maniskill"), policy_config("debug"))
