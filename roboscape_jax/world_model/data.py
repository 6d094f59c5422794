"""Fixed-length training windows from token-cache episodes, as deterministic functions of the step.

  batch_fn = make_batch_fn(episodes, batch_size=32, num_frames=5, seed=0, control="action")
  batch = batch_fn(step)  # the same batch for the same step: train_loop resumes exactly

A batch holds (all numpy):
  tokens   int32 [B, T, h, w]
  actions  float32 [B, T, A]  actions[:, t] is the action that led INTO frame t (zero for frame 0)
  done     float32 [B, T]     the success flag of each frame
  text, text_mask             [B, L, E] float32 and [B, L] bool (only for control="text")
Windows are drawn uniformly over every valid (episode, start). With `pad_start` a window may start
up to T - 2 frames before the episode: those frames repeat frame 0 with zero actions, exactly the
context `sampling.initial_window` builds for a rollout from an episode's first frame. With a
frame `stride` s > 1 (the text model's coarse plan) a window holds frames start, start + s, ...,
its starts run over every offset, and padding reaches (T - 2) * s frames before the episode.
A keyframe-plan text model trains on `plan_episodes` instead: each a few frames from a state to
its episode's end.
"""

from __future__ import annotations

import glob
import os
from typing import Callable, NamedTuple, Sequence

import numpy as np

Batch = dict[str, np.ndarray]


class Episode(NamedTuple):
    """One episode of the token cache and its labels."""

    tokens: np.ndarray  # int32 [T_e, h, w]
    actions: np.ndarray  # float32 [T_e, A]; actions[t] is applied at frame t (leads to t + 1)
    done: np.ndarray  # float32 [T_e], the success flag of frame t
    text: np.ndarray | None = None  # float32 [L, E] instruction token features (text model)
    text_mask: np.ndarray | None = None  # bool [L]
    episode_id: str | None = None  # the dataset's episode id (the cache file's name)
    task_id: int = -1  # index into data_pipeline.scenes.TASKS (-1: unknown)
    reward: np.ndarray | None = None  # float32 [T_e], the simulator's dense rule reward of frame t
    # float16 [T_e, h, w, K]: each code bit's latent times its sign (tokenizer.tokenize
    # .encode_padded), how near the bit is to flipping; read by models with `margin_inputs`.
    margins: np.ndarray | None = None
    # uint8 [H, W, 3]: the episode's first real frame, what a reference-conditioned tokenizer
    # decodes the episode's tokens with (caches written before it was stored: None)
    first_frame: np.ndarray | None = None
    # float16 [T_e, h, w, K]: the margins of frame t's tokens for their DECODED frame (decode,
    # then encode): what a rollout computes for a frame it generated; read in training by
    # models with `generated_margin_flag`.
    generated_margins: np.ndarray | None = None


def window_index(episodes: Sequence[Episode], num_frames: int, pad_start: bool = True,
                 stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Every valid window as (episode index [N], start [N]); a start may be negative with pad_start.
    Raises ValueError when there is none."""
    if stride < 1:
        raise ValueError(f"frame stride must be >= 1, got {stride}")
    first = -(num_frames - 2) * stride if pad_start else 0
    span = (num_frames - 1) * stride  # from a window's first frame to its last
    index = [(e, s) for e, ep in enumerate(episodes) if len(ep.tokens) >= 2
             for s in range(first, len(ep.tokens) - span)]
    if not index:
        raise ValueError(f"no window of {num_frames} frames {stride} apart in {len(episodes)} "
                         f"episodes (pad_start={pad_start})")
    return tuple(np.asarray(column, np.int64) for column in zip(*index, strict=True))


def make_window(episode: Episode, start: int, num_frames: int, stride: int = 1) -> Batch:
    """One window (no batch axis) of frames start, start + stride, ... (frames before 0 repeat
    frame 0). With stride > 1 `actions` holds the single env action before each frame (the text
    model reads none)."""
    frames = start + stride * np.arange(num_frames)
    clipped = np.clip(frames, 0, None)
    actions = episode.actions[np.clip(frames - 1, 0, None)].astype(np.float32)
    actions[frames < 1] = 0.0  # nothing led into frame 0 (or into the padding before it)
    window = {"tokens": episode.tokens[clipped].astype(np.int32), "actions": actions,
              "done": episode.done[clipped].astype(np.float32)}
    if episode.margins is not None:
        window["margins"] = episode.margins[clipped].astype(np.float32)
    if episode.generated_margins is not None:
        window["generated_margins"] = episode.generated_margins[clipped].astype(np.float32)
    if episode.text is not None:
        window["text"] = episode.text.astype(np.float32)
        window["text_mask"] = episode.text_mask.astype(bool)
    return window


def collate(windows: Sequence[Batch], control: str) -> Batch:
    keys = ("tokens", "actions", "done") + (("text", "text_mask") if control == "text" else ())
    keys += tuple(k for k in ("margins", "generated_margins") if all(k in w for w in windows))
    return {k: np.stack([w[k] for w in windows]) for k in keys}


def make_batch_fn(episodes: Sequence[Episode], *, batch_size: int, num_frames: int, seed: int,
                  control: str = "action", pad_start: bool = True,
                  stride: int = 1) -> Callable[[int], Batch]:
    """batch_fn(step) -> Batch of `batch_size` windows from a generator seeded by (seed, step)."""
    if control == "text" and any(ep.text is None for ep in episodes):
        raise ValueError("control='text' needs every episode's text and text_mask")
    episode_of, start_of = window_index(episodes, num_frames, pad_start, stride)

    def batch_fn(step: int) -> Batch:
        rng = np.random.default_rng([seed, step])
        chosen = np.sort(rng.integers(0, len(episode_of), batch_size))
        return collate([make_window(episodes[episode_of[i]], int(start_of[i]), num_frames,
                                    stride) for i in chosen], control)

    return batch_fn


def fixed_windows(episodes: Sequence[Episode], *, num_windows: int, num_frames: int,
                  control: str = "action", seed: int = 0, stride: int = 1,
                  pad_start: bool = False) -> Batch:
    """A fixed evaluation set: `num_windows` distinct windows (fewer if there are fewer), sorted."""
    episode_of, start_of = window_index(episodes, num_frames, pad_start=pad_start, stride=stride)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.permutation(len(episode_of))[:num_windows])
    return collate([make_window(episodes[episode_of[i]], int(start_of[i]), num_frames, stride)
                    for i in chosen], control)


def plan_episodes(episodes: Sequence[Episode], num_keyframes: int,
                  start_fraction: float = 0.0) -> list[Episode]:
    """Keyframe plans (a `plan_frames` text model's episodes): for each episode and each start s
    up to `start_fraction` of its length, the frames at round(linspace(s, T - 1, K + 1)) with
    their done flags and margins, zero actions. Starts after 0 relabel the rest of the episode
    as a plan from a later state (hindsight), many more plans than episodes to learn from;
    starts leaving fewer than K frames to the end are skipped."""
    if num_keyframes < 1:
        raise ValueError(f"a keyframe plan needs num_keyframes >= 1, got {num_keyframes}")
    if not 0.0 <= start_fraction < 1.0:
        raise ValueError(f"start_fraction must be in [0, 1), got {start_fraction}")
    plans = []
    for ep in episodes:
        last = len(ep.tokens) - 1
        for start in range(0, min(int(start_fraction * last), last - num_keyframes) + 1):
            frames = np.round(np.linspace(start, last, num_keyframes + 1)).astype(np.int64)
            plans.append(ep._replace(
                tokens=ep.tokens[frames], done=ep.done[frames],
                actions=np.zeros((len(frames), ep.actions.shape[-1]), np.float32),
                margins=None if ep.margins is None else ep.margins[frames],
                generated_margins=(None if ep.generated_margins is None
                                   else ep.generated_margins[frames]),
                reward=None if ep.reward is None else ep.reward[frames]))
    if not plans:
        raise ValueError(f"no episode of {len(episodes)} has the {num_keyframes + 1} frames a "
                         f"{num_keyframes}-keyframe plan needs")
    return plans


def require_margins(episodes: Sequence[Episode], generated: bool = False) -> None:
    """Raises ValueError naming the episodes without bit margins, which a model with
    `margin_inputs` reads (token caches written before margins existed lack them), or with
    `generated`, without the decoded frames' margins a `generated_margin_flag` model trains on."""
    field = "generated_margins" if generated else "margins"
    lacking = [ep.episode_id for ep in episodes if getattr(ep, field) is None]
    if lacking:
        what = ("the decoded frames' bit margins (generated_margins), which this model trains on "
                "(generated_margin_flag): re-run tokenize_dataset with "
                "tokenizer.cache.generated_margins=True" if generated else
                "bit margins, which this model reads (margin_inputs): re-run tokenize_dataset")
        raise ValueError(f"{len(lacking)} token-cache episodes (e.g. {lacking[0]}) have no "
                         f"{what} into a new cache folder")


def split_held_out(episodes: Sequence[Episode], fraction: float) -> tuple[list, list]:
    """(train, held_out): the last max(1, round(fraction * n)) episodes are held out."""
    n_held = max(1, int(round(fraction * len(episodes))))
    if n_held >= len(episodes):
        raise ValueError(f"{len(episodes)} episodes cannot spare {n_held} for held-out evaluation")
    return list(episodes[:-n_held]), list(episodes[-n_held:])


def load_token_cache(cache_dir: str) -> list[Episode]:
    """Episodes of `cache_dir/*.npz` (sorted by id), each with tokens, actions and done (and
    optionally text, text_mask, task_id, reward, margins, first_frame, generated_margins).
    Raises FileNotFoundError / ValueError naming what is missing."""
    paths = sorted(p for p in glob.glob(os.path.join(cache_dir, "*.npz"))
                   if not p.endswith(".tmp.npz"))
    if not paths:
        raise FileNotFoundError(f"no episodes (*.npz) in token cache {cache_dir}")
    episodes = []
    for path in paths:
        with np.load(path) as data:
            missing = {"tokens", "actions", "done"} - set(data.files)
            if missing:
                raise ValueError(f"{path} lacks {sorted(missing)}: the world model needs each "
                                 "episode's actions and done flags beside its tokens")
            text = data["text"] if "text" in data.files else None
            mask = data["text_mask"] if "text_mask" in data.files else None
            task = int(data["task_id"]) if "task_id" in data.files else -1
            reward = data["reward"].astype(np.float32) if "reward" in data.files else None
            margins = data["margins"] if "margins" in data.files else None
            first = data["first_frame"] if "first_frame" in data.files else None
            generated = (data["generated_margins"] if "generated_margins" in data.files
                         else None)
            episodes.append(Episode(data["tokens"], data["actions"], data["done"], text, mask,
                                    os.path.basename(path)[:-len(".npz")], task, reward,
                                    margins, first, generated))
    return episodes


def synthetic_episodes(num_episodes: int, *, grid: tuple[int, int] = (16, 8), num_bits: int = 18,
                       text_length: int = 8, text_dim: int = 384, seed: int = 0) -> list[Episode]:
    """Toy episodes for development and tests: a 2x2 blob of one code on a background of another
    moves by round(action[0:2]) cells per step toward a target corner, and done turns on once it
    is there. The instruction features name the corner (one fixed random [L, E] array per corner),
    so the text model can learn where the blob goes. Bit margins are random (toy)."""
    rng = np.random.default_rng(seed)
    h, w = grid
    corners = [(0, 0), (0, w - 2), (h - 2, 0), (h - 2, w - 2)]
    texts = np.random.default_rng(12345).normal(size=(4, text_length, text_dim)).astype(np.float32)
    text_mask = np.arange(text_length) < text_length // 2
    episodes = []
    for _ in range(num_episodes):
        background, blob = rng.choice(2**num_bits, 2, replace=False)
        corner = int(rng.integers(4))
        pos = np.array([rng.integers(h - 1), rng.integers(w - 1)])
        target = np.array(corners[corner])
        frames, actions, done = [], [], []
        for _ in range(h + w + 2):
            frame = np.full((h, w), background, np.int32)
            frame[pos[0]:pos[0] + 2, pos[1]:pos[1] + 2] = blob
            at_target = bool((pos == target).all())
            move = np.sign(target - pos) * (rng.random(2) < 0.8)  # sometimes waits
            action = np.concatenate([move, 0.05 * rng.normal(size=4), [1.0]]).astype(np.float32)
            frames.append(frame), actions.append(action), done.append(float(at_target))
            if at_target and sum(done) >= 3:
                break
            pos = np.clip(pos + np.round(action[:2]).astype(int), 0, [h - 2, w - 2])
        margins = rng.uniform(0.05, 1.0, (len(frames), h, w, num_bits)).astype(np.float16)
        episodes.append(Episode(np.stack(frames), np.stack(actions), np.asarray(done, np.float32),
                                texts[corner], text_mask, margins=margins))
    return episodes
