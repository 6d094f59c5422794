"""Behaviour cloning of the image policy on the expert dataset (issue 7).

  python -m experiments.train_sft --config=experiments/configs/sft.py --workdir=runs/sft_tiny
  python -m experiments.train_sft --config=experiments/configs/sft.py:frames=tokenized \
      --workdir=runs/sft_tiny_tok     # frames through runs/tiny/train_tokenizer, as the WM env
  python -m experiments.train_sft --config=experiments/configs/sft.py:debug --workdir=/tmp/sft
  python -m experiments.train_sft --config=experiments/configs/sft.py --workdir=runs/sft_vla \
      --config.sft.model.family=transformer    # the VLA-style transformer policy

Args (`common.parse_arg`): `variant` (debug/tiny/base), `debug` (= variant debug, on the committed
test dataset), `frames` (raw/tokenized), `pipeline` (a pipeline workdir whose collect_data dataset
and train_tokenizer checkpoint are used). `sft_config(variant)` is the section the library reads
(`roboscape_jax.policies.sft.train_and_evaluate`); a pipeline config can hold it as `config.sft`.
"""

from __future__ import annotations

import os

import ml_collections

from experiments.configs import common
from experiments.configs.policy import policy_config
from experiments.configs.tokenizer import tokenizer_config

DATASET_SUBDIR = os.path.join("collect_data", "tfds", "roboscape_maniskill", "1.0.0")
DEBUG_DATASET = os.path.join("tests", "data", "tiny_maniskill", "1.0.0")


def sft_config(variant: str = "tiny") -> ml_collections.ConfigDict:
    """The SFT section: model, optimizer, input, evaluation and the observation settings."""
    c = ml_collections.ConfigDict()
    c.variant = variant
    c.seed = 0
    c.model = policy_config(variant)
    # The expert's steps move 2-6 mm (|a_pos| ~ 0.05 of the +-1 range): a Gaussian that starts
    # at std exp(-2) rather than exp(-0.5), lr 1e-3 and 5000 steps fit the demonstrations
    # (teacher-forced position error 0.009-0.012 vs 0.040-0.055 at lr 3e-4 / 1500 steps / std
    # exp(-0.5), where predicting zero misses by 0.05-0.06; README, Policies).
    if variant != "debug":
        c.model.log_std_init = -2.0
    # "raw" dataset frames, or "tokenized" (encode -> decode), what the world-model env shows.
    c.observation_frames = "raw"
    # The gripper state is integrated from the commands as the env does (EnvConfig's values).
    c.observation = ml_collections.ConfigDict(dict(gripper_rate=0.5, initial_gripper=1.0))
    c.optim = ml_collections.ConfigDict(dict(
        lr=1e-3, wd=1e-4, warmup_steps=100, grad_clip_norm=1.0, b1=0.9, b2=0.999))
    c.input = ml_collections.ConfigDict(dict(batch_size=64, max_episodes=0))  # 0: all
    # Each view of each training frame shifted by up to this many pixels (0: off;
    # roboscape_jax/policies/augment.py): against memorising ~140 demonstrations.
    c.augment_shift = 0
    c.eval = ml_collections.ConfigDict(dict(num_samples=1024, batch_size=256))
    c.num_steps = 5000
    c.log_every_steps = 50
    c.checkpoint_every_steps = 500
    c.eval_every_steps = 500
    c.progress_every_s = 10.0
    if variant == "debug":
        c.optim.update(lr=3e-3, warmup_steps=1)
        c.input.batch_size = 16
        c.eval.update(num_samples=32, batch_size=16)
        c.num_steps = 4
        c.log_every_steps = 1
        c.checkpoint_every_steps = 2
        c.eval_every_steps = 2
        c.progress_every_s = 0.0
    elif variant == "base":
        c.input.batch_size = 256
        c.num_steps = 50_000
        c.checkpoint_every_steps = 2000
        c.eval_every_steps = 2000
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = common.parse_arg(arg, variant="tiny", debug=False, frames="raw", pipeline="runs/tiny")
    variant = "debug" if arg.debug else arg.variant
    config = ml_collections.ConfigDict()
    config.variant = f"sft:{variant}"
    config.sft = sft_config(variant)
    config.sft.observation_frames = arg.frames
    config.dataset_dir = DEBUG_DATASET if arg.debug else os.path.join(arg.pipeline, DATASET_SUBDIR)
    config.train_split, config.val_split = "train", "val"
    # Only read for observation_frames="tokenized": the tokenizer checkpoint and its section.
    config.tokenizer_dir = os.path.join(arg.pipeline, "train_tokenizer")
    config.tokenizer = tokenizer_config("debug" if arg.debug else "tiny")
    return config
