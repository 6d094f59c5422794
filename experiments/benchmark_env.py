r"""Throughput of the world-model env (issue 6): scene-steps/s including decode and reward.

  python -m experiments.benchmark_env --workdir=runs/tiny --batch_sizes=1,16,64,256 \
      --out=runs/tiny/benchmarks/env.json

`--config` is the pipeline config the workdir was trained with (default `tiny`; overrides as in
`experiments.main`, e.g. `--config.tokenizer.model.stem_factor=2`): its `tokenizer` and
`world_models.action` sections restore the checkpoints, or size the random models.

For each batch size: the compile time of jit(vmap(env.step)), then scene-steps/s of (a) a
`lax.scan` over `--scan_steps` steps in one compiled program and (b) the same step called from a
Python loop, one step per call. `--maniskill_steps` > 0 also times the ManiSkill two-camera rgb
env (`RoboScape-v1`, random actions) on the same machine. With trained checkpoints in `--workdir`
(train_tokenizer, train_world_models) the env uses them; otherwise randomly initialised
models of the config's sizes stand in: throughput does not depend on the weights. Goals are random
frames here (goal generation is a one-off cost per scene set, not part of a step).
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from experiments.stages.ppo_world_model import pipeline_margin_calibration
from roboscape_jax.env import EnvConfig, Scenes, WorldModelEnv
from roboscape_jax.tokenizer import train as tok_train
from roboscape_jax.tokenizer.losses import load_lpips_params
from roboscape_jax.tokenizer.model import init_params as init_tokenizer_params
from roboscape_jax.world_model import train as wm_train
from roboscape_jax.world_model.margins import MarginCalibration, flat_calibration
from roboscape_jax.world_model.model import init_params

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/tiny.py",
                                          "Pipeline config of the models (tokenizer and "
                                          "world_models.action sections).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Pipeline workdir with trained models (optional).")
_BATCHES = flags.DEFINE_list("batch_sizes", ["1", "16", "64", "256"], "Scenes stepped at once.")
_SCAN = flags.DEFINE_integer("scan_steps", 8, "Steps per timed lax.scan call.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed calls per batch size (best is reported).")
_LOOP = flags.DEFINE_integer("loop_steps", 8, "Steps of the one-step-per-call Python loop "
                             "(0: skip it).")
_MASKGIT = flags.DEFINE_integer("maskgit_steps", 2, "MaskGIT decoding passes per frame.")
_MANISKILL = flags.DEFINE_integer("maniskill_steps", 0, "Steps of the ManiSkill rgb env (0: skip).")
_MARGINS = flags.DEFINE_enum("rollout_margins", None, ["model", "decoded"],
                             "A generated frame's bit margins (world models that read them): "
                             "from the model's bit probabilities or its decoded image re-encoded "
                             "(default: the config's world_model_eval.rollout_margins).")
_OUT = flags.DEFINE_string("out", None, "Optional JSON result path.")


def margin_calibration(config, workdir: str | None) -> MarginCalibration | None:
    """The env's margin calibration under `--rollout_margins`: the workdir's fitted one where it
    has it, else a flat stand-in (the step's cost does not depend on its values); None for
    "decoded"."""
    mode = _MARGINS.value or config.world_model_eval.get("rollout_margins", "decoded")
    if mode == "decoded":
        return None
    fitted = pipeline_margin_calibration(workdir)
    return fitted if fitted is not None else flat_calibration()


def load_models(config, workdir: str | None):
    """(tokenizer, tokenizer params, action model, action params, source) of the pipeline
    `config`: trained in `workdir` where it has them, else randomly initialised."""
    tok_cfg, wm_cfg = config.tokenizer, config.world_models.action
    if workdir and os.path.isdir(os.path.join(workdir, "train_world_models", "action")):
        tok, tok_params = tok_train.restore_params(os.path.join(workdir, "train_tokenizer"),
                                                   tok_cfg)
        model, params = wm_train.restore_params(
            os.path.join(workdir, "train_world_models", "action"), wm_cfg)
        return tok, tok_params, model, params, "trained"
    tok = tok_train.create_model(tok_cfg.model)
    tok_params = init_tokenizer_params(tok, jax.random.PRNGKey(0))
    model = wm_train.create_model(wm_cfg.model)
    params = init_params(model, jax.random.PRNGKey(1))
    return tok, tok_params, model, params, "random init"


def random_scenes(n: int) -> Scenes:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, n, 128, 64, 3), dtype=np.uint8)
    text = rng.normal(size=(n, 384)).astype(np.float32)
    return Scenes(jnp.asarray(frames[0]), jnp.asarray(text / np.linalg.norm(text, axis=1,
                                                                              keepdims=True)),
                  jnp.asarray(frames[1]), jnp.ones((n,), bool))


def bench_batch(env: WorldModelEnv, params, batch: int) -> dict[str, float]:
    keys = jax.random.split(jax.random.PRNGKey(0), batch)
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    actions = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, 7)), jnp.float32)

    @jax.jit
    def run_scan(state, key):
        def body(state, k):
            _, state, reward, *_ = step(jax.random.split(k, batch), state, actions, params)
            return state, reward
        return jax.lax.scan(body, state, jax.random.split(key, _SCAN.value))

    _, state = reset(keys, params)
    start = time.perf_counter()
    jax.block_until_ready(step(keys, state, actions, params))
    step_compile = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(run_scan(state, jax.random.PRNGKey(1)))
    scan_compile = time.perf_counter() - start
    scan_times = []
    for r in range(_REPEATS.value):
        start = time.perf_counter()
        jax.block_until_ready(run_scan(state, jax.random.PRNGKey(2 + r)))
        scan_times.append(time.perf_counter() - start)
    loop_rate = float("nan")  # --loop_steps=0: the one-step-per-call loop is skipped
    if _LOOP.value:
        start = time.perf_counter()
        for i in range(_LOOP.value):
            _, state, reward, *_ = step(jax.random.split(jax.random.PRNGKey(100 + i), batch),
                                        state, actions, params)
        jax.block_until_ready(reward)
        loop_rate = batch * _LOOP.value / (time.perf_counter() - start)
    return {"batch": batch, "step_compile_s": step_compile, "scan_compile_s": scan_compile,
            "scan_scene_steps_per_s": batch * _SCAN.value / min(scan_times),
            "loop_scene_steps_per_s": loop_rate}


def bench_maniskill(num_steps: int) -> dict[str, float]:
    from data_pipeline import maniskill_env  # noqa: F401  registers RoboScape-v1
    from data_pipeline.rendering import make_render_env

    env = make_render_env("RoboScape-v1", image_size=64, wrist_camera=True)
    env.reset(seed=0)
    space = env.action_space
    start = time.perf_counter()
    for _ in range(num_steps):
        env.step(space.sample())
    elapsed = time.perf_counter() - start
    env.close()
    return {"maniskill_rgb_steps_per_s": num_steps / elapsed}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint file at INFO
    tok, tok_params, model, params, source = load_models(_CONFIG.value, _WORKDIR.value)
    env = WorldModelEnv(tok, model, EnvConfig(num_maskgit_steps=_MASKGIT.value))
    lpips = load_lpips_params()
    calibration = margin_calibration(_CONFIG.value, _WORKDIR.value)
    results = {"models": source, "maskgit_steps": _MASKGIT.value, "device": str(jax.devices()[0]),
               "rollout_margins": "model" if calibration is not None and model.config.margin_inputs
               else "decoded", "batches": []}
    for batch in map(int, _BATCHES.value):
        env_params = env.make_params(tok_params, params, lpips, random_scenes(batch),
                                     margin_calibration=calibration)
        row = bench_batch(env, env_params, batch)
        results["batches"].append(row)
        print(f"batch {batch:4d}: compile {row['step_compile_s']:.1f} s (scan "
              f"{row['scan_compile_s']:.1f} s); scan {row['scan_scene_steps_per_s']:.1f} "
              f"scene-steps/s; python loop {row['loop_scene_steps_per_s']:.1f} scene-steps/s",
              flush=True)
    if _MANISKILL.value:
        results.update(bench_maniskill(_MANISKILL.value))
        print(f"ManiSkill RoboScape-v1 two-camera rgb 64x64: "
              f"{results['maniskill_rgb_steps_per_s']:.1f} steps/s", flush=True)
    best = max(r["scan_scene_steps_per_s"] for r in results["batches"])
    results["best_scene_steps_per_s"] = best
    print(f"best: {best:.1f} scene-steps/s ({source} models, {results['rollout_margins']} "
          "margins)")
    if _OUT.value:
        os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
        with open(_OUT.value, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    app.run(main)
