"""PPO with checkpoints, resume and metrics: `run_updates` in chunks, each chunk one compiled
`lax.scan` of rollout + update steps.

  runner, summary = train_in_chunks(config, env, env_params, network, workdir=...,
                                    rng=jax.random.PRNGKey(0), updates_per_chunk=10)

`env_params` is an argument of the compiled chunk, never a closed-over constant, so large weights
(a world model, LPIPS) are not baked into the program. After each chunk the runner state (policy,
optimizer, env states, PRNG key) is checkpointed under `workdir/checkpoints` and one
`metrics.jsonl` row is written per update; a killed run resumes from its last chunk with the same
numbers. `init_params` (e.g. an SFT policy) replaces the freshly initialised policy of a new run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from roboscape_jax.rl.ppo import PPOConfig, RunnerState, make_ppo, num_updates
from roboscape_jax.types import PRNGKey, PyTree
from roboscape_jax.utils.checkpoint import Checkpointer
from roboscape_jax.utils.metrics import MetricWriter
from roboscape_jax.utils.progress import Progress
from roboscape_jax.utils.training import check_finite

SHOWN = ("episode_return", "reward", "info/dense", "total_loss")  # metrics on the progress line


def make_chunk_fns(config: PPOConfig, env: Any, network: Any) -> tuple[Callable, Callable]:
    """(init(rng, env_params), run(runner, env_params, num_updates)), jitted with `env_params`
    as an argument (`num_updates` static)."""

    def init(rng: PRNGKey, env_params: Any) -> RunnerState:
        return make_ppo(config, env, env_params, network).init(rng)

    def run(runner: RunnerState, env_params: Any, n: int):
        return make_ppo(config, env, env_params, network).run_updates(runner, n)

    return jax.jit(init), jax.jit(run, static_argnums=2)


def _placed_like(template: PyTree, tree: PyTree) -> PyTree:
    """`tree` committed to `template`'s shardings. jit caches on committedness: a chunk fed a mix
    of committed and uncommitted arrays returns committed ones and would compile again."""
    return jax.tree.map(lambda t, x: jax.device_put(x, t.sharding), template, tree)


def _committed(tree: PyTree) -> PyTree:
    return jax.tree.map(lambda x: jax.device_put(x, x.sharding), tree)


def _with_params(runner: RunnerState, params: PyTree) -> RunnerState:
    """The runner with the policy's params replaced (Adam's zero moments need no change)."""
    current = runner.train_state.params
    if jax.tree.structure(current) != jax.tree.structure(params):
        raise ValueError("initial policy params do not match the policy's structure")
    params = _placed_like(current, params)
    return runner._replace(train_state=runner.train_state.replace(params=params))


def train_in_chunks(config: PPOConfig | Mapping[str, Any], env: Any, env_params: Any,
                    network: Any, *, workdir: str, rng: PRNGKey, updates_per_chunk: int,
                    init_params: PyTree | None = None, progress_every_s: float = 10.0,
                    checkpoint_meta: Mapping[str, Any] | None = None,
                    desc: str = "ppo") -> tuple[RunnerState, dict[str, float]]:
    """Trains `num_updates(config)` updates, resuming from `workdir`. Returns (runner, summary):
    updates done, env steps, env steps/s of the chunks after the first (compile excluded), how
    often the chunk compiled in this process (1, or 2 with a shorter last chunk), and the last
    update's metrics."""
    config = PPOConfig.from_config(config)
    make_ppo(config, env, env_params, network)  # validates the config and network up front
    if updates_per_chunk < 1:
        raise ValueError(f"updates_per_chunk must be >= 1, got {updates_per_chunk}")
    init, run = make_chunk_fns(config, env, network)
    env_params = _committed(jax.tree.map(jax.numpy.asarray, env_params))
    runner = _committed(init(rng, env_params))
    if init_params is not None:
        runner = _with_params(runner, init_params)
    total, steps_per_update = num_updates(config), config.num_envs * config.num_steps
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    done = ckpt.latest_step() or 0
    if done:
        runner = _placed_like(runner, ckpt.restore(runner)[0])
        print(f"{desc}: resumed after update {done} of {total}"
              + (" (finished: nothing to train)" if done >= total else ""), flush=True)
    writer = MetricWriter(workdir, resume_step=done if done else None)
    progress = Progress(total, desc, start=done, every_s=progress_every_s, unit="updates")
    timed_s, timed_updates, last, first_chunk = 0.0, 0, {}, True
    while done < total:
        n = min(updates_per_chunk, total - done)
        start = time.perf_counter()
        runner, metrics = jax.block_until_ready(run(runner, env_params, n))
        elapsed = time.perf_counter() - start
        if not first_chunk:  # the first chunk of a process includes compilation
            timed_s, timed_updates = timed_s + elapsed, timed_updates + n
        first_chunk = False
        metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
        check_finite({"total_loss": float(metrics["total_loss"].mean())}, done + 1, done + n)
        for i in range(n):
            last = writer.write_scalars(done + i + 1, {k: v[i] for k, v in metrics.items()})
        done += n
        ckpt.save(done, runner, dict(checkpoint_meta or {}, update=done), force=True)
        progress.update(n, {k: last[k] for k in SHOWN if k in last})
    writer.close()
    ckpt.close()
    steps_per_s = timed_updates * steps_per_update / timed_s if timed_s else float("nan")
    summary = {"updates": float(done), "env_steps": float(done * steps_per_update),
               "env_steps_per_s": steps_per_s, "compiles": float(run._cache_size()), **last}
    return runner, summary
