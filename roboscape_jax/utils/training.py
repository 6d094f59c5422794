"""A jitted train step and a resumable training loop shared by every trainer.

The loop is deterministic given the initial state: the batch of step s is `batch_fn(s)` (the data
position is the step), and the step's PRNG key is `fold_in(state.rng, state.step)`. So a run killed
and resumed from its last checkpoint produces exactly the numbers of an uninterrupted run.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import struct

from roboscape_jax.types import PRNGKey, PyTree
from roboscape_jax.utils import sharding
from roboscape_jax.utils.checkpoint import Checkpointer
from roboscape_jax.utils.metrics import MetricWriter
from roboscape_jax.utils.progress import Progress

LossFn = Callable[[PyTree, PyTree, PRNGKey], tuple[jax.Array, Mapping[str, jax.Array]]]


class TrainState(struct.PyTreeNode):
    """Everything a training run needs to resume: step, parameters, optimizer state and PRNG key."""

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    rng: PRNGKey


def create_train_state(params: PyTree, tx: optax.GradientTransformation,
                       rng: PRNGKey) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=rng)


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation) -> Callable:
    """Returns jitted `train_step(state, batch) -> (state, metrics)`.

    `loss_fn(params, batch, rng) -> (loss, metrics)`; the step adds `loss` and `grad_norm` to the
    metrics. The input state is donated: callers must use the returned one.
    """

    def train_step(state: TrainState, batch: PyTree) -> tuple[TrainState, dict[str, jax.Array]]:
        rng = jax.random.fold_in(state.rng, state.step)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads)}
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return jax.jit(train_step, donate_argnums=(0,))


def check_finite(metrics: Mapping[str, float], first_step: int, last_step: int) -> None:
    """Raises FloatingPointError naming the metric and the step range where it stopped being
    finite."""
    bad = [name for name, value in metrics.items() if not math.isfinite(value)]
    if bad:
        raise FloatingPointError(
            f"non-finite {', '.join(bad)} between steps {first_step} and {last_step}: "
            "lower the learning rate or check the input data for NaNs")


def train_loop(state: TrainState, train_step: Callable, batch_fn: Callable[[int], PyTree], *,
               workdir: str, num_steps: int, log_every_steps: int = 10,
               checkpoint_every_steps: int = 100, desc: str = "train",
               eval_fn: Callable[[TrainState], Mapping[str, Any]] | None = None,
               eval_every_steps: int = 0, progress_every_s: float = 10.0,
               checkpoint_meta: Mapping[str, Any] | None = None) -> TrainState:
    """Runs `train_step` to `num_steps`, resuming from `workdir/checkpoints` if a checkpoint exists.

    Logs every `log_every_steps` (metrics.jsonl + TensorBoard + a progress line), checkpoints every
    `checkpoint_every_steps` and at the end, and runs `eval_fn` every `eval_every_steps` (0: never).
    `checkpoint_meta` (JSON-serialisable, e.g. a config fingerprint) is stored in every checkpoint's
    meta beside `data_position`.
    """
    if num_steps < 1 or log_every_steps < 1:
        raise ValueError(f"num_steps and log_every_steps must be >= 1, got {num_steps}, "
                         f"{log_every_steps}")
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"),
                        save_interval_steps=max(1, checkpoint_every_steps))
    start = ckpt.latest_step() or 0
    if start:
        state, meta = ckpt.restore(state)
        print(f"{desc}: resumed from step {start} (data position {meta['data_position']})",
              flush=True)
    # process 0 logs into workdir, the others (multi-host) into workdir/process_<i>
    writer = MetricWriter(sharding.process_dir(workdir), resume_step=start if start else None)
    progress = Progress(num_steps, desc, start=start, every_s=progress_every_s, unit="steps")
    last_logged = start
    for step in range(start, num_steps):
        state, metrics = train_step(state, batch_fn(step))
        done = step + 1
        if done % log_every_steps == 0 or done == num_steps:
            scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
            check_finite(scalars, last_logged + 1, done)
            writer.write_scalars(done, scalars)
            progress.update(done - progress.done, {"loss": scalars["loss"]})
            last_logged = done
        if eval_fn is not None and eval_every_steps and done % eval_every_steps == 0:
            writer.write_scalars(done, {f"eval/{k}": v for k, v in eval_fn(state).items()})
        ckpt.save(done, state, {**(checkpoint_meta or {}), "data_position": done},
                  force=done == num_steps)
    writer.close()
    ckpt.close()
    return state
