"""PPO of the image policy inside the action world model (issue 7, RoboScape-R section 4.3).

  python -m experiments.train_ppo_world_model --config=experiments/configs/ppo_world_model.py \
      --workdir=runs/ppo_wm_tiny                     # models and scenes of runs/tiny
  python -m experiments.train_ppo_world_model \
      --config=experiments/configs/ppo_world_model.py:sft=runs/sft_tiny_tokenized \
      --workdir=runs/ppo_wm_tiny_from_sft             # policy initialised by SFT
  python -m experiments.train_ppo_world_model \
      --config=experiments/configs/ppo_world_model.py:debug \
      --workdir=/tmp/ppo_wm                           # random debug models, seconds

Args (`common.parse_arg`): `variant` (debug/tiny/base), `debug` (= variant debug, no pipeline),
`pipeline` (a pipeline workdir with train_tokenizer, train_world_models/{action,text} and
tokenize_dataset; "" = randomly initialised models of the variant and random scenes), `sft` (an
SFT run folder whose `model` section equals `policy`; "" = a fresh policy).
`ppo_world_model_config(variant)` holds the training fields; the pipeline keeps it as
`config.ppo_world_model` (experiments/configs/common.py).
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common
from experiments.configs.policy import policy_config
from experiments.configs.tokenizer import tokenizer_config
from experiments.configs.world_model import world_model_config


def ppo_world_model_config(variant: str = "tiny") -> ml_collections.ConfigDict:
    """env, scenes, ppo, checkpoint interval and the SFT log-std reset for `variant`."""
    c = ml_collections.ConfigDict()
    c.reset_log_std = True  # with an SFT policy: log std back to policy.log_std_init
    # EnvConfig fields (roboscape_jax/env/world_model_env.py); copy_penalty: the value the
    # evaluate_world_models stage chose on val (its action/eval/report.json). reward:
    # "world_model" (Eq. 9), or the paper's "embedding" / "proxy" baselines, whose heads the
    # evaluate_world_models stage of the pipeline workdir fits and saves. dense_reward:
    # "similarity" (Eq. 5, paid every step) or "progress" (its change per step).
    c.env = ml_collections.ConfigDict(dict(
        max_steps=100, tau_done=0.9, tau_sparse=0.9, sparse_bonus=10.0, num_maskgit_steps=2,
        temperature=0.0, done_pass=False, copy_penalty=0.0, reward="world_model",
        reward_views="both", dense_reward="similarity", gripper_rate=0.5, initial_gripper=1.0))
    # Start scenes: evenly spaced token-cache episodes of `split` (or `num_random` random scenes
    # without a pipeline); goals from the text model's golden trajectory (Eq. 6).
    c.scenes = ml_collections.ConfigDict(dict(split="train", num_scenes=32, golden_horizon=100,
                                              num_random=4))
    c.ppo = ml_collections.ConfigDict(dict(
        num_envs=16, num_steps=32, total_timesteps=16 * 32 * 60, update_epochs=4,
        num_minibatches=4, gamma=0.99, gae_lambda=0.95, clip_eps=0.2, ent_coef=0.0, vf_coef=0.5,
        max_grad_norm=0.5, lr=3e-4, anneal_lr=True, activation="relu",
        normalize_advantages=True, bootstrap_truncation=True, reward_scale=1.0,
        # The image policies share one trunk between actor and critic: the value comes free
        # with each step's action, and a pass after the rollout would run the trunk twice;
        # the truncation bootstrap's V(final observation) goes in one batched pass after it
        # rather than a second trunk pass inside every step.
        values_after_rollout=False, final_values_in_rollout=False))
    c.updates_per_checkpoint = 5
    if variant == "debug":
        c.env.max_steps = 3
        c.scenes.update(num_scenes=2, golden_horizon=3, num_random=3)
        c.ppo.update(num_envs=2, num_steps=4, total_timesteps=2 * 4 * 2, update_epochs=1,
                     num_minibatches=2)
        c.updates_per_checkpoint = 1
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = common.parse_arg(arg, variant="tiny", debug=False, pipeline="runs/tiny", sft="")
    variant = "debug" if arg.debug else arg.variant
    config = ppo_world_model_config(variant)
    config.variant = f"ppo_world_model:{variant}"
    config.seed = 0
    config.pipeline_workdir = "" if arg.debug else arg.pipeline
    config.sft_workdir = arg.sft
    config.tokenizer = tokenizer_config(variant)
    config.world_models = ml_collections.ConfigDict(dict(
        action=world_model_config(variant, "action"), text=world_model_config(variant, "text")))
    # text-model members whose goals are decoded together (the pipeline's `text_ensemble`; 2 for
    # a `tiny` workdir whose train_text_ensemble stage ran)
    config.text_ensemble = ml_collections.ConfigDict(dict(members=1))
    config.policy = policy_config(variant)
    config.progress_every_s = 0.0 if variant == "debug" else 10.0
    return config
