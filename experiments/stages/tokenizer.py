"""Pipeline stages: train the tokenizer on the dataset's frames, and cache every episode's tokens.

The tokenizer trains on the in-domain `train` split and is scored on the in-domain `val` split and
the out-of-domain `ood` split (unseen objects and object-container pairs).
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from data_pipeline.dataset import DatasetEpisodes, load_frames
from experiments.configs.tokenizer import tokenizer_config
from experiments.stages import trainer_parallel
from roboscape_jax.tokenizer import train as tok_train
from roboscape_jax.tokenizer.frames import SplitFrameSource
from roboscape_jax.tokenizer.tokenize import tokenize_episodes

DATASET_SUBDIR = os.path.join("collect_data", "tfds", "roboscape_maniskill", "1.0.0")


def dataset_dir(out_dir: str) -> str:
    """The dataset the collect_data stage wrote into the same workdir."""
    return os.path.join(os.path.dirname(out_dir), DATASET_SUBDIR)


def tokenizer_section(workdir: str) -> ml_collections.ConfigDict:
    """The tokenizer section the workdir's pipeline ran with (its config.json), else `tiny`'s."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            stored = json.load(f).get("tokenizer")
        if stored:
            return ml_collections.ConfigDict(stored)
    return tokenizer_config("tiny")


def run_train_tokenizer(config, out_dir: str) -> dict[str, Any]:
    data = dataset_dir(out_dir)
    stride = config.tokenizer.input.get("frame_stride", 1)
    train, train_lengths = load_frames(data, "train", stride=stride, return_lengths=True)
    val, val_lengths = load_frames(data, "val", return_lengths=True)
    source = SplitFrameSource(train, val, train_lengths, val_lengths)
    print(
        f"tokenizer: {len(train)} train frames, {len(source.split_indices('held_out'))} "
        f"held-out in-domain frames",
        flush=True,
    )
    state = tok_train.train_and_evaluate(config.tokenizer, out_dir, source,
                                         parallel=trainer_parallel(config, "tokenizer"))
    model = tok_train.create_model(config.tokenizer.model)
    lpips = tok_train.load_lpips_params() if config.tokenizer.eval.lpips else None
    ood, ood_lengths = load_frames(data, "ood", return_lengths=True)
    ood = SplitFrameSource(train[:1], ood, [1], ood_lengths)
    with open(os.path.join(out_dir, "eval", "metrics.json")) as f:  # train_and_evaluate's
        ind = json.load(f)
    results = {
        "ind": ind,
        "ood": tok_train.evaluate_held_out(
            config.tokenizer,
            model,
            state.ema_params,
            ood,
            os.path.join(out_dir, "eval_ood"),
            lpips,
            step=int(state.step),
        ),
    }
    for split, metrics in results.items():
        print(
            f"tokenizer {split}: "
            + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)),
            flush=True,
        )
    return results


def run_tokenize_dataset(config, out_dir: str) -> dict[str, Any]:
    tokenizer_dir = os.path.join(os.path.dirname(out_dir), "train_tokenizer")
    model, params = tok_train.restore_params(tokenizer_dir, config.tokenizer)
    counts = {}
    for split in ("train", "val", "ood"):
        counts[split] = tokenize_episodes(
            model,
            params,
            DatasetEpisodes(dataset_dir(out_dir), split),
            os.path.join(out_dir, split),
            tokenizer_id=tok_train.model_fingerprint(config.tokenizer),
            hysteresis=config.tokenizer.cache.hysteresis,
            # what world models with generated_margin_flag train on (the train split only)
            with_generated_margins=(split == "train"
                                    and config.tokenizer.cache.get("generated_margins", False)),
        )
    return counts
