"""Supervised fine-tuning (issue 7) from a TFDS expert dataset: load episodes, optionally pass
their frames through the trained tokenizer, train the image policy by behaviour cloning.

  run_sft(config, workdir)   # config: experiments/configs/sft.py (an `sft` section + paths)
  run_sft_stage(config, out_dir)   # the pipeline's `sft` stage: paths from the workdir
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections
import numpy as np

from experiments.configs.sft import DATASET_SUBDIR
from roboscape_jax.policies import sft


def load_sft_episodes(dataset_dir: str, split: str, *, max_episodes: int = 0
                      ) -> list[sft.SFTEpisode]:
    """Episodes of `split` (the first `max_episodes`, 0: all) with frames, actions, embedding."""
    from data_pipeline.dataset import episode_actions, open_split, two_view_frames  # TFDS

    source = open_split(dataset_dir, split)
    count = len(source) if max_episodes <= 0 else min(max_episodes, len(source))
    if count == 0:
        raise ValueError(f"split {split!r} of {dataset_dir} has no episodes")
    episodes = []
    for i in range(count):
        steps = source[i]["steps"]
        episodes.append(sft.SFTEpisode(two_view_frames(steps), episode_actions(steps),
                                       np.asarray(steps[0]["language_embedding"], np.float32)))
    return episodes


def observation_frame_fn(config):
    """(frames uint8 [S, H, W, 3], episode int [S]) -> the frames the policy sees
    (`config.sft.observation_frames`)."""
    mode = config.sft.observation_frames
    if mode == "raw":
        return lambda frames, episode: frames
    if mode != "tokenized":
        raise ValueError(f"observation_frames must be one of {sft.OBSERVATION_FRAMES}, got "
                         f"{mode!r}")
    from roboscape_jax.tokenizer import train as tok_train

    if not os.path.isdir(os.path.join(config.tokenizer_dir, "checkpoints")):
        raise FileNotFoundError(f"observation_frames='tokenized' needs a tokenizer checkpoint in "
                                f"{config.tokenizer_dir}/checkpoints (train_tokenizer stage)")
    model, params = tok_train.restore_params(config.tokenizer_dir, config.tokenizer)
    return lambda frames, episode: sft.tokenized_frames(model, params, frames, episode=episode)


def load_sft_data(config) -> dict[str, sft.SFTData]:
    """{"train", "val"} SFTData of `config.dataset_dir` with the configured observation frames."""
    c = config.sft
    frames_fn = observation_frame_fn(config)
    data = {}
    for name, split in (("train", config.train_split), ("val", config.val_split)):
        episodes = load_sft_episodes(config.dataset_dir, split, max_episodes=c.input.max_episodes)
        steps = sft.make_sft_data(episodes, gripper_rate=c.observation.gripper_rate,
                                  initial_gripper=c.observation.initial_gripper)
        data[name] = steps._replace(frames=frames_fn(steps.frames, steps.episode))
        print(f"sft: {split}: {len(episodes)} episodes, {len(steps.actions)} steps", flush=True)
    return data


def run_sft(config, workdir: str) -> dict[str, Any]:
    """Trains (or resumes) SFT in `workdir`; returns the final held-out metrics."""
    sft.train_and_evaluate(config.sft, workdir, load_sft_data(config))
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
        result = json.load(f)
    print("sft held-out: " + ", ".join(f"{k}={v:.4g}" for k, v in result.items()), flush=True)
    return result


def stage_view(config, out_dir: str) -> ml_collections.ConfigDict:
    """The launcher-shaped SFT config of a pipeline `config` whose stage folder is `out_dir`:
    the collect_data dataset and train_tokenizer checkpoint of the same workdir."""
    root = os.path.dirname(os.path.abspath(out_dir))
    return ml_collections.ConfigDict(dict(
        sft=config.sft, dataset_dir=os.path.join(root, DATASET_SUBDIR), train_split="train",
        val_split="val", tokenizer_dir=os.path.join(root, "train_tokenizer"),
        tokenizer=config.tokenizer))


def run_sft_stage(config, out_dir: str) -> dict[str, Any]:
    """The pipeline's `sft` stage: behaviour cloning on this workdir's dataset (resumes)."""
    view = stage_view(config, out_dir)
    if not os.path.isdir(view.dataset_dir):
        raise FileNotFoundError(f"sft needs the dataset {view.dataset_dir}: run the collect_data "
                                "stage first")
    return run_sft(view, out_dir)
