r"""PPO on gymnax classic control.

  python experiments/train_ppo_gymnax.py \
      --config=experiments/configs/ppo_gymnax.py:env=cartpole \
      --seeds=4 --out=/tmp/r.json

``arg`` is parsed by ``common.parse_arg``: ``env=cartpole|pendulum`` and the
flag ``debug``, which shrinks the run to a few seconds on CPU. CartPole uses
PureJaxRL's defaults; Pendulum uses a CPU-sized continuous setting (Gaussian
policy, clipped actions, rewards scaled by 0.1).
"""

import ml_collections

from experiments.configs import common

ENVS = {"cartpole": "CartPole-v1", "pendulum": "Pendulum-v1"}


def _ppo_cartpole() -> dict:
    return dict(
        num_envs=4,
        num_steps=128,
        total_timesteps=500_000,
        update_epochs=4,
        num_minibatches=4,
        gamma=0.99,
        gae_lambda=0.95,
        clip_eps=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        lr=2.5e-4,
        anneal_lr=True,
        activation="tanh",
    )


def _ppo_pendulum() -> dict:
    return dict(
        num_envs=32,
        num_steps=128,
        total_timesteps=500_000,
        update_epochs=10,
        num_minibatches=8,
        gamma=0.95,
        gae_lambda=0.95,
        clip_eps=0.2,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
        lr=1e-3,
        anneal_lr=True,
        activation="tanh",
        reward_scale=0.1,
    )


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """ConfigDict with ``env_name``, ``seed``, ``model`` and ``ppo`` sections."""
    arg = common.parse_arg(arg, env="cartpole", debug=False)
    env, debug = arg.env, arg.debug
    if env not in ENVS:
        raise ValueError(f"Unknown env {env!r}; choose from {sorted(ENVS)}")
    config = ml_collections.ConfigDict()
    config.env_name = ENVS[env]
    config.seed = 0
    config.model = dict(hidden=(64, 64), log_std_init=0.0)
    config.ppo = _ppo_cartpole() if env == "cartpole" else _ppo_pendulum()
    if debug:
        config.ppo.num_envs, config.ppo.num_steps = 2, 16
        config.ppo.num_minibatches, config.ppo.update_epochs = 2, 1
        config.ppo.total_timesteps = 64
    return config
