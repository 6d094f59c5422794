r"""Reproducible jitted benchmarks (issue 9): speed and achieved FLOP/s against the machine's peak.

  python -m experiments.benchmark --config=experiments/configs/benchmark.py --out_dir=runs/bench
  python -m experiments.benchmark --config=experiments/configs/benchmark.py:variant=base \
      --out_dir=runs/bench_base                              # one GPU
  python -m experiments.benchmark --config=... --config.sections="('peak','env')"

Times, after a warm-up call and with compile time reported apart: the machine's matmul peak, the
tokenizer's encode and decode, the tokenizer and world-model train steps, the world-model env
(jit(vmap(step)) under a `lax.scan`) at several batch sizes, the fused PPO-in-world-model chunk
(rollout and update in one compiled call) and the ManiSkill two-camera rgb env. FLOPs per call
come from XLA's cost analysis of the program lowered for the CPU (`program_flops`: a GPU's own
cost analysis leaves out cuBLAS and cuDNN calls); achieved FLOP/s / the float32 matmul peak is
the utilisation. A `lax.scan` is costed as its body times its length; the PPO chunk, loops within
loops, is not costed.
Writes `benchmark.json` (rows, device, versions, config) and `benchmark.md` (the table) into
`--out_dir` after every section, so a run cut short keeps what it measured. Models are randomly
initialised (see the config): same config, same FLOP counts, timings up to noise.
"""

from __future__ import annotations

import os
import traceback
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from experiments.configs.benchmark import SECTIONS
from experiments.stages.ppo_world_model import random_models, random_scenes
from roboscape_jax.env import EnvConfig, WorldModelEnv
from roboscape_jax.policies import sft
from roboscape_jax.rl import LogWrapper
from roboscape_jax.rl.loop import make_chunk_fns
from roboscape_jax.rl.ppo import PPOConfig
from roboscape_jax.tokenizer import api
from roboscape_jax.tokenizer import train as tok_train
from roboscape_jax.utils import provenance, sharding
from roboscape_jax.utils.benchmark import Timing, matmul_peak, program_flops, time_jitted
from roboscape_jax.utils.files import write_json, write_text
from roboscape_jax.world_model import train as wm_train
from roboscape_jax.world_model.margins import flat_calibration


def row(section: str, what: str, batch: int, timing: Timing, items: float, unit: str,
        peak: float | None) -> dict[str, Any]:
    """One table row: `items` things (frames, scene-steps, ...) per call of `timing`."""
    flops_s = timing.flops_per_s()
    return {"section": section, "what": what, "batch": batch, "compile_s": timing.compile_s,
            "run_ms": 1e3 * timing.run_s, "median_ms": 1e3 * timing.median_s,
            "per_s": items / timing.run_s, "unit": unit,
            "gflop_per_call": None if timing.flops is None else timing.flops / 1e9,
            "gflop_per_s": None if flops_s is None else flops_s / 1e9,
            "utilisation": None if flops_s is None or not peak else flops_s / peak}


def bench_peak(c, peak) -> list[dict]:
    rows = []
    for dtype in c.peak.dtypes:
        flops_s = matmul_peak(c.peak.n, jnp.dtype(dtype), repeats=c.repeats)
        rows.append({"section": "peak", "what": f"matmul {c.peak.n}^3 {dtype} (x4 per call)",
                     "gflop_per_s": flops_s / 1e9, "dtype": dtype})
        peak.setdefault(dtype, flops_s)
    return rows


def bench_tokenizer(c, models, peak) -> list[dict]:
    tok, params = models["tokenizer"]
    h, w = c.tokenizer.input.frame_height, c.tokenizer.input.frame_width
    b = c.tokenizer_batch
    frames = jnp.asarray(np.random.default_rng(c.seed).integers(0, 256, (b, h, w, 3), np.uint8))
    # a reference-conditioned tokenizer also reads each frame's episode-first frame
    reference = api.reference_or_none(tok, jnp.repeat(frames[:1], b, axis=0))
    encode = jax.jit(lambda p, x, r: api.encode(p, x, model=tok, reference=r))
    decode = jax.jit(lambda p, t, r: api.decode(p, t, model=tok, reference=r))
    encoded = time_jitted(encode, (params, frames, reference), repeats=c.repeats)
    tokens = encode(params, frames, reference)
    return [row("tokenizer", f"encode {h}x{w}", b, encoded, b, "frames/s", peak),
            row("tokenizer", f"decode {tokens.shape[1]}x{tokens.shape[2]} tokens", b,
                time_jitted(decode, (params, tokens, reference), repeats=c.repeats), b,
                "frames/s", peak)]


def bench_tokenizer_train(c, models, peak) -> list[dict]:
    cfg = c.tokenizer
    tok, _ = models["tokenizer"]
    tx = tok_train.make_optimizer(cfg)
    mesh = sharding.data_mesh()
    state = sharding.replicate(tok_train.init_state(cfg, tok, tx), mesh)
    lpips = tok_train.load_lpips_params() if cfg.loss.lpips_weight > 0 else None
    b, h, w = cfg.input.batch_size, cfg.input.frame_height, cfg.input.frame_width
    frames = np.random.default_rng(c.seed).integers(0, 256, (b, h, w, 3), np.uint8)
    if tok_train.needs_first_frames(cfg, tok):
        frames = {"frames": frames, "references": np.repeat(frames[:1], b, axis=0)}
    frames = sharding.shard_batch(frames, mesh)
    step = tok_train.make_jitted_step(cfg, tok, tx, mesh)
    timing = time_jitted(step, (state, frames, lpips), repeats=c.repeats,
                         carry=lambda out, args: (out[0], *args[1:]))
    return [row("tokenizer_train", f"train step, {mesh.size} device(s)", b, timing, 1, "steps/s",
                peak)]


def wm_batch(m, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (batch, m.num_frames, m.grid_height, m.grid_width)
    return {"tokens": rng.integers(0, 2**m.num_bits, shape, dtype=np.int32),
            "actions": rng.uniform(-1, 1, (batch, m.num_frames, m.action_dim)).astype(np.float32),
            "done": (rng.uniform(size=(batch, m.num_frames)) < 0.1).astype(np.float32),
            # bit margins (latent x code sign) for models that read them
            **({"margins": rng.normal(size=(*shape, m.num_bits)).astype(np.float32)}
               if m.get("margin_inputs", False) else {})}


def bench_world_model_train(c, models, peak) -> list[dict]:
    cfg = c.world_models.action
    model, _ = models["action"]
    tx = tok_train.make_optimizer(cfg)  # the world-model trainer's optimizer too
    mesh = sharding.data_mesh()
    state = sharding.replicate(wm_train.init_state(cfg, model, tx), mesh)
    batch = sharding.shard_batch(wm_batch(cfg.model, cfg.input.batch_size, c.seed), mesh)
    step = wm_train.make_step(cfg, model, tx, mesh)
    timing = time_jitted(step, (state, batch), repeats=c.repeats,
                         carry=lambda out, args: (out[0], args[1]))
    return [row("world_model_train", f"action model train step, {mesh.size} device(s)",
                cfg.input.batch_size, timing, 1, "steps/s", peak)]


def make_env(c, models):
    (tok, tok_params), (model, params) = models["tokenizer"], models["action"]
    env = WorldModelEnv(tok, model, EnvConfig.from_config(c.env))
    lpips = tok_train.load_lpips_params()
    calibration = flat_calibration() if c.get("rollout_margins") == "model" else None
    return env, lambda n: env.make_params(tok_params, params, lpips,
                                          random_scenes(n, env.frame_shape, c.seed),
                                          margin_calibration=calibration)


def time_env_batch(c, env: WorldModelEnv, params, batch: int) -> Timing:
    """`c.env_scan_steps` steps of jit(vmap(env.step)) over `batch` scenes in one `lax.scan`."""
    keys = jax.random.split(jax.random.PRNGKey(c.seed), batch)
    actions = jnp.asarray(np.random.default_rng(c.seed).uniform(-1, 1, (batch, 7)), jnp.float32)
    _, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    step_flops = program_flops(step, (keys, state, actions, params))

    @jax.jit
    def run_scan(state, key, params):
        def body(state, k):
            _, state, reward, *_ = step(jax.random.split(k, batch), state, actions, params)
            return state, reward
        return jax.lax.scan(body, state, jax.random.split(key, c.env_scan_steps))

    return time_jitted(run_scan, (state, jax.random.PRNGKey(1), params), repeats=c.repeats,
                       flops=None if step_flops is None else step_flops * c.env_scan_steps)


def bench_env(c, models, peak) -> list[dict]:
    env, make_params = make_env(c, models)
    rows = []
    for batch in c.env_batches:
        timing = time_env_batch(c, env, make_params(batch), batch)
        rows.append(row("env", f"world-model env step (scan of {c.env_scan_steps})", batch,
                        timing, batch * c.env_scan_steps, "scene-steps/s", peak))
        print(f"  env batch {batch}: {rows[-1]['per_s']:.1f} scene-steps/s", flush=True)
    return rows


def bench_ppo_world_model(c, models, peak) -> list[dict]:
    env, make_params = make_env(c, models)
    params = jax.tree.map(jnp.asarray, make_params(c.ppo.num_envs))
    config = PPOConfig.from_config(c.ppo)
    init, run = make_chunk_fns(config, LogWrapper(env), sft.create_policy(c.policy))
    runner = init(jax.random.PRNGKey(c.seed), params)
    n = c.ppo_updates
    chunk = jax.jit(lambda runner, params: run(runner, params, n))
    timing = time_jitted(chunk, (runner, params), repeats=c.repeats,
                         carry=lambda out, args: (out[0], args[1]))
    timing = Timing(timing.compile_s, timing.run_s, timing.median_s, None)  # loops: see below
    steps = n * config.num_envs * config.num_steps
    return [row("ppo_world_model", f"{n} PPO updates of {config.num_envs} x {config.num_steps} "
                "env steps, one call", config.num_envs, timing, steps, "env steps/s", peak)]


def bench_maniskill(c, models, peak) -> list[dict]:
    del models, peak
    if c.maniskill_steps < 1:
        return [{"section": "maniskill", "what": "ManiSkill rgb env", "skipped": "0 steps"}]
    try:
        from experiments.benchmark_env import bench_maniskill as run
        result = run(c.maniskill_steps)
    except ImportError as e:
        return [{"section": "maniskill", "what": "ManiSkill rgb env", "skipped": str(e)}]
    return [{"section": "maniskill", "what": "ManiSkill RoboScape-v1, 2 x 64x64 rgb, random "
             "actions", "batch": 1, "per_s": result["maniskill_rgb_steps_per_s"],
             "unit": "steps/s"}]


BENCHES = {"peak": None, "tokenizer": bench_tokenizer, "tokenizer_train": bench_tokenizer_train,
           "world_model_train": bench_world_model_train, "env": bench_env,
           "ppo_world_model": bench_ppo_world_model, "maniskill": bench_maniskill}


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(result: dict[str, Any]) -> str:
    """The rows as a markdown table, headed by the device and versions."""
    info = result["run_info"]
    pk = info["packages"]
    lines = [f"Device: {result['device']} ({info['backend']}, {info['cpu_count']} CPUs); "
             f"jax {pk.get('jax')}, flax {pk.get('flax')}; variant {result['variant']}; "
             f"commit {info.get('git_commit')}", "",
             # best and median of the timed calls: on a shared VM the median is what a long
             # run sees (the tiny action model's step: best 0.95 s, median 1.17 s, a loop 1.2 s)
             "| section | what | batch | compile s | ms / call (best) | median ms | throughput "
             "(best) | GFLOP / call | GFLOP/s | of f32 peak |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r or "skipped" in r:
            lines.append(f"| {r['section']} | {r.get('error') or 'skipped: ' + r['skipped']} "
                         "| | | | | | | | |")
            continue
        per_s = f"{r['per_s']:.1f} {r['unit']}" if "per_s" in r else "-"
        lines.append(f"| {r['section']} | {r['what']} | {r.get('batch', '-')} | "
                     f"{_fmt(r.get('compile_s'), '.1f')} | {_fmt(r.get('run_ms'), '.2f')} | "
                     f"{_fmt(r.get('median_ms'), '.2f')} | "
                     f"{per_s} | {_fmt(r.get('gflop_per_call'), '.3f')} | "
                     f"{_fmt(r.get('gflop_per_s'), '.1f')} | {_fmt(r.get('utilisation'), '.1%')} |")
    return "\n".join(lines) + "\n"


def run_benchmarks(c, out_dir: str | None) -> dict[str, Any]:
    """Runs `c.sections` in order; returns (and writes after each section) the result dict."""
    unknown = set(c.sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown benchmark sections {sorted(unknown)}; known: {SECTIONS}")
    result = {"device": str(jax.devices()[0]), "num_devices": jax.device_count(),
              "variant": c.variant, "run_info": provenance.run_info(), "config": c.to_dict(),
              "peak_flops_per_s": {}, "rows": []}
    peak = result["peak_flops_per_s"]
    models = None
    for section in c.sections:
        print(f"benchmark: {section}", flush=True)
        try:
            if section == "peak":
                rows = bench_peak(c, peak)
            else:
                models = models or random_models(c)
                rows = BENCHES[section](c, models, peak.get("float32"))
        except Exception as e:  # noqa: BLE001  one failing section must not lose the others
            traceback.print_exc()
            rows = [{"section": section, "error": f"{type(e).__name__}: {e}"[:300]}]
        result["rows"].extend(rows)
        if out_dir:
            write_json(os.path.join(out_dir, "benchmark.json"), result, default=str)
            write_text(os.path.join(out_dir, "benchmark.md"), markdown(result))
    return result


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    result = run_benchmarks(flags.FLAGS.config, flags.FLAGS.out_dir)
    print(markdown(result), flush=True)


if __name__ == "__main__":  # flags defined here only: tests import this module beside others
    config_flags.DEFINE_config_file("config", "experiments/configs/benchmark.py",
                                    "Benchmark config.")
    flags.DEFINE_string("out_dir", None, "Folder for benchmark.json and benchmark.md.")
    app.run(main)
