"""Builds the TFDS dataset from a staging folder, reads it back, and writes the dataset card.

build_dataset(staging_dir, data_dir)            -> the array_record RLDS dataset
open_split(data_dir, "train")                   -> random-access episodes (no TensorFlow)
write_dataset_card(staging_dir, data_dir, ...)  -> card.json, card.md and contact_sheet.png
"""

from __future__ import annotations

import collections
import glob
import io
import json
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from data_pipeline import scenes as sc
from data_pipeline.builders.roboscape_maniskill.roboscape_maniskill_dataset_builder import Builder

DATASET_NAME = "roboscape_maniskill"


def build_dataset(staging_dir: str, data_dir: str, *, image_size: int = 64) -> str:
    """Writes the dataset under `data_dir`; returns the versioned folder to read it from."""
    builder = Builder(data_dir=data_dir, image_size=image_size)
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(manual_dir=staging_dir),
    )
    return builder.data_dir


def open_split(dataset_dir: str, split: str):
    """A random-access sequence of episode dicts (RLDS: `steps`, `episode_metadata`)."""
    if not os.path.isdir(dataset_dir):
        raise FileNotFoundError(f"no dataset at {dataset_dir}: run the collector and builder first")
    return tfds.builder_from_directory(dataset_dir).as_data_source(split)


def decode_image(value: Any) -> np.ndarray:
    """An Image feature as uint8 [H, W, 3]: data sources return arrays, raw records PNG bytes."""
    if isinstance(value, bytes):
        return np.asarray(Image.open(io.BytesIO(value)).convert("RGB"))
    return np.asarray(value, np.uint8)


def two_view_frames(steps) -> np.ndarray:
    """uint8 [T, 2H, W, 3]: each step's third view stacked over its wrist view (the tokenizer's
    frame, as in the reference RoboScape-R model)."""
    return np.stack(
        [
            np.concatenate(
                [
                    decode_image(s["observation"]["image"]),
                    decode_image(s["observation"]["wrist_image"]),
                ],
                0,
            )
            for s in (steps[t] for t in range(len(steps)))
        ]
    )


def load_frames(dataset_dir: str, split: str, *, stride: int = 1,
                return_lengths: bool = False):
    """Every `stride`-th two-view frame of every episode of `split`, uint8 [N, 2H, W, 3], episode
    after episode (each starting at its first frame); with `return_lengths` also the number of
    frames each episode gave, int64 [episodes]."""
    source = open_split(dataset_dir, split)
    frames = [two_view_frames(source[i]["steps"])[::stride] for i in range(len(source))]
    if not frames:
        raise ValueError(f"split {split!r} of {dataset_dir} has no episodes")
    if return_lengths:
        return np.concatenate(frames), np.asarray([len(f) for f in frames], np.int64)
    return np.concatenate(frames)


class DatasetEpisodes:
    """Episodes of one split as the token cache wants them: frames plus the world model's labels."""

    def __init__(self, dataset_dir: str, split: str):
        self.split = split
        self._source = open_split(dataset_dir, split)
        self._keys = {
            self._source[i]["episode_metadata"]["episode_key"].decode(): i
            for i in range(len(self._source))
        }

    def episode_ids(self) -> list[str]:
        return sorted(self._keys)

    def get_episode(self, episode_id: str) -> np.ndarray:
        return two_view_frames(self._source[self._keys[episode_id]]["steps"])

    def get_extras(self, episode_id: str) -> dict[str, np.ndarray]:
        """actions [T, 7], done [T] (task success at that step), the simulator's dense rule
        reward `reward` [T] (what the learned reward baselines fit), instruction embedding [384],
        and the instruction's MiniLM token features `text` [L, 384] with `text_mask` [L] (the
        text world model's cross-attention memory)."""
        from roboscape_jax.text.encoder import make_text_encoder

        episode = self._source[self._keys[episode_id]]
        steps = episode["steps"]
        n = len(steps)
        instruction = steps[0]["language_instruction"].decode()
        features = make_text_encoder("minilm-l6").encode([instruction])
        return {
            "actions": episode_actions(steps),
            "text": np.asarray(features.tokens[0], np.float32),
            "text_mask": np.asarray(features.mask[0]),
            "done": np.asarray([steps[t]["success"] for t in range(n)], np.float32),
            "reward": np.asarray([steps[t]["reward"] for t in range(n)], np.float32),
            "embedding": np.asarray(steps[0]["language_embedding"], np.float32),
            "task_id": np.asarray(episode["episode_metadata"]["task_id"], np.int32),
            "split": np.asarray(self.split),
        }


def executed_actions(labels: np.ndarray) -> np.ndarray:
    """float32 [..., 7]: the actions the controller executes for recorded labels
    (`roboscape_jax.env.world_model_env.executed_action`). Labels keep the raw rotation delta to
    the planner's target, up to 31 units where it turns the gripper by about 180 degrees (18% of
    yaw labels exceed 1 in the `tiny` data); learning from the executed action keeps those
    outliers out of the policy's and the world model's targets."""
    from roboscape_jax.env.world_model_env import executed_action

    return np.asarray(executed_action(np.asarray(labels, np.float32)))


def episode_actions(steps) -> np.ndarray:
    """float32 [T, 7] executed actions (`executed_actions`) of an RLDS episode's steps."""
    return executed_actions(np.stack([steps[t]["action"] for t in range(len(steps))]))


def _staged(staging_dir: str) -> tuple[list[dict], list[dict]]:
    episodes, failures = [], []
    for path in sorted(glob.glob(os.path.join(staging_dir, "episodes", "*.npz"))):
        with np.load(path) as data:
            episodes.append(
                {
                    **json.loads(str(data["meta"])),
                    "steps": int(len(data["action"])),
                    "bytes": os.path.getsize(path),
                }
            )
    for path in sorted(glob.glob(os.path.join(staging_dir, "episodes", "*.failed.json"))):
        with open(path) as f:
            failures.append(json.load(f))
    return episodes, failures


def card_figures(staging_dir: str, episodes_per_hour: float | None = None) -> dict[str, Any]:
    """Counts per task / scene / split, planner success, sub-optimal share, bytes, episodes/hour."""
    episodes, failures = _staged(staging_dir)
    attempts = collections.Counter()
    for e in episodes:
        attempts[e["task"]] += e["attempts"]
    for f in failures:
        attempts[f["task"]] += len(f["failures"])
    per_task = collections.Counter(e["task"] for e in episodes)
    figures = {
        "episodes": len(episodes),
        "failed_episodes": len(failures),
        "steps": sum(e["steps"] for e in episodes),
        "per_task": dict(per_task),
        "per_split": dict(collections.Counter(e["split"] for e in episodes)),
        "per_scene": dict(
            collections.Counter(
                f"{sc.OBJECTS[e['object_id']].name} / {sc.CONTAINERS[e['container_id']].name} / "
                f"{sc.TABLES[e['table_id']].name}"
                for e in episodes
            )
        ),
        "first_attempt_success_per_task": {
            t: sum(e["attempts"] == 1 for e in episodes if e["task"] == t)
            / max(
                1,
                sum(1 for e in episodes if e["task"] == t)
                + sum(1 for f in failures if f["task"] == t),
            )
            for t in sorted(attempts)
        },
        "success_per_attempt_per_task": {t: per_task[t] / attempts[t] for t in sorted(attempts)},
        "suboptimal_share": (
            sum(not e["optimal"] for e in episodes) / len(episodes) if episodes else 0.0
        ),
        "staged_bytes": sum(e["bytes"] for e in episodes),
    }
    if episodes_per_hour:
        figures["episodes_per_hour"] = episodes_per_hour
    return figures


def contact_sheet(
    staging_dir: str, path: str, *, num_episodes: int = 8, num_frames: int = 6
) -> None:
    """A PNG grid: one row per episode, `num_frames` evenly spaced frames, third view over wrist."""
    files = sorted(glob.glob(os.path.join(staging_dir, "episodes", "*.npz")))
    rows = []
    for f in files[:: max(1, len(files) // num_episodes)][:num_episodes]:
        with np.load(f) as data:
            idx = np.linspace(0, len(data["image"]) - 1, num_frames).astype(int)
            rows.append(
                np.concatenate(
                    [np.concatenate([data["image"][i], data["wrist_image"][i]], 0) for i in idx], 1
                )
            )
    if rows:
        Image.fromarray(np.concatenate(rows, 0)).save(path)


def write_dataset_card(
    staging_dir: str, out_dir: str, *, split_info: dict, episodes_per_hour: float | None = None
) -> dict[str, Any]:
    card_path = os.path.join(out_dir, "card.json")
    if episodes_per_hour is None and os.path.exists(card_path):  # a rerun that collected nothing
        with open(card_path) as f:
            episodes_per_hour = json.load(f).get("episodes_per_hour")
    figures = {**card_figures(staging_dir, episodes_per_hour), "scene_split": split_info}
    with open(card_path, "w") as f:
        json.dump(figures, f, indent=2)
    lines = ["# RoboScape-ManiSkill dataset card", ""]
    for key in (
        "episodes",
        "failed_episodes",
        "steps",
        "suboptimal_share",
        "staged_bytes",
        "episodes_per_hour",
    ):
        if key in figures:
            lines.append(f"- {key}: {figures[key]}")
    for key in ("per_task", "per_split", "success_per_attempt_per_task", "per_scene"):
        lines += ["", f"## {key}", ""] + [f"- {k}: {v}" for k, v in figures[key].items()]
    lines += [
        "",
        "Held out (out-of-domain): " + json.dumps(split_info),
        "",
        "![contact sheet](contact_sheet.png)",
    ]
    with open(os.path.join(out_dir, "card.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    contact_sheet(staging_dir, os.path.join(out_dir, "contact_sheet.png"))
    return figures
