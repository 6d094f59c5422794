"""The jitted Flax train step and the resumable loop (kill -9 mid-run, resume, same numbers)."""

import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from roboscape_jax.utils.metrics import read_jsonl
from roboscape_jax.utils.training import (
    check_finite,
    create_train_state,
    make_train_step,
    train_loop,
)
from tests.conftest import REPO_ROOT
from tests.utils import resumable_job


def _linear_problem():
    def loss_fn(params, batch, rng):
        del rng
        return jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2), {
            "w_norm": jnp.sum(params["w"] ** 2)
        }

    x = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
    return loss_fn, {"x": x, "y": x @ np.array([1.0, -2.0, 0.5], np.float32)}


def test_jitted_train_step_reduces_loss_and_counts_steps():
    loss_fn, batch = _linear_problem()
    tx = optax.sgd(0.1)
    state = create_train_state({"w": jnp.zeros(3)}, tx, jax.random.PRNGKey(0))
    step = make_train_step(loss_fn, tx)
    state, first = step(state, batch)
    for _ in range(50):
        state, metrics = step(state, batch)
    assert int(state.step) == 51
    assert float(metrics["loss"]) < 1e-3 * float(first["loss"])
    assert set(metrics) == {"loss", "grad_norm", "w_norm"}
    np.testing.assert_allclose(state.params["w"], [1.0, -2.0, 0.5], atol=1e-2)


def test_loop_raises_on_nan_naming_the_steps(tmp_path):
    loss_fn, batch = _linear_problem()
    tx = optax.sgd(1e6)  # diverges to inf/nan within a few steps
    state = create_train_state({"w": jnp.ones(3)}, tx, jax.random.PRNGKey(0))
    with pytest.raises(FloatingPointError, match=r"non-finite .*between steps \d+ and \d+"):
        train_loop(
            state,
            make_train_step(loss_fn, tx),
            lambda s: batch,
            workdir=str(tmp_path),
            num_steps=100,
            log_every_steps=5,
            checkpoint_every_steps=50,
        )


def test_check_finite_accepts_finite():
    check_finite({"loss": 1.0}, 1, 2)
    with pytest.raises(FloatingPointError, match="grad_norm"):
        check_finite({"loss": 1.0, "grad_norm": float("nan")}, 3, 4)


def _run_job(workdir, num_steps, sleep=0.0):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.utils.resumable_job",
            str(workdir),
            str(num_steps),
            str(sleep),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_killed_and_resumed_run_matches_uninterrupted(tmp_path):
    num_steps = 30
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    resumable_job.main(str(clean), num_steps)  # uninterrupted, in process

    job = _run_job(killed, num_steps, sleep=0.1)
    ckpt_dir = killed / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and job.poll() is None:
        steps = [int(d) for d in os.listdir(ckpt_dir) if d.isdigit()] if ckpt_dir.exists() else []
        if steps and max(steps) >= 10:
            break
        time.sleep(0.05)
    assert job.poll() is None, "the job ended before it could be killed:\n" + job.stdout.read()
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert not (killed / "final_params.npz").exists()
    rows_at_kill = len(read_jsonl(killed / "metrics.jsonl"))
    assert 10 <= rows_at_kill < num_steps

    resumed = _run_job(killed, num_steps)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "resumed from step" in out

    clean_params, killed_params = (np.load(d / "final_params.npz") for d in (clean, killed))
    for name in clean_params.files:
        np.testing.assert_array_equal(clean_params[name], killed_params[name])
    clean_rows, killed_rows = (read_jsonl(d / "metrics.jsonl") for d in (clean, killed))
    assert [r["step"] for r in killed_rows] == list(range(1, num_steps + 1))
    assert clean_rows == killed_rows
