"""Loads a trained image policy (either family) from any run folder: SFT or PPO.

  policy, params = restore_policy("runs/tiny/ppo_world_model", config.sft.model)
  act = make_act_fn(policy, deterministic=True)
  action = act(params, obs, key)   # obs: one observation dict (env.observation), action [A]

An SFT run's checkpoint is a TrainState (`params` at the top); a PPO run's is the runner state
(`train_state.params`, with the policy section in its meta as `policy_config`). Both are checked
against `model_config` (the fields its family reads, `families.policy_section`; a section saved
before `family` existed is a CNN's): a missing folder raises FileNotFoundError naming it, another
policy section or another parameter shape raises ValueError naming the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from roboscape_jax.policies import sft
from roboscape_jax.policies.families import check_family, policy_section
from roboscape_jax.policies.image import dummy_observation
from roboscape_jax.types import PRNGKey, PyTree
from roboscape_jax.utils.checkpoint import Checkpointer


def _normalised(values) -> dict:
    values = values.to_dict() if hasattr(values, "to_dict") else dict(values)
    return json.loads(json.dumps(values, sort_keys=True))


def check_policy_config(stored, model_config, where: str) -> None:
    """Raises ValueError naming the first field where the checkpoint's policy section differs
    (the family first)."""
    check_family(stored, model_config, where)
    stored = policy_section(_normalised(stored))
    expected = policy_section(_normalised(model_config))
    for field in sorted(set(stored) | set(expected)):
        if stored.get(field) != expected.get(field):
            raise ValueError(f"the policy in {where} has {field}={stored.get(field)!r}, the config "
                             f"{field}={expected.get(field)!r}")


def _cast_like(template: PyTree, raw: PyTree, where: str) -> PyTree:
    def cast(path, t, x):
        if np.shape(x) != t.shape:
            raise ValueError(f"parameter {jax.tree_util.keystr(path)} in {where} has shape "
                             f"{np.shape(x)}, the policy expects {t.shape}")
        return jnp.asarray(x, t.dtype)

    return jax.tree_util.tree_map_with_path(cast, template, raw)


def restore_policy(run_dir: str, model_config, *, frame_shape=(128, 64, 3),
                   instruction_dim: int = 384) -> tuple[nn.Module, PyTree]:
    """(policy, params) of the newest checkpoint of an SFT or a PPO run folder (told apart by the
    checkpoint's layout: a PPO runner state holds `train_state`)."""
    checkpoint_dir = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(checkpoint_dir):
        raise FileNotFoundError(
            f"no policy checkpoint: {checkpoint_dir} does not exist (train that policy first; in "
            f"a pipeline workdir, the {os.path.basename(os.path.normpath(run_dir))!r} stage "
            "writes it)")
    with Checkpointer(checkpoint_dir) as ckpt:
        raw, meta = ckpt.restore(None)  # FileNotFoundError when no step finished
    if "train_state" not in raw:  # an SFT TrainState: checked against its model fingerprint
        return sft.restore_params(run_dir, model_config, frame_shape=frame_shape,
                                  instruction_dim=instruction_dim)
    if "policy_config" in meta:
        check_policy_config(meta["policy_config"], model_config, checkpoint_dir)
    policy = sft.create_policy(model_config)
    template = jax.eval_shape(policy.init, jax.random.PRNGKey(0),
                              dummy_observation(frame_shape, instruction_dim, (1,)))
    return policy, _cast_like(template, raw["train_state"]["params"], checkpoint_dir)


def make_act_fn(policy: nn.Module, *, deterministic: bool = True
                ) -> Callable[[PyTree, dict, PRNGKey], jax.Array]:
    """act(params, obs, key) -> action [A] in [-1, 1] for one observation (no batch axis): the
    mean action when `deterministic`, else a sample (clipped, as the env clips it). Jitted."""

    @jax.jit
    def act(params: PyTree, obs: dict, key: PRNGKey) -> jax.Array:
        dist, _ = policy.apply(params, jax.tree.map(lambda x: x[None], obs))
        action = dist.mode() if deterministic else dist.sample(key)
        return jnp.clip(action[0], -1.0, 1.0)

    return act
