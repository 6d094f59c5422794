"""Benchmark launcher config (issue 9): what `experiments.benchmark` times and at which sizes.

  python -m experiments.benchmark --config=experiments/configs/benchmark.py --out_dir=runs/bench
  python -m experiments.benchmark --config=experiments/configs/benchmark.py:variant=base ...
  python -m experiments.benchmark --config=experiments/configs/benchmark.py:debug ...  # seconds

Args (`common.parse_arg`): `variant` (tiny: 2 CPU cores; base: one GPU), `debug` (the `debug`
model sizes and one repeat: tests). The models are the variant's pipeline models, randomly
initialised: throughput does not depend on the weights, and random weights make the figures
reproducible anywhere.
"""

from __future__ import annotations

import importlib

import ml_collections

from experiments.configs import common

SECTIONS = ("peak", "tokenizer", "tokenizer_train", "world_model_train", "env", "ppo_world_model",
            "maniskill")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = common.parse_arg(arg, variant="tiny", debug=False)
    pipeline = importlib.import_module(f"experiments.configs.{arg.variant}").get_config(
        "debug" if arg.debug else None)
    c = ml_collections.ConfigDict()
    c.variant = pipeline.variant
    c.seed = 0
    c.sections = SECTIONS
    c.tokenizer = pipeline.tokenizer
    c.world_models = pipeline.world_models
    c.policy = pipeline.sft.model
    c.env = pipeline.ppo_world_model.env
    # "model": the env reads a generated frame's margins from the model's bit probabilities (a
    # stand-in calibration here), as the pipeline's does; "decoded": re-encodes its decoded image
    c.rollout_margins = pipeline.world_model_eval.get("rollout_margins", "decoded")
    c.repeats = 3
    # peak: one n x n x n product per dtype, chained 4 per call.
    c.peak = ml_collections.ConfigDict(dict(n=2048, dtypes=("float32",)))
    c.tokenizer_batch = 64  # frames per encode / decode call
    c.env_batches = (1, 16, 64, 256)  # scenes stepped at once
    c.env_scan_steps = 4  # env steps per timed lax.scan call
    # fused PPO in the world model: one compiled call of `updates` rollout-and-update iterations.
    c.ppo = ml_collections.ConfigDict(pipeline.ppo_world_model.ppo.to_dict())
    c.ppo.update(num_envs=16, num_steps=16, update_epochs=2, num_minibatches=4)
    c.ppo_updates = 2
    c.maniskill_steps = 30  # ManiSkill two-camera rgb env (skipped where mani_skill is absent)
    if arg.variant == "base":
        c.peak.update(n=8192, dtypes=("float32", "bfloat16"))
        c.tokenizer_batch = 256
        c.ppo.update(num_envs=64, num_steps=16)
    if arg.debug:
        c.repeats = 1
        c.peak.n = 256
        c.tokenizer_batch = 4
        c.env_batches = (1, 2)
        c.env_scan_steps = 2
        c.ppo.update(num_envs=2, num_steps=4, update_epochs=1, num_minibatches=2)
        c.ppo_updates = 1
        c.maniskill_steps = 0
    c.ppo.total_timesteps = c.ppo.num_envs * c.ppo.num_steps * c.ppo_updates
    return c
