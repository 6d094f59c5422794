"""Imagination vs simulator for the report (issue 8): the first evaluation episode of each policy
and split in ManiSkill (`evaluate/traces/*.npz`: frames and actions), replayed open loop in the
world-model env of the `ppo_world_model` stage (same models, same decoding) from the same first
frame with the same actions.

Per trace: a strip (simulator frames over imagined frames at evenly spaced steps) and the PSNR of
each imagined frame against the simulator's, next to repeating the first frame (how far the
scene moved: imagination that tracks the motion beats it). The env's reward is not read (the goal
is set to the first frame).
"""

from __future__ import annotations

import glob
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from roboscape_jax.utils.files import atomic_path


def load_traces(root: str) -> dict[str, dict[str, np.ndarray]]:
    """{"<policy>_<split>": the npz's arrays} of `root/evaluate/traces/`, sorted by name."""
    traces = {}
    for path in sorted(glob.glob(os.path.join(root, "evaluate", "traces", "*.npz"))):
        with np.load(path) as npz:
            traces[os.path.basename(path)[:-4]] = {k: npz[k] for k in npz.files}
    return traces


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame PSNR in dB of uint8 frames [T, H, W, 3]."""
    mse = np.mean(np.square(a.astype(np.float64) - b.astype(np.float64)), axis=(1, 2, 3))
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))


def imagine(env, env_params, actions: np.ndarray) -> np.ndarray:
    """uint8 [N, T + 1, H, W, 3]: scene i's first frame, then the env's frames under actions
    [N, T, A] (scene i of `env_params` starts trace i; no auto-reset)."""

    @jax.jit
    def run(actions):
        def one(scene, actions):
            obs, state = env.reset_to(scene, env_params)

            def body(state, inputs):
                key, action = inputs
                obs, state, *_ = env.step_env(key, state, action, env_params)
                return state, obs["frame"]

            keys = jax.random.split(jax.random.PRNGKey(0), actions.shape[0])
            _, frames = jax.lax.scan(body, state, (keys, actions))
            return jnp.concatenate([obs["frame"][None], frames])

        return jax.vmap(one)(jnp.arange(actions.shape[0]), actions)

    return np.asarray(run(jnp.asarray(actions, jnp.float32)))


def write_strip(path: str, simulated: np.ndarray, imagined: np.ndarray, num: int) -> None:
    """PNG: `num` evenly spaced steps, the simulator's frames over the imagined ones."""
    from PIL import Image

    pick = np.unique(np.linspace(0, len(simulated) - 1, num).round().astype(int))
    rows = [np.concatenate(list(frames[pick]), axis=1) for frames in (simulated, imagined)]
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(rows, axis=0)).save(tmp)


def run_imagination(config, root: str, out_dir: str) -> dict[str, dict[str, Any]]:
    """Strips in `out_dir/imagination/` and per-trace figures; {} when no trace was saved."""
    traces = load_traces(root)
    if not traces:
        return {}
    from experiments.stages.ppo_world_model import (
        pipeline_margin_calibration,
        restore_models,
        stage_view,
    )
    from roboscape_jax.env import EnvConfig, Scenes, WorldModelEnv
    from roboscape_jax.tokenizer import train as tok_train

    view = stage_view(config, os.path.join(root, "ppo_world_model"))
    models = restore_models(view)
    (tok, tok_params), (model, params) = models["tokenizer"], models["action"]
    env = WorldModelEnv(tok, model, EnvConfig.from_config(view.env))
    names = list(traces)
    first = np.stack([traces[n]["frames"][0] for n in names])
    scenes = Scenes(jnp.asarray(first), jnp.asarray(np.stack([traces[n]["instruction"]
                                                              for n in names])),
                    jnp.asarray(first), jnp.zeros((len(names),), bool))
    env_params = env.make_params(tok_params, params, tok_train.load_lpips_params(), scenes,
                                 margin_calibration=pipeline_margin_calibration(root))
    steps = [len(traces[n]["actions"]) for n in names]
    actions = np.zeros((len(names), max(steps), 7), np.float32)  # padded; the tail is dropped
    for i, n in enumerate(names):
        actions[i, :steps[i]] = traces[n]["actions"]
    imagined = imagine(env, env_params, actions)
    results = {}
    for i, n in enumerate(names):
        sim, dream = traces[n]["frames"], imagined[i, :steps[i] + 1]
        strip = os.path.join(out_dir, "imagination", f"{n}.png")
        write_strip(strip, sim, dream, config.evaluate.num_strip_frames)
        results[n] = {"task": str(traces[n]["task"]), "steps": steps[i],
                      "success": bool(traces[n]["success"]),
                      "psnr_imagined": float(np.mean(psnr(dream[1:], sim[1:]))),
                      "psnr_first_frame": float(np.mean(psnr(np.repeat(sim[:1], steps[i], 0),
                                                             sim[1:]))),
                      "strip": os.path.relpath(strip, out_dir)}
    return results
