"""A small training job for the kill-and-resume test: an MLP fit to a fixed random target.

  python -m tests.utils.resumable_job WORKDIR NUM_STEPS [SLEEP_PER_STEP]

Writes `final_params.npz` when it finishes. Every batch is `batch_fn(step)`, so the job is
deterministic and a resumed run must match an uninterrupted one exactly.
"""

import os
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from roboscape_jax.utils.training import create_train_state, make_train_step, train_loop


def batch_fn(step: int):
    rng = np.random.default_rng(step)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    return {"x": x, "y": np.sin(x.sum(-1, keepdims=True))}


def main(workdir: str, num_steps: int, sleep_per_step: float = 0.0) -> None:
    model = nn.Sequential(
        [nn.Dense(32), nn.relu, nn.Dropout(0.1, deterministic=False), nn.Dense(1)]
    )
    params = model.init(
        {"params": jax.random.key(0), "dropout": jax.random.key(1)}, jnp.zeros((1, 4))
    )
    tx = optax.adam(1e-2)

    def loss_fn(params, batch, rng):
        pred = model.apply(params, batch["x"], rngs={"dropout": rng})
        return jnp.mean((pred - batch["y"]) ** 2), {}

    step_fn = make_train_step(loss_fn, tx)

    def slow_step(state, batch):
        time.sleep(sleep_per_step)
        return step_fn(state, batch)

    state = create_train_state(params, tx, jax.random.PRNGKey(2))
    state = train_loop(
        state,
        slow_step,
        batch_fn,
        workdir=workdir,
        num_steps=num_steps,
        log_every_steps=1,
        checkpoint_every_steps=5,
        desc="resumable_job",
    )
    leaves = {str(i): np.asarray(x) for i, x in enumerate(jax.tree.leaves(state.params))}
    np.savez(os.path.join(workdir, "final_params.npz"), **leaves)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
