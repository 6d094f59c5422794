"""The benchmark launcher (issue 9) on debug sizes: rows measured, FLOPs read, files written."""

import json
import os

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from experiments import benchmark
from tests.conftest import REPO_ROOT


def _config(*overrides):
    argv = ["prog", f"--config={REPO_ROOT}/experiments/configs/benchmark.py:debug", *overrides]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config", flag_values=values, sys_argv=argv)
    values(argv)
    return values.config


def test_benchmark_rows_flops_and_files(tmp_path):
    c = _config("--config.sections=('peak','tokenizer','world_model_train','env')",
                "--config.env_batches=(1,)")
    result = benchmark.run_benchmarks(c, str(tmp_path))
    rows = {(r["section"], r.get("batch")): r for r in result["rows"]}
    assert not [r for r in result["rows"] if "error" in r], result["rows"]
    assert result["peak_flops_per_s"]["float32"] > 0
    assert rows[("world_model_train", 4)]["per_s"] > 0  # the model reads bit margins
    env = rows[("env", 1)]
    assert env["gflop_per_call"] > 0 and env["per_s"] > 0
    # the utilisation is the row's rate against the peak timed in the same run (no bound on it:
    # on a shared CPU the peak's own timing varies)
    np.testing.assert_allclose(env["utilisation"], 1e9 * env["gflop_per_s"]
                               / result["peak_flops_per_s"]["float32"], rtol=1e-9)
    encode = [r for r in result["rows"] if r["what"].startswith("encode")][0]
    assert encode["compile_s"] > 0 and encode["gflop_per_call"] > 0
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    table = [line for line in (tmp_path / "benchmark.md").read_text().splitlines()
             if line.startswith("|")]
    assert any(line.startswith("| env |") for line in table)
    assert "median ms" in table[0] and len({line.count("|") for line in table}) == 1
    assert env["median_ms"] >= env["run_ms"] > 0  # the best call is never slower than the median
    # same seed, same FLOP counts
    again = benchmark.run_benchmarks(_config("--config.sections=('env',)",
                                             "--config.env_batches=(1,)"), None)
    assert again["rows"][0]["gflop_per_call"] == env["gflop_per_call"]


def test_unknown_section_fails_clearly():
    with pytest.raises(ValueError, match="unknown benchmark sections"):
        benchmark.run_benchmarks(_config("--config.sections=('nope',)"), None)


def test_a_failing_section_is_recorded_not_fatal(tmp_path, monkeypatch):
    def broken(c, models, peak):
        raise RuntimeError("boom")

    monkeypatch.setitem(benchmark.BENCHES, "tokenizer", broken)
    result = benchmark.run_benchmarks(_config("--config.sections=('tokenizer',)"), str(tmp_path))
    assert result["rows"] == [{"section": "tokenizer", "error": "RuntimeError: boom"}]
    assert os.path.exists(tmp_path / "benchmark.md")


def test_purejaxrl_keys_are_ppo_config_fields():
    # read from the source: importing the script would set XLA:CPU's single-threaded flag in this
    # process's environment, which the suite's subprocesses inherit
    import ast

    from roboscape_jax.rl import PPOConfig

    with open(os.path.join(REPO_ROOT, "experiments", "benchmark_ppo_gymnax.py")) as f:
        tree = ast.parse(f.read())
    keys = next(ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign)
                and getattr(node.targets[0], "id", None) == "PUREJAXRL_KEYS")
    fields = set(vars(PPOConfig(total_timesteps=1)))
    assert set(keys) <= fields and "bootstrap_truncation" not in keys
    assert len(keys) == 14  # PureJaxRL's ppo.py reads these 14 (with ENV_NAME and DEBUG)


def test_benchmark_env_sizes_its_models_from_the_pipeline_config(tmp_path):
    """benchmark_env reads the models' sizes from `--config` (with overrides), as the workdir
    it restores was trained with."""
    import subprocess
    import sys

    out = tmp_path / "env.json"
    run = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark_env",
         f"--config={REPO_ROOT}/experiments/configs/tiny.py:debug",
         "--config.world_models.action.model.width=16", "--batch_sizes=1", "--scan_steps=1",
         "--repeats=1", "--loop_steps=0", f"--out={out}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["models"] == "random init" and result["best_scene_steps_per_s"] > 0
    assert "best:" in run.stdout
    # the config's default: a generated frame's margins from the model (no workdir: a stand-in
    # calibration, since the step's cost does not depend on its values)
    assert result["rollout_margins"] == "model" and "model margins" in run.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark_env",
         f"--config={REPO_ROOT}/experiments/configs/tiny.py:debug",
         "--config.world_models.action.model.widht=16"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "widht" in bad.stderr
