"""Where the tokenizer's frames come from: a tiny `FrameSource` protocol and an in-memory version.

A frame is both camera views stacked vertically (third-view over wrist), uint8 [H, W, 3], by
default [128, 64, 3]. A source splits its frames into `train` and `held_out` index sets once, so
training never sees the frames that evaluation scores. The dataset reader plugs in by implementing
the same three members. Sources that know where episodes start also give each frame's
reference (its episode's first frame) for a reference-conditioned tokenizer (`get_references`),
and each frame's predecessor for the temporal-stability loss (`get_previous`).
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np


class FrameSource(Protocol):
    """Random access to uint8 frames [H, W, 3] plus a fixed train / held-out split."""

    frame_shape: tuple[int, int, int]

    def split_indices(self, split: str) -> np.ndarray:
        """int64 indices of `split` ("train" or "held_out"), sorted."""

    def get_batch(self, indices: np.ndarray) -> np.ndarray:
        """uint8 [len(indices), H, W, 3]."""


def episode_first_index(lengths) -> np.ndarray:
    """int64 [sum(lengths)]: the index of each frame's episode-first frame, for frames stored
    episode after episode with these lengths."""
    lengths = np.asarray(lengths, np.int64)
    if lengths.ndim != 1 or (lengths < 1).any():
        raise ValueError(f"episode lengths must be positive integers, got {lengths}")
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.repeat(starts, lengths)


class _IndexedFrames:
    """Frames in one array plus the index sets of the train and held-out splits, and, when
    episode lengths were given, each frame's episode-first frame."""

    frames: np.ndarray
    _split: dict[str, np.ndarray]
    _first: np.ndarray | None = None

    def split_indices(self, split: str) -> np.ndarray:
        if split not in self._split:
            raise ValueError(f"unknown split {split!r}; known: {sorted(self._split)}")
        return self._split[split]

    def get_batch(self, indices: np.ndarray) -> np.ndarray:
        return self.frames[np.asarray(indices)]

    @property
    def has_references(self) -> bool:
        return self._first is not None

    def get_references(self, indices: np.ndarray) -> np.ndarray:
        """uint8 [len(indices), H, W, 3]: the first frame of each frame's episode."""
        if self._first is None:
            raise ValueError("this frame source has no episode boundaries (pass episode "
                             "lengths), so it has no reference frames")
        return self.frames[self._first[np.asarray(indices)]]

    def get_previous(self, indices: np.ndarray) -> np.ndarray:
        """uint8 [len(indices), H, W, 3]: the frame before each frame in its episode (an
        episode's first frame is its own predecessor)."""
        if self._first is None:
            raise ValueError("this frame source has no episode boundaries (pass episode "
                             "lengths), so it has no previous frames")
        indices = np.asarray(indices)
        return self.frames[np.maximum(indices - 1, self._first[indices])]

    def _set_episodes(self, lengths) -> None:
        if lengths is None:
            return
        first = episode_first_index(lengths)
        if len(first) != len(self.frames):
            raise ValueError(f"episode lengths sum to {len(first)}, but there are "
                             f"{len(self.frames)} frames")
        self._first = first


class ArrayFrameSource(_IndexedFrames):
    """Frames held in one uint8 array; the last `held_out_fraction` of them are held out.

    Frames usually come in episode order, so a contiguous tail keeps whole episodes out of training
    (a random split would leak near-identical neighbouring frames).
    """

    def __init__(self, frames: np.ndarray, held_out_fraction: float = 0.1,
                 episode_lengths=None):
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [N, H, W, 3], got {frames.dtype} "
                             f"{frames.shape}")
        num_held_out = int(round(len(frames) * held_out_fraction))
        if not 0 < num_held_out < len(frames):
            raise ValueError(f"held_out_fraction={held_out_fraction} of {len(frames)} frames "
                             "leaves an empty split")
        self.frames = frames
        self.frame_shape = tuple(frames.shape[1:])
        self._split = {"train": np.arange(len(frames) - num_held_out),
                       "held_out": np.arange(len(frames) - num_held_out, len(frames))}
        self._set_episodes(episode_lengths)



class SplitFrameSource(_IndexedFrames):
    """Frames whose train / held-out split is given (e.g. the dataset's train and val splits)."""

    def __init__(self, train: np.ndarray, held_out: np.ndarray, train_lengths=None,
                 held_out_lengths=None):
        if train.dtype != np.uint8 or held_out.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {train.dtype} and {held_out.dtype}")
        if train.shape[1:] != held_out.shape[1:] or train.ndim != 4:
            raise ValueError(f"train {train.shape} and held-out {held_out.shape} frames must be "
                             "[N, H, W, 3] of one size")
        self.frames = np.concatenate([train, held_out])
        self.frame_shape = tuple(train.shape[1:])
        self._split = {"train": np.arange(len(train)),
                       "held_out": np.arange(len(train), len(self.frames))}
        if (train_lengths is None) != (held_out_lengths is None):
            raise ValueError("give episode lengths for both splits or for neither")
        if train_lengths is not None:
            self._set_episodes(np.concatenate([np.asarray(train_lengths, np.int64),
                                               np.asarray(held_out_lengths, np.int64)]))



def load_frames_npz(path: str, key: str = "frames") -> np.ndarray:
    """uint8 [N, H, W, 3] frames stored under `key` in an .npz file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no frames file at {path}")
    with np.load(path) as data:
        return np.asarray(data[key])


def synthetic_frames(num_frames: int, height: int = 128, width: int = 64,
                     seed: int = 0) -> np.ndarray:
    """Toy two-view scenes for development and tests: a shaded table, coloured boxes, a gripper bar.

    Returns uint8 [num_frames, height, width, 3]; consecutive frames move the objects a little.
    """
    rng = np.random.default_rng(seed)
    view = height // 2
    yy, xx = np.mgrid[0:view, 0:width]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    colors = rng.uniform(40, 230, size=(4, 3))
    start = rng.uniform(8, min(view, width) - 16, size=(4, 2))
    velocity = rng.normal(0, 0.6, size=(4, 2))
    for t in range(num_frames):
        for v in range(2):
            img = 90 + 60 * (yy / view)[..., None] + 15 * np.sin(xx / 5.0)[..., None]
            img = np.broadcast_to(img, (view, width, 3)) * np.array([1.0, 0.9, 0.75])
            for k in range(3 + v):
                cy, cx = (start[k] + velocity[k] * t) % (min(view, width) - 12) + 6
                size = 5 + 3 * k if v == 0 else 10 + 4 * k
                mask = (np.abs(yy - cy) < size / 2) & (np.abs(xx - cx) < size / 2)
                img = np.where(mask[..., None], colors[k], img)
            frames[t, v * view:(v + 1) * view] = np.clip(img + rng.normal(0, 2, img.shape), 0, 255)
    return frames
