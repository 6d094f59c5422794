"""How stable the tokenizer's codes are between consecutive frames, and why they change.

  python -m experiments.probe_token_stability --workdir=runs/tiny --split=val --episodes=6

Prints the fraction of tokens that change per step in each view, the bits flipped per changed
token, the latent magnitude |z| of flipped bits against all bits (flips at the sign boundary are
noise-like), and the fraction of 8x8 patches whose pixels really change. The world models can only
predict what the tokens do; codes that flip on tiny pixel changes cap them
(docs/performance_history.md).

With --margins, also the token changes per step and the reconstruction LPIPS / PSNR of codes
quantized with each hysteresis margin (`tokenizer.model.hysteresis_quantize`, the token cache's
`tokenizer.cache.hysteresis`): what a margin removes against what it costs.

With --flip_rank=MARGIN, how well the bit margins of frame t (latent x code sign under that
hysteresis margin, what `margin_inputs` world models read) predict which bits flip at t + 1: how
often the single flipped bit is the bit nearest its threshold, and the AUROC of the smallest
margin for "this token changes".

With --oracle, what a perfect world model could gain over the tokenized copy on 8-step clips of
the token cache (from a third into each episode), per-frame LPIPS to the real frames: the raw
copy, the tokenized copy, the true tokens (the tokenizer's floor), the true tokens only where a
code differs from the start frame's in >= 2 bits, and the true tokens of the third view only.
"""

import os

import jax
import numpy as np
from absl import app, flags, logging

from experiments.stages.tokenizer import DATASET_SUBDIR, tokenizer_section
from roboscape_jax.tokenizer import train as tok_train
from roboscape_jax.tokenizer.api import frames_to_model_input
from roboscape_jax.tokenizer.model import FrameTokenizer

_WORKDIR = flags.DEFINE_string("workdir", "runs/tiny", "Pipeline workdir (dataset + tokenizer).")
_SPLIT = flags.DEFINE_string("split", "val", "Dataset split.")
_EPISODES = flags.DEFINE_integer("episodes", 6, "Episodes to probe.")
_MARGINS = flags.DEFINE_list("margins", [], "Hysteresis margins to compare, e.g. 0,0.1,0.2.")
_ORACLE = flags.DEFINE_bool("oracle", False, "Score oracle token rollouts (see the docstring).")
_FLIP_RANK = flags.DEFINE_float("flip_rank", None, "With a hysteresis margin: how well bit "
                                "margins predict which bits flip (see the docstring).")
HORIZON = 8


def oracle_table(model, params, source, cache_dir: str, num_episodes: int) -> None:
    """Per-frame LPIPS of 8-step oracle clips (the module docstring's --oracle)."""
    import jax.numpy as jnp

    from roboscape_jax.tokenizer import api
    from roboscape_jax.tokenizer.losses import load_lpips_params, lpips_distance
    from roboscape_jax.tokenizer.tokenize import load_tokens

    lpips_params = load_lpips_params()
    lpips = jax.jit(lambda a, b: lpips_distance(lpips_params, 2 * a - 1, 2 * b - 1))
    scores: dict[str, list[float]] = {}
    for episode_id in source.episode_ids()[:num_episodes]:
        tokens, frames = load_tokens(cache_dir, episode_id), source.get_episode(episode_id)
        s = len(tokens) // 3
        start, future = tokens[s], tokens[s + 1:s + 1 + HORIZON]
        real = jnp.asarray(frames[s + 1:s + 1 + HORIZON], jnp.float32) / 255
        flipped = np.unpackbits((future ^ start[None]).astype(">u2").view(np.uint8)).reshape(
            *future.shape, 16).sum(-1)
        third = future.copy()
        third[:, future.shape[1] // 2:] = start[future.shape[1] // 2:]
        clips = {"tokenized copy": np.repeat(start[None], len(future), 0),
                 "true tokens": future, "true tokens, >= 2 bits": np.where(flipped >= 2, future,
                                                                           start[None]),
                 "true tokens, third view only": third}
        for name, clip in clips.items():
            reference = api.reference_or_none(
                model, jnp.repeat(jnp.asarray(frames[:1]), len(clip), 0))
            decoded = api.decode(params, jnp.asarray(clip), model=model, reference=reference)
            scores.setdefault(name, []).append(float(jnp.mean(lpips(decoded, real))))
        raw = jnp.repeat(jnp.asarray(frames[s:s + 1], jnp.float32) / 255, len(future), 0)
        scores.setdefault("raw copy", []).append(float(jnp.mean(lpips(raw, real))))
    for name, values in scores.items():
        print(f"oracle {HORIZON}-step clips ({len(values)}): {name} LPIPS {np.mean(values):.4f}")


def flip_rank_table(latents: list[np.ndarray], margin: float) -> None:
    """How well the bit margins of frame t (latent x code sign, what `margin_inputs` world models
    read) tell which bits of a token flip at t + 1 (module docstring's --flip_rank)."""
    import jax.numpy as jnp

    from roboscape_jax.tokenizer.model import hysteresis_quantize
    from roboscape_jax.world_model.losses import auroc

    ranks, exact, score, label = [], [], [], []
    for z in latents:
        codes = np.asarray(hysteresis_quantize(jnp.asarray(z), margin))
        margins = z[:-1] * codes[:-1]
        flips = codes[1:] != codes[:-1]  # [T-1, h, w, K]
        count = flips.sum(-1)
        rank = np.argsort(np.argsort(margins, -1), -1)  # 0 = the bit nearest its threshold
        single = count == 1
        ranks.append(rank[single][np.arange(single.sum()), flips[single].argmax(-1)])
        multi = (count >= 2) & (count <= 3)
        exact.append(((rank[multi] < count[multi][:, None]) == flips[multi]).all(-1))
        score.append(-margins.min(-1).ravel()), label.append((count > 0).ravel())
    ranks, exact = np.concatenate(ranks), np.concatenate(exact)
    print(f"flip rank (hysteresis {margin:.2f}): {ranks.size} single-bit changes; the flipped bit "
          f"is the bit nearest its threshold in {np.mean(ranks == 0):.3f} (among the 2 nearest "
          f"{np.mean(ranks < 2):.3f}; chance with 10 bits 0.1 / 0.2); {exact.size} 2-3 bit "
          f"changes flip exactly the k nearest bits in {np.mean(exact):.3f}")
    print(f"flip rank: AUROC of the smallest bit margin for 'token changes' "
          f"{auroc(np.concatenate(score), np.concatenate(label)):.3f}")


def episode_reference(model: FrameTokenizer, frames):
    """What a reference-conditioned tokenizer reads with an episode's frames [T, ...]: copies of
    its first frame (None for other tokenizers)."""
    if not model.reference_conditioning:
        return None
    return frames_to_model_input(jax.numpy.repeat(jax.numpy.asarray(frames[:1]), len(frames), 0))


def hysteresis_table(model, params, episodes: list[np.ndarray], margins: list[float]) -> None:
    """Token changes per step (third / wrist view) and reconstruction LPIPS / PSNR per margin."""
    import jax.numpy as jnp

    from roboscape_jax.tokenizer.losses import load_lpips_params, lpips_distance
    from roboscape_jax.tokenizer.model import hysteresis_quantize

    lpips_params = load_lpips_params()
    encode = jax.jit(lambda x: model.apply(params, frames_to_model_input(x),
                                           episode_reference(model, x),
                                           method=FrameTokenizer.encode)[0])
    decode = jax.jit(lambda q, x: model.apply(params, q, episode_reference(model, x),
                                              method=FrameTokenizer.decode_codes))
    lpips = jax.jit(lambda a, b: lpips_distance(lpips_params, a, b))
    latents = [encode(frames) for frames in episodes]
    for margin in margins:
        third, wrist, dist, psnr = [], [], [], []
        for frames, z in zip(episodes, latents, strict=True):
            codes = hysteresis_quantize(z, margin)
            changed = np.asarray((codes[1:] != codes[:-1]).any(-1))
            half = changed.shape[1] // 2
            third.append(changed[:, :half].mean()), wrist.append(changed[:, half:].mean())
            target, recon = frames_to_model_input(frames), decode(codes, frames)
            dist.append(float(jnp.mean(lpips(target, recon))))
            psnr.append(float(10 * jnp.log10(4.0 / jnp.mean(jnp.square(target - recon)))))
        print(f"hysteresis {margin:.2f}: tokens changing per step third {np.mean(third):.3f} / "
              f"wrist {np.mean(wrist):.3f}; reconstruction LPIPS {np.mean(dist):.4f}, "
              f"PSNR {np.mean(psnr):.2f} dB")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from data_pipeline.dataset import DatasetEpisodes  # reads the TFDS dataset

    workdir = _WORKDIR.value
    model, params = tok_train.restore_params(os.path.join(workdir, "train_tokenizer"),
                                             tokenizer_section(workdir))
    source = DatasetEpisodes(os.path.join(workdir, DATASET_SUBDIR), _SPLIT.value)
    encode = jax.jit(lambda p, x: model.apply(p, frames_to_model_input(x),
                                              episode_reference(model, x),
                                              method=FrameTokenizer.encode)[0])
    f = model.downsample_factor
    flipped, every, patches, changed, bits = [], [], [], {"third": [], "wrist": []}, []
    latents = []
    for episode_id in source.episode_ids()[:_EPISODES.value]:
        frames = source.get_episode(episode_id)
        z = np.asarray(encode(params, frames))  # [T, h, w, bits]
        flips = np.sign(z[1:]) != np.sign(z[:-1])
        token_changed = flips.any(-1)  # [T-1, h, w]
        half = token_changed.shape[1] // 2
        changed["third"].append(token_changed[:, :half].mean())
        changed["wrist"].append(token_changed[:, half:].mean())
        bits.append(flips.sum(-1)[token_changed].mean())
        flipped.append(np.minimum(np.abs(z[1:]), np.abs(z[:-1]))[flips])
        latents.append(z)
        every.append(np.abs(z).ravel())
        diff = np.abs(frames[1:].astype(int) - frames[:-1].astype(int)).max(-1)
        t, h, w = diff.shape
        patches.append((diff.reshape(t, h // f, f, w // f, f).max((2, 4)) > 8).mean())
    flipped, every = np.concatenate(flipped), np.concatenate(every)
    print(f"tokens changing per step: third view {np.mean(changed['third']):.3f}, wrist view "
          f"{np.mean(changed['wrist']):.3f}; bits flipped per changed token {np.mean(bits):.2f}")
    print(f"latent |z|: all bits median {np.median(every):.3f}; flipped bits median "
          f"{np.median(flipped):.3f} (90th percentile {np.percentile(flipped, 90):.3f})")
    print(f"{f}x{f} patches with a pixel change > 8/255 between frames: {np.mean(patches):.3f}")
    if _FLIP_RANK.value is not None:
        flip_rank_table(latents, _FLIP_RANK.value)
    if _ORACLE.value:
        oracle_table(model, params, source, os.path.join(workdir, "tokenize_dataset",
                                                         _SPLIT.value), _EPISODES.value)
    if _MARGINS.value:
        episodes = [source.get_episode(i) for i in source.episode_ids()[:_EPISODES.value]]
        hysteresis_table(model, params, episodes, [float(m) for m in _MARGINS.value])


if __name__ == "__main__":
    app.run(main)
