"""Held-out tokenizer quality: PSNR, SSIM, LPIPS, codebook usage and perplexity, plus an image grid.

PSNR and SSIM (dm-pix) are on [0, 1] frames. LPIPS (AlexNet, v0.1) is on the whole stacked frame
(what the world-model env's reward compares) and, as `lpips_per_view`, on each camera view alone.
Usage is the fraction of the 2^K codes that occur at least once; perplexity is exp of the entropy
of the empirical code distribution (both also per sub-code when the code is factored).

With each frame's episode-first frame, PSNR is also split into the pixels that moved since that
frame (any channel differs by more than 16/255) and the static rest: `psnr_moving` is what the
world model's motion is drawn with (a tokenizer that copies the static scene can score a high
PSNR while smearing the arm), `moving_fraction` how much of the frame moved.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

from roboscape_jax.tokenizer import api
from roboscape_jax.tokenizer.losses import lpips_distance
from roboscape_jax.tokenizer.model import FrameTokenizer, index_to_subcodes
from roboscape_jax.types import PyTree
from roboscape_jax.utils.files import write_json


@functools.partial(jax.jit, static_argnames=("num_views", "psnr_lpips_only"))
def frame_metrics(original: jax.Array, recon: jax.Array, lpips_params: PyTree | None,
                  num_views: int = 2, psnr_lpips_only: bool = False) -> dict[str, jax.Array]:
    """Per-frame metrics. original, recon: [B, H, W, 3] in [0, 1]. Returns {name: [B]}.
    `psnr_lpips_only`: PSNR and whole-frame LPIPS alone (no SSIM, no per-view LPIPS: half the
    AlexNet passes), for evaluations that read nothing else."""
    out = {"psnr": dm_pix.psnr(original, recon)}
    if not psnr_lpips_only:
        out["ssim"] = dm_pix.ssim(original, recon)
    if lpips_params is not None:
        a, b = original * 2 - 1, recon * 2 - 1
        out["lpips"] = lpips_distance(lpips_params, a, b)
        if psnr_lpips_only:
            return out
        bsz, h, w, c = a.shape
        views = lambda x: x.reshape(bsz * num_views, h // num_views, w, c)  # noqa: E731
        out["lpips_per_view"] = lpips_distance(lpips_params, views(a), views(b)).reshape(
            bsz, num_views).mean(axis=1)
    return out


MOVING_THRESHOLD = 16.0 / 255.0  # a pixel "moved" when a channel differs by more than this


@jax.jit
def moving_error_sums(original: jax.Array, recon: jax.Array, first: jax.Array
                      ) -> dict[str, jax.Array]:
    """Squared-error sums and pixel counts on the moving / static pixels (moved since `first`,
    the episode's first frame; module docstring). All [B, H, W, 3] in [0, 1]; {name: [B]}."""
    moving = (jnp.abs(original - first).max(-1) > MOVING_THRESHOLD).astype(jnp.float32)
    sq = jnp.square(recon - original).mean(-1)  # [B, H, W]
    return {"sse_moving": (sq * moving).sum((1, 2)), "count_moving": moving.sum((1, 2)),
            "sse_static": (sq * (1 - moving)).sum((1, 2)),
            "count_static": (1 - moving).sum((1, 2))}


def _psnr(sse: float, count: float) -> float:
    return float(10 * np.log10(count / max(sse, 1e-12))) if count else float("nan")


def code_statistics(counts: np.ndarray) -> dict[str, float]:
    """Usage (fraction of codes seen) and perplexity exp(H) of a code histogram [V]."""
    p = counts / max(counts.sum(), 1)
    nz = p[p > 0]
    return {"usage": float((counts > 0).mean()),
            "perplexity": float(np.exp(-np.sum(nz * np.log(nz))))}


def evaluate(model: FrameTokenizer, params: PyTree, frames: np.ndarray, *,
             lpips_params: PyTree | None = None, batch_size: int = 64,
             num_views: int = 2, references: np.ndarray | None = None,
             first_frames: np.ndarray | None = None) -> tuple[dict[str, float], np.ndarray]:
    """Scores `frames` (uint8 [N, H, W, 3]) through encode -> decode, `batch_size` at a time;
    `references` [N, H, W, 3]: each frame's episode-first frame (reference-conditioned
    tokenizers read them); `first_frames` (the same, for any tokenizer): adds the moving /
    static split of PSNR (module docstring). Defaults to `references`.

    Returns (metrics, reconstructions uint8 [N, H, W, 3]).
    """
    def padded(x: np.ndarray, start: int) -> np.ndarray:
        x = x[start:start + batch_size]
        return np.concatenate([x, np.repeat(x[-1:], batch_size - len(x), axis=0)])

    sums: dict[str, float] = {}
    first_frames = references if first_frames is None else first_frames
    motion: dict[str, float] = {}
    full_counts = np.zeros(2**model.num_bits, np.int64)
    sub_counts = np.zeros((model.num_factors, 2 ** (model.num_bits // model.num_factors)), np.int64)
    recons = []
    for start in range(0, len(frames), batch_size):
        n = len(frames[start:start + batch_size])  # the last batch is padded to batch_size:
        batch = padded(frames, start)  # one compiled program for all
        reference = None if references is None else padded(references, start)
        tokens = api.encode(params, batch, model=model, reference=reference)
        recon = api.decode(params, tokens, model=model, reference=reference)
        per_frame = frame_metrics(jnp.asarray(batch, jnp.float32) / 255.0, recon, lpips_params,
                                  num_views)
        for name, values in jax.device_get(per_frame).items():
            sums[name] = sums.get(name, 0.0) + float(np.sum(values[:n]))
        if first_frames is not None:
            first = jnp.asarray(padded(first_frames, start), jnp.float32) / 255.0
            split = moving_error_sums(jnp.asarray(batch, jnp.float32) / 255.0, recon, first)
            for name, values in jax.device_get(split).items():
                motion[name] = motion.get(name, 0.0) + float(np.sum(values[:n]))
        tokens = np.asarray(tokens)[:n].reshape(-1)
        full_counts += np.bincount(tokens, minlength=full_counts.size)
        subs = np.asarray(index_to_subcodes(tokens, model.num_bits, model.num_factors))
        for j in range(model.num_factors):
            sub_counts[j] += np.bincount(subs[:, j], minlength=sub_counts.shape[1])
        recons.append(np.asarray(api.to_uint8(recon))[:n])
    metrics = {name: total / len(frames) for name, total in sums.items()}
    if motion:
        metrics["psnr_moving"] = _psnr(motion["sse_moving"], motion["count_moving"])
        metrics["psnr_static"] = _psnr(motion["sse_static"], motion["count_static"])
        metrics["moving_fraction"] = motion["count_moving"] / (motion["count_moving"]
                                                               + motion["count_static"])
    metrics.update({f"code_{k}": v for k, v in code_statistics(full_counts).items()})
    if model.num_factors > 1:
        for j in range(model.num_factors):
            stats = code_statistics(sub_counts[j])
            metrics.update({f"subcode{j}_{k}": v for k, v in stats.items()})
    metrics["num_frames"] = float(len(frames))
    return metrics, np.concatenate(recons)


def grid_indices(num_frames: int, num: int) -> np.ndarray:
    """`num` indices spread evenly over `num_frames` held-out frames (consecutive frames of one
    episode barely differ; spread ones show the arm in many poses)."""
    return np.unique(np.linspace(0, num_frames - 1, num).round().astype(int))


def reconstruction_grid(originals: np.ndarray, recons: np.ndarray, gap: int = 2) -> np.ndarray:
    """Originals (top row) over reconstructions (bottom row): uint8 [2H + gap, n(W + gap), 3]."""
    n, h, w, _ = originals.shape
    grid = np.full((2 * h + gap, n * (w + gap), 3), 255, np.uint8)
    for i in range(n):
        x = i * (w + gap)
        grid[:h, x:x + w] = originals[i]
        grid[h + gap:, x:x + w] = recons[i]
    return grid


def write_report(out_dir: str, metrics: dict[str, Any], grid: np.ndarray) -> None:
    """Writes `metrics.json` and `reconstructions.png` into `out_dir` (each atomically)."""
    from PIL import Image

    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    tmp = os.path.join(out_dir, "reconstructions.tmp.png")
    Image.fromarray(grid).save(tmp)
    os.replace(tmp, os.path.join(out_dir, "reconstructions.png"))
