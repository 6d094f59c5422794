"""Held-out evaluation of the world models (issue 5): what moves, not what copies.

  report = evaluate_action_model(ctx, episodes, frames, copy_penalty=1.0)
  report = evaluate_text_model(ctx, episodes, frames)

Only a few percent of tokens change per step, so every figure sits next to its copy baseline:
  - one step, teacher-forced (`train.evaluate`): overall and changed-token accuracy vs copying;
  - H-step open-loop rollouts with the real actions, decoded and scored against the real frames
    (LPIPS, PSNR) next to the "tokenized copy" (decode the last context frame's tokens and repeat
    it: the same tokenizer error floor) and the "raw copy" (repeat the last real frame);
  - controllability (paper supplement 8.3): the same start under the real, the negated and zero
    motion gives different frames, the real actions match the real frames better than the negated
    ones do, and extreme or random actions (10x the data's range) give finite, non-flat frames;
    the grid of supplement Fig. 9 (`controllability_grid`) shows one start under each sequence;
  - the text model's golden-trajectory goal (Eq. 6) against the episode's real final frame.
`frames` maps an episode id to its real two-view frames (uint8 [T, H, W, 3]).
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from roboscape_jax.tokenizer import api
from roboscape_jax.tokenizer.evaluate import frame_metrics
from roboscape_jax.tokenizer.model import FrameTokenizer
from roboscape_jax.tokenizer.tokenize import generated_margins
from roboscape_jax.types import PyTree
from roboscape_jax.world_model import sampling
from roboscape_jax.world_model.data import Episode, fixed_windows, make_window, require_margins
from roboscape_jax.world_model.margins import (
    MarginCalibration,
    bit_agreement,
    fit_margin_calibration,
)
from roboscape_jax.world_model.model import WorldModel, last_frame_outputs

MAX_PSNR = 60.0  # dB; PSNR of identical frames (infinite) is reported as this


class EvalContext(NamedTuple):
    """Everything a world-model evaluation reads: the model, the tokenizer and LPIPS."""

    model: WorldModel
    params: PyTree
    tokenizer: FrameTokenizer
    tokenizer_params: PyTree
    lpips_params: PyTree


class RolloutStarts(NamedTuple):
    """Open-loop evaluation clips: context, the real future and its actions."""

    window: sampling.Window  # tokens [N, C, h, w], actions [N, C, A]
    actions: np.ndarray  # float32 [N, H, A], applied at each rollout step
    real: np.ndarray  # uint8 [N, H, H_img, W_img, 3], the real frames after each action
    last_real: np.ndarray  # uint8 [N, H_img, W_img, 3], the last real context frame
    episode_ids: list[str]
    # uint8 [N, H_img, W_img, 3], each clip's episode-first real frame: the reference a
    # reference-conditioned tokenizer decodes the clip's tokens with
    first_real: np.ndarray | None = None


def rollout_starts(episodes: Sequence[Episode], frames: Mapping[str, np.ndarray], *,
                   num_context: int, horizon: int, starts_per_episode: int = 2,
                   seed: int = 0) -> RolloutStarts:
    """Clips of `horizon` real steps after `num_context` real frames, up to `starts_per_episode`
    per episode at seeded random positions. Raises ValueError when no episode is long enough."""
    rng = np.random.default_rng(seed)
    rows = []
    for ep in episodes:
        last_start = len(ep.tokens) - horizon - num_context
        if last_start < 0:
            continue
        picks = rng.choice(last_start + 1, min(starts_per_episode, last_start + 1), replace=False)
        for s in sorted(picks):
            t = s + num_context - 1  # the last context frame
            actions_in = ep.actions[s - 1:t] if s > 0 else np.concatenate(
                [np.zeros((1, ep.actions.shape[1]), np.float32), ep.actions[:t]])
            margins = None if ep.margins is None else ep.margins[s:t + 1]
            rows.append((ep.tokens[s:t + 1], actions_in, ep.actions[t:t + horizon],
                         frames[ep.episode_id][t + 1:t + 1 + horizon],
                         frames[ep.episode_id][t], ep.episode_id, margins,
                         frames[ep.episode_id][0]))
    if not rows:
        raise ValueError(f"no episode has {num_context + horizon} frames for a {horizon}-step "
                         "rollout")
    tokens, ctx_actions, actions, real, last, ids, margins, first = zip(*rows, strict=True)
    window = sampling.Window(jnp.asarray(np.stack(tokens), jnp.int32),
                             jnp.asarray(np.stack(ctx_actions), jnp.float32),
                             None if any(m is None for m in margins)
                             else jnp.asarray(np.stack(margins), jnp.float32))
    return RolloutStarts(window, np.stack(actions).astype(np.float32), np.stack(real),
                         np.stack(last), list(ids), np.stack(first))


def decode_frames(ctx: EvalContext, tokens: np.ndarray, batch_size: int = 64,
                  references: np.ndarray | None = None) -> np.ndarray:
    """int [..., h, w] tokens -> float32 [..., H, W, 3] frames in [0, 1], decoded in whole
    batches (the last one padded): one compiled shape for every call. `references` uint8
    [N, H, W, 3], one per entry of the tokens' first axis (its episode-first real frame): what a
    reference-conditioned tokenizer decodes with; ignored by other tokenizers."""
    lead, grid = tokens.shape[:-2], tokens.shape[-2:]
    flat = np.asarray(tokens).reshape(-1, *grid)
    n = len(flat)
    size = min(batch_size, n)
    flat = np.concatenate([flat, flat[:(-n) % size]])
    refs = None
    if ctx.tokenizer.reference_conditioning:
        if references is None or len(references) != (lead[0] if lead else 1):
            raise ValueError("a reference-conditioned tokenizer decodes with each clip's "
                             "episode-first frame: pass `references` [N, H, W, 3] for the "
                             f"tokens' first axis ({lead[0] if lead else 1})")
        refs = np.asarray(references).reshape(len(references), *([1] * (len(lead) - 1)),
                                              *references.shape[1:])
        refs = np.broadcast_to(refs, (*lead, *references.shape[1:])).reshape(
            -1, *references.shape[1:])
        refs = np.concatenate([refs, refs[:(-n) % size]])
    out = [np.asarray(api.decode(ctx.tokenizer_params, flat[i:i + size], model=ctx.tokenizer,
                                 reference=None if refs is None else refs[i:i + size]))
           for i in range(0, len(flat), size)]
    out = np.concatenate(out)[:n]
    return out.reshape(*lead, *out.shape[1:])


def score_frames(ctx: EvalContext, predicted: np.ndarray, real: np.ndarray,
                 batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per-frame LPIPS and PSNR (capped at MAX_PSNR) of float [0, 1] `predicted` against uint8
    `real`, any leading shape [...]: {name: [...]}."""
    lead = predicted.shape[:-3]
    p = predicted.reshape(-1, *predicted.shape[-3:]).astype(np.float32)
    r = real.reshape(-1, *real.shape[-3:]).astype(np.float32) / 255.0
    n = len(p)
    size = min(batch_size, n)
    pad = (-n) % size  # pad to whole batches: one compiled shape for every call
    p, r = (np.concatenate([x, x[:pad]]) for x in (p, r))
    scores: dict[str, list] = {"lpips": [], "psnr": []}
    for i in range(0, len(p), size):
        m = frame_metrics(jnp.asarray(r[i:i + size]), jnp.asarray(p[i:i + size]),
                          ctx.lpips_params, psnr_lpips_only=True)
        for k in scores:
            scores[k].append(np.asarray(m[k]))
    out = {k: np.concatenate(v)[:n].reshape(lead) for k, v in scores.items()}
    out["psnr"] = np.minimum(out["psnr"], MAX_PSNR)  # identical frames: inf, which no mean survives
    return out


def make_penalised_rollout_fn(ctx: EvalContext, *, num_steps: int,
                              margin_calibration: MarginCalibration | None = None,
                              done_pass: bool = False) -> Callable:
    """A jitted (window, actions [B, H, A], key, reference, copy_penalty []) -> Rollout for the
    action model: the copy penalty is an input, so a sweep over penalties compiles once.
    `reference` uint8 [B, H, W, 3] or None: the clips' episode-first frames (reference-conditioned
    tokenizers, for the generated frames' margins). A generated frame's bit margins are those of
    its decoded image, or with `margin_calibration` read from the model's bit probabilities."""

    @jax.jit
    def rollout_fn(window: sampling.Window, actions: jax.Array, key: jax.Array,
                   reference: jax.Array | None, copy_penalty: jax.Array):
        def margins_fn(tokens: jax.Array) -> jax.Array:  # a generated frame's: its decoded image
            return generated_margins(ctx.tokenizer, ctx.tokenizer_params, tokens,
                                     api.reference_or_none(ctx.tokenizer, reference))

        return sampling.rollout(ctx.params, ctx.model, window, actions, key,
                                num_steps=num_steps, copy_penalty=copy_penalty,
                                margins_fn=margins_fn if ctx.model.config.margin_inputs
                                else None, margin_calibration=margin_calibration,
                                done_pass=done_pass)

    return rollout_fn


def fit_rollout_margins(ctx: EvalContext, episodes: Sequence[Episode], *, num_windows: int = 1024,
                        batch_size: int = 64, seed: int = 0) -> MarginCalibration:
    """The calibration from the action model's bit agreement to the real bit margins, fitted on
    `num_windows` windows of `episodes` (`train`): the last frame fully masked, as the first
    MaskGIT pass of a rollout step sees it, scored against that frame's real margins."""
    c = ctx.model.config
    if not c.margin_inputs:
        raise ValueError("fit_rollout_margins: this world model reads no bit margins")
    require_margins(episodes)
    windows = fixed_windows(episodes, num_windows=num_windows, num_frames=c.num_frames, seed=seed)
    agreement, margins = [], []
    for i in range(0, len(windows["tokens"]), batch_size):
        chunk = {k: jnp.asarray(v[i:i + batch_size]) for k, v in windows.items()
                 if k in ("tokens", "actions", "margins")}
        agreement.append(np.asarray(_window_bit_agreement(ctx.model, ctx.params, chunk)))
        margins.append(np.asarray(chunk["margins"][:, -1]))
    return fit_margin_calibration(np.concatenate(agreement), np.concatenate(margins))


@functools.partial(jax.jit, static_argnums=0)
def _window_bit_agreement(model: WorldModel, params: PyTree, batch) -> jax.Array:
    """[B, h, w, K] bit agreement of each window's last frame, predicted with it fully masked,
    with its real codes."""
    tokens = batch["tokens"]
    b, _, h, w = tokens.shape
    mask = jnp.zeros(tokens.shape, bool).at[:, -1].set(True)
    out = model.apply(params, tokens, batch["actions"], None, mask, batch["margins"])
    logits = out.logits[:, -1].reshape(b, h * w, *out.logits.shape[-2:])
    return bit_agreement(logits, tokens[:, -1].reshape(b, h * w), model.config.num_bits)


def make_rollout_fn(ctx: EvalContext, *, num_steps: int, copy_penalty: float,
                    penalised: Callable | None = None) -> Callable:
    """(window, actions [B, H, A], key, reference=None) -> Rollout with `copy_penalty` fixed;
    pass one `make_penalised_rollout_fn` as `penalised` to share its compiles between penalties
    (`rollout_fn._cache_size()` counts them)."""
    penalised = penalised or make_penalised_rollout_fn(ctx, num_steps=num_steps)
    penalty = jnp.float32(copy_penalty)

    def rollout_fn(window: sampling.Window, actions: jax.Array, key: jax.Array,
                   reference: jax.Array | None = None):
        return penalised(window, actions, key, reference, penalty)

    rollout_fn._cache_size = penalised._cache_size
    return rollout_fn


def _batched_rollouts(rollout_fn, starts: RolloutStarts, actions: np.ndarray,
                      batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(predicted tokens [N, H, h, w], done probabilities [N, H]) for every start (the last batch
    padded, then trimmed)."""
    n, tokens, done = len(actions), [], []
    for i in range(0, n, batch_size):
        idx = np.arange(i, i + batch_size) % n  # pad by wrapping: static shapes, one compile
        window = jax.tree.map(lambda x, idx=idx: x[idx], starts.window)
        reference = None if starts.first_real is None else jnp.asarray(starts.first_real[idx])
        out = rollout_fn(window, jnp.asarray(actions[idx]), jax.random.PRNGKey(0), reference)
        tokens.append(np.asarray(out.tokens)[:min(batch_size, n - i)])
        done.append(np.asarray(out.done)[:min(batch_size, n - i)])
    return np.concatenate(tokens), np.concatenate(done)


def open_loop_metrics(ctx: EvalContext, rollout_fn, starts: RolloutStarts, *,
                      batch_size: int = 16) -> tuple[dict[str, float], np.ndarray]:
    """Mean LPIPS/PSNR of the H-step rollouts with the real actions and of both copy baselines,
    per step and over all steps, and the share of tokens the model changes from its previous
    frame at each step (`changed_tokens_step<k>`, k = 1..H: a rollout that stops moving after
    its first step shows as zeros). Returns (metrics, predicted frames [N, H, H_img, W_img, 3])."""
    horizon = starts.actions.shape[1]
    tokens, _ = _batched_rollouts(rollout_fn, starts, starts.actions, batch_size)
    predicted = decode_frames(ctx, tokens, references=starts.first_real)
    tokenized_last = decode_frames(ctx, np.asarray(starts.window.tokens[:, -1]),
                                   references=starts.first_real)
    baselines = {"model": predicted,
                 "tokenized_copy": np.repeat(tokenized_last[:, None], horizon, 1),
                 "raw_copy": np.repeat(starts.last_real[:, None].astype(np.float32) / 255.0,
                                       horizon, 1)}
    metrics: dict[str, float] = {"num_clips": float(len(predicted)), "horizon": float(horizon)}
    for name, frames_ in baselines.items():
        scores = score_frames(ctx, frames_, starts.real)
        for k, v in scores.items():
            metrics[f"{name}_{k}"] = float(v.mean())
            metrics[f"{name}_{k}_last_step"] = float(v[:, -1].mean())
    metrics["lpips_gain_vs_tokenized_copy"] = (
        1.0 - metrics["model_lpips"] / metrics["tokenized_copy_lpips"])
    previous = np.concatenate([np.asarray(starts.window.tokens[:, -1:]), tokens[:, :-1]], 1)
    for k, share in enumerate((tokens != previous).mean(axis=(0, 2, 3)), start=1):
        metrics[f"changed_tokens_step{k}"] = float(share)
    return metrics, predicted


def controllability(ctx: EvalContext, rollout_fn, starts: RolloutStarts, *,
                    action_range: np.ndarray, batch_size: int = 16, seed: int = 0,
                    done_threshold: float = 0.9) -> dict[str, float]:
    """Supplement 8.3 at this scale (module docstring). `action_range` [A] is the data's max |a|
    per dimension; the extreme actions are uniform in 10x that range. Also the share of clips
    whose done reaches `done_threshold` within the horizon, with the real actions and with the
    gripper held open from the first step: a done head that reads the expert's final release
    as success fires far more often with it held open (docs/performance_history.md, "The done
    head without the gripper")."""
    runs, done = {}, {}
    for name, a in _reference_actions(starts.actions, action_range, seed).items():
        tokens, done[name] = _batched_rollouts(rollout_fn, starts, a, batch_size)
        runs[name] = decode_frames(ctx, tokens, references=starts.first_real)
    gripper_open = starts.actions.astype(np.float32)  # (a copy)
    gripper_open[..., -1] = 1.0
    _, done["gripper_open"] = _batched_rollouts(rollout_fn, starts, gripper_open, batch_size)
    fired = {name: float(np.mean((d >= done_threshold).any(axis=1))) for name, d in done.items()}
    lp = {name: score_frames(ctx, f, starts.real)["lpips"][:, -1] for name, f in runs.items()}
    last = {name: f[:, -1] for name, f in runs.items()}
    differs = lambda a, b: float(np.mean(np.abs(last[a] - last[b]).mean((1, 2, 3)) > 1e-3))  # noqa
    flat = float(np.mean(runs["extreme"].std(axis=(-3, -2, -1)) < 0.02))
    return {
        "real_beats_negated_fraction": float(np.mean(lp["real"] < lp["negated"])),
        "real_beats_zero_fraction": float(np.mean(lp["real"] < lp["zero"])),
        "lpips_real_actions": float(lp["real"].mean()),
        "lpips_negated_actions": float(lp["negated"].mean()),
        "lpips_zero_motion": float(lp["zero"].mean()),
        "real_vs_negated_differ_fraction": differs("real", "negated"),
        "real_vs_zero_differ_fraction": differs("real", "zero"),
        "extreme_actions_finite": float(np.isfinite(runs["extreme"]).all()),
        "extreme_actions_flat_fraction": flat,
        "extreme_actions_lpips": float(lp["extreme"].mean()),
        "done_fired_fraction_real_actions": fired["real"],
        "done_fired_fraction_gripper_open": fired["gripper_open"],
    }


GRID_AXES = ("x", "y", "z")


def _reference_actions(real: np.ndarray, action_range: np.ndarray, seed: int
                       ) -> dict[str, np.ndarray]:
    """{real, negated, zero, extreme} float32 [..., H, A] from the real actions: the arm's motion
    reversed or removed (the gripper command kept), and uniform random actions in 10x
    `action_range` (the data's max |a| per dimension)."""
    negated, zero = real.copy(), real.copy()
    negated[..., :6] *= -1.0
    zero[..., :6] = 0.0
    extreme = np.random.default_rng(seed).uniform(-10, 10, real.shape) * action_range
    return {k: v.astype(np.float32) for k, v in
            (("real", real), ("negated", negated), ("zero", zero), ("extreme", extreme))}


def controllability_actions(real: np.ndarray, *, speed: np.ndarray, action_range: np.ndarray,
                            seed: int = 0) -> dict[str, np.ndarray]:
    """The action sequences of the controllability grid for one clip's real actions [H, A]: the
    real, negated and zero motion, a constant move of `speed[axis]` along each +-axis of the
    end effector (no rotation, the real first gripper command held), and uniform random actions
    in 10x `action_range` (supplement Fig. 9). {row name: float32 [H, A]}."""
    reference = _reference_actions(real, action_range, seed)
    rows = {k: reference[k] for k in ("real", "negated", "zero")}
    for axis, name in enumerate(GRID_AXES):
        for sign, tag in ((1.0, "+"), (-1.0, "-")):
            move = np.zeros_like(real, dtype=np.float32)
            move[:, axis] = sign * speed[axis]
            move[:, 6:] = real[:1, 6:]
            rows[f"{tag}{name}"] = move
    rows["extreme"] = reference["extreme"]
    return rows


def controllability_grid(ctx: EvalContext, rollout_fn, starts: RolloutStarts, *, clip: int,
                         speed: np.ndarray, action_range: np.ndarray, batch_size: int = 16,
                         seed: int = 0) -> tuple[np.ndarray, dict[str, float]]:
    """Supplement Fig. 9 at this scale: one clip's start rolled out under each sequence of
    `controllability_actions`. Returns (uint8 image whose rows are the sequences and whose
    columns are the last context frame then the H generated frames, {row: mean absolute pixel
    difference of its last frame from the zero-motion row's, in [0, 1]}: how far each
    sequence moves the picture away from standing still)."""
    rows = controllability_actions(starts.actions[clip], speed=speed, action_range=action_range,
                                   seed=seed)
    names = list(rows)
    repeat = lambda x: None if x is None else np.repeat(np.asarray(x)[clip:clip + 1],  # noqa
                                                         len(names), 0)
    # the window as jax arrays like every other call's: numpy arguments would be another entry
    # of the rollout's jit cache (the compile count the evaluation reports)
    window = jax.tree.map(lambda x: jnp.asarray(repeat(x)), starts.window)
    one = RolloutStarts(window, np.stack([rows[k] for k in names]),
                        repeat(starts.real), repeat(starts.last_real),
                        [starts.episode_ids[clip]] * len(names), repeat(starts.first_real))
    frames = decode_frames(ctx, _batched_rollouts(rollout_fn, one, one.actions, batch_size)[0],
                           references=one.first_real)  # [R, H, H_img, W_img, 3]
    start = decode_frames(ctx, np.asarray(starts.window.tokens[clip:clip + 1, -1]),
                          references=None if starts.first_real is None
                          else starts.first_real[clip:clip + 1])[0]
    zero = frames[names.index("zero"), -1]
    moved = {k: float(np.abs(frames[i, -1] - zero).mean()) for i, k in enumerate(names)}
    height, width = start.shape[:2]
    gap_v = np.full((height, 2, 3), 255, np.uint8)
    lines = []
    for i in range(len(names)):
        cells = [_to_uint8(start)] + [_to_uint8(frames[i, t]) for t in range(frames.shape[1])]
        line = np.concatenate([c for cell in cells for c in (cell, gap_v)][:-1], axis=1)
        lines += [line, np.full((2, line.shape[1], 3), 255, np.uint8)]
    return np.concatenate(lines[:-1]), moved


def write_controllability_grid(path: str, image: np.ndarray, names: Sequence[str]) -> None:
    """The grid as a PNG with each row's action sequence named in a left margin."""
    from PIL import Image, ImageDraw

    rows = len(names)
    row_h = (image.shape[0] + 2) // rows
    margin = 56
    canvas = Image.new("RGB", (image.shape[1] + margin, image.shape[0]), "white")
    canvas.paste(Image.fromarray(image), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for i, name in enumerate(names):
        draw.text((4, i * row_h + row_h // 2 - 6), name, fill="black")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    canvas.save(path)


def choose_copy_penalty(results: Mapping[float, Mapping[str, float]],
                        open_loop_lpips: Mapping[float, float] | None = None) -> float:
    """The validation-split choice among the penalties whose one-step overall accuracy stays at or
    above copying: the lowest open-loop LPIPS when `open_loop_lpips` is given (what the env's
    frames are judged by), else the best changed-token accuracy. When no penalty keeps the
    accuracy: the lowest open-loop LPIPS of all, else the smallest penalty. (With LPIPS: the
    penalty `choose_decoding` picks for a single MaskGIT step count.)"""
    if open_loop_lpips is not None:
        return choose_decoding(results, {(0, p): v for p, v in open_loop_lpips.items()})[1]
    ok = [p for p, m in results.items() if m["token_accuracy"] >= m["copy_accuracy"]]
    if not ok:
        return min(results)
    return max(ok, key=lambda p: results[p]["changed_token_accuracy"])


def choose_decoding(one_step: Mapping[float, Mapping[str, float]],
                    open_loop_lpips: Mapping[tuple[int, float], float]) -> tuple[int, float]:
    """The validation-split choice of (MaskGIT steps, copy penalty): among the penalties whose
    one-step overall accuracy stays at or above copying (all when none does), the pair with the
    lowest open-loop LPIPS; ties go to fewer steps (cheaper env steps). `one_step`: penalty ->
    one-step metrics (the first MaskGIT pass, the same for every step count); `open_loop_lpips`:
    (steps, penalty) -> open-loop LPIPS on val."""
    ok = {p for p, m in one_step.items() if m["token_accuracy"] >= m["copy_accuracy"]}
    pairs = [pair for pair in open_loop_lpips if pair[1] in ok] or list(open_loop_lpips)
    if not pairs:
        raise ValueError("choose_decoding needs at least one (steps, penalty) open-loop score")
    return min(pairs, key=lambda pair: (open_loop_lpips[pair], pair[0]))


def evaluate_text_model(ctx: EvalContext, episodes: Sequence[Episode],
                        frames: Mapping[str, np.ndarray], *, horizon: int, tau: float,
                        num_steps: int, batch_size: int = 16, temperature: float = 0.0,
                        copy_penalty: float = 0.0) -> tuple[dict[str, float], dict]:
    """Eq. (6) goals for each episode's first frame and instruction, scored by LPIPS against the
    real final frame next to the real and the tokenized initial frame. `temperature` and
    `copy_penalty` are the golden rollout's decode settings (0, 0: greedy). `horizon` and the
    returned goal indices count env steps (`sampling.golden_trajectory`). Returns (metrics,
    {"goal": uint8 frames [N, ...], "final": ..., "first": ..., "goal_index": [N]})."""
    firsts = np.stack([ep.tokens[0] for ep in episodes])
    text = np.stack([ep.text for ep in episodes]).astype(np.float32)
    mask = np.stack([ep.text_mask for ep in episodes])
    margin_kw, first_margins = {}, None
    if ctx.model.config.margin_inputs:
        require_margins(episodes)
        first_margins = np.stack([ep.margins[0] for ep in episodes]).astype(np.float32)
        margin_kw = dict(tokenizer=ctx.tokenizer, tokenizer_params=ctx.tokenizer_params)
    goal_tokens, goal_index, reached = [], [], []
    n = len(episodes)
    first = np.stack([frames[ep.episode_id][0] for ep in episodes])
    for i in range(0, n, batch_size):
        idx = np.arange(i, i + batch_size) % n
        if first_margins is not None:
            margin_kw["first_margins"] = jnp.asarray(first_margins[idx])
            margin_kw["reference"] = api.reference_or_none(ctx.tokenizer, jnp.asarray(first[idx]))
        g = sampling.golden_trajectory(ctx.params, ctx.model, jnp.asarray(firsts[idx]),
                                       jnp.asarray(text[idx]), jnp.asarray(mask[idx]),
                                       jax.random.PRNGKey(0), horizon=horizon, tau=tau,
                                       num_steps=num_steps, temperature=temperature,
                                       copy_penalty=copy_penalty, **margin_kw)
        k = min(batch_size, n - i)
        goal_tokens.append(np.asarray(g.goal_tokens)[:k])
        goal_index.append(np.asarray(g.goal_index)[:k])
        reached.append(np.asarray(g.reached)[:k])
    goal = decode_frames(ctx, np.concatenate(goal_tokens), references=first)
    final = np.stack([frames[ep.episode_id][-1] for ep in episodes])
    first_tok = decode_frames(ctx, firsts, references=first)
    lp_goal = score_frames(ctx, goal, final)["lpips"]
    lp_first = score_frames(ctx, first.astype(np.float32) / 255.0, final)["lpips"]
    lp_first_tok = score_frames(ctx, first_tok, final)["lpips"]
    index = np.concatenate(goal_index)
    metrics = {
        "num_episodes": float(n),
        "goal_closer_than_initial_fraction": float(np.mean(lp_goal < lp_first)),
        "goal_closer_than_tokenized_initial_fraction": float(np.mean(lp_goal < lp_first_tok)),
        "lpips_goal_to_final": float(lp_goal.mean()),
        "lpips_initial_to_final": float(lp_first.mean()),
        "lpips_tokenized_initial_to_final": float(lp_first_tok.mean()),
        "done_reached_fraction": float(np.concatenate(reached).mean()),
        "goal_index_mean": float(index.mean()),
        "real_length_mean": float(np.mean([len(ep.tokens) for ep in episodes])),
    }
    images = {"goal": api.to_uint8(goal), "final": final, "first": first, "goal_index": index}
    return metrics, images


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    if frames.dtype == np.uint8:
        return frames
    return np.asarray(api.to_uint8(frames))


def write_rollout_gifs(out_dir: str, ctx: EvalContext, starts: RolloutStarts,
                       predicted: np.ndarray, num: int, fps: int = 4) -> list[str]:
    """GIFs of the first `num` clips: real | world model | tokenized copy, side by side."""
    import imageio.v2 as imageio

    os.makedirs(out_dir, exist_ok=True)
    copy = decode_frames(ctx, np.asarray(starts.window.tokens[:num, -1]),
                         references=None if starts.first_real is None
                         else starts.first_real[:num])
    paths = []
    for i in range(min(num, len(predicted))):
        gap = np.full((predicted.shape[2], 2, 3), 255, np.uint8)
        frames = [np.concatenate([starts.real[i, t], gap, _to_uint8(predicted[i, t]), gap,
                                  _to_uint8(copy[i])], axis=1)
                  for t in range(predicted.shape[1])]
        path = os.path.join(out_dir, f"rollout_{i:02d}_{starts.episode_ids[i]}.gif")
        imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
        paths.append(path)
    return paths


def write_goal_grid(path: str, images: Mapping[str, np.ndarray], num: int) -> None:
    """A PNG whose rows are episodes: first frame | generated goal | real final frame."""
    import imageio.v2 as imageio

    os.makedirs(os.path.dirname(path), exist_ok=True)
    rows = []
    for i in range(min(num, len(images["goal"]))):
        cells = [_to_uint8(np.asarray(images[k][i])) for k in ("first", "goal", "final")]
        gap = np.full((cells[0].shape[0], 2, 3), 255, np.uint8)
        rows.append(np.concatenate([cells[0], gap, cells[1], gap, cells[2]], axis=1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, np.uint8))
    imageio.imwrite(path, np.concatenate(rows[:-1]))


def teacher_forced_done(ctx: EvalContext, episode: Episode, batch_size: int = 64) -> np.ndarray:
    """The action model's done probability [T] of every real frame of `episode`, each read from
    the window of real frames (and actions) that ends there (`data.py` padding at the start)."""
    return teacher_forced_outputs(ctx, [episode], batch_size)[0][0]


def teacher_forced_outputs(ctx: EvalContext, episodes: Sequence[Episode], batch_size: int = 64
                           ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per episode, (done probability [T], pooled hidden features [T, D]) of every real frame, each
    read from the window of real frames and actions that ends there. The windows of all episodes
    share whole batches, so one compiled program serves every episode."""
    t_frames = ctx.model.config.num_frames
    windows = [make_window(ep, t - t_frames + 1, t_frames)
               for ep in episodes for t in range(len(ep.tokens))]
    n = len(windows)
    windows += windows[:1] * ((-n) % batch_size)  # whole batches: one compile
    done, features = [], []
    for i in range(0, len(windows), batch_size):
        chunk = windows[i:i + batch_size]
        tokens = jnp.asarray(np.stack([w["tokens"] for w in chunk]))
        actions = jnp.asarray(np.stack([w["actions"] for w in chunk]))
        margins = (jnp.asarray(np.stack([w["margins"] for w in chunk]))
                   if ctx.model.config.margin_inputs else None)
        d, f = _last_frame_outputs(ctx.model, ctx.params, tokens, actions, None, margins)
        done.append(np.asarray(d))
        features.append(np.asarray(f))
    done = _split_by_episode(np.concatenate(done)[:n], episodes)
    features = _split_by_episode(np.concatenate(features)[:n], episodes)
    return list(zip(done, features, strict=True))


_last_frame_outputs = jax.jit(last_frame_outputs, static_argnames="model")


def decode_episodes(ctx: EvalContext, episodes: Sequence[Episode], batch_size: int = 64,
                    first_frames: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
    """Every frame of each episode decoded from its cached tokens: uint8 [T, H, W, 3] each (all
    episodes share whole batches: one compile). `first_frames`: each episode's first real frame
    (uint8 [H, W, 3]; a reference-conditioned tokenizer decodes with it)."""
    references = None
    if first_frames is not None:
        references = np.concatenate([np.repeat(np.asarray(f)[None], len(ep.tokens), axis=0)
                                     for f, ep in zip(first_frames, episodes, strict=True)])
    frames = decode_frames(ctx, np.concatenate([ep.tokens for ep in episodes]), batch_size,
                           references)
    return _split_by_episode(_to_uint8(frames), episodes)


def _split_by_episode(values: np.ndarray, episodes: Sequence[Episode]) -> list[np.ndarray]:
    """[sum of T_e, ...] values of every episode's frames, concatenated -> one [T_e, ...] each."""
    return np.split(values, np.cumsum([len(ep.tokens) for ep in episodes])[:-1])


def spearman(values: np.ndarray) -> float:
    """Rank correlation of a reward curve [T] with time (progress); nan for a constant curve."""
    from scipy.stats import spearmanr

    if np.ptp(values) == 0:
        return float("nan")
    return float(spearmanr(np.arange(len(values)), values).statistic)


def reward_curves(ctx: EvalContext, frames: np.ndarray, goal: np.ndarray,
                  done: np.ndarray | None = None, *, sparse_bonus: float = 10.0,
                  tau: float = 0.9) -> dict[str, np.ndarray]:
    """Rewards along one real episode (frames uint8 [T, H, W, 3]) with the dense term read on both
    views and on the third view only: the oracle uses the episode's real final frame as the goal;
    the world-model reward uses `goal` (uint8 [H, W, 3], from the text model) plus, with `done`,
    the sparse term c * [done >= tau] (Eqs. 5-8)."""
    t = len(frames)
    curves = {}
    for views, rows in (("both", slice(None)), ("third", slice(0, frames.shape[1] // 2))):
        f = frames[:, rows].astype(np.float32) / 255.0
        targets = np.stack([frames[-1, rows], goal[rows]])  # oracle, world model: one call
        lp = score_frames(ctx, np.stack([f, f]), np.repeat(targets[:, None], t, 1))["lpips"]
        for name, row in (("oracle", lp[0]), ("world_model", lp[1])):
            curves[f"{name}_dense_{views}"] = 1.0 - row
    if done is not None:
        sparse = sparse_bonus * (done >= tau)
        for views in ("both", "third"):
            curves[f"world_model_{views}"] = curves[f"world_model_dense_{views}"] + sparse
    return curves


def plot_reward_curves(path: str, rows: Sequence[tuple[Episode, Mapping[str, np.ndarray]]]) -> None:
    """One panel per episode: every reward curve, min-max scaled, against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig, axes = plt.subplots(1, max(1, len(rows)), figsize=(4 * max(1, len(rows)), 3),
                             squeeze=False)
    for ax, (ep, curves) in zip(axes[0], rows, strict=False):
        for name, curve in curves.items():
            span = np.ptp(curve)
            scaled = (curve - curve.min()) / span if span else np.zeros_like(curve)
            ax.plot(scaled, label=f"{name} (rho {spearman(curve):.2f})", lw=1)
        ax.set_title(ep.episode_id or "episode", fontsize=7)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("reward (min-max scaled)")
    axes[0][-1].legend(fontsize=5, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
