"""Issue 9's multi-host path, run for real: the world-model launcher as two JAX processes of two
(fake CPU) devices each, joined by `jax.distributed.initialize` over localhost, with FSDP, gives
the losses and evaluation of one process with four devices (README: Multi-host)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from tests.conftest import REPO_ROOT

LAUNCH = [sys.executable, "-m", "experiments.train_world_model",
          "--config=experiments/configs/world_model_run.py:debug,tokens=/nonexistent",
          "--config.world_model.num_steps=4"]


def _env(devices: int) -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _losses(workdir) -> list[float]:
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return [r["loss"] for r in rows if "loss" in r]


def test_two_processes_with_fsdp_match_one_process(tmp_path):
    one = subprocess.run([*LAUNCH, f"--workdir={tmp_path / 'one'}"], cwd=REPO_ROOT, env=_env(4),
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    port, workdir = _free_port(), tmp_path / "two"
    procs = [subprocess.Popen([*LAUNCH, f"--workdir={workdir}", "--config.parallel.fsdp=True",
                               "--config.parallel.fsdp_min_size=256",
                               f"--coordinator_address=localhost:{port}", "--num_processes=2",
                               f"--process_id={i}"], cwd=REPO_ROOT, env=_env(2),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    try:
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "process 1 of 2: 2 local of 4 devices" in outputs[1]
    np.testing.assert_allclose(_losses(workdir), _losses(tmp_path / "one"), rtol=1e-5)
    assert len(_losses(workdir)) == 4 and len(set(_losses(workdir))) > 1
    # process 0 writes the run's files, process 1 only its own log
    assert os.path.exists(workdir / "process_1" / "metrics.jsonl")
    evals = [json.loads((d / "eval" / "metrics.json").read_text()) for d in (tmp_path / "one",
                                                                           workdir)]
    np.testing.assert_allclose(evals[1]["token_accuracy"], evals[0]["token_accuracy"])
    assert os.listdir(workdir / "checkpoints")
