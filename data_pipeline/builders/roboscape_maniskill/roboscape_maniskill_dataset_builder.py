"""TFDS builder for RoboScape-ManiSkill episodes in the RLDS layout, written as array_record.

It reads the collector's staging folder (one `.npz` per episode, given as the manual dir) and writes
three splits: `train` and `val` (in-domain scenes, val is a deterministic ~10% of episodes by key
hash) and `ood` (out-of-domain scenes). No TensorFlow is needed to write or read it:

  builder = tfds.builder_from_directory(path)
  episodes = builder.as_data_source("train")   # random access, RLDS nested "steps"
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from data_pipeline import scenes as sc

EMBEDDING_DIM = 384  # MiniLM-L6 sentence embedding
STATE_DIM = 8  # TCP position (3), TCP quaternion wxyz (4), gripper opening (1)
VAL_PERCENT = 10


def _png(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def split_of_key(key: str, split: str) -> str:
    """ind episodes go to train or val by a stable hash of their key; ood episodes to ood."""
    if split == "ood":
        return "ood"
    bucket = int(hashlib.sha256(key.encode()).hexdigest(), 16) % 100
    return "val" if bucket < VAL_PERCENT else "train"


def embed_instructions(texts: list[str]) -> np.ndarray:
    """Sentence embeddings from the frozen offline MiniLM-L6 encoder, [N, 384] float32."""
    from roboscape_jax.text.encoder import make_text_encoder

    encoder = make_text_encoder("minilm-l6")
    out = []
    for i in range(0, len(texts), 64):
        out.append(np.asarray(encoder.encode(texts[i : i + 64]).pooled, np.float32))
    return np.concatenate(out) if out else np.zeros((0, EMBEDDING_DIM), np.float32)


class Builder(tfds.core.GeneratorBasedBuilder):
    """RoboScape-ManiSkill: four tasks over primitive scenes, third-view and wrist RGB, delta-EE."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Run the collector; pass its output folder as manual_dir."

    def __init__(self, *, image_size: int = 64, **kwargs):
        self.image_size = image_size
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        image = tfds.features.Image(
            shape=(self.image_size, self.image_size, 3), encoding_format="png"
        )
        step = {
            "observation": {
                "image": image,
                "wrist_image": image,
                "state": tfds.features.Tensor(shape=(STATE_DIM,), dtype=np.float32),
            },
            "action": tfds.features.Tensor(shape=(7,), dtype=np.float32),
            "reward": tfds.features.Scalar(dtype=np.float32),
            "discount": tfds.features.Scalar(dtype=np.float32),
            "success": tfds.features.Scalar(dtype=np.bool_),
            "is_first": tfds.features.Scalar(dtype=np.bool_),
            "is_last": tfds.features.Scalar(dtype=np.bool_),
            "is_terminal": tfds.features.Scalar(dtype=np.bool_),
            "language_instruction": tfds.features.Text(),
            "language_embedding": tfds.features.Tensor(shape=(EMBEDDING_DIM,), dtype=np.float32),
        }
        meta = {
            "task": tfds.features.Text(),
            "task_id": np.int32,
            "object_id": np.int32,
            "object_name": tfds.features.Text(),
            "container_id": np.int32,
            "container_name": tfds.features.Text(),
            "table_id": np.int32,
            "split": tfds.features.Text(),
            "seed": np.int64,
            "optimal": np.bool_,
            "episode_key": tfds.features.Text(),
        }
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {"steps": tfds.features.Dataset(step), "episode_metadata": meta}
            ),
            disable_shuffling=True,  # keep episode order: the same staging gives the same files
            description=__doc__,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        paths = sorted(glob.glob(os.path.join(dl_manager.manual_dir, "episodes", "*.npz")))
        if not paths:
            raise FileNotFoundError(f"no episodes (*.npz) under {dl_manager.manual_dir}/episodes")
        by_split = {"train": [], "val": [], "ood": []}
        for path in paths:
            key = os.path.basename(path)[: -len(".npz")]
            by_split[split_of_key(key, key.split("-")[3])].append(path)
        return {name: self._generate_examples(files) for name, files in by_split.items()}

    def _generate_examples(self, paths: list[str]):
        instructions = [str(np.load(p)["language_instruction"]) for p in paths]
        embeddings = embed_instructions(instructions)
        for path, instruction, embedding in zip(paths, instructions, embeddings, strict=True):
            yield os.path.basename(path), self._episode(path, instruction, embedding)

    def _episode(self, path: str, instruction: str, embedding: np.ndarray) -> dict:
        data = np.load(path)
        meta = json.loads(str(data["meta"]))
        if data["image"].shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(
                f"{path}: frames {data['image'].shape[1:]} do not match the builder's "
                f"image_size {self.image_size}"
            )
        steps = [
            {
                "observation": {
                    "image": _png(data["image"][t]),
                    "wrist_image": _png(data["wrist_image"][t]),
                    "state": data["state"][t],
                },
                "action": data["action"][t],
                "reward": data["reward"][t],
                "discount": np.float32(1.0),
                "success": data["success"][t],
                "is_first": data["is_first"][t],
                "is_last": data["is_last"][t],
                "is_terminal": data["is_terminal"][t],
                "language_instruction": instruction,
                "language_embedding": embedding,
            }
            for t in range(len(data["action"]))
        ]
        return {
            "steps": steps,
            "episode_metadata": {
                "task": meta["task"],
                "task_id": sc.TASK_IDS[meta["task"]],
                "object_id": meta["object_id"],
                "object_name": sc.OBJECTS[meta["object_id"]].name,
                "container_id": meta["container_id"],
                "container_name": sc.CONTAINERS[meta["container_id"]].name,
                "table_id": meta["table_id"],
                "split": meta["split"],
                "seed": meta["seed"],
                "optimal": meta["optimal"],
                "episode_key": os.path.basename(path)[:-4],
            },
        }
